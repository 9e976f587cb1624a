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

/* Opens (O_CREAT|O_NOFOLLOW, 0600) and locks session_fd/.lock, waiting up to
 * wait_seconds (0 = try once). On timeout returns FB_EBUSY with a message
 * naming the session and the holder ("held by pid 123 on host"). */
int fb_lock_acquire(int session_fd, const char *session_id, double wait_seconds, fb_lock *out,
                    fb_error *err);
/* Tries once without blocking; returns 0 (held), FB_EBUSY, or an error. */
int fb_lock_try(int session_fd, const char *session_id, fb_lock *out, fb_error *err);
/* Releases and closes; accepts a lock that is not held. */
void fb_lock_release(fb_lock *lock);

#endif
