/* Full check of one backup directory against its manifest. The archive is
 * read once, sequentially: the archive reader checks every frame (sizes,
 * content checksum) and hashes the whole file; the decompressed stream is fed
 * to libarchive's tar reader, whose entries must equal the manifest's one by
 * one; and independently of libarchive, the bytes at each file's recorded
 * offset in the raw stream are hashed, because the mount and restore read
 * files by offset, so a wrong offset must fail here even if the tar is fine. */
#include "fb_verify.h"

#include <archive.h>
#include <archive_entry.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fb_archive_reader.h"
#include "fb_hash.h"
#include "fb_seek_table.h"
#include "scan_i.h"

#define ARCHIVE_NAME "archive.tar.zst"
/* JSON members of an incremental are parsed in memory; beyond this they are
 * reported instead of parsed. */
#define JSON_MEMBER_MAX (64u * 1024 * 1024)

typedef struct range_check {
    size_t entry;    /* manifest index of the file entry being hashed */
    uint64_t hashed; /* bytes of it hashed so far */
    bool active;     /* a hash context is open */
    fb_sha256 h;
} range_check;

typedef struct verify_ctx {
    const fb_manifest *m;
    const char *name;
    fb_error *err;
    fb_archive_stream *stream;
    uint64_t pos;          /* decompressed bytes handed to libarchive so far */
    bool at_end;
    int stream_rc;         /* error from the stream inside the read callback */
    fb_error stream_err;
    /* The raw-offset check. */
    range_check rc;
    size_t next_range;     /* next manifest entry to look at for a range */
    size_t bad_range;      /* first entry whose bytes at its offset mismatch, or SIZE_MAX */
    uint64_t last_end;     /* end of the previous range, to refuse overlaps */
    bool ranges_out_of_order;
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

static int range_start(verify_ctx *c)
{
    range_advance(c);
    if (c->next_range >= c->m->n_entries)
        return 0;
    const fb_manifest_entry *e = &c->m->entries[c->next_range];
    if (e->offset < c->last_end)
        c->ranges_out_of_order = true;
    if (fb_sha256_init(&c->rc.h, c->err) < 0)
        return FB_ENOMEM;
    c->rc.entry = c->next_range;
    c->rc.hashed = 0;
    c->rc.active = true;
    return 0;
}

/* Hashes the part of [offset, offset+size) of each file that lies in the
 * chunk [pos, pos+len) of the decompressed stream. */
static int range_feed(verify_ctx *c, const uint8_t *data, size_t len)
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
            fb_sha256_fini(&c->rc.h);
            c->rc.active = false;
            if (c->bad_range == SIZE_MAX)
                c->bad_range = c->rc.entry;
            c->next_range++;
            int r = range_start(c);
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
        fb_sha256_fini(&c->rc.h);
        c->rc.active = false;
        if (memcmp(got, e->sha256, FB_SHA256_LEN) != 0 && c->bad_range == SIZE_MAX)
            c->bad_range = c->rc.entry;
        c->last_end = e->offset + e->meta.size;
        c->next_range++;
        int r = range_start(c);
        if (r < 0)
            return r;
    }
    return 0;
}

static la_ssize_t read_cb(struct archive *a, void *ctx, const void **buf)
{
    verify_ctx *c = ctx;
    if (c->at_end)
        return 0;
    const uint8_t *data = NULL;
    size_t len = 0;
    int rc = fb_archive_stream_next(c->stream, &data, &len, &c->stream_err);
    if (rc < 0) {
        c->stream_rc = rc;
        archive_set_error(a, EIO, "%s", c->stream_err.message);
        return -1;
    }
    if (len == 0) {
        c->at_end = true;
        return 0;
    }
    rc = range_feed(c, data, len);
    if (rc < 0) {
        c->stream_rc = rc;
        fb_error_set(&c->stream_err, rc, "%s: out of memory", c->name);
        archive_set_error(a, ENOMEM, "out of memory");
        return -1;
    }
    c->pos += len;
    *buf = data;
    return (la_ssize_t)len;
}

