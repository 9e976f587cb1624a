/* The daemon's request loop (fs_i.h, fs_loop_run): one thread at a time
 * reads /dev/fuse, and the thread that read a request answers it.
 *
 * Why not libfuse's multi-threaded loop: it keeps every idle worker
 * blocked in read(), and the kernel hands each request to the worker that
 * has waited longest, so a process that asks one thing after another (an
 * open: a lookup per path component, then the read) sees its requests
 * alternate between two threads, which the scheduler places on different
 * CPUs. Each hop then costs a cross-CPU wakeup: the first read of a small
 * file took 1.25 ms against 1.07 ms single-threaded (-s), on 2 cores.
 * A single thread, though, makes every request wait for the one before,
 * however slow (a large manifest to load, a frame to decode).
 *
 * So one worker reads and answers, request after request, as squashfuse's
 * single thread does, and a watcher thread, awake only while requests
 * come, takes the reader role away from a worker that has spent more than
 * FS_LOOP_SLOW_MS on one request: another worker (idle, or a new one up to
 * max_threads) then reads what comes meanwhile. Frames are decoded ahead
 * of sequential readers on the prefetch thread (fb_frame_prefetch.h), so
 * reads are answered in parallel with decoding all the same. Handing a
 * request to a second worker whenever one was queued (libfuse's way, by
 * poll) cost eight parallel readers 8% of their throughput here (1,300
 * against 1,420 MiB/s) and one reader as much: a hand-off is a wakeup on
 * the other CPU, dearer than answering from the frame cache.
 *
 * Threads and locks: l->mu guards everything below it in fs_loop; no other
 * lock is held with it. Workers and the watcher block every signal, so the
 * signals libfuse's handlers catch (fuse_set_signal_handlers) reach the
 * calling thread, which waits for the end in sem_wait. */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs_i.h"

/* A request answered for longer than this gives up the reader role. */
#define FS_LOOP_SLOW_MS 5.0
/* How often the watcher looks while requests come. */
#define FS_LOOP_WATCH_MS 5.0
/* The watcher sleeps for good after this long without a request. */
#define FS_LOOP_QUIET_MS 200.0

typedef struct fs_loop {
    struct fuse_session *se;
    unsigned max_threads;
    sem_t ended; /* posted when the loop must end (unmount or error) */

    pthread_mutex_t mu;
    pthread_cond_t idle_cv;  /* idle workers wait here for the reader role */
    pthread_cond_t watch_cv; /* the watcher waits here while nothing comes */
    bool reader_taken;       /* a worker holds the reader role */
    pthread_t reader;        /* which one (when reader_taken) */
    uint64_t role_gen;       /* bumped each time the role changes hands */
    bool busy;               /* the holder is answering a request ... */
    double busy_since;       /* ... since then (ms, monotonic) */
    double last_request;     /* when the last request was read */
    bool watching;
    bool ending;
    int error;               /* a receive error that ended the loop */
    unsigned n_workers, n_idle;
    pthread_t threads[FS_LOOP_THREADS_MAX];
    bool have_watcher;
    pthread_t watcher;
} fs_loop;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Ends the loop (l->mu held): every thread is told, the caller woken. */
static void end_loop(fs_loop *l, int error)
{
    if (!l->ending) {
        l->ending = true;
        l->error = error;
        sem_post(&l->ended);
    }
    pthread_cond_broadcast(&l->idle_cv);
    pthread_cond_broadcast(&l->watch_cv);
}

static void *worker_main(void *arg);

/* One more worker (l->mu held), with every signal blocked. false when
 * none can start (at max_threads, or pthread_create failed). */
static bool start_worker(fs_loop *l)
{
    if (l->n_workers >= l->max_threads)
        return false;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    bool ok = pthread_create(&l->threads[l->n_workers], NULL, worker_main, l) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (ok)
        l->n_workers++;
    return ok;
}

/* Gives the reader role (l->mu held) to an idle worker, or a new one. */
static void pass_role(fs_loop *l)
{
    l->reader_taken = false;
    l->role_gen++;
    if (l->n_idle > 0)
        pthread_cond_signal(&l->idle_cv);
    else if (!start_worker(l))
        pthread_cond_signal(&l->idle_cv); /* whoever is next to wait takes it */
}

static void free_buf(void *buf)
{
    free(((struct fuse_buf *)buf)->mem);
}

