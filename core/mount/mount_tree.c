/* The mounted view of a store: sessions -> backups -> entries with stable
 * inode numbers, built lazily from indexes and manifests, freed by the
 * kernel's lookup counts. See include/fb_mount_tree.h and docs/mount.md.
 * A backup's contents (its manifest as a tree of nodes) are built by
 * mount_contents.c; where a mount may go is mount_paths.c.
 *
 * Locking: one mutex (t->lock) guards every table and node. Slow work (reading
 * an index, loading a manifest, opening an archive) runs with t->lock released:
 * a backup being worked on is pinned so that it cannot be freed, sessions are
 * never freed before the tree, and refreshes of one listing are serialised by
 * their own mutex (taken before t->lock, never while holding it). */
#include "fb_mount_tree.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fb_archive_reader.h"
#include "fb_frame_cache.h"
#include "fb_index.h"
#include "fb_manifest.h"
#include "fb_store.h"
#include "fb_text.h"
#include "clock_i.h"
#include "mount_contents_i.h"
#include "tar_header_i.h"

/* st_blksize of every node: reads are served a frame at a time. */
#define MT_BLKSIZE 65536
/* Files up to this size are hashed when opened (fb_tar_member_prove_content):
 * the frames they lie in are decoded for the first read anyway. */
#define MT_HASH_ON_OPEN_MAX (1024u * 1024)

typedef struct mt_archive mt_archive;
typedef struct mt_session mt_session;

typedef struct mt_backup {
    mt_session *session;
    char id[FB_BACKUP_ID_LEN + 1];
    uint64_t seq;
    int64_t created_at;
    fb_backup_type type;
    uint64_t ino;           /* the backup directory */
    uint64_t entries_base;  /* range of its entries, 0 until first loaded */
    uint64_t entries_count;
    bool present;           /* in the session's index at the last refresh */
    bool loading;
    uint64_t kref;          /* kernel lookups on the dir and its entries */
    unsigned pins;          /* in-flight operations and open dir handles */
    mt_contents *contents;
    mt_archive *archive;    /* shared reader while files of it are open */
    /* What the last reader of the archive proved of its frame map, so a
     * file opened after all were closed does not prove it again. */
    fb_archive_proof proof;
    bool has_proof;
} mt_backup;

struct mt_archive {
    fb_archive_reader *reader;
    unsigned refs;          /* open files */
    mt_backup *backup;      /* NULL once the backup node is gone */
    mt_archive *next, *prev; /* the tree's list, freed at exit */
};

struct mt_session {
    char id[FB_SESSION_ID_MAX + 1];
    uint64_t ino;           /* ino: dir, ino+1: latest, ino+2: latest-full */
    bool present;           /* listed in the root at the last refresh */
    bool loaded;
    double loaded_at;
    pthread_mutex_t refresh_lock;
    struct stat st;         /* the session's store directory */
    bool have_st;
    /* Store dir stat taken before the last successful load, and whether it
     * is old enough that any later rename in the dir must change it (file
     * timestamps are coarse: a change within the same tick would not). */
    struct stat loaded_st;
    bool loaded_st_trusted;
    mt_backup **backups;    /* alive nodes, present or not */
    size_t n_backups, cap_backups;
    char latest[FB_BACKUP_ID_LEN + 1];      /* "" when none */
    char latest_full[FB_BACKUP_ID_LEN + 1];
    int64_t newest_time;
    bool has_newest;
    size_t n_present;
    uint64_t kref;
    char *last_warning;     /* guarded by refresh_lock: warn once per change */
};

enum { RANGE_SESSION, RANGE_BACKUP_DIR, RANGE_ENTRIES };

typedef struct mt_range {
    uint64_t base;
    uint64_t count;
    int kind;
    void *owner;
} mt_range;

enum { REF_ROOT, REF_SESSION, REF_LATEST, REF_LATEST_FULL, REF_BACKUP, REF_ENTRY };

typedef struct mt_ref {
    int kind;
    mt_session *s;
    mt_backup *b;
    uint32_t node; /* REF_ENTRY: node index in the backup's contents */
} mt_ref;

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

struct fb_mount_file {
    fb_mount_file *next, *prev;
    mt_archive *archive;
    uint64_t data_offset;
    uint64_t size;
};

struct fb_mount_tree {
    pthread_mutex_t lock;
    pthread_cond_t loaded_cond;
    pthread_mutex_t root_refresh_lock;
    fb_store *store;
    int backups_fd; /* borrowed from store */
    fb_frame_cache *cache;
    fb_mount_options opts;
    uint64_t next_ino;
    mt_range *ranges; /* sorted by base: bases are handed out increasing */
    size_t n_ranges, cap_ranges;
    mt_session **sessions; /* sorted by id */
    size_t n_sessions, cap_sessions;
    size_t n_present_sessions;
    bool root_loaded;
    double root_loaded_at;
    size_t n_backups_alive, n_loaded;
    mt_archive *archives; /* every reader alive */
    size_t n_archives;
    fb_mount_dir *dirs;   /* open handles, freed with the tree if left open */
    fb_mount_file *files;
};

/* ---------------------------------------------------------- inode ranges */

static uint64_t inos_alloc(fb_mount_tree *t, uint64_t count)
{
    uint64_t base = t->next_ino;
    /* 2^64 numbers cannot run out in a daemon's life; saturate rather than wrap. */
    if (__builtin_add_overflow(t->next_ino, count, &t->next_ino))
        t->next_ino = UINT64_MAX;
    return base;
}

