/* The sequential stream of archive.tar.zst (fb_archive_stream_*, see
 * fb_archive_reader.h): every frame in order, decoded ahead on worker
 * threads, the archive's SHA-256 and an optional per-frame hook, for verify
 * and restore. It bypasses the frame cache: a whole archive read once
 * would only evict what the mount's random reads use. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive_reader_i.h"
#include "fb_hash.h"
#include "frame_cache_i.h"
#include "thread_i.h"

/* The stream hashes the seek table in pieces of this size. */
#define TABLE_CHUNK (64u * 1024)
/* Read-ahead of the sequential stream: decoding threads, and the bytes of
 * decoded frames held ahead of the caller beyond the minimum of one slot
 * per worker plus the one the caller holds. */
#define STREAM_WORKERS_MAX 2
#define STREAM_AHEAD_BYTES (8u * 1024 * 1024)

/* One frame of the sequential stream: its compressed and decoded bytes. */
typedef struct stream_slot {
    uint8_t *in;
    size_t in_cap;
    uint8_t *out;
    size_t out_cap;
    bool ready; /* guarded by mu: done (or failed), rc/err set */
    int rc;
    fb_error err;
} stream_slot;

/* The sequential stream reads ahead: worker threads read and decode the
 * next frames into a ring of slots while the caller works on the current
 * one. Frame i lives in slot i % n_slots. Reading and decoding run in
 * parallel, but the archive SHA-256 and the frame hook are each one pass in
 * stream order, so each has a turn: the worker that read frame i waits until
 * frame i - 1 is hashed, hashes frame i's compressed bytes, decodes it, waits
 * until the hook has seen frame i - 1 and runs the hook on frame i. The two
 * turns overlap (one worker hashes while the other runs the hook), and each
 * worker works on its own frame while it is still in its core's cache:
 * moving 1 MiB frames between cores to be hashed elsewhere measurably costs
 * CPU (about 0.2 s per 256 MiB; docs/archive-format.md, Performance).
 * Without workers (one frame, or no thread could be started) the caller's
 * thread does all of it. */
struct fb_archive_stream {
    fb_archive_reader *r;
    stream_slot *slots;
    size_t n_slots;
    size_t next_frame; /* next frame to hand to the caller */
    bool holding;      /* the caller holds frame next_frame - 1 */
    bool started;      /* the first fb_archive_stream_next was called */
    ZSTD_DCtx *dctx;   /* the caller's own, used without workers */
    fb_archive_frame_fn hook;
    void *hook_ctx;

    pthread_mutex_t mu;
    pthread_cond_t work_cv;  /* a slot was freed, or stop */
    pthread_cond_t turn_cv;  /* a frame finished a turn */
    pthread_cond_t ready_cv; /* a slot became ready */
    pthread_t workers[STREAM_WORKERS_MAX];
    unsigned n_workers;
    unsigned want_workers;
    size_t claimed;  /* guarded by mu: next frame a worker takes */
    size_t released; /* guarded by mu: frames below this have left their slot */
    size_t hash_turn; /* guarded by mu: frames below this are hashed */
    size_t hook_turn; /* guarded by mu: frames below this went through the hook */
    bool halt;       /* guarded by mu: a frame failed, nothing after it matters */
    bool stop;       /* guarded by mu */

    fb_sha256 sha; /* used in turn order only */
    bool sha_live;
    bool done;
    bool failed;
    uint8_t digest[FB_SHA256_LEN];
};

/* Reads frame i's compressed bytes into slot sl (owned by the calling
 * thread). */
static int read_slot(fb_archive_reader *r, stream_slot *sl, size_t i, fb_error *err)
{
    const fb_frame_entry *f = &r->table.frames[i];
    if (fb_frame_buffer_grow(&sl->in, &sl->in_cap, f->c_size) ||
        fb_frame_buffer_grow(&sl->out, &sl->out_cap, f->d_size))
        return fb_error_set(err, FB_ENOMEM, "%s: frame %zu: out of memory", r->name, i);
    char what[64];
    snprintf(what, sizeof what, "frame %zu", i);
    return fb_pread_exact(r->fd, sl->in, f->c_size, f->c_offset, r->name, what, err);
}

static int run_hook(fb_archive_stream *s, stream_slot *sl, size_t i, fb_error *err)
{
    size_t len = s->r->table.frames[i].d_size;
    if (s->hook && len > 0)
        return s->hook(s->hook_ctx, sl->out, len, err);
    return 0;
}

/* Frame i on the caller's thread, without workers. */
static int load_inline(fb_archive_stream *s, stream_slot *sl, size_t i, fb_error *err)
{
    int rc = read_slot(s->r, sl, i, err);
    if (rc)
        return rc;
    fb_sha256_update(&s->sha, sl->in, s->r->table.frames[i].c_size);
    rc = fb_archive_decode_frame(s->r, s->dctx, i, sl->in, sl->out, err);
    if (rc == 0)
        rc = run_hook(s, sl, i, err);
    return rc;
}

