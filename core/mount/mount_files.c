/* File handles and the archive readers behind them. The files of one backup
 * share one reader (one fd, one proved frame map) for as long as any is
 * open; a reader outlives its backup node, so a backup removed from the store
 * keeps serving the files already open. A file's place in the archive is
 * proved once, at open (or at the first read of a kept file, for kernels
 * that skip opens), so that reads only decode and copy. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <unistd.h>

#include "mount_tree_i.h"
#include "tar_header_i.h"
#include "thread_i.h"

/* Files up to this size are hashed when opened (fb_tar_member_prove_content):
 * the frames they lie in are decoded for the first read anyway. */
#define MT_HASH_ON_OPEN_MAX (1024u * 1024)
/* How long the last reader whose files were all closed stays open. */
#define MT_IDLE_READER_SECONDS 0.5

struct fb_mount_file {
    fb_mount_file *next, *prev;
    mt_archive *archive;
    uint64_t data_offset;
    uint64_t size;
    /* FB_ARCHIVE_READ_CHECKED for a file hashed on open: its reads need no
     * proof of the frame map before it (fb_archive_reader.h). */
    unsigned read_flags;
    /* A kept file (fb_mount_tree_file_get), all guarded by t->lock: its
     * inode, the reads using it, when the last one ended, its hash chain
     * and, while unused, its place in the idle list. */
    bool kept;
    uint64_t ino;
    unsigned users;
    double last_used;
    fb_mount_file *hash_next;
    fb_mount_file *idle_next, *idle_prev;
};

/* What open needs of a file's entry after its backup is unpinned. */
typedef struct file_source {
    uint64_t archive_size;
    char *path;
    uint8_t sha[FB_SHA256_LEN];
    char label[FB_SESSION_ID_MAX + FB_BACKUP_ID_LEN + 32];
} file_source;

/* The tree's prefetcher, made with the first archive reader; its thread
 * starts with the first frame it is asked for (never before the daemon
 * forks into the background: a thread does not survive fork). NULL when
 * it cannot be made: reads then just do without. */
static fb_frame_prefetcher *tree_prefetcher(fb_mount_tree *t)
{
    pthread_mutex_lock(&t->prefetch_lock);
    if (!t->prefetch && !t->prefetch_failed)
        t->prefetch_failed = fb_frame_prefetcher_new(&t->prefetch, NULL) != 0;
    fb_frame_prefetcher *p = t->prefetch;
    pthread_mutex_unlock(&t->prefetch_lock);
    return p;
}

/* ------------------------------------------------------ archive readers */

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
    fb_archive_reader_set_prefetcher(r, tree_prefetcher(t));
    *out = r;
    return 0;
}

/* One more file holds a (t->lock held): an idle reader is no longer idle. */
static mt_archive *archive_take(fb_mount_tree *t, mt_archive *a)
{
    if (t->idle == a)
        t->idle = NULL;
    a->refs++;
    return a;
}

/* The backup's shared reader with one more reference, in *out (t->lock held,
 * b pinned). Opening a reader drops the lock meanwhile; when another thread
 * opened one first, theirs is shared and ours goes to *spare (its holder to
 * *spare_a), for the caller to free once the lock is released. */
static int archive_share(fb_mount_tree *t, mt_backup *b, uint64_t archive_size, mt_archive **out,
                         fb_archive_reader **spare, mt_archive **spare_a, fb_error *err)
{
    /* Shared while files hold it, or taken back from idle (unless the id
     * now names another archive). */
    if (b->archive && (b->archive->refs > 0 || !b->retired)) {
        *out = archive_take(t, b->archive);
        return 0;
    }
    /* Its id now names another archive; this node's proof and contents
     * describe the old one. (Its idle reader, if any, goes at expiry.) */
    if (b->retired)
        return fb_error_set(err, FB_ENOTFOUND, "%s/%s: replaced by another backup of that id",
                            b->session->id, b->id);
    char sid[FB_SESSION_ID_MAX + 1], bid[FB_BACKUP_ID_LEN + 1];
    strcpy(sid, b->session->id);
    strcpy(bid, b->id);
    fb_archive_proof proof = b->proof;
    bool has_proof = b->has_proof;
    pthread_mutex_unlock(&t->lock);
    fb_archive_reader *r = NULL;
    mt_archive *fresh = NULL;
    int rc = archive_open(t, sid, bid, archive_size, has_proof ? &proof : NULL, &r, err);
    if (rc == 0 && !(fresh = calloc(1, sizeof *fresh))) {
        fb_archive_reader_free(r);
        rc = fb_error_set(err, FB_ENOMEM, "out of memory");
    }
    pthread_mutex_lock(&t->lock);
    if (rc)
        return rc;
    if (b->archive) {
        /* Another thread opened it meanwhile: share theirs. */
        *out = archive_take(t, b->archive);
        *spare = r;
        *spare_a = fresh;
        return 0;
    }
    fresh->reader = r;
    fresh->refs = 1;
    fresh->backup = b;
    fresh->next = t->archives;
    if (t->archives)
        t->archives->prev = fresh;
    t->archives = fresh;
    t->n_archives++;
    b->archive = fresh;
    *out = fresh;
    return 0;
}

