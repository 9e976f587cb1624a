/* flowloom-backup: command dispatch, global options, and the resolution of
 * what every command shares (root, session, clock). Commands live in
 * cmd_*.c; this file knows nothing about backups themselves. */
#include "cli_i.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "fb_store.h"

#ifndef FB_VERSION
#define FB_VERSION "0.0.0"
#endif

/* 9999-12-31T23:59:59Z: the last second a backup id can spell. */
#define CLI_NOW_MAX INT64_C(253402300799)

static const cli_command *const commands[] = {
    &cli_cmd_backup,  &cli_cmd_list,    &cli_cmd_show,   &cli_cmd_verify, &cli_cmd_diff,
    &cli_cmd_log,     &cli_cmd_recover, &cli_cmd_cleanup, &cli_cmd_forget, &cli_cmd_mount,
    &cli_cmd_umount,  NULL,
};

static const char global_usage_head[] =
    "Usage: " CLI_PROG " [global options] <command> [arguments]\n"
    "\n"
    "Backups of FlowLoom sessions (.flowloom/sessions/<id>/ into .flowloom/backups/<id>/).\n"
    "\n"
    "Commands:\n";

static const char global_usage_tail[] =
    "\n"
    "Global options (before or after the command name):\n"
    "  -C, --root DIR     FlowLoom root (default: $FLOWLOOM_ROOT, else the nearest\n"
    "                     directory at or above the working directory with .flowloom/)\n"
    "      --session ID   session (default: $FLOWLOOM_SESSION, else the first line of\n"
    "                     .flowloom/current_session; the word 'current' means the same)\n"
    "      --json         machine-readable output\n"
    "  -q, --quiet        print only errors and warnings\n"
    "  -v, --verbose      more detail\n"
    "  -h, --help         help (also '" CLI_PROG " <command> --help')\n"
    "      --version      print the version\n"
    "\n"
    "Environment: FLOWLOOM_ROOT, FLOWLOOM_SESSION, FLOWLOOM_NOW (integer seconds since the\n"
    "epoch taken as the current time).\n"
    "\n"
    "Exit status: 0 ok, 1 corruption found, 2 bad usage or input, 3 not found,\n"
    "4 busy (session locked), 5 I/O or other runtime failure.\n";

static void print_global_usage(FILE *f)
{
    fputs(global_usage_head, f);
    for (size_t i = 0; commands[i]; i++) {
        char name[64];
        if (commands[i]->alias)
            snprintf(name, sizeof name, "%s, %s", commands[i]->name, commands[i]->alias);
        else
            snprintf(name, sizeof name, "%s", commands[i]->name);
        fprintf(f, "  %-20s %s\n", name, commands[i]->summary);
    }
    fputs(global_usage_tail, f);
}

static const cli_command *find_command(const char *name)
{
    for (size_t i = 0; commands[i]; i++)
        if (strcmp(commands[i]->name, name) == 0 ||
            (commands[i]->alias && strcmp(commands[i]->alias, name) == 0))
            return commands[i];
    return NULL;
}

static void print_command_usage(const cli_command *cmd)
{
    fputs(cmd->usage, stdout);
    fputs("\nGlobal options: -C/--root DIR, --session ID, --json, -q/--quiet, -v/--verbose,\n"
          "-h/--help (see '" CLI_PROG " --help').\n",
          stdout);
}

/* $FLOWLOOM_NOW: a decimal integer within the years a backup id can spell. */
static int resolve_now(cli_ctx *ctx)
{
    const char *env = getenv("FLOWLOOM_NOW");
    if (!env || !*env) {
        ctx->now = (int64_t)time(NULL);
        return 0;
    }
    const char *p = env;
    if (*p == '-' || *p == '+')
        p++;
    bool ok = *p != '\0';
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9')
            ok = false;
    char *end = NULL;
    errno = 0;
    long long v = ok ? strtoll(env, &end, 10) : 0;
    if (!ok || errno || *end || v < 0 || v > CLI_NOW_MAX)
        return cli_failf(CLI_EXIT_USAGE,
                         "FLOWLOOM_NOW: '%s' is not an integer number of seconds since the "
                         "epoch (0 to %" PRId64 ")",
                         env, CLI_NOW_MAX);
    ctx->now = (int64_t)v;
    return 0;
}

