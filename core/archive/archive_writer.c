/* archive_writer: produces archive.tar.zst in the seekable layout that
 * docs/archive-format.md describes. libarchive formats the pax tar stream
 * into a callback with no blocking of its own; the stream is cut into frames
 * of exactly frame_size bytes (the last one shorter), each compressed as an
 * independent zstd frame by our own worker threads. A ring of (threads + 2)
 * frame slots bounds the memory whatever the archive size. The seek table
 * goes last.
 *
 * Division of work: the calling thread reads the source files straight into
 * the frame being filled and hashes each file (the bytes are still in cache)
 * and write()s the finished frames in order; the workers compress, and
 * whichever worker finishes the oldest frame not yet hashed takes the
 * "hashing turn": it hashes the compressed bytes into the archive SHA-256 in
 * order and records the frame in the seek table. Hashing the output on the
 * calling thread made it the bottleneck for incompressible data, where
 * compression is cheap. The write()s stay on the calling thread, so the
 * archive's writes are one thread's sequence of calls (fault-injection tests
 * count them per thread). */
#include "fb_archive_writer.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "fb_hash.h"
#include "fb_seek_table.h"

#define THREADS_AUTO_MAX 64
/* Source reads are capped so the bytes are still in cache when hashed. */
#define READ_CHUNK (256u * 1024)
#define WRITEBACK_CHUNK (8u * 1024 * 1024)

typedef struct frame_slot {
    uint8_t *in;      /* frame_size bytes, allocated on first use */
    size_t in_len;
    uint8_t *out;     /* out_cap bytes */
    size_t result;    /* ZSTD_compress2's return value; guarded by mu */
    bool done;        /* compression finished; guarded by mu */
} frame_slot;

/* The first error of the writing turn (a worker), handed to the calling
 * thread under mu. */
typedef struct async_error {
    int code;
    fb_error error;
} async_error;

struct fb_archive_writer {
    int fd;
    char *name;
    int level;
    size_t frame_size;
    size_t out_cap;
    unsigned n_threads;
    const fb_cancel *cancel; /* borrowed; polled per chunk of a file */

    struct archive *ar;
    struct archive_entry *entry;
    /* libarchive converts names from the current locale's charset. Under
     * the "C" locale that conversion fails for every non-ASCII byte, and
     * libarchive then stores that entry's names raw with hdrcharset=BINARY;
     * ASCII names are stored plainly. So the bytes stored never depend on
     * the caller's locale and are never transcoded. */
    locale_t c_locale;

    /* Frame sequence numbers: frame s lives in slots[s % n_slots]. Frames
     * [written, submitted) are with the workers or waiting to be written;
     * cur, when set, is frame `submitted` being filled. */
    frame_slot *slots;
    size_t n_slots;
    frame_slot *cur;
    uint64_t submitted; /* guarded by mu (read by workers) */
    uint64_t taken;     /* guarded by mu */
    uint64_t hashed;    /* guarded by mu: frames hashed and in the seek table */
    bool hashing;       /* guarded by mu: a worker has the hashing turn */
    async_error async;  /* guarded by mu */
    uint64_t written;   /* calling thread only */

    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* a frame was submitted, or stop */
    pthread_cond_t done_cv; /* a frame was hashed, the turn ended, or it failed */
    bool sync_ready;
    pthread_t *workers;
    unsigned n_started;
    unsigned n_idle; /* guarded by mu */
    bool stop;       /* guarded by mu */

    /* Owned by the hashing turn until every frame is hashed, then by the
     * calling thread (the seek table and the summary). */
    fb_sha256 out_hash;
    bool out_hash_ready;
    /* The calling thread's digest of each file, reset per file: a context
     * allocated per file cost ~0.04 s per 100,000 small files. */
    fb_sha256 file_hash;
    fb_frame_entry *frames;
    size_t n_frames, cap_frames;

    uint64_t c_total; /* bytes written to fd */
    uint64_t flushed; /* bytes of fd whose writeback was started */
    uint64_t d_total; /* bytes of tar stream produced */

    int failed;     /* first error code, 0 while healthy */
    fb_error error; /* its message */
    bool finished;
    bool discarding; /* _free: swallow whatever libarchive still emits */
};

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

/* Records the first error; the writer is unusable from then on. */
static int fail(fb_archive_writer *w, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(fb_archive_writer *w, int code, const char *fmt, ...)
{
    if (w->failed)
        return w->failed;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->error.message, sizeof w->error.message, fmt, ap);
    va_end(ap);
    w->error.code = code;
    w->error.sys_errno = 0;
    w->failed = code;
    return code;
}

/* Hands the writer's error to the caller. */
static int report(fb_archive_writer *w, fb_error *err)
{
    if (err)
        *err = w->error;
    return w->failed;
}

