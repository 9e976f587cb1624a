/* The as-of tree of a backup (include/fb_as_of.h): the backups it is made
 * of, chosen through the index, and their manifests laid over each other
 * oldest first, one manifest in memory at a time. recover restores this
 * tree and the mount's as-of/ view shows it, so the two cannot disagree on
 * what "the session as it stood at that backup" holds.
 *
 * Each layer is one linear merge of two path-sorted lists (the tree so far
 * and the new manifest's entries), then two repairs that keep the result a
 * tree whose hardlinks resolve: entries left without a directory above them
 * are dropped, and hardlinks whose file was replaced keep their content. */
#include "fb_as_of.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fb_path_match.h"
#include "fb_text.h"

/* Per entry of a layer's merge result. */
enum {
    F_DROP = 1,    /* left out of the tree */
    F_WAS_DIR = 2, /* replaced a directory by a non-directory */
};

typedef struct layer {
    fb_as_of *t;
    uint32_t k;            /* the source being laid over the tree */
    fb_as_of_entry *next;  /* the merge result, sorted by path */
    unsigned char *flag;
    size_t n;
    fb_as_of_entry *gone;  /* entries the layer replaced, sorted by path */
    size_t n_gone;
    fb_error *err;
} layer;

static int oom(fb_error *err)
{
    return fb_error_set(err, FB_ENOMEM, "out of memory");
}

static void entry_free(fb_as_of_entry *x)
{
    free(x->e.path);
    free(x->e.target);
    free(x->data_path);
}

void fb_as_of_free(fb_as_of *tree)
{
    if (!tree)
        return;
    for (size_t i = 0; i < tree->n_entries; i++)
        entry_free(&tree->entries[i]);
    free(tree->entries);
    free(tree->sources);
    free(tree);
}

/* strcmp(path, p[0..n)). */
static int cmp_path_n(const char *path, const char *p, size_t n)
{
    int c = strncmp(path, p, n);
    return c ? c : path[n] ? 1 : 0;
}

/* strcmp(path, p[0..n) + "/"): where the entries below p begin. */
static int cmp_below(const char *path, const char *p, size_t n)
{
    int c = strncmp(path, p, n);
    if (c)
        return c;
    if (path[n] != '/')
        return (unsigned char)path[n] < '/' ? -1 : 1;
    return path[n + 1] ? 1 : 0;
}

static long find_in(const fb_as_of_entry *v, size_t n, const char *p, size_t len)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_path_n(v[mid].e.path, p, len);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

long fb_as_of_find(const fb_as_of *tree, const char *p, size_t n)
{
    return tree && p ? find_in(tree->entries, tree->n_entries, p, n) : -1;
}

/* ---- which backups ---- */

int fb_as_of_check_base(const fb_index *idx, const char *backup_id, fb_error *err)
{
    long at = fb_index_find(idx, backup_id);
    if (at < 0)
        return fb_error_set(err, FB_ENOTFOUND, "session %s has no backup %s", idx->session_id,
                            backup_id);
    const fb_index_record *r = &idx->records[at];
    if (r->type != FB_BACKUP_INCREMENTAL)
        return 0;
    long base = r->base[0] ? fb_index_find(idx, r->base) : -1;
    if (base >= 0 && (idx->records[base].type != FB_BACKUP_FULL ||
                      idx->records[base].seq >= r->seq))
        return fb_error_set(err, FB_ECORRUPT,
                            "session %s: backup %s names %s as its base, which is not an older "
                            "full backup",
                            idx->session_id, r->id, r->base);
    if (base >= 0)
        return 0;
    if (!r->base[0])
        return fb_error_set(err, FB_ENOTFOUND,
                            "session %s: backup %s is an incremental with no base full backup "
                            "(none had been taken before it)",
                            idx->session_id, r->id);
    return fb_error_set(err, FB_ENOTFOUND,
                        "session %s: backup %s is an incremental whose base full backup %s is "
                        "gone (removed or never taken)",
                        idx->session_id, r->id, r->base);
}

static void add_source(fb_as_of *t, const fb_index_record *r)
{
    fb_as_of_source *s = &t->sources[t->n_sources++];
    memcpy(s->id, r->id, sizeof s->id);
    s->seq = r->seq;
    s->type = r->type;
}

