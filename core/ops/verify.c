/* Full check of one backup directory against its manifest. The archive is
 * read once, sequentially: the archive reader checks every frame (sizes,
 * content checksum) and hashes the whole file; the decompressed stream is fed
 * to libarchive's tar reader, whose entries must equal the manifest's one by
 * one, each file's data starting exactly at its recorded offset.
 *
 * File contents are hashed once, from the raw stream: the bytes at
 * [offset, offset + size) of each file, as the frames go by on their way to
 * libarchive, because the mount and restore read files by offset. This runs
 * as a frame hook of the archive stream, on the read-ahead thread that
 * decoded the frame, while it is still in that core's cache. libarchive only
 * parses the headers and skips the data: with the header's data position
 * equal to the recorded offset and its size equal to the recorded size, its
 * data and the raw range are the same bytes, so hashing them a second time
 * would prove nothing more. Only the .json members of an incremental are
 * read through libarchive too, to be parsed. */
#include "fb_verify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fb_archive_reader.h"
#include "fb_hash.h"
#include "fb_text.h"
#include "clock_i.h"
#include "tar_check_i.h"

/* JSON members of an incremental are parsed in memory; beyond this they are
 * reported instead of parsed. */
#define JSON_MEMBER_MAX (64u * 1024 * 1024)
/* A progress sink hears from us at most this often (and at the end). */
#define PROGRESS_INTERVAL_SECONDS 0.05

typedef struct range_check {
    size_t entry;    /* manifest index of the file entry being hashed */
    uint64_t hashed; /* bytes of it hashed so far */
    bool active;     /* a file is being hashed in h */
    fb_sha256 h;
} range_check;

typedef struct verify_ctx {
    const fb_manifest *m;
    const char *name;
    fb_error *err;
    fb_archive_stream *stream;
    fb_tar_source src;
    /* The raw-offset check, run by the frame hook: in stream order, but
     * maybe on a read-ahead thread. Only bad_range is read meanwhile (by
     * the walk); the rest is read once the stream has ended or stopped. */
    uint64_t pos;          /* decompressed bytes hashed so far */
    range_check rc;
    size_t next_range;     /* next manifest entry to look at for a range */
    atomic_size_t bad_range; /* first entry whose bytes at its offset mismatch, or SIZE_MAX */
    uint64_t last_end;     /* end of the previous range, to refuse overlaps */
    bool ranges_out_of_order;
    /* Progress, in archive bytes, on the caller's thread (the tar source's
     * chunk hook): the decompressed bytes fed so far, mapped through the
     * seek table to the end of the last frame they cover. */
    const char *phase;
    fb_progress_fn progress;
    void *progress_ctx;
    const fb_seek_table *table;
    uint64_t fed;
    size_t frames_done;
    double last_report;
    const fb_cancel *cancel; /* polled per chunk, on the caller's thread */
} verify_ctx;

static bool is_data_entry(const fb_manifest_entry *e)
{
    return e->meta.type == FB_ENTRY_FILE && e->meta.size > 0;
}

static void range_advance(verify_ctx *c)
{
    while (c->next_range < c->m->n_entries && !is_data_entry(&c->m->entries[c->next_range]))
        c->next_range++;
}

/* Records the first bad range (entries are checked in order). */
static void range_bad(verify_ctx *c, size_t entry)
{
    if (atomic_load(&c->bad_range) == SIZE_MAX)
        atomic_store(&c->bad_range, entry);
}

static int range_start(verify_ctx *c, fb_error *err)
{
    range_advance(c);
    if (c->next_range >= c->m->n_entries)
        return 0;
    const fb_manifest_entry *e = &c->m->entries[c->next_range];
    if (e->offset < c->last_end)
        c->ranges_out_of_order = true;
    /* One context for every file, reset here: see fb_sha256_reset. */
    if (!c->rc.h.ctx && fb_sha256_init(&c->rc.h, err) < 0)
        return FB_ENOMEM;
    if (fb_sha256_reset(&c->rc.h, err) < 0)
        return FB_ENOMEM;
    c->rc.entry = c->next_range;
    c->rc.hashed = 0;
    c->rc.active = true;
    return 0;
}

