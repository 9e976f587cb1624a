/* `<session>/history/` (mount_views_i.h, docs/mount.md "history/"): every
 * version of every path the session's backups hold as a file, symlink or
 * hardlink. Built by reading each manifest once, one at a time, in seq
 * order, into a compact per-path index (the path, whether it was ever a
 * directory, and its versions: source backup, metadata, SHA-256, tar
 * offset, symlink target or hardlink file path); a manifest is freed
 * before the next is read, so the peak is the index plus one manifest.
 * The index then becomes an mt_contents of synthetic entries
 * `<path>/<backup_id><ext>` (the version's own metadata and bytes, read
 * from its backup's archive) and `<path>/latest` (a symlink to the newest),
 * which the tree serves, accounts and evicts like a backup's contents.
 * Reading a version needs no manifest: its offset and hash are here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fb_hash.h"
#include "fb_text.h"
#include "mount_views_i.h"

#define H_LATEST "latest"

typedef struct h_version {
    uint32_t src;        /* index in the sources */
    fb_entry_meta meta;  /* the entry's; type FILE (hardlinks too) or SYMLINK, size its content's */
    uint8_t sha[FB_SHA256_LEN];
    uint64_t offset;
    char *str;           /* symlink target; for a hardlink the path of its file */
    bool hardlink;
} h_version;

typedef struct h_path {
    char *path;
    uint32_t len;
    bool dir;            /* a directory in at least one backup */
    bool last_dir;       /* the last backup holding it held a directory */
    h_version *v;        /* versions, oldest first */
    uint32_t nv, cap;
} h_path;

typedef struct h_index {
    h_path *paths;       /* in the order first seen: stable for a given set of backups */
    size_t n, cap;
    uint32_t *slots;     /* open addressing, path -> index; UINT32_MAX empty */
    size_t n_slots;
    mt_source *sources;
    size_t n_sources;
} h_index;

static uint64_t h_hash(const char *p, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static size_t h_slot(const h_index *x, const char *p, size_t len)
{
    size_t mask = x->n_slots - 1;
    size_t i = h_hash(p, len) & mask;
    while (x->slots[i] != UINT32_MAX) {
        const h_path *hp = &x->paths[x->slots[i]];
        if (hp->len == len && memcmp(hp->path, p, len) == 0)
            break;
        i = (i + 1) & mask;
    }
    return i;
}

static h_path *h_find(const h_index *x, const char *p, size_t len)
{
    if (!x->n_slots)
        return NULL;
    uint32_t at = x->slots[h_slot(x, p, len)];
    return at == UINT32_MAX ? NULL : &x->paths[at];
}

/* Keeps the table at most half full. */
static int h_grow(h_index *x)
{
    size_t n_slots = x->n_slots ? x->n_slots * 2 : 1024;
    uint32_t *slots = malloc(n_slots * sizeof *slots);
    if (!slots)
        return FB_ENOMEM;
    memset(slots, 0xff, n_slots * sizeof *slots);
    free(x->slots);
    x->slots = slots;
    x->n_slots = n_slots;
    for (size_t i = 0; i < x->n; i++)
        x->slots[h_slot(x, x->paths[i].path, x->paths[i].len)] = (uint32_t)i;
    return 0;
}

static h_path *h_get(h_index *x, const char *p)
{
    size_t len = strlen(p);
    h_path *hp = h_find(x, p, len);
    if (hp)
        return hp;
    if (x->n >= UINT32_MAX - 1)
        return NULL;
    if ((x->n + 1) * 2 > x->n_slots && h_grow(x) != 0)
        return NULL;
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 256;
        h_path *v = realloc(x->paths, cap * sizeof *v);
        if (!v)
            return NULL;
        x->paths = v;
        x->cap = cap;
    }
    hp = &x->paths[x->n];
    memset(hp, 0, sizeof *hp);
    if (!(hp->path = strdup(p)))
        return NULL;
    hp->len = (uint32_t)len;
    x->slots[h_slot(x, p, len)] = (uint32_t)x->n++;
    return hp;
}

static void h_free(h_index *x)
{
    for (size_t i = 0; i < x->n; i++) {
        for (uint32_t k = 0; k < x->paths[i].nv; k++)
            free(x->paths[i].v[k].str);
        free(x->paths[i].v);
        free(x->paths[i].path);
    }
    free(x->paths);
    free(x->slots);
    free(x->sources);
}

