/* The validation that follows the writer (verify_live_i.h).
 *
 * Each entry is handled in stream order: libarchive reads its header, then
 * its data is hashed as the frames holding it are read back, and only then
 * is the entry held against the manifest. The manifest entry of a large
 * file is only published once the whole file is stored, while its first
 * frames are written long before: hashing before comparing lets the check
 * work through those frames as they come instead of waiting for the file's
 * end, which would push that work to after the writing. */
#include "verify_live_i.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fb_archive_follow.h"
#include "fb_hash.h"
#include "tar_check_i.h"
#include "thread_i.h"

/* JSON members of an incremental are parsed in memory (as verify does). */
#define JSON_MEMBER_MAX (64u * 1024 * 1024)
/* How often the waiting caller looks at its cancel flag. */
#define CANCEL_POLL_NS (50 * 1000 * 1000L)

struct fb_live_check {
    char *name;
    bool incremental;
    fb_archive_follower *follower;
    fb_tar_source src;

    pthread_mutex_t mu;
    pthread_cond_t cv;  /* entries published, the end, abort, or the check finished */
    const fb_manifest_entry *entries; /* guarded by mu */
    const uint8_t (*fingerprints)[FB_XXH128_LEN]; /* guarded by mu, beside entries */
    size_t n_entries;   /* guarded by mu */
    bool writer_done;   /* guarded by mu: n_entries is final */
    bool aborted;       /* guarded by mu */
    bool waiting;       /* guarded by mu: the check sleeps on cv */
    bool finished;      /* guarded by mu: the thread's result is in rc/err */
    int rc;
    fb_error err;

    pthread_t thread;
    bool running; /* the thread was started and not joined */
    fb_xxh128 file_fp; /* the check thread's, reset per file */
    bool sync_live;    /* mu and cv were initialised */
};

/* One entry's data as read back: its size, fingerprint and, for a JSON
 * member that must parse, its bytes. */
typedef struct entry_data {
    uint64_t got;
    uint8_t fingerprint[FB_XXH128_LEN];
    char *json;
} entry_data;

static bool ends_with_json(const char *p)
{
    size_t n = p ? strlen(p) : 0;
    return n >= 5 && memcmp(p + n - 5, ".json", 5) == 0;
}

/* Reads and fingerprints the data of the entry whose header libarchive just
 * read (no holes; for a JSON member of an incremental, kept to be parsed). */
static int read_data(fb_live_check *v, struct archive *a, struct archive_entry *ae,
                     entry_data *d, fb_error *err)
{
    const char *path = archive_entry_pathname(ae);
    la_int64_t size = archive_entry_size(ae);
    bool want_json = v->incremental && archive_entry_filetype(ae) == AE_IFREG &&
                     !archive_entry_hardlink(ae) && ends_with_json(path);
    if (want_json) {
        if (size < 0 || (uint64_t)size > JSON_MEMBER_MAX)
            return fb_tar_corrupt(err, v->name, path ? path : "?",
                                  "JSON member over 64 MiB, too large to check that it parses");
        d->json = malloc(size ? (size_t)size : 1);
        if (!d->json)
            return fb_error_set(err, FB_ENOMEM, "%s: out of memory", v->name);
    }
    fb_xxh128_reset(&v->file_fp);
    for (;;) {
        const void *buf;
        size_t len;
        la_int64_t off;
        int ar = archive_read_data_block(a, &buf, &len, &off);
        if (ar == ARCHIVE_EOF)
            break;
        if (ar != ARCHIVE_OK)
            return fb_tar_source_failure(&v->src, a, err);
        if (off < 0 || (uint64_t)off != d->got)
            return fb_tar_corrupt(err, v->name, path ? path : "?", "data with holes");
        if (size < 0 || len > (uint64_t)size - d->got)
            return fb_tar_corrupt(err, v->name, path ? path : "?",
                                  "more data in the archive than its header says");
        fb_xxh128_update(&v->file_fp, buf, len);
        if (d->json)
            memcpy(d->json + d->got, buf, len);
        d->got += len;
    }
    fb_xxh128_digest(&v->file_fp, d->fingerprint);
    return 0;
}

