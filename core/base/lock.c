/* The per-session writer lock (SPEC "Concurrency"): flock(LOCK_EX) on
 * <session dir>/.lock. flock is released by the kernel when the holder dies,
 * so there is never a stale lock to break; the "pid host" line the holder
 * writes is untrusted text used only to tell a waiting user who holds it. */
#include "fb_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock_i.h"

#define LOCK_NAME ".lock"
#define POLL_INTERVAL_NS (50 * 1000 * 1000L)

/* Reads the holder's "pid host" line into "pid N on host H"; anything that
 * does not look like one (a partial write, a crafted file) is reported as
 * unknown. */
static void describe_holder(int fd, char *out, size_t size)
{
    char buf[160];
    ssize_t r = pread(fd, buf, sizeof buf - 1, 0);
    snprintf(out, size, "another process");
    if (r <= 0)
        return;
    buf[r] = '\0';
    char *nl = strchr(buf, '\n');
    if (!nl)
        return;
    *nl = '\0';
    char *sp = strchr(buf, ' ');
    if (!sp || sp == buf || sp - buf > 10)
        return;
    *sp = '\0';
    for (const char *p = buf; *p; p++)
        if (*p < '0' || *p > '9')
            return;
    const char *host = sp + 1;
    size_t hl = strlen(host);
    if (hl == 0 || hl > 64)
        return;
    for (const char *p = host; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return;
    }
    snprintf(out, size, "pid %s on host %s", buf, host);
}

/* Leaves "pid host\n" in the file for the next waiter's message. Failing to
 * write it does not matter for correctness: the flock is the lock. */
static void record_holder(int fd)
{
    char host[65] = "unknown";
    if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0')
        snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = '\0';
    char line[128];
    int n = snprintf(line, sizeof line, "%ld %s\n", (long)getpid(), host);
    if (n <= 0 || (size_t)n >= sizeof line)
        return;
    if (ftruncate(fd, 0) != 0)
        return;
    if (pwrite(fd, line, (size_t)n, 0) != n)
        return;
}

int fb_lock_acquire(int session_fd, const char *session_id, double wait_seconds,
                    fb_lock_wait_fn waiting, void *waiting_ctx, fb_lock *out, fb_error *err)
{
    out->fd = -1;
    const char *sid = session_id ? session_id : "(session)";
    int fd = openat(session_fd, LOCK_NAME, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY |
                                               O_NONBLOCK,
                    0600);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP)
            return fb_error_set(err, FB_EIO,
                                "%s/" LOCK_NAME " is a symlink; refusing to use it as the "
                                "session lock",
                                sid);
        return fb_error_set_errno(err, e, "cannot open the lock file %s/" LOCK_NAME, sid);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fb_error_set_errno(err, e, "cannot stat %s/" LOCK_NAME, sid);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fb_error_set(err, FB_EIO, "%s/" LOCK_NAME " is not a regular file", sid);
    }

    if (!(wait_seconds >= 0))
        wait_seconds = 0;
    double start = fb_monotonic_seconds();
    bool told = false;
    for (;;) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            break;
        int e = errno;
        if (e == EINTR)
            continue;
        if (e != EWOULDBLOCK) {
            close(fd);
            return fb_error_set_errno(err, e, "cannot lock %s/" LOCK_NAME, sid);
        }
        double waited = fb_monotonic_seconds() - start;
        if (waited >= wait_seconds) {
            char holder[256];
            describe_holder(fd, holder, sizeof holder);
            close(fd);
            return fb_error_set(err, FB_EBUSY, "session %s is busy: locked by %s (waited %g s)",
                                sid, holder, wait_seconds);
        }
        /* Said once, before the first sleep: a wait of up to --wait seconds
         * must not look like a hang. */
        if (waiting && !told) {
            char holder[256];
            describe_holder(fd, holder, sizeof holder);
            fb_lock_waiting w = {.session_id = sid, .holder = holder,
                                 .wait_seconds = wait_seconds};
            waiting(waiting_ctx, &w);
            told = true;
        }
        /* Polling rather than a blocking flock keeps the deadline exact
         * without signals or threads. */
        struct timespec ts = {0, POLL_INTERVAL_NS};
        double left = wait_seconds - waited;
        if (left < 0.05)
            ts.tv_nsec = (long)(left * 1e9) + 1;
        nanosleep(&ts, NULL);
    }
    record_holder(fd);
    out->fd = fd;
    return 0;
}

int fb_lock_try(int session_fd, const char *session_id, fb_lock *out, fb_error *err)
{
    return fb_lock_acquire(session_fd, session_id, 0, NULL, NULL, out, err);
}

void fb_lock_release(fb_lock *lock)
{
    if (!lock || lock->fd < 0)
        return;
    /* The file stays: unlinking a lock file lets two processes lock two
     * different inodes. */
    flock(lock->fd, LOCK_UN);
    close(lock->fd);
    lock->fd = -1;
}