/* ------------------------------------------------------ reading backups */

/* The version entry i of m stands for (a hardlink's content is its file's). */
static int version_of(const fb_manifest *m, size_t **by_path, size_t i, uint32_t src,
                      h_version *out)
{
    const fb_manifest_entry *e = &m->entries[i];
    memset(out, 0, sizeof *out);
    out->src = src;
    out->meta = e->meta;
    if (e->meta.type == FB_ENTRY_SYMLINK) {
        out->meta.size = 0;
        out->str = e->target;
        return 0;
    }
    out->meta.type = FB_ENTRY_FILE;
    const fb_manifest_entry *f = e;
    if (e->meta.type == FB_ENTRY_HARDLINK) {
        if (!*by_path && !(*by_path = fb_manifest_sort_by_path(m)))
            return FB_ENOMEM;
        long at = e->target ? fb_manifest_find_path(m, *by_path, e->target, strlen(e->target))
                            : -1;
        if (at < 0 || m->entries[at].meta.type != FB_ENTRY_FILE)
            return FB_ECORRUPT;
        f = &m->entries[at];
        out->hardlink = true;
        out->str = f->path;
    }
    out->meta.size = f->meta.size;
    memcpy(out->sha, f->sha256, FB_SHA256_LEN);
    out->offset = f->offset;
    return 0;
}

/* "Content differs" (SPEC): type, SHA-256 or symlink target. */
static bool version_differs(const h_version *a, const h_version *b)
{
    if (a->meta.type != b->meta.type)
        return true;
    if (a->meta.type == FB_ENTRY_SYMLINK)
        return strcmp(a->str ? a->str : "", b->str ? b->str : "") != 0;
    return memcmp(a->sha, b->sha, FB_SHA256_LEN) != 0;
}

static int add_version(h_path *hp, const h_version *v)
{
    if (hp->nv == hp->cap) {
        uint32_t cap = hp->cap ? hp->cap * 2 : 2;
        h_version *nv = realloc(hp->v, cap * sizeof *nv);
        if (!nv)
            return FB_ENOMEM;
        hp->v = nv;
        hp->cap = cap;
    }
    h_version *to = &hp->v[hp->nv];
    *to = *v;
    /* The borrowed string lives with the manifest, freed after this backup. */
    if (v->str && !(to->str = strdup(v->str)))
        return FB_ENOMEM;
    hp->nv++;
    return 0;
}

/* Folds one backup's manifest into the index as source src. */
static int index_manifest(h_index *x, const fb_manifest *m, uint32_t src, const char *label,
                          fb_error *err)
{
    size_t *by_path = NULL;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < m->n_entries; i++) {
        const fb_manifest_entry *e = &m->entries[i];
        h_path *hp = h_get(x, e->path);
        if (!hp) {
            rc = fb_error_set(err, FB_ENOMEM, "%s: out of memory", label);
            break;
        }
        if (e->meta.type == FB_ENTRY_DIR) {
            hp->dir = hp->last_dir = true;
            continue;
        }
        h_version v;
        rc = version_of(m, &by_path, i, src, &v);
        if (rc == FB_ECORRUPT) {
            char eb[600];
            rc = fb_error_set(err, rc, "%s: hardlink '%s' does not link to a file", label,
                              fb_path_escape(e->path, eb, sizeof eb));
        } else if (rc) {
            rc = fb_error_set(err, rc, "%s: out of memory", label);
        } else if (hp->nv == 0 || hp->last_dir || version_differs(&hp->v[hp->nv - 1], &v)) {
            if (add_version(hp, &v) != 0)
                rc = fb_error_set(err, FB_ENOMEM, "%s: out of memory", label);
        }
        hp->last_dir = false;
    }
    free(by_path);
    return rc;
}