/* Waits (mu held) until *turn reaches frame i; false when the worker is to
 * stop instead, or an earlier frame failed (halt: the caller stops there,
 * so frame i only has to be let go). */
static bool wait_turn(fb_archive_stream *s, const size_t *turn, size_t i)
{
    while (!s->stop && !s->halt && *turn != i)
        pthread_cond_wait(&s->turn_cv, &s->mu);
    return !s->stop && !s->halt;
}

static void *stream_worker_main(void *arg)
{
    fb_archive_stream *s = arg;
    fb_archive_reader *r = s->r;
    ZSTD_DCtx *dctx = fb_archive_dctx_new();
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && (s->halt || s->claimed >= r->table.n_frames ||
                            s->claimed >= s->released + s->n_slots))
            pthread_cond_wait(&s->work_cv, &s->mu);
        if (s->stop)
            break;
        size_t i = s->claimed++;
        stream_slot *sl = &s->slots[i % s->n_slots];
        pthread_mutex_unlock(&s->mu);

        fb_error err;
        fb_error_clear(&err);
        int rc = dctx ? read_slot(r, sl, i, &err)
                      : fb_error_set(&err, FB_ENOMEM, "%s: frame %zu: out of memory", r->name, i);

        /* A failed frame still takes its turns, so that every earlier frame
         * is delivered before its error is. */
        pthread_mutex_lock(&s->mu);
        if (wait_turn(s, &s->hash_turn, i)) {
            if (rc == 0) {
                pthread_mutex_unlock(&s->mu);
                fb_sha256_update(&s->sha, sl->in, r->table.frames[i].c_size);
                pthread_mutex_lock(&s->mu);
            }
            s->hash_turn = i + 1;
            pthread_cond_broadcast(&s->turn_cv);
        }
        if (rc == 0 && !s->stop && !s->halt) {
            pthread_mutex_unlock(&s->mu);
            rc = fb_archive_decode_frame(r, dctx, i, sl->in, sl->out, &err);
            pthread_mutex_lock(&s->mu);
        }
        if (wait_turn(s, &s->hook_turn, i)) {
            if (rc == 0) {
                pthread_mutex_unlock(&s->mu);
                rc = run_hook(s, sl, i, &err);
                pthread_mutex_lock(&s->mu);
            }
            if (rc)
                s->halt = true;
            s->hook_turn = i + 1;
            pthread_cond_broadcast(&s->turn_cv);
        }
        if (s->stop)
            break;
        sl->rc = rc;
        sl->err = err;
        sl->ready = true;
        pthread_cond_broadcast(&s->ready_cv);
    }
    pthread_mutex_unlock(&s->mu);
    ZSTD_freeDCtx(dctx);
    return NULL;
}

static void stream_stop_workers(fb_archive_stream *s)
{
    if (!s->n_workers)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->work_cv);
    pthread_cond_broadcast(&s->turn_cv);
    pthread_mutex_unlock(&s->mu);
    for (unsigned k = 0; k < s->n_workers; k++)
        pthread_join(s->workers[k], NULL);
    s->n_workers = 0;
}

/* Workers only pay off with more than one frame. Each slot holds a frame,
 * so large frames get fewer slots ahead. */
static void stream_plan(fb_archive_stream *s)
{
    const fb_seek_table *t = &s->r->table;
    s->want_workers = 0;
    s->n_slots = 1;
    if (t->n_frames < 2)
        return;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned w = cpus >= 2 ? STREAM_WORKERS_MAX : 1;
    uint64_t biggest = 1;
    for (size_t i = 0; i < t->n_frames; i++)
        if (t->frames[i].d_size > biggest)
            biggest = t->frames[i].d_size;
    size_t extra = (size_t)(STREAM_AHEAD_BYTES / biggest);
    if (extra > 2)
        extra = 2;
    s->want_workers = w;
    s->n_slots = (size_t)w + 1 + extra;
}

int fb_archive_stream_new(fb_archive_reader *r, fb_archive_stream **out, fb_error *err)
{
    *out = NULL;
    fb_archive_stream *s = calloc(1, sizeof *s);
    if (!s)
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", r->name);
    s->r = r;
    stream_plan(s);
    s->slots = calloc(s->n_slots, sizeof *s->slots);
    s->dctx = fb_archive_dctx_new();
    if (!s->slots || !s->dctx) {
        ZSTD_freeDCtx(s->dctx);
        free(s->slots);
        free(s);
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", r->name);
    }
    int rc = fb_sha256_init(&s->sha, err);
    if (rc) {
        ZSTD_freeDCtx(s->dctx);
        free(s->slots);
        free(s);
        return rc;
    }
    s->sha_live = true;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work_cv, NULL);
    pthread_cond_init(&s->turn_cv, NULL);
    pthread_cond_init(&s->ready_cv, NULL);
    *out = s;
    return 0;
}

