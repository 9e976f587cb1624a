/* Random and sequential access to archive.tar.zst by frames.
 *
 * Random access (pread) serves any byte range of the tar stream from the
 * frames that cover it, through the shared fb_frame_cache; the sequential
 * stream (verify, restore) bypasses the cache and hashes the whole file.
 * Every frame is decoded under the same checks, because the archive is
 * hostile input and a wrong byte must never reach a caller.
 *
 * Frames are decoded in one shot into a buffer of exactly the declared size.
 * One-shot decoding ignores ZSTD_d_windowLogMax (the output buffer is the
 * window), so the window size is checked from the frame header by hand; the
 * parameter is still set so a streaming decoder could never exceed it. */
#include "fb_archive_reader.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>
#include <zstd_errors.h>

#include "fb_hash.h"
#include "frame_cache_i.h"
#include "frame_proof_i.h"
#include "seek_table_i.h"

/* Idle decompression contexts kept for reuse; more threads than this still
 * work, they create and free their own. */
#define DCTX_POOL_MAX 8
/* The stream hashes the seek table in pieces of this size. */
#define TABLE_CHUNK (64u * 1024)
/* Read-ahead of the sequential stream: decoding threads, and the bytes of
 * decoded frames held ahead of the caller beyond the minimum of one slot
 * per worker plus the one the caller holds. */
#define STREAM_WORKERS_MAX 2
#define STREAM_AHEAD_BYTES (8u * 1024 * 1024)

struct fb_archive_reader {
    int fd;
    char *name;
    uint64_t file_size;
    fb_seek_table table;
    fb_frame_cache *cache; /* borrowed, may be NULL */
    uint64_t key;

    pthread_mutex_t pool_lock;
    ZSTD_DCtx *pool[DCTX_POOL_MAX];
    size_t pool_n;

    /* Without a shared cache, the last decoded frame is kept so sequential
     * small reads do not decode the same frame again and again. The frames
     * live in a private zero-byte cache, which only does reference counting. */
    fb_frame_cache *own_cache;
    pthread_mutex_t slot_lock;
    fb_frame_ref *slot_ref;
    size_t slot_frame;

    /* Random access maps an offset to a frame through the sizes of every
     * frame before it, so frames 0 .. proven-1 are proven against the
     * table (frame_proof_i.h) before any offset at or past them is
     * served. Proven in order, on demand: a small file near the start of
     * a large archive costs a few header reads. `proven` is read without
     * the lock (acquire) and advanced under prove_lock (release). */
    pthread_mutex_t prove_lock;
    atomic_size_t proven;
    size_t bad_frame;  /* guarded by prove_lock: first frame whose proof failed */
    fb_error bad_err;  /* guarded by prove_lock: why */
    fb_archive_proof identity; /* the file as fstat saw it at open (frames unused) */
    /* decoded[i]: frame i decoded once to exactly its declared size, so
     * its size is proven by its content, not only by its header (see
     * fb_archive_reader_pread_anchored). Set and read with atomics. */
    _Atomic unsigned char *decoded;
    bool keep_frames; /* the key's frames outlive r (fb_archive_reader_keep_frames) */
};

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

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- decompression contexts ---- */

static ZSTD_DCtx *dctx_new(void)
{
    ZSTD_DCtx *d = ZSTD_createDCtx();
    if (d && ZSTD_isError(ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, FB_FRAME_WINDOW_LOG_MAX))) {
        ZSTD_freeDCtx(d);
        return NULL;
    }
    return d;
}

static ZSTD_DCtx *dctx_acquire(fb_archive_reader *r)
{
    ZSTD_DCtx *d = NULL;
    pthread_mutex_lock(&r->pool_lock);
    if (r->pool_n > 0)
        d = r->pool[--r->pool_n];
    pthread_mutex_unlock(&r->pool_lock);
    return d ? d : dctx_new();
}

static void dctx_release(fb_archive_reader *r, ZSTD_DCtx *d)
{
    pthread_mutex_lock(&r->pool_lock);
    if (r->pool_n < DCTX_POOL_MAX) {
        r->pool[r->pool_n++] = d;
        d = NULL;
    }
    pthread_mutex_unlock(&r->pool_lock);
    ZSTD_freeDCtx(d);
}

