/* The session and backup nodes and how long they live. Sessions stay for the
 * tree's life (their numbers must keep meaning them); a backup's contents
 * live while the kernel or an operation holds the backup (kref, pins,
 * loading) and the budget of loaded contents (opts.meta_cache_bytes) allows,
 * and the backup node itself until it has also left the store. Loading a
 * manifest happens here, with the tree's lock dropped, because it is the
 * slowest thing a lookup can wait for. */
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
    fb_index_init(&s->idx, id);
    if (fb_mount_inode_range_new(t, MT_SINO_COUNT, RANGE_SESSION, s, &s->ino) != 0) {
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
        if (!s->backups[i]->retired && strcmp(s->backups[i]->id, id) == 0)
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

/* ------------------------------------------------- the metadata budget */

static void lru_unlink(fb_mount_tree *t, mt_backup *b)
{
    if (b->lru_prev)
        b->lru_prev->lru_next = b->lru_next;
    else
        t->lru_head = b->lru_next;
    if (b->lru_next)
        b->lru_next->lru_prev = b->lru_prev;
    else
        t->lru_tail = b->lru_prev;
    b->lru_prev = b->lru_next = NULL;
}

static void lru_push_front(fb_mount_tree *t, mt_backup *b)
{
    b->lru_prev = NULL;
    b->lru_next = t->lru_head;
    if (t->lru_head)
        t->lru_head->lru_prev = b;
    else
        t->lru_tail = b;
    t->lru_head = b;
}

/* Takes b's contents out of the tree and its accounting; the caller frees
 * them. b keeps its inode range, so the kernel's numbers stay valid. */
static mt_contents *contents_detach(fb_mount_tree *t, mt_backup *b)
{
    mt_contents *c = b->contents;
    if (!c)
        return NULL;
    lru_unlink(t, b);
    t->meta_bytes -= c->bytes;
    t->n_loaded--;
    b->contents = NULL;
    return c;
}

/* A pinned backup has an operation in flight or an open directory handle
 * reading its contents without the lock; one with open files is what the
 * user is working in (files kept for reads without an open do not count:
 * they were only read recently, and their reads need no contents). One that
 * left the store could not be reloaded: its contents stay until the kernel
 * forgets it. */
static bool evictable(const mt_backup *b)
{
    return !b->pins && !b->loading && (!b->archive || b->archive->refs == b->archive->kept) &&
           b->present;
}

/* Detaches the contents of the least recently used evictable backups until
 * the loaded total plus reserve fits the bound, and returns them chained for
 * freeing once the lock is dropped (freeing 100k entries takes a while). */
static mt_contents *evict_to_fit(fb_mount_tree *t, uint64_t reserve)
{
    uint64_t bound = t->opts.meta_cache_bytes;
    mt_contents *batch = NULL;
    if (!bound)
        return NULL;
    mt_backup *prev;
    for (mt_backup *b = t->lru_tail; b && t->meta_bytes + reserve > bound; b = prev) {
        prev = b->lru_prev;
        if (!evictable(b))
            continue;
        mt_contents *c = contents_detach(t, b);
        c->next_evicted = batch;
        batch = c;
        t->meta_evictions++;
    }
    return batch;
}

static void free_batch(mt_contents *batch)
{
    while (batch) {
        mt_contents *next = batch->next_evicted;
        mt_contents_free(batch);
        batch = next;
    }
}

static void node_unlist(mt_backup **v, size_t *n, const mt_backup *b)
{
    for (size_t i = 0; i < *n; i++) {
        if (v[i] == b) {
            memmove(&v[i], &v[i + 1], (*n - i - 1) * sizeof b);
            (*n)--;
            return;
        }
    }
}

static void backup_free_node(fb_mount_tree *t, mt_backup *b)
{
    mt_session *s = b->session;
    if (b->kind == MT_KIND_BACKUP)
        node_unlist(s->backups, &s->n_backups, b);
    else
        node_unlist(s->views, &s->n_views, b);
    /* history/'s number is the session's, kept for the session's life. */
    if (b->kind != MT_KIND_HISTORY)
        fb_mount_inode_range_remove(t, b->ino);
    if (b->entries_count)
        fb_mount_inode_range_remove(t, b->entries_base);
    mt_contents_free(contents_detach(t, b));
    archive_detach(b);
    if (b->has_proof && b->proof.frames_kept)
        fb_frame_cache_forget(t->cache, b->proof.frame_key);
    if (b->kind == MT_KIND_BACKUP)
        t->n_backups_alive--;
    free(b);
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
    mt_contents_free(contents_detach(t, b));
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
    memcpy(b->archive_sha256, r->archive_sha256, sizeof b->archive_sha256);
    if (fb_mount_inode_range_new(t, 1, RANGE_BACKUP_DIR, b, &b->ino) != 0) {
        free(b);
        return NULL;
    }
    s->backups[s->n_backups++] = b;
    t->n_backups_alive++;
    return b;
}

/* ---------------------------------------------------------------- views */

static bool view_signature(const mt_session *s, int kind, const char *id,
                           uint8_t sig[FB_SHA256_LEN])
{
    if (kind == MT_KIND_HISTORY) {
        mt_history_signature(&s->idx, sig);
        return true;
    }
    return mt_asof_signature(&s->idx, id, sig);
}

static mt_backup *view_add(fb_mount_tree *t, mt_session *s, int kind, const mt_backup *of,
                           const uint8_t sig[FB_SHA256_LEN])
{
    if (s->n_views == s->cap_views) {
        size_t cap = s->cap_views ? s->cap_views * 2 : 16;
        mt_backup **v = realloc(s->views, cap * sizeof *v);
        if (!v)
            return NULL;
        s->views = v;
        s->cap_views = cap;
    }
    mt_backup *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->session = s;
    b->kind = kind;
    b->present = true;
    memcpy(b->sig, sig, FB_SHA256_LEN);
    if (kind == MT_KIND_HISTORY) {
        b->ino = s->ino + MT_SINO_HISTORY;
        b->created_at = s->newest_time;
    } else {
        memcpy(b->id, of->id, sizeof b->id);
        b->seq = of->seq;
        b->type = of->type;
        b->created_at = of->created_at;
        if (fb_mount_inode_range_new(t, 1, RANGE_BACKUP_DIR, b, &b->ino) != 0) {
            free(b);
            return NULL;
        }
    }
    s->views[s->n_views++] = b;
    return b;
}

mt_backup *fb_mount_view_get(fb_mount_tree *t, mt_session *s, int kind, const char *id)
{
    const mt_backup *of = NULL;
    if (kind == MT_KIND_ASOF) {
        of = fb_mount_session_backup(s, id);
        if (!of || !of->present)
            return NULL;
    }
    for (size_t i = 0; i < s->n_views; i++) {
        mt_backup *v = s->views[i];
        if (v->kind == kind && v->present && (!of || strcmp(v->id, of->id) == 0))
            return v;
    }
    uint8_t sig[FB_SHA256_LEN];
    if (!view_signature(s, kind, of ? of->id : NULL, sig))
        return NULL;
    return view_add(t, s, kind, of, sig);
}

void fb_mount_views_refresh(fb_mount_tree *t, mt_session *s)
{
    for (size_t i = s->n_views; i-- > 0;) {
        mt_backup *v = s->views[i];
        if (!v->present)
            continue;
        uint8_t sig[FB_SHA256_LEN];
        const mt_backup *of = v->kind == MT_KIND_ASOF ? fb_mount_session_backup(s, v->id) : NULL;
        bool keep = (v->kind == MT_KIND_HISTORY || (of && of->present)) &&
                    view_signature(s, v->kind, v->id, sig) &&
                    memcmp(sig, v->sig, sizeof sig) == 0;
        if (!keep) {
            /* Its numbers may be cached by the kernel: they keep naming
             * the old contents while held, and are never reloaded. */
            v->present = false;
            v->retired = true;
            fb_mount_backup_maybe_release(t, v); /* may remove s->views[i] */
        }
    }
}

mt_backup *fb_mount_source_backup(const mt_session *s, const mt_source *src)
{
    mt_backup *b = fb_mount_session_backup(s, src->id);
    if (!b || memcmp(b->archive_sha256, src->archive_sha256, FB_SHA256_LEN) != 0)
        return NULL;
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
        for (size_t j = 0; j < s->n_views; j++) {
            mt_contents_free(s->views[j]->contents);
            free(s->views[j]);
        }
        free(s->views);
        fb_index_fini(&s->idx);
        free(s->backups);
        free(s->last_warning);
        pthread_mutex_destroy(&s->refresh_lock);
        free(s);
    }
    free(t->sessions);
}

