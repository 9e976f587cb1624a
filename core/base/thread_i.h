/* Starting core's helper threads (compression workers, hash lane, the
 * live check, prefetchers, the mount's janitor) with a small stack.
 *
 * glibc gives every thread a stack of RLIMIT_STACK (8 MiB here), and all of
 * it counts against the address-space limit (ulimit -v, prlimit --as) even
 * untouched: a backup's five helper threads reserved 40 MiB that way, so
 * under a limit the backup failed at 100 MiB of address space for a 3 MiB
 * session. Our threads keep buffers on the heap; what they put on the stack
 * (error structs, a path, zstd's and libarchive's frames) fits well within
 * FB_THREAD_STACK. Thread-safe, as pthread_create. */
#ifndef FB_THREAD_I_H
#define FB_THREAD_I_H

#include <pthread.h>

#define FB_THREAD_STACK (1024u * 1024u)

/* pthread_create with a FB_THREAD_STACK stack, detached or not as the
 * default. Returns 0 or the errno value pthread_create returns (EAGAIN when
 * there is no memory or thread left). */
int fb_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg);

#endif
