/* Keeping the root and session listings live: sessions and backups appear
 * and disappear in the store while the daemon runs, so a listing older than
 * opts.live_seconds is read again (and always on opendir). The reading runs
 * with t->lock released; only installing what was read takes it. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fb_text.h"
#include "clock_i.h"
#include "mount_tree_i.h"

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

/* ------------------------------------------------------------- sessions */

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
        mt_backup *b = fb_mount_session_backup(s, r->id);
        if (b && memcmp(b->archive_sha256, r->archive_sha256, sizeof r->archive_sha256) != 0) {
            b->retired = true;
            b = NULL;
        }
        if (!b && !(b = fb_mount_backup_add(t, s, r))) {
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
    if (newest && fb_mount_session_backup(s, newest->id))
        memcpy(s->latest, newest->id, sizeof s->latest);
    if (full && fb_mount_session_backup(s, full->id))
        memcpy(s->latest_full, full->id, sizeof s->latest_full);
    s->has_newest = newest != NULL;
    s->newest_time = newest ? newest->created_at : 0;
    s->n_present = 0;
    for (size_t i = s->n_backups; i-- > 0;) {
        mt_backup *b = s->backups[i];
        if (b->present)
            s->n_present++;
        else
            fb_mount_backup_maybe_release(t, b); /* may remove s->backups[i] */
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

/* An index that stays inconsistent would be reported on every refresh
 * (s->refresh_lock held). */
static void session_warn_once(fb_mount_tree *t, mt_session *s, const char *text)
{
    if (text[0] && (!s->last_warning || strcmp(s->last_warning, text) != 0)) {
        fb_warnf(t->opts.warn, t->opts.warn_ctx, "session %s: %s", s->id, text);
        free(s->last_warning);
        s->last_warning = strdup(text);
    }
}

/* Reads the session's index and installs it (s->refresh_lock held, t->lock
 * not). st is the store dir's stat taken before the read, when have_st. */
static int session_load(fb_mount_tree *t, mt_session *s, double started, const struct stat *st,
                        bool have_st, fb_error *err)
{
    fb_index idx;
    fb_index_init(&idx, s->id);
    bool rebuilt = false;
    warn_capture w = {{0}};
    int rc = fb_store_load_index(t->store, s->id, 0, &idx, &rebuilt, capture_warning, &w, err);
    if (rc == 0) {
        pthread_mutex_lock(&t->lock);
        rc = session_install(t, s, &idx);
        /* Kept for the views' signatures; the old one is freed below. */
        fb_index old = s->idx;
        s->idx = idx;
        idx = old;
        fb_mount_views_refresh(t, s);
        if (have_st) {
            s->st = *st;
            s->have_st = true;
        }
        s->loaded = true;
        s->loaded_at = started;
        s->loaded_st = *st;
        s->loaded_st_trusted = have_st && dir_stat_is_settled(st);
        pthread_mutex_unlock(&t->lock);
        if (rc)
            fb_error_set(err, rc, "session %s: out of memory", s->id);
    }
    fb_index_fini(&idx);
    session_warn_once(t, s, w.text);
    return rc;
}

int fb_mount_refresh_session(fb_mount_tree *t, mt_session *s, bool force, fb_error *err)
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
    int rc = 0;
    if (have_st && s->loaded && s->loaded_st_trusted && same_dir_state(&st, &s->loaded_st)) {
        pthread_mutex_lock(&t->lock);
        s->loaded_at = started;
        pthread_mutex_unlock(&t->lock);
    } else {
        rc = session_load(t, s, started, &st, have_st, err);
    }
    pthread_mutex_unlock(&s->refresh_lock);
    return rc;
}

/* ----------------------------------------------------------------- root */

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

/* Marks present the sessions ids[i] with listed[i], adding nodes for new
 * ones, and every other session absent (t->lock taken here). */
static int root_install(fb_mount_tree *t, char **ids, const bool *listed, size_t n,
                        double started, fb_error *err)
{
    int rc = 0;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->n_sessions; i++)
        t->sessions[i]->present = false;
    for (size_t i = 0; i < n; i++) {
        if (!listed[i])
            continue;
        size_t pos;
        mt_session *s = fb_mount_session_find(t, ids[i], &pos);
        if (!s && !(s = fb_mount_session_add(t, ids[i], pos))) {
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
    return rc;
}

int fb_mount_refresh_root(fb_mount_tree *t, bool force, fb_error *err)
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
    rc = root_install(t, ids, listed, n, started, err);
    free(listed);
    fb_string_list_free(ids, n);
    pthread_mutex_unlock(&t->root_refresh_lock);
    return rc;
}
