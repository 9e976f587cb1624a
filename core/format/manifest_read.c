/* Reading manifest.json: the strict validation every manifest read from
 * disk goes through. A manifest is the source of truth for a backup, and
 * restore, verify and the mount trust what it says once it parsed, so every
 * rule that keeps those safe (relative paths, no entry below a symlink,
 * hardlinks to earlier files, data ranges inside the tar stream that do not
 * overlap) is enforced here, once. */
#include "fb_manifest.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fb_store.h"
#include "fb_text.h"
#include "json_stream_i.h"
#include "manifest_entry_fast_i.h"
#include "manifest_i.h"

/* ------------------------------------------------------------- parsing */

/* Rejects a key that does not belong to this entry type: a reader that
 * trusted it (a file with a `target`) would see a different entry. */
static int refuse_keys(const fb_json_val *obj, const char *const *keys, const char *type_name,
                       fb_error *err)
{
    for (size_t i = 0; keys[i]; i++) {
        if (fb_json_find_key(obj->node, keys[i]))
            return fb_json_fail_key(obj, keys[i], err, "not allowed on a %s entry", type_name);
    }
    return 0;
}

static int parse_entry(const fb_json_val *ev, fb_manifest_entry *e, fb_error *err)
{
    int rc = fb_json_as_object(ev, 0, err);
    if (rc < 0)
        return rc;
    const char *s;
    uint64_t v;
    if ((rc = fb_json_get_name(ev, "path", 0, &e->path, err)) < 0)
        return rc;
    const char *why = fb_manifest_path_problem(e->path, strlen(e->path));
    if (why) {
        char esc[256];
        fb_path_escape(e->path, esc, sizeof esc);
        return fb_json_fail_key(ev, "path", err, "\"%s\": %s", esc, why);
    }
    if ((rc = fb_json_get_string(ev, "type", 0, &s, err)) < 0)
        return rc;
    if (fb_entry_type_parse(s, &e->meta.type) < 0) {
        char q[FB_TEXT_QUOTE_SIZE(FB_JSON_QUOTE_CUT)];
        fb_text_quote_n(s, strlen(s), FB_JSON_QUOTE_CUT, q, sizeof q);
        return fb_json_fail_key(ev, "type", err,
                                "expected file, dir, symlink or hardlink, got \"%s\"", q);
    }
    if ((rc = fb_json_get_u64(ev, "mode", 0, 0, 07777, &v, err)) < 0)
        return rc;
    e->meta.mode = (uint32_t)v;
    if ((rc = fb_json_get_u64(ev, "uid", 0, 0, UINT32_MAX, &v, err)) < 0)
        return rc;
    e->meta.uid = (uint32_t)v;
    if ((rc = fb_json_get_u64(ev, "gid", 0, 0, UINT32_MAX, &v, err)) < 0)
        return rc;
    e->meta.gid = (uint32_t)v;
    if ((rc = fb_json_get_i64(ev, "mtime", 0, INT64_MIN, INT64_MAX, &e->meta.mtime, err)) < 0)
        return rc;
    if ((rc = fb_json_get_u64(ev, "mtime_nsec", 0, 0, 999999999, &v, err)) < 0)
        return rc;
    e->meta.mtime_nsec = (uint32_t)v;
    if ((rc = fb_json_get_u64(ev, "size", 0, 0, FB_JSON_INT_MAX, &e->meta.size, err)) < 0)
        return rc;

    static const char *const not_file[] = {"sha256", "offset", NULL};
    static const char *const not_symlink[] = {"target", "target_b64", NULL};
    static const char *const not_hardlink[] = {"link", "link_b64", NULL};
    const char *tname = fb_entry_type_name(e->meta.type);
    if (e->meta.type != FB_ENTRY_FILE && (rc = refuse_keys(ev, not_file, tname, err)) < 0)
        return rc;
    if (e->meta.type != FB_ENTRY_SYMLINK && (rc = refuse_keys(ev, not_symlink, tname, err)) < 0)
        return rc;
    if (e->meta.type != FB_ENTRY_HARDLINK && (rc = refuse_keys(ev, not_hardlink, tname, err)) < 0)
        return rc;

    switch (e->meta.type) {
    case FB_ENTRY_FILE:
        if ((rc = fb_json_get_sha256(ev, "sha256", e->sha256, err)) < 0)
            return rc;
        if ((rc = fb_json_get_u64(ev, "offset", 0, 0, FB_JSON_INT_MAX, &e->offset, err)) < 0)
            return rc;
        uint64_t end;
        if (__builtin_add_overflow(e->offset, e->meta.size, &end))
            return fb_json_fail_key(ev, "offset", err, "offset + size overflows");
        break;
    case FB_ENTRY_SYMLINK:
        if ((rc = fb_json_get_name(ev, "target", 0, &e->target, err)) < 0)
            return rc;
        /* Any content is allowed: the target is stored, never followed. */
        if (e->target[0] == '\0')
            return fb_json_fail_key(ev, "target", err, "empty symlink target");
        if (strlen(e->target) > FB_PATH_MAX)
            return fb_json_fail_key(ev, "target", err, "longer than %d bytes", FB_PATH_MAX);
        break;
    case FB_ENTRY_HARDLINK:
        if ((rc = fb_json_get_name(ev, "link", 0, &e->target, err)) < 0)
            return rc;
        why = fb_manifest_path_problem(e->target, strlen(e->target));
        if (why) {
            char esc[256];
            fb_path_escape(e->target, esc, sizeof esc);
            return fb_json_fail_key(ev, "link", err, "\"%s\": %s", esc, why);
        }
        break;
    case FB_ENTRY_DIR:
        break;
    }
    return 0;
}