int fb_as_of_plan(const fb_index *idx, const char *backup_id, unsigned flags, size_t *out,
                  size_t *n_out, bool *base_missing, fb_error *err)
{
    *n_out = 0;
    if (base_missing)
        *base_missing = false;
    long at = fb_index_find(idx, backup_id);
    if (at < 0)
        return fb_error_set(err, FB_ENOTFOUND, "session %s has no backup %s", idx->session_id,
                            backup_id);
    const fb_index_record *target = &idx->records[at];
    if (target->type == FB_BACKUP_FULL || (flags & FB_AS_OF_ONLY)) {
        out[(*n_out)++] = (size_t)at;
        return 0;
    }
    int rc = fb_as_of_check_base(idx, backup_id, err);
    if (rc == FB_ENOTFOUND && (flags & FB_AS_OF_WITHOUT_BASE))
        fb_error_clear(err);
    else if (rc < 0)
        return rc;
    long base = target->base[0] ? fb_index_find(idx, target->base) : -1;
    if (base_missing)
        *base_missing = base < 0;
    if (base >= 0)
        out[(*n_out)++] = (size_t)base;
    /* Records are in seq order, so the sources are too. */
    for (size_t i = 0; i < idx->n; i++) {
        const fb_index_record *r = &idx->records[i];
        if (r->type == FB_BACKUP_INCREMENTAL && !strcmp(r->base, target->base) &&
            r->seq <= target->seq && (base < 0 || r->seq > idx->records[base].seq))
            out[(*n_out)++] = i;
    }
    return 0;
}

/* Fills t->sources (ids, seq, type) from the index, oldest first. */
static int choose_sources(fb_as_of *t, const fb_index *idx, unsigned flags, fb_error *err)
{
    long at = fb_index_find(idx, t->backup_id);
    if (at < 0)
        return fb_error_set(err, FB_ENOTFOUND, "session %s has no backup %s", t->session_id,
                            t->backup_id);
    const fb_index_record *target = &idx->records[at];
    t->type = target->type;
    memcpy(t->base, target->base, sizeof t->base);
    size_t *plan = malloc(idx->n * sizeof *plan);
    if (!(t->sources = calloc(idx->n, sizeof *t->sources)) || !plan) {
        free(plan);
        return oom(err);
    }
    size_t n = 0;
    int rc = fb_as_of_plan(idx, t->backup_id, flags, plan, &n, &t->base_missing, err);
    for (size_t i = 0; rc == 0 && i < n; i++)
        add_source(t, &idx->records[plan[i]]);
    free(plan);
    return rc;
}

/* Reads source k's manifest into m; it must agree with the index on what
 * chose it. */
static int read_source(int sfd, fb_as_of *t, size_t k, fb_manifest *m, fb_error *err)
{
    fb_as_of_source *s = &t->sources[k];
    int rc = fb_store_read_manifest(sfd, t->session_id, s->id, m, err);
    if (rc < 0)
        return rc;
    /* Every incremental source was chosen for having the tree's base. */
    const char *want_base = s->type == FB_BACKUP_INCREMENTAL ? t->base : "";
    const char *field = NULL;
    if (m->type != s->type)
        field = "type";
    else if (m->seq != s->seq)
        field = "seq";
    else if (strcmp(m->base, want_base) != 0)
        field = "base";
    if (field)
        return fb_error_set(err, FB_ECORRUPT,
                            "session %s: backup %s: manifest.json and index.json disagree on its "
                            "%s",
                            t->session_id, s->id, field);
    s->archive_size = m->archive.size;
    memcpy(s->archive_sha256, m->archive.sha256, FB_SHA256_LEN);
    s->manifest_entries = m->n_entries;
    return 0;
}

/* ---- one layer ---- */

/* Moves the new manifest's entries into the tree: one merge of two lists
 * sorted by path. An entry of the tree at a path the layer holds goes to
 * lm->gone (a hardlink may still need its data). */
