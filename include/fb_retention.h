/* Retention (SPEC "Retention"): which backups to remove, with the rule that
 * decided each, and the crash-safe removal (index first, rename aside to
 * .trash-*, delete). */
#ifndef FB_RETENTION_H
#define FB_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_config.h"
#include "fb_error.h"
#include "fb_index.h"

typedef enum fb_retention_rule {
    FB_KEEP_NEWEST,        /* "kept: newest backup" */
    FB_KEEP_NEWEST_FULL,   /* "kept: newest full" */
    FB_KEEP_MIN_KEEP,      /* "kept: min_keep N" */
    FB_KEEP_POLICY,        /* "kept: within policy" (among keep_full, younger than max age) */
    FB_REMOVE_EXCESS_FULL, /* "removed: not among the N newest full backups" */
    FB_REMOVE_TOO_OLD,     /* "removed: older than N days" */
    FB_REMOVE_NAMED,       /* "removed: named" (forget: the user's choice, no policy) */
} fb_retention_rule;

typedef struct fb_retention_decision {
    char id[FB_BACKUP_ID_LEN + 1];
    bool remove;
    fb_retention_rule rule;
} fb_retention_decision;

/* One decision per index record, in index order. *out is malloc'd. */
int fb_retention_plan(const fb_index *idx, const fb_retention_policy *policy, int64_t now,
                      fb_retention_decision **out, size_t *n_out, fb_error *err);

/* Human text for a decision, e.g. "removed: older than 30 days". */
void fb_retention_describe(const fb_retention_decision *d, const fb_retention_policy *policy,
                           char *buf, size_t size);

/* Applies the removals of a plan (caller holds the session lock; idx is the
 * session's current index and is updated): writes the index without them,
 * then renames each dir to .trash-<id>-<rand> and deletes it. */
int fb_retention_apply(int session_fd, const char *session_id, fb_index *idx,
                       const fb_retention_decision *plan, size_t n, fb_error *err);

#endif
