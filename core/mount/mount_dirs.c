/* Directory handles. The root and a session change while the daemon runs,
 * so their listing is a snapshot taken at opendir and readdir never sees it
 * shift under its offsets; a backup never changes, so its listing is read
 * straight from the loaded contents, which the handle keeps pinned. */
#include <stdlib.h>
#include <string.h>

#include "mount_tree_i.h"

typedef struct mt_snap_entry {
    char name[FB_SESSION_ID_MAX + 1];
    uint64_t ino;
    uint32_t mode;
} mt_snap_entry;

struct fb_mount_dir {
    fb_mount_dir *next, *prev;
    uint64_t self_ino, parent_ino;
    /* root and session listings: a snapshot */
    mt_snap_entry *snap;
    size_t n_snap;
    /* backup listings: the pinned backup and the directory node (MT_TOP for
     * the backup dir itself) */
    mt_backup *b;
    uint32_t node;
};

static void dir_link(fb_mount_tree *t, fb_mount_dir *d)
{
    d->prev = NULL;
    d->next = t->dirs;
    if (t->dirs)
        t->dirs->prev = d;
    t->dirs = d;
}

static int snapshot_root(fb_mount_tree *t, fb_mount_dir *d)
{
    d->snap = malloc((t->n_sessions ? t->n_sessions : 1) * sizeof *d->snap);
    if (!d->snap)
        return FB_ENOMEM;
    for (size_t i = 0; i < t->n_sessions; i++) {
        const mt_session *s = t->sessions[i];
        if (!s->present)
            continue;
        mt_snap_entry *e = &d->snap[d->n_snap++];
        strcpy(e->name, s->id);
        e->ino = s->ino;
        e->mode = S_IFDIR;
    }
    return 0;
}

typedef struct seq_item {
    uint64_t seq;
    const mt_backup *b;
} seq_item;

static int cmp_seq(const void *a, const void *b)
{
    const seq_item *x = a, *y = b;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return strcmp(x->b->id, y->b->id);
}

static int snapshot_session(const mt_session *s, fb_mount_dir *d)
{
    seq_item *items = malloc((s->n_backups ? s->n_backups : 1) * sizeof *items);
    d->snap = malloc((s->n_backups + 4) * sizeof *d->snap);
    if (!items || !d->snap) {
        free(items);
        return FB_ENOMEM;
    }
    size_t n = 0;
    for (size_t i = 0; i < s->n_backups; i++)
        if (s->backups[i]->present)
            items[n++] = (seq_item){s->backups[i]->seq, s->backups[i]};
    qsort(items, n, sizeof *items, cmp_seq);
    for (size_t i = 0; i < n; i++) {
        mt_snap_entry *e = &d->snap[d->n_snap++];
        strcpy(e->name, items[i].b->id);
        e->ino = items[i].b->ino;
        e->mode = S_IFDIR;
    }
    free(items);
    if (s->latest[0]) {
        mt_snap_entry *e = &d->snap[d->n_snap++];
        strcpy(e->name, FB_BACKUP_SPEC_LATEST);
        e->ino = s->ino + MT_SINO_LATEST;
        e->mode = S_IFLNK;
    }
    if (s->latest_full[0]) {
        mt_snap_entry *e = &d->snap[d->n_snap++];
        strcpy(e->name, FB_BACKUP_SPEC_LATEST_FULL);
        e->ino = s->ino + MT_SINO_LATEST_FULL;
        e->mode = S_IFLNK;
    }
    mt_snap_entry *e = &d->snap[d->n_snap++];
    strcpy(e->name, MT_ASOF_NAME);
    e->ino = s->ino + MT_SINO_ASOF;
    e->mode = S_IFDIR;
    e = &d->snap[d->n_snap++];
    strcpy(e->name, MT_HISTORY_NAME);
    e->ino = s->ino + MT_SINO_HISTORY;
    e->mode = S_IFDIR;
    return 0;
}

