/* `cleanup` (SPEC "Retention"): the whole sequence for one session, as the
 * backup's own retention step runs it: take the session lock, clear the
 * leftovers of interrupted runs, load the index (a rebuilt one is written
 * back before anything is removed), plan with the policy, remove. A dry
 * run takes no lock, clears nothing, writes nothing, and lists the
 * leftovers it would clear. */
#ifndef FB_CLEANUP_H
#define FB_CLEANUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_error.h"
#include "fb_lock.h"
#include "fb_retention.h"
#include "fb_store.h"

/* A session opened for removing backups: the first half of the cleanup
 * sequence, shared with `forget` (fb_forget.h) so that every removal starts
 * from the same state: the lock held, the leftovers of interrupted runs
 * cleared, and an index that matches the manifests on disk (a rebuilt one
 * written back before anything is removed). A dry run takes no lock,
 * clears nothing and keeps a rebuilt index in memory only. */
typedef struct fb_cleanup_session {
    int fd;           /* .flowloom/backups/<sid>; -1 when the session has none */
    fb_lock lock;     /* held unless dry run */
    fb_index idx;     /* empty when fd is -1 */
    bool index_rebuilt;
} fb_cleanup_session;

/* A session without a store directory is not an error: fd -1, empty index.
 * Returns 0, FB_EBUSY (lock), FB_EIO, FB_ENOMEM, FB_ECORRUPT; on error
 * nothing is held (s is closed). */
int fb_cleanup_session_open(fb_store *store, const char *session_id, bool dry_run,
                            double lock_wait_seconds, fb_lock_wait_fn waiting,
                            void *waiting_ctx, fb_warn_fn warn, void *warn_ctx,
                            fb_cleanup_session *s, fb_error *err);
/* Releases the lock, frees the index, closes the fd; accepts a closed one. */
void fb_cleanup_session_close(fb_cleanup_session *s);

typedef struct fb_cleanup_request {
    const char *session_id;
    fb_retention_policy policy;
    int64_t now;              /* seconds since the epoch (ages) */
    bool dry_run;
    double lock_wait_seconds;
    fb_lock_wait_fn lock_waiting; /* told when the lock is busy and waited for; may be NULL */
    void *lock_waiting_ctx;
    fb_warn_fn warn;          /* leftovers cleared, index rebuilt; may be NULL */
    void *warn_ctx;
} fb_cleanup_request;

/* One backup of the session as the plan saw it (index order). */
typedef struct fb_cleanup_item {
    fb_retention_decision decision;
    fb_backup_type type;
    int64_t created_at;
} fb_cleanup_item;

typedef struct fb_cleanup_result {
    fb_cleanup_item *items;   /* owned */
    size_t n_items;
    size_t n_removed;         /* removed, or that a dry run would remove */
    bool index_rebuilt;
    char **leftovers;         /* dry run: what a real run would clear; owned */
    size_t n_leftovers;
} fb_cleanup_result;

void fb_cleanup_result_init(fb_cleanup_result *r);
void fb_cleanup_result_fini(fb_cleanup_result *r);

/* A session without a store directory has no backups: 0 with no items.
 * Returns 0, FB_EBUSY (lock), FB_EIO, FB_ENOMEM, FB_ECORRUPT; on an error
 * after removal started, what was removed stays removed (crash-safe, see
 * fb_retention_apply). */
int fb_cleanup_run(fb_store *store, const fb_cleanup_request *req, fb_cleanup_result *out,
                   fb_error *err);

#endif