static int corrupt(verify_ctx *c, const char *path, const char *fmt, const char *a,
                   const char *b)
{
    char esc[600];
    fb_path_escape(path, esc, sizeof esc);
    char detail[800];
    snprintf(detail, sizeof detail, fmt, a, b);
    return fb_error_set(c->err, FB_ECORRUPT, "%s: %s: %s", c->name, esc, detail);
}

static int corrupt_num(verify_ctx *c, const char *path, const char *what, long long got,
                       long long want)
{
    char esc[600];
    fb_path_escape(path, esc, sizeof esc);
    if (!strcmp(what, "mode"))
        return fb_error_set(c->err, FB_ECORRUPT,
                            "%s: %s: mode is 0%llo in the archive, 0%llo in the manifest", c->name,
                            esc, (unsigned long long)got, (unsigned long long)want);
    return fb_error_set(c->err, FB_ECORRUPT,
                        "%s: %s: %s is %lld in the archive, %lld in the manifest", c->name, esc,
                        what, got, want);
}

/* The error after libarchive failed: ours from the stream if that was the
 * cause, else libarchive's parse error. */
static int tar_failure(verify_ctx *c, struct archive *a)
{
    if (c->stream_rc < 0) {
        *c->err = c->stream_err;
        return c->stream_rc;
    }
    const char *msg = archive_error_string(a);
    return fb_error_set(c->err, FB_ECORRUPT, "%s: %s: tar stream: %s", c->name, ARCHIVE_NAME,
                        msg ? msg : "unreadable");
}

static bool ends_with_json(const char *p)
{
    size_t n = strlen(p);
    return n >= 5 && memcmp(p + n - 5, ".json", 5) == 0;
}

static int check_json(verify_ctx *c, const char *path, const char *buf, size_t len)
{
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    bool ok = j != NULL;
    if (ok) {
        /* cJSON stops after the first value: the rest may only be blanks. */
        size_t at = (size_t)(end - buf);
        while (at < len && (buf[at] == ' ' || buf[at] == '\t' || buf[at] == '\n' ||
                            buf[at] == '\r'))
            at++;
        ok = at == len;
    }
    cJSON_Delete(j);
    if (!ok)
        return corrupt(c, path, "%s%s", "member does not parse as JSON", "");
    return 0;
}

