/* The monotonic clock in seconds, for durations, timeouts and cache ages in
 * core (never for stored timestamps, which are wall-clock time). Header-only:
 * one line of work that four modules need. */
#ifndef FB_CLOCK_I_H
#define FB_CLOCK_I_H

#include <time.h>

static inline double fb_monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
