/* What store.c shares with the other modules of the store layer (the
 * manifest cache reads a backup's manifest as store.c does). */
#ifndef FB_STORE_I_H
#define FB_STORE_I_H

#include <sys/stat.h>

#include "fb_manifest.h"

/* Opens <sid>/<backup_id>/ of session_fd without following a symlink.
 * session_id (may be NULL) only names the session in messages.
 * Returns 0, FB_EINVAL (not a backup id), FB_ENOTFOUND, FB_ECORRUPT (not a
 * directory), FB_EIO. */
int fb_store_open_backup_dir(int session_fd, const char *session_id, const char *backup_id,
                             int *fd_out, fb_error *err);

/* Reads and strictly parses manifest.json of the backup directory
 * backup_fd (session_id/backup_id, for messages and the id checks of
 * fb_store_manifest_names): fb_store_read_manifest once the directory is
 * open. *st_out (may be NULL) is the fstat of the very file read. */
int fb_store_parse_manifest_at(int backup_fd, const char *session_id, const char *backup_id,
                               fb_manifest *out, struct stat *st_out, fb_error *err);

/* 0 when m names this backup: its backup_id, its session_id and its type;
 * FB_ECORRUPT naming source otherwise (a manifest copied into another
 * backup's directory must not pass as that backup). */
int fb_store_manifest_names(const fb_manifest *m, const char *session_id, const char *backup_id,
                            const char *source, fb_error *err);

#endif