static int check_usable(fb_archive_writer *w, fb_error *err)
{
    if (!w)
        return fb_error_set(err, FB_EMISUSE, "archive writer: NULL writer");
    if (w->failed)
        return fb_error_set(err, FB_EMISUSE, "%s: writer unusable after an earlier error: %s",
                            w->name, w->error.message);
    if (w->finished)
        return fb_error_set(err, FB_EMISUSE, "%s: writer already finished", w->name);
    return 0;
}

/* ---- output ---- */

/* Writes len bytes to fd (the calling thread). */
static int write_all(fb_archive_writer *w, const uint8_t *p, size_t len)
{
    while (len) {
        ssize_t n = write(w->fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            fail(w, FB_EIO, "%s: write: %s", w->name, strerror(e));
            w->error.sys_errno = e;
            return FB_EIO;
        }
        if (n == 0)
            return fail(w, FB_EIO, "%s: write: wrote nothing", w->name);
        p += n;
        len -= (size_t)n;
        w->c_total += (uint64_t)n;
    }
    /* Start the writeback of what is written so far, so the caller's fsync
     * at the end waits for the last few MiB instead of the whole archive,
     * and the disk works while we compress. Only a hint: an error (say, fd
     * is a pipe) changes nothing, and a failed writeback is still reported
     * by that fsync. */
    if (w->c_total - w->flushed >= WRITEBACK_CHUNK) {
        (void)sync_file_range(w->fd, (off64_t)w->flushed, (off64_t)(w->c_total - w->flushed),
                              SYNC_FILE_RANGE_WRITE);
        w->flushed = w->c_total;
    }
    return 0;
}

static int push_frame_entry(fb_archive_writer *w, uint32_t c_size, uint32_t d_size,
                            uint32_t checksum, fb_error *err)
{
    if (w->n_frames == w->cap_frames) {
        size_t cap = w->cap_frames ? w->cap_frames * 2 : 64;
        fb_frame_entry *f = realloc(w->frames, cap * sizeof *f);
        if (!f)
            return fb_error_set(err, FB_ENOMEM, "%s: out of memory for the seek table", w->name);
        w->frames = f;
        w->cap_frames = cap;
    }
    fb_frame_entry *e = &w->frames[w->n_frames++];
    memset(e, 0, sizeof *e);
    e->c_size = c_size;
    e->d_size = d_size;
    e->checksum = checksum;
    return 0;
}

/* The in-order part of compressed frame `seq` (slot s, zstd result r):
 * its seek table entry and the archive hash. */
static int hash_frame(fb_archive_writer *w, const frame_slot *s, size_t r, uint64_t seq,
                      fb_error *err)
{
    if (ZSTD_isError(r))
        return fb_error_set(err,
                            ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation ? FB_ENOMEM
                                                                                 : FB_EIO,
                            "%s: zstd compression of frame %llu failed: %s", w->name,
                            (unsigned long long)seq, ZSTD_getErrorName(r));
    /* A frame always ends with its 4-byte content checksum (checksumFlag),
     * which is the low 32 bits of XXH64: what the seek table records. */
    if (r < 4 || r > UINT32_MAX)
        return fb_error_set(err, FB_EIO, "%s: zstd produced a frame of unexpected size %zu",
                            w->name, r);
    const uint8_t *t = s->out + r - 4;
    uint32_t checksum = (uint32_t)t[0] | (uint32_t)t[1] << 8 | (uint32_t)t[2] << 16 |
                        (uint32_t)t[3] << 24;
    int rc = push_frame_entry(w, (uint32_t)r, (uint32_t)s->in_len, checksum, err);
    if (rc)
        return rc;
    fb_sha256_update(&w->out_hash, s->out, r);
    return 0;
}

/* Called with mu held by a worker that found no one hashing: hashes every
 * compressed frame that is next in order, dropping mu around each. */
static void hashing_turn(fb_archive_writer *w)
{
    w->hashing = true;
    while (!w->stop && !w->async.code && w->hashed < w->taken) {
        frame_slot *s = &w->slots[w->hashed % w->n_slots];
        if (!s->done)
            break;
        size_t r = s->result;
        uint64_t seq = w->hashed;
        pthread_mutex_unlock(&w->mu);
        fb_error e;
        fb_error_clear(&e);
        int rc = hash_frame(w, s, r, seq, &e);
        pthread_mutex_lock(&w->mu);
        if (rc) {
            w->async.code = rc;
            w->async.error = e;
        } else {
            w->hashed++;
        }
        pthread_cond_broadcast(&w->done_cv);
    }
    w->hashing = false;
    pthread_cond_broadcast(&w->done_cv);
}

/* ---- compression workers ---- */

