/* The frame ring of the archive writer: compression workers, the hashing
 * turn and the ordered output (see frame_ring_i.h). */
#include "frame_ring_i.h"
#include "thread_i.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

#define WRITEBACK_CHUNK (8u * 1024 * 1024)
#define THREADS_AUTO_MAX 64

unsigned fb_archive_writer_resolve_threads(unsigned threads)
{
    if (threads)
        return threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    if (n > THREADS_AUTO_MAX)
        n = THREADS_AUTO_MAX;
    return (unsigned)n;
}

/* Records the first error; the ring is unusable from then on. */
static int ring_fail(fb_frame_ring *g, int code, int sys_errno, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int ring_fail(fb_frame_ring *g, int code, int sys_errno, const char *fmt, ...)
{
    if (g->failed)
        return g->failed;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->error.message, sizeof g->error.message, fmt, ap);
    va_end(ap);
    g->error.code = code;
    g->error.sys_errno = sys_errno;
    g->failed = code;
    return code;
}

/* ---- output ---- */

/* Writes len bytes to fd (the filling thread). */
static int write_all(fb_frame_ring *g, const uint8_t *p, size_t len)
{
    while (len) {
        ssize_t n = write(g->fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            return ring_fail(g, FB_EIO, e, "%s: write: %s", g->name, strerror(e));
        }
        if (n == 0)
            return ring_fail(g, FB_EIO, 0, "%s: write: wrote nothing", g->name);
        p += n;
        len -= (size_t)n;
        g->c_total += (uint64_t)n;
    }
    /* Start the writeback of what is written so far, so the caller's fsync
     * at the end waits for the last few MiB instead of the whole archive,
     * and the disk works while we compress. Only a hint: an error (say, fd
     * is a pipe) changes nothing, and a failed writeback is still reported
     * by that fsync. */
    if (g->c_total - g->flushed >= WRITEBACK_CHUNK) {
        (void)sync_file_range(g->fd, (off64_t)g->flushed, (off64_t)(g->c_total - g->flushed),
                              SYNC_FILE_RANGE_WRITE);
        g->flushed = g->c_total;
    }
    return 0;
}

static int push_frame_entry(fb_frame_ring *g, uint32_t c_size, uint32_t d_size,
                            uint32_t checksum, fb_error *err)
{
    if (g->n_frames == g->cap_frames) {
        size_t cap = g->cap_frames ? g->cap_frames * 2 : 64;
        fb_frame_entry *f = realloc(g->frames, cap * sizeof *f);
        if (!f)
            return fb_error_set(err, FB_ENOMEM, "%s: out of memory for the seek table", g->name);
        g->frames = f;
        g->cap_frames = cap;
    }
    fb_frame_entry *e = &g->frames[g->n_frames++];
    memset(e, 0, sizeof *e);
    e->c_size = c_size;
    e->d_size = d_size;
    e->checksum = checksum;
    return 0;
}

/* The in-order part of compressed frame `seq` (slot s, zstd result r):
 * its seek table entry and the archive hash. */
static int hash_frame(fb_frame_ring *g, fb_frame_slot *s, size_t r, uint64_t seq,
                      fb_error *err)
{
    if (ZSTD_isError(r))
        return fb_error_set(err,
                            ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation ? FB_ENOMEM
                                                                                 : FB_EIO,
                            "%s: zstd compression of frame %llu failed: %s", g->name,
                            (unsigned long long)seq, ZSTD_getErrorName(r));
    /* A frame always ends with its 4-byte content checksum (checksumFlag),
     * which is the low 32 bits of XXH64: what the seek table records. */
    if (r < 4 || r > UINT32_MAX)
        return fb_error_set(err, FB_EIO, "%s: zstd produced a frame of unexpected size %zu",
                            g->name, r);
    const uint8_t *t = s->out + r - 4;
    uint32_t checksum = (uint32_t)t[0] | (uint32_t)t[1] << 8 | (uint32_t)t[2] << 16 |
                        (uint32_t)t[3] << 24;
    int rc = push_frame_entry(g, (uint32_t)r, (uint32_t)s->in_len, checksum, err);
    if (rc)
        return rc;
    s->entry = g->frames[g->n_frames - 1];
    if (g->hash_output)
        fb_sha256_update(&g->out_hash, s->out, r);
    return 0;
}

/* Called with mu held by a worker that found no one hashing: hashes every
 * compressed frame that is next in order, dropping mu around each. */
static void hashing_turn(fb_frame_ring *g)
{
    g->hashing = true;
    while (!g->stop && !g->async_code && g->hashed < g->taken) {
        fb_frame_slot *s = &g->slots[g->hashed % g->n_slots];
        if (!s->done)
            break;
        size_t r = s->result;
        uint64_t seq = g->hashed;
        pthread_mutex_unlock(&g->mu);
        fb_error e;
        fb_error_clear(&e);
        int rc = hash_frame(g, s, r, seq, &e);
        pthread_mutex_lock(&g->mu);
        if (rc) {
            g->async_code = rc;
            g->async_error = e;
        } else {
            g->hashed++;
        }
        pthread_cond_broadcast(&g->done_cv);
    }
    g->hashing = false;
    pthread_cond_broadcast(&g->done_cv);
}

