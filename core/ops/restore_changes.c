/* The change list of a restore (fb_restore_result.changes): what putting the
 * restored tree (fb_as_of.h) in place does, or with dry_run would do, to
 * each path of the destination. The live tree is walked and each entry compared by
 * core/store/live.c, exactly as `diff --live` does, so that the two
 * commands agree on what is modified and on a file they cannot read
 * (modified, with a warning). With --path (without --only) it also decides
 * which live entries the selection removes. For a merge (--only) it is also the check,
 * made before anything moves, that no entry would be written through a
 * symlink or replace a directory. */
#include "restore_i.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fb_path_match.h"
#include "fb_text.h"
#include "live_i.h"

void fb_restore_changes_clear(fb_restore_result *res)
{
    for (size_t i = 0; i < res->n_changes; i++)
        free(res->changes[i].path);
    free(res->changes);
    res->changes = NULL;
    res->n_changes = 0;
    res->n_added = res->n_modified = res->n_removed = res->n_changed = 0;
}

static int add_change(run *r, const char *path, fb_change_kind kind)
{
    fb_restore_result *o = r->out;
    if (o->n_changes == r->changes_cap) {
        size_t cap = r->changes_cap ? r->changes_cap * 2 : 16;
        fb_restore_change *nc = realloc(o->changes, cap * sizeof *nc);
        if (!nc)
            return restore_oom(r->err);
        o->changes = nc;
        r->changes_cap = cap;
    }
    char *p = strdup(path);
    if (!p)
        return restore_oom(r->err);
    o->changes[o->n_changes].path = p;
    o->changes[o->n_changes].kind = kind;
    o->n_changes++;
    switch (kind) {
    case FB_CHANGE_ADDED: o->n_added++; break;
    case FB_CHANGE_MODIFIED: o->n_modified++; break;
    case FB_CHANGE_REMOVED: o->n_removed++; break;
    case FB_CHANGE_CHANGED: o->n_changed++; break;
    }
    return 0;
}

static int cmp_change(const void *a, const void *b)
{
    return strcmp(((const fb_restore_change *)a)->path, ((const fb_restore_change *)b)->path);
}

