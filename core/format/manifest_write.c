/* Writing manifest.json in the layout SPEC "manifest.json" asks for:
 * compact, the top-level fields first, then one entry per line, so that jq
 * reads it whole and grep finds one entry by its path. Written as text
 * straight from the in-memory manifest (never a JSON tree), and handed to a
 * sink in chunks so that a backup never holds the whole text (issue 10:
 * 100,000 entries are about 21 MB of it). */
#include "fb_manifest.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fb_text.h"
#include "manifest_i.h"

#ifndef FB_VERSION
#define FB_VERSION "unknown"
#endif

static void write_entry(fb_json_writer *w, const fb_manifest_entry *e)
{
    fb_json_begin_object(w);
    fb_json_put_name(w, "path", e->path);
    fb_json_put_meta(w, &e->meta);
    switch (e->meta.type) {
    case FB_ENTRY_FILE:
        fb_json_put_sha256(w, "sha256", e->sha256);
        fb_json_key(w, "offset");
        fb_json_u64(w, e->offset);
        break;
    case FB_ENTRY_SYMLINK:
        fb_json_put_name(w, "target", e->target ? e->target : "");
        break;
    case FB_ENTRY_HARDLINK:
        fb_json_put_name(w, "link", e->target ? e->target : "");
        break;
    case FB_ENTRY_DIR:
        break;
    }
    fb_json_end_object(w);
}

/* The top-level fields before "entries", in SPEC order. */
static void write_header(fb_json_writer *w, const fb_manifest *m)
{
    fb_json_key(w, "format");
    fb_json_i64(w, m->format);
    fb_json_key(w, "backup_id");
    fb_json_string(w, m->backup_id);
    fb_json_key(w, "seq");
    fb_json_u64(w, m->seq);
    fb_json_key(w, "session_id");
    fb_json_string(w, m->session_id);
    fb_json_put_backup_origin(w, m->type, m->created_at, m->note, m->base);
    fb_json_key(w, "tool_version");
    fb_json_string(w, m->tool_version ? m->tool_version : FB_VERSION);

    fb_json_key(w, "archive");
    fb_json_begin_object(w);
    fb_json_key(w, "size");
    fb_json_u64(w, m->archive.size);
    fb_json_put_sha256(w, "sha256", m->archive.sha256);
    fb_json_key(w, "frame_size");
    fb_json_u64(w, m->archive.frame_size);
    fb_json_key(w, "frames");
    fb_json_u64(w, m->archive.frames);
    fb_json_key(w, "level");
    fb_json_i64(w, m->archive.level);
    fb_json_end_object(w);

    fb_json_key(w, "totals");
    fb_json_begin_object(w);
    fb_json_key(w, "files");
    fb_json_u64(w, m->totals.files);
    fb_json_key(w, "dirs");
    fb_json_u64(w, m->totals.dirs);
    fb_json_key(w, "symlinks");
    fb_json_u64(w, m->totals.symlinks);
    fb_json_key(w, "bytes");
    fb_json_u64(w, m->totals.bytes);
    fb_json_end_object(w);
}

/* Hands the pending text to the sink and empties the writer's buffer. Its
 * state (depth, separators) stays: json_write.c looks at what it wrote only
 * at the top level (a second top-level value), never inside a container, so
 * the buffer may be emptied between two entries. */
static int drain(fb_json_writer *w, fb_manifest_sink sink, void *ctx, fb_error *err)
{
    if (w->len == 0)
        return 0;
    int rc = sink(ctx, w->buf, w->len, err);
    w->len = 0;
    w->buf[0] = '\0';
    return rc < 0 ? rc : 0;
}

int fb_manifest_write(const fb_manifest *m, fb_manifest_sink sink, void *ctx, fb_error *err)
{
    char created[32];
    int64_t check;
    fb_rfc3339_format(m->created_at, created);
    if (fb_rfc3339_parse(created, &check) < 0 || check != m->created_at)
        return fb_error_set(err, FB_EMISUSE, "manifest %s: created_at %" PRId64
                            " cannot be written as RFC 3339", m->backup_id, m->created_at);

    fb_json_writer w;
    fb_json_writer_init_compact(&w);
    fb_json_begin_object(&w);
    write_header(&w, m);
    fb_json_key(&w, "entries");
    fb_json_items_on_lines(&w);
    fb_json_begin_array(&w);
    int rc = 0;
    for (size_t i = 0; i < m->n_entries && !w.error && rc == 0; i++) {
        write_entry(&w, &m->entries[i]);
        if (w.len >= FB_MANIFEST_CHUNK && !w.error)
            rc = drain(&w, sink, ctx, err);
    }
    if (rc < 0) {
        fb_json_writer_fini(&w);
        return rc;
    }
    fb_json_end_array(&w);
    fb_json_end_object(&w);
    char what[64];
    snprintf(what, sizeof what, "manifest %s", m->backup_id);
    char *tail = NULL;
    size_t tail_len = 0;
    rc = fb_json_writer_finish(&w, what, &tail, &tail_len, err);
    if (rc < 0)
        return rc;
    rc = sink(ctx, tail, tail_len, err);
    free(tail);
    return rc < 0 ? rc : 0;
}

/* fb_manifest_to_json's sink: the chunks appended into one malloc'd text. */
typedef struct text_sink {
    char *buf;
    size_t len, cap;
    const char *backup_id;
} text_sink;

static int append_text(void *ctx, const char *data, size_t len, fb_error *err)
{
    text_sink *t = ctx;
    size_t need;
    if (__builtin_add_overflow(t->len, len + 1, &need))
        return fb_error_set(err, FB_ENOMEM, "manifest %s: too large", t->backup_id);
    if (need > t->cap) {
        size_t cap = t->cap ? t->cap : 2 * FB_MANIFEST_CHUNK;
        while (cap < need)
            if (__builtin_mul_overflow(cap, 2, &cap))
                return fb_error_set(err, FB_ENOMEM, "manifest %s: too large", t->backup_id);
        char *b = realloc(t->buf, cap);
        if (!b)
            return fb_error_set(err, FB_ENOMEM, "manifest %s: out of memory", t->backup_id);
        t->buf = b;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, data, len);
    t->len += len;
    t->buf[t->len] = '\0';
    return 0;
}

int fb_manifest_to_json(const fb_manifest *m, char **out, size_t *out_len, fb_error *err)
{
    *out = NULL;
    if (out_len)
        *out_len = 0;
    text_sink t = {.backup_id = m->backup_id};
    int rc = fb_manifest_write(m, append_text, &t, err);
    if (rc < 0) {
        free(t.buf);
        return rc;
    }
    *out = t.buf;
    if (out_len)
        *out_len = t.len;
    return 0;
}