/* Reports a broken cross-entry rule at entry i of the JSON array ctx. */
static int json_entry_fail(void *ctx, size_t i, const char *key, const char *msg, fb_error *err)
{
    fb_json_val ev;
    fb_json_element(ctx, NULL, i, &ev);
    return fb_json_fail_key(&ev, key, err, "%s", msg);
}

static int check_totals(const fb_manifest *m, const fb_json_val *root, fb_error *err)
{
    fb_manifest_totals t = {0};
    for (size_t i = 0; i < m->n_entries; i++)
        if (!fb_manifest_totals_add(&t, &m->entries[i].meta))
            return fb_json_fail_key(root, "totals", err, "sum of file sizes overflows");
    fb_json_val tv;
    fb_json_member(root, "totals", 0, &tv, NULL);
    const struct {
        const char *key;
        uint64_t stated, actual;
    } rows[] = {
        {"files", m->totals.files, t.files},
        {"dirs", m->totals.dirs, t.dirs},
        {"symlinks", m->totals.symlinks, t.symlinks},
        {"bytes", m->totals.bytes, t.bytes},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (rows[i].stated != rows[i].actual)
            return fb_json_fail_key(&tv, rows[i].key, err,
                                    "%" PRIu64 " but the entries add up to %" PRIu64,
                                    rows[i].stated, rows[i].actual);
    }
    return 0;
}

static int parse_archive_totals(fb_manifest *m, const fb_json_val *root, fb_error *err)
{
    int rc;
    fb_json_val av;
    uint64_t v;
    int64_t level;
    if ((rc = fb_json_get_object(root, "archive", 0, &av, err)) < 0)
        return rc;
    if ((rc = fb_json_get_u64(&av, "size", 0, 0, FB_JSON_INT_MAX, &m->archive.size, err)) < 0 ||
        (rc = fb_json_get_sha256(&av, "sha256", m->archive.sha256, err)) < 0 ||
        (rc = fb_json_get_u64(&av, "frame_size", 0, 1, FB_JSON_INT_MAX, &m->archive.frame_size,
                              err)) < 0 ||
        (rc = fb_json_get_u64(&av, "frames", 0, 0, FB_JSON_INT_MAX, &m->archive.frames, err)) < 0 ||
        (rc = fb_json_get_i64(&av, "level", 0, FB_ZSTD_LEVEL_MIN, FB_ZSTD_LEVEL_MAX, &level, err)) < 0)
        return rc;
    m->archive.level = (int)level;

    fb_json_val tv;
    if ((rc = fb_json_get_object(root, "totals", 0, &tv, err)) < 0)
        return rc;
    const struct {
        const char *key;
        uint64_t *dst;
    } totals[] = {
        {"files", &m->totals.files},
        {"dirs", &m->totals.dirs},
        {"symlinks", &m->totals.symlinks},
        {"bytes", &m->totals.bytes},
    };
    for (size_t i = 0; i < sizeof totals / sizeof totals[0]; i++)
        if ((rc = fb_json_get_u64(&tv, totals[i].key, 0, 0, FB_JSON_INT_MAX, &v, err)) < 0)
            return rc;
        else
            *totals[i].dst = v;
    return 0;
}

