/* `log`: the history of one path across a session's backups
 * (include/fb_path_log.h). The backups are taken in the index's seq order
 * and their manifests read one at a time: only the path's entry (and for a
 * hardlink its file's SHA-256) is kept of each, so memory is one manifest
 * plus a small record per version however many backups the session has. */
#include "fb_path_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fb_manifest.h"
#include "fb_text.h"
#include "manifest_i.h"

static int oom(fb_error *err)
{
    return fb_error_set(err, FB_ENOMEM, "out of memory");
}

void fb_path_log_free(fb_path_log *log)
{
    if (!log)
        return;
    for (size_t i = 0; i < log->n_versions; i++)
        free(log->versions[i].target);
    free(log->versions);
    free(log->path);
    free(log);
}

int fb_path_log_check_path(const char *path, char **out, fb_error *err)
{
    *out = NULL;
    if (!path)
        return fb_error_set(err, FB_EMISUSE, "fb_path_log_check_path: missing path");
    char quoted[FB_TEXT_QUOTE_SIZE(FB_TEXT_QUOTE_CUT)];
    fb_text_quote(path, quoted, sizeof quoted);
    if (path[0] == '/')
        return fb_error_set(err, FB_EINVAL,
                            "path '%s' is absolute: give it relative to the session directory "
                            "(e.g. state.json, logs/run.log)",
                            quoted);
    /* What a shell's completion adds: "./" in front, '/' after a directory. */
    const char *p = path;
    while (p[0] == '.' && p[1] == '/') {
        p += 2;
        while (*p == '/')
            p++;
    }
    size_t n = strlen(p);
    while (n > 0 && p[n - 1] == '/')
        n--;
    const char *problem = fb_manifest_path_problem(p, n);
    if (problem)
        return fb_error_set(err, FB_EINVAL,
                            "path '%s' %s%s: give a path relative to the session directory "
                            "(e.g. state.json, logs/run.log)",
                            quoted,
                            strncmp(problem, "has", 3) && strncmp(problem, "ends", 4) ? "is "
                                                                                     : "",
                            problem);
    if (!(*out = strndup(p, n)))
        return oom(err);
    return 0;
}

/* The index of m's entry at path, or -1. A linear scan: the manifest is read
 * once for one path, and sorting it would cost more than looking. */
static long find_entry(const fb_manifest *m, const char *path)
{
    for (size_t i = 0; i < m->n_entries; i++)
        if (strcmp(m->entries[i].path, path) == 0)
            return (long)i;
    return -1;
}

/* The path's version in manifest m (which holds it at entry i). */
static int version_of(const fb_manifest *m, size_t i, fb_path_version *v, fb_error *err)
{
    const fb_manifest_entry *e = &m->entries[i];
    memset(v, 0, sizeof *v);
    memcpy(v->id, m->backup_id, sizeof v->id);
    v->seq = m->seq;
    v->backup_type = m->type;
    v->created_at = m->created_at;
    v->entry_type = e->meta.type;
    v->size = e->meta.type == FB_ENTRY_DIR ? 0 : e->meta.size;
    if (e->meta.type == FB_ENTRY_FILE) {
        v->has_sha256 = true;
        memcpy(v->sha256, e->sha256, FB_SHA256_LEN);
    } else if (e->meta.type == FB_ENTRY_HARDLINK && e->target) {
        /* The parser made sure `link` names an earlier file entry. */
        long f = find_entry(m, e->target);
        if (f >= 0 && m->entries[f].meta.type == FB_ENTRY_FILE) {
            v->has_sha256 = true;
            memcpy(v->sha256, m->entries[f].sha256, FB_SHA256_LEN);
        }
    }
    if (e->target && !(v->target = strdup(e->target)))
        return oom(err);
    return 0;
}

/* Whether b's content differs from a's: entry type, size, SHA-256, symlink
 * target (a hardlink's `link` is structure, not content). */
static bool content_differs(const fb_path_version *a, const fb_path_version *b)
{
    if (a->entry_type != b->entry_type || a->size != b->size ||
        a->has_sha256 != b->has_sha256)
        return true;
    if (a->has_sha256 && memcmp(a->sha256, b->sha256, FB_SHA256_LEN) != 0)
        return true;
    if (a->entry_type == FB_ENTRY_SYMLINK)
        return strcmp(a->target ? a->target : "", b->target ? b->target : "") != 0;
    return false;
}