static int range_add(fb_mount_tree *t, uint64_t base, uint64_t count, int kind, void *owner)
{
    if (t->n_ranges == t->cap_ranges) {
        size_t cap = t->cap_ranges ? t->cap_ranges * 2 : 64;
        mt_range *r = realloc(t->ranges, cap * sizeof *r);
        if (!r)
            return FB_ENOMEM;
        t->ranges = r;
        t->cap_ranges = cap;
    }
    t->ranges[t->n_ranges++] = (mt_range){base, count, kind, owner};
    return 0;
}

static mt_range *range_find(fb_mount_tree *t, uint64_t ino)
{
    size_t lo = 0, hi = t->n_ranges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->ranges[mid].base <= ino)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    mt_range *r = &t->ranges[lo - 1];
    return ino - r->base < r->count ? r : NULL;
}

static void range_remove(fb_mount_tree *t, uint64_t base)
{
    mt_range *r = range_find(t, base);
    if (!r || r->base != base)
        return;
    size_t i = (size_t)(r - t->ranges);
    memmove(&t->ranges[i], &t->ranges[i + 1], (t->n_ranges - i - 1) * sizeof *r);
    t->n_ranges--;
}

/* ------------------------------------------------------------- sessions */

static mt_session *session_find(fb_mount_tree *t, const char *id, size_t *pos)
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

static mt_session *session_add(fb_mount_tree *t, const char *id, size_t pos)
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
    s->ino = inos_alloc(t, 3);
    if (range_add(t, s->ino, 3, RANGE_SESSION, s) != 0) {
        pthread_mutex_destroy(&s->refresh_lock);
        free(s);
        return NULL;
    }
    memmove(&t->sessions[pos + 1], &t->sessions[pos], (t->n_sessions - pos) * sizeof *t->sessions);
    t->sessions[pos] = s;
    t->n_sessions++;
    return s;
}

static mt_backup *session_backup(const mt_session *s, const char *id)
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
    range_remove(t, b->ino);
    if (b->entries_count)
        range_remove(t, b->entries_base);
    if (b->contents) {
        mt_contents_free(b->contents);
        t->n_loaded--;
    }
    archive_detach(b);
    free(b);
    t->n_backups_alive--;
}

/* Called with t->lock held whenever a backup loses a user or leaves the
 * store: frees what nobody can reach any more. */
static void backup_maybe_release(fb_mount_tree *t, mt_backup *b)
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

static mt_backup *backup_add(fb_mount_tree *t, mt_session *s, const fb_index_record *r)
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
    b->ino = inos_alloc(t, 1);
    if (range_add(t, b->ino, 1, RANGE_BACKUP_DIR, b) != 0) {
        free(b);
        return NULL;
    }
    s->backups[s->n_backups++] = b;
    t->n_backups_alive++;
    return b;
}

/* -------------------------------------------------------------- refresh */

typedef struct warn_capture {
    char text[FB_ERROR_MESSAGE_MAX];
} warn_capture;

static void capture_warning(void *ctx, const char *message)
{
    warn_capture *w = ctx;
    size_t used = strlen(w->text);
    if (used + 3 < sizeof w->text)
        snprintf(w->text + used, sizeof w->text - used, "%s%s", used ? "; " : "", message);
}

static bool stale(const fb_mount_tree *t, bool loaded, double loaded_at, double now)
{
    return !loaded || t->opts.live_seconds <= 0 || now - loaded_at >= t->opts.live_seconds;
}

/* Installs a freshly loaded index into the session (t->lock held). */
static int session_install(fb_mount_tree *t, mt_session *s, const fb_index *idx)
{
    for (size_t i = 0; i < s->n_backups; i++)
        s->backups[i]->present = false;
    int rc = 0;
    for (size_t i = 0; i < idx->n; i++) {
        const fb_index_record *r = &idx->records[i];
        if (!fb_backup_id_is_valid(r->id))
            continue;
        mt_backup *b = session_backup(s, r->id);
        if (!b && !(b = backup_add(t, s, r))) {
            rc = FB_ENOMEM;
            continue;
        }
        b->present = true;
        b->seq = r->seq;
        b->created_at = r->created_at;
        b->type = r->type;
    }
    const fb_index_record *newest = fb_index_newest(idx);
    const fb_index_record *full = fb_index_newest_full(idx);
    s->latest[0] = s->latest_full[0] = '\0';
    if (newest && session_backup(s, newest->id))
        memcpy(s->latest, newest->id, sizeof s->latest);
    if (full && session_backup(s, full->id))
        memcpy(s->latest_full, full->id, sizeof s->latest_full);
    s->has_newest = newest != NULL;
    s->newest_time = newest ? newest->created_at : 0;
    s->n_present = 0;
    for (size_t i = s->n_backups; i-- > 0;) {
        mt_backup *b = s->backups[i];
        if (b->present)
            s->n_present++;
        else
            backup_maybe_release(t, b); /* may remove s->backups[i] */
    }
    return rc;
}

static bool same_dir_state(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* True when the dir's last change is at least a second in the past, so a
 * change after our read gets a different timestamp (racy-git rule). */
static bool dir_stat_is_settled(const struct stat *st)
{
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0)
        return false;
    time_t newest = st->st_mtim.tv_sec > st->st_ctim.tv_sec ? st->st_mtim.tv_sec : st->st_ctim.tv_sec;
    return now.tv_sec - newest >= 2;
}

