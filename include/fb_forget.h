/* `forget` (alias `delete`, SPEC "Other commands"): removes the backups a
 * user names from one session, by retention's crash-safe removal (index
 * first, then each directory renamed aside and deleted) under the session
 * lock. Every name is resolved before anything is removed, so one bad name
 * removes nothing.
 *
 * Bases: a full backup that is the recorded base of incrementals that would
 * remain is refused (FB_EINVAL naming them) unless those incrementals are
 * named too or with_incrementals is set, which removes them with it. */
#ifndef FB_FORGET_H
#define FB_FORGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_error.h"
#include "fb_lock.h"
#include "fb_store.h"
#include "fb_types.h"

typedef struct fb_forget_request {
    const char *session_id;
    const char *const *names; /* as the user gave them (fb_store_resolve_backup forms) */
    size_t n_names;           /* at least 1 */
    bool with_incrementals;   /* also remove the incrementals based on a named full */
    bool dry_run;             /* no lock, nothing written; same checks and result */
    double lock_wait_seconds;
    fb_lock_wait_fn lock_waiting; /* told when the lock is busy and waited for; may be NULL */
    void *lock_waiting_ctx;
    fb_warn_fn warn;          /* leftovers cleared, index rebuilt; may be NULL */
    void *warn_ctx;
} fb_forget_request;

/* One backup removed (or that a dry run would remove), index order. */
typedef struct fb_forget_item {
    char id[FB_BACKUP_ID_LEN + 1];
    fb_backup_type type;
    int64_t created_at;
    uint64_t stored_bytes;
    char *named_as;                    /* the first name that resolved to it (owned);
                                          NULL when taken along as an incremental */
    char base[FB_BACKUP_ID_LEN + 1];   /* taken along: the named full it is based on */
} fb_forget_item;

typedef struct fb_forget_result {
    fb_forget_item *items; /* owned */
    size_t n_items;
    size_t n_remaining;    /* backups the session's index holds afterwards */
    bool index_rebuilt;
} fb_forget_result;

void fb_forget_result_init(fb_forget_result *r);
void fb_forget_result_fini(fb_forget_result *r);

/* Returns 0; FB_ENOTFOUND / FB_EINVAL for a name that names no backup or
 * several (the message is fb_store_resolve_backup's, ending with "nothing
 * was removed"), FB_EINVAL for a base with remaining incrementals, FB_EBUSY
 * (lock), FB_EIO, FB_ENOMEM, FB_ECORRUPT. Any error before the index commit
 * leaves the store as it was; after it, what was removed stays removed and
 * a .trash-* leftover is cleared by the next locked run (see
 * fb_retention_apply). */
int fb_forget_run(fb_store *store, const fb_forget_request *req, fb_forget_result *out,
                  fb_error *err);

#endif
