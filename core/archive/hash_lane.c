/* The hash lane (hash_lane_i.h). A queue of ranges between the writer and
 * the lane thread. Either side sleeps only when it must (the lane on an
 * empty queue, the writer on a full one or in a wait), and is woken only
 * when what it waits for holds: the writer waiting on a full queue is woken
 * once it is half empty, not after every range, so the two threads do not
 * hand each other the CPU for every 256 KiB. */
#include "hash_lane_i.h"
#include "thread_i.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Ranges queued at most: with reads of 256 KiB, 4 MiB ahead of the lane. */
#define LANE_QUEUE 16

typedef struct lane_range {
    const uint8_t *p;
    size_t len;
    uint64_t d_start;
} lane_range;

struct fb_hash_lane {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* a range was queued, or stop */
    pthread_cond_t done_cv; /* what the writer waits for holds */
    lane_range q[LANE_QUEUE];
    size_t head, tail;      /* guarded by mu: q[head % N .. tail % N) queued */
    bool busy;              /* guarded by mu: the lane hashes q[head] right now */
    fb_file_digest *d;      /* the file digested; the lane's between begin and drain */
    bool lane_sleeping;     /* guarded by mu */
    bool writer_waiting;    /* guarded by mu */
    size_t wait_count;      /* guarded by mu: the writer waits for at most this many queued... */
    uint64_t wait_d;        /* ...or for the oldest one to start at or after this offset */
    bool stop;              /* guarded by mu */
};

/* Does what the waiting writer wants hold? (mu held) */
static bool wait_over(const fb_hash_lane *l)
{
    size_t n = l->tail - l->head;
    return n <= l->wait_count || l->q[l->head % LANE_QUEUE].d_start >= l->wait_d;
}

static void *lane_main(void *arg)
{
    fb_hash_lane *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop && l->head == l->tail) {
            l->lane_sleeping = true;
            pthread_cond_wait(&l->work_cv, &l->mu);
            l->lane_sleeping = false;
        }
        if (l->stop)
            break;
        lane_range r = l->q[l->head % LANE_QUEUE];
        fb_file_digest *d = l->d;
        l->busy = true;
        pthread_mutex_unlock(&l->mu);
        fb_file_digest_update(d, r.p, r.len);
        pthread_mutex_lock(&l->mu);
        l->busy = false;
        l->head++;
        if (l->writer_waiting && wait_over(l))
            pthread_cond_signal(&l->done_cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

int fb_hash_lane_start(fb_hash_lane **out, fb_error *err)
{
    *out = NULL;
    fb_hash_lane *l = calloc(1, sizeof *l);
    if (!l)
        return fb_error_set(err, FB_ENOMEM, "hash lane: out of memory");
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->work_cv, NULL);
    pthread_cond_init(&l->done_cv, NULL);
    int e = fb_thread_start(&l->thread, lane_main, l);
    if (e) {
        pthread_cond_destroy(&l->done_cv);
        pthread_cond_destroy(&l->work_cv);
        pthread_mutex_destroy(&l->mu);
        free(l);
        return fb_error_set(err, e == EAGAIN ? FB_ENOMEM : FB_EIO,
                            "hash lane: cannot start a thread: %s", strerror(e));
    }
    *out = l;
    return 0;
}

/* Sleeps until the queue holds at most count ranges or its oldest starts
 * at or after d (mu held). */
static void wait_for(fb_hash_lane *l, size_t count, uint64_t d)
{
    l->wait_count = count;
    l->wait_d = d;
    while (!wait_over(l)) {
        l->writer_waiting = true;
        pthread_cond_wait(&l->done_cv, &l->mu);
        l->writer_waiting = false;
    }
}

void fb_hash_lane_begin(fb_hash_lane *l, fb_file_digest *d)
{
    pthread_mutex_lock(&l->mu);
    wait_for(l, 0, UINT64_MAX); /* the previous file is done with */
    l->d = d;
    pthread_mutex_unlock(&l->mu);
}

void fb_hash_lane_push(fb_hash_lane *l, const uint8_t *p, size_t len, uint64_t d_start)
{
    pthread_mutex_lock(&l->mu);
    if (l->tail - l->head == LANE_QUEUE)
        wait_for(l, LANE_QUEUE / 2, UINT64_MAX);
    l->q[l->tail % LANE_QUEUE] = (lane_range){.p = p, .len = len, .d_start = d_start};
    l->tail++;
    if (l->lane_sleeping)
        pthread_cond_signal(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
}

void fb_hash_lane_wait_before(fb_hash_lane *l, uint64_t d_end)
{
    pthread_mutex_lock(&l->mu);
    wait_for(l, 0, d_end);
    pthread_mutex_unlock(&l->mu);
}

void fb_hash_lane_drain(fb_hash_lane *l)
{
    pthread_mutex_lock(&l->mu);
    wait_for(l, 0, UINT64_MAX);
    l->d = NULL;
    pthread_mutex_unlock(&l->mu);
}

void fb_hash_lane_free(fb_hash_lane *l)
{
    if (!l)
        return;
    fb_hash_lane_drain(l);
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_signal(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    pthread_cond_destroy(&l->done_cv);
    pthread_cond_destroy(&l->work_cv);
    pthread_mutex_destroy(&l->mu);
    free(l);
}