static void *worker_main(void *arg)
{
    fb_archive_writer *w = arg;
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    size_t setup = cctx ? 0 : (size_t)-ZSTD_error_memory_allocation;
    if (cctx) {
        size_t r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, w->level);
        if (!ZSTD_isError(r))
            r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
        if (!ZSTD_isError(r))
            r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
        if (ZSTD_isError(r))
            setup = r;
    }

    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->stop && w->taken == w->submitted) {
            w->n_idle++;
            pthread_cond_wait(&w->work_cv, &w->mu);
            w->n_idle--;
        }
        if (w->stop)
            break;
        frame_slot *s = &w->slots[w->taken % w->n_slots];
        w->taken++;
        pthread_mutex_unlock(&w->mu);

        /* One call per frame: the frame is complete, so zstd knows its
         * size (content size in the header, parameters sized to it). */
        size_t r = setup ? setup : ZSTD_compress2(cctx, s->out, w->out_cap, s->in, s->in_len);

        pthread_mutex_lock(&w->mu);
        s->result = r;
        s->done = true;
        if (!w->hashing)
            hashing_turn(w);
    }
    pthread_mutex_unlock(&w->mu);
    ZSTD_freeCCtx(cctx);
    return NULL;
}

static void stop_workers(fb_archive_writer *w)
{
    if (!w->sync_ready)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_broadcast(&w->work_cv);
    pthread_mutex_unlock(&w->mu);
    for (unsigned i = 0; i < w->n_started; i++)
        pthread_join(w->workers[i], NULL);
    w->n_started = 0;
}

/* Takes over the hashing turn's failure, if any (mu held). */
static int take_async(fb_archive_writer *w)
{
    if (!w->async.code)
        return 0;
    if (!w->failed) {
        w->error = w->async.error;
        w->failed = w->async.code;
    }
    return w->failed;
}

/* Writes, in order, the frames that are hashed; first waits until at least
 * `until` frames are. */
static int write_hashed(fb_archive_writer *w, uint64_t until)
{
    pthread_mutex_lock(&w->mu);
    while (!w->async.code && w->hashed < until)
        pthread_cond_wait(&w->done_cv, &w->mu);
    int rc = take_async(w);
    uint64_t upto = w->hashed;
    pthread_mutex_unlock(&w->mu);
    if (rc)
        return rc;
    while (w->written < upto) {
        const frame_slot *s = &w->slots[w->written % w->n_slots];
        rc = write_all(w, s->out, s->result);
        if (rc)
            return rc;
        w->written++;
    }
    return 0;
}

static int start_worker(fb_archive_writer *w)
{
    int e = pthread_create(&w->workers[w->n_started], NULL, worker_main, w);
    if (e) {
        if (w->n_started)
            return 0; /* the ones running are enough to make progress */
        return fail(w, e == EAGAIN || e == ENOMEM ? FB_ENOMEM : FB_EIO,
                    "%s: cannot start a compression thread: %s", w->name, strerror(e));
    }
    w->n_started++;
    return 0;
}

/* Hands the full (or final) current frame to the workers. */
static int submit_current(fb_archive_writer *w)
{
    frame_slot *s = w->cur;
    w->cur = NULL;
    pthread_mutex_lock(&w->mu);
    s->done = false;
    w->submitted++;
    /* Workers start on demand so a small archive costs one thread. */
    bool want_worker = w->n_started < w->n_threads &&
                       w->submitted - w->taken > (uint64_t)w->n_idle;
    pthread_cond_signal(&w->work_cv);
    pthread_mutex_unlock(&w->mu);
    if (want_worker) {
        int rc = start_worker(w);
        if (rc)
            return rc;
    }
    return write_hashed(w, 0);
}

/* Makes w->cur a slot ready to be filled, writing out old frames to free one. */
static int acquire_slot(fb_archive_writer *w)
{
    while (w->submitted - w->written >= w->n_slots) {
        int rc = write_hashed(w, w->written + 1);
        if (rc)
            return rc;
    }
    frame_slot *s = &w->slots[w->submitted % w->n_slots];
    if (!s->in) {
        s->in = malloc(w->frame_size);
        s->out = malloc(w->out_cap);
        if (!s->in || !s->out) {
            free(s->in);
            free(s->out);
            s->in = s->out = NULL;
            return fail(w, FB_ENOMEM, "%s: out of memory for frame buffers", w->name);
        }
    }
    s->in_len = 0;
    w->cur = s;
    return 0;
}

/* libarchive's write callback: every byte of the tar stream passes here.
 *
 * It never reports a failure to libarchive: it records it in the writer
 * (w->failed, via fail()) and swallows the rest, and every caller checks
 * w->failed after each libarchive call. A failed write callback puts
 * libarchive in ARCHIVE_STATE_FATAL, and then archive_write_free() skips
 * archive_write_close(), the only place where libarchive before 3.8.2 frees
 * the client filter's state: 33 bytes allocated by archive_write_open2()
 * leaked by every backup whose write failed (EFBIG, ENOSPC, EIO) while
 * libarchive was writing a tar header. As our failures never make it
 * FATAL, archive_write_free() runs libarchive's own close, which releases
 * everything; what that close still emits is discarded. */