/* Drops one file's reference (t->lock held). Returns the reader to free
 * once the lock is released, or NULL while other files still use it. */
/* Unlinks a (no file holds it) from the tree, carrying its proof and kept
 * frames over to its backup, and returns its reader for the caller to
 * free once the lock is released (t->lock held). */
static fb_archive_reader *archive_release(fb_mount_tree *t, mt_archive *a)
{
    if (t->idle == a)
        t->idle = NULL;
    if (a->backup) {
        /* The next file opened in this backup finds the frames still
         * decoded: without this, each small file's open decoded its frame
         * again. The LRU bound of the cache still applies; the node forgets
         * them when it goes. */
        mt_backup *b = a->backup;
        fb_archive_proof old = b->proof;
        bool had = b->has_proof;
        fb_archive_reader_keep_frames(a->reader);
        fb_archive_reader_get_proof(a->reader, &b->proof);
        b->has_proof = true;
        b->archive = NULL;
        if (had && old.frames_kept && old.frame_key != b->proof.frame_key)
            fb_frame_cache_forget(t->cache, old.frame_key);
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

static double monotonic_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void kept_idle_unlink(fb_mount_tree *t, fb_mount_file *f);
static void kept_unhash(fb_mount_tree *t, fb_mount_file *f);

/* When the janitor next has work (t->lock held): the idle reader's expiry
 * or the oldest unused kept file's, whichever comes first; 0 for none. */
static double janitor_deadline(const fb_mount_tree *t)
{
    double d = t->idle ? t->idle_until : 0;
    if (t->kept_idle_tail) {
        double k = t->kept_idle_tail->last_used + FB_MOUNT_KEPT_SECONDS;
        if (d == 0 || k < d)
            d = k;
    }
    return d;
}

/* Takes the unused kept files that expired by now out of the tree (t->lock
 * held) and returns them as a list through idle_next, to be closed once
 * the lock is released. */
static fb_mount_file *kept_take_expired(fb_mount_tree *t, double now)
{
    fb_mount_file *out = NULL;
    while (t->kept_idle_tail && t->kept_idle_tail->last_used + FB_MOUNT_KEPT_SECONDS <= now) {
        fb_mount_file *f = t->kept_idle_tail;
        kept_idle_unlink(t, f);
        kept_unhash(t, f);
        f->idle_next = out;
        out = f;
    }
    return out;
}

static void close_list(fb_mount_tree *t, fb_mount_file *list)
{
    while (list) {
        fb_mount_file *next = list->idle_next;
        fb_mount_file_close(t, list);
        list = next;
    }
}

/* Closes the idle reader and the unused kept files as they expire; ends
 * with the tree. */
static void *janitor_main(void *arg)
{
    fb_mount_tree *t = arg;
    pthread_mutex_lock(&t->lock);
    while (!t->janitor_stop) {
        double deadline = janitor_deadline(t);
        if (deadline == 0) {
            t->janitor_wakes_at = 0;
            pthread_cond_wait(&t->janitor_cond, &t->lock);
            t->janitor_wakeups++;
            continue;
        }
        double now = monotonic_now();
        double left = deadline - now;
        if (left > 0) {
            t->janitor_wakes_at = deadline;
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_sec += (time_t)left;
            until.tv_nsec += (long)((left - (double)(time_t)left) * 1e9);
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&t->janitor_cond, &t->lock, &until);
            t->janitor_wakes_at = 0;
            t->janitor_wakeups++;
            continue;
        }
        fb_mount_file *expired = kept_take_expired(t, now);
        fb_archive_reader *r = NULL;
        if (t->idle && t->idle_until <= now)
            r = archive_release(t, t->idle);
        pthread_mutex_unlock(&t->lock);
        /* Closing a kept file may leave its reader idle: the loop sees it. */
        close_list(t, expired);
        fb_archive_reader_free(r);
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

/* A new deadline (t->lock held, the janitor running): wakes the janitor
 * only if it would sleep past it. A janitor that wakes earlier finds the
 * deadline then, so a run of reads or closes costs no wakeup each. */
static void janitor_tell(fb_mount_tree *t, double deadline)
{
    if (t->janitor_wakes_at == 0 || deadline < t->janitor_wakes_at)
        pthread_cond_signal(&t->janitor_cond);
}

/* Starts the janitor (t->lock held): false when it cannot run, and then
 * no reader is kept idle. */
static bool janitor_running(fb_mount_tree *t)
{
    if (!t->janitor_started) {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&t->janitor_cond, &ca);
        pthread_condattr_destroy(&ca);
        t->janitor_started = fb_thread_start(&t->janitor, janitor_main, t) == 0;
        if (!t->janitor_started)
            pthread_cond_destroy(&t->janitor_cond);
        t->janitor_failed = !t->janitor_started;
    }
    return t->janitor_started;
}

void fb_mount_tree_start(fb_mount_tree *t)
{
    pthread_mutex_lock(&t->lock);
    if (!t->janitor_failed)
        (void)janitor_running(t);
    pthread_mutex_unlock(&t->lock);
}

/* One file of a's less (t->lock held). The last one leaves a idle, in
 * place of the previous idle reader; returns the reader to free once the
 * lock is released (that previous one, or a itself), or NULL. */
static fb_archive_reader *archive_unref(fb_mount_tree *t, mt_archive *a)
{
    if (--a->refs > 0)
        return NULL;
    if (!a->backup || a->backup->retired || t->janitor_failed || !janitor_running(t))
        return archive_release(t, a);
    fb_archive_reader *drop = t->idle ? archive_release(t, t->idle) : NULL;
    t->idle = a;
    t->idle_until = monotonic_now() + MT_IDLE_READER_SECONDS;
    janitor_tell(t, t->idle_until);
    return drop;
}

void fb_mount_files_stop_janitor(fb_mount_tree *t)
{
    pthread_mutex_lock(&t->lock);
    bool started = t->janitor_started;
    t->janitor_stop = true;
    if (started)
        pthread_cond_signal(&t->janitor_cond);
    pthread_mutex_unlock(&t->lock);
    if (started) {
        pthread_join(t->janitor, NULL);
        pthread_cond_destroy(&t->janitor_cond);
        t->janitor_started = false;
    }
}

/* ---------------------------------------------------------------- files */

/* Fills f's place and src from the entry at node (t->lock held, b pinned and
 * loaded); *end is where the file's data ends in the archive. In a view
 * (as-of/, history/) the bytes are in the archive of the backup the entry
 * comes from, *from (NULL for a backup's own entries), at the entry's
 * data path, which proofs check against that archive's tar headers. */
static int file_locate(const mt_backup *b, uint32_t node, uint64_t ino, fb_mount_file *f,
                       file_source *src, const mt_source **from, uint64_t *end, fb_error *err)
{
    const mt_contents *c = b->contents;
    uint32_t e = c->nodes[c->nodes[node].target].entry;
    if (e == MT_NONE || c->m.entries[e].meta.type != FB_ENTRY_FILE)
        return fb_error_set(err, FB_EMISUSE, "inode %llu is not a file", (unsigned long long)ino);
    *from = NULL;
    if (c->sources) {
        if (c->entry_source[e] >= c->n_sources)
            return fb_error_set(err, FB_EMISUSE, "inode %llu is not a file",
                                (unsigned long long)ino);
        *from = &c->sources[c->entry_source[e]];
    }
    f->data_offset = c->m.entries[e].offset;
    f->size = c->m.entries[e].meta.size;
    src->archive_size = *from ? (*from)->archive_size : c->m.archive.size;
    memcpy(src->sha, c->m.entries[e].sha256, sizeof src->sha);
    snprintf(src->label, sizeof src->label, "%s/%s/" FB_ARCHIVE_NAME, b->session->id,
             *from ? (*from)->id : b->id);
    /* Copied: the contents may go once the backup is unpinned. */
    if (!(src->path = mt_entry_data_path(c, e)))
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    if (__builtin_add_overflow(f->data_offset, f->size, end))
        return fb_error_set(err, FB_ECORRUPT, "%s/%s: entry offset overflows", b->session->id,
                            b->id);
    return 0;
}

/* Gives f the backup's reader and links it into the tree (t->lock held, b
 * pinned). Readers to free once the lock is released go to *spare and
 * *spare_a (ours, when another thread's was shared) and *released (the
 * shared one, when f was its last user and the open failed): two slots,
 * since both can happen in one open. */
static int file_attach(fb_mount_tree *t, mt_backup *b, fb_mount_file *f, const file_source *src,
                       uint64_t end, fb_archive_reader **spare, mt_archive **spare_a,
                       fb_archive_reader **released, fb_error *err)
{
    mt_archive *a = NULL;
    int rc = archive_share(t, b, src->archive_size, &a, spare, spare_a, err);
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
        *released = archive_unref(t, a);
    }
    return rc;
}

/* Proves what the manifest says of f against the archive, with no lock held. */
static int file_prove(fb_mount_file *f, const file_source *src, fb_error *err)
{
    /* A small file is read and hashed whole before its first byte is
     * served: then what is served is what the manifest's SHA-256 says, and
     * neither this nor its reads need the frame map before it proven. */
    f->read_flags = f->size <= MT_HASH_ON_OPEN_MAX ? FB_ARCHIVE_READ_CHECKED : 0;
    /* The manifest's offset is only trusted once the tar header there is
     * this file's (tar_header_i.h): once per open, never per read. */
    unsigned proof = f->read_flags | FB_ARCHIVE_READ_PROOF;
    int rc = fb_tar_member_prove(f->archive->reader, f->data_offset, src->path, f->size, proof,
                                 src->label, err);
    if (rc == 0 && f->read_flags)
        rc = fb_tar_member_prove_content(f->archive->reader, f->data_offset, f->size, src->sha,
                                         proof, src->path, src->label, err);
    return rc;
}

int fb_mount_tree_open(fb_mount_tree *t, uint64_t ino, fb_mount_file **out, fb_error *err)
{
    *out = NULL;
    fb_mount_file *f = calloc(1, sizeof *f);
    if (!f)
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    pthread_mutex_lock(&t->lock);
    mt_ref ref;
    int rc = fb_mount_inode_resolve(t, ino, &ref);
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
    rc = fb_mount_entry_load(t, b, ino, err);
    file_source src = {.path = NULL};
    uint64_t end = 0;
    const mt_source *from = NULL;
    if (rc == 0)
        rc = file_locate(b, ref.node, ino, f, &src, &from, &end, err);
    mt_backup *owner = b; /* whose archive holds the bytes */
    if (rc == 0 && from) {
        if ((owner = fb_mount_source_backup(b->session, from)) != NULL)
            owner->pins++;
        else
            rc = fb_error_set(err, FB_ENOTFOUND, "%s/%s: gone from the store", b->session->id,
                              from->id);
    }
    /* Readers to free after unlocking: closing one may take a while. */
    fb_archive_reader *spare = NULL, *released = NULL;
    mt_archive *spare_a = NULL;
    if (rc == 0)
        rc = file_attach(t, owner, f, &src, end, &spare, &spare_a, &released, err);
    if (owner && owner != b)
        fb_mount_backup_unpin(t, owner);
    fb_mount_backup_unpin(t, b);
    pthread_mutex_unlock(&t->lock);
    fb_archive_reader_free(spare);
    fb_archive_reader_free(released);
    free(spare_a);
    if (rc) {
        free(src.path);
        free(f);
        return rc;
    }
    rc = file_prove(f, &src, err);
    free(src.path);
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
    int rc = fb_archive_reader_pread_flags(f->archive->reader, buf, want, f->data_offset + off,
                                           f->data_offset - 512, f->read_flags, &got, err);
    if (rc)
        return rc;
    if (got != want)
        return fb_error_set(err, FB_ECORRUPT, "archive ends inside a file (%zu of %zu bytes)",
                            got, want);
    *out_len = got;
    return 0;
}

int fb_mount_file_read_spans(fb_mount_file *f, size_t len, uint64_t off, fb_archive_span *spans,
                             size_t max, size_t *n_spans, size_t *out_len, fb_error *err)
{
    *out_len = 0;
    *n_spans = 0;
    if (off >= f->size || len == 0)
        return 0;
    uint64_t left = f->size - off;
    size_t want = left < len ? (size_t)left : len;
    size_t got = 0;
    int rc = fb_archive_reader_pread_spans(f->archive->reader, want, f->data_offset + off,
                                           f->data_offset - 512, f->read_flags, spans, max,
                                           n_spans, &got, err);
    if (rc)
        return rc;
    /* Short with every span used: the frames are small, the caller copies.
     * Short with spans left: the archive ends inside the file. */
    if (got != want && *n_spans < max) {
        fb_archive_spans_release(spans, *n_spans);
        *n_spans = 0;
        return fb_error_set(err, FB_ECORRUPT, "archive ends inside a file (%zu of %zu bytes)",
                            got, want);
    }
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

/* ---------------------------------------------------------- kept files */

static size_t kept_bucket(uint64_t ino)
{
    /* Inodes of one backup are consecutive: a multiplicative hash spreads
     * them over the buckets. */
    return (size_t)((ino * 0x9E3779B97F4A7C15ull) >> 32) & (MT_KEPT_BUCKETS - 1);
}

static fb_mount_file *kept_find(fb_mount_tree *t, uint64_t ino)
{
    for (fb_mount_file *f = t->kept_buckets[kept_bucket(ino)]; f; f = f->hash_next)
        if (f->ino == ino)
            return f;
    return NULL;
}

static void kept_unhash(fb_mount_tree *t, fb_mount_file *f)
{
    fb_mount_file **p = &t->kept_buckets[kept_bucket(f->ino)];
    while (*p != f)
        p = &(*p)->hash_next;
    *p = f->hash_next;
    f->hash_next = NULL;
    f->kept = false;
    f->archive->kept--;
    t->n_kept--;
}

static void kept_idle_unlink(fb_mount_tree *t, fb_mount_file *f)
{
    if (f->idle_prev)
        f->idle_prev->idle_next = f->idle_next;
    else
        t->kept_idle_head = f->idle_next;
    if (f->idle_next)
        f->idle_next->idle_prev = f->idle_prev;
    else
        t->kept_idle_tail = f->idle_prev;
    f->idle_next = f->idle_prev = NULL;
    t->n_kept_idle--;
}

int fb_mount_tree_file_get(fb_mount_tree *t, uint64_t ino, fb_mount_file **out, fb_error *err)
{
    *out = NULL;
    pthread_mutex_lock(&t->lock);
    fb_mount_file *f = kept_find(t, ino);
    if (f) {
        if (f->users++ == 0)
            kept_idle_unlink(t, f);
        pthread_mutex_unlock(&t->lock);
        *out = f;
        return 0;
    }
    pthread_mutex_unlock(&t->lock);
    /* Opened and proved without the lock, as an open is. */
    fb_mount_file *fresh = NULL;
    int rc = fb_mount_tree_open(t, ino, &fresh, err);
    if (rc)
        return rc;
    pthread_mutex_lock(&t->lock);
    if ((f = kept_find(t, ino)) != NULL) {
        /* Another read of the inode kept one meanwhile: share it. */
        if (f->users++ == 0)
            kept_idle_unlink(t, f);
    } else {
        f = fresh;
        fresh = NULL;
        f->kept = true;
        f->archive->kept++;
        f->ino = ino;
        f->users = 1;
        size_t b = kept_bucket(ino);
        f->hash_next = t->kept_buckets[b];
        t->kept_buckets[b] = f;
        t->n_kept++;
    }
    pthread_mutex_unlock(&t->lock);
    fb_mount_file_close(t, fresh);
    *out = f;
    return 0;
}

void fb_mount_file_put(fb_mount_tree *t, fb_mount_file *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&t->lock);
    if (--f->users > 0) {
        pthread_mutex_unlock(&t->lock);
        return;
    }
    f->last_used = monotonic_now();
    f->idle_prev = NULL;
    f->idle_next = t->kept_idle_head;
    if (t->kept_idle_head)
        t->kept_idle_head->idle_prev = f;
    else
        t->kept_idle_tail = f;
    t->kept_idle_head = f;
    t->n_kept_idle++;
    /* Over the count bound, the least recently read goes now; without a
     * janitor (it could not start), every unused file goes at once. */
    fb_mount_file *drop = NULL;
    bool janitor = !t->janitor_failed && janitor_running(t);
    if (t->n_kept_idle > FB_MOUNT_KEPT_MAX || !janitor) {
        drop = t->kept_idle_tail;
        kept_idle_unlink(t, drop);
        kept_unhash(t, drop);
    } else {
        janitor_tell(t, f->last_used + FB_MOUNT_KEPT_SECONDS);
    }
    pthread_mutex_unlock(&t->lock);
    fb_mount_file_close(t, drop);
}

void fb_mount_files_free_all(fb_mount_tree *t)
{
    memset(t->kept_buckets, 0, sizeof t->kept_buckets);
    t->kept_idle_head = t->kept_idle_tail = NULL;
    t->n_kept = t->n_kept_idle = 0;
    while (t->files) {
        fb_mount_file *f = t->files;
        t->files = f->next;
        free(f);
    }
    t->idle = NULL;
    while (t->archives) {
        mt_archive *a = t->archives;
        t->archives = a->next;
        fb_archive_reader_free(a->reader);
        free(a);
    }
}