/* Hashes the part of [offset, offset+size) of each file that lies in the
 * chunk [pos, pos+len) of the decompressed stream. */
static int range_feed(verify_ctx *c, const uint8_t *data, size_t len, fb_error *err)
{
    uint64_t chunk_end = c->pos + len;
    while (c->rc.active) {
        const fb_manifest_entry *e = &c->m->entries[c->rc.entry];
        uint64_t need = e->offset + c->rc.hashed;
        if (need >= chunk_end)
            break;
        if (need < c->pos) {
            /* Its start lies before this chunk: overlapping or unordered
             * ranges, which a valid manifest never has. */
            c->ranges_out_of_order = true;
            c->rc.active = false;
            range_bad(c, c->rc.entry);
            c->next_range++;
            int r = range_start(c, err);
            if (r < 0)
                return r;
            continue;
        }
        uint64_t take = e->meta.size - c->rc.hashed;
        if (take > chunk_end - need)
            take = chunk_end - need;
        fb_sha256_update(&c->rc.h, data + (need - c->pos), (size_t)take);
        c->rc.hashed += take;
        if (c->rc.hashed < e->meta.size)
            break;
        uint8_t got[FB_SHA256_LEN];
        fb_sha256_final(&c->rc.h, got);
        c->rc.active = false;
        if (memcmp(got, e->sha256, FB_SHA256_LEN) != 0)
            range_bad(c, c->rc.entry);
        c->last_end = e->offset + e->meta.size;
        c->next_range++;
        int r = range_start(c, err);
        if (r < 0)
            return r;
    }
    return 0;
}

/* The frame hook: every decompressed frame passes here, in order, before
 * libarchive gets it. */
static int on_frame(void *ctx, const uint8_t *data, size_t len, fb_error *err)
{
    verify_ctx *c = ctx;
    int rc = range_feed(c, data, len, err);
    if (rc < 0)
        return fb_error_set(err, rc, "%s: out of memory", c->name);
    c->pos += len;
    return 0;
}

static void report(verify_ctx *c, uint64_t done)
{
    c->last_report = fb_monotonic_seconds();
    c->progress(c->progress_ctx, c->phase, done, c->m->archive.size);
}

static int on_chunk(void *ctx, const uint8_t *data, size_t len, fb_error *err)
{
    (void)data;
    (void)err;
    verify_ctx *c = ctx;
    if (fb_cancelled(c->cancel))
        return fb_error_set(err, FB_EINTERRUPTED, "%s: interrupted while verifying", c->name);
    if (!c->progress)
        return 0;
    c->fed += len;
    const fb_seek_table *t = c->table;
    size_t k = c->frames_done;
    while (k < t->n_frames && t->frames[k].d_offset + t->frames[k].d_size <= c->fed)
        k++;
    c->frames_done = k;
    if (k > 0 && fb_monotonic_seconds() - c->last_report >= PROGRESS_INTERVAL_SECONDS)
        report(c, t->frames[k - 1].c_offset + t->frames[k - 1].c_size);
    return 0;
}

static bool ends_with_json(const char *p)
{
    size_t n = strlen(p);
    return n >= 5 && memcmp(p + n - 5, ".json", 5) == 0;
}

static int check_json(verify_ctx *c, const char *path, const char *buf, size_t len)
{
    return fb_tar_json_check(c->name, path, buf, len, c->err);
}

/* Where the data of a JSON member is collected to be parsed. */
typedef struct json_buf {
    char *data;
    size_t len;
} json_buf;

static int collect_json(void *ctx, const void *buf, size_t len, fb_error *err)
{
    (void)err;
    json_buf *j = ctx;
    /* fb_tar_entry_data never hands more than the manifest size. */
    memcpy(j->data + j->len, buf, len);
    j->len += len;
    return 0;
}

/* Once libarchive has read the header of entry `before` (or the end), the
 * data of every earlier entry has gone through range_feed: a mismatch among
 * them is reported now, so the first problem in stream order is the one
 * named. */
static int check_hashed_before(verify_ctx *c, size_t before)
{
    size_t bad = atomic_load(&c->bad_range);
    if (bad == SIZE_MAX || bad >= before)
        return 0;
    return fb_tar_corrupt(c->err, c->name, c->m->entries[bad].path, "content sha256 mismatch");
}