/* Reads backup `id`'s manifest and, if it holds the path, its version into
 * *v (*held set). Returns 0, 1 for a manifest gone since the index was read
 * (skipped with a warning), or an error. */
static int read_version(int sfd, const fb_path_log *log, const fb_path_log_request *req,
                        const char *id, fb_path_version *v, bool *held, fb_error *err)
{
    *held = false;
    fb_manifest m;
    fb_manifest_init(&m);
    int rc = fb_store_read_manifest(sfd, log->session_id, id, &m, err);
    if (rc == FB_ENOTFOUND) {
        fb_warnf(req->warn, req->warn_ctx,
                 "session %s: backup %s is gone (removed while the log was read); skipped",
                 log->session_id, id);
        fb_error_clear(err);
        rc = 1;
    } else if (rc == 0) {
        long i = find_entry(&m, log->path);
        if (i >= 0) {
            rc = version_of(&m, (size_t)i, v, err);
            *held = rc == 0;
        }
    }
    fb_manifest_fini(&m);
    return rc;
}

/* Keeps v in the log when it changed or with `all`; else frees it. The last
 * version held is kept aside in *prev for the next comparison either way. */
static int record(fb_path_log *log, bool all, fb_path_version *v, fb_path_version *prev,
                  bool *have_prev, fb_error *err)
{
    v->changed = !*have_prev || content_differs(prev, v);
    log->n_holding++;
    log->n_changes += v->changed;
    free(prev->target);
    *prev = *v;
    prev->target = NULL;
    if (v->target && !(prev->target = strdup(v->target))) {
        free(v->target);
        return oom(err);
    }
    *have_prev = true;
    if (!v->changed && !all) {
        free(v->target);
        return 0;
    }
    fb_path_version *nv = realloc(log->versions, (log->n_versions + 1) * sizeof *nv);
    if (!nv) {
        free(v->target);
        return oom(err);
    }
    log->versions = nv;
    log->versions[log->n_versions++] = *v;
    return 0;
}

static int walk_backups(const fb_store *store, const fb_index *idx,
                        const fb_path_log_request *req, fb_path_log *log, fb_error *err)
{
    int sfd = -1;
    int rc = fb_store_open_session(store, req->session_id, false, &sfd, err);
    fb_path_version prev;
    memset(&prev, 0, sizeof prev);
    bool have_prev = false;
    for (size_t k = 0; rc == 0 && k < idx->n; k++) {
        fb_path_version v;
        bool held = false;
        rc = read_version(sfd, log, req, idx->records[k].id, &v, &held, err);
        if (rc == 1) {
            rc = 0;
            continue;
        }
        log->n_backups += rc == 0;
        if (rc == 0 && held)
            rc = record(log, req->all, &v, &prev, &have_prev, err);
    }
    free(prev.target);
    if (sfd >= 0)
        close(sfd);
    return rc;
}

int fb_path_log_build(const fb_store *store, const fb_index *idx,
                      const fb_path_log_request *req, fb_path_log **out, fb_error *err)
{
    if (!store || !idx || !req || !req->session_id || !out)
        return fb_error_set(err, FB_EMISUSE, "fb_path_log_build: missing argument");
    *out = NULL;
    int rc = fb_session_id_check(req->session_id, err);
    if (rc < 0)
        return rc;
    fb_path_log *log = calloc(1, sizeof *log);
    if (!log)
        return oom(err);
    memcpy(log->session_id, req->session_id, strlen(req->session_id) + 1);
    rc = fb_path_log_check_path(req->path, &log->path, err);
    if (rc == 0 && idx->n == 0)
        rc = fb_error_set(err, FB_ENOTFOUND, "session %s has no backups", req->session_id);
    if (rc == 0)
        rc = walk_backups(store, idx, req, log, err);
    if (rc == 0 && log->n_holding == 0) {
        char esc[600];
        fb_path_escape(log->path, esc, sizeof esc);
        rc = fb_error_set(err, FB_ENOTFOUND,
                          "path %s is in no backup of session %s (%zu backup%s read)",
                          esc, req->session_id, log->n_backups, log->n_backups == 1 ? "" : "s");
    }
    if (rc < 0) {
        fb_path_log_free(log);
        return rc;
    }
    *out = log;
    return 0;
}
