/* The mounted view of a store: sessions -> backups -> entries with stable
 * inode numbers, built lazily from indexes and manifests, freed by the
 * kernel's lookup counts. See include/fb_mount_tree.h and docs/mount.md.
 * This module holds the tree's lifetime and the operations on names and
 * attributes; the modules it builds on, and the locking rules they share,
 * are listed in mount_tree_i.h. */
#include "fb_mount_tree.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "fb_hash.h"
#include "fb_text.h"
#include "mount_tree_i.h"

/* --------------------------------------------------------- tree lifetime */

int fb_mount_tree_new(const char *backups_dir, const fb_mount_options *opts, fb_mount_tree **out,
                      fb_error *err)
{
    *out = NULL;
    char *root = NULL;
    int rc = fb_mount_store_root(backups_dir, &root, err);
    if (rc)
        return rc;
    fb_mount_tree *t = calloc(1, sizeof *t);
    if (!t) {
        free(root);
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    }
    t->opts = *opts;
    t->next_ino = FB_MOUNT_ROOT_INO + 1;
    pthread_mutex_init(&t->lock, NULL);
    pthread_mutex_init(&t->root_refresh_lock, NULL);
    pthread_mutex_init(&t->prefetch_lock, NULL);
    pthread_cond_init(&t->loaded_cond, NULL);
    rc = fb_store_open(root, false, &t->store, err);
    free(root);
    if (rc == 0) {
        t->backups_fd = fb_store_backups_fd(t->store);
        size_t bytes = opts->cache_bytes > SIZE_MAX ? SIZE_MAX : (size_t)opts->cache_bytes;
        rc = fb_frame_cache_new(bytes, &t->cache, err);
    }
    if (rc == 0 && opts->manifest_cache_dir) {
        fb_error cerr;
        fb_error_clear(&cerr);
        if (fb_manifest_cache_open(opts->manifest_cache_dir, &t->manifest_cache, &cerr) != 0 &&
            opts->warn)
            opts->warn(opts->warn_ctx, cerr.message);
    }
    t->opts.manifest_cache_dir = NULL; /* borrowed only during the call */
    /* What the first read would otherwise load while a user waits: the
     * hash implementation (OpenSSL's configuration), the time zone and a
     * decompression context (not a byte of any backup: that is the first
     * read's own work). */
    fb_sha256_prepare();
    tzset();
    if (rc == 0 && t->cache)
        (void)fb_archive_prepare(t->cache, NULL);
    if (rc) {
        fb_mount_tree_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void fb_mount_tree_free(fb_mount_tree *t)
{
    if (!t)
        return;
    fb_mount_files_stop_janitor(t);
    fb_mount_dirs_free_all(t);
    fb_mount_files_free_all(t);
    fb_mount_nodes_free_all(t);
    fb_frame_prefetcher_free(t->prefetch); /* its owners, the readers, are gone */
    fb_frame_cache_free(t->cache);
    fb_manifest_cache_free(t->manifest_cache);
    fb_store_free(t->store);
    free(t->ranges);
    pthread_cond_destroy(&t->loaded_cond);
    pthread_mutex_destroy(&t->root_refresh_lock);
    pthread_mutex_destroy(&t->prefetch_lock);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

void fb_mount_tree_get_stats(fb_mount_tree *t, fb_mount_stats *out)
{
    pthread_mutex_lock(&t->lock);
    out->sessions = t->n_sessions;
    out->backups = t->n_backups_alive;
    out->loaded_manifests = t->n_loaded;
    out->open_archives = t->n_archives - (t->idle != NULL);
    out->idle_archives = t->idle != NULL;
    out->kept_files = t->n_kept;
    out->next_ino = t->next_ino;
    out->meta_loads = t->meta_loads;
    out->meta_evictions = t->meta_evictions;
    out->meta_bytes = t->meta_bytes;
    out->meta_bytes_peak = t->meta_bytes_peak;
    out->janitor_wakeups = t->janitor_wakeups;
    fb_manifest_cache_stats cs = {0};
    if (t->manifest_cache)
        fb_manifest_cache_get_stats(t->manifest_cache, &cs);
    out->manifest_cache_hits = cs.hits;
    out->manifest_cache_misses = cs.misses;
    pthread_mutex_unlock(&t->lock);
}

/* ---------------------------------------------------------------- lookup */

static int lookup_in_root(fb_mount_tree *t, const char *name, fb_mount_attr *out, fb_error *err)
{
    fb_error ignored;
    fb_mount_refresh_root(t, false, &ignored);
    pthread_mutex_lock(&t->lock);
    mt_session *s = fb_mount_session_find(t, name, NULL);
    bool found = s && s->present;
    pthread_mutex_unlock(&t->lock);
    if (!found) {
        char eb[600];
        return fb_error_set(err, FB_ENOTFOUND, "no session '%s'",
                            fb_path_escape_n(name, strlen(name), eb, sizeof eb));
    }
    fb_mount_refresh_session(t, s, false, &ignored);
    pthread_mutex_lock(&t->lock);
    s->kref++;
    fb_mount_attr_session(s, out);
    pthread_mutex_unlock(&t->lock);
    return 0;
}

static int lookup_in_session(fb_mount_tree *t, mt_session *s, const char *name,
                             fb_mount_attr *out, fb_error *err)
{
    fb_error ignored;
    fb_mount_refresh_session(t, s, false, &ignored);
    int rc = 0;
    pthread_mutex_lock(&t->lock);
    if (strcmp(name, FB_BACKUP_SPEC_LATEST) == 0 || strcmp(name, FB_BACKUP_SPEC_LATEST_FULL) == 0) {
        rc = fb_mount_attr_latest(s, name[6] == '-', out);
        if (rc == 0)
            s->kref++;
    } else if (strcmp(name, MT_ASOF_NAME) == 0 || strcmp(name, MT_HISTORY_NAME) == 0) {
        fb_mount_attr_view_dir(s, name[0] == 'a' ? REF_ASOF_DIR : REF_HISTORY, out);
        s->kref++;
    } else {
        mt_backup *b = fb_mount_session_backup(s, name);
        if (b && b->present) {
            b->kref++;
            fb_mount_attr_backup(b, out);
        } else {
            rc = FB_ENOTFOUND;
        }
    }
    pthread_mutex_unlock(&t->lock);
    if (rc) {
        char eb[600];
        return fb_error_set(err, rc, "session %s: no backup '%s'", s->id,
                            fb_path_escape_n(name, strlen(name), eb, sizeof eb));
    }
    return 0;
}

/* Looks name up in <session>/as-of/: `latest` or a backup's as-of view. */
static int lookup_in_asof(fb_mount_tree *t, mt_session *s, const char *name, fb_mount_attr *out,
                          fb_error *err)
{
    fb_error ignored;
    fb_mount_refresh_session(t, s, false, &ignored);
    int rc = 0;
    pthread_mutex_lock(&t->lock);
    if (strcmp(name, FB_BACKUP_SPEC_LATEST) == 0) {
        rc = fb_mount_attr_asof_latest(s, out);
        if (rc == 0)
            s->kref++;
    } else {
        mt_backup *v = fb_mount_view_get(t, s, MT_KIND_ASOF, name);
        if (v) {
            v->kref++;
            fb_mount_attr_backup(v, out);
        } else {
            rc = FB_ENOTFOUND;
        }
    }
    pthread_mutex_unlock(&t->lock);
    if (rc) {
        char eb[600];
        return fb_error_set(err, rc, "session %s: no backup '%s' for as-of", s->id,
                            fb_path_escape_n(name, strlen(name), eb, sizeof eb));
    }
    return 0;
}

static int lookup_in_backup(fb_mount_tree *t, const mt_ref *ref, uint64_t parent,
                            const char *name, fb_mount_attr *out, fb_error *err);

/* Looks name up at the top of <session>/history/: in the session's current
 * history view, made (from the fresh index) when the backups changed. */
static int lookup_in_history(fb_mount_tree *t, mt_session *s, uint64_t parent, const char *name,
                             fb_mount_attr *out, fb_error *err)
{
    fb_error ignored;
    fb_mount_refresh_session(t, s, false, &ignored);
    pthread_mutex_lock(&t->lock);
    mt_backup *v = fb_mount_view_get(t, s, MT_KIND_HISTORY, NULL);
    int rc;
    if (!v) {
        rc = fb_error_set(err, FB_ENOMEM, "session %s: out of memory", s->id);
    } else {
        mt_ref ref = {.kind = REF_BACKUP, .s = s, .b = v};
        v->pins++;
        rc = lookup_in_backup(t, &ref, parent, name, out, err);
        fb_mount_backup_unpin(t, v);
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

/* Looks name up in the backup dir or entry dir ref names (t->lock held,
 * ref->b pinned by the caller). */
static int lookup_in_backup(fb_mount_tree *t, const mt_ref *ref, uint64_t parent,
                            const char *name, fb_mount_attr *out, fb_error *err)
{
    mt_backup *b = ref->b;
    int rc = ref->kind == REF_ENTRY ? fb_mount_entry_load(t, b, parent, err)
                                    : fb_mount_backup_ensure_loaded(t, b, err);
    if (rc)
        return rc;
    const mt_contents *c = b->contents;
    uint32_t start = c->top_start, count = c->top_count;
    if (ref->kind == REF_ENTRY) {
        uint32_t dn = c->nodes[ref->node].target;
        if (!mt_node_is_dir(c, dn))
            return fb_error_set(err, FB_EMISUSE, "inode %llu is not a directory",
                                (unsigned long long)parent);
        start = c->nodes[dn].child_start;
        count = c->nodes[dn].child_count;
    }
    uint32_t n = count ? mt_child_find(c, start, count, name) : MT_NONE;
    if (n == MT_NONE) {
        char eb[600];
        return fb_error_set(err, FB_ENOTFOUND, "%s/%s: no entry '%s'", b->session->id, b->id,
                            fb_path_escape_n(name, strlen(name), eb, sizeof eb));
    }
    fb_mount_attr_entry(b, n, out);
    b->kref++;
    return 0;
}

int fb_mount_tree_lookup(fb_mount_tree *t, uint64_t parent, const char *name, fb_mount_attr *out,
                         fb_error *err)
{
    if (strlen(name) > FB_MOUNT_NAME_MAX)
        return fb_error_set(err, FB_EINVAL, "name too long");
    pthread_mutex_lock(&t->lock);
    mt_ref ref;
    int rc = fb_mount_inode_resolve(t, parent, &ref);
    if (rc == 0 && (ref.kind == REF_BACKUP || ref.kind == REF_ENTRY)) {
        /* Pinned before the lock is dropped to load the manifest, so the
         * backup cannot go away meanwhile. */
        ref.b->pins++;
        rc = lookup_in_backup(t, &ref, parent, name, out, err);
        fb_mount_backup_unpin(t, ref.b);
        pthread_mutex_unlock(&t->lock);
        return rc;
    }
    pthread_mutex_unlock(&t->lock);
    if (rc)
        return fb_error_set(err, rc, "inode %llu is not known", (unsigned long long)parent);
    if (ref.kind == REF_ROOT)
        return lookup_in_root(t, name, out, err);
    if (ref.kind == REF_SESSION)
        return lookup_in_session(t, ref.s, name, out, err);
    if (ref.kind == REF_ASOF_DIR)
        return lookup_in_asof(t, ref.s, name, out, err);
    if (ref.kind == REF_HISTORY)
        return lookup_in_history(t, ref.s, parent, name, out, err);
    return fb_error_set(err, FB_EMISUSE, "inode %llu is not a directory",
                        (unsigned long long)parent);
}

/* ------------------------------------------------- the other operations */

void fb_mount_tree_forget(fb_mount_tree *t, uint64_t ino, uint64_t nlookup)
{
    pthread_mutex_lock(&t->lock);
    mt_ref ref;
    if (fb_mount_inode_resolve(t, ino, &ref) == 0) {
        if (!ref.b && ref.s) {
            ref.s->kref -= nlookup < ref.s->kref ? nlookup : ref.s->kref;
        } else if (ref.b) {
            ref.b->kref -= nlookup < ref.b->kref ? nlookup : ref.b->kref;
            fb_mount_backup_maybe_release(t, ref.b);
        }
    }
    pthread_mutex_unlock(&t->lock);
}

int fb_mount_tree_getattr(fb_mount_tree *t, uint64_t ino, fb_mount_attr *out, fb_error *err)
{
    pthread_mutex_lock(&t->lock);
    mt_ref ref;
    int rc = fb_mount_inode_resolve(t, ino, &ref);
    if (rc) {
        pthread_mutex_unlock(&t->lock);
        return fb_error_set(err, rc, "inode %llu is not known", (unsigned long long)ino);
    }
    switch (ref.kind) {
    case REF_ROOT: {
        fb_error ignored;
        pthread_mutex_unlock(&t->lock);
        fb_mount_refresh_root(t, false, &ignored); /* st_nlink counts the sessions */
        pthread_mutex_lock(&t->lock);
        fb_mount_attr_root(t, out);
        break;
    }
    case REF_SESSION:
    case REF_LATEST:
    case REF_LATEST_FULL:
    case REF_ASOF_DIR:
    case REF_ASOF_LATEST:
    case REF_HISTORY: {
        fb_error ignored;
        pthread_mutex_unlock(&t->lock);
        fb_mount_refresh_session(t, ref.s, false, &ignored);
        pthread_mutex_lock(&t->lock);
        if (ref.kind == REF_SESSION)
            fb_mount_attr_session(ref.s, out);
        else if (ref.kind == REF_ASOF_DIR || ref.kind == REF_HISTORY)
            fb_mount_attr_view_dir(ref.s, ref.kind, out);
        else if ((rc = ref.kind == REF_ASOF_LATEST
                           ? fb_mount_attr_asof_latest(ref.s, out)
                           : fb_mount_attr_latest(ref.s, ref.kind == REF_LATEST_FULL, out)) != 0)
            fb_error_set(err, rc, "session %s has no backup", ref.s->id);
        break;
    }
    case REF_BACKUP:
        fb_mount_attr_backup(ref.b, out);
        break;
    default: {
        mt_backup *b = ref.b;
        b->pins++;
        rc = fb_mount_entry_load(t, b, ino, err);
        if (rc == 0)
            fb_mount_attr_entry(b, ref.node, out);
        fb_mount_backup_unpin(t, b);
        break;
    }
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

/* The stored target of the symlink entry ref names (t->lock held, ref->b
 * pinned by the caller); it lives as long as the backup's contents. */
static int entry_link_target(fb_mount_tree *t, const mt_ref *ref, uint64_t ino,
                             const char **target, fb_error *err)
{
    mt_backup *b = ref->b;
    int rc = fb_mount_entry_load(t, b, ino, err);
    if (rc)
        return rc;
    const mt_contents *c = b->contents;
    uint32_t e = c->nodes[c->nodes[ref->node].target].entry;
    if (e == MT_NONE || c->m.entries[e].meta.type != FB_ENTRY_SYMLINK || !c->m.entries[e].target)
        return fb_error_set(err, FB_EMISUSE, "inode %llu is not a symlink",
                            (unsigned long long)ino);
    *target = c->m.entries[e].target;
    return 0;
}

int fb_mount_tree_readlink(fb_mount_tree *t, uint64_t ino, char **out, fb_error *err)
{
    *out = NULL;
    pthread_mutex_lock(&t->lock);
    mt_ref ref;
    int rc = fb_mount_inode_resolve(t, ino, &ref);
    if (rc) {
        pthread_mutex_unlock(&t->lock);
        return fb_error_set(err, rc, "inode %llu is not known", (unsigned long long)ino);
    }
    const char *target = NULL;
    mt_backup *b = NULL;
    if (ref.kind == REF_LATEST || ref.kind == REF_LATEST_FULL || ref.kind == REF_ASOF_LATEST) {
        fb_error ignored;
        pthread_mutex_unlock(&t->lock);
        fb_mount_refresh_session(t, ref.s, false, &ignored);
        pthread_mutex_lock(&t->lock);
        target = ref.kind == REF_LATEST_FULL ? ref.s->latest_full : ref.s->latest;
        if (!target[0])
            rc = fb_error_set(err, FB_ENOTFOUND, "session %s has no backup", ref.s->id);
    } else if (ref.kind == REF_ENTRY) {
        b = ref.b;
        b->pins++;
        rc = entry_link_target(t, &ref, ino, &target, err);
    } else {
        rc = fb_error_set(err, FB_EMISUSE, "inode %llu is not a symlink", (unsigned long long)ino);
    }
    if (rc == 0 && !(*out = strdup(target)))
        rc = fb_error_set(err, FB_ENOMEM, "out of memory");
    if (b)
        fb_mount_backup_unpin(t, b);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

int fb_mount_tree_statfs(fb_mount_tree *t, struct statvfs *out, fb_error *err)
{
    if (fstatvfs(t->backups_fd, out) != 0)
        return fb_error_set_errno(err, errno, "statfs of the store");
    return 0;
}
