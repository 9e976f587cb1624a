/* `forget`: removes the backups a user names (see fb_forget.h). The session
 * is opened for removal as cleanup opens it (fb_cleanup_session_open: lock,
 * leftovers, an index that matches the disk) and the removal is retention's
 * (fb_retention_apply), so a crash at any point leaves what a crashed
 * cleanup leaves (docs/crash-safety.md). What is new here is only which
 * backups go: the names, resolved all at once, and the rule for bases. */
#include "fb_forget.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fb_cleanup.h"
#include "fb_index.h"
#include "fb_retention.h"

/* Ids named in a message; enough to act on, short enough to read. */
#define LISTED_MAX 5

void fb_forget_result_init(fb_forget_result *r)
{
    memset(r, 0, sizeof *r);
}

void fb_forget_result_fini(fb_forget_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_items; i++)
        free(r->items[i].named_as);
    free(r->items);
    fb_forget_result_init(r);
}

/* Resolves every name before anything is removed: a typo or an ambiguous
 * prefix among several names must not leave the others half done. The
 * first failure's code and message are kept (so an ambiguous name stays
 * FB_EINVAL, an unknown one FB_ENOTFOUND) and say that nothing went.
 * named_as[i] gets the first name that resolved to record i. */
static int resolve_names(const fb_index *idx, const fb_forget_request *req,
                         const char **named_as, fb_error *err)
{
    fb_error first;
    fb_error_clear(&first);
    size_t failed = 0;
    for (size_t k = 0; k < req->n_names; k++) {
        char id[FB_BACKUP_ID_LEN + 1];
        fb_error e;
        fb_error_clear(&e);
        if (fb_store_resolve_backup(idx, req->names[k], id, &e) != 0) {
            if (failed++ == 0)
                first = e;
            continue;
        }
        long i = fb_index_find(idx, id);
        if (i >= 0 && !named_as[i])
            named_as[i] = req->names[k];
    }
    if (failed == 0)
        return 0;
    if (failed > 1)
        return fb_error_set(err, first.code,
                            "%s (and %zu more of the %zu names could not be resolved); nothing "
                            "was removed",
                            first.message, failed - 1, req->n_names);
    return fb_error_set(err, first.code, "%s; nothing was removed", first.message);
}

/* Appends "a, b, c and N more" for the records i with pick[i] set. */
static void list_ids(const fb_index *idx, const bool *pick, char *buf, size_t size)
{
    size_t used = strlen(buf), listed = 0, total = 0;
    for (size_t i = 0; i < idx->n; i++) {
        if (!pick[i])
            continue;
        if (listed < LISTED_MAX && used < size) {
            int w = snprintf(buf + used, size - used, "%s%s", listed ? ", " : "",
                             idx->records[i].id);
            used += w > 0 ? (size_t)w : 0;
            listed++;
        }
        total++;
    }
    if (total > listed && used < size)
        snprintf(buf + used, size - used, " and %zu more", total - listed);
}

/* The rule for bases. An incremental holds only the state files; `recover`
 * of it restores its base with the incrementals up to it laid over it, and
 * without its base that fails (SPEC: exit 3, `--only` needed) and the
 * mount's as-of/ shows the incrementals alone. So removing a full backup
 * quietly changes what every incremental based on it restores. Retention
 * may do that: it is a policy the user configured, and it always keeps the
 * newest full. A one-off forget is a decision about chosen backups, so it
 * must be explicit: the user names those incrementals too, or asks for them
 * to go with their base (with_incrementals). Keeping them without it is
 * not offered: they would restore only with `--only`, which a one-off
 * command should not leave behind by surprise. restic and borg have no
 * bases (every snapshot is complete), so they have no rule to copy; this is
 * the refusal `git branch -d` makes for unmerged work, with its way out.
 *
 * doomed[i] is set for every record that goes; base_of[i] for the ones
 * taken along. */
