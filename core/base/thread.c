/* Core's helper threads, started with a small stack (see thread_i.h). */
#include "thread_i.h"

int fb_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    int e = pthread_attr_init(&attr);
    if (e)
        return e;
    e = pthread_attr_setstacksize(&attr, FB_THREAD_STACK);
    if (!e)
        e = pthread_create(thread, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    return e;
}