static int merge(layer *lm, fb_manifest *m)
{
    fb_as_of *t = lm->t;
    size_t mn = m->n_entries, cap = t->n_entries + mn;
    size_t *by_path = fb_manifest_sort_by_path(m);
    lm->next = malloc((cap ? cap : 1) * sizeof *lm->next);
    lm->flag = calloc(cap ? cap : 1, 1);
    lm->gone = malloc((mn ? mn : 1) * sizeof *lm->gone);
    if (!by_path || !lm->next || !lm->flag || !lm->gone) {
        free(by_path);
        return oom(lm->err);
    }
    size_t i = 0, j = 0;
    while (i < t->n_entries || j < mn) {
        fb_as_of_entry *c = i < t->n_entries ? &t->entries[i] : NULL;
        fb_manifest_entry *me = j < mn ? &m->entries[by_path[j]] : NULL;
        int cmp = !c ? 1 : !me ? -1 : strcmp(c->e.path, me->path);
        if (cmp < 0) {
            lm->next[lm->n++] = *c;
            i++;
            continue;
        }
        if (cmp == 0) {
            if (c->e.meta.type == FB_ENTRY_DIR && me->meta.type != FB_ENTRY_DIR)
                lm->flag[lm->n] |= F_WAS_DIR;
            lm->gone[lm->n_gone++] = *c;
            i++;
        }
        /* The tree takes the manifest's strings over. */
        lm->next[lm->n++] = (fb_as_of_entry){.e = *me, .source = lm->k, .data_path = NULL};
        me->path = me->target = NULL;
        j++;
    }
    free(by_path);
    free(t->entries);
    t->entries = NULL;
    t->n_entries = 0;
    return 0;
}

/* Marks everything strictly below lm->next[i] dropped: a contiguous run of
 * the sorted list, found by binary search. */
static void drop_below(layer *lm, size_t i)
{
    const char *p = lm->next[i].e.path;
    size_t len = strlen(p), lo = i + 1, hi = lm->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_below(lm->next[mid].e.path, p, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t j = lo; j < lm->n && !strncmp(lm->next[j].e.path, p, len) &&
                        lm->next[j].e.path[len] == '/';
         j++)
        lm->flag[j] |= F_DROP;
}

/* Keeps the result a tree: an entry of the new layer needs a directory at
 * its parent path, and nothing stays below a path that is no longer a
 * directory. A parent sorts before its children, so its fate is settled
 * when they are reached. */
static void prune(layer *lm)
{
    for (size_t i = 0; i < lm->n; i++) {
        if (lm->flag[i] & F_DROP)
            continue;
        const fb_as_of_entry *x = &lm->next[i];
        bool orphan = false;
        const char *slash = strrchr(x->e.path, '/');
        if (x->source == lm->k && slash) {
            long j = find_in(lm->next, i, x->e.path, (size_t)(slash - x->e.path));
            orphan = j < 0 || (lm->flag[j] & F_DROP) ||
                     lm->next[j].e.meta.type != FB_ENTRY_DIR;
        }
        if (orphan)
            lm->flag[i] |= F_DROP;
        if (orphan || (lm->flag[i] & F_WAS_DIR))
            drop_below(lm, i);
    }
}

/* The entry of source s at path p before this layer: still in the merge
 * result (perhaps dropped), or replaced by the layer. */
static const fb_as_of_entry *old_entry(const layer *lm, uint32_t s, const char *p)
{
    long j = find_in(lm->next, lm->n, p, strlen(p));
    if (j >= 0 && lm->next[j].source == s)
        return &lm->next[j];
    j = find_in(lm->gone, lm->n_gone, p, strlen(p));
    return j >= 0 && lm->gone[j].source == s ? &lm->gone[j] : NULL;
}

static int cmp_link(const void *a, const void *b, void *ctx)
{
    const fb_as_of_entry *v = ctx;
    const fb_as_of_entry *x = &v[*(const size_t *)a], *y = &v[*(const size_t *)b];
    if (x->source != y->source)
        return x->source < y->source ? -1 : 1;
    int c = strcmp(x->e.target, y->e.target);
    return c ? c : strcmp(x->e.path, y->e.path);
}

/* Hardlink h takes over the content of src (a file entry of its source):
 * its bytes are where src's are. */
static int link_to_file(layer *lm, fb_as_of_entry *h, const fb_as_of_entry *src)
{
    char *dp = strdup(src->data_path ? src->data_path : src->e.path);
    if (!dp)
        return oom(lm->err);
    h->e.meta.type = FB_ENTRY_FILE;
    h->e.meta.size = src->e.meta.size;
    memcpy(h->e.sha256, src->e.sha256, FB_SHA256_LEN);
    h->e.offset = src->e.offset;
    free(h->e.target);
    h->e.target = NULL;
    h->data_path = dp;
    return 0;
}

