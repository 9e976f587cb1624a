/* The store on disk: finding the root and current session, validating ids,
 * opening .flowloom/backups/<session>/ and the backups in it, loading the
 * index (rebuilding it from manifests when missing, unreadable or
 * inconsistent), clearing leftovers of interrupted runs.
 *
 * Layout (SPEC): <root>/.flowloom/sessions/<sid>/ is the source,
 * <root>/.flowloom/backups/<sid>/{index.json,.lock,<backup_id>/} the store.
 * Everything is opened relative to directory fds with O_NOFOLLOW.
 * An fb_store may be used by several threads for reading (no shared state
 * changes after _open). */
#ifndef FB_STORE_H
#define FB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_error.h"
#include "fb_index.h"
#include "fb_ids.h"
#include "fb_manifest.h"
#include "fb_types.h"


/* Root discovery: explicit (--root) if not NULL, else env_root
 * ($FLOWLOOM_ROOT) if not NULL/empty, else the nearest directory at or above
 * cwd containing ".flowloom/". *out is malloc'd (absolute when found by
 * walking). FB_ENOTFOUND with a message saying how to set it. An explicit
 * root without .flowloom/ is FB_ENOTFOUND naming it. */
int fb_root_find(const char *explicit_root, const char *env_root, const char *cwd, char **out,
                 fb_error *err);
/* Where a session id came from, for messages that must say so (SPEC
 * "Finding things"): a typo in a stale current_session file or in the
 * environment is otherwise a mystery. */
typedef enum fb_session_origin {
    FB_SESSION_FROM_ARGUMENT, /* a positional argument */
    FB_SESSION_FROM_OPTION,   /* --session */
    FB_SESSION_FROM_ENV,      /* $FLOWLOOM_SESSION */
    FB_SESSION_FROM_FILE,     /* .flowloom/current_session */
} fb_session_origin;

/* Current session: env_session ($FLOWLOOM_SESSION) if set and non-empty,
 * else the first line of <root>/.flowloom/current_session. The result is
 * checked with fb_session_id_check. FB_ENOTFOUND naming both ways. *origin
 * (may be NULL) says which of the two it came from. */
int fb_current_session_find(const char *root, const char *env_session, char **out,
                            fb_session_origin *origin, fb_error *err);

typedef struct fb_store fb_store;

/* Opens <root>/.flowloom/backups (creating it 0700 when create is true).
 * FB_ENOTFOUND if .flowloom is missing, or backups/ is missing and !create. */
int fb_store_open(const char *root, bool create, fb_store **out, fb_error *err);
void fb_store_free(fb_store *store);
const char *fb_store_root(const fb_store *store);          /* as given */
const char *fb_store_backups_path(const fb_store *store);  /* <root>/.flowloom/backups */
int fb_store_backups_fd(const fb_store *store);            /* borrowed */

/* Opens the session's source dir .flowloom/sessions/<sid> (O_DIRECTORY,
 * O_NOFOLLOW: a symlinked session dir is refused). FB_ENOTFOUND if absent. */
int fb_store_open_source(const fb_store *store, const char *session_id, int *fd_out,
                         fb_error *err);
/* Opens .flowloom/backups/<sid> (creating it 0700 when create). */
int fb_store_open_session(const fb_store *store, const char *session_id, bool create,
                          int *fd_out, fb_error *err);
/* Sorted list of session ids that have a backups/<sid> dir (valid ids only).
 * *out is a malloc'd array of malloc'd strings. */
int fb_store_list_sessions(const fb_store *store, char ***out, size_t *n_out, fb_error *err);
void fb_string_list_free(char **list, size_t n);

/* Valid backup ids of the directories in the session dir that hold a
 * manifest.json (sorted by name). Leftovers and junk are ignored. */
int fb_store_list_backup_dirs(int session_fd, char ***out, size_t *n_out, fb_error *err);

/* Reads and strictly parses <sid>/<backup_id>/manifest.json, checking that
 * it names this backup id and session. FB_ENOTFOUND / FB_ECORRUPT. */
int fb_store_read_manifest(int session_fd, const char *session_id, const char *backup_id,
                           fb_manifest *out, fb_error *err);
/* Opens <sid>/<backup_id>/archive.tar.zst read-only (O_NOFOLLOW). */
int fb_store_open_archive(int session_fd, const char *backup_id, int *fd_out, fb_error *err);

enum {
    /* Write a rebuilt index back only if the session lock is free now. */
    FB_INDEX_LOAD_WRITE_BACK_IF_UNLOCKED = 1,
    /* The caller holds the session lock: write a rebuilt index back. */
    FB_INDEX_LOAD_LOCKED = 2,
};

/* Loads the session index. If index.json is missing, fails strict parsing,
 * or its ids differ from fb_store_list_backup_dirs (or a record disagrees
 * with its manifest when a manifest had to be read anyway), rebuilds it from
 * the manifests (skipping unreadable ones with a warning), reports
 * "index rebuilt: <reason>" through warn and sets *rebuilt. A session dir
 * that does not exist gives an empty index (not an error). */
int fb_store_load_index(const fb_store *store, const char *session_id, unsigned flags,
                        fb_index *out, bool *rebuilt, fb_warn_fn warn, void *warn_ctx,
                        fb_error *err);
/* Atomically writes index.json into the session dir. */
int fb_store_save_index(int session_fd, const char *session_id, const fb_index *idx,
                        fb_error *err);

/* Is name a recover's staging dir of session_id in .flowloom/sessions
 * (FB_RESTORE_STAGING_PREFIX "<sid>-<16 lowercase hex>")? */
bool fb_store_is_restore_staging(const char *name, const char *session_id);

/* Removes the leftovers of interrupted runs of the session (the caller
 * holds its lock): .tmp-* and .trash-* in its store dir session_fd, and the
 * staging dirs of interrupted recovers of it in .flowloom/sessions, except
 * those a running recover still holds (its flock on the dir: it extracts
 * before it takes the session lock). Reports each removal through warn.
 * Goes on past one that cannot be removed and returns the first error. */
int fb_store_clear_leftovers(const fb_store *store, int session_fd, const char *session_id,
                             fb_warn_fn warn, void *warn_ctx, fb_error *err);

/* The recover half of fb_store_clear_leftovers: the session's staging dirs
 * in .flowloom/sessions that no running recover holds (a recover holds its
 * own, so it may call this for its session). *removed_out (may be NULL)
 * gets how many went. Returns the first error, after trying them all. */
int fb_store_clear_restore_staging(const fb_store *store, const char *session_id,
                                   fb_warn_fn warn, void *warn_ctx, size_t *removed_out,
                                   fb_error *err);

/* What fb_store_clear_leftovers would remove now, for a dry run (changes
 * nothing): names in the store dir (session_fd; -1 when it has none), then
 * FB_SESSIONS_PATH "/<staging dir>". *out is NULL or a list to free with
 * fb_string_list_free. */
int fb_store_list_leftovers(const fb_store *store, int session_fd, const char *session_id,
                            char ***out, size_t *n_out, fb_error *err);

/* Resolves a backup as a user names it against the index: "latest",
 * "latest-full", a full id, or a prefix of an id or of its 6-hex suffix
 * that names exactly one backup. out gets the id. Returns FB_ENOTFOUND when
 * nothing matches (the message names the session), FB_EINVAL for a prefix
 * that matches several (the message names up to five) or a spec with
 * characters no id has. */
int fb_store_resolve_backup(const fb_index *idx, const char *spec,
                            char out[FB_BACKUP_ID_LEN + 1], fb_error *err);

#endif
