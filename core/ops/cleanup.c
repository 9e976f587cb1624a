/* The cleanup sequence for one session (see fb_cleanup.h): lock, leftovers,
 * index, plan, removal, in the order that keeps a crash at any point safe
 * (docs/crash-safety.md). */
#include "fb_cleanup.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fb_fsutil.h"
#include "fb_lock.h"

void fb_cleanup_result_init(fb_cleanup_result *r)
{
    memset(r, 0, sizeof *r);
}

void fb_cleanup_result_fini(fb_cleanup_result *r)
{
    if (!r)
        return;
    free(r->items);
    if (r->leftovers)
        fb_string_list_free(r->leftovers, r->n_leftovers);
    fb_cleanup_result_init(r);
}

static bool is_leftover(int dirfd, const char *name, void *ctx)
{
    (void)dirfd;
    (void)ctx;
    return strncmp(name, ".tmp-", 5) == 0 || strncmp(name, ".trash-", 7) == 0;
}

int fb_cleanup_run(fb_store *store, const fb_cleanup_request *req, fb_cleanup_result *out,
                   fb_error *err)
{
    fb_cleanup_result_init(out);
    int session_fd = -1;
    fb_lock lock = {.fd = -1};
    fb_index idx;
    fb_index_init(&idx, req->session_id);
    fb_retention_decision *plan = NULL;
    size_t n_plan = 0;
    int rc = fb_store_open_session(store, req->session_id, false, &session_fd, err);
    if (rc == FB_ENOTFOUND) {
        fb_error_clear(err);
        rc = 0;
    }
    if (rc)
        goto out;
    if (session_fd >= 0) {
        if (req->dry_run) {
            rc = fb_list_dir_names_at(session_fd, is_leftover, NULL, &out->leftovers,
                                      &out->n_leftovers);
            if (rc) {
                rc = fb_error_from_errno(err, rc, "%s/%s: cannot list leftovers",
                                         fb_store_backups_path(store), req->session_id);
                goto out;
            }
        } else if ((rc = fb_lock_acquire(session_fd, req->session_id, req->lock_wait_seconds,
                                         &lock, err)) != 0 ||
                   (rc = fb_store_clear_leftovers(session_fd, req->session_id, req->warn,
                                                  req->warn_ctx, err)) != 0) {
            goto out;
        }
        /* Under the lock a rebuilt index is written back before anything is
         * removed (FB_INDEX_LOAD_LOCKED fails if it cannot be), so removal
         * starts from an index that matches the manifests on disk. A dry run
         * keeps a rebuilt index in memory only. */
        fb_index_fini(&idx);
        rc = fb_store_load_index(store, req->session_id, req->dry_run ? 0 : FB_INDEX_LOAD_LOCKED,
                                 &idx, &out->index_rebuilt, req->warn, req->warn_ctx, err);
        if (rc)
            goto out;
    }
    rc = fb_retention_plan(&idx, &req->policy, req->now, &plan, &n_plan, err);
    if (rc)
        goto out;
    /* What the report shows of each backup, taken before the removal drops
     * the records (plan[i] is idx.records[i]). */
    if (n_plan && !(out->items = calloc(n_plan, sizeof *out->items))) {
        rc = fb_error_set(err, FB_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n_plan && i < idx.n; i++) {
        out->items[i] = (fb_cleanup_item){plan[i], idx.records[i].type, idx.records[i].created_at};
        out->n_removed += plan[i].remove;
    }
    out->n_items = n_plan;
    if (!req->dry_run && out->n_removed > 0)
        rc = fb_retention_apply(session_fd, req->session_id, &idx, plan, n_plan, err);
out:
    free(plan);
    fb_index_fini(&idx);
    fb_lock_release(&lock);
    if (session_fd >= 0)
        close(session_fd);
    return rc;
}