/* The top-level fields but `entries`, in the order their errors are
 * reported. */
static int parse_header(fb_manifest *m, const fb_json_val *root, fb_error *err)
{
    int rc = fb_json_as_object(root, 0, err);
    if (rc < 0)
        return rc;
    int64_t format;
    if ((rc = fb_json_get_i64(root, "format", 0, INT64_MIN, INT64_MAX, &format, err)) < 0)
        return rc;
    if (format != FB_MANIFEST_FORMAT) {
        /* Valid but newer (or bogus): not something this version can read. */
        fb_json_fail_key(root, "format", err,
                         "unsupported manifest format %" PRId64 " (this tool reads %d)", format,
                         FB_MANIFEST_FORMAT);
        if (err)
            err->code = FB_EUNSUPPORTED;
        return FB_EUNSUPPORTED;
    }
    m->format = (int)format;

    if ((rc = fb_json_get_backup_id(root, "backup_id", 0, m->backup_id, err)) < 0)
        return rc;
    if ((rc = fb_json_get_u64(root, "seq", 0, 1, FB_JSON_INT_MAX, &m->seq, err)) < 0)
        return rc;

    const char *s;
    if ((rc = fb_json_get_session_id(root, &s, err)) < 0)
        return rc;
    memcpy(m->session_id, s, strlen(s) + 1);

    if ((rc = fb_json_get_backup_type(root, "backup_id", m->backup_id, &m->type, err)) < 0)
        return rc;
    if ((rc = fb_json_get_created_at(root, &m->created_at, err)) < 0)
        return rc;

    if ((rc = fb_json_get_string(root, "note", FB_JSON_NULLABLE, &s, err)) < 0)
        return rc;
    if (s && (rc = fb_manifest_set_note(m, s, err)) < 0)
        return rc;

    if ((rc = fb_json_get_base(root, m->type, m->base, err)) < 0)
        return rc;

    if ((rc = fb_json_get_string(root, "tool_version", 0, &s, err)) < 0)
        return rc;
    if ((rc = fb_manifest_set_tool_version(m, s, err)) < 0)
        return rc;
    return parse_archive_totals(m, root, err);
}

/* The whole document as one tree: the reading of older versions, now only
 * run for a document the streaming read found malformed, so that its error
 * is reported exactly as before (position, the first error in the order
 * the whole-tree parse finds them). Its memory is bounded by the
 * pre-scan's value limit, as it always was. */
static int parse_whole_root(fb_manifest *m, const fb_json_val *root, fb_error *err)
{
    int rc = parse_header(m, root, err);
    if (rc < 0)
        return rc;
    fb_json_val arr;
    size_t count;
    if ((rc = fb_json_get_array(root, "entries", 0, &arr, &count, err)) < 0)
        return rc;
    if (count) {
        m->entries = calloc(count, sizeof *m->entries);
        if (!m->entries)
            return fb_error_set(err, FB_ENOMEM, "%s: out of memory", "manifest");
        m->cap_entries = count;
    }
    size_t i = 0;
    for (const cJSON *c = ((const cJSON *)arr.node)->child; c; c = c->next, i++) {
        fb_json_val ev;
        fb_json_element(&arr, c, i, &ev);
        m->n_entries = i + 1; /* counted first, so fini frees a half-filled entry */
        if ((rc = parse_entry(&ev, &m->entries[i], err)) < 0)
            return rc;
    }
    if ((rc = fb_manifest_check_entries(m, json_entry_fail, &arr, err)) < 0)
        return rc;
    return check_totals(m, root, err);
}

static int parse_whole(const char *json, size_t len, const char *source, fb_manifest *out,
                       fb_error *err)
{
    fb_json_doc *doc;
    int rc = fb_json_parse(json, len, FB_MANIFEST_SIZE_MAX, source, FB_ECORRUPT, &doc, err);
    if (rc < 0)
        return rc;
    fb_json_val root;
    fb_json_root(doc, &root);
    rc = parse_whole_root(out, &root, err);
    fb_json_doc_free(doc);
    return rc;
}

/* ------------------------------------------------------------ streaming */

/* Returned by the streaming read when the text is not well-formed JSON
 * (grammar, duplicate keys): parse_whole then reports it as it always did. */