/* ---- one frame ---- */

/* Decodes frame i from its c_size compressed bytes in `in` into `out`
 * (capacity exactly d_size). */
static int decode_frame(fb_archive_reader *r, ZSTD_DCtx *dctx, size_t i, const uint8_t *in,
                        uint8_t *out, fb_error *err)
{
    const fb_frame_entry *f = &r->table.frames[i];
    int rc = fb_frame_header_check(in, f->c_size, i, r->name, err);
    if (rc)
        return rc;
    size_t csz = ZSTD_findFrameCompressedSize(in, f->c_size);
    if (ZSTD_isError(csz))
        return fb_error_set(err, FB_ECORRUPT, "%s: frame %zu: %s", r->name, i,
                            ZSTD_getErrorName(csz));
    if (csz != f->c_size)
        return fb_error_set(err, FB_ECORRUPT,
                            "%s: frame %zu: zstd frame is %zu bytes, seek table says %" PRIu32,
                            r->name, i, csz, f->c_size);
    unsigned long long fcs = ZSTD_getFrameContentSize(in, f->c_size);
    if (fcs == ZSTD_CONTENTSIZE_ERROR)
        return fb_error_set(err, FB_ECORRUPT, "%s: frame %zu: bad frame header", r->name, i);
    if (fcs == ZSTD_CONTENTSIZE_UNKNOWN)
        return fb_error_set(err, FB_ECORRUPT,
                            "%s: frame %zu: the frame header does not declare its content size",
                            r->name, i);
    if (fcs != f->d_size)
        return fb_error_set(err, FB_ECORRUPT,
                            "%s: frame %zu: header says %llu bytes, seek table says %" PRIu32,
                            r->name, i, fcs, f->d_size);
    if (r->table.has_checksums && get_le32(in + f->c_size - 4) != f->checksum)
        return fb_error_set(err, FB_ECORRUPT,
                            "%s: frame %zu: checksum 0x%08" PRIx32
                            " differs from the seek table's 0x%08" PRIx32,
                            r->name, i, get_le32(in + f->c_size - 4), f->checksum);
    size_t n = ZSTD_decompressDCtx(dctx, out, f->d_size, in, f->c_size);
    if (ZSTD_isError(n)) {
        if (ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall)
            return fb_error_set(err, FB_ECORRUPT,
                                "%s: frame %zu: decompresses to more than the %" PRIu32
                                " bytes the seek table says",
                                r->name, i, f->d_size);
        return fb_error_set(err, FB_ECORRUPT, "%s: frame %zu: %s", r->name, i,
                            ZSTD_getErrorName(n));
    }
    if (n != f->d_size)
        return fb_error_set(err, FB_ECORRUPT,
                            "%s: frame %zu: decompresses to %zu bytes, seek table says %" PRIu32,
                            r->name, i, n, f->d_size);
    return 0;
}

/* Reads and decodes frame i into a new malloc'd buffer of d_size bytes. */
static int load_frame(fb_archive_reader *r, size_t i, uint8_t **out, fb_error *err)
{
    const fb_frame_entry *f = &r->table.frames[i];
    *out = NULL;
    uint8_t *in = malloc(f->c_size);
    uint8_t *data = malloc(f->d_size ? f->d_size : 1);
    ZSTD_DCtx *dctx = dctx_acquire(r);
    int rc = 0;
    if (!in || !data || !dctx) {
        rc = fb_error_set(err, FB_ENOMEM, "%s: frame %zu: out of memory", r->name, i);
        goto out;
    }
    char what[64];
    snprintf(what, sizeof what, "frame %zu", i);
    rc = fb_pread_exact(r->fd, in, f->c_size, f->c_offset, r->name, what, err);
    if (rc == 0)
        rc = decode_frame(r, dctx, i, in, data, err);
    if (rc == 0)
        atomic_store_explicit(&r->decoded[i], 1, memory_order_release);
out:
    if (dctx)
        dctx_release(r, dctx);
    free(in);
    if (rc) {
        free(data);
        return rc;
    }
    *out = data;
    return 0;
}