static int read_backups(h_index *x, const mt_view_load *l, const char *sid, const fb_index *idx,
                        fb_error *err)
{
    if (!(x->sources = calloc(idx->n ? idx->n : 1, sizeof *x->sources)))
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    int sfd = -1;
    int rc = fb_store_open_session(l->store, sid, false, &sfd, err);
    for (size_t k = 0; rc == 0 && k < idx->n; k++) {
        fb_manifest m;
        fb_manifest_init(&m);
        rc = fb_manifest_cache_read(l->manifest_cache, sfd, sid, idx->records[k].id, &m, NULL,
                                    err);
        if (rc == 0) {
            mt_source *s = &x->sources[x->n_sources++];
            memcpy(s->id, idx->records[k].id, sizeof s->id);
            memcpy(s->archive_sha256, m.archive.sha256, FB_SHA256_LEN);
            s->archive_size = m.archive.size;
            char label[FB_SESSION_ID_MAX + FB_BACKUP_ID_LEN + 32];
            snprintf(label, sizeof label, "%s/%s/" FB_MANIFEST_NAME, sid, s->id);
            rc = index_manifest(x, &m, (uint32_t)k, label, err);
        }
        fb_manifest_fini(&m);
    }
    if (sfd >= 0)
        close(sfd);
    return rc;
}

/* ----------------------------------------------------- the synthetic tree */

/* The extension of the path's last component: from its last '.', unless
 * that is the component's first character. */
static const char *ext_of(const char *path, size_t len)
{
    const char *slash = memrchr(path, '/', len);
    const char *name = slash ? slash + 1 : path;
    const char *dot = memrchr(name, '.', (size_t)(path + len - name));
    return dot && dot != name ? dot : path + len;
}

/* Whether name[0..n) is a version name (or `latest`) of hp. */
static bool is_version_name(const h_index *x, const h_path *hp, const char *name, size_t n)
{
    if (n == strlen(H_LATEST) && memcmp(name, H_LATEST, n) == 0)
        return true;
    const char *ext = ext_of(hp->path, hp->len);
    size_t elen = strlen(ext);
    if (n != FB_BACKUP_ID_LEN + elen || memcmp(name + FB_BACKUP_ID_LEN, ext, elen) != 0)
        return false;
    for (uint32_t k = 0; k < hp->nv; k++)
        if (memcmp(x->sources[hp->v[k].src].id, name, FB_BACKUP_ID_LEN) == 0)
            return true;
    return false;
}

/* A version wins a name clash: a path is left out when one of its
 * components is a version name of the path above it. */
static bool clashes(const h_index *x, const h_path *hp)
{
    for (uint32_t start = 0, k = 0; k <= hp->len; k++) {
        if (k < hp->len && hp->path[k] != '/')
            continue;
        if (start > 0) {
            const h_path *parent = h_find(x, hp->path, start - 1);
            if (parent && parent->nv && is_version_name(x, parent, hp->path + start, k - start))
                return true;
        }
        start = k + 1;
    }
    return false;
}

/* Appends one synthetic entry (path built in buf) with its source. */
static int add_entry(mt_contents *c, const char *path, const fb_entry_meta *meta,
                     const h_version *v, const char *target, uint32_t src, fb_error *err)
{
    size_t i = c->m.n_entries;
    int rc = fb_manifest_add_entry(&c->m, path, meta, v ? v->sha : NULL, v ? v->offset : 0,
                                   target, err);
    if (rc)
        return rc;
    c->entry_source[i] = src;
    if (v && v->hardlink && !(c->data_paths[i] = strdup(v->str)))
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    return 0;
}

/* The versions of hp and its `latest` as entries of c. */
static int add_path(const h_index *x, const h_path *hp, mt_contents *c, const mt_view_load *l,
                    fb_error *err)
{
    const char *ext = ext_of(hp->path, hp->len);
    /* Room for any component: the length check below is what leaves out
     * a name too long for a path. */
    char path[2 * FB_PATH_MAX + 64], name[FB_BACKUP_ID_LEN + FB_PATH_MAX + 1];
    if ((size_t)hp->len + 1 + FB_BACKUP_ID_LEN + strlen(ext) > FB_PATH_MAX)
        return 0; /* no room for its versions' names: left out */
    int rc = 0;
    for (uint32_t k = 0; rc == 0 && k < hp->nv; k++) {
        const h_version *v = &hp->v[k];
        snprintf(name, sizeof name, "%s%s", x->sources[v->src].id, ext);
        snprintf(path, sizeof path, "%s/%s", hp->path, name);
        bool file = v->meta.type == FB_ENTRY_FILE;
        rc = add_entry(c, path, &v->meta, file ? v : NULL, file ? NULL : v->str, v->src, err);
    }
    if (rc)
        return rc;
    const h_version *newest = &hp->v[hp->nv - 1];
    fb_entry_meta meta = {.type = FB_ENTRY_SYMLINK, .mode = 0777, .uid = (uint32_t)l->uid,
                          .gid = (uint32_t)l->gid, .mtime = newest->meta.mtime,
                          .mtime_nsec = newest->meta.mtime_nsec};
    snprintf(name, sizeof name, "%s%s", x->sources[newest->src].id, ext);
    snprintf(path, sizeof path, "%s/" H_LATEST, hp->path);
    return add_entry(c, path, &meta, NULL, name, UINT32_MAX, err);
}