/* Compares one tar header with manifest entry e, then reads its data. */
static int check_entry(verify_ctx *c, struct archive *a, struct archive_entry *ae,
                       const fb_manifest_entry *e)
{
    const char *p = archive_entry_pathname(ae);
    if (!p)
        p = archive_entry_pathname_utf8(ae);
    if (!p)
        return corrupt(c, e->path, "%s%s", "tar entry without a readable path", "");
    size_t plen = strlen(p);
    /* Tar writers mark directories with one trailing '/'. */
    if (e->meta.type == FB_ENTRY_DIR && plen > 1 && p[plen - 1] == '/')
        plen--;
    if (plen != strlen(e->path) || memcmp(p, e->path, plen) != 0) {
        char esc[600];
        fb_path_escape(p, esc, sizeof esc);
        return corrupt(c, e->path, "%s%s", "the archive has a different entry here: ", esc);
    }

    const char *hl = archive_entry_hardlink(ae);
    mode_t ft = archive_entry_filetype(ae);
    const char *want_type = fb_entry_type_name(e->meta.type);
    bool type_ok;
    switch (e->meta.type) {
    case FB_ENTRY_FILE:
        type_ok = ft == AE_IFREG && !hl;
        break;
    case FB_ENTRY_DIR:
        type_ok = ft == AE_IFDIR && !hl;
        break;
    case FB_ENTRY_SYMLINK:
        type_ok = ft == AE_IFLNK && !hl;
        break;
    case FB_ENTRY_HARDLINK:
        type_ok = hl != NULL;
        break;
    default:
        type_ok = false;
    }
    if (!type_ok)
        return corrupt(c, e->path, "type differs (manifest: %s)%s", want_type, "");
    if (e->meta.type == FB_ENTRY_SYMLINK) {
        const char *t = archive_entry_symlink(ae);
        if (!t)
            t = archive_entry_symlink_utf8(ae);
        if (!t || !e->target || strcmp(t, e->target) != 0)
            return corrupt(c, e->path, "%s%s", "symlink target differs", "");
    }
    if (e->meta.type == FB_ENTRY_HARDLINK && (!e->target || strcmp(hl, e->target) != 0))
        return corrupt(c, e->path, "%s%s", "hardlink target differs", "");
    if (archive_entry_sparse_count(ae) > 0)
        return corrupt(c, e->path, "%s%s", "sparse tar entry", "");

    uint64_t want_size = e->meta.type == FB_ENTRY_FILE ? e->meta.size : 0;
    if (!archive_entry_size_is_set(ae) && want_size)
        return corrupt(c, e->path, "%s%s", "tar entry has no size", "");
    la_int64_t tsize = archive_entry_size(ae);
    if (tsize < 0 || (uint64_t)tsize != want_size)
        return corrupt_num(c, e->path, "size", (long long)tsize, (long long)want_size);
    if ((uint32_t)(archive_entry_perm(ae) & 07777) != e->meta.mode)
        return corrupt_num(c, e->path, "mode", (long long)(archive_entry_perm(ae) & 07777),
                           (long long)e->meta.mode);
    if (archive_entry_uid(ae) != (la_int64_t)e->meta.uid)
        return corrupt_num(c, e->path, "uid", (long long)archive_entry_uid(ae),
                           (long long)e->meta.uid);
    if (archive_entry_gid(ae) != (la_int64_t)e->meta.gid)
        return corrupt_num(c, e->path, "gid", (long long)archive_entry_gid(ae),
                           (long long)e->meta.gid);
    if ((int64_t)archive_entry_mtime(ae) != e->meta.mtime)
        return corrupt_num(c, e->path, "mtime", (long long)archive_entry_mtime(ae),
                           (long long)e->meta.mtime);
    if ((uint32_t)archive_entry_mtime_nsec(ae) != e->meta.mtime_nsec)
        return corrupt_num(c, e->path, "mtime_nsec", (long long)archive_entry_mtime_nsec(ae),
                           (long long)e->meta.mtime_nsec);
    if (e->meta.type == FB_ENTRY_FILE) {
        /* Right after the header libarchive has consumed exactly the headers,
         * so its position is where this file's data starts. */
        la_int64_t at = archive_filter_bytes(a, 0);
        if (at < 0 || (uint64_t)at != e->offset)
            return corrupt_num(c, e->path, "data offset", (long long)at, (long long)e->offset);
    }

    /* The data, as libarchive returns it. */
    bool want_json = c->m->type == FB_BACKUP_INCREMENTAL && e->meta.type == FB_ENTRY_FILE &&
                     ends_with_json(e->path);
    if (want_json && e->meta.size > JSON_MEMBER_MAX)
        return corrupt(c, e->path, "%s%s",
                       "JSON member over 64 MiB, too large to check that it parses", "");
    char *json = NULL;
    if (want_json) {
        json = malloc(e->meta.size ? e->meta.size : 1);
        if (!json)
            return fb_error_set(c->err, FB_ENOMEM, "%s: out of memory", c->name);
    }
    fb_sha256 h;
    if (fb_sha256_init(&h, c->err) < 0) {
        free(json);
        return FB_ENOMEM;
    }
    uint64_t got = 0;
    int rc = 0;
    for (;;) {
        const void *buf;
        size_t len;
        la_int64_t off;
        int r = archive_read_data_block(a, &buf, &len, &off);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK) {
            rc = tar_failure(c, a);
            break;
        }
        if (off < 0 || (uint64_t)off != got) {
            rc = corrupt(c, e->path, "%s%s", "data with holes", "");
            break;
        }
        if (len > e->meta.size - got || e->meta.type != FB_ENTRY_FILE) {
            rc = corrupt(c, e->path, "%s%s", "more data in the archive than the manifest size", "");
            break;
        }
        fb_sha256_update(&h, buf, len);
        if (json)
            memcpy(json + got, buf, len);
        got += len;
    }
    uint8_t digest[FB_SHA256_LEN];
    fb_sha256_final(&h, digest);
    fb_sha256_fini(&h);
    if (rc == 0 && got != want_size)
        rc = corrupt_num(c, e->path, "content size", (long long)got, (long long)want_size);
    if (rc == 0 && e->meta.type == FB_ENTRY_FILE && memcmp(digest, e->sha256, FB_SHA256_LEN) != 0)
        rc = corrupt(c, e->path, "%s%s", "content sha256 mismatch", "");
    if (rc == 0 && json)
        rc = check_json(c, e->path, json, (size_t)got);
    free(json);
    return rc;
}