int fb_archive_stream_set_frame_hook(fb_archive_stream *s, fb_archive_frame_fn fn, void *ctx,
                                     fb_error *err)
{
    if (s->started)
        return fb_error_set(err, FB_EMISUSE, "%s: frame hook set after the stream started",
                            s->r->name);
    s->hook = fn;
    s->hook_ctx = ctx;
    return 0;
}

/* Read-ahead is only a speed-up: whatever threads start (none is fine) the
 * caller's thread does what no worker does. Started on the first read so
 * the hook is in place before any frame is seen. */
static void stream_start(fb_archive_stream *s)
{
    s->started = true;
    for (unsigned k = 0; k < s->want_workers; k++) {
        if (fb_thread_start(&s->workers[s->n_workers], stream_worker_main, s) != 0)
            break;
        s->n_workers++;
    }
    if (!s->n_workers)
        s->n_slots = 1;
}

static int hash_table_bytes(fb_archive_stream *s, fb_error *err)
{
    fb_archive_reader *r = s->r;
    stream_slot *sl = &s->slots[0];
    if (fb_frame_buffer_grow(&sl->in, &sl->in_cap, TABLE_CHUNK))
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", r->name);
    uint64_t pos = r->table.c_frames_size, left = r->table.table_size;
    while (left > 0) {
        size_t n = left < TABLE_CHUNK ? (size_t)left : TABLE_CHUNK;
        int rc = fb_pread_exact(r->fd, sl->in, n, pos, r->name, "seek table", err);
        if (rc)
            return rc;
        fb_sha256_update(&s->sha, sl->in, n);
        pos += n;
        left -= n;
    }
    return 0;
}

/* Gives the caller's slot back to the workers. */
static void stream_release(fb_archive_stream *s)
{
    if (!s->holding)
        return;
    s->holding = false;
    if (!s->n_workers)
        return;
    pthread_mutex_lock(&s->mu);
    s->slots[(s->next_frame - 1) % s->n_slots].ready = false;
    s->released = s->next_frame;
    pthread_cond_broadcast(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
}

/* The slot of frame next_frame once it has had its turn (on a worker or
 * right here). */
static int stream_take(fb_archive_stream *s, stream_slot **out, fb_error *err)
{
    size_t i = s->next_frame;
    stream_slot *sl = &s->slots[i % s->n_slots];
    *out = sl;
    if (!s->n_workers)
        return load_inline(s, sl, i, err);
    pthread_mutex_lock(&s->mu);
    while (!sl->ready)
        pthread_cond_wait(&s->ready_cv, &s->mu);
    int rc = sl->rc;
    if (rc && err)
        *err = sl->err;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int stream_step(fb_archive_stream *s, const uint8_t **data, size_t *len, fb_error *err)
{
    fb_archive_reader *r = s->r;
    if (!s->started)
        stream_start(s);
    /* Frames of zero bytes are checked and hashed but not returned, since an
     * empty result means the end. */
    while (s->next_frame < r->table.n_frames) {
        stream_release(s);
        const fb_frame_entry *f = &r->table.frames[s->next_frame];
        stream_slot *sl;
        int rc = stream_take(s, &sl, err);
        if (rc)
            return rc;
        s->next_frame++;
        s->holding = true;
        if (f->d_size > 0) {
            *data = sl->out;
            *len = f->d_size;
            return 0;
        }
    }
    stream_release(s);
    stream_stop_workers(s);
    int rc = hash_table_bytes(s, err);
    if (rc)
        return rc;
    fb_sha256_final(&s->sha, s->digest);
    fb_sha256_fini(&s->sha);
    s->sha_live = false;
    s->done = true;
    return 0;
}

int fb_archive_stream_next(fb_archive_stream *s, const uint8_t **data, size_t *len,
                           fb_error *err)
{
    *data = NULL;
    *len = 0;
    if (s->failed)
        return fb_error_set(err, FB_EMISUSE, "%s: archive stream used after an error",
                            s->r->name);
    if (s->done)
        return 0;
    int rc = stream_step(s, data, len, err);
    if (rc) {
        s->failed = true;
        stream_stop_workers(s);
        *data = NULL;
        *len = 0;
    }
    return rc;
}

int fb_archive_stream_file_sha256(fb_archive_stream *s, uint8_t out[FB_SHA256_LEN],
                                  fb_error *err)
{
    if (!s->done)
        return fb_error_set(err, FB_EMISUSE,
                            "%s: archive hash asked for before the end of the stream",
                            s->r->name);
    memcpy(out, s->digest, FB_SHA256_LEN);
    return 0;
}

void fb_archive_stream_free(fb_archive_stream *s)
{
    if (!s)
        return;
    stream_stop_workers(s);
    if (s->sha_live)
        fb_sha256_fini(&s->sha);
    for (size_t k = 0; k < s->n_slots; k++) {
        free(s->slots[k].in);
        free(s->slots[k].out);
    }
    free(s->slots);
    ZSTD_freeDCtx(s->dctx);
    pthread_cond_destroy(&s->ready_cv);
    pthread_cond_destroy(&s->turn_cv);
    pthread_cond_destroy(&s->work_cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