/* Compares one tar header with manifest entry e, then passes its data. */
static int check_entry(verify_ctx *c, struct archive *a, struct archive_entry *ae,
                       const fb_manifest_entry *e)
{
    int rc = fb_tar_entry_check(ae, e, archive_filter_bytes(a, 0), c->name, c->err);
    if (rc < 0)
        return rc;
    bool want_json = c->m->type == FB_BACKUP_INCREMENTAL && e->meta.type == FB_ENTRY_FILE &&
                     ends_with_json(e->path);
    if (!want_json) {
        /* The header's size is the manifest's (checked above), so libarchive
         * skips exactly the bytes range_feed hashes. */
        if (archive_read_data_skip(a) != ARCHIVE_OK)
            return fb_tar_source_failure(&c->src, a, c->err);
        return 0;
    }
    if (e->meta.size > JSON_MEMBER_MAX)
        return fb_tar_corrupt(c->err, c->name, e->path,
                              "JSON member over 64 MiB, too large to check that it parses");
    json_buf j = {.data = malloc(e->meta.size ? e->meta.size : 1), .len = 0};
    if (!j.data)
        return fb_error_set(c->err, FB_ENOMEM, "%s: out of memory", c->name);
    rc = fb_tar_entry_data(&c->src, a, e, collect_json, &j, c->err);
    if (rc == 0)
        rc = check_json(c, e->path, j.data, j.len);
    free(j.data);
    return rc;
}

static int open_archive(verify_ctx *c, int backup_dirfd, int *fd_out)
{
    int fd = openat(backup_dirfd, FB_ARCHIVE_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return fb_error_set(c->err, FB_ECORRUPT, "%s: %s: missing", c->name, FB_ARCHIVE_NAME);
        if (e == ELOOP)
            return fb_error_set(c->err, FB_ECORRUPT, "%s: %s: is a symlink", c->name,
                                FB_ARCHIVE_NAME);
        return fb_error_set_errno(c->err, e, "%s: %s", c->name, FB_ARCHIVE_NAME);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fb_error_set_errno(c->err, e, "%s: %s", c->name, FB_ARCHIVE_NAME);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fb_error_set(c->err, FB_ECORRUPT, "%s: %s: not a regular file", c->name,
                            FB_ARCHIVE_NAME);
    }
    if ((uint64_t)st.st_size != c->m->archive.size) {
        close(fd);
        return fb_error_set(c->err, FB_ECORRUPT,
                            "%s: %s: size is %lld bytes, the manifest says %llu", c->name,
                            FB_ARCHIVE_NAME, (long long)st.st_size,
                            (unsigned long long)c->m->archive.size);
    }
    *fd_out = fd;
    return 0;
}

static int check_ranges(verify_ctx *c)
{
    if (c->rc.active || (range_advance(c), c->next_range < c->m->n_entries)) {
        size_t i = c->rc.active ? c->rc.entry : c->next_range;
        char esc[600];
        fb_path_escape(c->m->entries[i].path, esc, sizeof esc);
        return fb_error_set(c->err, FB_ECORRUPT,
                            "%s: %s: data offset %llu + size %llu lies beyond the end of the "
                            "tar stream",
                            c->name, esc, (unsigned long long)c->m->entries[i].offset,
                            (unsigned long long)c->m->entries[i].meta.size);
    }
    size_t bad = atomic_load(&c->bad_range);
    if (bad != SIZE_MAX) {
        const fb_manifest_entry *e = &c->m->entries[bad];
        char esc[600];
        fb_path_escape(e->path, esc, sizeof esc);
        return fb_error_set(c->err, FB_ECORRUPT,
                            "%s: %s: the bytes at the recorded offset %llu do not match its "
                            "sha256",
                            c->name, esc, (unsigned long long)e->offset);
    }
    if (c->ranges_out_of_order)
        return fb_error_set(c->err, FB_ECORRUPT, "%s: file data offsets overlap or are unordered",
                            c->name);
    return 0;
}