int cli_check_session_arg(const char *session_arg)
{
    if (!session_arg || strcmp(session_arg, "current") == 0)
        return 0;
    fb_error err;
    fb_error_clear(&err);
    if (fb_session_id_check(session_arg, &err) != 0) {
        if (err.code != FB_EINVAL)
            err.code = FB_EINVAL;
        return cli_fail(&err);
    }
    return 0;
}

static int find_root(cli_ctx *ctx, fb_error *err)
{
    char *cwd = getcwd(NULL, 0);
    int rc = fb_root_find(ctx->root_opt, getenv("FLOWLOOM_ROOT"), cwd ? cwd : ".", &ctx->root,
                          err);
    free(cwd);
    if (rc != 0) {
        ctx->root = NULL;
        return rc;
    }
    /* Absolute and canonical, so printed locations and the path handed to
     * the mount daemon do not depend on the working directory. */
    char *real = realpath(ctx->root, NULL);
    if (real) {
        free(ctx->root);
        ctx->root = real;
    }
    return 0;
}

int cli_resolve_root(cli_ctx *ctx)
{
    if (ctx->root)
        return 0;
    if (ctx->root_opt && !*ctx->root_opt)
        return cli_usage_error(ctx->command, "--root: empty directory name");
    fb_error err;
    fb_error_clear(&err);
    return find_root(ctx, &err) == 0 ? 0 : cli_fail(&err);
}

int cli_resolve_root_quietly(cli_ctx *ctx)
{
    if (ctx->root)
        return 0;
    if (ctx->root_opt && !*ctx->root_opt)
        return -1;
    fb_error err;
    fb_error_clear(&err);
    return find_root(ctx, &err) == 0 ? 0 : -1;
}

int cli_resolve_session(cli_ctx *ctx, const char *session_arg, char **out)
{
    *out = NULL;
    if (session_arg && strcmp(session_arg, "current") != 0) {
        int rc = cli_check_session_arg(session_arg);
        if (rc)
            return rc;
        ctx->session_origin = session_arg == ctx->session_opt ? FB_SESSION_FROM_OPTION
                                                              : FB_SESSION_FROM_ARGUMENT;
        *out = strdup(session_arg);
        return *out ? 0 : cli_failf(CLI_EXIT_RUNTIME, "out of memory");
    }
    int rc = cli_resolve_root(ctx);
    if (rc)
        return rc;
    fb_error err;
    fb_error_clear(&err);
    if (fb_current_session_find(ctx->root, getenv("FLOWLOOM_SESSION"), out, &ctx->session_origin,
                                &err) != 0) {
        *out = NULL;
        return cli_fail(&err);
    }
    return 0;
}

static int dir_errno(const cli_ctx *ctx, const char *sub, const char *session_id)
{
    size_t len = strlen(ctx->root) + strlen(sub) + strlen(session_id) + 3;
    char *path = malloc(len);
    if (!path)
        return ENOMEM;
    snprintf(path, len, "%s/%s/%s", ctx->root, sub, session_id);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = fd < 0 ? errno : 0;
    if (fd >= 0)
        close(fd);
    free(path);
    return e;
}

int cli_session_source_errno(const cli_ctx *ctx, const char *session_id)
{
    return dir_errno(ctx, FB_SESSIONS_PATH, session_id);
}

int cli_session_store_errno(const cli_ctx *ctx, const char *session_id)
{
    return dir_errno(ctx, FB_BACKUPS_PATH, session_id);
}