/* Waits until manifest entry idx is published and copies it (its strings
 * stay the manifest's) and its fingerprint (fp may be NULL). 1: the writing
 * ended with fewer entries. */
static int wait_entry(fb_live_check *v, size_t idx, fb_manifest_entry *e,
                      uint8_t fp[FB_XXH128_LEN], size_t *n_final, fb_error *err)
{
    pthread_mutex_lock(&v->mu);
    while (!v->aborted && !v->writer_done && v->n_entries <= idx) {
        v->waiting = true;
        pthread_cond_wait(&v->cv, &v->mu);
        v->waiting = false;
    }
    bool aborted = v->aborted, have = v->n_entries > idx;
    if (have) {
        *e = v->entries[idx];
        if (fp)
            memcpy(fp, v->fingerprints[idx], FB_XXH128_LEN);
    }
    *n_final = v->n_entries;
    pthread_mutex_unlock(&v->mu);
    if (aborted)
        return fb_error_set(err, FB_EINTERRUPTED, "%s: writing stopped", v->name);
    return have ? 0 : 1;
}

/* The header, data offset and data of entry idx against its manifest
 * entry, as fb_tar_entry_check and fb_tar_entry_data hold them. */
static int check_one(fb_live_check *v, struct archive *a, struct archive_entry *ae, size_t idx,
                     fb_error *err)
{
    int64_t data_offset = archive_filter_bytes(a, 0);
    entry_data d = {0};
    int rc = read_data(v, a, ae, &d, err);
    fb_manifest_entry e;
    uint8_t fp[FB_XXH128_LEN];
    size_t n = 0;
    if (rc == 0 && (rc = wait_entry(v, idx, &e, fp, &n, err)) == 1)
        rc = fb_error_set(err, FB_ECORRUPT, "%s: archive has more entries than the manifest's %zu",
                          v->name, n);
    if (rc == 0)
        rc = fb_tar_entry_check(ae, &e, data_offset, v->name, err);
    if (rc == 0) {
        uint64_t want = e.meta.type == FB_ENTRY_FILE ? e.meta.size : 0;
        if (d.got != want)
            rc = fb_tar_corrupt(err, v->name, e.path, "content size differs from the manifest");
        else if (e.meta.type == FB_ENTRY_FILE && memcmp(d.fingerprint, fp, sizeof fp) != 0)
            rc = fb_tar_corrupt(err, v->name, e.path,
                                "content differs from the bytes read (XXH3-128 mismatch)");
        else if (d.json)
            rc = fb_tar_json_check(v->name, e.path, d.json, (size_t)d.got, err);
    }
    free(d.json);
    return rc;
}

static int walk(fb_live_check *v, fb_error *err)
{
    struct archive *a;
    int rc = fb_tar_source_open(&v->src, &a, err);
    if (rc < 0)
        return rc;
    size_t idx = 0;
    for (;;) {
        struct archive_entry *ae;
        int r = fb_tar_source_next(&v->src, a, &ae, err);
        if (r <= 0) {
            rc = r;
            break;
        }
        if ((rc = check_one(v, a, ae, idx, err)) < 0)
            break;
        idx++;
    }
    archive_read_free(a);
    if (rc < 0)
        return rc;
    /* Every entry the manifest ends up with must have been in the archive. */
    fb_manifest_entry e;
    size_t n = 0;
    rc = wait_entry(v, idx, &e, NULL, &n, err);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return fb_error_set(err, FB_ECORRUPT, "%s: archive has %zu entries, manifest %zu",
                            v->name, idx, n);
    /* Whatever follows the tar end is read back and hashed too. */
    return fb_tar_source_finish(&v->src, NULL, err);
}

static void *check_main(void *arg)
{
    fb_live_check *v = arg;
    fb_error err;
    fb_error_clear(&err);
    int rc = walk(v, &err);
    pthread_mutex_lock(&v->mu);
    v->rc = rc;
    v->err = err;
    v->finished = true;
    pthread_cond_broadcast(&v->cv);
    pthread_mutex_unlock(&v->mu);
    if (rc < 0) /* nothing more is read: the writer must not wait for us */
        fb_archive_follower_abort(v->follower);
    return NULL;
}

