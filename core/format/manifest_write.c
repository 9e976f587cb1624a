/* Writing manifest.json in the layout SPEC "manifest.json" asks for:
 * compact, the top-level fields first, then one entry per line, so that jq
 * reads it whole and grep finds one entry by its path. Written as text
 * straight from the in-memory manifest (never a JSON tree). */
#include "fb_manifest.h"

#include <inttypes.h>
#include <stdio.h>

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

int fb_manifest_to_json(const fb_manifest *m, char **out, size_t *out_len, fb_error *err)
{
    *out = NULL;
    if (out_len)
        *out_len = 0;
    char created[32];
    int64_t check;
    fb_rfc3339_format(m->created_at, created);
    if (fb_rfc3339_parse(created, &check) < 0 || check != m->created_at)
        return fb_error_set(err, FB_EMISUSE, "manifest %s: created_at %" PRId64
                            " cannot be written as RFC 3339", m->backup_id, m->created_at);

    fb_json_writer w;
    fb_json_writer_init_compact(&w);
    fb_json_begin_object(&w);
    fb_json_key(&w, "format");
    fb_json_i64(&w, m->format);
    fb_json_key(&w, "backup_id");
    fb_json_string(&w, m->backup_id);
    fb_json_key(&w, "seq");
    fb_json_u64(&w, m->seq);
    fb_json_key(&w, "session_id");
    fb_json_string(&w, m->session_id);
    fb_json_put_backup_origin(&w, m->type, m->created_at, m->note, m->base);
    fb_json_key(&w, "tool_version");
    fb_json_string(&w, m->tool_version ? m->tool_version : FB_VERSION);

    fb_json_key(&w, "archive");
    fb_json_begin_object(&w);
    fb_json_key(&w, "size");
    fb_json_u64(&w, m->archive.size);
    fb_json_put_sha256(&w, "sha256", m->archive.sha256);
    fb_json_key(&w, "frame_size");
    fb_json_u64(&w, m->archive.frame_size);
    fb_json_key(&w, "frames");
    fb_json_u64(&w, m->archive.frames);
    fb_json_key(&w, "level");
    fb_json_i64(&w, m->archive.level);
    fb_json_end_object(&w);

    fb_json_key(&w, "totals");
    fb_json_begin_object(&w);
    fb_json_key(&w, "files");
    fb_json_u64(&w, m->totals.files);
    fb_json_key(&w, "dirs");
    fb_json_u64(&w, m->totals.dirs);
    fb_json_key(&w, "symlinks");
    fb_json_u64(&w, m->totals.symlinks);
    fb_json_key(&w, "bytes");
    fb_json_u64(&w, m->totals.bytes);
    fb_json_end_object(&w);

    fb_json_key(&w, "entries");
    fb_json_items_on_lines(&w);
    fb_json_begin_array(&w);
    for (size_t i = 0; i < m->n_entries && !w.error; i++)
        write_entry(&w, &m->entries[i]);
    fb_json_end_array(&w);
    fb_json_end_object(&w);
    char what[64];
    snprintf(what, sizeof what, "manifest %s", m->backup_id);
    return fb_json_writer_finish(&w, what, out, out_len, err);
}