/* Holds the reader role and answers what it reads, until the role moves
 * on; then waits to hold it again. */
static void *worker_main(void *arg)
{
    fs_loop *l = arg;
    struct fuse_buf buf;
    memset(&buf, 0, sizeof buf);
    /* Cancelled only while blocked in read() at the end (fs_loop_run). */
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    pthread_cleanup_push(free_buf, &buf);
    pthread_mutex_lock(&l->mu);
    while (!l->ending) {
        if (l->reader_taken) {
            l->n_idle++;
            pthread_cond_wait(&l->idle_cv, &l->mu);
            l->n_idle--;
            continue;
        }
        l->reader_taken = true;
        l->reader = pthread_self();
        uint64_t gen = l->role_gen;
        pthread_mutex_unlock(&l->mu);
        int res;
        do {
            pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
            res = fuse_session_receive_buf(l->se, &buf);
            pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
        } while (res == -EINTR && !fuse_session_exited(l->se));
        pthread_mutex_lock(&l->mu);
        if (res <= 0 || fuse_session_exited(l->se)) {
            end_loop(l, res < 0 ? -res : 0);
            break;
        }
        double now = now_ms();
        l->last_request = now;
        if (!l->watching && l->have_watcher) {
            l->watching = true;
            pthread_cond_signal(&l->watch_cv);
        }
        l->busy = true;
        l->busy_since = now;
        pthread_mutex_unlock(&l->mu);
        fuse_session_process_buf(l->se, &buf);
        pthread_mutex_lock(&l->mu);
        if (l->role_gen == gen) {
            l->busy = false;
            /* Still the reader: read the next request at once. */
            l->reader_taken = false;
        }
        /* Otherwise the role moved on meanwhile: wait to hold it again. */
    }
    pthread_mutex_unlock(&l->mu);
    pthread_cleanup_pop(1);
    return NULL;
}

/* Takes the reader role from a holder stuck on one request, so that what
 * comes meanwhile is read by another worker. */
static void *watcher_main(void *arg)
{
    fs_loop *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->ending) {
        if (!l->watching) {
            pthread_cond_wait(&l->watch_cv, &l->mu);
            continue;
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += (long)(FS_LOOP_WATCH_MS * 1e6);
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&l->watch_cv, &l->mu, &until);
        double now = now_ms();
        if (l->busy && l->reader_taken && now - l->busy_since > FS_LOOP_SLOW_MS) {
            l->busy = false;
            pass_role(l);
        }
        if (now - l->last_request > FS_LOOP_QUIET_MS && !l->busy)
            l->watching = false;
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

int fs_loop_run(struct fuse_session *se, unsigned max_threads)
{
    fs_loop *l = calloc(1, sizeof *l);
    if (!l)
        return ENOMEM;
    l->se = se;
    l->max_threads = max_threads < 1                     ? 1
                     : max_threads > FS_LOOP_THREADS_MAX ? FS_LOOP_THREADS_MAX
                                                         : max_threads;
    sem_init(&l->ended, 0, 0);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->idle_cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->watch_cv, &ca);
    pthread_condattr_destroy(&ca);

    pthread_mutex_lock(&l->mu);
    if (l->max_threads > 1) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        l->have_watcher = pthread_create(&l->watcher, NULL, watcher_main, l) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    bool started = start_worker(l);
    pthread_mutex_unlock(&l->mu);
    int error = started ? 0 : EAGAIN;
    /* Woken by the loop's end, or by a signal that made libfuse's handler
     * end the session. */
    while (started && sem_wait(&l->ended) != 0 && !fuse_session_exited(se))
        ;
    pthread_mutex_lock(&l->mu);
    end_loop(l, l->error);
    error = error ? error : l->error;
    /* A worker still blocked in read() (a signal ended the session, not an
     * unmount) is cancelled there, the only place it can be. */
    if (l->reader_taken)
        pthread_cancel(l->reader);
    unsigned n = l->n_workers;
    pthread_mutex_unlock(&l->mu);
    for (unsigned i = 0; i < n; i++)
        pthread_join(l->threads[i], NULL);
    if (l->have_watcher)
        pthread_join(l->watcher, NULL);
    pthread_cond_destroy(&l->watch_cv);
    pthread_cond_destroy(&l->idle_cv);
    pthread_mutex_destroy(&l->mu);
    sem_destroy(&l->ended);
    free(l);
    return error;
}