static la_ssize_t on_tar_bytes(struct archive *a, void *ctx, const void *buf, size_t len)
{
    (void)a;
    fb_archive_writer *w = ctx;
    if (w->discarding || w->failed)
        return (la_ssize_t)len;
    const uint8_t *p = buf;
    size_t left = len;
    while (left) {
        if (!w->cur && acquire_slot(w))
            break; /* w->failed says why */
        size_t room = w->frame_size - w->cur->in_len;
        size_t n = left < room ? left : room;
        uint8_t *dst = w->cur->in + w->cur->in_len;
        /* File data is read straight into the frame and libarchive passes
         * our pointer through, so it needs no copy. */
        if (dst != p)
            memmove(dst, p, n);
        w->cur->in_len += n;
        w->d_total += n;
        p += n;
        left -= n;
        if (w->cur->in_len == w->frame_size && submit_current(w))
            break; /* w->failed says why */
    }
    return (la_ssize_t)len;
}

/* ---- lifecycle ---- */

int fb_archive_writer_new(int fd, const fb_archive_writer_options *opts, fb_archive_writer **out,
                          fb_error *err)
{
    *out = NULL;
    if (!opts)
        return fb_error_set(err, FB_EMISUSE, "archive writer: no options");
    const char *name = opts->name ? opts->name : "archive";
    if (opts->level < FB_LEVEL_MIN || opts->level > FB_LEVEL_MAX)
        return fb_error_set(err, FB_EINVAL, "%s: compression level %d out of range %d..%d", name,
                            opts->level, FB_LEVEL_MIN, FB_LEVEL_MAX);
    if (opts->frame_size < FB_FRAME_SIZE_MIN || opts->frame_size > FB_FRAME_SIZE_MAX)
        return fb_error_set(err, FB_EINVAL, "%s: frame size %llu out of range %u..%u", name,
                            (unsigned long long)opts->frame_size, FB_FRAME_SIZE_MIN,
                            FB_FRAME_SIZE_MAX);
    if (opts->threads > FB_THREADS_MAX)
        return fb_error_set(err, FB_EINVAL, "%s: %u compression threads, at most %u allowed",
                            name, opts->threads, FB_THREADS_MAX);
    if (fd < 0)
        return fb_error_set(err, FB_EMISUSE, "%s: invalid file descriptor", name);

    fb_archive_writer *w = calloc(1, sizeof *w);
    if (!w)
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", name);
    w->fd = fd;
    w->cancel = opts->cancel;
    w->level = opts->level;
    w->frame_size = (size_t)opts->frame_size;
    w->out_cap = ZSTD_compressBound(w->frame_size);
    w->n_threads = fb_archive_writer_resolve_threads(opts->threads);
    w->n_slots = (size_t)w->n_threads + 2;
    w->name = strdup(name);
    w->slots = calloc(w->n_slots, sizeof *w->slots);
    w->workers = calloc(w->n_threads, sizeof *w->workers);
    w->c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (!w->name || !w->slots || !w->workers || !w->c_locale)
        goto nomem;
    if (pthread_mutex_init(&w->mu, NULL))
        goto nomem;
    if (pthread_cond_init(&w->work_cv, NULL)) {
        pthread_mutex_destroy(&w->mu);
        goto nomem;
    }
    if (pthread_cond_init(&w->done_cv, NULL)) {
        pthread_cond_destroy(&w->work_cv);
        pthread_mutex_destroy(&w->mu);
        goto nomem;
    }
    w->sync_ready = true;
    if (fb_sha256_init(&w->out_hash, err)) {
        fb_archive_writer_free(w);
        return FB_ENOMEM;
    }
    w->out_hash_ready = true;
    if (fb_sha256_init(&w->file_hash, err)) {
        fb_archive_writer_free(w);
        return FB_ENOMEM;
    }

    w->entry = archive_entry_new();
    w->ar = archive_write_new();
    if (!w->entry || !w->ar)
        goto nomem;
    locale_t prev = uselocale(w->c_locale);
    /* Full pax, not pax-restricted: restricted drops sub-second mtimes
     * unless another attribute already forced an extended header. Zero
     * bytes per block hands every byte to on_tar_bytes at once, and one
     * byte in the last block stops libarchive padding the end to 10 KiB. */
    int r = archive_write_set_format_pax(w->ar);
    if (r == ARCHIVE_OK)
        r = archive_write_set_bytes_per_block(w->ar, 0);
    if (r == ARCHIVE_OK)
        r = archive_write_set_bytes_in_last_block(w->ar, 1);
    if (r == ARCHIVE_OK)
        r = archive_write_open(w->ar, w, NULL, on_tar_bytes, NULL);
    uselocale(prev);
    if (r != ARCHIVE_OK) {
        fb_error_set(err, FB_EIO, "%s: libarchive setup failed: %s", name,
                     archive_error_string(w->ar) ? archive_error_string(w->ar) : "unknown error");
        fb_archive_writer_free(w);
        return FB_EIO;
    }
    *out = w;
    return 0;

nomem:
    fb_archive_writer_free(w);
    return fb_error_set(err, FB_ENOMEM, "%s: out of memory", name);
}