/* Collects the surviving hardlinks whose file is no longer the tree's entry
 * of their own source. */
static int broken_links(layer *lm, size_t **out, size_t *n_out)
{
    size_t n = 0, cap = 0;
    size_t *v = NULL;
    for (size_t i = 0; i < lm->n; i++) {
        const fb_as_of_entry *h = &lm->next[i];
        if ((lm->flag[i] & F_DROP) || h->e.meta.type != FB_ENTRY_HARDLINK)
            continue;
        long j = find_in(lm->next, lm->n, h->e.target, strlen(h->e.target));
        if (j >= 0 && !(lm->flag[j] & F_DROP) && lm->next[j].source == h->source)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            size_t *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                free(v);
                return oom(lm->err);
            }
            v = nv;
        }
        v[n++] = i;
    }
    *out = v;
    *n_out = n;
    return 0;
}

/* The hardlink rule of fb_as_of.h: per file replaced, the first of its
 * hardlinks (in path order) becomes a file with its content, the others
 * link to that one. */
static int fix_links(layer *lm)
{
    size_t *v = NULL, n = 0;
    int rc = broken_links(lm, &v, &n);
    if (rc < 0 || n == 0)
        return rc;
    qsort_r(v, n, sizeof *v, cmp_link, lm->next);
    for (size_t g = 0; g < n && rc == 0;) {
        fb_as_of_entry *first = &lm->next[v[g]];
        const fb_as_of_entry *src = old_entry(lm, first->source, first->e.target);
        if (!src || (src->e.meta.type != FB_ENTRY_FILE)) {
            char esc[600];
            fb_path_escape(first->e.path, esc, sizeof esc);
            rc = fb_error_set(lm->err, FB_ECORRUPT,
                              "session %s: backup %s: hardlink %s links to no file of its backup",
                              lm->t->session_id, lm->t->sources[first->source].id, esc);
            break;
        }
        size_t end = g + 1;
        while (end < n && lm->next[v[end]].source == first->source &&
               !strcmp(lm->next[v[end]].e.target, first->e.target))
            end++;
        for (size_t o = g + 1; o < end && rc == 0; o++) {
            fb_as_of_entry *h = &lm->next[v[o]];
            char *to = strdup(first->e.path);
            if (!to) {
                rc = oom(lm->err);
                break;
            }
            free(h->e.target);
            h->e.target = to;
        }
        /* Last: until now first->e.target named the group. */
        if (rc == 0)
            rc = link_to_file(lm, first, src);
        g = end;
    }
    free(v);
    return rc;
}

/* Hands the layer's result to the tree (dropped and replaced entries
 * freed), or frees it all after a failure. */
static void finish(layer *lm, bool ok)
{
    size_t o = 0;
    for (size_t i = 0; i < lm->n; i++) {
        if (ok && !(lm->flag[i] & F_DROP))
            lm->next[o++] = lm->next[i];
        else
            entry_free(&lm->next[i]);
    }
    for (size_t g = 0; g < lm->n_gone; g++)
        entry_free(&lm->gone[g]);
    free(lm->gone);
    free(lm->flag);
    if (o == 0) {
        free(lm->next);
        lm->next = NULL;
    } else if (o < lm->n) {
        fb_as_of_entry *shrunk = realloc(lm->next, o * sizeof *shrunk);
        if (shrunk)
            lm->next = shrunk;
    }
    lm->t->entries = lm->next;
    lm->t->n_entries = o;
}

static int lay_over(fb_as_of *t, uint32_t k, fb_manifest *m, fb_error *err)
{
    layer lm = {.t = t, .k = k, .err = err};
    int rc = merge(&lm, m);
    if (rc == 0) {
        prune(&lm);
        rc = fix_links(&lm);
    }
    finish(&lm, rc == 0);
    return rc;
}

/* ---- the whole tree ---- */

static void count(fb_as_of *t)
{
    memset(&t->totals, 0, sizeof t->totals);
    for (size_t i = 0; i < t->n_entries; i++) {
        const fb_as_of_entry *x = &t->entries[i];
        t->sources[x->source].held++;
        switch (x->e.meta.type) {
        case FB_ENTRY_FILE:
            t->totals.files++;
            t->totals.bytes += x->e.meta.size;
            break;
        case FB_ENTRY_HARDLINK:
            t->totals.files++;
            break;
        case FB_ENTRY_DIR:
            t->totals.dirs++;
            break;
        case FB_ENTRY_SYMLINK:
            t->totals.symlinks++;
            break;
        }
    }
}