/* A referenced frame i, from the shared cache, the private slot, or decoded. */
static int get_frame(fb_archive_reader *r, size_t i, fb_frame_cache **owner, fb_frame_ref **ref,
                     fb_error *err)
{
    fb_frame_cache *cache = r->cache ? r->cache : r->own_cache;
    *owner = cache;
    *ref = NULL;
    if (r->cache) {
        *ref = fb_frame_cache_lookup(cache, r->key, (uint32_t)i);
        if (*ref)
            return 0;
    } else {
        pthread_mutex_lock(&r->slot_lock);
        if (r->slot_ref && r->slot_frame == i) {
            fb_frame_ref_retain(cache, r->slot_ref);
            *ref = r->slot_ref;
        }
        pthread_mutex_unlock(&r->slot_lock);
        if (*ref)
            return 0;
    }
    uint8_t *data;
    int rc = load_frame(r, i, &data, err);
    if (rc)
        return rc;
    *ref = fb_frame_cache_insert(cache, r->key, (uint32_t)i, data, r->table.frames[i].d_size);
    if (!*ref)
        return fb_error_set(err, FB_ENOMEM, "%s: frame %zu: out of memory", r->name, i);
    if (!r->cache) {
        fb_frame_ref_retain(cache, *ref);
        pthread_mutex_lock(&r->slot_lock);
        fb_frame_ref *old = r->slot_ref;
        r->slot_ref = *ref;
        r->slot_frame = i;
        pthread_mutex_unlock(&r->slot_lock);
        fb_frame_ref_release(cache, old);
    }
    return 0;
}

/* Proves frames up to and including i (see the struct). A frame that
 * fails its proof stays failed: every offset past it is unmappable. An I/O
 * error is not remembered, the next call tries again. */
static int ensure_proven(fb_archive_reader *r, size_t i, fb_error *err)
{
    if (atomic_load_explicit(&r->proven, memory_order_acquire) > i)
        return 0;
    fb_error local;
    fb_error_clear(&local);
    int rc = 0;
    pthread_mutex_lock(&r->prove_lock);
    size_t k = atomic_load_explicit(&r->proven, memory_order_relaxed);
    if (r->bad_frame <= i) {
        local = r->bad_err;
        rc = r->bad_err.code;
    }
    while (rc == 0 && k <= i) {
        rc = fb_frame_prove(r->fd, &r->table, k, r->name, &local);
        if (rc == 0) {
            atomic_store_explicit(&r->proven, ++k, memory_order_release);
        } else if (rc == FB_ECORRUPT) {
            r->bad_frame = k;
            r->bad_err = local;
        }
    }
    pthread_mutex_unlock(&r->prove_lock);
    if (rc && err)
        *err = local;
    return rc;
}

/* FNV-1a over every frame's sizes: what a proof was made against (the
 * offsets follow from the sizes). Catches accidental change, which is all a
 * proof carried between readers of one file has to fear. */
static uint64_t table_digest(const fb_seek_table *t)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < t->n_frames; i++) {
        uint64_t v = (uint64_t)t->frames[i].c_size << 32 | t->frames[i].d_size;
        for (int k = 0; k < 8; k++) {
            h ^= (v >> (8 * k)) & 0xffu;
            h *= 0x100000001b3u;
        }
    }
    return h ^ t->n_frames;
}

/* ---- reader ---- */

