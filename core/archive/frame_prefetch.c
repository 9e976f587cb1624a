/* The frame prefetcher (fb_frame_prefetch.h): one thread and a small
 * queue of jobs, one per owner at most. One thread because the machine this
 * serves has few cores and the reader it works ahead of needs one: a second
 * decoder would only compete with it. */
#include "fb_frame_prefetch.h"
#include "thread_i.h"

#include <pthread.h>
#include <stdlib.h>

/* Jobs waiting; a sequential reader asks for one frame ahead, so a few
 * readers at once fit. */
#define PREFETCH_QUEUE_MAX 16

typedef struct job {
    void *owner;
    void (*run)(void *owner);
} job;

struct fb_frame_prefetcher {
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* a job was queued, or stop */
    pthread_cond_t done_cv; /* a job ended */
    job queue[PREFETCH_QUEUE_MAX]; /* guarded by mu, in order */
    size_t n;                      /* guarded by mu */
    void *running;                 /* guarded by mu: the owner whose job runs */
    bool stop;                     /* guarded by mu */
    bool started;                  /* guarded by mu: thread runs */
    pthread_t thread;
};

static void *prefetch_main(void *arg)
{
    fb_frame_prefetcher *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->n == 0)
            pthread_cond_wait(&p->work_cv, &p->mu);
        if (p->stop)
            break;
        job j = p->queue[0];
        p->n--;
        for (size_t i = 0; i < p->n; i++)
            p->queue[i] = p->queue[i + 1];
        p->running = j.owner;
        pthread_mutex_unlock(&p->mu);
        j.run(j.owner);
        pthread_mutex_lock(&p->mu);
        p->running = NULL;
        pthread_cond_broadcast(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int fb_frame_prefetcher_new(fb_frame_prefetcher **out, fb_error *err)
{
    *out = NULL;
    fb_frame_prefetcher *p = calloc(1, sizeof *p);
    if (!p)
        return fb_error_set(err, FB_ENOMEM, "frame prefetcher: out of memory");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    *out = p;
    return 0;
}

void fb_frame_prefetcher_free(fb_frame_prefetcher *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    bool started = p->started;
    p->stop = true;
    pthread_cond_signal(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    if (started)
        pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->done_cv);
    pthread_cond_destroy(&p->work_cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

bool fb_frame_prefetcher_enqueue(fb_frame_prefetcher *p, void *owner, void (*run)(void *owner))
{
    bool queued = false;
    pthread_mutex_lock(&p->mu);
    bool present = false;
    for (size_t i = 0; i < p->n && !present; i++)
        present = p->queue[i].owner == owner;
    if (!present && !p->stop && !p->started)
        p->started = fb_thread_start(&p->thread, prefetch_main, p) == 0;
    if (!present && !p->stop && p->started && p->n < PREFETCH_QUEUE_MAX) {
        p->queue[p->n++] = (job){owner, run};
        pthread_cond_signal(&p->work_cv);
        queued = true;
    }
    pthread_mutex_unlock(&p->mu);
    return queued;
}

void fb_frame_prefetcher_forget(fb_frame_prefetcher *p, void *owner)
{
    pthread_mutex_lock(&p->mu);
    size_t k = 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->queue[i].owner != owner)
            p->queue[k++] = p->queue[i];
    p->n = k;
    while (p->running == owner)
        pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