int fb_as_of_build(const fb_store *store, const char *session_id, const fb_index *idx,
                   const char *backup_id, unsigned flags, fb_as_of **out, fb_error *err)
{
    if (!store || !session_id || !idx || !backup_id || !out)
        return fb_error_set(err, FB_EMISUSE, "fb_as_of_build: missing argument");
    *out = NULL;
    if (strlen(session_id) > FB_SESSION_ID_MAX || strlen(backup_id) != FB_BACKUP_ID_LEN)
        return fb_error_set(err, FB_EMISUSE, "fb_as_of_build: not a session id and a backup id");
    fb_as_of *t = calloc(1, sizeof *t);
    if (!t)
        return oom(err);
    memcpy(t->session_id, session_id, strlen(session_id) + 1);
    memcpy(t->backup_id, backup_id, FB_BACKUP_ID_LEN + 1);
    int rc = choose_sources(t, idx, flags, err);
    int sfd = -1;
    if (rc == 0)
        rc = fb_store_open_session(store, session_id, false, &sfd, err);
    for (size_t k = 0; rc == 0 && k < t->n_sources; k++) {
        fb_manifest m;
        fb_manifest_init(&m);
        rc = read_source(sfd, t, k, &m, err);
        if (rc == 0)
            rc = lay_over(t, (uint32_t)k, &m, err);
        fb_manifest_fini(&m);
    }
    if (sfd >= 0)
        close(sfd);
    if (rc < 0) {
        fb_as_of_free(t);
        return rc;
    }
    count(t);
    *out = t;
    return 0;
}

/* ---- a selection of the tree (recover --path) ---- */

/* Per entry of the tree while a selection is made. */
enum {
    S_MATCHED = 1, /* a pattern matches it */
    S_PARENT = 2,  /* a directory above a matched entry */
};

/* Marks the directories above entry i kept, nearest first, stopping at one
 * already kept: entries are visited in path order and an ancestor sorts
 * before its descendants, so a kept ancestor had its own ancestors marked
 * when it was reached. */
static void keep_parents(const fb_as_of *t, unsigned char *keep, size_t i)
{
    const char *p = t->entries[i].e.path;
    size_t len = strlen(p);
    for (;;) {
        while (len > 0 && p[len - 1] != '/')
            len--;
        if (len == 0)
            return;
        len--;
        long j = find_in(t->entries, i, p, len);
        if (j < 0 || keep[j])
            return;
        keep[j] |= S_PARENT;
    }
}

static int cmp_target(const void *a, const void *b, void *ctx)
{
    const fb_as_of_entry *v = ctx;
    const fb_as_of_entry *x = &v[*(const size_t *)a], *y = &v[*(const size_t *)b];
    int c = strcmp(x->e.target, y->e.target);
    return c ? c : strcmp(x->e.path, y->e.path);
}

/* The kept hardlinks whose file is not kept, sorted by (file, path). */
static int orphan_links(fb_as_of *t, const unsigned char *keep, size_t **out, size_t *n_out,
                        fb_error *err)
{
    size_t n = 0;
    size_t *v = malloc((t->n_entries ? t->n_entries : 1) * sizeof *v);
    if (!v)
        return oom(err);
    for (size_t i = 0; i < t->n_entries; i++) {
        const fb_as_of_entry *h = &t->entries[i];
        if (!keep[i] || h->e.meta.type != FB_ENTRY_HARDLINK)
            continue;
        long j = find_in(t->entries, t->n_entries, h->e.target, strlen(h->e.target));
        if (j < 0 || !keep[j])
            v[n++] = i;
    }
    qsort_r(v, n, sizeof *v, cmp_target, t->entries);
    *out = v;
    *n_out = n;
    return 0;
}

/* A selected hardlink whose file is left out keeps its content, by the
 * rule the layering uses for a hardlink whose file a later backup replaced
 * (fb_as_of.h): the first of the group (in path order) becomes a file with
 * the file's data (data_path), the others link to it. So a restore of
 * `--path artifacts/copy.dat` gives copy.dat its bytes without restoring
 * (or overwriting) the file it was linked to, which the user did not ask
 * for. */