/* ------------------------------------------------------ loading a backup */

/* *parsed: whether a parser's transient memory was freed on the way (not
 * for a backup's manifest found in the manifest cache). */
static int contents_load(fb_mount_tree *t, int kind, const uint8_t *sig, const char *sid,
                         const char *bid, int64_t created_at, uid_t uid, gid_t gid,
                         mt_contents **out, bool *parsed, fb_error *err)
{
    *out = NULL;
    *parsed = true;
    if (kind != MT_KIND_BACKUP) {
        mt_view_load l = {.store = t->store, .manifest_cache = t->manifest_cache,
                          .session_id = sid, .backup_id = bid,
                          .created_at = created_at, .uid = uid, .gid = gid};
        memcpy(l.sig, sig, sizeof l.sig);
        return kind == MT_KIND_ASOF ? mt_asof_load(&l, out, err) : mt_history_load(&l, out, err);
    }
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
        bool hit = false;
        rc = fb_manifest_cache_read(t->manifest_cache, sfd, sid, bid, &c->m, &hit, err);
        *parsed = !hit;
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
    c->bytes = mt_contents_bytes(c);
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
    b->meta_bytes = c->bytes;
    t->meta_bytes += c->bytes;
    if (t->meta_bytes > t->meta_bytes_peak)
        t->meta_bytes_peak = t->meta_bytes;
    t->meta_loads++;
    lru_push_front(t, b);
    return 0;
}

