/* Retention (SPEC "Retention"): decides which backups go, with the rule
 * that decided each, and removes them crash-safely (index first, then the
 * directory renamed aside to .trash-* and deleted).
 *
 * Order is by seq, never by created_at: a clock that jumped backwards or
 * forwards can make a backup look old or young, but never makes the newest
 * backup stop being the newest. */
#include "fb_retention.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fb_fsutil.h"
#include "fb_hash.h"
#include "fb_store.h"

static bool older_than(int64_t now, int64_t created_at, uint32_t max_age_days)
{
    if (max_age_days == 0)
        return false;
    int64_t age;
    if (__builtin_sub_overflow(now, created_at, &age))
        /* Only a created_at at the far end of the range can overflow: far
         * in the past (age huge) when now is positive, else far in the future. */
        return created_at < 0;
    return age > (int64_t)max_age_days * 86400;
}

int fb_retention_plan(const fb_index *idx, const fb_retention_policy *policy, int64_t now,
                      fb_retention_decision **out, size_t *n_out, fb_error *err)
{
    *out = NULL;
    *n_out = 0;
    size_t n = idx->n;
    fb_retention_decision *d = calloc(n ? n : 1, sizeof *d);
    if (!d)
        return fb_error_set(err, FB_ENOMEM, "out of memory planning retention");
    if (n == 0) {
        *out = d;
        return 0;
    }

    /* Records are in seq order (fb_index keeps them so); newest is last. */
    size_t newest = n - 1;
    long newest_full = -1;
    for (size_t i = n; i-- > 0;) {
        if (idx->records[i].type == FB_BACKUP_FULL) {
            newest_full = (long)i;
            break;
        }
    }

    size_t remaining = 0;
    uint64_t newer_fulls = 0; /* full backups with a higher seq than i */
    for (size_t i = n; i-- > 0;) {
        const fb_index_record *r = &idx->records[i];
        memcpy(d[i].id, r->id, sizeof d[i].id);
        bool is_full = r->type == FB_BACKUP_FULL;
        if (i == newest) {
            d[i].remove = false;
            d[i].rule = FB_KEEP_NEWEST;
        } else if ((long)i == newest_full) {
            d[i].remove = false;
            d[i].rule = FB_KEEP_NEWEST_FULL;
        } else if (is_full && newer_fulls >= policy->keep_full) {
            d[i].remove = true;
            d[i].rule = FB_REMOVE_EXCESS_FULL;
        } else if (older_than(now, r->created_at, policy->max_age_days)) {
            d[i].remove = true;
            d[i].rule = FB_REMOVE_TOO_OLD;
        } else {
            d[i].remove = false;
            d[i].rule = FB_KEEP_POLICY;
        }
        if (!d[i].remove)
            remaining++;
        if (is_full)
            newer_fulls++;
    }

    /* min_keep gives back the newest of the removable ones first. */
    for (size_t i = n; i-- > 0 && remaining < policy->min_keep;) {
        if (d[i].remove) {
            d[i].remove = false;
            d[i].rule = FB_KEEP_MIN_KEEP;
            remaining++;
        }
    }
    *out = d;
    *n_out = n;
    return 0;
}

void fb_retention_describe(const fb_retention_decision *d, const fb_retention_policy *policy,
                           char *buf, size_t size)
{
    if (size == 0)
        return;
    switch (d->rule) {
    case FB_KEEP_NEWEST:
        snprintf(buf, size, "kept: newest backup");
        break;
    case FB_KEEP_NEWEST_FULL:
        snprintf(buf, size, "kept: newest full");
        break;
    case FB_KEEP_MIN_KEEP:
        snprintf(buf, size, "kept: min_keep %u", policy->min_keep);
        break;
    case FB_KEEP_POLICY:
        snprintf(buf, size, "kept: within policy");
        break;
    case FB_REMOVE_EXCESS_FULL:
        if (policy->keep_full == 1)
            snprintf(buf, size, "removed: not the newest full backup");
        else
            snprintf(buf, size, "removed: not among the %u newest full backups",
                     policy->keep_full);
        break;
    case FB_REMOVE_TOO_OLD:
        snprintf(buf, size, "removed: older than %u day%s", policy->max_age_days,
                 policy->max_age_days == 1 ? "" : "s");
        break;
    case FB_REMOVE_NAMED:
        snprintf(buf, size, "removed: named");
        break;
    default:
        snprintf(buf, size, "%s", d->remove ? "removed" : "kept");
        break;
    }
}

