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
#include "archive_reader_i.h"

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

/* Frames a sequential reader has decoded ahead of it (maybe_prefetch). */
#define PREFETCH_AHEAD 2u
/* How far from where a stream's last read ended a read may start and
 * still continue it (bytes). */
#define SEQ_SLACK ((uint64_t)1 << 20)
/* Bytes a sequential run reads before frames are decoded ahead of it. */
#define PREFETCH_AFTER ((uint64_t)64 << 10)

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- decompression contexts ---- */

ZSTD_DCtx *fb_archive_dctx_new(void)
{
    ZSTD_DCtx *d = ZSTD_createDCtx();
    if (d && ZSTD_isError(ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, FB_FRAME_WINDOW_LOG_MAX))) {
        ZSTD_freeDCtx(d);
        return NULL;
    }
    return d;
}

/* The cache r's frames go to: the shared one, else its own. */
static fb_frame_cache *cache_of(const fb_archive_reader *r)
{
    return r->cache ? r->cache : r->own_cache;
}

ZSTD_DCtx *fb_archive_dctx_acquire(fb_archive_reader *r)
{
    ZSTD_DCtx *d = fb_frame_cache_dctx_take(cache_of(r));
    return d ? d : fb_archive_dctx_new();
}

int fb_archive_prepare(fb_frame_cache *cache, fb_error *err)
{
    ZSTD_DCtx *d = fb_archive_dctx_new();
    if (!d)
        return fb_error_set(err, FB_ENOMEM, "zstd: cannot make a decompression context");
    fb_frame_cache_dctx_give(cache, d);
    return 0;
}

void fb_archive_dctx_release(fb_archive_reader *r, ZSTD_DCtx *d)
{
    fb_frame_cache_dctx_give(cache_of(r), d);
}

/* ---- one frame ---- */

int fb_archive_decode_frame(fb_archive_reader *r, ZSTD_DCtx *dctx, size_t i, const uint8_t *in,
                            uint8_t *out, fb_error *err)
{
    return fb_frame_decode_checked(&r->table.frames[i], r->table.has_checksums, r->name, dctx, i,
                                   in, out, err);
}

int fb_frame_decode_checked(const fb_frame_entry *f, bool has_checksums, const char *name,
                            ZSTD_DCtx *dctx, size_t i, const uint8_t *in, uint8_t *out,
                            fb_error *err)
{
    int rc = fb_frame_header_check(in, f->c_size, i, name, err);
    if (rc)
        return rc;
    size_t csz = ZSTD_findFrameCompressedSize(in, f->c_size);
    if (ZSTD_isError(csz))
        return fb_error_set(err, FB_ECORRUPT, "%s: frame %zu: %s", name, i,
                            ZSTD_getErrorName(csz));
    if (csz != f->c_size)
        return fb_error_set(err, FB_ECORRUPT,
                            "%s: frame %zu: zstd frame is %zu bytes, seek table says %" PRIu32,
                            name, i, csz, f->c_size);
    unsigned long long fcs = ZSTD_getFrameContentSize(in, f->c_size);
    if (fcs == ZSTD_CONTENTSIZE_ERROR)
        return fb_error_set(err, FB_ECORRUPT, "%s: frame %zu: bad frame header", name, i);
    if (fcs == ZSTD_CONTENTSIZE_UNKNOWN)
        return fb_error_set(err, FB_ECORRUPT,
                            "%s: frame %zu: the frame header does not declare its content size",
                            name, i);
    if (fcs != f->d_size)
        return fb_error_set(err, FB_ECORRUPT,
                            "%s: frame %zu: header says %llu bytes, seek table says %" PRIu32,
                            name, i, fcs, f->d_size);
    if (has_checksums && get_le32(in + f->c_size - 4) != f->checksum)
        return fb_error_set(err, FB_ECORRUPT,
                            "%s: frame %zu: checksum 0x%08" PRIx32
                            " differs from the seek table's 0x%08" PRIx32,
                            name, i, get_le32(in + f->c_size - 4), f->checksum);
    size_t n = ZSTD_decompressDCtx(dctx, out, f->d_size, in, f->c_size);
    if (ZSTD_isError(n)) {
        if (ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall)
            return fb_error_set(err, FB_ECORRUPT,
                                "%s: frame %zu: decompresses to more than the %" PRIu32
                                " bytes the seek table says",
                                name, i, f->d_size);
        return fb_error_set(err, FB_ECORRUPT, "%s: frame %zu: %s", name, i,
                            ZSTD_getErrorName(n));
    }
    if (n != f->d_size)
        return fb_error_set(err, FB_ECORRUPT,
                            "%s: frame %zu: decompresses to %zu bytes, seek table says %" PRIu32,
                            name, i, n, f->d_size);
    return 0;
}