const char *cli_session_origin_text(const cli_ctx *ctx)
{
    switch (ctx->session_origin) {
    case FB_SESSION_FROM_OPTION:
        return "--session";
    case FB_SESSION_FROM_ENV:
        return "$FLOWLOOM_SESSION";
    case FB_SESSION_FROM_FILE:
        return FB_FLOWLOOM_DIR "/current_session";
    case FB_SESSION_FROM_ARGUMENT:
        break;
    }
    return "the command line";
}

int cli_session_not_found(const cli_ctx *ctx, const char *session_id)
{
    return cli_failf(CLI_EXIT_NOTFOUND,
                     "session '%s' (from %s) not found: neither %s/" FB_SESSIONS_PATH "/%s nor "
                     "%s/" FB_BACKUPS_PATH "/%s exists",
                     session_id, cli_session_origin_text(ctx), ctx->root, session_id, ctx->root,
                     session_id);
}

int cli_fail_in_session(const cli_ctx *ctx, const fb_error *err)
{
    if (ctx->session_origin != FB_SESSION_FROM_ENV && ctx->session_origin != FB_SESSION_FROM_FILE)
        return cli_fail(err);
    fb_error shown = *err;
    size_t used = strlen(shown.message);
    snprintf(shown.message + used, sizeof shown.message - used, " (the session comes from %s)",
             cli_session_origin_text(ctx));
    return cli_fail(&shown);
}

int cli_resolve_existing_session(cli_ctx *ctx, const char *session_arg, char **out)
{
    int status = cli_check_session_arg(session_arg);
    if (status)
        return status;
    status = cli_resolve_root(ctx);
    if (status)
        return status;
    status = cli_resolve_session(ctx, session_arg, out);
    if (status)
        return status;
    if (cli_session_source_errno(ctx, *out) == ENOENT &&
        cli_session_store_errno(ctx, *out) == ENOENT) {
        status = cli_session_not_found(ctx, *out);
        free(*out);
        *out = NULL;
    }
    return status;
}

int cli_open_store_readonly(cli_ctx *ctx, fb_store **out)
{
    *out = NULL;
    int status = cli_resolve_root(ctx);
    if (status)
        return status;
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_store_open(ctx->root, false, out, &err);
    if (rc == 0)
        return 0;
    *out = NULL;
    /* The root was found, so .flowloom exists: only backups/ is missing. */
    if (rc == FB_ENOTFOUND && access(ctx->root, F_OK) == 0)
        return 0;
    return cli_fail(&err);
}

int cli_for_each_session(cli_ctx *ctx, fb_store *store, bool keep_going, cli_session_fn fn,
                         void *arg)
{
    char **sessions = NULL;
    size_t n = 0;
    fb_error err;
    fb_error_clear(&err);
    if (store && fb_store_list_sessions(store, &sessions, &n, &err) != 0)
        return cli_fail(&err);
    if (n == 0 && !ctx->json && !ctx->quiet)
        printf("No backups under %s/" FB_BACKUPS_PATH ".\n", ctx->root);
    int status = 0;
    for (size_t i = 0; i < n && (keep_going || status == 0); i++) {
        int st = fn(ctx, store, sessions[i], i == 0, arg);
        if (st && !status)
            status = st;
    }
    if (sessions)
        fb_string_list_free(sessions, n);
    return status;
}

int cli_load_index(cli_ctx *ctx, fb_store *store, const char *session_id, fb_index *idx)
{
    fb_index_init(idx, session_id);
    if (!store)
        return 0;
    fb_error err;
    fb_error_clear(&err);
    bool rebuilt = false;
    if (fb_store_load_index(store, session_id, FB_INDEX_LOAD_WRITE_BACK_IF_UNLOCKED, idx,
                            &rebuilt, cli_warn, ctx, &err) != 0) {
        fb_index_fini(idx);
        fb_index_init(idx, session_id);
        return cli_fail(&err);
    }
    return 0;
}