int fb_live_check_start(int archive_rfd, const char *name, bool incremental,
                        fb_live_check **out, fb_error *err)
{
    *out = NULL;
    fb_live_check *v = calloc(1, sizeof *v);
    if (!v)
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", name);
    v->incremental = incremental;
    v->name = strdup(name);
    if (!v->name) {
        free(v);
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", name);
    }
    char label[FB_ERROR_MESSAGE_MAX];
    snprintf(label, sizeof label, "%s: %s", name, FB_ARCHIVE_NAME);
    int rc = fb_archive_follower_new(archive_rfd, label, &v->follower, err);
    if (rc == 0)
        rc = fb_xxh128_init(&v->file_fp, err);
    if (rc < 0) {
        fb_live_check_free(v);
        return rc;
    }
    pthread_mutex_init(&v->mu, NULL);
    pthread_cond_init(&v->cv, NULL);
    v->sync_live = true;
    fb_tar_source_init_follower(&v->src, v->follower, v->name);
    int e = fb_thread_start(&v->thread, check_main, v);
    if (e) {
        fb_live_check_free(v);
        return fb_error_set(err, e == EAGAIN ? FB_ENOMEM : FB_EIO,
                            "%s: cannot start the validation thread: %s", name, strerror(e));
    }
    v->running = true;
    *out = v;
    return 0;
}

void fb_live_check_written(void *ctx, uint64_t index, uint32_t c_size, uint32_t d_size,
                           uint32_t checksum)
{
    fb_live_check *v = ctx;
    fb_archive_follower_written(v->follower, index, c_size, d_size, checksum);
}

void fb_live_check_entries(fb_live_check *v, const fb_manifest_entry *entries,
                           const uint8_t (*fingerprints)[FB_XXH128_LEN], size_t n)
{
    pthread_mutex_lock(&v->mu);
    v->entries = entries;
    v->fingerprints = fingerprints;
    v->n_entries = n;
    if (v->waiting)
        pthread_cond_signal(&v->cv);
    pthread_mutex_unlock(&v->mu);
}

/* Stops a running check and waits for its thread. */
static void stop(fb_live_check *v)
{
    if (!v->running)
        return;
    pthread_mutex_lock(&v->mu);
    v->aborted = true;
    pthread_cond_broadcast(&v->cv);
    pthread_mutex_unlock(&v->mu);
    fb_archive_follower_abort(v->follower);
    pthread_join(v->thread, NULL);
    v->running = false;
}

int fb_live_check_end(fb_live_check *v, const fb_manifest_entry *entries,
                      const uint8_t (*fingerprints)[FB_XXH128_LEN], size_t n, uint64_t file_size,
                      const fb_cancel *cancel,
                      uint8_t sha256[FB_SHA256_LEN], uint64_t *frames, fb_error *err)
{
    pthread_mutex_lock(&v->mu);
    v->entries = entries;
    v->fingerprints = fingerprints;
    v->n_entries = n;
    v->writer_done = true;
    pthread_cond_broadcast(&v->cv);
    pthread_mutex_unlock(&v->mu);
    fb_archive_follower_end(v->follower, file_size);

    pthread_mutex_lock(&v->mu);
    while (!v->finished) {
        if (fb_cancelled(cancel)) {
            pthread_mutex_unlock(&v->mu);
            stop(v);
            return fb_error_set(err, FB_EINTERRUPTED, "%s: interrupted while validating",
                                v->name);
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += CANCEL_POLL_NS;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&v->cv, &v->mu, &until);
    }
    int rc = v->rc;
    if (rc < 0 && err)
        *err = v->err;
    pthread_mutex_unlock(&v->mu);
    pthread_join(v->thread, NULL);
    v->running = false;
    if (rc < 0)
        return rc;
    return fb_archive_follower_sha256(v->follower, sha256, frames, err);
}

void fb_live_check_free(fb_live_check *v)
{
    if (!v)
        return;
    stop(v);
    fb_xxh128_fini(&v->file_fp);
    if (v->sync_live) {
        pthread_cond_destroy(&v->cv);
        pthread_mutex_destroy(&v->mu);
    }
    fb_archive_follower_free(v->follower);
    free(v->name);
    free(v);
}