static int refresh_session(fb_mount_tree *t, mt_session *s, bool force, fb_error *err)
{
    pthread_mutex_lock(&s->refresh_lock);
    pthread_mutex_lock(&t->lock);
    bool need = force || stale(t, s->loaded, s->loaded_at, fb_monotonic_seconds());
    pthread_mutex_unlock(&t->lock);
    if (!need) {
        pthread_mutex_unlock(&s->refresh_lock);
        return 0;
    }
    double started = fb_monotonic_seconds();
    /* Every change to a session's backups or index is a rename inside its
     * store dir, so an unchanged dir stat means an unchanged listing: skip
     * re-reading (and, with a damaged manifest, re-rebuilding) the index. */
    struct stat st;
    bool have_st = fstatat(t->backups_fd, s->id, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                   S_ISDIR(st.st_mode);
    if (have_st && s->loaded && s->loaded_st_trusted && same_dir_state(&st, &s->loaded_st)) {
        pthread_mutex_lock(&t->lock);
        s->loaded_at = started;
        pthread_mutex_unlock(&t->lock);
        pthread_mutex_unlock(&s->refresh_lock);
        return 0;
    }
    fb_index idx;
    fb_index_init(&idx, s->id);
    bool rebuilt = false;
    warn_capture w = {{0}};
    int rc = fb_store_load_index(t->store, s->id, 0, &idx, &rebuilt, capture_warning, &w, err);
    if (rc == 0) {
        pthread_mutex_lock(&t->lock);
        rc = session_install(t, s, &idx);
        if (have_st) {
            s->st = st;
            s->have_st = true;
        }
        s->loaded = true;
        s->loaded_at = started;
        s->loaded_st = st;
        s->loaded_st_trusted = have_st && dir_stat_is_settled(&st);
        pthread_mutex_unlock(&t->lock);
        if (rc)
            fb_error_set(err, rc, "session %s: out of memory", s->id);
    }
    fb_index_fini(&idx);
    /* An index that stays inconsistent would be reported on every refresh. */
    if (w.text[0] && (!s->last_warning || strcmp(s->last_warning, w.text) != 0)) {
        fb_warnf(t->opts.warn, t->opts.warn_ctx, "session %s: %s", s->id, w.text);
        free(s->last_warning);
        s->last_warning = strdup(w.text);
    }
    pthread_mutex_unlock(&s->refresh_lock);
    return rc;
}

/* A session is shown when it has an index or at least one backup dir. */
static bool session_is_listed(fb_mount_tree *t, const char *id)
{
    int sfd = -1;
    if (fb_store_open_session(t->store, id, false, &sfd, NULL) != 0)
        return false;
    bool listed = faccessat(sfd, FB_INDEX_NAME, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
    if (!listed) {
        char **ids = NULL;
        size_t n = 0;
        if (fb_store_list_backup_dirs(sfd, &ids, &n, NULL) == 0) {
            listed = n > 0;
            fb_string_list_free(ids, n);
        }
    }
    close(sfd);
    return listed;
}

static int refresh_root(fb_mount_tree *t, bool force, fb_error *err)
{
    pthread_mutex_lock(&t->root_refresh_lock);
    pthread_mutex_lock(&t->lock);
    bool need = force || stale(t, t->root_loaded, t->root_loaded_at, fb_monotonic_seconds());
    pthread_mutex_unlock(&t->lock);
    if (!need) {
        pthread_mutex_unlock(&t->root_refresh_lock);
        return 0;
    }
    double started = fb_monotonic_seconds();
    char **ids = NULL;
    size_t n = 0;
    fb_error lerr;
    fb_error_clear(&lerr);
    int rc = fb_store_list_sessions(t->store, &ids, &n, &lerr);
    if (rc == FB_ENOTFOUND) {
        /* The store directory went away under the mount: an empty root. */
        rc = 0;
        n = 0;
    }
    if (rc != 0) {
        if (err)
            *err = lerr;
        pthread_mutex_unlock(&t->root_refresh_lock);
        return rc;
    }
    bool *listed = calloc(n ? n : 1, sizeof *listed);
    if (!listed) {
        fb_string_list_free(ids, n);
        pthread_mutex_unlock(&t->root_refresh_lock);
        return fb_error_set(err, FB_ENOMEM, "out of memory listing sessions");
    }
    for (size_t i = 0; i < n; i++)
        listed[i] = fb_session_id_check(ids[i], NULL) == 0 && session_is_listed(t, ids[i]);
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->n_sessions; i++)
        t->sessions[i]->present = false;
    for (size_t i = 0; i < n; i++) {
        if (!listed[i])
            continue;
        size_t pos;
        mt_session *s = session_find(t, ids[i], &pos);
        if (!s && !(s = session_add(t, ids[i], pos))) {
            rc = fb_error_set(err, FB_ENOMEM, "out of memory listing sessions");
            continue;
        }
        s->present = true;
    }
    t->n_present_sessions = 0;
    for (size_t i = 0; i < t->n_sessions; i++)
        t->n_present_sessions += t->sessions[i]->present;
    t->root_loaded = true;
    t->root_loaded_at = started;
    pthread_mutex_unlock(&t->lock);
    free(listed);
    fb_string_list_free(ids, n);
    pthread_mutex_unlock(&t->root_refresh_lock);
    return rc;
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

/* Makes b->contents available (t->lock held, b pinned by the caller). The
 * lock is released while the manifest is read. */
static int backup_ensure_loaded(fb_mount_tree *t, mt_backup *b, fb_error *err)
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
    if (b->entries_count != c->n_nodes) {
        /* First load (or, impossibly for an immutable backup, a manifest that
         * changed size): a fresh range so no old number means something new. */
        if (b->entries_count)
            range_remove(t, b->entries_base);
        b->entries_base = 0;
        b->entries_count = 0;
        if (c->n_nodes) {
            uint64_t base = inos_alloc(t, c->n_nodes);
            if (range_add(t, base, c->n_nodes, RANGE_ENTRIES, b) != 0) {
                mt_contents_free(c);
                return fb_error_set(err, FB_ENOMEM, "%s/%s: out of memory", sid, bid);
            }
            b->entries_base = base;
            b->entries_count = c->n_nodes;
        }
    }
    b->contents = c;
    t->n_loaded++;
    return 0;
}

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
    pthread_cond_init(&t->loaded_cond, NULL);
    rc = fb_store_open(root, false, &t->store, err);
    free(root);
    if (rc == 0) {
        t->backups_fd = fb_store_backups_fd(t->store);
        size_t bytes = opts->cache_bytes > SIZE_MAX ? SIZE_MAX : (size_t)opts->cache_bytes;
        rc = fb_frame_cache_new(bytes, &t->cache, err);
    }
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
    while (t->dirs) {
        fb_mount_dir *d = t->dirs;
        t->dirs = d->next;
        free(d->snap);
        free(d);
    }
    while (t->files) {
        fb_mount_file *f = t->files;
        t->files = f->next;
        free(f);
    }
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
    while (t->archives) {
        mt_archive *a = t->archives;
        t->archives = a->next;
        fb_archive_reader_free(a->reader);
        free(a);
    }
    fb_frame_cache_free(t->cache);
    fb_store_free(t->store);
    free(t->ranges);
    pthread_cond_destroy(&t->loaded_cond);
    pthread_mutex_destroy(&t->root_refresh_lock);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

void fb_mount_tree_get_stats(fb_mount_tree *t, fb_mount_stats *out)
{
    pthread_mutex_lock(&t->lock);
    out->sessions = t->n_sessions;
    out->backups = t->n_backups_alive;
    out->loaded_manifests = t->n_loaded;
    out->open_archives = t->n_archives;
    out->next_ino = t->next_ino;
    pthread_mutex_unlock(&t->lock);
}

/* ------------------------------------------------------------ resolving */

/* t->lock held. */
static int resolve(fb_mount_tree *t, uint64_t ino, mt_ref *out)
{
    memset(out, 0, sizeof *out);
    if (ino == FB_MOUNT_ROOT_INO) {
        out->kind = REF_ROOT;
        return 0;
    }
    mt_range *r = range_find(t, ino);
    if (!r)
        return FB_ENOTFOUND;
    switch (r->kind) {
    case RANGE_SESSION:
        out->s = r->owner;
        out->kind = ino == r->base ? REF_SESSION : ino == r->base + 1 ? REF_LATEST : REF_LATEST_FULL;
        return 0;
    case RANGE_BACKUP_DIR:
        out->b = r->owner;
        out->s = out->b->session;
        out->kind = REF_BACKUP;
        return 0;
    default:
        out->b = r->owner;
        out->s = out->b->session;
        out->kind = REF_ENTRY;
        out->node = (uint32_t)(ino - r->base);
        return 0;
    }
}

/* After the backup was (re)loaded with the lock dropped: is the node still
 * what ino named? */
static bool entry_still_valid(const mt_backup *b, uint64_t ino)
{
    return b->contents && b->entries_count && ino >= b->entries_base &&
           ino - b->entries_base < b->entries_count;
}

/* Loads b (pinned by the caller) for its entry inode ino: FB_ENOTFOUND when
 * the reload no longer has that entry. */
static int entry_load(fb_mount_tree *t, mt_backup *b, uint64_t ino, fb_error *err)
{
    int rc = backup_ensure_loaded(t, b, err);
    if (rc == 0 && !entry_still_valid(b, ino))
        rc = fb_error_set(err, FB_ENOTFOUND, "inode %llu is gone", (unsigned long long)ino);
    return rc;
}

static void stat_times(struct stat *st, int64_t sec, long nsec)
{
    st->st_mtim.tv_sec = (time_t)sec;
    st->st_mtim.tv_nsec = nsec;
    st->st_atim = st->st_mtim;
    st->st_ctim = st->st_mtim;
}

static void attr_root(fb_mount_tree *t, fb_mount_attr *out)
{
    memset(out, 0, sizeof *out);
    struct stat st;
    if (fstat(t->backups_fd, &st) != 0) {
        memset(&st, 0, sizeof st);
        st.st_mode = S_IFDIR | 0700;
        st.st_uid = getuid();
        st.st_gid = getgid();
    }
    out->st.st_ino = FB_MOUNT_ROOT_INO;
    out->st.st_mode = S_IFDIR | (st.st_mode & 07777);
    out->st.st_nlink = 2 + t->n_present_sessions;
    out->st.st_uid = st.st_uid;
    out->st.st_gid = st.st_gid;
    out->st.st_blksize = MT_BLKSIZE;
    out->st.st_mtim = st.st_mtim;
    out->st.st_atim = st.st_atim;
    out->st.st_ctim = st.st_ctim;
}

static void attr_session_base(const mt_session *s, struct stat *st)
{
    st->st_uid = s->have_st ? s->st.st_uid : getuid();
    st->st_gid = s->have_st ? s->st.st_gid : getgid();
    st->st_blksize = MT_BLKSIZE;
    if (s->has_newest)
        stat_times(st, s->newest_time, 0);
    else if (s->have_st)
        stat_times(st, s->st.st_mtim.tv_sec, s->st.st_mtim.tv_nsec);
}

static void attr_session(const mt_session *s, fb_mount_attr *out)
{
    memset(out, 0, sizeof *out);
    attr_session_base(s, &out->st);
    out->st.st_ino = s->ino;
    out->st.st_mode = S_IFDIR | (s->have_st ? (s->st.st_mode & 07777) : 0700);
    out->st.st_nlink = 2 + s->n_present;
}

static int attr_latest(const mt_session *s, bool full, fb_mount_attr *out)
{
    const char *target = full ? s->latest_full : s->latest;
    if (!target[0])
        return FB_ENOTFOUND;
    memset(out, 0, sizeof *out);
    attr_session_base(s, &out->st);
    out->st.st_ino = s->ino + (full ? 2 : 1);
    out->st.st_mode = S_IFLNK | 0777;
    out->st.st_nlink = 1;
    out->st.st_size = (off_t)strlen(target);
    return 0;
}

static void attr_backup(const mt_backup *b, fb_mount_attr *out)
{
    const mt_session *s = b->session;
    memset(out, 0, sizeof *out);
    attr_session_base(s, &out->st);
    stat_times(&out->st, b->created_at, 0);
    out->st.st_ino = b->ino;
    out->st.st_mode = S_IFDIR | (s->have_st ? (s->st.st_mode & 07777) : 0700);
    /* 1 means "not counted" to find/fts; counting needs the manifest, which
     * a listing of the session must not load. */
    out->st.st_nlink = 1;
}

static uint32_t node_type_bits(const mt_contents *c, uint32_t n)
{
    uint32_t e = c->nodes[n].entry;
    if (e == MT_NONE)
        return S_IFDIR;
    switch (c->m.entries[e].meta.type) {
    case FB_ENTRY_DIR:
        return S_IFDIR;
    case FB_ENTRY_SYMLINK:
        return S_IFLNK;
    default:
        return S_IFREG;
    }
}

/* Attributes of the name at node (hardlinks show their file). */
static void attr_entry(const mt_backup *b, uint32_t node, fb_mount_attr *out)
{
    const mt_contents *c = b->contents;
    uint32_t tg = c->nodes[node].target;
    const mt_node *nd = &c->nodes[tg];
    memset(out, 0, sizeof *out);
    out->immutable = true;
    struct stat *st = &out->st;
    st->st_ino = b->entries_base + tg;
    st->st_nlink = nd->nlink;
    st->st_blksize = MT_BLKSIZE;
    if (nd->entry == MT_NONE) {
        st->st_mode = S_IFDIR | 0755;
        st->st_uid = c->uid;
        st->st_gid = c->gid;
        stat_times(st, c->created_at, 0);
        return;
    }
    const fb_manifest_entry *e = &c->m.entries[nd->entry];
    st->st_mode = node_type_bits(c, tg) | (e->meta.mode & 07777);
    st->st_uid = e->meta.uid;
    st->st_gid = e->meta.gid;
    stat_times(st, e->meta.mtime, (long)(e->meta.mtime_nsec % 1000000000u));
    if (e->meta.type == FB_ENTRY_FILE) {
        st->st_size = e->meta.size > (uint64_t)INT64_MAX ? INT64_MAX : (off_t)e->meta.size;
        st->st_blocks = (blkcnt_t)((e->meta.size + 511) / 512);
    } else if (e->meta.type == FB_ENTRY_SYMLINK) {
        st->st_size = e->target ? (off_t)strlen(e->target) : 0;
    }
}

/* ---------------------------------------------------------- operations */

int fb_mount_tree_lookup(fb_mount_tree *t, uint64_t parent, const char *name, fb_mount_attr *out,
                         fb_error *err)
{
    if (strlen(name) > FB_MOUNT_NAME_MAX)
        return fb_error_set(err, FB_EINVAL, "name too long");
    pthread_mutex_lock(&t->lock);
    mt_ref ref;
    int rc = resolve(t, parent, &ref);
    if (rc == 0 && (ref.kind == REF_BACKUP || ref.kind == REF_ENTRY)) {
        /* Pinned before the lock is dropped, so the backup cannot go away. */
        ref.b->pins++;
        goto in_backup;
    }
    pthread_mutex_unlock(&t->lock);
    if (rc)
        return fb_error_set(err, rc, "inode %llu is not known", (unsigned long long)parent);

    if (ref.kind == REF_ROOT) {
        fb_error ignored;
        refresh_root(t, false, &ignored);
        pthread_mutex_lock(&t->lock);
        mt_session *s = session_find(t, name, NULL);
        bool found = s && s->present;
        pthread_mutex_unlock(&t->lock);
        if (!found) {
            char eb[600];
            return fb_error_set(err, FB_ENOTFOUND, "no session '%s'",
                                fb_path_escape_n(name, strlen(name), eb, sizeof eb));
        }
        refresh_session(t, s, false, &ignored);
        pthread_mutex_lock(&t->lock);
        s->kref++;
        attr_session(s, out);
        pthread_mutex_unlock(&t->lock);
        return 0;
    }
    if (ref.kind == REF_SESSION) {
        mt_session *s = ref.s;
        fb_error ignored;
        refresh_session(t, s, false, &ignored);
        pthread_mutex_lock(&t->lock);
        if (strcmp(name, "latest") == 0 || strcmp(name, "latest-full") == 0) {
            rc = attr_latest(s, name[6] == '-', out);
            if (rc == 0)
                s->kref++;
        } else {
            mt_backup *b = session_backup(s, name);
            if (b && b->present) {
                b->kref++;
                attr_backup(b, out);
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
    return fb_error_set(err, FB_EMISUSE, "inode %llu is not a directory",
                        (unsigned long long)parent);

in_backup:;
    mt_backup *b = ref.b;
    rc = backup_ensure_loaded(t, b, err);
    if (rc == 0 && ref.kind == REF_ENTRY && !entry_still_valid(b, parent))
        rc = fb_error_set(err, FB_ENOTFOUND, "inode %llu is gone", (unsigned long long)parent);
    if (rc == 0) {
        const mt_contents *c = b->contents;
        uint32_t start, count;
        if (ref.kind == REF_BACKUP) {
            start = c->top_start;
            count = c->top_count;
        } else {
            uint32_t dn = c->nodes[ref.node].target;
            if (!mt_node_is_dir(c, dn)) {
                rc = fb_error_set(err, FB_EMISUSE, "inode %llu is not a directory",
                                  (unsigned long long)parent);
                start = count = 0;
            } else {
                start = c->nodes[dn].child_start;
                count = c->nodes[dn].child_count;
            }
        }
        if (rc == 0) {
            uint32_t n = count ? mt_child_find(c, start, count, name) : MT_NONE;
            if (n == MT_NONE) {
                char eb[600];
                rc = fb_error_set(err, FB_ENOTFOUND, "%s/%s: no entry '%s'", b->session->id,
                                  b->id, fb_path_escape_n(name, strlen(name), eb, sizeof eb));
            } else {
                attr_entry(b, n, out);
                b->kref++;
            }
        }
    }
    b->pins--;
    backup_maybe_release(t, b);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

void fb_mount_tree_forget(fb_mount_tree *t, uint64_t ino, uint64_t nlookup)
{
    pthread_mutex_lock(&t->lock);
    mt_ref ref;
    if (resolve(t, ino, &ref) == 0) {
        if (ref.kind == REF_SESSION || ref.kind == REF_LATEST || ref.kind == REF_LATEST_FULL) {
            ref.s->kref -= nlookup < ref.s->kref ? nlookup : ref.s->kref;
        } else if (ref.b) {
            ref.b->kref -= nlookup < ref.b->kref ? nlookup : ref.b->kref;
            backup_maybe_release(t, ref.b);
        }
    }
    pthread_mutex_unlock(&t->lock);
}

int fb_mount_tree_getattr(fb_mount_tree *t, uint64_t ino, fb_mount_attr *out, fb_error *err)
{
    pthread_mutex_lock(&t->lock);
    mt_ref ref;
    int rc = resolve(t, ino, &ref);
    if (rc) {
        pthread_mutex_unlock(&t->lock);
        return fb_error_set(err, rc, "inode %llu is not known", (unsigned long long)ino);
    }
    switch (ref.kind) {
    case REF_ROOT: {
        fb_error ignored;
        pthread_mutex_unlock(&t->lock);
        refresh_root(t, false, &ignored); /* st_nlink counts the sessions */
        pthread_mutex_lock(&t->lock);
        attr_root(t, out);
        break;
    }
    case REF_SESSION:
    case REF_LATEST:
    case REF_LATEST_FULL: {
        fb_error ignored;
        pthread_mutex_unlock(&t->lock);
        refresh_session(t, ref.s, false, &ignored);
        pthread_mutex_lock(&t->lock);
        if (ref.kind == REF_SESSION)
            attr_session(ref.s, out);
        else if ((rc = attr_latest(ref.s, ref.kind == REF_LATEST_FULL, out)) != 0)
            fb_error_set(err, rc, "session %s has no backup", ref.s->id);
        break;
    }
    case REF_BACKUP:
        attr_backup(ref.b, out);
        break;
    default: {
        mt_backup *b = ref.b;
        b->pins++;
        rc = entry_load(t, b, ino, err);
        if (rc == 0)
            attr_entry(b, ref.node, out);
        b->pins--;
        backup_maybe_release(t, b);
        break;
    }
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

int fb_mount_tree_readlink(fb_mount_tree *t, uint64_t ino, char **out, fb_error *err)
{
    *out = NULL;
    pthread_mutex_lock(&t->lock);
    mt_ref ref;
    int rc = resolve(t, ino, &ref);
    if (rc) {
        pthread_mutex_unlock(&t->lock);
        return fb_error_set(err, rc, "inode %llu is not known", (unsigned long long)ino);
    }
    const char *target = NULL;
    mt_backup *b = NULL;
    if (ref.kind == REF_LATEST || ref.kind == REF_LATEST_FULL) {
        fb_error ignored;
        pthread_mutex_unlock(&t->lock);
        refresh_session(t, ref.s, false, &ignored);
        pthread_mutex_lock(&t->lock);
        target = ref.kind == REF_LATEST ? ref.s->latest : ref.s->latest_full;
        if (!target[0])
            rc = fb_error_set(err, FB_ENOTFOUND, "session %s has no backup", ref.s->id);
    } else if (ref.kind == REF_ENTRY) {
        b = ref.b;
        b->pins++;
        rc = entry_load(t, b, ino, err);
        if (rc == 0) {
            const mt_contents *c = b->contents;
            uint32_t e = c->nodes[c->nodes[ref.node].target].entry;
            if (e != MT_NONE && c->m.entries[e].meta.type == FB_ENTRY_SYMLINK &&
                c->m.entries[e].target)
                target = c->m.entries[e].target;
            else
                rc = fb_error_set(err, FB_EMISUSE, "inode %llu is not a symlink",
                                  (unsigned long long)ino);
        }
    } else {
        rc = fb_error_set(err, FB_EMISUSE, "inode %llu is not a symlink", (unsigned long long)ino);
    }
    if (rc == 0 && !(*out = strdup(target)))
        rc = fb_error_set(err, FB_ENOMEM, "out of memory");
    if (b) {
        b->pins--;
        backup_maybe_release(t, b);
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

int fb_mount_tree_statfs(fb_mount_tree *t, struct statvfs *out, fb_error *err)
{
    if (fstatvfs(t->backups_fd, out) != 0)
        return fb_error_set_errno(err, errno, "statfs of the store");
    return 0;
}

/* ------------------------------------------------------------ listings */

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
    d->snap = malloc((s->n_backups + 2) * sizeof *d->snap);
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
        strcpy(e->name, "latest");
        e->ino = s->ino + 1;
        e->mode = S_IFLNK;
    }
    if (s->latest_full[0]) {
        mt_snap_entry *e = &d->snap[d->n_snap++];
        strcpy(e->name, "latest-full");
        e->ino = s->ino + 2;
        e->mode = S_IFLNK;
    }
    return 0;
}

int fb_mount_tree_opendir(fb_mount_tree *t, uint64_t ino, fb_mount_dir **out, fb_error *err)
{
    *out = NULL;
    pthread_mutex_lock(&t->lock);
    mt_ref ref;
    int rc = resolve(t, ino, &ref);
    if (rc == 0 && ref.b)
        ref.b->pins++; /* held until the handle closes, or dropped on failure */
    pthread_mutex_unlock(&t->lock);
    if (rc)
        return fb_error_set(err, rc, "inode %llu is not known", (unsigned long long)ino);
    if (ref.kind == REF_LATEST || ref.kind == REF_LATEST_FULL)
        return fb_error_set(err, FB_EMISUSE, "inode %llu is not a directory",
                            (unsigned long long)ino);
    /* A listing is where new and removed backups must show: always re-read. */
    if (ref.kind == REF_ROOT && (rc = refresh_root(t, true, err)) != 0)
        return rc;
    if (ref.kind == REF_SESSION && (rc = refresh_session(t, ref.s, true, err)) != 0)
        return rc;
    fb_mount_dir *d = calloc(1, sizeof *d);
    if (!d) {
        if (ref.b) {
            pthread_mutex_lock(&t->lock);
            ref.b->pins--;
            backup_maybe_release(t, ref.b);
            pthread_mutex_unlock(&t->lock);
        }
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    }
    d->self_ino = ino;
    d->parent_ino = FB_MOUNT_ROOT_INO;
    d->node = MT_NONE;
    pthread_mutex_lock(&t->lock);
    if (ref.kind == REF_ROOT) {
        rc = snapshot_root(t, d);
    } else if (ref.kind == REF_SESSION) {
        rc = snapshot_session(ref.s, d);
    } else {
        mt_backup *b = ref.b;
        rc = ref.kind == REF_ENTRY ? entry_load(t, b, ino, err) : backup_ensure_loaded(t, b, err);
        if (rc == 0) {
            const mt_contents *c = b->contents;
            if (ref.kind == REF_BACKUP) {
                d->node = MT_TOP;
                d->parent_ino = b->session->ino;
            } else {
                uint32_t dn = c->nodes[ref.node].target;
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
        if (rc == 0) {
            d->b = b; /* keeps the pin until closed */
        } else {
            b->pins--;
            backup_maybe_release(t, b);
        }
    }
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
    return d->b != NULL;
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
    *mode = node_type_bits(c, tg);
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
    if (d->b) {
        d->b->pins--;
        backup_maybe_release(t, d->b);
    }
    pthread_mutex_unlock(&t->lock);
    free(d->snap);
    free(d);
}

/* ---------------------------------------------------------------- files */

static int archive_open(fb_mount_tree *t, const char *sid, const char *bid,
                        uint64_t expected_size, const fb_archive_proof *proof,
                        fb_archive_reader **out, fb_error *err)
{
    *out = NULL;
    int sfd = -1, afd = -1;
    int rc = fb_store_open_session(t->store, sid, false, &sfd, err);
    if (rc == 0) {
        rc = fb_store_open_archive(sfd, bid, &afd, err);
        close(sfd);
    }
    if (rc)
        return rc;
    char name[FB_SESSION_ID_MAX + FB_BACKUP_ID_LEN + 32];
    snprintf(name, sizeof name, "%s/%s/" FB_ARCHIVE_NAME, sid, bid);
    fb_archive_reader *r = NULL;
    rc = fb_archive_reader_open(afd, t->cache, name, &r, err);
    if (rc) {
        close(afd);
        return rc;
    }
    if (fb_archive_reader_file_size(r) != expected_size) {
        rc = fb_error_set(err, FB_ECORRUPT, "%s: %llu bytes, the manifest says %llu", name,
                          (unsigned long long)fb_archive_reader_file_size(r),
                          (unsigned long long)expected_size);
        fb_archive_reader_free(r);
        return rc;
    }
    if (proof)
        fb_archive_reader_adopt_proof(r, proof);
    *out = r;
    return 0;
}

/* Drops one file's reference (t->lock held). Returns the reader to free
 * once the lock is released, or NULL while other files still use it. */
static fb_archive_reader *archive_unref(fb_mount_tree *t, mt_archive *a)
{
    if (--a->refs > 0)
        return NULL;
    if (a->backup) {
        fb_archive_reader_get_proof(a->reader, &a->backup->proof);
        a->backup->has_proof = true;
        a->backup->archive = NULL;
    }
    if (a->prev)
        a->prev->next = a->next;
    else
        t->archives = a->next;
    if (a->next)
        a->next->prev = a->prev;
    t->n_archives--;
    fb_archive_reader *r = a->reader;
    free(a);
    return r;
}

int fb_mount_tree_open(fb_mount_tree *t, uint64_t ino, fb_mount_file **out, fb_error *err)
{
    *out = NULL;
    fb_mount_file *f = calloc(1, sizeof *f);
    if (!f)
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    pthread_mutex_lock(&t->lock);
    mt_ref ref;
    int rc = resolve(t, ino, &ref);
    if (rc) {
        pthread_mutex_unlock(&t->lock);
        free(f);
        return fb_error_set(err, rc, "inode %llu is not known", (unsigned long long)ino);
    }
    if (ref.kind != REF_ENTRY) {
        pthread_mutex_unlock(&t->lock);
        free(f);
        return fb_error_set(err, FB_EMISUSE, "inode %llu is not a file", (unsigned long long)ino);
    }
    mt_backup *b = ref.b;
    b->pins++;
    rc = entry_load(t, b, ino, err);
    uint64_t archive_size = 0;
    char *path = NULL;
    uint8_t sha[FB_SHA256_LEN];
    char label[FB_SESSION_ID_MAX + FB_BACKUP_ID_LEN + 32];
    snprintf(label, sizeof label, "%s/%s/" FB_ARCHIVE_NAME, b->session->id, b->id);
    if (rc == 0) {
        const mt_contents *c = b->contents;
        uint32_t e = c->nodes[c->nodes[ref.node].target].entry;
        if (e == MT_NONE || c->m.entries[e].meta.type != FB_ENTRY_FILE) {
            rc = fb_error_set(err, FB_EMISUSE, "inode %llu is not a file",
                              (unsigned long long)ino);
        } else {
            f->data_offset = c->m.entries[e].offset;
            f->size = c->m.entries[e].meta.size;
            archive_size = c->m.archive.size;
            memcpy(sha, c->m.entries[e].sha256, sizeof sha);
            /* Copied: the contents may go once the backup is unpinned. */
            if (!(path = strdup(c->m.entries[e].path)))
                rc = fb_error_set(err, FB_ENOMEM, "out of memory");
        }
    }
    uint64_t end;
    if (rc == 0 && __builtin_add_overflow(f->data_offset, f->size, &end))
        rc = fb_error_set(err, FB_ECORRUPT, "%s/%s: entry offset overflows", b->session->id,
                          b->id);
    mt_archive *a = NULL;
    fb_archive_reader *spare = NULL; /* lost a race: freed after unlocking */
    mt_archive *spare_a = NULL;
    if (rc == 0 && b->archive) {
        a = b->archive;
        a->refs++;
    } else if (rc == 0) {
        char sid[FB_SESSION_ID_MAX + 1], bid[FB_BACKUP_ID_LEN + 1];
        strcpy(sid, b->session->id);
        strcpy(bid, b->id);
        fb_archive_proof proof = b->proof;
        bool has_proof = b->has_proof;
        pthread_mutex_unlock(&t->lock);
        fb_archive_reader *r = NULL;
        mt_archive *fresh = NULL;
        rc = archive_open(t, sid, bid, archive_size, has_proof ? &proof : NULL, &r, err);
        if (rc == 0 && !(fresh = calloc(1, sizeof *fresh))) {
            fb_archive_reader_free(r);
            rc = fb_error_set(err, FB_ENOMEM, "out of memory");
        }
        pthread_mutex_lock(&t->lock);
        if (rc == 0 && b->archive) {
            /* Another thread opened it meanwhile: share theirs. */
            a = b->archive;
            a->refs++;
            spare = r;
            spare_a = fresh;
        } else if (rc == 0) {
            fresh->reader = r;
            fresh->refs = 1;
            fresh->backup = b;
            fresh->next = t->archives;
            if (t->archives)
                t->archives->prev = fresh;
            t->archives = fresh;
            t->n_archives++;
            b->archive = fresh;
            a = fresh;
        }
    }
    if (rc == 0 && end > fb_archive_reader_uncompressed_size(a->reader))
        rc = fb_error_set(err, FB_ECORRUPT, "%s/%s: the archive ends before the file's data",
                          b->session->id, b->id);
    if (rc == 0) {
        f->archive = a;
        f->prev = NULL;
        f->next = t->files;
        if (t->files)
            t->files->prev = f;
        t->files = f;
    } else if (a) {
        spare = archive_unref(t, a);
    }
    b->pins--;
    backup_maybe_release(t, b);
    pthread_mutex_unlock(&t->lock);
    fb_archive_reader_free(spare);
    free(spare_a);
    if (rc) {
        free(path);
        free(f);
        return rc;
    }
    /* The manifest's offset is only trusted once the tar header there is
     * this file's (tar_header_i.h): once per open, never per read. */
    rc = fb_tar_member_prove(f->archive->reader, f->data_offset, path, f->size, label, err);
    /* A small file is read and hashed whole before its first byte is
     * served: then what is served is what the manifest's SHA-256 says. */
    if (rc == 0 && f->size <= MT_HASH_ON_OPEN_MAX)
        rc = fb_tar_member_prove_content(f->archive->reader, f->data_offset, f->size, sha, path,
                                         label, err);
    free(path);
    if (rc) {
        fb_mount_file_close(t, f);
        return rc;
    }
    *out = f;
    return 0;
}

uint64_t fb_mount_file_size(const fb_mount_file *f)
{
    return f->size;
}

int fb_mount_file_read(fb_mount_file *f, void *buf, size_t len, uint64_t off, size_t *out_len,
                       fb_error *err)
{
    *out_len = 0;
    if (off >= f->size || len == 0)
        return 0;
    uint64_t left = f->size - off;
    size_t want = left < len ? (size_t)left : len;
    size_t got = 0;
    /* Anchored at the file's tar header, whose place open proved. */
    int rc = fb_archive_reader_pread_anchored(f->archive->reader, buf, want,
                                              f->data_offset + off, f->data_offset - 512, &got,
                                              err);
    if (rc)
        return rc;
    if (got != want)
        return fb_error_set(err, FB_ECORRUPT, "archive ends inside a file (%zu of %zu bytes)",
                            got, want);
    *out_len = got;
    return 0;
}

void fb_mount_file_close(fb_mount_tree *t, fb_mount_file *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&t->lock);
    if (f->prev)
        f->prev->next = f->next;
    else
        t->files = f->next;
    if (f->next)
        f->next->prev = f->prev;
    fb_archive_reader *drop = archive_unref(t, f->archive);
    pthread_mutex_unlock(&t->lock);
    /* Freeing a reader closes its fd and drops its cached frames: outside the lock. */
    fb_archive_reader_free(drop);
    free(f);
}