static int all_added(run *r)
{
    for (size_t i = 0; i < r->tree->n_entries; i++) {
        int rc = add_change(r, r->tree->entries[i].e.path, FB_CHANGE_ADDED);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The SHA-256 of e's content: a hardlink's is its file's, an entry of the
 * tree (NULL if the tree lacks it, which then never matches). */
static const uint8_t *content_sha256(const run *r, const fb_manifest_entry *e)
{
    if (e->meta.type != FB_ENTRY_HARDLINK)
        return e->sha256;
    long j = fb_as_of_find(r->tree, e->target, strlen(e->target));
    return j >= 0 ? r->tree->entries[j].e.sha256 : NULL;
}

/* Modes count as they would be restored, owners only when they are. */
static fb_live_rules restore_rules(const run *r)
{
    return (fb_live_rules){.owner = r->req->same_owner, .written_mode = restore_mode};
}

static int add_if_differs(run *r, const char *path, unsigned differs)
{
    return differs ? add_change(r, path, fb_change_kind_of(differs)) : 0;
}

/* The tree swapped in for the live one: added, modified, changed, removed.
 * The walk keeps special files: the swap removes them too. */
static int changes_full(run *r, fb_live *lv)
{
    int rc = fb_live_walk(lv, NULL, true, r->err);
    if (rc < 0)
        return rc;
    fb_live_rules rules = restore_rules(r);
    size_t i = 0, j = 0, n = r->tree->n_entries, n_live = lv->tree.n;
    while (rc == 0 && (i < n || j < n_live)) {
        const fb_manifest_entry *e = i < n ? &r->tree->entries[i].e : NULL;
        const fb_scan_entry *l = j < n_live ? &lv->tree.entries[lv->by_path[j]] : NULL;
        int c = !e ? 1 : !l ? -1 : strcmp(e->path, l->path);
        if (c < 0) {
            rc = add_change(r, e->path, FB_CHANGE_ADDED);
            i++;
        } else if (c > 0) {
            rc = add_change(r, l->path, FB_CHANGE_REMOVED);
            j++;
        } else {
            unsigned differs;
            rc = fb_live_compare(lv, lv->by_path[j], e, content_sha256(r, e), &rules, &differs,
                                 r->err);
            if (rc == 0)
                rc = add_if_differs(r, e->path, differs);
            i++;
            j++;
        }
    }
    return rc;
}

/* The live entry at e's path, reached without following a symlink. Refuses
 * (FB_EINVAL) a symlink or non-directory on the way, and a directory where
 * e is not one or the reverse: a merge (--only, --path) neither writes
 * through them nor replaces them. Returns 0 (*live filled), 1 (absent) or an
 * error. */
static int find_live_entry(run *r, int root_fd, const fb_manifest_entry *e, fb_scan_entry *live)
{
    int pfd;
    const char *base;
    int rc = fb_restore_walk_parent(r, root_fd, r->dest_shown, e->path, false, &pfd, &base);
    if (rc < 0)
        return rc;
    if (rc == FB_RESTORE_WALK_CONFLICT)
        return FB_EINVAL;
    if (rc == FB_RESTORE_WALK_ABSENT)
        return 1;
    int er = fb_live_lstat(pfd, base, e->path, live);
    close(pfd);
    char esc[600];
    fb_path_escape(e->path, esc, sizeof esc);
    if (er == ENOENT)
        return 1;
    if (er == ENOMEM)
        return restore_oom(r->err);
    if (er)
        return fb_error_set_errno(r->err, er, "%s: cannot stat %s", r->dest_shown, esc);
    bool want_dir = e->meta.type == FB_ENTRY_DIR;
    if (want_dir == (live->type == FB_ENTRY_DIR))
        return 0;
    bool is_link = live->type == FB_ENTRY_SYMLINK;
    fb_live_entry_fini(live);
    if (want_dir)
        return fb_error_set(r->err, FB_EINVAL,
                            "%s: %s is %s, the backup has a directory there; refusing to restore "
                            "through it",
                            r->dest_shown, esc, is_link ? "a symlink" : "not a directory");
    return fb_error_set(r->err, FB_EINVAL,
                        "%s: %s is a directory, the backup has a %s there; a recover with "
                        "--only or --path does not replace directories",
                        r->dest_shown, esc, fb_entry_type_name(e->meta.type));
}

/* The backup's (or the selected) entries merged into the live tree (--only,
 * --path): what happens to each of them; only those paths are looked at. */
static int changes_merge(run *r, fb_live *lv)
{
    fb_live_rules rules = restore_rules(r);
    for (size_t i = 0; i < r->tree->n_entries; i++) {
        const fb_manifest_entry *e = &r->tree->entries[i].e;
        fb_scan_entry live;
        int rc = find_live_entry(r, lv->root_fd, e, &live);
        if (rc < 0)
            return rc;
        if (rc > 0) {
            if ((rc = add_change(r, e->path, FB_CHANGE_ADDED)) < 0)
                return rc;
            continue;
        }
        unsigned differs;
        rc = fb_live_compare_entry(lv, &live, e, content_sha256(r, e), &rules, &differs, r->err);
        fb_live_entry_fini(&live);
        if (rc == 0)
            rc = add_if_differs(r, e->path, differs);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Whether one of the --path patterns matches path. */
static bool selected_by_paths(const run *r, const char *path)
{
    for (size_t p = 0; p < r->req->n_paths; p++)
        if (fb_path_pattern_matches(r->req->paths[p], path))
            return true;
    return false;
}

/* The index in lv->by_path of the live entry at p[0..n), or -1. */
static long find_live(const fb_live *lv, const char *p, size_t n)
{
    size_t lo = 0, hi = lv->tree.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *q = lv->tree.entries[lv->by_path[mid]].path;
        int c = strncmp(q, p, n);
        if (c == 0)
            c = q[n] ? 1 : 0;
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* --path into the session dir (without --only): what a whole recover does
 * to the session, made to the part the patterns select. A live entry the
 * patterns match that the selection does not hold is removed, as a whole
 * recover removes what its tree does not hold; nothing else is. So a
 * directory goes only when everything below it goes too: a directory
 * that "artifacts/?*" matches may hold entries that no pattern matches, and
 * those stay (with it). The walk is visited in reverse path order, so an entry's
 * children are decided before it. */
static int changes_removed_by_paths(run *r, fb_live *lv)
{
    int rc = fb_live_walk(lv, NULL, true, r->err);
    if (rc < 0)
        return rc;
    size_t n = lv->tree.n;
    unsigned char *stays = calloc(n ? n : 1, 1);
    if (!stays)
        return restore_oom(r->err);
    for (size_t k = n; k-- > 0 && rc == 0;) {
        const char *p = lv->tree.entries[lv->by_path[k]].path;
        if (!stays[k] && fb_as_of_find(r->tree, p, strlen(p)) < 0 && selected_by_paths(r, p)) {
            rc = add_change(r, p, FB_CHANGE_REMOVED);
            continue;
        }
        const char *slash = strrchr(p, '/');
        long parent = slash ? find_live(lv, p, (size_t)(slash - p)) : -1;
        if (parent >= 0)
            stays[parent] = 1;
    }
    free(stays);
    return rc;
}

int fb_restore_compute_changes(run *r)
{
    fb_restore_changes_clear(r->out);
    r->changes_cap = 0;
    int root_fd = -1;
    if (r->into_session && r->parent_fd >= 0) {
        root_fd = openat(r->parent_fd, r->dest_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
                                                          O_CLOEXEC);
        if (root_fd < 0 && errno != ENOENT)
            return fb_error_set_errno(r->err, errno, "cannot open %s", r->dest_shown);
    }
    int rc;
    if (root_fd < 0) {
        rc = all_added(r);
    } else {
        fb_live lv;
        rc = fb_live_init(&lv, root_fd, r->dest_shown, r->req->warn, r->req->warn_ctx, r->err);
        if (rc == 0)
            rc = r->merge ? changes_merge(r, &lv) : changes_full(r, &lv);
        if (rc == 0 && r->merge && r->req->n_paths > 0 && !r->req->only)
            rc = changes_removed_by_paths(r, &lv);
        fb_live_fini(&lv);
        close(root_fd);
    }
    if (rc < 0)
        return rc;
    if (r->out->n_changes > 1)
        qsort(r->out->changes, r->out->n_changes, sizeof *r->out->changes, cmp_change);
    return 0;
}
