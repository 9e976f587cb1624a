/* diff: what differs between two backups, or a backup and the live session
 * directory, from the manifests (and for live, the same walk a backup does).
 * Both sides become a "view" (entries sorted by path, hardlinks resolved to
 * the file they link to), optionally restricted to an incremental's scope,
 * and one merge over the two sorted views yields the items in path order.
 * A live entry is compared by core/store/live.c, as restore's change list
 * is: live files are read only when the quick check (size + mtime) cannot
 * tell, so a diff of a large unchanged session reads no file data. */
#include "fb_diff.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fb_text.h"
#include "json_fields_i.h"
#include "live_i.h"

/* ------------------------------------------------------------ the result */

void fb_diff_init(fb_diff *d)
{
    memset(d, 0, sizeof *d);
}

static void side_fini(fb_diff_side *s)
{
    free(s->target);
    s->target = NULL;
}

void fb_diff_fini(fb_diff *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++) {
        free(d->items[i].path);
        side_fini(&d->items[i].a);
        side_fini(&d->items[i].b);
    }
    free(d->items);
    fb_diff_init(d);
}

/* ------------------------------------------------------------- the views */

/* One entry of one side, borrowed from a manifest or the live walk. */
typedef struct view_entry {
    const char *path;
    const char *target;    /* symlink target or hardlink link (NULL otherwise) */
    fb_entry_meta meta;    /* as stored: a hardlink keeps type HARDLINK */
    fb_entry_type kind;    /* what the content is: HARDLINK becomes FILE */
    const uint8_t *sha256; /* manifest files and hardlinks: the content's; live: NULL */
    const fb_manifest_entry *stored; /* manifest side: its entry */
    size_t live_index;     /* live side: its index in the walk (fb_live.tree) */
} view_entry;

typedef struct view {
    view_entry *e;
    size_t n;
} view;

static void view_fini(view *v)
{
    free(v->e);
    v->e = NULL;
    v->n = 0;
}

static int cmp_view_entry(const void *x, const void *y)
{
    return strcmp(((const view_entry *)x)->path, ((const view_entry *)y)->path);
}

