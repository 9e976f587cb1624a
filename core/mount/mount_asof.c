/* `<session>/as-of/<backup_id>/` (mount_views_i.h): the session as it stood
 * at a backup, built by fb_as_of_build (the one layering recover uses) and
 * turned into an mt_contents whose entries keep the backup they come from.
 * The tree's entries move into the contents without a copy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fb_as_of.h"
#include "fb_hash.h"
#include "mount_views_i.h"

static void sig_of_records(const fb_index *idx, const size_t *recs, size_t n,
                           uint8_t sig[FB_SHA256_LEN])
{
    fb_sha256 h;
    memset(sig, 0, FB_SHA256_LEN);
    if (fb_sha256_init(&h, NULL) != 0)
        return;
    for (size_t i = 0; i < n; i++) {
        const fb_index_record *r = &idx->records[recs[i]];
        fb_sha256_update(&h, r->id, FB_BACKUP_ID_LEN);
        fb_sha256_update(&h, r->archive_sha256, FB_SHA256_LEN);
    }
    fb_sha256_final(&h, sig);
    fb_sha256_fini(&h);
}

bool mt_asof_signature(const fb_index *idx, const char *backup_id, uint8_t sig[FB_SHA256_LEN])
{
    memset(sig, 0, FB_SHA256_LEN);
    if (fb_index_find(idx, backup_id) < 0)
        return false;
    size_t *recs = malloc(idx->n * sizeof *recs);
    size_t n = 0;
    /* A plan that fails (a base that is not an older full) keeps the zero
     * signature: the load reports the damage as EIO. */
    if (recs && fb_as_of_plan(idx, backup_id, FB_AS_OF_WITHOUT_BASE, recs, &n, NULL, NULL) == 0)
        sig_of_records(idx, recs, n, sig);
    free(recs);
    return true;
}

/* The signature of what was built: its sources' ids and archive hashes as
 * their manifests gave them. */
static void sig_of_tree(const fb_as_of *tree, uint8_t sig[FB_SHA256_LEN])
{
    fb_sha256 h;
    memset(sig, 0, FB_SHA256_LEN);
    if (fb_sha256_init(&h, NULL) != 0)
        return;
    for (size_t i = 0; i < tree->n_sources; i++) {
        fb_sha256_update(&h, tree->sources[i].id, FB_BACKUP_ID_LEN);
        fb_sha256_update(&h, tree->sources[i].archive_sha256, FB_SHA256_LEN);
    }
    fb_sha256_final(&h, sig);
    fb_sha256_fini(&h);
}

/* Moves the tree's entries and sources into c (the tree keeps empty
 * entries, freed with it). */
static int take_tree(mt_contents *c, fb_as_of *tree, fb_error *err)
{
    size_t n = tree->n_entries;
    c->m.entries = calloc(n ? n : 1, sizeof *c->m.entries);
    c->entry_source = malloc((n ? n : 1) * sizeof *c->entry_source);
    c->data_paths = calloc(n ? n : 1, sizeof *c->data_paths);
    c->sources = calloc(tree->n_sources ? tree->n_sources : 1, sizeof *c->sources);
    if (!c->m.entries || !c->entry_source || !c->data_paths || !c->sources)
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    for (size_t i = 0; i < tree->n_sources; i++) {
        memcpy(c->sources[i].id, tree->sources[i].id, sizeof c->sources[i].id);
        memcpy(c->sources[i].archive_sha256, tree->sources[i].archive_sha256, FB_SHA256_LEN);
        c->sources[i].archive_size = tree->sources[i].archive_size;
    }
    c->n_sources = (uint32_t)tree->n_sources;
    for (size_t i = 0; i < n; i++) {
        fb_as_of_entry *x = &tree->entries[i];
        c->m.entries[i] = x->e;
        c->entry_source[i] = x->source;
        c->data_paths[i] = x->data_path;
        x->e.path = x->e.target = x->data_path = NULL;
    }
    c->m.n_entries = c->m.cap_entries = n;
    c->m.totals = tree->totals;
    return 0;
}

int mt_asof_load(const mt_view_load *l, mt_contents **out, fb_error *err)
{
    *out = NULL;
    fb_index idx;
    fb_index_init(&idx, l->session_id);
    bool rebuilt = false;
    fb_as_of *tree = NULL;
    mt_contents *c = NULL;
    uint8_t sig[FB_SHA256_LEN];
    int rc = fb_store_load_index(l->store, l->session_id, 0, &idx, &rebuilt, NULL, NULL, err);
    if (rc == 0)
        rc = fb_as_of_build(l->store, l->session_id, &idx, l->backup_id, FB_AS_OF_WITHOUT_BASE,
                            &tree, err);
    if (rc == 0) {
        sig_of_tree(tree, sig);
        if (memcmp(sig, l->sig, sizeof sig) != 0)
            rc = fb_error_set(err, FB_ENOTFOUND, "%s/as-of/%s: its backups changed meanwhile",
                              l->session_id, l->backup_id);
    }
    if (rc == 0 && !(c = calloc(1, sizeof *c)))
        rc = fb_error_set(err, FB_ENOMEM, "out of memory");
    if (c) {
        fb_manifest_init(&c->m);
        c->created_at = l->created_at;
        c->uid = l->uid;
        c->gid = l->gid;
    }
    if (rc == 0)
        rc = take_tree(c, tree, err);
    fb_as_of_free(tree);
    fb_index_fini(&idx);
    if (rc == 0) {
        char name[FB_SESSION_ID_MAX + FB_BACKUP_ID_LEN + 32];
        snprintf(name, sizeof name, "%s/as-of/%s", l->session_id, l->backup_id);
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
