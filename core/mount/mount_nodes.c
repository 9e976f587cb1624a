/* The session and backup nodes and how long they live. Sessions stay for the
 * tree's life (their numbers must keep meaning them); a backup's contents
 * live while the kernel or an operation holds the backup (kref, pins,
 * loading), and the backup node itself until it has also left the store.
 * Loading a manifest happens here, with the tree's lock dropped, because it
 * is the slowest thing a lookup can wait for. */
#include <stdio.h>
#include <stdlib.h>
#ifdef __GLIBC__ /* defined by the libc headers above */
#include <malloc.h>
#endif
#include <string.h>
#include <unistd.h>

#include "fb_manifest.h"
#include "mount_tree_i.h"

/* ------------------------------------------------------------- sessions */

mt_session *fb_mount_session_find(fb_mount_tree *t, const char *id, size_t *pos)
{
    size_t lo = 0, hi = t->n_sessions;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->sessions[mid]->id, id);
        if (c == 0) {
            if (pos)
                *pos = mid;
            return t->sessions[mid];
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (pos)
        *pos = lo;
    return NULL;
}

mt_session *fb_mount_session_add(fb_mount_tree *t, const char *id, size_t pos)
{
    if (strlen(id) > FB_SESSION_ID_MAX)
        return NULL;
    if (t->n_sessions == t->cap_sessions) {
        size_t cap = t->cap_sessions ? t->cap_sessions * 2 : 16;
        mt_session **s = realloc(t->sessions, cap * sizeof *s);
        if (!s)
            return NULL;
        t->sessions = s;
        t->cap_sessions = cap;
    }
    mt_session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    strcpy(s->id, id);
    if (pthread_mutex_init(&s->refresh_lock, NULL) != 0) {
        free(s);
        return NULL;
    }
    if (fb_mount_inode_range_new(t, 3, RANGE_SESSION, s, &s->ino) != 0) {
        pthread_mutex_destroy(&s->refresh_lock);
        free(s);
        return NULL;
    }
    memmove(&t->sessions[pos + 1], &t->sessions[pos], (t->n_sessions - pos) * sizeof *t->sessions);
    t->sessions[pos] = s;
    t->n_sessions++;
    return s;
}

mt_backup *fb_mount_session_backup(const mt_session *s, const char *id)
{
    for (size_t i = 0; i < s->n_backups; i++)
        if (strcmp(s->backups[i]->id, id) == 0)
            return s->backups[i];
    return NULL;
}

/* ----------------------------------------------------- backup lifetimes */

static void archive_detach(mt_backup *b)
{
    if (b->archive) {
        b->archive->backup = NULL;
        b->archive = NULL;
    }
}

static void backup_free_node(fb_mount_tree *t, mt_backup *b)
{
    mt_session *s = b->session;
    for (size_t i = 0; i < s->n_backups; i++) {
        if (s->backups[i] == b) {
            memmove(&s->backups[i], &s->backups[i + 1], (s->n_backups - i - 1) * sizeof b);
            s->n_backups--;
            break;
        }
    }
    fb_mount_inode_range_remove(t, b->ino);
    if (b->entries_count)
        fb_mount_inode_range_remove(t, b->entries_base);
    if (b->contents) {
        mt_contents_free(b->contents);
        t->n_loaded--;
    }
    archive_detach(b);
    free(b);
    t->n_backups_alive--;
}

void fb_mount_backup_maybe_release(fb_mount_tree *t, mt_backup *b)
{
    if (b->pins || b->kref || b->loading)
        return;
    if (!b->present) {
        backup_free_node(t, b);
        return;
    }
    /* The kernel forgot every inode of this backup: its manifest can go; it is
     * reloaded into the same inode range if a path needs it again. */
    if (b->contents) {
        mt_contents_free(b->contents);
        b->contents = NULL;
        t->n_loaded--;
    }
}

void fb_mount_backup_unpin(fb_mount_tree *t, mt_backup *b)
{
    b->pins--;
    fb_mount_backup_maybe_release(t, b);
}

mt_backup *fb_mount_backup_add(fb_mount_tree *t, mt_session *s, const fb_index_record *r)
{
    if (s->n_backups == s->cap_backups) {
        size_t cap = s->cap_backups ? s->cap_backups * 2 : 16;
        mt_backup **v = realloc(s->backups, cap * sizeof *v);
        if (!v)
            return NULL;
        s->backups = v;
        s->cap_backups = cap;
    }
    mt_backup *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->session = s;
    memcpy(b->id, r->id, sizeof b->id);
    if (fb_mount_inode_range_new(t, 1, RANGE_BACKUP_DIR, b, &b->ino) != 0) {
        free(b);
        return NULL;
    }
    s->backups[s->n_backups++] = b;
    t->n_backups_alive++;
    return b;
}