#define NEED_WHOLE 1

/* The streaming read: the top-level members are parsed one by one into a
 * small root object, the entries one at a time, each converted and freed
 * before the next, so the peak is the manifest itself plus one entry's
 * tree. Errors come out in the order the whole-tree read reports them:
 * every syntax error (any part, anywhere) before any broken rule, so a
 * broken rule is kept in `rule` until the whole text has been checked. */
typedef struct stream {
    const char *text;
    size_t len;
    fb_json_doc *doc;
    fb_json_val root;
    fb_json_span entries; /* the `entries` array, if it is one */
    size_t entries_max;   /* how many it holds at most */
    bool have_entries;
    int rule_rc; /* first broken rule (0: none yet) */
    fb_error rule;
    bool fast; /* entries by the fast reading where it can */
} stream;

/* A part's error: out of memory is final, anything else a syntax error. */
static int part_failed(int rc)
{
    return rc == FB_ENOMEM ? rc : NEED_WHOLE;
}

static void keep_rule(stream *st, int rc)
{
    if (rc < 0 && st->rule_rc == 0)
        st->rule_rc = rc;
}

/* One top-level member into the root; the entries array is only noted
 * (an empty array stands in for it, for the type and key checks). */
static int add_member(stream *st, const fb_json_member_span *ms, fb_error *err)
{
    cJSON *key = cJSON_ParseWithLength(st->text + ms->key.off, ms->key.len);
    if (!key || !cJSON_IsString(key)) {
        cJSON_Delete(key);
        return NEED_WHOLE;
    }
    int rc;
    cJSON *value = NULL;
    if (strcmp(key->valuestring, "entries") == 0 && st->text[ms->value.off] == '[') {
        st->entries = ms->value;
        st->entries_max = ms->items_max;
        st->have_entries = true;
        value = cJSON_CreateArray();
        rc = value ? 0 : fb_error_set(err, FB_ENOMEM, "manifest: out of memory");
    } else {
        fb_json_val where = {.parent = &st->root, .key = key->valuestring};
        rc = fb_json_parse_part(st->doc, ms->value.off, ms->value.len, &where, &value, err);
        if (rc)
            rc = part_failed(rc);
    }
    if (rc == 0)
        rc = fb_json_doc_add(st->doc, key->valuestring, value, err);
    cJSON_Delete(key);
    return rc;
}

static int stream_root(stream *st, fb_error *err)
{
    fb_json_member_span *ms;
    size_t n;
    int rc = fb_json_scan_object(st->text, st->len, &ms, &n);
    if (rc != FB_JSON_SCAN_OK)
        return rc == FB_JSON_SCAN_BAD ? NEED_WHOLE
                                      : fb_error_set(err, FB_ENOMEM, "manifest: out of memory");
    rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = add_member(st, &ms[i], err);
    free(ms);
    if (rc == 0 && fb_json_doc_check_keys(st->doc, err) != 0)
        rc = err && err->code == FB_ENOMEM ? FB_ENOMEM : NEED_WHOLE;
    return rc;
}

/* The smallest valid entry ({"path":"a","type":"dir", six 0s}) is 85
 * bytes: the entries table is sized for what the text can hold, not for
 * the commas of the array, which a corrupt text can hold by the hundred
 * million. It grows if an estimate ever falls short. */
#define ENTRY_BYTES_MIN 64

static int entry_slot(fb_manifest *m, size_t i, fb_error *err)
{
    if (i < m->cap_entries)
        return 0;
    size_t cap = m->cap_entries ? m->cap_entries * 2 : 64, bytes;
    fb_manifest_entry *e = NULL;
    if (!__builtin_mul_overflow(cap, sizeof *e, &bytes))
        e = realloc(m->entries, bytes);
    if (!e)
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", "manifest");
    memset(e + m->cap_entries, 0, (cap - m->cap_entries) * sizeof *e);
    m->entries = e;
    m->cap_entries = cap;
    return 0;
}

/* Entry i by the fast reading (manifest_entry_fast_i.h), while no rule is
 * broken: 1 when it was read, 0 when the strict reading must. */
