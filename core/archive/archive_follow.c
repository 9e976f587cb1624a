/* The follower: reads back, frame by frame, an archive while it is written
 * (fb_archive_follow.h). The writer only appends frame descriptions to a
 * list and signals; everything that costs (pread, SHA-256, decode) is on the
 * reader's thread, so the writer never waits for the follower. The frames
 * themselves are not kept in memory: they are read back from the file (the
 * page cache holds them), which is the point of the check. */
#include "fb_archive_follow.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zstd.h>

#include "archive_reader_i.h"
#include "fb_hash.h"
#include "fb_seek_table.h"

struct fb_archive_follower {
    int fd;
    char *name;

    pthread_mutex_t mu;
    pthread_cond_t cv;       /* a frame was written, the end, or abort */
    fb_frame_entry *frames;  /* guarded by mu: frames written so far */
    size_t n_frames, cap_frames;
    bool no_memory;          /* guarded by mu: a frame could not be recorded */
    bool ended;              /* guarded by mu */
    bool aborted;            /* guarded by mu */
    bool waiting;            /* guarded by mu: the reader sleeps on cv */
    uint64_t file_size;      /* guarded by mu, set with ended */

    /* The reader's own. */
    size_t next;             /* next frame to read back */
    uint64_t c_offset;       /* where it starts in the file */
    uint8_t *in, *out;
    size_t in_cap, out_cap;
    ZSTD_DCtx *dctx;
    fb_sha256 sha;
    bool sha_live;
    bool done;
    uint8_t digest[FB_SHA256_LEN];
};

int fb_archive_follower_new(int fd, const char *name, fb_archive_follower **out, fb_error *err)
{
    *out = NULL;
    fb_archive_follower *f = calloc(1, sizeof *f);
    if (!f)
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", name);
    f->fd = fd;
    f->name = strdup(name);
    f->dctx = fb_archive_dctx_new();
    if (!f->name || !f->dctx) {
        fb_archive_follower_free(f);
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", name);
    }
    if (fb_sha256_init(&f->sha, err)) {
        fb_archive_follower_free(f);
        return FB_ENOMEM;
    }
    f->sha_live = true;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    *out = f;
    return 0;
}

void fb_archive_follower_free(fb_archive_follower *f)
{
    if (!f)
        return;
    if (f->sha_live) {
        fb_sha256_fini(&f->sha);
        pthread_cond_destroy(&f->cv);
        pthread_mutex_destroy(&f->mu);
    }
    ZSTD_freeDCtx(f->dctx);
    free(f->frames);
    free(f->in);
    free(f->out);
    free(f->name);
    free(f);
}

/* ---- the writer's side ---- */

/* Wakes the reader if it sleeps (mu held): most frames arrive while it is
 * busy with an earlier one, and then no wake-up is needed. */
static void wake(fb_archive_follower *f)
{
    if (f->waiting)
        pthread_cond_signal(&f->cv);
}

void fb_archive_follower_written(void *ctx, uint64_t index, uint32_t c_size, uint32_t d_size,
                                 uint32_t checksum)
{
    fb_archive_follower *f = ctx;
    pthread_mutex_lock(&f->mu);
    if (f->n_frames == f->cap_frames) {
        size_t cap = f->cap_frames ? f->cap_frames * 2 : 256;
        fb_frame_entry *p = realloc(f->frames, cap * sizeof *p);
        if (!p) {
            f->no_memory = true;
            wake(f);
            pthread_mutex_unlock(&f->mu);
            return;
        }
        f->frames = p;
        f->cap_frames = cap;
    }
    /* Frames arrive in order; a gap would be the writer's bug, and the
     * reader then finds a frame that is not where it was told. */
    (void)index;
    fb_frame_entry *e = &f->frames[f->n_frames++];
    memset(e, 0, sizeof *e);
    e->c_size = c_size;
    e->d_size = d_size;
    e->checksum = checksum;
    wake(f);
    pthread_mutex_unlock(&f->mu);
}