void fb_archive_writer_free(fb_archive_writer *w)
{
    if (!w)
        return;
    stop_workers(w);
    w->discarding = true;
    if (w->ar) {
        locale_t prev = w->c_locale ? uselocale(w->c_locale) : (locale_t)0;
        archive_write_free(w->ar); /* may emit the tar end: swallowed */
        if (w->c_locale)
            uselocale(prev);
    }
    archive_entry_free(w->entry);
    if (w->slots) {
        for (size_t i = 0; i < w->n_slots; i++) {
            free(w->slots[i].in);
            free(w->slots[i].out);
        }
    }
    free(w->slots);
    free(w->workers);
    free(w->frames);
    if (w->out_hash_ready)
        fb_sha256_fini(&w->out_hash);
    fb_sha256_fini(&w->file_hash);
    if (w->sync_ready) {
        pthread_cond_destroy(&w->done_cv);
        pthread_cond_destroy(&w->work_cv);
        pthread_mutex_destroy(&w->mu);
    }
    if (w->c_locale)
        freelocale(w->c_locale);
    free(w->name);
    free(w);
}

/* ---- entries ---- */

/* Paths are relative, with no empty, "." or ".." component: the manifest
 * maps them to the tar stream one to one and a restore must never be led
 * outside its target. */
static int check_rel_path(fb_archive_writer *w, const char *what, const char *path,
                          fb_error *err)
{
    if (!path || !*path)
        return fb_error_set(err, FB_EINVAL, "%s: empty %s", w->name, what);
    size_t len = strlen(path);
    if (len > FB_PATH_MAX)
        return fb_error_set(err, FB_EINVAL, "%s: %s longer than %d bytes: %.64s...", w->name,
                            what, FB_PATH_MAX, path);
    const char *c = path;
    for (;;) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return fb_error_set(err, FB_EINVAL,
                                "%s: %s %s: must be relative without empty, '.' or '..' parts",
                                w->name, what, path);
        if (!slash)
            break;
        c = slash + 1;
    }
    return 0;
}

/* fb_entry_type_name lives in another module; messages need only this. */
static const char *type_word(fb_entry_type t)
{
    switch (t) {
    case FB_ENTRY_FILE: return "file";
    case FB_ENTRY_DIR: return "dir";
    case FB_ENTRY_SYMLINK: return "symlink";
    case FB_ENTRY_HARDLINK: return "hardlink";
    }
    return "unknown";
}

static int start_entry(fb_archive_writer *w, const char *path, const fb_entry_meta *meta,
                       fb_entry_type type, fb_error *err)
{
    int rc = check_usable(w, err);
    if (rc)
        return rc;
    rc = check_rel_path(w, "path", path, err);
    if (rc)
        return rc;
    if (!meta)
        return fb_error_set(err, FB_EMISUSE, "%s: %s: no metadata", w->name, path);
    if (meta->type != type)
        return fb_error_set(err, FB_EMISUSE, "%s: %s: entry type %s given to the %s writer",
                            w->name, path, type_word(meta->type), type_word(type));
    if (meta->mtime_nsec > 999999999u)
        return fb_error_set(err, FB_EINVAL, "%s: %s: mtime nanoseconds %u out of range",
                            w->name, path, meta->mtime_nsec);

    int64_t sec = meta->mtime;
    long nsec = (long)meta->mtime_nsec;
    /* libarchive prints a pax time as sec.nsec with the sign of sec applied
     * to the whole: a negative time with a fraction has to be handed to it
     * as the next second up with the complementary fraction. */
    if (sec < 0 && nsec) {
        if (sec == -1)
            return fb_error_set(err, FB_EUNSUPPORTED,
                                "%s: %s: mtime between -1 and 0 seconds cannot be stored in pax",
                                w->name, path);
        sec += 1;
        nsec = 1000000000L - nsec;
    }

    struct archive_entry *e = w->entry;
    archive_entry_clear(e);
    archive_entry_copy_pathname(e, path);
    archive_entry_set_perm(e, (mode_t)(meta->mode & 07777));
    archive_entry_set_uid(e, (la_int64_t)meta->uid);
    archive_entry_set_gid(e, (la_int64_t)meta->gid);
    archive_entry_set_mtime(e, (time_t)sec, nsec);
    switch (type) {
    case FB_ENTRY_FILE:
        if (meta->size > INT64_MAX)
            return fb_error_set(err, FB_EINVAL, "%s: %s: size too large", w->name, path);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_size(e, (la_int64_t)meta->size);
        break;
    case FB_ENTRY_DIR:
        archive_entry_set_filetype(e, AE_IFDIR);
        archive_entry_set_size(e, 0);
        break;
    case FB_ENTRY_SYMLINK:
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_size(e, 0);
        break;
    case FB_ENTRY_HARDLINK:
        /* A tar hardlink carries no data of its own. */
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_size(e, 0);
        break;
    }
    return 0;
}