int fb_retention_apply(int session_fd, const char *session_id, fb_index *idx,
                       const fb_retention_decision *plan, size_t n, fb_error *err)
{
    size_t n_remove = 0;
    for (size_t i = 0; i < n; i++) {
        if (!plan[i].remove)
            continue;
        if (fb_index_find(idx, plan[i].id) < 0)
            return fb_error_set(err, FB_EMISUSE,
                                "retention plan names backup %s, which is not in the index of "
                                "session %s",
                                plan[i].id, session_id);
        n_remove++;
    }
    if (n_remove == 0)
        return 0;

    /* 1. Commit the index without the removed backups, built as a view over
     *    the kept records so that idx is untouched if the commit fails. */
    fb_index view = *idx;
    view.records = malloc((idx->n ? idx->n : 1) * sizeof *view.records);
    if (!view.records)
        return fb_error_set(err, FB_ENOMEM, "out of memory applying retention");
    view.n = 0;
    view.cap = idx->n;
    for (size_t r = 0; r < idx->n; r++) {
        bool removed = false;
        for (size_t i = 0; i < n && !removed; i++)
            removed = plan[i].remove && strcmp(plan[i].id, idx->records[r].id) == 0;
        if (!removed)
            view.records[view.n++] = idx->records[r];
    }
    int rc = fb_store_save_index(session_fd, session_id, &view, err);
    free(view.records);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (plan[i].remove) {
            rc = fb_index_remove(idx, plan[i].id, err);
            if (rc)
                return rc;
        }
    }

    /* 2. Rename each directory aside: once the rename is durable, a crash
     *    leaves only a .trash-* leftover, never a half-deleted backup dir
     *    that a rebuild could mistake for a backup. */
    char (*trash)[FB_BACKUP_ID_LEN + 32] = calloc(n_remove, sizeof *trash);
    if (!trash)
        return fb_error_set(err, FB_ENOMEM, "out of memory applying retention");
    size_t n_trash = 0;
    int first_rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (!plan[i].remove)
            continue;
        uint8_t raw[4];
        char hex[9];
        rc = fb_random_bytes(raw, sizeof raw, err);
        if (rc) {
            first_rc = rc;
            break;
        }
        fb_hex_encode(raw, sizeof raw, hex);
        char *name = trash[n_trash];
        snprintf(name, sizeof trash[0], FB_TRASH_PREFIX "%s-%s", plan[i].id, hex);
        if (renameat2(session_fd, plan[i].id, session_fd, name, RENAME_NOREPLACE) != 0) {
            if (errno == ENOENT)
                continue; /* already gone: nothing to remove */
            if (!first_rc)
                first_rc = fb_error_set_errno(err, errno, "cannot move %s/%s aside for removal",
                                              session_id, plan[i].id);
            continue;
        }
        n_trash++;
    }
    if (n_trash > 0) {
        rc = fb_fsync_dir(session_fd, session_id, first_rc ? NULL : err);
        if (rc && !first_rc)
            first_rc = rc;
    }

    /* 3. Delete. What a crash leaves here is cleared by the next run. */
    for (size_t t = 0; t < n_trash; t++) {
        rc = fb_remove_tree_at(session_fd, session_id, trash[t], first_rc ? NULL : err);
        if (rc && !first_rc)
            first_rc = rc;
    }
    if (n_trash > 0 && !first_rc)
        first_rc = fb_fsync_dir(session_fd, session_id, err);
    free(trash);
    return first_rc;
}
