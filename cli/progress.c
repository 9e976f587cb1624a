/* What a long command shows on stderr while it works: the one progress bar
 * of backup, recover and verify (bytes done / total, rate, ETA), and the
 * notice that a command is waiting for a session lock. Both keep stdout
 * free for the report and --json. */
#include "cli_i.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A terminal line is redrawn often enough to look alive; a log (stderr not
 * a terminal, --progress) gets a line a second at most, or it would grow by
 * megabytes on a long run. */
#define REDRAW_SECONDS 0.1
#define LOG_LINE_SECONDS 1.0
/* On a terminal without --progress, a run shorter than this shows no bar. */
#define AUTO_DELAY_SECONDS 1.0
#define BAR_WIDTH 30

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void cli_progress_init(cli_progress *p, cli_ctx *ctx, cli_progress_mode mode)
{
    memset(p, 0, sizeof *p);
    p->ctx = ctx;
    p->start = now_seconds();
    bool tty = isatty(STDERR_FILENO) == 1;
    /* --quiet and --json mean output for scripts: a bar only on request. */
    p->on = mode == CLI_PROGRESS_ON ||
            (mode == CLI_PROGRESS_AUTO && tty && !ctx->quiet && !ctx->json);
    p->in_place = tty;
    p->delayed = mode == CLI_PROGRESS_AUTO;
}

fb_progress_fn cli_progress_fn(const cli_progress *p)
{
    return p->on ? cli_progress_update : NULL;
}

/* "1:05", "1:02:03"; "--:--" when unknown or absurd. */
static void format_eta(double seconds, char out[32])
{
    if (!(seconds >= 0) || seconds > 99.0 * 3600) {
        snprintf(out, 32, "--:--");
        return;
    }
    unsigned s = (unsigned)(seconds + 0.5);
    if (s >= 3600)
        snprintf(out, 32, "%u:%02u:%02u", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(out, 32, "%u:%02u", s / 60, s % 60);
}

static void draw(cli_progress *p, double now)
{
    uint64_t done = p->done, total = p->total;
    if (total && done > total)
        done = total;
    unsigned pct = total ? (unsigned)(done * 100 / total) : 0;
    char bar[BAR_WIDTH + 1];
    unsigned filled = pct * BAR_WIDTH / 100;
    for (unsigned i = 0; i < BAR_WIDTH; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[BAR_WIDTH] = '\0';
    char d[32], t[32], rate[40], eta[32];
    cli_format_size(done, d);
    cli_format_size(total, t);
    /* The phase's average so far: steadier than the last interval, and
     * honest about stalls. */
    double elapsed = now - p->phase_start;
    double moved = done > p->phase_done0 ? (double)(done - p->phase_done0) : 0.0;
    if (total && done >= total) {
        format_eta(0, eta);
    } else if (elapsed > 0 && moved > 0) {
        format_eta((double)(total - done) * elapsed / moved, eta);
    } else {
        format_eta(-1, eta);
    }
    if (elapsed > 0 && moved > 0) {
        char r[32];
        cli_format_size((uint64_t)(moved / elapsed), r);
        snprintf(rate, sizeof rate, "%s/s", r);
    } else {
        snprintf(rate, sizeof rate, "-- MiB/s");
    }
    if (p->in_place)
        fputs("\r\033[K", stderr);
    /* A step whose size is not known yet (the scan) has nothing to measure. */
    if (total == 0)
        fprintf(stderr, "%-8s ...", p->phase);
    else
        fprintf(stderr, "%-8s [%s] %3u%%  %s / %s  %s  ETA %s", p->phase, bar, pct, d, t, rate,
                eta);
    if (p->in_place) {
        p->ctx->progress_line_active = true;
    } else {
        fputc('\n', stderr);
    }
    fflush(stderr);
    p->last_draw = now;
    p->drawn = true;
}

void cli_progress_update(void *vp, const char *phase, uint64_t done, uint64_t total)
{
    cli_progress *p = vp;
    if (!p->on)
        return;
    double now = now_seconds();
    bool new_phase = strncmp(p->phase, phase, sizeof p->phase - 1) != 0 || !p->started;
    /* A count that starts again (the next backup's validation after its
     * write, say) is measured afresh. */
    bool restarted = !new_phase && done < p->done;
    if (new_phase || restarted) {
        snprintf(p->phase, sizeof p->phase, "%s", phase);
        p->phase_start = now;
        p->phase_done0 = done;
        p->started = true;
    }
    bool changed = new_phase || done != p->done || total != p->total;
    p->done = done;
    p->total = total;
    if (changed)
        p->drawn = false;
    if (p->drawn)
        return;
    /* Short runs stay quiet: the bar only appears once it is worth it. */
    if (p->delayed && now - p->start < AUTO_DELAY_SECONDS)
        return;
    bool finished = total && done >= total;
    if (p->in_place) {
        /* A warning cleared the line: redraw it at once. */
        if (!new_phase && p->ctx->progress_line_active && now - p->last_draw < REDRAW_SECONDS)
            return;
    } else if (!new_phase && !finished && now - p->last_draw < LOG_LINE_SECONDS) {
        return;
    }
    draw(p, now);
}

void cli_progress_end(cli_progress *p)
{
    if (!p->on)
        return;
    /* A log keeps the last state it was not shown yet; a terminal line is
     * cleared so the report starts on a clean line. */
    if (!p->in_place && p->started && !p->drawn)
        draw(p, now_seconds());
    cli_progress_clear(p->ctx);
}

void cli_progress_clear(cli_ctx *ctx)
{
    if (ctx && ctx->progress_line_active) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        ctx->progress_line_active = false;
    }
}

void cli_lock_waiting(void *vctx, const fb_lock_waiting *w)
{
    cli_ctx *ctx = vctx;
    /* A wait is no error: --quiet silences it as it does the report. */
    if (ctx->quiet)
        return;
    cli_progress_clear(ctx);
    fprintf(stderr, "%s: waiting for the lock of session %s (held by %s; up to %g s, --wait to "
                    "change)\n",
            CLI_PROG, w->session_id, w->holder, w->wait_seconds);
    fflush(stderr);
}