static int apply_base_rule(const fb_index *idx, const fb_forget_request *req,
                           const char **named_as, bool *doomed,
                           char (*base_of)[FB_BACKUP_ID_LEN + 1], fb_error *err)
{
    size_t n = idx->n;
    bool *orphan = calloc(n ? n : 1, sizeof *orphan);
    bool *orphaned_base = calloc(n ? n : 1, sizeof *orphaned_base);
    if (!orphan || !orphaned_base) {
        free(orphan);
        free(orphaned_base);
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    }
    size_t n_orphans = 0;
    for (size_t i = 0; i < n; i++) {
        const fb_index_record *r = &idx->records[i];
        if (doomed[i] || r->type != FB_BACKUP_INCREMENTAL || !r->base[0])
            continue;
        long b = fb_index_find(idx, r->base);
        if (b < 0 || !named_as[b] || idx->records[b].type != FB_BACKUP_FULL)
            continue;
        if (req->with_incrementals) {
            doomed[i] = true;
            memcpy(base_of[i], r->base, sizeof base_of[i]);
        } else {
            orphan[i] = true;
            orphaned_base[b] = true;
            n_orphans++;
        }
    }
    int rc = 0;
    if (n_orphans) {
        size_t n_bases = 0;
        for (size_t i = 0; i < n; i++)
            n_bases += orphaned_base[i];
        char fulls[LISTED_MAX * (FB_BACKUP_ID_LEN + 2) + 32] = "";
        char incrs[LISTED_MAX * (FB_BACKUP_ID_LEN + 2) + 32] = "";
        list_ids(idx, orphaned_base, fulls, sizeof fulls);
        list_ids(idx, orphan, incrs, sizeof incrs);
        rc = fb_error_set(err, FB_EINVAL,
                          "full backup%s %s of session %s %s the base of incremental backup%s "
                          "%s, which would remain and could no longer be recovered as they "
                          "stood: name %s too, or give --with-incrementals to remove %s with "
                          "%s; nothing was removed",
                          n_bases == 1 ? "" : "s", fulls, idx->session_id,
                          n_bases == 1 ? "is" : "are", n_orphans == 1 ? "" : "s", incrs,
                          n_orphans == 1 ? "it" : "them", n_orphans == 1 ? "it" : "them",
                          n_bases == 1 ? "its base" : "their bases");
    }
    free(orphan);
    free(orphaned_base);
    return rc;
}

/* The report, taken before the removal drops the records. */
static int fill_items(const fb_index *idx, const char **named_as, const bool *doomed,
                      char (*base_of)[FB_BACKUP_ID_LEN + 1], fb_forget_result *out,
                      fb_error *err)
{
    size_t n = 0;
    for (size_t i = 0; i < idx->n; i++)
        n += doomed[i];
    if (n == 0)
        return 0;
    if (!(out->items = calloc(n, sizeof *out->items)))
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    for (size_t i = 0; i < idx->n; i++) {
        if (!doomed[i])
            continue;
        const fb_index_record *r = &idx->records[i];
        fb_forget_item *it = &out->items[out->n_items++];
        memcpy(it->id, r->id, sizeof it->id);
        it->type = r->type;
        it->created_at = r->created_at;
        it->stored_bytes = r->stored_bytes;
        memcpy(it->base, base_of[i], sizeof it->base);
        if (named_as[i] && !(it->named_as = strdup(named_as[i])))
            return fb_error_set(err, FB_ENOMEM, "out of memory");
    }
    return 0;
}

int fb_forget_run(fb_store *store, const fb_forget_request *req, fb_forget_result *out,
                  fb_error *err)
{
    fb_forget_result_init(out);
    if (req->n_names == 0)
        return fb_error_set(err, FB_EINVAL, "no backup named: nothing to remove");
    fb_cleanup_session s;
    int rc = fb_cleanup_session_open(store, req->session_id, req->dry_run,
                                     req->lock_wait_seconds, req->lock_waiting,
                                     req->lock_waiting_ctx, req->warn, req->warn_ctx, &s, err);
    if (rc)
        return rc;
    out->index_rebuilt = s.index_rebuilt;
    size_t n = s.idx.n ? s.idx.n : 1;
    const char **named_as = calloc(n, sizeof *named_as);
    bool *doomed = calloc(n, sizeof *doomed);
    char (*base_of)[FB_BACKUP_ID_LEN + 1] = calloc(n, sizeof *base_of);
    fb_retention_decision *plan = NULL;
    if (!named_as || !doomed || !base_of) {
        rc = fb_error_set(err, FB_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = resolve_names(&s.idx, req, named_as, err)) != 0)
        goto out;
    for (size_t i = 0; i < s.idx.n; i++)
        doomed[i] = named_as[i] != NULL;
    if ((rc = apply_base_rule(&s.idx, req, named_as, doomed, base_of, err)) != 0 ||
        (rc = fill_items(&s.idx, named_as, doomed, base_of, out, err)) != 0)
        goto out;
    out->n_remaining = s.idx.n - out->n_items;
    if (req->dry_run)
        goto out;
    if (!(plan = calloc(out->n_items, sizeof *plan))) {
        rc = fb_error_set(err, FB_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t k = 0; k < out->n_items; k++) {
        memcpy(plan[k].id, out->items[k].id, sizeof plan[k].id);
        plan[k].remove = true;
        plan[k].rule = FB_REMOVE_NAMED;
    }
    rc = fb_retention_apply(s.fd, req->session_id, &s.idx, plan, out->n_items, err);
    out->n_remaining = s.idx.n;
out:
    free(plan);
    free(base_of);
    free(doomed);
    free(named_as);
    fb_cleanup_session_close(&s);
    return rc;
}