/* Reads and decodes frame i into a buffer of d_size bytes from the frame
 * cache (fb_frame_cache_buffer), which *out then owns. A frame of raw
 * blocks is read straight into it (fb_frame_read_raw); any other, the
 * compressed bytes are read into a spare of the cache (fb_frame_cache_scratch:
 * one bound for all readers, however many archives are open) and decoded. */
static int load_frame(fb_archive_reader *r, size_t i, uint8_t **out, fb_error *err)
{
    const fb_frame_entry *f = &r->table.frames[i];
    fb_frame_cache *cache = cache_of(r);
    *out = NULL;
    uint8_t *data = fb_frame_cache_buffer(cache, f->d_size);
    if (data && fb_frame_read_raw(r->fd, f, r->table.has_checksums, data)) {
        atomic_store_explicit(&r->decoded[i], 1, memory_order_release);
        *out = data;
        return 0;
    }
    size_t in_size = 0;
    uint8_t *in = fb_frame_cache_scratch(cache, f->c_size, &in_size);
    ZSTD_DCtx *dctx = fb_archive_dctx_acquire(r);
    int rc = 0;
    if (!in || !data || !dctx) {
        rc = fb_error_set(err, FB_ENOMEM, "%s: frame %zu: out of memory", r->name, i);
        goto out;
    }
    char what[64];
    snprintf(what, sizeof what, "frame %zu", i);
    rc = fb_pread_exact(r->fd, in, f->c_size, f->c_offset, r->name, what, err);
    if (rc == 0)
        rc = fb_archive_decode_frame(r, dctx, i, in, data, err);
    if (rc == 0)
        atomic_store_explicit(&r->decoded[i], 1, memory_order_release);
out:
    if (dctx)
        fb_archive_dctx_release(r, dctx);
    fb_frame_cache_buffer_return(cache, in, in_size);
    if (rc) {
        fb_frame_cache_buffer_return(cache, data, f->d_size);
        return rc;
    }
    *out = data;
    return 0;
}

static bool decoding_has(const fb_archive_reader *r, size_t i)
{
    for (size_t k = 0; k < r->n_decoding; k++)
        if (r->decoding[k] == i)
            return true;
    return false;
}

/* Claims frame i for this thread to decode (pf_lock held): false when
 * another thread decodes it. A full set claims nothing but says true:
 * the frame is decoded untracked. *tracked: whether it was claimed. */
static bool decoding_claim(fb_archive_reader *r, size_t i, bool *tracked)
{
    *tracked = false;
    if (decoding_has(r, i))
        return false;
    if (r->n_decoding < FB_ARCHIVE_DECODING_MAX) {
        r->decoding[r->n_decoding++] = i;
        *tracked = true;
    }
    return true;
}

static void decoding_done(fb_archive_reader *r, size_t i)
{
    pthread_mutex_lock(&r->pf_lock);
    for (size_t k = 0; k < r->n_decoding; k++) {
        if (r->decoding[k] == i) {
            r->decoding[k] = r->decoding[--r->n_decoding];
            break;
        }
    }
    if (r->pf_frame == i)
        r->pf_frame = SIZE_MAX;
    pthread_cond_broadcast(&r->pf_cv);
    pthread_mutex_unlock(&r->pf_lock);
}