void fb_mount_nodes_free_all(fb_mount_tree *t)
{
    for (size_t i = 0; i < t->n_sessions; i++) {
        mt_session *s = t->sessions[i];
        for (size_t j = 0; j < s->n_backups; j++) {
            mt_contents_free(s->backups[j]->contents);
            free(s->backups[j]);
        }
        free(s->backups);
        free(s->last_warning);
        pthread_mutex_destroy(&s->refresh_lock);
        free(s);
    }
    free(t->sessions);
}

/* ------------------------------------------------------ loading a backup */

static int contents_load(fb_mount_tree *t, const char *sid, const char *bid, int64_t created_at,
                         uid_t uid, gid_t gid, mt_contents **out, fb_error *err)
{
    *out = NULL;
    mt_contents *c = calloc(1, sizeof *c);
    if (!c)
        return fb_error_set(err, FB_ENOMEM, "%s/%s: out of memory", sid, bid);
    fb_manifest_init(&c->m);
    c->created_at = created_at;
    c->uid = uid;
    c->gid = gid;
    int sfd = -1;
    int rc = fb_store_open_session(t->store, sid, false, &sfd, err);
    if (rc == 0) {
        rc = fb_store_read_manifest(sfd, sid, bid, &c->m, err);
        close(sfd);
    }
    if (rc == 0) {
        char name[FB_SESSION_ID_MAX + FB_BACKUP_ID_LEN + 32];
        snprintf(name, sizeof name, "%s/%s/" FB_MANIFEST_NAME, sid, bid);
        rc = mt_contents_build(c, name, err);
    }
    if (rc != 0) {
        mt_contents_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* Gives the loaded contents c their inode range and hangs them on b. */
static int backup_install_contents(fb_mount_tree *t, mt_backup *b, mt_contents *c, fb_error *err)
{
    if (b->entries_count != c->n_nodes) {
        /* First load (or, impossibly for an immutable backup, a manifest that
         * changed size): a fresh range so no old number means something new. */
        if (b->entries_count)
            fb_mount_inode_range_remove(t, b->entries_base);
        b->entries_base = 0;
        b->entries_count = 0;
        if (c->n_nodes) {
            uint64_t base;
            if (fb_mount_inode_range_new(t, c->n_nodes, RANGE_ENTRIES, b, &base) != 0) {
                mt_contents_free(c);
                return fb_error_set(err, FB_ENOMEM, "%s/%s: out of memory", b->session->id,
                                    b->id);
            }
            b->entries_base = base;
            b->entries_count = c->n_nodes;
        }
    }
    b->contents = c;
    t->n_loaded++;
    return 0;
}

int fb_mount_backup_ensure_loaded(fb_mount_tree *t, mt_backup *b, fb_error *err)
{
    for (;;) {
        if (b->contents)
            return 0;
        if (!b->loading)
            break;
        pthread_cond_wait(&t->loaded_cond, &t->lock);
    }
    b->loading = true;
    char sid[FB_SESSION_ID_MAX + 1], bid[FB_BACKUP_ID_LEN + 1];
    strcpy(sid, b->session->id);
    strcpy(bid, b->id);
    int64_t created_at = b->created_at;
    uid_t uid = b->session->have_st ? b->session->st.st_uid : getuid();
    gid_t gid = b->session->have_st ? b->session->st.st_gid : getgid();
    pthread_mutex_unlock(&t->lock);
    mt_contents *c = NULL;
    int rc = contents_load(t, sid, bid, created_at, uid, gid, &c, err);
#ifdef __GLIBC__
    /* Parsing a manifest leaves several times its size of freed JSON nodes
     * in the heap; hand those pages back so a loaded manifest costs what it
     * holds (100k entries: 149 MB resident without this, 22 MB with it;
     * docs/mount.md). */
    malloc_trim(0);
#endif
    pthread_mutex_lock(&t->lock);
    b->loading = false;
    pthread_cond_broadcast(&t->loaded_cond);
    if (rc != 0)
        return rc;
    return backup_install_contents(t, b, c, err);
}

/* After the backup was (re)loaded with the lock dropped: is the node still
 * what ino named? */
static bool entry_still_valid(const mt_backup *b, uint64_t ino)
{
    return b->contents && b->entries_count && ino >= b->entries_base &&
           ino - b->entries_base < b->entries_count;
}

int fb_mount_entry_load(fb_mount_tree *t, mt_backup *b, uint64_t ino, fb_error *err)
{
    int rc = fb_mount_backup_ensure_loaded(t, b, err);
    if (rc == 0 && !entry_still_valid(b, ino))
        rc = fb_error_set(err, FB_ENOTFOUND, "inode %llu is gone", (unsigned long long)ino);
    return rc;
}