int fb_archive_reader_open(int fd, fb_frame_cache *cache, const char *name,
                           fb_archive_reader **out, fb_error *err)
{
    *out = NULL;
    if (!name)
        name = "archive";
    struct stat st;
    if (fstat(fd, &st) != 0)
        return fb_error_set_errno(err, errno, "%s: stat", name);
    if (!S_ISREG(st.st_mode))
        return fb_error_set(err, FB_ECORRUPT, "%s: not a regular file", name);
    fb_archive_reader *r = calloc(1, sizeof *r);
    if (!r)
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", name);
    r->name = strdup(name);
    if (!r->name) {
        free(r);
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", name);
    }
    fb_seek_table_init(&r->table);
    r->file_size = (uint64_t)st.st_size;
    int rc = fb_seek_table_read_fd(fd, r->file_size, r->name, &r->table, err);
    if (rc == 0 && !(r->decoded = calloc(r->table.n_frames ? r->table.n_frames : 1, 1)))
        rc = fb_error_set(err, FB_ENOMEM, "%s: out of memory", name);
    if (rc == 0 && !cache)
        rc = fb_frame_cache_new(0, &r->own_cache, err);
    if (rc) {
        free((void *)r->decoded);
        fb_seek_table_fini(&r->table);
        free(r->name);
        free(r);
        return rc;
    }
    pthread_mutex_init(&r->pool_lock, NULL);
    pthread_mutex_init(&r->slot_lock, NULL);
    pthread_mutex_init(&r->prove_lock, NULL);
    atomic_init(&r->proven, 0);
    r->bad_frame = SIZE_MAX;
    r->identity = (fb_archive_proof){
        .dev = (uint64_t)st.st_dev, .ino = (uint64_t)st.st_ino, .size = (uint64_t)st.st_size,
        .mtime_sec = (int64_t)st.st_mtim.tv_sec, .mtime_nsec = (int64_t)st.st_mtim.tv_nsec,
        .ctime_sec = (int64_t)st.st_ctim.tv_sec, .ctime_nsec = (int64_t)st.st_ctim.tv_nsec,
        .table_digest = table_digest(&r->table)};
    r->cache = cache;
    r->key = cache ? fb_frame_cache_new_key(cache) : 0;
    r->fd = fd;
    *out = r;
    return 0;
}

void fb_archive_reader_free(fb_archive_reader *r)
{
    if (!r)
        return;
    if (r->cache && !r->keep_frames)
        fb_frame_cache_forget(r->cache, r->key);
    if (r->own_cache) {
        fb_frame_ref_release(r->own_cache, r->slot_ref);
        fb_frame_cache_free(r->own_cache);
    }
    for (size_t i = 0; i < r->pool_n; i++)
        ZSTD_freeDCtx(r->pool[i]);
    pthread_mutex_destroy(&r->pool_lock);
    pthread_mutex_destroy(&r->slot_lock);
    pthread_mutex_destroy(&r->prove_lock);
    free((void *)r->decoded);
    fb_seek_table_fini(&r->table);
    close(r->fd);
    free(r->name);
    free(r);
}

int fb_archive_reader_pread(fb_archive_reader *r, void *buf, size_t len, uint64_t offset,
                            size_t *out_len, fb_error *err)
{
    *out_len = 0;
    if (len == 0 || offset >= r->table.d_size)
        return 0;
    uint64_t avail = r->table.d_size - offset;
    size_t want = avail < (uint64_t)len ? (size_t)avail : len;
    uint8_t *dst = buf;
    uint64_t pos = offset;
    size_t done = 0;
    /* Where the stream ends is only known once every frame is proven. */
    int rc = want < len ? ensure_proven(r, r->table.n_frames - 1, err) : 0;
    if (rc)
        return rc;
    /* The search may look at unproven offsets, but the frame it returns
     * holds `offset` for real once the frames up to it are proven: the
     * table's offsets are cumulative, so that proves both ends of it. */
    size_t i = fb_seek_table_find(&r->table, offset);
    while (done < want) {
        if (i >= r->table.n_frames) /* cannot happen with a validated table */
            return fb_error_set(err, FB_ECORRUPT, "%s: offset %" PRIu64 " beyond the last frame",
                                r->name, pos);
        if ((rc = ensure_proven(r, i, err)) != 0)
            return rc;
        const fb_frame_entry *f = &r->table.frames[i];
        if (f->d_size == 0) {
            i++;
            continue;
        }
        fb_frame_cache *owner;
        fb_frame_ref *ref;
        rc = get_frame(r, i, &owner, &ref, err);
        if (rc)
            return rc;
        size_t in_frame = (size_t)(pos - f->d_offset);
        size_t n = f->d_size - in_frame;
        if (n > want - done)
            n = want - done;
        memcpy(dst + done, fb_frame_ref_data(ref) + in_frame, n);
        fb_frame_ref_release(owner, ref);
        done += n;
        pos += n;
        i++;
    }
    *out_len = done;
    return 0;
}