/* ---- compression workers ---- */

static void *worker_main(void *arg)
{
    fb_frame_ring *g = arg;
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    size_t setup = cctx ? 0 : (size_t)-ZSTD_error_memory_allocation;
    if (cctx) {
        size_t r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, g->level);
        if (!ZSTD_isError(r))
            r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
        if (!ZSTD_isError(r))
            r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
        if (ZSTD_isError(r))
            setup = r;
    }

    pthread_mutex_lock(&g->mu);
    for (;;) {
        while (!g->stop && g->taken == g->submitted) {
            g->n_idle++;
            pthread_cond_wait(&g->work_cv, &g->mu);
            g->n_idle--;
        }
        if (g->stop)
            break;
        fb_frame_slot *s = &g->slots[g->taken % g->n_slots];
        g->taken++;
        pthread_mutex_unlock(&g->mu);

        /* One call per frame: the frame is complete, so zstd knows its
         * size (content size in the header, parameters sized to it). */
        size_t r = setup ? setup : ZSTD_compress2(cctx, s->out, g->out_cap, s->in, s->in_len);

        pthread_mutex_lock(&g->mu);
        s->result = r;
        s->done = true;
        if (!g->hashing)
            hashing_turn(g);
    }
    pthread_mutex_unlock(&g->mu);
    ZSTD_freeCCtx(cctx);
    return NULL;
}

static void stop_workers(fb_frame_ring *g)
{
    if (!g->sync_ready)
        return;
    pthread_mutex_lock(&g->mu);
    g->stop = true;
    pthread_cond_broadcast(&g->work_cv);
    pthread_mutex_unlock(&g->mu);
    for (unsigned i = 0; i < g->n_started; i++)
        pthread_join(g->workers[i], NULL);
    g->n_started = 0;
}

/* Takes over the hashing turn's failure, if any (mu held). */
static int take_async(fb_frame_ring *g)
{
    if (!g->async_code)
        return 0;
    if (!g->failed) {
        g->error = g->async_error;
        g->failed = g->async_code;
    }
    return g->failed;
}

/* Writes, in order, the frames that are hashed; first waits until at least
 * `until` frames are. */
static int write_hashed(fb_frame_ring *g, uint64_t until)
{
    pthread_mutex_lock(&g->mu);
    while (!g->async_code && g->hashed < until)
        pthread_cond_wait(&g->done_cv, &g->mu);
    int rc = take_async(g);
    uint64_t upto = g->hashed;
    pthread_mutex_unlock(&g->mu);
    if (rc)
        return rc;
    while (g->written < upto) {
        const fb_frame_slot *s = &g->slots[g->written % g->n_slots];
        rc = write_all(g, s->out, s->result);
        if (rc)
            return rc;
        /* Not g->frames[written]: the hashing turn grows that array with
         * realloc while it runs without mu, so it may move under us. The
         * slot's copy is stable until the slot is refilled, which waits for
         * this write. */
        if (g->on_written)
            g->on_written(g->written_ctx, g->written, s->entry.c_size, s->entry.d_size,
                          s->entry.checksum);
        g->written++;
    }
    return 0;
}

static int start_worker(fb_frame_ring *g)
{
    int e = fb_thread_start(&g->workers[g->n_started], worker_main, g);
    if (e) {
        if (g->n_started)
            return 0; /* the ones running are enough to make progress */
        return ring_fail(g, e == EAGAIN || e == ENOMEM ? FB_ENOMEM : FB_EIO, e,
                         "%s: cannot start a compression thread: %s", g->name, strerror(e));
    }
    g->n_started++;
    return 0;
}

/* Hands the full (or final) current frame to the workers. */
static int submit_current(fb_frame_ring *g)
{
    fb_frame_slot *s = g->cur;
    g->cur = NULL;
    s->d_end = g->d_total;
    pthread_mutex_lock(&g->mu);
    s->done = false;
    g->submitted++;
    /* Workers start on demand so a small archive costs one thread. */
    bool want_worker = g->n_started < g->n_threads &&
                       g->submitted - g->taken > (uint64_t)g->n_idle;
    pthread_cond_signal(&g->work_cv);
    pthread_mutex_unlock(&g->mu);
    if (want_worker) {
        int rc = start_worker(g);
        if (rc)
            return rc;
    }
    return write_hashed(g, 0);
}

/* Makes g->cur a slot ready to be filled, writing out old frames to free one. */
static int acquire_slot(fb_frame_ring *g)
{
    while (g->submitted - g->written >= g->n_slots) {
        int rc = write_hashed(g, g->written + 1);
        if (rc)
            return rc;
    }
    fb_frame_slot *s = &g->slots[g->submitted % g->n_slots];
    /* The slot held frame submitted - n_slots (frames may be shorter than
     * frame_size: fb_frame_ring_end_frame). */
    if (g->before_reuse && g->submitted >= g->n_slots)
        g->before_reuse(g->reuse_ctx, s->d_end);
    if (!s->in) {
        s->in = malloc(g->frame_size);
        s->out = malloc(g->out_cap);
        if (!s->in || !s->out) {
            free(s->in);
            free(s->out);
            s->in = s->out = NULL;
            return ring_fail(g, FB_ENOMEM, 0, "%s: out of memory for frame buffers", g->name);
        }
    }
    s->in_len = 0;
    g->cur = s;
    return 0;
}