static int walk_tar(verify_ctx *c)
{
    struct archive *a;
    int rc = fb_tar_source_open(&c->src, &a, c->err);
    if (rc < 0)
        return rc;
    size_t idx = 0;
    for (;;) {
        struct archive_entry *ae;
        fb_error tar_err;
        fb_error_clear(&tar_err);
        int r = fb_tar_source_next(&c->src, a, &ae, &tar_err);
        /* What the entries before this one were hashed to is told first. */
        if ((rc = check_hashed_before(c, idx)) < 0 || r == 0)
            break;
        if (r < 0) {
            rc = r;
            if (c->err)
                *c->err = tar_err;
            break;
        }
        if (idx >= c->m->n_entries) {
            /* Count the extra entries for the message. */
            size_t count = idx + 1;
            while ((r = fb_tar_source_next(&c->src, a, &ae, c->err)) > 0)
                count++;
            if (r < 0)
                rc = r;
            else
                rc = fb_error_set(c->err, FB_ECORRUPT, "%s: archive has %zu entries, manifest %zu",
                                  c->name, count, c->m->n_entries);
            break;
        }
        rc = check_entry(c, a, ae, &c->m->entries[idx]);
        if (rc < 0)
            break;
        idx++;
    }
    if (rc == 0 && idx < c->m->n_entries)
        rc = fb_error_set(c->err, FB_ECORRUPT, "%s: archive has %zu entries, manifest %zu",
                          c->name, idx, c->m->n_entries);
    archive_read_free(a);
    return rc;
}

int fb_verify_backup_dir(int backup_dirfd, const fb_manifest *m, const char *name, fb_error *err)
{
    return fb_verify_backup_dir_with(backup_dirfd, m, name, NULL, err);
}

int fb_verify_backup_dir_with(int backup_dirfd, const fb_manifest *m, const char *name,
                              const fb_verify_dir_options *opts, fb_error *err)
{
    const char *phase = opts ? opts->phase : NULL;
    fb_progress_fn progress = opts ? opts->progress : NULL;
    verify_ctx c;
    memset(&c, 0, sizeof c);
    c.m = m;
    c.name = name ? name : "backup";
    c.err = err;
    c.phase = phase ? phase : "verify";
    c.progress = progress;
    c.progress_ctx = opts ? opts->progress_ctx : NULL;
    c.cancel = opts ? opts->cancel : NULL;
    atomic_init(&c.bad_range, SIZE_MAX);

    int fd = -1;
    int rc = open_archive(&c, backup_dirfd, &fd);
    if (rc < 0)
        return rc;
    char label[FB_ERROR_MESSAGE_MAX];
    snprintf(label, sizeof label, "%s: %s", c.name, FB_ARCHIVE_NAME);
    fb_archive_reader *reader = NULL;
    rc = fb_archive_reader_open(fd, NULL, label, &reader, err);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    rc = fb_tar_frames_check(fb_archive_reader_seek_table(reader), m, c.name, err);
    if (rc < 0)
        goto out;
    rc = fb_archive_stream_new(reader, &c.stream, err);
    if (rc < 0)
        goto out;
    c.table = fb_archive_reader_seek_table(reader);
    fb_tar_source_init(&c.src, c.stream, c.name, progress || c.cancel ? on_chunk : NULL, &c);
    if (progress)
        report(&c, 0);
    rc = range_start(&c, err);
    if (rc == 0)
        rc = fb_archive_stream_set_frame_hook(c.stream, on_frame, &c, err);
    if (rc == 0)
        rc = walk_tar(&c);
    if (rc == 0)
        rc = fb_tar_source_finish(&c.src, m->archive.sha256, err);
    if (rc == 0)
        rc = check_ranges(&c);
    if (rc == 0 && progress)
        report(&c, m->archive.size);
out:
    fb_archive_stream_free(c.stream); /* stops the hook's thread first */
    fb_sha256_fini(&c.rc.h);
    fb_archive_reader_free(reader);
    return rc < 0 ? rc : 0;
}

int fb_verify_index_record(const fb_index_record *rec, const fb_manifest *m, fb_error *err)
{
    const char *field = fb_index_record_mismatch(rec, m);
    if (field)
        return fb_error_set(err, FB_ECORRUPT,
                            "index record %s: field '%s' disagrees with the backup's manifest",
                            rec->id, field);
    return 0;
}