/* Frame i from the shared cache, waiting while another thread decodes it;
 * on a miss with no one decoding it, claims it (*claimed, *tracked) for
 * the caller to decode. */
static fb_frame_ref *shared_lookup(fb_archive_reader *r, size_t i, bool *claimed, bool *tracked)
{
    *claimed = *tracked = false;
    for (;;) {
        fb_frame_ref *ref = fb_frame_cache_lookup(r->cache, r->key, (uint32_t)i);
        if (ref)
            return ref;
        pthread_mutex_lock(&r->pf_lock);
        if (decoding_claim(r, i, tracked)) {
            pthread_mutex_unlock(&r->pf_lock);
            *claimed = true;
            return NULL;
        }
        while (decoding_has(r, i))
            pthread_cond_wait(&r->pf_cv, &r->pf_lock);
        pthread_mutex_unlock(&r->pf_lock);
        /* Decoded by the other thread (or it failed: then try ourselves). */
    }
}

/* A referenced frame i, from the shared cache, the private slot, or decoded. */
static int get_frame(fb_archive_reader *r, size_t i, fb_frame_cache **owner, fb_frame_ref **ref,
                     fb_error *err)
{
    fb_frame_cache *cache = cache_of(r);
    *owner = cache;
    *ref = NULL;
    bool claimed = false, tracked = false;
    if (r->cache) {
        *ref = shared_lookup(r, i, &claimed, &tracked);
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
    if (rc == 0) {
        *ref = fb_frame_cache_insert(cache, r->key, (uint32_t)i, data,
                                     r->table.frames[i].d_size);
        if (!*ref)
            rc = fb_error_set(err, FB_ENOMEM, "%s: frame %zu: out of memory", r->name, i);
    }
    if (tracked)
        decoding_done(r, i);
    if (rc)
        return rc;
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
        /* A frame decoded once is proven by its content (its compressed
         * and decoded sizes are the table's, checked by the decode); the
         * prefetcher decodes a sequential reader's frames before it gets
         * there, and walking their block headers again cost 10 preads a
         * frame. */
        if (!atomic_load_explicit(&r->decoded[k], memory_order_acquire))
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
    pthread_mutex_init(&r->slot_lock, NULL);
    pthread_mutex_init(&r->prove_lock, NULL);
    pthread_mutex_init(&r->pf_lock, NULL);
    pthread_cond_init(&r->pf_cv, NULL);
    r->pf_frame = r->pf_asked = SIZE_MAX;
    r->n_decoding = 0;
    pthread_mutex_init(&r->seq_lock, NULL);
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
    if (r->pf)
        fb_frame_prefetcher_forget(r->pf, r);
    if (r->cache && !r->keep_frames)
        fb_frame_cache_forget(r->cache, r->key);
    if (r->own_cache) {
        fb_frame_ref_release(r->own_cache, r->slot_ref);
        fb_frame_cache_free(r->own_cache);
    }
    pthread_mutex_destroy(&r->slot_lock);
    pthread_mutex_destroy(&r->prove_lock);
    pthread_mutex_destroy(&r->pf_lock);
    pthread_mutex_destroy(&r->seq_lock);
    pthread_cond_destroy(&r->pf_cv);
    free((void *)r->decoded);
    fb_seek_table_fini(&r->table);
    close(r->fd);
    free(r->name);
    free(r);
}

/* The prefetcher's job for r: decode the frame asked for (claimed in the
 * decoding set when it was asked) into the cache. Its errors are dropped:
 * the reader that needs the frame decodes it and reports them. */
static void prefetch_run(void *owner)
{
    fb_archive_reader *r = owner;
    pthread_mutex_lock(&r->pf_lock);
    size_t i = r->pf_frame;
    pthread_mutex_unlock(&r->pf_lock);
    if (i == SIZE_MAX)
        return;
    uint8_t *data;
    fb_frame_ref *ref;
    /* Decoded by its index, the frame needs no proof of the map before it:
     * that is for the reads that place an offset in it. */
    if (load_frame(r, i, &data, NULL) == 0 &&
        (ref = fb_frame_cache_insert(r->cache, r->key, (uint32_t)i, data,
                                     r->table.frames[i].d_size)) != NULL)
        fb_frame_ref_release(r->cache, ref);
    decoding_done(r, i);
}

/* After a sequential read in frame i: asks for the first of the next
 * PREFETCH_AHEAD frames that is neither cached, being decoded nor asked for
 * already. Two ahead, not one: the kernel sends a sequential file's reads
 * to several workers at once, and with one frame ahead they caught up with
 * the decoder in half the frames of a 87 MiB file (a wait, a wake). */
static void maybe_prefetch(fb_archive_reader *r, size_t i)
{
    for (size_t next = i + 1; next <= i + PREFETCH_AHEAD && next < r->table.n_frames; next++) {
        pthread_mutex_lock(&r->pf_lock);
        bool busy = r->pf_frame != SIZE_MAX;
        /* pf_asked only grows while the reader goes forward; a jump back
         * starts again. */
        bool asked = r->pf_asked != SIZE_MAX && next <= r->pf_asked &&
                     r->pf_asked - next <= PREFETCH_AHEAD;
        pthread_mutex_unlock(&r->pf_lock);
        if (busy)
            return;
        if (asked)
            continue;
        fb_frame_ref *ref = fb_frame_cache_lookup(r->cache, r->key, (uint32_t)next);
        if (ref) {
            fb_frame_ref_release(r->cache, ref);
            continue;
        }
        bool tracked = false, ask;
        pthread_mutex_lock(&r->pf_lock);
        ask = r->pf_frame == SIZE_MAX && decoding_claim(r, next, &tracked) && tracked;
        if (ask)
            r->pf_frame = r->pf_asked = next;
        pthread_mutex_unlock(&r->pf_lock);
        if (ask && !fb_frame_prefetcher_enqueue(r->pf, r, prefetch_run))
            decoding_done(r, next);
        return;
    }
}

/* Records a read of done bytes at offset among the reader's streams (the
 * files being read from it at once): returns the bytes read so far by the
 * sequential run it continues, or 0 when it starts a new one, which then
 * takes the place of the stream read least recently. A run continues when
 * the read starts near where one ended: near, not at, because the kernel's
 * workers answer a sequential reader's requests out of order. One place
 * for all the files of an archive would see eight files read at once as
 * no sequential reader at all. */
static uint64_t seq_track(fb_archive_reader *r, uint64_t offset, size_t done)
{
    uint64_t run = 0;
    pthread_mutex_lock(&r->seq_lock);
    r->seq_clock++;
    size_t oldest = 0;
    for (size_t k = 0; k < FB_ARCHIVE_STREAMS; k++) {
        fb_archive_stream_pos *p = &r->streams[k];
        if (p->used && (p->end > offset ? p->end - offset : offset - p->end) <= SEQ_SLACK) {
            if (offset + done > p->end)
                p->end = offset + done;
            p->run += done;
            p->used = r->seq_clock;
            run = p->run;
            break;
        }
        if (p->used < r->streams[oldest].used)
            oldest = k;
    }
    if (run == 0)
        r->streams[oldest] = (fb_archive_stream_pos){
            .end = offset + done, .run = done, .used = r->seq_clock};
    pthread_mutex_unlock(&r->seq_lock);
    /* The first read of a stream says nothing of a direction. */
    return run;
}

/* What to do with each frame part a read covers: copy it out, or keep it
 * pinned (spans). Returns 0 to go on, 1 to stop before this part (the
 * caller's spans are full; the part's reference is not taken), or an
 * error. */
typedef int (*part_fn)(void *ctx, fb_frame_cache *owner, fb_frame_ref *ref, size_t in_frame,
                       size_t n, size_t done);

/* The frames covering [offset, offset + len) clipped at the end of the
 * stream, in order, each handed to fn with its reference (fn releases or
 * keeps it). *out_len: the bytes handed over. */
static int read_parts(fb_archive_reader *r, size_t len, uint64_t offset, unsigned flags,
                      part_fn fn, void *ctx, size_t *out_len, fb_error *err)
{
    *out_len = 0;
    if (len == 0 || offset >= r->table.d_size)
        return 0;
    uint64_t avail = r->table.d_size - offset;
    size_t want = avail < (uint64_t)len ? (size_t)avail : len;
    uint64_t pos = offset;
    size_t done = 0;
    /* Where the stream ends is only known once every frame is proven. A
     * caller that checks every byte against a digest needs no proof: a
     * misplaced byte fails its check. */
    bool prove = !(flags & FB_ARCHIVE_READ_CHECKED);
    int rc = prove && want < len ? ensure_proven(r, r->table.n_frames - 1, err) : 0;
    if (rc)
        return rc;
    /* The search may look at unproven offsets, but the frame it returns
     * holds `offset` for real once the frames up to it are proven: the
     * table's offsets are cumulative, so that proves both ends of it. */
    size_t i = fb_seek_table_find(&r->table, offset);
    size_t last = 0;
    while (done < want) {
        if (i >= r->table.n_frames) /* cannot happen with a validated table */
            return fb_error_set(err, FB_ECORRUPT, "%s: offset %" PRIu64 " beyond the last frame",
                                r->name, pos);
        if (prove && (rc = ensure_proven(r, i, err)) != 0)
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
        rc = fn(ctx, owner, ref, in_frame, n, done);
        if (rc) {
            fb_frame_ref_release(owner, ref);
            if (rc > 0)
                break;
            return rc;
        }
        done += n;
        pos += n;
        last = i;
        i++;
    }
    *out_len = done;
    uint64_t run = r->pf && done && !(flags & FB_ARCHIVE_READ_PROOF)
                       ? seq_track(r, offset, done)
                       : 0;
    if (run) {
        /* Frames ahead only for a run long enough to go on: the first
         * read of a small file follows its tar header's proof, and
         * decoding two more 1 MiB frames then only took a core from the
         * reader. */
        if (run >= PREFETCH_AFTER)
            maybe_prefetch(r, last);
        /* A sequential reader does not come back (the kernel's page cache
         * keeps what it read): the frame two behind goes now, so its
         * buffer is reused for the next frame instead of 64 MiB of fresh
         * pages being faulted in before the cache recycles anything. */
        if (last >= 2)
            fb_frame_cache_drop(r->cache, r->key, (uint32_t)(last - 2));
    }
    return 0;
}

static int copy_part(void *ctx, fb_frame_cache *owner, fb_frame_ref *ref, size_t in_frame,
                     size_t n, size_t done)
{
    memcpy((uint8_t *)ctx + done, fb_frame_ref_data(ref) + in_frame, n);
    fb_frame_ref_release(owner, ref);
    return 0;
}

int fb_archive_reader_pread(fb_archive_reader *r, void *buf, size_t len, uint64_t offset,
                            size_t *out_len, fb_error *err)
{
    return read_parts(r, len, offset, 0, copy_part, buf, out_len, err);
}

typedef struct span_list {
    fb_archive_span *spans;
    size_t max, n;
} span_list;

static int keep_part(void *ctx, fb_frame_cache *owner, fb_frame_ref *ref, size_t in_frame,
                     size_t n, size_t done)
{
    (void)done;
    span_list *l = ctx;
    if (l->n == l->max)
        return 1;
    l->spans[l->n++] = (fb_archive_span){.data = fb_frame_ref_data(ref) + in_frame, .len = n,
                                         .owner = owner, .ref = ref};
    return 0;
}

void fb_archive_spans_release(fb_archive_span *spans, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        fb_frame_ref_release(spans[i].owner, spans[i].ref);
        spans[i] = (fb_archive_span){0};
    }
}