int fb_frame_ring_room(fb_frame_ring *g, uint8_t **dst, size_t *room)
{
    if (g->failed)
        return g->failed;
    if (!g->cur) {
        int rc = acquire_slot(g);
        if (rc)
            return rc;
    }
    *dst = g->cur->in + g->cur->in_len;
    *room = g->frame_size - g->cur->in_len;
    return 0;
}

int fb_frame_ring_commit(fb_frame_ring *g, size_t n)
{
    g->cur->in_len += n;
    g->d_total += n;
    if (g->cur->in_len == g->frame_size)
        return submit_current(g);
    return 0;
}

int fb_frame_ring_end_frame(fb_frame_ring *g)
{
    if (g->failed)
        return g->failed;
    if (g->cur && g->cur->in_len)
        return submit_current(g);
    return 0;
}

size_t fb_frame_ring_filled(const fb_frame_ring *g)
{
    return g->cur ? g->cur->in_len : 0;
}

int fb_frame_ring_finish(fb_frame_ring *g, fb_archive_summary *out)
{
    if (g->failed)
        return g->failed;
    if (g->cur) {
        if (g->cur->in_len && submit_current(g))
            return g->failed;
        g->cur = NULL;
    }
    if (write_hashed(g, g->submitted))
        return g->failed;
    pthread_mutex_lock(&g->mu);
    while (g->hashing) /* the turn owns the hash until it lets go */
        pthread_cond_wait(&g->done_cv, &g->mu);
    pthread_mutex_unlock(&g->mu);

    uint8_t *table = NULL;
    size_t table_len = 0;
    fb_error e;
    fb_error_clear(&e);
    int rc = fb_seek_table_encode(g->frames, g->n_frames, true, &table, &table_len, &e);
    if (rc)
        return ring_fail(g, rc, 0, "%s: seek table: %s", g->name, e.message);
    if (g->hash_output)
        fb_sha256_update(&g->out_hash, table, table_len);
    rc = write_all(g, table, table_len);
    free(table);
    if (rc)
        return rc;

    stop_workers(g);
    if (out) {
        memset(out, 0, sizeof *out);
        out->compressed_size = g->c_total;
        out->uncompressed_size = g->d_total;
        out->frames = g->n_frames;
        if (g->hash_output)
            fb_sha256_final(&g->out_hash, out->sha256);
    }
    return 0;
}

/* ---- lifecycle ---- */

int fb_frame_ring_init(fb_frame_ring *g, int fd, const char *name,
                       const fb_archive_writer_options *opts, fb_error *err)
{
    memset(g, 0, sizeof *g);
    g->fd = fd;
    g->name = name;
    g->level = opts->level;
    g->frame_size = (size_t)opts->frame_size;
    g->out_cap = ZSTD_compressBound(g->frame_size);
    g->n_threads = fb_archive_writer_resolve_threads(opts->threads);
    g->n_slots = (size_t)g->n_threads + 2;
    g->hash_output = !opts->no_output_hash;
    g->on_written = opts->on_written;
    g->written_ctx = opts->written_ctx;
    g->slots = calloc(g->n_slots, sizeof *g->slots);
    g->workers = calloc(g->n_threads, sizeof *g->workers);
    if (!g->slots || !g->workers)
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", name);
    if (pthread_mutex_init(&g->mu, NULL))
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", name);
    if (pthread_cond_init(&g->work_cv, NULL)) {
        pthread_mutex_destroy(&g->mu);
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", name);
    }
    if (pthread_cond_init(&g->done_cv, NULL)) {
        pthread_cond_destroy(&g->work_cv);
        pthread_mutex_destroy(&g->mu);
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", name);
    }
    g->sync_ready = true;
    if (g->hash_output) {
        if (fb_sha256_init(&g->out_hash, err))
            return FB_ENOMEM;
        g->out_hash_ready = true;
    }
    return 0;
}

void fb_frame_ring_fini(fb_frame_ring *g)
{
    stop_workers(g);
    if (g->slots) {
        for (size_t i = 0; i < g->n_slots; i++) {
            free(g->slots[i].in);
            free(g->slots[i].out);
        }
    }
    free(g->slots);
    free(g->workers);
    free(g->frames);
    if (g->out_hash_ready)
        fb_sha256_fini(&g->out_hash);
    if (g->sync_ready) {
        pthread_cond_destroy(&g->done_cv);
        pthread_cond_destroy(&g->work_cv);
        pthread_mutex_destroy(&g->mu);
    }
    memset(g, 0, sizeof *g);
}