static const view_entry *view_find(const view *v, const char *path)
{
    size_t lo = 0, hi = v->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(v->e[mid].path, path);
        if (c == 0)
            return &v->e[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int oom(fb_error *err)
{
    return fb_error_set(err, FB_ENOMEM, "diff: out of memory");
}

static int view_alloc(view *v, size_t n, fb_error *err)
{
    v->n = 0;
    v->e = calloc(n ? n : 1, sizeof *v->e);
    return v->e ? 0 : oom(err);
}

static const char *manifest_label(const fb_manifest *m)
{
    return m->backup_id[0] ? m->backup_id : "(unnamed)";
}

static int view_from_manifest(const fb_manifest *m, view *out, fb_error *err)
{
    int rc = view_alloc(out, m->n_entries, err);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < m->n_entries; i++) {
        const fb_manifest_entry *me = &m->entries[i];
        view_entry *ve = &out->e[i];
        if (!me->path || me->meta.type > FB_ENTRY_HARDLINK) {
            view_fini(out);
            return fb_error_set(err, FB_EMISUSE, "diff: manifest %s: entry %zu is invalid",
                                manifest_label(m), i);
        }
        ve->path = me->path;
        ve->stored = me;
        ve->meta = me->meta;
        ve->kind = me->meta.type == FB_ENTRY_HARDLINK ? FB_ENTRY_FILE : me->meta.type;
        if (me->meta.type == FB_ENTRY_SYMLINK || me->meta.type == FB_ENTRY_HARDLINK)
            ve->target = me->target ? me->target : "";
        ve->sha256 = me->meta.type == FB_ENTRY_FILE ? me->sha256 : NULL;
    }
    out->n = m->n_entries;
    if (out->n > 1)
        qsort(out->e, out->n, sizeof *out->e, cmp_view_entry);

    char esc[600];
    for (size_t i = 1; i < out->n; i++) {
        if (strcmp(out->e[i - 1].path, out->e[i].path) == 0) {
            fb_path_escape(out->e[i].path, esc, sizeof esc);
            view_fini(out);
            return fb_error_set(err, FB_ECORRUPT, "manifest %s: duplicate path %s",
                                manifest_label(m), esc);
        }
    }
    /* A hardlink's content is its file's; resolved before any scope filter
     * removes the file it links to. */
    for (size_t i = 0; i < out->n; i++) {
        view_entry *ve = &out->e[i];
        if (ve->meta.type != FB_ENTRY_HARDLINK)
            continue;
        const view_entry *f = view_find(out, ve->target);
        if (!f || f->meta.type != FB_ENTRY_FILE) {
            char esc2[600];
            fb_path_escape(ve->path, esc, sizeof esc);
            fb_path_escape(ve->target, esc2, sizeof esc2);
            view_fini(out);
            return fb_error_set(err, FB_ECORRUPT,
                                "manifest %s: hardlink %s links to %s, which is not a file "
                                "entry",
                                manifest_label(m), esc, esc2);
        }
        ve->sha256 = f->sha256;
    }
    return 0;
}

/* The live tree as a backup would record it (fb_live_meta), in path order. */
static int view_from_live(const fb_live *lv, view *out, fb_error *err)
{
    const fb_scan_result *s = &lv->tree;
    int rc = view_alloc(out, s->n, err);
    if (rc < 0)
        return rc;
    for (size_t k = 0; k < s->n; k++) {
        size_t i = lv->by_path[k];
        const fb_scan_entry *se = &s->entries[i];
        view_entry *ve = &out->e[k];
        ve->path = se->path;
        fb_live_meta(se, &ve->meta);
        ve->kind = se->type == FB_ENTRY_HARDLINK ? FB_ENTRY_FILE : se->type;
        ve->live_index = i;
        if (se->type == FB_ENTRY_HARDLINK)
            ve->target = s->entries[se->link_index].path;
        else if (se->type == FB_ENTRY_SYMLINK)
            ve->target = se->target ? se->target : "";
    }
    out->n = s->n;
    return 0;
}

static bool in_scope(const fb_config *scope, const char *path)
{
    return fb_config_include_matches(scope, path);
}

/* Drops the non-directory entries the include patterns do not select (an
 * incremental would not hold them). Directories stay: see parent_only. */
static void view_restrict(view *v, const fb_config *scope)
{
    size_t k = 0;
    for (size_t i = 0; i < v->n; i++)
        if (v->e[i].meta.type == FB_ENTRY_DIR || in_scope(scope, v->e[i].path))
            v->e[k++] = v->e[i];
    v->n = k;
}

/* Is path the mount point m or below it? */
static bool at_or_below(const char *path, const char *m)
{
    size_t n = strlen(m);
    return strncmp(path, m, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* Drops the stored entries at and below the mount points the live walk
 * left out: what is there now was not looked at, so it can be neither
 * "removed" nor "unchanged" (the walk's warning names each one). */
static void view_drop_mounts(view *v, const fb_scan_result *live)
{
    if (!live->n_mounts)
        return;
    size_t k = 0;
    for (size_t i = 0; i < v->n; i++) {
        bool below = false;
        for (size_t j = 0; j < live->n_mounts && !below; j++)
            below = at_or_below(v->e[i].path, live->mounts[j]);
        if (!below)
            v->e[k++] = v->e[i];
    }
    v->n = k;
}

/* ------------------------------------------------------------ the merge */

typedef struct diff_run {
    const fb_diff_options *opts;
    fb_live_rules rules;
    bool scoped;
    fb_live *live; /* b is the live view when set */
    fb_diff *out;
    fb_error *err;
} diff_run;

/* A directory outside the scope is in an incremental only as the parent of
 * something in scope, so its presence on one side alone says nothing. */
static bool parent_only(const diff_run *r, const view_entry *e)
{
    return r->scoped && e->meta.type == FB_ENTRY_DIR && !in_scope(r->opts->include, e->path);
}

/* The path an entry shares its data with, for link comparison; a link
 * outside the scope would not be one in an incremental. */
static const char *link_of(const diff_run *r, const view_entry *e)
{
    if (e->meta.type != FB_ENTRY_HARDLINK)
        return NULL;
    if (r->scoped && !in_scope(r->opts->include, e->target))
        return NULL;
    return e->target;
}

/* The b side's SHA-256 if known. */
static const uint8_t *b_sha(const diff_run *r, const view_entry *b)
{
    if (!r->live)
        return b->sha256;
    return b->kind == FB_ENTRY_FILE ? fb_live_sha256(r->live, b->live_index) : NULL;
}

static int side_set(fb_diff_side *s, const view_entry *e, const uint8_t *sha, fb_error *err)
{
    s->present = true;
    s->meta = e->meta;
    if (e->target) {
        s->target = strdup(e->target);
        if (!s->target)
            return oom(err);
    }
    if (sha && e->kind == FB_ENTRY_FILE) {
        s->has_sha256 = true;
        memcpy(s->sha256, sha, FB_SHA256_LEN);
    }
    return 0;
}

static int emit(diff_run *r, fb_change_kind kind, unsigned changes, const view_entry *a,
                const view_entry *b)
{
    fb_diff *d = r->out;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64;
        size_t bytes;
        if (__builtin_mul_overflow(cap, sizeof *d->items, &bytes))
            return oom(r->err);
        fb_diff_item *ni = realloc(d->items, bytes);
        if (!ni)
            return oom(r->err);
        d->items = ni;
        d->cap = cap;
    }
    fb_diff_item *it = &d->items[d->n];
    memset(it, 0, sizeof *it);
    it->kind = kind;
    it->changes = changes;
    it->path = strdup(a ? a->path : b->path);
    /* Counted before any failure below so fb_diff_fini frees what was set. */
    d->n++;
    if (!it->path)
        return oom(r->err);
    if (a && side_set(&it->a, a, a->sha256, r->err) < 0)
        return FB_ENOMEM;
    if (b && side_set(&it->b, b, b_sha(r, b), r->err) < 0)
        return FB_ENOMEM;
    switch (kind) {
    case FB_CHANGE_ADDED: d->n_added++; break;
    case FB_CHANGE_REMOVED: d->n_removed++; break;
    case FB_CHANGE_MODIFIED: d->n_modified++; break;
    case FB_CHANGE_CHANGED: d->n_changed++; break;
    }
    return 0;
}

static bool str_differs(const char *x, const char *y)
{
    if (!x || !y)
        return x != y;
    return strcmp(x, y) != 0;
}

/* a is a manifest entry; b another manifest's, or live. */
static int compare(diff_run *r, const view_entry *a, const view_entry *b)
{
    unsigned ch;
    if (r->live) {
        int rc = fb_live_compare(r->live, b->live_index, a->stored, a->sha256, &r->rules, &ch,
                                 r->err);
        if (rc < 0)
            return rc;
    } else {
        ch = fb_meta_differs(&a->meta, a->target, &b->meta, b->target, &r->rules);
        if (a->kind == FB_ENTRY_FILE && !(ch & FB_DIFFERS_CONTENT_BITS) &&
            memcmp(a->sha256, b->sha256, FB_SHA256_LEN) != 0)
            ch |= FB_DIFFERS_CONTENT;
    }
    if (a->kind == FB_ENTRY_FILE && b->kind == FB_ENTRY_FILE &&
        str_differs(link_of(r, a), link_of(r, b)))
        ch |= FB_DIFFERS_LINK;
    if (!ch)
        return 0;
    return emit(r, fb_change_kind_of(ch), ch, a, b);
}

static int merge(diff_run *r, const view *a, const view *b)
{
    size_t i = 0, j = 0;
    int rc = 0;
    while (rc == 0 && (i < a->n || j < b->n)) {
        int c = i >= a->n ? 1 : j >= b->n ? -1 : strcmp(a->e[i].path, b->e[j].path);
        if (c < 0) {
            if (!parent_only(r, &a->e[i]))
                rc = emit(r, FB_CHANGE_REMOVED, 0, &a->e[i], NULL);
            i++;
        } else if (c > 0) {
            if (!parent_only(r, &b->e[j]))
                rc = emit(r, FB_CHANGE_ADDED, 0, NULL, &b->e[j]);
            j++;
        } else {
            rc = compare(r, &a->e[i], &b->e[j]);
            i++;
            j++;
        }
    }
    return rc;
}

/* ------------------------------------------------------------ the entry points */

static const fb_diff_options no_options;

int fb_diff_manifests(const fb_manifest *a, const fb_manifest *b, const fb_diff_options *opts,
                      fb_diff *out, fb_error *err)
{
    if (!out)
        return fb_error_set(err, FB_EMISUSE, "diff: no result to fill");
    fb_diff_fini(out);
    if (!a || !b)
        return fb_error_set(err, FB_EMISUSE, "diff: a manifest is missing");
    if (!opts)
        opts = &no_options;
    diff_run r = {
        .opts = opts,
        .rules = {.owner = true},
        .scoped = opts->include &&
                  (a->type == FB_BACKUP_INCREMENTAL || b->type == FB_BACKUP_INCREMENTAL),
        .out = out,
        .err = err,
    };
    view va = {0}, vb = {0};
    int rc = view_from_manifest(a, &va, err);
    if (rc == 0)
        rc = view_from_manifest(b, &vb, err);
    if (rc == 0 && r.scoped) {
        view_restrict(&va, opts->include);
        view_restrict(&vb, opts->include);
    }
    if (rc == 0)
        rc = merge(&r, &va, &vb);
    view_fini(&va);
    view_fini(&vb);
    if (rc < 0) {
        fb_diff_fini(out);
        return rc;
    }
    out->scoped = r.scoped;
    return 0;
}

int fb_diff_live(const fb_manifest *a, int source_fd, const char *source_name,
                 const fb_diff_options *opts, fb_diff *out, fb_error *err)
{
    if (!out)
        return fb_error_set(err, FB_EMISUSE, "diff: no result to fill");
    fb_diff_fini(out);
    if (!a || source_fd < 0)
        return fb_error_set(err, FB_EMISUSE, "diff: a manifest or the session directory is "
                                             "missing");
    if (!opts)
        opts = &no_options;
    if (!source_name)
        source_name = "session directory";
    bool scoped = opts->include && a->type == FB_BACKUP_INCREMENTAL;

    fb_live lv;
    int rc = fb_live_init(&lv, source_fd, source_name, opts->warn, opts->warn_ctx, err);
    if (rc == 0)
        rc = fb_live_walk(&lv, scoped ? opts->include : NULL, false, err);
    if (rc < 0) {
        fb_live_fini(&lv);
        return rc;
    }
    if (opts->after_scan)
        opts->after_scan(opts->after_scan_ctx);

    diff_run r = {
        .opts = opts,
        .rules = {.checksum = opts->checksum, .owner = true},
        .scoped = scoped,
        .live = &lv,
        .out = out,
        .err = err,
    };
    view va = {0}, vb = {0};
    rc = view_from_manifest(a, &va, err);
    if (rc == 0)
        rc = view_from_live(&lv, &vb, err);
    if (rc == 0 && scoped)
        view_restrict(&va, opts->include);
    if (rc == 0)
        view_drop_mounts(&va, &lv.tree);
    if (rc == 0)
        rc = merge(&r, &va, &vb);
    view_fini(&va);
    view_fini(&vb);
    out->files_hashed = lv.files_hashed;
    out->bytes_hashed = lv.bytes_hashed;
    fb_live_fini(&lv);
    if (rc < 0) {
        fb_diff_fini(out);
        return rc;
    }
    out->scoped = scoped;
    return 0;
}

/* ------------------------------------------------------------------ JSON */

static void write_side(fb_json_writer *w, const char *key, const fb_diff_side *s)
{
    fb_json_key(w, key);
    if (!s->present) {
        fb_json_null(w);
        return;
    }
    fb_json_begin_object(w);
    fb_json_put_meta(w, &s->meta);
    if (s->has_sha256)
        fb_json_put_sha256(w, "sha256", s->sha256);
    if (s->target)
        fb_json_put_name(w, s->meta.type == FB_ENTRY_HARDLINK ? "link" : "target", s->target);
    fb_json_end_object(w);
}

int fb_diff_to_json(const fb_diff *d, const char *a_name, const char *b_name, char **out,
                    size_t *out_len, fb_error *err)
{
    if (!out)
        return fb_error_set(err, FB_EMISUSE, "diff: no output for JSON");
    *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!d)
        return fb_error_set(err, FB_EMISUSE, "diff: no diff to write");
    fb_json_writer w;
    fb_json_writer_init(&w);
    fb_json_begin_object(&w);
    fb_json_key(&w, "a");
    fb_json_string_or_null(&w, a_name);
    fb_json_key(&w, "b");
    fb_json_string_or_null(&w, b_name);
    fb_json_key(&w, "scoped");
    fb_json_bool(&w, d->scoped);
    fb_json_key(&w, "summary");
    fb_json_begin_object(&w);
    fb_json_key(&w, "added");
    fb_json_u64(&w, d->n_added);
    fb_json_key(&w, "removed");
    fb_json_u64(&w, d->n_removed);
    fb_json_key(&w, "modified");
    fb_json_u64(&w, d->n_modified);
    fb_json_key(&w, "changed");
    fb_json_u64(&w, d->n_changed);
    fb_json_end_object(&w);
    fb_json_key(&w, "hashed");
    fb_json_begin_object(&w);
    fb_json_key(&w, "files");
    fb_json_u64(&w, d->files_hashed);
    fb_json_key(&w, "bytes");
    fb_json_u64(&w, d->bytes_hashed);
    fb_json_end_object(&w);
    fb_json_key(&w, "items");
    fb_json_begin_array(&w);
    for (size_t i = 0; i < d->n && !w.error; i++) {
        const fb_diff_item *it = &d->items[i];
        fb_json_begin_object(&w);
        fb_json_put_name(&w, "path", it->path);
        fb_json_key(&w, "kind");
        fb_json_string(&w, fb_change_kind_name(it->kind));
        fb_json_key(&w, "changes");
        fb_json_begin_array(&w);
        for (unsigned bit = FB_DIFFERS_TYPE; bit <= FB_DIFFERS_MTIME; bit <<= 1)
            if (it->changes & bit)
                fb_json_string(&w, fb_differs_name(bit));
        fb_json_end_array(&w);
        write_side(&w, "a", &it->a);
        write_side(&w, "b", &it->b);
        fb_json_end_object(&w);
    }
    fb_json_end_array(&w);
    fb_json_end_object(&w);
    return fb_json_writer_finish(&w, "diff", out, out_len, err);
}