/* The anchored read's first step (see fb_archive_reader_pread_anchored):
 * every frame from the anchor's up to the one before offset decoded once. */
static int decode_from_anchor(fb_archive_reader *r, uint64_t offset, uint64_t anchor,
                              unsigned flags, fb_error *err)
{
    if (offset >= r->table.d_size)
        return 0;
    if (anchor > offset)
        return fb_error_set(err, FB_EMISUSE, "%s: anchor %" PRIu64 " after offset %" PRIu64,
                            r->name, anchor, offset);
    /* Frames from the anchor's up to the one before offset place offset:
     * each is decoded once, so that its size is the one its content has.
     * (The frames proven by their headers only could both lie, the table
     * and the frame header, and shift everything after them.) */
    size_t first = fb_seek_table_find(&r->table, anchor);
    size_t last = fb_seek_table_find(&r->table, offset);
    int rc = flags & FB_ARCHIVE_READ_CHECKED ? 0 : ensure_proven(r, last, err);
    for (size_t j = first; rc == 0 && j < last; j++) {
        if (atomic_load_explicit(&r->decoded[j], memory_order_acquire))
            continue;
        fb_frame_cache *owner;
        fb_frame_ref *ref;
        rc = get_frame(r, j, &owner, &ref, err);
        if (rc == 0)
            fb_frame_ref_release(owner, ref);
    }
    return rc;
}