static int read_entry_fast(stream *st, fb_manifest *m, fb_json_elements *it, size_t i,
                           fb_error *err)
{
    size_t at, end;
    if (!st->fast || st->rule_rc || fb_json_elements_peek(it, &at) <= 0)
        return 0;
    int rc = entry_slot(m, i, err);
    if (rc < 0)
        return rc;
    rc = fb_manifest_entry_read_fast(st->text, it->end - 1, at, &m->entries[i], &end);
    if (rc < 0)
        return fb_error_set(err, rc, "%s: out of memory", "manifest");
    if (rc) {
        m->n_entries = i + 1;
        fb_json_elements_skip(it, end);
    }
    return rc;
}

/* Parses (and, while no rule is broken, converts) every entry. */
static int stream_entries(stream *st, fb_manifest *m, const fb_json_val *arr, fb_error *err)
{
    size_t cap = st->len / ENTRY_BYTES_MIN + 1;
    if (cap > st->entries_max)
        cap = st->entries_max;
    if (st->rule_rc == 0) {
        m->entries = calloc(cap, sizeof *m->entries);
        if (!m->entries)
            return fb_error_set(err, FB_ENOMEM, "%s: out of memory", "manifest");
        m->cap_entries = cap;
    }
    fb_json_elements it;
    fb_json_span el;
    int more = 0;
    fb_json_elements_begin(&it, st->text, st->entries);
    for (size_t i = 0;; i++) {
        int fast = read_entry_fast(st, m, &it, i, err);
        if (fast < 0)
            return fast;
        if (fast)
            continue;
        if ((more = fb_json_elements_next(&it, &el)) <= 0)
            break;
        fb_json_val ev;
        fb_json_element(arr, NULL, i, &ev);
        cJSON *node;
        int rc = fb_json_parse_part(st->doc, el.off, el.len, &ev, &node, err);
        if (rc == 0 && st->rule_rc == 0)
            rc = entry_slot(m, i, err);
        if (rc) {
            cJSON_Delete(node);
            return part_failed(rc);
        }
        ev.node = node;
        if (st->rule_rc == 0) {
            m->n_entries = i + 1; /* counted first, so fini frees a half-filled entry */
            keep_rule(st, parse_entry(&ev, &m->entries[i], &st->rule));
        }
        cJSON_Delete(node);
    }
    return more < 0 ? NEED_WHOLE : 0;
}

static int parse_stream(const char *json, size_t len, const char *source, bool fast,
                        fb_manifest *m, fb_error *err)
{
    stream st = {.text = json, .len = len, .fast = fast};
    fb_error_clear(&st.rule);
    int rc = fb_json_doc_new(json, len, source, FB_ECORRUPT, &st.doc, err);
    if (rc < 0)
        return rc;
    fb_json_root(st.doc, &st.root);
    rc = stream_root(&st, err);
    if (rc == 0) {
        keep_rule(&st, parse_header(m, &st.root, &st.rule));
        fb_json_val arr;
        size_t count;
        if (st.rule_rc == 0)
            keep_rule(&st, fb_json_get_array(&st.root, "entries", 0, &arr, &count, &st.rule));
        else
            fb_json_member(&st.root, "entries", FB_JSON_OPTIONAL, &arr, NULL);
        if (st.have_entries)
            rc = stream_entries(&st, m, &arr, err);
        if (rc == 0 && st.rule_rc == 0 &&
            (rc = fb_manifest_check_entries(m, json_entry_fail, &arr, err)) == 0)
            rc = check_totals(m, &st.root, err);
    }
    if (rc == 0 && st.rule_rc) {
        rc = st.rule_rc;
        if (err)
            *err = st.rule;
    }
    fb_json_doc_free(st.doc);
    return rc;
}

int fb_manifest_parse(const char *json, size_t len, const char *source, fb_manifest *out,
                      fb_error *err)
{
    return fb_manifest_parse_with(json, len, source, true, out, err);
}

int fb_manifest_parse_with(const char *json, size_t len, const char *source, bool fast,
                           fb_manifest *out, fb_error *err)
{
    fb_manifest_init(out);
    if (!source)
        source = FB_MANIFEST_NAME;
    int rc = fb_json_check_text(json, len, FB_MANIFEST_SIZE_MAX, source, FB_ECORRUPT, err);
    if (rc == 0)
        rc = parse_stream(json, len, source, fast, out, err);
    if (rc == NEED_WHOLE) {
        fb_manifest_fini(out);
        rc = parse_whole(json, len, source, out, err);
    }
    if (rc < 0)
        fb_manifest_fini(out);
    return rc;
}