/* A sanitizer replaces malloc: glibc's malloc_trim then walks arenas that
 * never held our memory, and crashes (seen under ASan). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MT_SANITIZED_HEAP 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define MT_SANITIZED_HEAP 1
#endif
#endif

/* Hands freed heap pages back to the system: parsing a manifest leaves its
 * parser's memory freed in the heap, and evicted contents leave holes that
 * glibc would otherwise keep (the budget is meant as resident memory).
 * Called after a load that parsed or evicted. Only when more than
 * opts.heap_keep_bytes is free: the pages a smaller trim gives back are the
 * ones the daemon's next frames are decoded into (it writes its first heap
 * at start for them, fs/main.c); after a small manifest was parsed the next
 * 24 MiB read faulted 1,500 of them in again. */
static void heap_trim(const fb_mount_tree *t)
{
#if defined(__GLIBC__) && !defined(MT_SANITIZED_HEAP)
    if (mallinfo2().fordblks > t->opts.heap_keep_bytes)
        malloc_trim(0);
#else
    (void)t;
#endif
}

int fb_mount_backup_ensure_loaded(fb_mount_tree *t, mt_backup *b, fb_error *err)
{
    for (;;) {
        if (b->contents) {
            lru_unlink(t, b);
            lru_push_front(t, b);
            return 0;
        }
        if (!b->loading)
            break;
        pthread_cond_wait(&t->loaded_cond, &t->lock);
    }
    /* Its id now names other contents, which must not fill its old numbers. */
    if (b->retired)
        return fb_error_set(err, FB_ENOTFOUND, "%s/%s: replaced by another backup of that id",
                            b->session->id, b->id);
    b->loading = true;
    char sid[FB_SESSION_ID_MAX + 1], bid[FB_BACKUP_ID_LEN + 1];
    strcpy(sid, b->session->id);
    strcpy(bid, b->id);
    int kind = b->kind;
    uint8_t sig[FB_SHA256_LEN];
    memcpy(sig, b->sig, sizeof sig);
    int64_t created_at = b->created_at;
    uid_t uid = b->session->have_st ? b->session->st.st_uid : getuid();
    gid_t gid = b->session->have_st ? b->session->st.st_gid : getgid();
    /* Room first, for what b took at its last load, so that the peak is
     * the bound plus one parse rather than the bound plus one backup more. */
    mt_contents *evicted = evict_to_fit(t, b->meta_bytes);
    bool trim = evicted != NULL, parsed;
    pthread_mutex_unlock(&t->lock);
    free_batch(evicted);
    mt_contents *c = NULL;
    int rc = contents_load(t, kind, sig, sid, bid, created_at, uid, gid, &c, &parsed, err);
    trim = trim || parsed;
    pthread_mutex_lock(&t->lock);
    b->loading = false;
    pthread_cond_broadcast(&t->loaded_cond);
    evicted = NULL;
    /* b stays pinned by the caller, so the eviction cannot take it. */
    if (rc == 0 && (rc = backup_install_contents(t, b, c, err)) == 0)
        evicted = evict_to_fit(t, 0);
    pthread_mutex_unlock(&t->lock);
    trim = trim || evicted != NULL;
    free_batch(evicted);
    /* A load from the manifest cache leaves no parser's memory behind:
     * trimming then cost a tenth of it for nothing. */
    if (trim)
        heap_trim(t);
    pthread_mutex_lock(&t->lock);
    return rc;
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
