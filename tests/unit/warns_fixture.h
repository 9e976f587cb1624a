/* Shared by the unit tests that run whole operations (backup, diff,
 * restore): a warning sink that keeps every message core hands it, and a
 * search over them. */
#ifndef WARNS_FIXTURE_H
#define WARNS_FIXTURE_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct warns {
    char *msgs[512];
    size_t n;
} warns;

/* An fb_warn_fn: ctx is a warns. */
static inline void collect_warn(void *ctx, const char *msg)
{
    warns *w = ctx;
    if (w->n < sizeof w->msgs / sizeof w->msgs[0])
        w->msgs[w->n++] = strdup(msg);
}

static inline bool warns_has(const warns *w, const char *needle)
{
    for (size_t i = 0; i < w->n; i++)
        if (w->msgs[i] && strstr(w->msgs[i], needle))
            return true;
    return false;
}

static inline void warns_free(warns *w)
{
    for (size_t i = 0; i < w->n; i++)
        free(w->msgs[i]);
    w->n = 0;
}

#endif
