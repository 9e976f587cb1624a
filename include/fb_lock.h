/* The per-session writer lock: an exclusive flock() on
 * .flowloom/backups/<sid>/.lock, held by backup, cleanup and recover.
 * flock dies with the process, so a SIGKILLed holder never leaves a stale
 * lock; the pid/host written into the file are only used in messages. */
#ifndef FB_LOCK_H
#define FB_LOCK_H

#include "fb_error.h"

typedef struct fb_lock {
    int fd; /* -1 when not held */
} fb_lock;

/* What a caller is told when the lock is busy and it is about to wait for
 * it, so that a user does not stare at a silent command. Valid during the
 * call only. */
typedef struct fb_lock_waiting {
    const char *session_id;
    const char *holder;   /* "pid 123 on host h", or "another process" when the
                           * lock file names none that looks right */
    double wait_seconds;  /* how long the caller will wait at most */
} fb_lock_waiting;
typedef void (*fb_lock_wait_fn)(void *ctx, const fb_lock_waiting *waiting);

/* Opens (O_CREAT|O_NOFOLLOW, 0600) and locks session_fd/.lock, waiting up to
 * wait_seconds (0 = try once). When the lock is busy and wait_seconds > 0,
 * waiting(waiting_ctx, ...) is called once, before the first wait (waiting
 * may be NULL). On timeout returns FB_EBUSY with a message naming the
 * session and the holder ("locked by pid 123 on host h"). */
int fb_lock_acquire(int session_fd, const char *session_id, double wait_seconds,
                    fb_lock_wait_fn waiting, void *waiting_ctx, fb_lock *out, fb_error *err);
/* Tries once without blocking; returns 0 (held), FB_EBUSY, or an error. */
int fb_lock_try(int session_fd, const char *session_id, fb_lock *out, fb_error *err);
/* Releases and closes; accepts a lock that is not held. */
void fb_lock_release(fb_lock *lock);

#endif
