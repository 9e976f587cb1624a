/* The tar stream of a backup against its manifest, shared by verify and
 * restore (see tar_check_i.h). */
#include "tar_check_i.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fb_hash.h"
#include "fb_text.h"


void fb_tar_source_init(fb_tar_source *src, fb_archive_stream *stream, const char *name,
                        fb_tar_chunk_fn on_chunk, void *chunk_ctx)
{
    memset(src, 0, sizeof *src);
    src->stream = stream;
    src->name = name;
    src->on_chunk = on_chunk;
    src->chunk_ctx = chunk_ctx;
}

void fb_tar_source_init_follower(fb_tar_source *src, fb_archive_follower *follower,
                                 const char *name)
{
    memset(src, 0, sizeof *src);
    src->follower = follower;
    src->name = name;
}

/* The next decoded chunk of src's archive; *len == 0 at the end. */
static int source_next(fb_tar_source *src, const uint8_t **data, size_t *len, fb_error *err)
{
    if (src->follower)
        return fb_archive_follower_next(src->follower, data, len, err);
    return fb_archive_stream_next(src->stream, data, len, err);
}

int fb_tar_frames_check(const fb_seek_table *t, const fb_manifest *m, const char *name,
                        fb_error *err)
{
    if (t->n_frames != m->archive.frames)
        return fb_error_set(err, FB_ECORRUPT, "%s: %s: has %zu frames, the manifest says %llu",
                            name, FB_ARCHIVE_NAME, t->n_frames,
                            (unsigned long long)m->archive.frames);
    for (size_t i = 0; i < t->n_frames; i++)
        if (t->frames[i].d_size > m->archive.frame_size)
            return fb_error_set(err, FB_ECORRUPT,
                                "%s: %s: frame %zu holds %u bytes, more than the frame size %llu",
                                name, FB_ARCHIVE_NAME, i, t->frames[i].d_size,
                                (unsigned long long)m->archive.frame_size);
    return 0;
}

static la_ssize_t source_read(struct archive *a, void *ctx, const void **buf)
{
    fb_tar_source *src = ctx;
    if (src->at_end)
        return 0;
    const uint8_t *data = NULL;
    size_t len = 0;
    int rc = source_next(src, &data, &len, &src->stream_err);
    if (rc == 0 && len == 0) {
        src->at_end = true;
        return 0;
    }
    if (rc == 0 && src->on_chunk)
        rc = src->on_chunk(src->chunk_ctx, data, len, &src->stream_err);
    if (rc < 0) {
        /* libarchive keeps only a message; the code and ours are kept here
         * for fb_tar_source_failure. */
        src->stream_rc = rc;
        archive_set_error(a, rc == FB_ENOMEM ? ENOMEM : EIO, "%s", src->stream_err.message);
        return -1;
    }
    *buf = data;
    return (la_ssize_t)len;
}

