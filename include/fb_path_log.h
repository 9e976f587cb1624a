/* The history of one path across a session's backups (SPEC "Other
 * commands", `log`): oldest first (seq order), one version per backup that
 * holds the path where its content differs from the previous backup that
 * holds it (entry type, size, SHA-256, symlink target); with `all`, every
 * backup that holds it, each marked changed or not.
 *
 * The content of a hardlink is its file's (the `link` entry's SHA-256):
 * a file that becomes a hardlink to an identical file is a change of type,
 * but a hardlink that comes to link to another path holding the same bytes
 * is not a change of content (diff counts it as `link`, metadata only).
 * A directory has no content: only a change of type is one.
 *
 * Memory: the manifests are read one at a time, each freed before the next
 * is read, so a session of many large backups costs one manifest plus one
 * small record per version, whatever the number of backups. Nothing is
 * written and no lock is taken. */
#ifndef FB_PATH_LOG_H
#define FB_PATH_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_error.h"
#include "fb_index.h"
#include "fb_store.h"
#include "fb_types.h"

/* The path as one backup holds it. */
typedef struct fb_path_version {
    char id[FB_BACKUP_ID_LEN + 1];
    uint64_t seq;
    fb_backup_type backup_type;
    int64_t created_at;      /* the manifest's, seconds since the epoch (UTC) */
    fb_entry_type entry_type;
    uint64_t size;           /* a hardlink's is its file's; a directory's 0 */
    bool has_sha256;         /* files, and hardlinks (their file's) */
    uint8_t sha256[FB_SHA256_LEN];
    char *target;            /* owned: a symlink's target, a hardlink's `link`; else NULL */
    bool changed;            /* differs from the previous backup holding the path (the
                              * first one always does) */
} fb_path_version;

typedef struct fb_path_log {
    char session_id[FB_SESSION_ID_MAX + 1];
    char *path;                /* owned, as checked (fb_path_log_check_path) */
    fb_path_version *versions; /* owned, oldest first */
    size_t n_versions;
    size_t n_backups;          /* backups of the session read */
    size_t n_holding;          /* of them, those that hold the path */
    size_t n_changes;          /* of them, those where it changed */
} fb_path_log;

typedef struct fb_path_log_request {
    const char *session_id;
    const char *path;   /* relative to the session dir; checked here */
    bool all;           /* every backup holding the path, changed or not */
    /* A backup of the index whose manifest is gone (removed since the index
     * was read: readers take no lock) is skipped with a warning. */
    fb_warn_fn warn;
    void *warn_ctx;
} fb_path_log_request;

/* Checks a path as a user types it and gives it as manifests store it:
 * "./" at its start and '/' at its end are dropped (`log ./logs/` is
 * `log logs`); empty, absolute, a "." or ".." component, an empty
 * component or a NUL is FB_EINVAL naming the path and the reason. *out is
 * malloc'd. */
int fb_path_log_check_path(const char *path, char **out, fb_error *err);

/* The history of req->path in req->session_id: idx is the session's index
 * (fb_store_load_index), whose records give the order; each backup's
 * manifest is read in turn. Returns 0 (*out owned: fb_path_log_free), or
 *   FB_EINVAL     a bad path (above);
 *   FB_ENOTFOUND  no backup of the session holds the path (the message
 *                 names the path, the session and how many backups were
 *                 read), or the session has no backups;
 *   FB_ECORRUPT   a manifest that fails to parse (named);
 *   FB_EIO, FB_ENOMEM, FB_EMISUSE. */
int fb_path_log_build(const fb_store *store, const fb_index *idx,
                      const fb_path_log_request *req, fb_path_log **out, fb_error *err);

/* Accepts NULL. */
void fb_path_log_free(fb_path_log *log);

#endif