static int open_archive(verify_ctx *c, int backup_dirfd, int *fd_out)
{
    int fd = openat(backup_dirfd, ARCHIVE_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return fb_error_set(c->err, FB_ECORRUPT, "%s: %s: missing", c->name, ARCHIVE_NAME);
        if (e == ELOOP)
            return fb_error_set(c->err, FB_ECORRUPT, "%s: %s: is a symlink", c->name,
                                ARCHIVE_NAME);
        return fb_error_set_errno(c->err, e, "%s: %s", c->name, ARCHIVE_NAME);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fb_error_set_errno(c->err, e, "%s: %s", c->name, ARCHIVE_NAME);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fb_error_set(c->err, FB_ECORRUPT, "%s: %s: not a regular file", c->name,
                            ARCHIVE_NAME);
    }
    if ((uint64_t)st.st_size != c->m->archive.size) {
        close(fd);
        return fb_error_set(c->err, FB_ECORRUPT,
                            "%s: %s: size is %lld bytes, the manifest says %llu", c->name,
                            ARCHIVE_NAME, (long long)st.st_size,
                            (unsigned long long)c->m->archive.size);
    }
    *fd_out = fd;
    return 0;
}

/* After the tar end: hash the rest of the file (the stream must be drained
 * for the whole-file SHA-256) and compare. */
