/* Reading the session's files for a backup (core/ops/backup_source.c):
 * reopening each one below the session directory by directory fds, never
 * through a symlink, and reading small files ahead of the writer on helper
 * threads. Private to core/ops; used by backup.c only.
 *
 * Threads: a cursor belongs to one thread. A prefetcher is started, taken
 * from and stopped by the calling (writer) thread; its helper threads touch
 * only their own lane's slots, handed over through the lane's counters. */
#ifndef FB_BACKUP_SOURCE_I_H
#define FB_BACKUP_SOURCE_I_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fb_error.h"
#include "fb_types.h"
#include "scan_i.h"

/* ---- opening source files again, by directory fds, never through a symlink ---- */

typedef struct fb_src_cursor {
    int root_fd;          /* the session source dir (borrowed) */
    int *fds;             /* fds[i]: O_PATH fd of the first i+1 components of cur */
    size_t *ends;         /* ends[i]: end offset of component i in cur */
    size_t depth;
    size_t cap;
    char cur[FB_PATH_MAX + 1];
} fb_src_cursor;

void fb_src_cursor_init(fb_src_cursor *c, int root_fd);
void fb_src_cursor_fini(fb_src_cursor *c);
/* Makes the parent dir of path current. Returns 0 (*dirfd, *base set), 1
 * when a parent vanished or is no longer a directory (errno-like reason in
 * *why), or a negative FB code. *dirfd is borrowed: valid until the next
 * call or fini. */
int fb_src_cursor_parent(fb_src_cursor *c, const char *path, int *dirfd, const char **base,
                         int *why, fb_error *err);

/* ---- reading small files ahead of the writer (why: backup_source.c) ---- */

#define PREFETCH_LANES 2
#define PREFETCH_SLOTS 128        /* per lane */
#define PREFETCH_MAX (16u * 1024) /* larger files are read by the writer itself */
#define PREFETCH_BATCH 32         /* slots filled or freed before a sleeper is woken */

enum { FB_PREFETCH_PASS, FB_PREFETCH_READY };

typedef struct fb_prefetch_slot {
    size_t entry; /* index in the scan */
    int state;
    bool changed; /* the fstat after the read differs from the one before */
    struct stat before;
    uint8_t *data; /* PREFETCH_MAX bytes */
} fb_prefetch_slot;

/* The counters are atomics; the mutex and condition variable serve only to
 * sleep when the ring is full or empty. A lock and a wake-up per file made
 * ~4 futex calls per file. A sleeper sets its flag, then looks at the
 * counters again; a waker moves its counter, then looks at the flag (all
 * sequentially consistent), so no wake-up is lost. */
typedef struct fb_prefetch_lane {
    const fb_scan_result *scan;
    int root_fd;
    unsigned index;
    fb_prefetch_slot slots[PREFETCH_SLOTS];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool sync_ready, running;
    atomic_size_t produced; /* slots filled so far */
    atomic_size_t consumed; /* slots given back so far */
    atomic_bool done;       /* the helper has no more files */
    atomic_bool stop;       /* the writer wants no more */
    atomic_bool helper_waits, writer_waits;
} fb_prefetch_lane;

typedef struct fb_prefetcher {
    fb_prefetch_lane lanes[PREFETCH_LANES];
    uint8_t *buf;
    bool running;   /* every lane's helper started */
    size_t next;    /* the writer's count of small files so far */
} fb_prefetcher;

/* Whether the scan entry is one the helpers read (a small regular file). */
bool fb_prefetch_wanted(const fb_scan_entry *e);
/* Starts the helpers over the scan's small files, in archive order; when
 * they cannot start, every take gives NULL and the writer reads itself. */
void fb_prefetch_start(fb_prefetcher *p, const fb_scan_result *scan, int root_fd);
/* Stops and joins the helpers, frees the slots' buffers. */
void fb_prefetch_stop(fb_prefetcher *p);
/* The slot of scan entry i (the next wanted one, in order), waiting for its
 * helper; NULL when prefetching is off. *lane gets the slot's lane, to be
 * given back with fb_prefetch_release once the slot is used. */
fb_prefetch_slot *fb_prefetch_take(fb_prefetcher *p, size_t i, fb_prefetch_lane **lane);
void fb_prefetch_release(fb_prefetch_lane *l);

#endif