/* Converts a libarchive failure into the writer's error. */
static int archive_failed(fb_archive_writer *w, const char *path, const char *what)
{
    if (w->failed)
        return w->failed; /* our callback failed: its error says why */
    const char *msg = archive_error_string(w->ar);
    return fail(w, FB_EIO, "%s: %s: %s: %s", w->name, path, what, msg ? msg : "libarchive error");
}

static int write_header(fb_archive_writer *w, const char *path, fb_error *err)
{
    locale_t prev = uselocale(w->c_locale);
    int r = archive_write_header(w->ar, w->entry);
    uselocale(prev);
    /* ARCHIVE_WARN here means a name could not be put into the locale's
     * charset and was stored as raw bytes instead: exactly what we want. */
    if (w->failed || r < ARCHIVE_WARN) {
        archive_failed(w, path, "writing tar header");
        return report(w, err);
    }
    return 0;
}

static int end_entry(fb_archive_writer *w, const char *path, fb_error *err)
{
    if (archive_write_finish_entry(w->ar) != ARCHIVE_OK || w->failed) {
        archive_failed(w, path, "finishing tar entry");
        return report(w, err);
    }
    return 0;
}

int fb_archive_writer_add_dir(fb_archive_writer *w, const char *path, const fb_entry_meta *meta,
                              fb_error *err)
{
    int rc = start_entry(w, path, meta, FB_ENTRY_DIR, err);
    if (!rc)
        rc = write_header(w, path, err);
    if (!rc)
        rc = end_entry(w, path, err);
    return rc;
}

int fb_archive_writer_add_symlink(fb_archive_writer *w, const char *path,
                                  const fb_entry_meta *meta, const char *target, fb_error *err)
{
    int rc = start_entry(w, path, meta, FB_ENTRY_SYMLINK, err);
    if (rc)
        return rc;
    if (!target || !*target)
        return fb_error_set(err, FB_EINVAL, "%s: %s: empty symlink target", w->name, path);
    if (strlen(target) > FB_PATH_MAX)
        return fb_error_set(err, FB_EINVAL, "%s: %s: symlink target longer than %d bytes",
                            w->name, path, FB_PATH_MAX);
    archive_entry_copy_symlink(w->entry, target);
    rc = write_header(w, path, err);
    if (!rc)
        rc = end_entry(w, path, err);
    return rc;
}

int fb_archive_writer_add_hardlink(fb_archive_writer *w, const char *path,
                                   const fb_entry_meta *meta, const char *link_path,
                                   fb_error *err)
{
    int rc = start_entry(w, path, meta, FB_ENTRY_HARDLINK, err);
    if (rc)
        return rc;
    rc = check_rel_path(w, "hardlink target", link_path, err);
    if (rc)
        return rc;
    archive_entry_copy_hardlink(w->entry, link_path);
    rc = write_header(w, path, err);
    if (!rc)
        rc = end_entry(w, path, err);
    return rc;
}

int fb_archive_writer_add_file(fb_archive_writer *w, const char *path, const fb_entry_meta *meta,
                               int src_fd, fb_archive_file_result *res, fb_error *err)
{
    int rc = start_entry(w, path, meta, FB_ENTRY_FILE, err);
    if (rc)
        return rc;
    fb_sha256 *h = &w->file_hash;
    rc = fb_sha256_reset(h, err);
    if (rc)
        return rc;
    rc = write_header(w, path, err);
    if (rc)
        goto out;
    /* Everything passed to the callback so far precedes the file's data. */
    uint64_t offset = w->d_total;

    uint64_t left = meta->size;
    while (left) {
        /* Per chunk: one large file must not keep an interrupted backup
         * running for minutes. */
        if (fb_cancelled(w->cancel)) {
            fail(w, FB_EINTERRUPTED, "%s: interrupted while storing %s", w->name, path);
            rc = report(w, err);
            goto out;
        }
        if (!w->cur && acquire_slot(w)) {
            rc = report(w, err);
            goto out;
        }
        size_t room = w->frame_size - w->cur->in_len;
        size_t want = room < READ_CHUNK ? room : READ_CHUNK;
        if ((uint64_t)want > left)
            want = (size_t)left;
        uint8_t *dst = w->cur->in + w->cur->in_len;
        ssize_t got = read(src_fd, dst, want);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            fail(w, FB_EIO, "%s: read: %s", path, strerror(e));
            w->error.sys_errno = e;
            rc = report(w, err);
            goto out;
        }
        if (got == 0) {
            fail(w, FB_ECHANGED, "%s: shrank while being read (%llu of %llu bytes)", path,
                 (unsigned long long)(meta->size - left), (unsigned long long)meta->size);
            rc = report(w, err);
            goto out;
        }
        fb_sha256_update(h, dst, (size_t)got);
        la_ssize_t n = archive_write_data(w->ar, dst, (size_t)got);
        if (n != got || w->failed) {
            archive_failed(w, path, "writing file data");
            rc = report(w, err);
            goto out;
        }
        left -= (uint64_t)got;
    }
    rc = end_entry(w, path, err);
    if (rc)
        goto out;
    if (res) {
        res->offset = offset;
        fb_sha256_final(h, res->sha256);
    }