void fb_archive_follower_end(fb_archive_follower *f, uint64_t file_size)
{
    pthread_mutex_lock(&f->mu);
    f->ended = true;
    f->file_size = file_size;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

void fb_archive_follower_abort(fb_archive_follower *f)
{
    pthread_mutex_lock(&f->mu);
    f->aborted = true;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

/* ---- the reader's side ---- */

/* Reads back and decodes frame i (described by fe) at f->c_offset. */
static int read_frame(fb_archive_follower *f, fb_frame_entry *fe, size_t i, fb_error *err)
{
    fe->c_offset = f->c_offset;
    if (fb_frame_buffer_grow(&f->in, &f->in_cap, fe->c_size) ||
        fb_frame_buffer_grow(&f->out, &f->out_cap, fe->d_size))
        return fb_error_set(err, FB_ENOMEM, "%s: frame %zu: out of memory", f->name, i);
    char what[64];
    snprintf(what, sizeof what, "frame %zu read back", i);
    int rc = fb_pread_exact(f->fd, f->in, fe->c_size, fe->c_offset, f->name, what, err);
    if (rc)
        return rc;
    fb_sha256_update(&f->sha, f->in, fe->c_size);
    rc = fb_frame_decode_checked(fe, true, f->name, f->dctx, i, f->in, f->out, err);
    if (rc)
        return rc;
    f->c_offset += fe->c_size;
    return 0;
}

/* After the last frame: the seek table, read back, hashed, and listing
 * exactly the frames read; the file exactly frames + table long. */
static int read_tail(fb_archive_follower *f, uint64_t file_size, fb_error *err)
{
    struct stat st;
    if (fstat(f->fd, &st) != 0)
        return fb_error_set_errno(err, errno, "%s: fstat", f->name);
    if ((uint64_t)st.st_size != file_size)
        return fb_error_set(err, FB_ECORRUPT,
                            "%s: the file is %lld bytes, %" PRIu64 " were written", f->name,
                            (long long)st.st_size, file_size);
    if (file_size < f->c_offset)
        return fb_error_set(err, FB_ECORRUPT, "%s: shorter than its frames", f->name);
    size_t tail = (size_t)(file_size - f->c_offset);
    if (fb_frame_buffer_grow(&f->in, &f->in_cap, tail))
        return fb_error_set(err, FB_ENOMEM, "%s: seek table: out of memory", f->name);
    int rc = fb_pread_exact(f->fd, f->in, tail, f->c_offset, f->name, "seek table read back",
                            err);
    if (rc)
        return rc;
    fb_sha256_update(&f->sha, f->in, tail);
    fb_seek_table t;
    fb_seek_table_init(&t);
    rc = fb_seek_table_read_fd(f->fd, file_size, f->name, &t, err);
    if (rc == 0 && (t.n_frames != f->n_frames || t.table_size != tail || !t.has_checksums))
        rc = fb_error_set(err, FB_ECORRUPT,
                          "%s: the seek table read back lists %zu frames, %zu were written",
                          f->name, t.n_frames, f->n_frames);
    for (size_t i = 0; rc == 0 && i < t.n_frames; i++) {
        const fb_frame_entry *a = &t.frames[i], *b = &f->frames[i];
        if (a->c_size != b->c_size || a->d_size != b->d_size || a->checksum != b->checksum)
            rc = fb_error_set(err, FB_ECORRUPT,
                              "%s: frame %zu: the seek table read back does not describe the "
                              "frame written",
                              f->name, i);
    }
    fb_seek_table_fini(&t);
    return rc;
}

int fb_archive_follower_next(fb_archive_follower *f, const uint8_t **data, size_t *len,
                             fb_error *err)
{
    *data = NULL;
    *len = 0;
    if (f->done)
        return 0;
    for (;;) {
        pthread_mutex_lock(&f->mu);
        while (!f->aborted && !f->no_memory && !f->ended && f->next >= f->n_frames) {
            f->waiting = true;
            pthread_cond_wait(&f->cv, &f->mu);
            f->waiting = false;
        }
        bool aborted = f->aborted, no_memory = f->no_memory;
        bool have = f->next < f->n_frames;
        fb_frame_entry fe;
        if (have)
            fe = f->frames[f->next];
        uint64_t file_size = f->file_size;
        pthread_mutex_unlock(&f->mu);
        if (aborted)
            return fb_error_set(err, FB_EINTERRUPTED, "%s: writing stopped", f->name);
        if (no_memory)
            return fb_error_set(err, FB_ENOMEM, "%s: out of memory for the frame list",
                                f->name);
        if (!have) {
            /* ended, and every frame was read back */
            int rc = read_tail(f, file_size, err);
            if (rc)
                return rc;
            fb_sha256_final(&f->sha, f->digest);
            f->done = true;
            return 0;
        }
        size_t i = f->next;
        int rc = read_frame(f, &fe, i, err);
        if (rc)
            return rc;
        f->next++;
        if (fe.d_size > 0) {
            *data = f->out;
            *len = fe.d_size;
            return 0;
        }
    }
}

int fb_archive_follower_sha256(fb_archive_follower *f, uint8_t out[FB_SHA256_LEN],
                               uint64_t *frames, fb_error *err)
{
    if (!f->done)
        return fb_error_set(err, FB_EMISUSE, "%s: archive hash asked for before the end",
                            f->name);
    memcpy(out, f->digest, FB_SHA256_LEN);
    if (frames)
        *frames = f->n_frames;
    return 0;
}