static int keep_link_content(fb_as_of *t, const unsigned char *keep, fb_error *err)
{
    size_t *v = NULL, n = 0;
    int rc = orphan_links(t, keep, &v, &n, err);
    for (size_t g = 0; rc == 0 && g < n;) {
        fb_as_of_entry *first = &t->entries[v[g]];
        long j = find_in(t->entries, t->n_entries, first->e.target, strlen(first->e.target));
        const fb_as_of_entry *src = j >= 0 ? &t->entries[j] : NULL;
        if (!src || src->e.meta.type != FB_ENTRY_FILE || src->source != first->source) {
            char esc[600];
            fb_path_escape(first->e.path, esc, sizeof esc);
            rc = fb_error_set(err, FB_ECORRUPT,
                              "session %s: backup %s: hardlink %s links to no file of its backup",
                              t->session_id, t->sources[first->source].id, esc);
            break;
        }
        size_t end = g + 1;
        while (end < n && !strcmp(t->entries[v[end]].e.target, first->e.target))
            end++;
        for (size_t o = g + 1; o < end && rc == 0; o++) {
            fb_as_of_entry *h = &t->entries[v[o]];
            char *to = strdup(first->e.path);
            if (!to)
                rc = oom(err);
            else {
                free(h->e.target);
                h->e.target = to;
            }
        }
        char *dp = rc == 0 ? strdup(src->data_path ? src->data_path : src->e.path) : NULL;
        if (rc == 0 && !dp)
            rc = oom(err);
        if (rc == 0) {
            first->e.meta.type = FB_ENTRY_FILE;
            first->e.meta.size = src->e.meta.size;
            memcpy(first->e.sha256, src->e.sha256, FB_SHA256_LEN);
            first->e.offset = src->e.offset;
            free(first->e.target);
            first->e.target = NULL;
            first->data_path = dp;
        }
        g = end;
    }
    free(v);
    return rc;
}

/* Keeps the kept entries and the sources that still hold one (renumbered,
 * oldest first), then counts the totals again. */
static int compact(fb_as_of *t, const unsigned char *keep, fb_error *err)
{
    uint32_t *map = calloc(t->n_sources ? t->n_sources : 1, sizeof *map);
    if (!map)
        return oom(err);
    size_t o = 0;
    for (size_t i = 0; i < t->n_entries; i++) {
        if (keep[i]) {
            map[t->entries[i].source] = 1;
            t->entries[o++] = t->entries[i];
        } else {
            entry_free(&t->entries[i]);
        }
    }
    t->n_entries = o;
    size_t ns = 0;
    for (size_t k = 0; k < t->n_sources; k++) {
        bool used = map[k] != 0;
        map[k] = (uint32_t)ns;
        if (used) {
            t->sources[ns] = t->sources[k];
            t->sources[ns++].held = 0;
        }
    }
    t->n_sources = ns;
    for (size_t i = 0; i < t->n_entries; i++)
        t->entries[i].source = map[t->entries[i].source];
    free(map);
    count(t);
    return 0;
}

int fb_as_of_select(fb_as_of *tree, const char *const *patterns, size_t n_patterns,
                    size_t *matches, fb_error *err)
{
    if (!tree || (n_patterns && (!patterns || !matches)))
        return fb_error_set(err, FB_EMISUSE, "fb_as_of_select: missing argument");
    unsigned char *keep = calloc(tree->n_entries ? tree->n_entries : 1, 1);
    if (!keep)
        return oom(err);
    for (size_t p = 0; p < n_patterns; p++)
        matches[p] = 0;
    /* Every pattern against every entry: each pattern's count is exact, so
     * the one that matches nothing can be named. */
    for (size_t i = 0; i < tree->n_entries; i++)
        for (size_t p = 0; p < n_patterns; p++)
            if (fb_path_pattern_matches(patterns[p], tree->entries[i].e.path)) {
                keep[i] |= S_MATCHED;
                matches[p]++;
            }
    for (size_t i = 0; i < tree->n_entries; i++)
        if (keep[i] & S_MATCHED)
            keep_parents(tree, keep, i);
    int rc = keep_link_content(tree, keep, err);
    if (rc == 0)
        rc = compact(tree, keep, err);
    free(keep);
    return rc;
}