out:
    return rc;
}

/* ---- the headers of a plain small file, formatted here ----
 *
 * libarchive's pax writer copies the entry, converts its strings and
 * formats two headers per file: ~1.6 us a file, the largest cost left on
 * the writing thread for 100,000 small files. For the plainest file (ASCII
 * name that fits the ustar name field even as its PaxHeader name, ids and
 * times in ustar range) the same bytes are formatted here: the optional
 * pax 'x' header holding only the mtime with its fraction, then the ustar
 * header, exactly as libarchive writes them (test_archive checks the two
 * byte for byte). Everything else still goes through libarchive. */

#define TAR_BLOCK 512u
#define PAX_PREFIX "PaxHeader/"

static void put_octal(uint8_t *field, size_t digits, uint64_t v)
{
    for (size_t i = digits; i-- > 0; v >>= 3)
        field[i] = (uint8_t)('0' + (v & 7));
}

/* A ustar block as libarchive formats it for pax: numbers as 6 or 11 octal
 * digits with a space (and a NUL after the short ones). */
static void ustar_block(uint8_t *b, const char *name, size_t name_len, unsigned mode,
                        const fb_entry_meta *meta, uint64_t size, char type)
{
    memset(b, 0, TAR_BLOCK);
    memcpy(b, name, name_len);
    put_octal(b + 100, 6, mode);
    b[106] = ' ';
    put_octal(b + 108, 6, meta->uid);
    b[114] = ' ';
    put_octal(b + 116, 6, meta->gid);
    b[122] = ' ';
    put_octal(b + 124, 11, size);
    b[135] = ' ';
    put_octal(b + 136, 11, (uint64_t)meta->mtime);
    b[147] = ' ';
    memset(b + 148, ' ', 8);
    b[156] = (uint8_t)type;
    memcpy(b + 257, "ustar\0" "00", 8);
    put_octal(b + 329, 6, 0);
    b[335] = ' ';
    put_octal(b + 337, 6, 0);
    b[343] = ' ';
    unsigned sum = 0;
    for (size_t i = 0; i < TAR_BLOCK; i++)
        sum += b[i];
    put_octal(b + 148, 6, sum);
    b[154] = '\0';
}

/* Can this file's headers be formatted here? */
static bool plain_file(const char *path, size_t len, const fb_entry_meta *meta)
{
    if (len + sizeof PAX_PREFIX - 1 >= 100 || meta->uid > 0777777u || meta->gid > 0777777u ||
        meta->mtime < 0 || meta->mtime >= 0x7fffffff || meta->size > 077777777777u)
        return false;
    for (size_t i = 0; i < len; i++)
        if (path[i] < 0x20 || path[i] > 0x7e)
            return false;
    return true;
}

/* "LEN mtime=SEC[.FRACTION]\n", the fraction without trailing zeros; LEN
 * counts its own digits. Returns the record's length. */
static size_t pax_mtime_record(char *out, size_t cap, int64_t sec, uint32_t nsec)
{
    char value[40];
    int n = snprintf(value, sizeof value, "%lld", (long long)sec);
    if (nsec) {
        int digits = 9;
        while (nsec % 10 == 0) {
            nsec /= 10;
            digits--;
        }
        n += snprintf(value + n, sizeof value - (size_t)n, ".%0*u", digits, nsec);
    }
    size_t body = (size_t)n + sizeof " mtime=\n" - 1, total = body + 1;
    for (size_t p = 10; total >= p; p *= 10)
        total++;
    snprintf(out, cap, "%zu mtime=%s\n", total, value);
    return total;
}

