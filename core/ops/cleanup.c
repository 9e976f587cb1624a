/* The cleanup sequence for one session (see fb_cleanup.h): lock, leftovers,
 * index, plan, removal, in the order that keeps a crash at any point safe
 * (docs/crash-safety.md). Its first half, fb_cleanup_session_open, is also
 * how forget opens a session, so the two cannot drift apart. */
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

int fb_cleanup_session_open(fb_store *store, const char *session_id, bool dry_run,
                            double lock_wait_seconds, fb_lock_wait_fn waiting,
                            void *waiting_ctx, fb_warn_fn warn, void *warn_ctx,
                            fb_cleanup_session *s, fb_error *err)
{
    s->fd = -1;
    s->lock.fd = -1;
    s->index_rebuilt = false;
    fb_index_init(&s->idx, session_id);
    int rc = fb_store_open_session(store, session_id, false, &s->fd, err);
    if (rc == FB_ENOTFOUND) {
        fb_error_clear(err);
        return 0;
    }
    if (rc)
        return rc;
    if (!dry_run &&
        ((rc = fb_lock_acquire(s->fd, session_id, lock_wait_seconds, waiting, waiting_ctx,
                               &s->lock, err)) != 0 ||
         (rc = fb_store_clear_leftovers(store, s->fd, session_id, warn, warn_ctx, err)) != 0))
        goto fail;
    /* Under the lock a rebuilt index is written back before anything is
     * removed (FB_INDEX_LOAD_LOCKED fails if it cannot be), so removal
     * starts from an index that matches the manifests on disk. A dry run
     * keeps a rebuilt index in memory only. */
    fb_index_fini(&s->idx);
    rc = fb_store_load_index(store, session_id, dry_run ? 0 : FB_INDEX_LOAD_LOCKED, &s->idx,
                             &s->index_rebuilt, warn, warn_ctx, err);
    if (rc == 0)
        return 0;
fail:
    fb_cleanup_session_close(s);
    return rc;
}

void fb_cleanup_session_close(fb_cleanup_session *s)
{
    if (!s)
        return;
    fb_index_fini(&s->idx);
    fb_lock_release(&s->lock);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

int fb_cleanup_run(fb_store *store, const fb_cleanup_request *req, fb_cleanup_result *out,
                   fb_error *err)
{
    fb_cleanup_result_init(out);
    fb_retention_decision *plan = NULL;
    size_t n_plan = 0;
    fb_cleanup_session s;
    int rc = fb_cleanup_session_open(store, req->session_id, req->dry_run,
                                     req->lock_wait_seconds, req->lock_waiting,
                                     req->lock_waiting_ctx, req->warn, req->warn_ctx, &s, err);
    if (rc)
        return rc;
    out->index_rebuilt = s.index_rebuilt;
    if (req->dry_run &&
        (rc = fb_store_list_leftovers(store, s.fd, req->session_id, &out->leftovers,
                                      &out->n_leftovers, err)) != 0)
        goto out;
    rc = fb_retention_plan(&s.idx, &req->policy, req->now, &plan, &n_plan, err);
    if (rc)
        goto out;
    /* What the report shows of each backup, taken before the removal drops
     * the records (plan[i] is idx.records[i]). */
    if (n_plan && !(out->items = calloc(n_plan, sizeof *out->items))) {
        rc = fb_error_set(err, FB_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n_plan && i < s.idx.n; i++) {
        out->items[i] =
            (fb_cleanup_item){plan[i], s.idx.records[i].type, s.idx.records[i].created_at};
        out->n_removed += plan[i].remove;
    }
    out->n_items = n_plan;
    if (!req->dry_run && out->n_removed > 0)
        rc = fb_retention_apply(s.fd, req->session_id, &s.idx, plan, n_plan, err);
out:
    free(plan);
    fb_cleanup_session_close(&s);
    return rc;
}