void cli_warn(void *vctx, const char *message)
{
    cli_ctx *ctx = vctx;
    if (ctx && ctx->progress_line_active) {
        fputs("\r\033[K", stderr);
        ctx->progress_line_active = false;
    }
    fprintf(stderr, "%s: warning: ", CLI_PROG);
    cli_print_message(stderr, message);
    fputc('\n', stderr);
}

static int finish_stdout(int status)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        /* A reader that went away (| head) is not an error worth a message. */
        if (errno == EPIPE)
            return status;
        int e = errno;
        fprintf(stderr, "%s: writing to standard output: %s\n", CLI_PROG, strerror(e));
        return status ? status : CLI_EXIT_RUNTIME;
    }
    return status;
}

/* Under an address-space limit (ulimit -v, prlimit --as), one malloc arena.
 * glibc gives a thread that meets contention an arena of its own, and
 * reserves 64 MiB of address space for each (128 MiB while it aligns it):
 * that reservation could leave a backup's other allocations a few KiB, and
 * libarchive, which exits on a failed string allocation, then ended the
 * run with "Fatal Internal Error in libarchive: Out of memory" and exit 1
 * instead of our exit 5. Without a limit the arenas stay: one costs a
 * backup 2% of its time (0.579 s against 0.568 s, 256 MiB session, five
 * turns). */
static void thrifty_malloc_under_a_limit(void)
{
#ifdef __GLIBC__
    struct rlimit rl;
    if (!getenv("MALLOC_ARENA_MAX") && getrlimit(RLIMIT_AS, &rl) == 0 &&
        rl.rlim_cur != RLIM_INFINITY)
        mallopt(M_ARENA_MAX, 1);
#endif
}

int main(int argc, char **argv)
{
    thrifty_malloc_under_a_limit();
    /* A closed pipe must be an error we report, a full file system or
     * RLIMIT_FSIZE an EFBIG we clean up after, not a silent death. */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
    /* Messages are built piecewise (escaped names); line buffering makes
     * each reach stderr in one write, whole, even beside another command. */
    static char stderr_buf[8192];
    setvbuf(stderr, stderr_buf, _IOLBF, sizeof stderr_buf);

    cli_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    int next = argc;
    int status = cli_parse_args(&ctx, argc, argv, 1, NULL, true, &next);
    if (status)
        goto out;

    if (next >= argc) {
        if (ctx.version) {
            printf("%s %s\n", CLI_PROG, FB_VERSION);
        } else if (ctx.help) {
            print_global_usage(stdout);
        } else {
            fprintf(stderr, "%s: no command given\n", CLI_PROG);
            print_global_usage(stderr);
            status = CLI_EXIT_USAGE;
        }
        goto out;
    }

    const char *name = argv[next];
    if (strcmp(name, "help") == 0) {
        const cli_command *cmd = next + 1 < argc ? find_command(argv[next + 1]) : NULL;
        if (next + 1 < argc && !cmd) {
            status = cli_usage_error(NULL, "unknown command '%s'", argv[next + 1]);
            goto out;
        }
        if (cmd)
            print_command_usage(cmd);
        else
            print_global_usage(stdout);
        goto out;
    }
    const cli_command *cmd = find_command(name);
    if (!cmd) {
        status = cli_usage_error(NULL, "unknown command '%s'", name);
        goto out;
    }
    ctx.command = cmd;
    status = cli_parse_args(&ctx, argc, argv, next + 1, cmd, false, NULL);
    if (status)
        goto out;
    if (ctx.help) {
        print_command_usage(cmd);
        goto out;
    }
    if (ctx.version) {
        printf("%s %s\n", CLI_PROG, FB_VERSION);
        goto out;
    }
    status = resolve_now(&ctx);
    if (status)
        goto out;
    status = cmd->run(&ctx);

out:
    status = finish_stdout(status);
    free(ctx.opts);
    free(ctx.pos);
    free(ctx.root);
    return status;
}