int fb_archive_reader_pread_anchored(fb_archive_reader *r, void *buf, size_t len,
                                     uint64_t offset, uint64_t anchor, size_t *out_len,
                                     fb_error *err)
{
    *out_len = 0;
    if (len == 0 || offset >= r->table.d_size)
        return fb_archive_reader_pread(r, buf, len, offset, out_len, err);
    if (anchor > offset)
        return fb_error_set(err, FB_EMISUSE, "%s: anchor %" PRIu64 " after offset %" PRIu64,
                            r->name, anchor, offset);
    /* Frames from the anchor's up to the one before offset place offset:
     * each is decoded once, so that its size is the one its content has.
     * (The frames proven by their headers only could both lie, the table
     * and the frame header, and shift everything after them.) */
    size_t first = fb_seek_table_find(&r->table, anchor);
    size_t last = fb_seek_table_find(&r->table, offset);
    int rc = ensure_proven(r, last, err);
    for (size_t j = first; rc == 0 && j < last; j++) {
        if (atomic_load_explicit(&r->decoded[j], memory_order_acquire))
            continue;
        fb_frame_cache *owner;
        fb_frame_ref *ref;
        rc = get_frame(r, j, &owner, &ref, err);
        if (rc == 0)
            fb_frame_ref_release(owner, ref);
    }
    if (rc)
        return rc;
    return fb_archive_reader_pread(r, buf, len, offset, out_len, err);
}

void fb_archive_reader_get_proof(fb_archive_reader *r, fb_archive_proof *out)
{
    *out = r->identity;
    out->frames = atomic_load_explicit(&r->proven, memory_order_acquire);
    out->frame_key = r->key;
    out->frames_kept = r->cache && r->keep_frames;
}

void fb_archive_reader_keep_frames(fb_archive_reader *r)
{
    r->keep_frames = true;
}

void fb_archive_reader_adopt_proof(fb_archive_reader *r, const fb_archive_proof *p)
{
    const fb_archive_proof *me = &r->identity;
    if (p->dev != me->dev || p->ino != me->ino || p->size != me->size ||
        p->mtime_sec != me->mtime_sec || p->mtime_nsec != me->mtime_nsec ||
        p->ctime_sec != me->ctime_sec || p->ctime_nsec != me->ctime_nsec ||
        p->table_digest != me->table_digest || p->frames > r->table.n_frames)
        return;
    pthread_mutex_lock(&r->prove_lock);
    if (p->frames > atomic_load_explicit(&r->proven, memory_order_relaxed))
        atomic_store_explicit(&r->proven, p->frames, memory_order_release);
    pthread_mutex_unlock(&r->prove_lock);
    /* Same file and seek table: frames decoded and checked by the reader
     * that made p are this file's frames. r has decoded nothing yet (it is
     * not shared), so its own fresh key holds nothing to forget. */
    if (p->frames_kept && r->cache)
        r->key = p->frame_key;
}

uint64_t fb_archive_reader_uncompressed_size(const fb_archive_reader *r)
{
    return r->table.d_size;
}

uint64_t fb_archive_reader_file_size(const fb_archive_reader *r)
{
    return r->file_size;
}

const fb_seek_table *fb_archive_reader_seek_table(const fb_archive_reader *r)
{
    return &r->table;
}

/* ---- sequential stream ---- */

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (need == 0)
        need = 1;
    if (*cap >= need)
        return 0;
    /* No realloc: the old contents are never needed. */
    uint8_t *p = malloc(need);
    if (!p)
        return -1;
    free(*buf);
    *buf = p;
    *cap = need;
    return 0;
}

/* Reads frame i's compressed bytes into slot sl (owned by the calling
 * thread). */
static int read_slot(fb_archive_reader *r, stream_slot *sl, size_t i, fb_error *err)
{
    const fb_frame_entry *f = &r->table.frames[i];
    if (grow(&sl->in, &sl->in_cap, f->c_size) || grow(&sl->out, &sl->out_cap, f->d_size))
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
    rc = decode_frame(s->r, s->dctx, i, sl->in, sl->out, err);
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
    ZSTD_DCtx *dctx = dctx_new();
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
            rc = decode_frame(r, dctx, i, sl->in, sl->out, &err);
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
    s->dctx = dctx_new();
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
        if (pthread_create(&s->workers[s->n_workers], NULL, stream_worker_main, s) != 0)
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
    if (grow(&sl->in, &sl->in_cap, TABLE_CHUNK))
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