/* as-of/: one view per present backup, in seq order, and `latest`. The
 * views are made here (no manifest is read) so that each has its number. */
static int snapshot_asof(fb_mount_tree *t, mt_session *s, fb_mount_dir *d)
{
    int rc = snapshot_session(s, d);
    if (rc)
        return rc;
    size_t n = 0;
    for (size_t i = 0; i < d->n_snap; i++) {
        mt_snap_entry *e = &d->snap[i];
        if (strcmp(e->name, FB_BACKUP_SPEC_LATEST) == 0) {
            e->ino = s->ino + MT_SINO_ASOF_LATEST;
        } else if (e->mode == S_IFDIR && fb_backup_id_is_valid(e->name)) {
            mt_backup *v = fb_mount_view_get(t, s, MT_KIND_ASOF, e->name);
            if (!v)
                return FB_ENOMEM;
            e->ino = v->ino;
        } else {
            continue; /* latest-full, as-of, history */
        }
        d->snap[n++] = *e;
    }
    d->n_snap = n;
    d->parent_ino = s->ino;
    return 0;
}

/* Points d at the directory ref names inside its backup (t->lock held,
 * ref->b pinned by the caller): on success d keeps the pin until closed, on
 * failure it is dropped here. */
static int open_in_backup(fb_mount_tree *t, const mt_ref *ref, uint64_t ino, fb_mount_dir *d,
                          fb_error *err)
{
    mt_backup *b = ref->b;
    int rc = ref->kind == REF_ENTRY ? fb_mount_entry_load(t, b, ino, err)
                                    : fb_mount_backup_ensure_loaded(t, b, err);
    if (rc == 0) {
        const mt_contents *c = b->contents;
        if (ref->kind == REF_BACKUP) {
            d->node = MT_TOP;
            d->parent_ino = b->session->ino + (b->kind == MT_KIND_ASOF ? MT_SINO_ASOF : 0);
        } else {
            uint32_t dn = c->nodes[ref->node].target;
            if (!mt_node_is_dir(c, dn)) {
                rc = fb_error_set(err, FB_EMISUSE, "inode %llu is not a directory",
                                  (unsigned long long)ino);
            } else {
                d->node = dn;
                uint32_t p = c->nodes[dn].parent;
                d->parent_ino = p == MT_TOP ? b->ino : b->entries_base + p;
            }
        }
    }
    if (rc == 0)
        d->b = b;
    else
        fb_mount_backup_unpin(t, b);
    return rc;
}

/* history/: the top of the session's current history view, made when the
 * backups changed (t->lock held). */
static int open_history(fb_mount_tree *t, mt_session *s, uint64_t ino, fb_mount_dir *d,
                        fb_error *err)
{
    mt_backup *v = fb_mount_view_get(t, s, MT_KIND_HISTORY, NULL);
    if (!v)
        return fb_error_set(err, FB_ENOMEM, "session %s: out of memory", s->id);
    v->pins++; /* held until the handle closes, or dropped on failure */
    mt_ref ref = {.kind = REF_BACKUP, .s = s, .b = v};
    return open_in_backup(t, &ref, ino, d, err);
}