static int fill_contents(h_index *x, mt_contents *c, const mt_view_load *l, fb_error *err)
{
    size_t total = 0;
    for (size_t i = 0; i < x->n; i++)
        total += x->paths[i].nv ? x->paths[i].nv + 1 : 1;
    c->entry_source = malloc((total ? total : 1) * sizeof *c->entry_source);
    c->data_paths = calloc(total ? total : 1, sizeof *c->data_paths);
    if (!c->entry_source || !c->data_paths)
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    int rc = fb_manifest_reserve(&c->m, total ? total : 1, err);
    /* A directory in every backup that holds it is a directory here too,
     * even an empty one; one that also has versions is implied by them. */
    fb_entry_meta dir = {.type = FB_ENTRY_DIR, .mode = 0755, .uid = (uint32_t)l->uid,
                         .gid = (uint32_t)l->gid, .mtime = l->created_at};
    for (size_t i = 0; rc == 0 && i < x->n; i++) {
        const h_path *hp = &x->paths[i];
        if (clashes(x, hp))
            continue;
        if (hp->nv)
            rc = add_path(x, hp, c, l, err);
        else if (hp->dir)
            rc = add_entry(c, hp->path, &dir, NULL, NULL, UINT32_MAX, err);
    }
    if (rc == 0) {
        c->sources = x->sources;
        c->n_sources = (uint32_t)x->n_sources;
        x->sources = NULL;
    }
    return rc;
}

/* ------------------------------------------------------------ signature */

void mt_history_signature(const fb_index *idx, uint8_t sig[FB_SHA256_LEN])
{
    fb_sha256 h;
    memset(sig, 0, FB_SHA256_LEN);
    if (fb_sha256_init(&h, NULL) != 0)
        return;
    for (size_t i = 0; i < idx->n; i++) {
        fb_sha256_update(&h, idx->records[i].id, FB_BACKUP_ID_LEN);
        fb_sha256_update(&h, idx->records[i].archive_sha256, FB_SHA256_LEN);
    }
    fb_sha256_final(&h, sig);
    fb_sha256_fini(&h);
}

int mt_history_load(const mt_view_load *l, mt_contents **out, fb_error *err)
{
    *out = NULL;
    fb_index idx;
    fb_index_init(&idx, l->session_id);
    bool rebuilt = false;
    h_index x = {0};
    mt_contents *c = NULL;
    uint8_t sig[FB_SHA256_LEN];
    int rc = fb_store_load_index(l->store, l->session_id, 0, &idx, &rebuilt, NULL, NULL, err);
    if (rc == 0) {
        mt_history_signature(&idx, sig);
        if (memcmp(sig, l->sig, sizeof sig) != 0)
            rc = fb_error_set(err, FB_ENOTFOUND, "%s/history: its backups changed meanwhile",
                              l->session_id);
    }
    if (rc == 0)
        rc = read_backups(&x, l, l->session_id, &idx, err);
    fb_index_fini(&idx);
    if (rc == 0 && !(c = calloc(1, sizeof *c)))
        rc = fb_error_set(err, FB_ENOMEM, "out of memory");
    if (c) {
        fb_manifest_init(&c->m);
        c->created_at = l->created_at;
        c->uid = l->uid;
        c->gid = l->gid;
        c->live = true;
        c->data_in_parent = true;
    }
    if (rc == 0)
        rc = fill_contents(&x, c, l, err);
    h_free(&x);
    if (rc == 0) {
        char name[FB_SESSION_ID_MAX + 32];
        snprintf(name, sizeof name, "%s/history", l->session_id);
        rc = mt_contents_build(c, name, err);
    }
    if (rc) {
        mt_contents_free(c);
        return rc;
    }
    c->bytes = mt_contents_bytes(c);
    *out = c;
    return 0;
}