/* Formats the headers of a plain file into hdr (3 blocks); returns their length. */
static size_t plain_headers(uint8_t *hdr, const char *path, size_t len, const fb_entry_meta *meta)
{
    unsigned mode = meta->mode & 07777;
    size_t at = 0;
    if (meta->mtime_nsec) {
        const char *slash = strrchr(path, '/');
        size_t dir = slash ? (size_t)(slash - path) + 1 : 0;
        char name[100];
        memcpy(name, path, dir);
        memcpy(name + dir, PAX_PREFIX, sizeof PAX_PREFIX - 1);
        memcpy(name + dir + sizeof PAX_PREFIX - 1, path + dir, len - dir);
        char rec[96];
        size_t rlen = pax_mtime_record(rec, sizeof rec, meta->mtime, meta->mtime_nsec);
        /* libarchive gives the 'x' header the permission bits only. */
        ustar_block(hdr, name, len + sizeof PAX_PREFIX - 1, mode & 0777, meta, rlen, 'x');
        memset(hdr + TAR_BLOCK, 0, TAR_BLOCK);
        memcpy(hdr + TAR_BLOCK, rec, rlen);
        at = 2 * TAR_BLOCK;
    }
    ustar_block(hdr + at, path, len, mode, meta, meta->size, '0');
    return at + TAR_BLOCK;
}

/* Header, data and padding of a plain file, straight into the frames. */
static int add_plain_data(fb_archive_writer *w, const char *path, size_t len,
                          const fb_entry_meta *meta, const void *data, uint64_t *offset)
{
    static const uint8_t zeros[TAR_BLOCK];
    uint8_t hdr[3 * TAR_BLOCK];
    size_t n = plain_headers(hdr, path, len, meta);
    on_tar_bytes(w->ar, w, hdr, n);
    *offset = w->d_total;
    size_t size = (size_t)meta->size;
    if (size)
        on_tar_bytes(w->ar, w, data, size);
    if (size % TAR_BLOCK)
        on_tar_bytes(w->ar, w, zeros, TAR_BLOCK - size % TAR_BLOCK);
    return w->failed;
}

int fb_archive_writer_add_data(fb_archive_writer *w, const char *path, const fb_entry_meta *meta,
                               const void *data, fb_archive_file_result *res, fb_error *err)
{
    int rc = start_entry(w, path, meta, FB_ENTRY_FILE, err);
    if (rc)
        return rc;
    if (meta->size && !data)
        return fb_error_set(err, FB_EMISUSE, "%s: %s: no data", w->name, path);
    fb_sha256 *h = &w->file_hash;
    if ((rc = fb_sha256_reset(h, err)))
        return rc;
    size_t len = (size_t)meta->size, plen = strlen(path);
    uint64_t offset;
    if (plain_file(path, plen, meta)) {
        if (add_plain_data(w, path, plen, meta, data, &offset))
            return report(w, err);
    } else {
        if ((rc = write_header(w, path, err)))
            return rc;
        offset = w->d_total;
        la_ssize_t n = len ? archive_write_data(w->ar, data, len) : 0;
        if (n != (la_ssize_t)len || w->failed) {
            archive_failed(w, path, "writing file data");
            return report(w, err);
        }
        if ((rc = end_entry(w, path, err)))
            return rc;
    }
    fb_sha256_update(h, data, len);
    if (res) {
        res->offset = offset;
        fb_sha256_final(h, res->sha256);
    }
    return 0;
}

/* ---- the end ---- */

int fb_archive_writer_finish(fb_archive_writer *w, fb_archive_summary *out, fb_error *err)
{
    int rc = check_usable(w, err);
    if (rc)
        return rc;
    locale_t prev = uselocale(w->c_locale);
    int r = archive_write_close(w->ar); /* the two zero blocks that end a tar */
    uselocale(prev);
    if (r != ARCHIVE_OK || w->failed) {
        archive_failed(w, "(end)", "closing tar stream");
        return report(w, err);
    }
    if (w->cur) {
        if (w->cur->in_len && submit_current(w))
            return report(w, err);
        w->cur = NULL;
    }
    if (write_hashed(w, w->submitted))
        return report(w, err);
    pthread_mutex_lock(&w->mu);
    while (w->hashing) /* the turn owns the hash until it lets go */
        pthread_cond_wait(&w->done_cv, &w->mu);
    pthread_mutex_unlock(&w->mu);

    uint8_t *table = NULL;
    size_t table_len = 0;
    fb_error e;
    fb_error_clear(&e);
    rc = fb_seek_table_encode(w->frames, w->n_frames, true, &table, &table_len, &e);
    if (rc) {
        fail(w, rc, "%s: seek table: %s", w->name, e.message);
        return report(w, err);
    }
    fb_sha256_update(&w->out_hash, table, table_len);
    rc = write_all(w, table, table_len);
    free(table);
    if (rc)
        return report(w, err);

    w->finished = true;
    stop_workers(w);
    if (out) {
        memset(out, 0, sizeof *out);
        out->compressed_size = w->c_total;
        out->uncompressed_size = w->d_total;
        out->frames = w->n_frames;
        fb_sha256_final(&w->out_hash, out->sha256);
    }
    return 0;
}
