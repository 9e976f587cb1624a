/* Full check of one backup directory (published or still in .tmp-*): the
 * archive's SHA-256 and size against the manifest, every frame (exact size,
 * content checksum), the tar stream parsed with libarchive and compared entry
 * by entry to the manifest (path, type, size, mode, mtime, link target),
 * every file's SHA-256 at its recorded offset, and for an incremental that
 * every .json member parses as JSON. Never modifies anything. */
#ifndef FB_VERIFY_H
#define FB_VERIFY_H

#include "fb_error.h"
#include "fb_index.h"
#include "fb_manifest.h"

/* backup_dirfd: the backup's directory (borrowed). m: its parsed manifest.
 * name: used in messages ("session/backup_id"). Returns 0, FB_ECORRUPT with
 * a message naming the backup and the first problem found, FB_EIO, FB_ENOMEM. */
int fb_verify_backup_dir(int backup_dirfd, const fb_manifest *m, const char *name,
                         fb_error *err);

/* Compares an index record with the manifest: FB_ECORRUPT naming the field. */
int fb_verify_index_record(const fb_index_record *rec, const fb_manifest *m, fb_error *err);

#endif