static int finish_stream(verify_ctx *c)
{
    while (!c->at_end) {
        const uint8_t *data;
        size_t len;
        int rc = fb_archive_stream_next(c->stream, &data, &len, c->err);
        if (rc < 0)
            return rc;
        if (len == 0) {
            c->at_end = true;
            break;
        }
        rc = range_feed(c, data, len);
        if (rc < 0)
            return rc;
        c->pos += len;
    }
    uint8_t sum[FB_SHA256_LEN];
    int rc = fb_archive_stream_file_sha256(c->stream, sum, c->err);
    if (rc < 0)
        return rc;
    if (memcmp(sum, c->m->archive.sha256, FB_SHA256_LEN) != 0)
        return fb_error_set(c->err, FB_ECORRUPT, "%s: %s: sha256 mismatch", c->name,
                            ARCHIVE_NAME);
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
    if (c->bad_range != SIZE_MAX) {
        const fb_manifest_entry *e = &c->m->entries[c->bad_range];
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
    struct archive *a = archive_read_new();
    if (!a)
        return fb_error_set(c->err, FB_ENOMEM, "%s: out of memory", c->name);
    int rc = 0;
    if (archive_read_support_format_tar(a) != ARCHIVE_OK ||
        archive_read_support_filter_none(a) != ARCHIVE_OK) {
        rc = fb_error_set(c->err, FB_EIO, "%s: libarchive: %s", c->name, archive_error_string(a));
        archive_read_free(a);
        return rc;
    }
    if (archive_read_open(a, c, NULL, read_cb, NULL) != ARCHIVE_OK) {
        rc = tar_failure(c, a);
        archive_read_free(a);
        return rc;
    }
    size_t idx = 0;
    for (;;) {
        struct archive_entry *ae;
        int r = archive_read_next_header(a, &ae);
        if (r == ARCHIVE_EOF)
            break;
        /* ARCHIVE_WARN is a charset remark; the path bytes are compared below. */
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            rc = tar_failure(c, a);
            break;
        }
        if (idx >= c->m->n_entries) {
            /* Count the extra entries for the message. */
            size_t count = idx + 1;
            while ((r = archive_read_next_header(a, &ae)) == ARCHIVE_OK || r == ARCHIVE_WARN)
                count++;
            if (r != ARCHIVE_EOF)
                rc = tar_failure(c, a);
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
    verify_ctx c;
    memset(&c, 0, sizeof c);
    c.m = m;
    c.name = name ? name : "backup";
    c.err = err;
    c.bad_range = SIZE_MAX;

    int fd = -1;
    int rc = open_archive(&c, backup_dirfd, &fd);
    if (rc < 0)
        return rc;
    char label[FB_ERROR_MESSAGE_MAX];
    snprintf(label, sizeof label, "%s: %s", c.name, ARCHIVE_NAME);
    fb_archive_reader *reader = NULL;
    rc = fb_archive_reader_open(fd, NULL, label, &reader, err);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    const fb_seek_table *t = fb_archive_reader_seek_table(reader);
    if (t->n_frames != m->archive.frames) {
        rc = fb_error_set(err, FB_ECORRUPT, "%s: %s: has %zu frames, the manifest says %llu",
                          c.name, ARCHIVE_NAME, t->n_frames,
                          (unsigned long long)m->archive.frames);
        goto out;
    }
    for (size_t i = 0; i < t->n_frames; i++) {
        if (t->frames[i].d_size > m->archive.frame_size) {
            rc = fb_error_set(err, FB_ECORRUPT,
                              "%s: %s: frame %zu holds %u bytes, more than the frame size %llu",
                              c.name, ARCHIVE_NAME, i, t->frames[i].d_size,
                              (unsigned long long)m->archive.frame_size);
            goto out;
        }
    }
    rc = fb_archive_stream_new(reader, &c.stream, err);
    if (rc < 0)
        goto out;
    rc = range_start(&c);
    if (rc == 0)
        rc = walk_tar(&c);
    if (rc == 0)
        rc = finish_stream(&c);
    if (rc == 0)
        rc = check_ranges(&c);
out:
    if (c.rc.active)
        fb_sha256_fini(&c.rc.h);
    fb_archive_stream_free(c.stream);
    fb_archive_reader_free(reader);
    return rc < 0 ? rc : 0;
}

static int field_mismatch(fb_error *err, const fb_index_record *rec, const char *field)
{
    return fb_error_set(err, FB_ECORRUPT,
                        "index record %s: field '%s' disagrees with the backup's manifest",
                        rec->id, field);
}

int fb_verify_index_record(const fb_index_record *rec, const fb_manifest *m, fb_error *err)
{
    if (strcmp(rec->id, m->backup_id) != 0)
        return field_mismatch(err, rec, "id");
    if (rec->seq != m->seq)
        return field_mismatch(err, rec, "seq");
    if (rec->type != m->type)
        return field_mismatch(err, rec, "type");
    if (rec->created_at != m->created_at)
        return field_mismatch(err, rec, "created_at");
    if ((rec->note == NULL) != (m->note == NULL) ||
        (rec->note && strcmp(rec->note, m->note) != 0))
        return field_mismatch(err, rec, "note");
    if (strcmp(rec->base, m->base) != 0)
        return field_mismatch(err, rec, "base");
    if (rec->files != m->totals.files)
        return field_mismatch(err, rec, "files");
    if (rec->bytes != m->totals.bytes)
        return field_mismatch(err, rec, "bytes");
    if (rec->stored_bytes != m->archive.size)
        return field_mismatch(err, rec, "stored_bytes");
    if (memcmp(rec->archive_sha256, m->archive.sha256, FB_SHA256_LEN) != 0)
        return field_mismatch(err, rec, "archive_sha256");
    return 0;
}