int fb_tar_source_open(fb_tar_source *src, struct archive **out, fb_error *err)
{
    *out = NULL;
    struct archive *a = archive_read_new();
    if (!a)
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", src->name);
    if (archive_read_support_format_tar(a) != ARCHIVE_OK ||
        archive_read_support_filter_none(a) != ARCHIVE_OK) {
        int rc = fb_error_set(err, FB_EIO, "%s: libarchive: %s", src->name,
                              archive_error_string(a));
        archive_read_free(a);
        return rc;
    }
    if (archive_read_open(a, src, NULL, source_read, NULL) != ARCHIVE_OK) {
        int rc = fb_tar_source_failure(src, a, err);
        archive_read_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

int fb_tar_source_failure(fb_tar_source *src, struct archive *a, fb_error *err)
{
    if (src->stream_rc < 0) {
        if (err)
            *err = src->stream_err;
        return src->stream_rc;
    }
    const char *msg = archive_error_string(a);
    return fb_error_set(err, FB_ECORRUPT, "%s: %s: tar stream: %s", src->name, FB_ARCHIVE_NAME,
                        msg ? msg : "unreadable");
}

int fb_tar_source_next(fb_tar_source *src, struct archive *a, struct archive_entry **ae,
                       fb_error *err)
{
    int r = archive_read_next_header(a, ae);
    if (r == ARCHIVE_EOF)
        return 0;
    if (r == ARCHIVE_OK || r == ARCHIVE_WARN)
        return 1;
    return fb_tar_source_failure(src, a, err);
}

int fb_tar_source_finish(fb_tar_source *src, const uint8_t want[FB_SHA256_LEN], fb_error *err)
{
    while (!src->at_end) {
        const uint8_t *data;
        size_t len;
        int rc = source_next(src, &data, &len, err);
        if (rc < 0)
            return rc;
        if (len == 0) {
            src->at_end = true;
            break;
        }
        if (src->on_chunk && (rc = src->on_chunk(src->chunk_ctx, data, len, err)) < 0)
            return rc;
    }
    if (!want)
        return 0;
    uint8_t sum[FB_SHA256_LEN];
    int rc = src->follower ? fb_archive_follower_sha256(src->follower, sum, NULL, err)
                           : fb_archive_stream_file_sha256(src->stream, sum, err);
    if (rc < 0)
        return rc;
    if (memcmp(sum, want, FB_SHA256_LEN) != 0)
        return fb_error_set(err, FB_ECORRUPT, "%s: %s: sha256 mismatch", src->name,
                            FB_ARCHIVE_NAME);
    return 0;
}

int fb_tar_json_check(const char *name, const char *path, const char *buf, size_t len,
                      fb_error *err)
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
        return fb_tar_corrupt(err, name, path, "member does not parse as JSON");
    return 0;
}

int fb_tar_corrupt(fb_error *err, const char *name, const char *path, const char *what)
{
    char esc[600];
    fb_path_escape(path, esc, sizeof esc);
    return fb_error_set(err, FB_ECORRUPT, "%s: %s: %s", name, esc, what);
}

static int mismatch(fb_error *err, const char *name, const char *path, const char *field,
                    long long got, long long want)
{
    char esc[600];
    fb_path_escape(path, esc, sizeof esc);
    if (!strcmp(field, "mode"))
        return fb_error_set(err, FB_ECORRUPT,
                            "%s: %s: mode is 0%llo in the archive, 0%llo in the manifest", name,
                            esc, (unsigned long long)got, (unsigned long long)want);
    return fb_error_set(err, FB_ECORRUPT,
                        "%s: %s: %s is %lld in the archive, %lld in the manifest", name, esc,
                        field, got, want);
}

static bool type_matches(const fb_manifest_entry *e, mode_t ft, const char *hardlink)
{
    switch (e->meta.type) {
    case FB_ENTRY_FILE:
        return ft == AE_IFREG && !hardlink;
    case FB_ENTRY_DIR:
        return ft == AE_IFDIR && !hardlink;
    case FB_ENTRY_SYMLINK:
        return ft == AE_IFLNK && !hardlink;
    case FB_ENTRY_HARDLINK:
        /* A hardlink header names its file; libarchive types it as a
         * regular file or not at all. */
        return hardlink != NULL && (ft == AE_IFREG || ft == 0);
    }
    return false;
}

int fb_tar_entry_check(struct archive_entry *ae, const fb_manifest_entry *e,
                       int64_t data_offset, const char *name, fb_error *err)
{
    const char *p = archive_entry_pathname(ae);
    if (!p)
        p = archive_entry_pathname_utf8(ae);
    if (!p)
        return fb_tar_corrupt(err, name, e->path, "tar entry without a readable path");
    size_t plen = strlen(p);
    /* Tar writers mark directories with one trailing '/'. */
    if (e->meta.type == FB_ENTRY_DIR && plen > 1 && p[plen - 1] == '/')
        plen--;
    if (plen != strlen(e->path) || memcmp(p, e->path, plen) != 0) {
        char esc[600], msg[700];
        fb_path_escape(p, esc, sizeof esc);
        snprintf(msg, sizeof msg, "the archive has a different entry here: %s", esc);
        return fb_tar_corrupt(err, name, e->path, msg);
    }

    const char *hl = archive_entry_hardlink(ae);
    if (!type_matches(e, archive_entry_filetype(ae), hl)) {
        char msg[128];
        snprintf(msg, sizeof msg, "type differs (manifest: %s)", fb_entry_type_name(e->meta.type));
        return fb_tar_corrupt(err, name, e->path, msg);
    }
    if (e->meta.type == FB_ENTRY_SYMLINK) {
        const char *t = archive_entry_symlink(ae);
        if (!t)
            t = archive_entry_symlink_utf8(ae);
        if (!t || !e->target || strcmp(t, e->target) != 0)
            return fb_tar_corrupt(err, name, e->path, "symlink target differs");
    }
    if (e->meta.type == FB_ENTRY_HARDLINK && (!e->target || strcmp(hl, e->target) != 0))
        return fb_tar_corrupt(err, name, e->path, "hardlink target differs");
    if (archive_entry_sparse_count(ae) > 0)
        return fb_tar_corrupt(err, name, e->path, "sparse tar entry");

    uint64_t want_size = e->meta.type == FB_ENTRY_FILE ? e->meta.size : 0;
    if (!archive_entry_size_is_set(ae) && want_size)
        return fb_tar_corrupt(err, name, e->path, "tar entry has no size");
    la_int64_t tsize = archive_entry_size(ae);
    if (tsize < 0 || (uint64_t)tsize != want_size)
        return mismatch(err, name, e->path, "size", (long long)tsize, (long long)want_size);
    uint32_t perm = (uint32_t)(archive_entry_perm(ae) & 07777);
    if (perm != e->meta.mode)
        return mismatch(err, name, e->path, "mode", (long long)perm, (long long)e->meta.mode);
    if (archive_entry_uid(ae) != (la_int64_t)e->meta.uid)
        return mismatch(err, name, e->path, "uid", (long long)archive_entry_uid(ae),
                        (long long)e->meta.uid);
    if (archive_entry_gid(ae) != (la_int64_t)e->meta.gid)
        return mismatch(err, name, e->path, "gid", (long long)archive_entry_gid(ae),
                        (long long)e->meta.gid);
    if ((int64_t)archive_entry_mtime(ae) != e->meta.mtime)
        return mismatch(err, name, e->path, "mtime", (long long)archive_entry_mtime(ae),
                        (long long)e->meta.mtime);
    if ((uint32_t)archive_entry_mtime_nsec(ae) != e->meta.mtime_nsec)
        return mismatch(err, name, e->path, "mtime_nsec", (long long)archive_entry_mtime_nsec(ae),
                        (long long)e->meta.mtime_nsec);
    /* The mount and restore read a file's bytes at its recorded offset. */
    if (e->meta.type == FB_ENTRY_FILE && (data_offset < 0 || (uint64_t)data_offset != e->offset))
        return mismatch(err, name, e->path, "data offset", (long long)data_offset,
                        (long long)e->offset);
    return 0;
}

int fb_tar_entry_data(fb_tar_source *src, struct archive *a, const fb_manifest_entry *e,
                      fb_tar_data_fn sink, void *sink_ctx, fb_error *err)
{
    fb_sha256 h;
    int rc = fb_sha256_init(&h, err);
    if (rc < 0)
        return rc;
    uint64_t want = e->meta.type == FB_ENTRY_FILE ? e->meta.size : 0;
    uint64_t got = 0;
    for (;;) {
        const void *buf;
        size_t len;
        la_int64_t off;
        int ar = archive_read_data_block(a, &buf, &len, &off);
        if (ar == ARCHIVE_EOF)
            break;
        if (ar != ARCHIVE_OK) {
            rc = fb_tar_source_failure(src, a, err);
            break;
        }
        if (off < 0 || (uint64_t)off != got) {
            rc = fb_tar_corrupt(err, src->name, e->path, "data with holes");
            break;
        }
        if (len > want - got) {
            rc = fb_tar_corrupt(err, src->name, e->path,
                                "more data in the archive than the manifest size");
            break;
        }
        if (len == 0)
            continue;
        fb_sha256_update(&h, buf, len);
        if (sink && (rc = sink(sink_ctx, buf, len, err)) < 0)
            break;
        got += len;
    }
    uint8_t digest[FB_SHA256_LEN];
    fb_sha256_final(&h, digest);
    fb_sha256_fini(&h);
    if (rc < 0)
        return rc;
    if (got != want)
        return mismatch(err, src->name, e->path, "content size", (long long)got,
                        (long long)want);
    if (e->meta.type == FB_ENTRY_FILE && memcmp(digest, e->sha256, FB_SHA256_LEN) != 0)
        return fb_tar_corrupt(err, src->name, e->path, "content sha256 mismatch");
    return 0;
}