int fb_mount_tree_opendir(fb_mount_tree *t, uint64_t ino, fb_mount_dir **out, fb_error *err)
{
    *out = NULL;
    pthread_mutex_lock(&t->lock);
    mt_ref ref;
    int rc = fb_mount_inode_resolve(t, ino, &ref);
    if (rc == 0 && ref.b)
        ref.b->pins++; /* held until the handle closes, or dropped on failure */
    pthread_mutex_unlock(&t->lock);
    if (rc)
        return fb_error_set(err, rc, "inode %llu is not known", (unsigned long long)ino);
    if (ref.kind == REF_LATEST || ref.kind == REF_LATEST_FULL || ref.kind == REF_ASOF_LATEST)
        return fb_error_set(err, FB_EMISUSE, "inode %llu is not a directory",
                            (unsigned long long)ino);
    /* A listing is where new and removed backups must show: always re-read. */
    if (ref.kind == REF_ROOT && (rc = fb_mount_refresh_root(t, true, err)) != 0)
        return rc;
    if ((ref.kind == REF_SESSION || ref.kind == REF_ASOF_DIR || ref.kind == REF_HISTORY) &&
        (rc = fb_mount_refresh_session(t, ref.s, true, err)) != 0)
        return rc;
    fb_mount_dir *d = calloc(1, sizeof *d);
    if (!d) {
        if (ref.b) {
            pthread_mutex_lock(&t->lock);
            fb_mount_backup_unpin(t, ref.b);
            pthread_mutex_unlock(&t->lock);
        }
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    }
    d->self_ino = ino;
    d->parent_ino = FB_MOUNT_ROOT_INO;
    d->node = MT_NONE;
    pthread_mutex_lock(&t->lock);
    if (ref.kind == REF_ROOT)
        rc = snapshot_root(t, d);
    else if (ref.kind == REF_SESSION)
        rc = snapshot_session(ref.s, d);
    else if (ref.kind == REF_ASOF_DIR)
        rc = snapshot_asof(t, ref.s, d);
    else if (ref.kind == REF_HISTORY)
        rc = open_history(t, ref.s, ino, d, err);
    else
        rc = open_in_backup(t, &ref, ino, d, err);
    if (rc == FB_ENOMEM)
        fb_error_set(err, rc, "out of memory listing inode %llu", (unsigned long long)ino);
    if (rc == 0)
        dir_link(t, d);
    pthread_mutex_unlock(&t->lock);
    if (rc) {
        free(d->snap);
        free(d);
        return rc;
    }
    *out = d;
    return 0;
}

bool fb_mount_dir_is_immutable(const fb_mount_dir *d)
{
    return d->b != NULL && d->b->kind != MT_KIND_HISTORY;
}

bool fb_mount_dir_get(fb_mount_dir *d, uint64_t pos, const char **name, uint64_t *ino,
                      uint32_t *mode)
{
    if (pos == 0 || pos == 1) {
        *name = pos == 0 ? "." : "..";
        *ino = pos == 0 ? d->self_ino : d->parent_ino;
        *mode = S_IFDIR;
        return true;
    }
    uint64_t i = pos - 2;
    if (!d->b) {
        if (i >= d->n_snap)
            return false;
        *name = d->snap[i].name;
        *ino = d->snap[i].ino;
        *mode = d->snap[i].mode;
        return true;
    }
    /* The pinned contents are immutable: no lock needed to read them. */
    const mt_backup *b = d->b;
    const mt_contents *c = b->contents;
    uint32_t start = d->node == MT_TOP ? c->top_start : c->nodes[d->node].child_start;
    uint32_t count = d->node == MT_TOP ? c->top_count : c->nodes[d->node].child_count;
    if (i >= count)
        return false;
    uint32_t n = c->children[start + i];
    uint32_t tg = c->nodes[n].target;
    *name = c->nodes[n].name;
    *ino = b->entries_base + tg;
    *mode = fb_mount_node_type_bits(c, tg);
    return true;
}

void fb_mount_dir_close(fb_mount_tree *t, fb_mount_dir *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&t->lock);
    if (d->prev)
        d->prev->next = d->next;
    else
        t->dirs = d->next;
    if (d->next)
        d->next->prev = d->prev;
    if (d->b)
        fb_mount_backup_unpin(t, d->b);
    pthread_mutex_unlock(&t->lock);
    free(d->snap);
    free(d);
}

void fb_mount_dirs_free_all(fb_mount_tree *t)
{
    while (t->dirs) {
        fb_mount_dir *d = t->dirs;
        t->dirs = d->next;
        free(d->snap);
        free(d);
    }
}
