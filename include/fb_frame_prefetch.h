/* A background thread that decodes frames ahead of sequential readers
 * (the mount: a file read from start to end, or the files of a directory
 * read in archive order), so that the reader finds the next frame decoded
 * in the cache instead of waiting for it.
 *
 * The prefetcher knows nothing of archives: an owner (an archive reader,
 * fb_archive_reader_set_prefetcher) queues itself with the function that
 * does its work, and forgets itself before it is freed. At most one queued
 * job per owner; a full queue drops the request (prefetching is only ever
 * a hint: the reader decodes what it needs itself).
 *
 * Threads: every function is thread-safe. Lock order: an owner's own
 * locks are never held while calling into the prefetcher, and the
 * prefetcher holds none of its locks while a job runs. */
#ifndef FB_FRAME_PREFETCH_H
#define FB_FRAME_PREFETCH_H

#include <stdbool.h>

#include "fb_error.h"

typedef struct fb_frame_prefetcher fb_frame_prefetcher;

/* The thread starts with the first job queued, so that a process that
 * never reads sequentially never pays for it. Returns 0, FB_ENOMEM. */
int fb_frame_prefetcher_new(fb_frame_prefetcher **out, fb_error *err);
/* Stops and joins the thread. Every owner must have forgotten itself.
 * Accepts NULL. */
void fb_frame_prefetcher_free(fb_frame_prefetcher *p);

/* Queues run(owner) on the thread (starting it). False (nothing queued)
 * when the queue is full, owner already has a job queued, or the thread
 * cannot start. */
bool fb_frame_prefetcher_enqueue(fb_frame_prefetcher *p, void *owner, void (*run)(void *owner));
/* Removes owner's queued job, and waits for its running one to end: after
 * this, run(owner) is not running and will not run. */
void fb_frame_prefetcher_forget(fb_frame_prefetcher *p, void *owner);

#endif