int fb_archive_reader_pread_anchored(fb_archive_reader *r, void *buf, size_t len,
                                     uint64_t offset, uint64_t anchor, size_t *out_len,
                                     fb_error *err)
{
    return fb_archive_reader_pread_flags(r, buf, len, offset, anchor, 0, out_len, err);
}

int fb_archive_reader_pread_flags(fb_archive_reader *r, void *buf, size_t len, uint64_t offset,
                                  uint64_t anchor, unsigned flags, size_t *out_len,
                                  fb_error *err)
{
    *out_len = 0;
    int rc = len ? decode_from_anchor(r, offset, anchor, flags, err) : 0;
    if (rc)
        return rc;
    return read_parts(r, len, offset, flags, copy_part, buf, out_len, err);
}

int fb_archive_reader_pread_spans(fb_archive_reader *r, size_t len, uint64_t offset,
                                  uint64_t anchor, unsigned flags, fb_archive_span *spans,
                                  size_t max, size_t *n_spans, size_t *out_len, fb_error *err)
{
    *out_len = 0;
    *n_spans = 0;
    int rc = len ? decode_from_anchor(r, offset, anchor, flags, err) : 0;
    if (rc)
        return rc;
    span_list l = {.spans = spans, .max = max};
    rc = read_parts(r, len, offset, flags, keep_part, &l, out_len, err);
    if (rc) {
        fb_archive_spans_release(spans, l.n);
        *out_len = 0;
        return rc;
    }
    *n_spans = l.n;
    return 0;
}

void fb_archive_reader_get_proof(fb_archive_reader *r, fb_archive_proof *out)
{
    *out = r->identity;
    out->frames = atomic_load_explicit(&r->proven, memory_order_acquire);
    out->frame_key = r->key;
    out->frames_kept = r->cache && r->keep_frames;
}

void fb_archive_reader_set_prefetcher(fb_archive_reader *r, fb_frame_prefetcher *p)
{
    if (r->cache)
        r->pf = p;
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

uint64_t fb_archive_reader_frame_start(const fb_archive_reader *r, uint64_t off)
{
    size_t i = fb_seek_table_find(&r->table, off);
    return i < r->table.n_frames ? r->table.frames[i].d_offset
                                 : fb_archive_reader_uncompressed_size(r);
}

uint64_t fb_archive_reader_file_size(const fb_archive_reader *r)
{
    return r->file_size;
}

const fb_seek_table *fb_archive_reader_seek_table(const fb_archive_reader *r)
{
    return &r->table;
}


int fb_frame_buffer_grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (need == 0)
        need = 1;
    if (*cap >= need)
        return 0;
    uint8_t *p = malloc(need);
    if (!p)
        return -1;
    free(*buf);
    *buf = p;
    *cap = need;
    return 0;
}
