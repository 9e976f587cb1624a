/* Fields that several of our JSON documents carry (manifest.json,
 * index.json, `diff --json`), written and checked in one place so that the
 * same field means and is refused the same way in each of them: raw-byte
 * names with their exact bytes in "<key>_b64", entry metadata, SHA-256 hex,
 * session and backup ids, and the type, created_at, note and base of a
 * backup (an index record repeats those of its manifest). */
#ifndef FB_JSON_FIELDS_I_H
#define FB_JSON_FIELDS_I_H

#include <stddef.h>
#include <stdint.h>

#include "fb_error.h"
#include "fb_types.h"
#include "json_strict_i.h"
#include "json_write_i.h"

/* ---- writing ---- */

/* key: the name as (lossy) UTF-8 text, plus "<key>_b64" with the exact
 * bytes when the text alone cannot carry them. */
void fb_json_put_name(fb_json_writer *w, const char *key, const char *name);

/* key: the digest as 64 lowercase hex digits. */
void fb_json_put_sha256(fb_json_writer *w, const char *key, const uint8_t digest[FB_SHA256_LEN]);

/* type, mode, uid, gid, mtime, mtime_nsec and size, in that order. */
void fb_json_put_meta(fb_json_writer *w, const fb_entry_meta *meta);

/* type, created_at (RFC 3339), note and base (null when NULL or ""), in
 * that order. */
void fb_json_put_backup_origin(fb_json_writer *w, fb_backup_type type, int64_t created_at,
                               const char *note, const char *base);

/* ---- reading ---- */

/* A raw-bytes name written by fb_json_put_name: `key`, or the exact bytes
 * in `key`_b64, which must be valid base64 without a NUL and render as the
 * text form. *out is malloc'd; FB_JSON_ABSENT when optional and absent. */
int fb_json_get_name(const fb_json_val *obj, const char *key, unsigned flags, char **out,
                     fb_error *err);

/* "session_id": a valid session id (*out points into the document). */
int fb_json_get_session_id(const fb_json_val *obj, const char **out, fb_error *err);

/* A valid backup id into out ("" when null with FB_JSON_NULLABLE). Returns
 * 0, FB_JSON_ABSENT or an error, as the fb_json_get_* getters do. */
int fb_json_get_backup_id(const fb_json_val *obj, const char *key, unsigned flags,
                          char out[FB_BACKUP_ID_LEN + 1], fb_error *err);

/* 64 lowercase hex digits. */
int fb_json_get_sha256(const fb_json_val *obj, const char *key, uint8_t out[FB_SHA256_LEN],
                       fb_error *err);

/* "type": full or incremental, and the same as the type id (the value of
 * id_key, already read) spells. */
int fb_json_get_backup_type(const fb_json_val *obj, const char *id_key, const char *id,
                            fb_backup_type *out, fb_error *err);

/* "created_at": YYYY-MM-DDTHH:MM:SSZ, as seconds since the epoch. */
int fb_json_get_created_at(const fb_json_val *obj, int64_t *out, fb_error *err);

/* "base": null, or for an incremental (type) the id of a full backup. */
int fb_json_get_base(const fb_json_val *obj, fb_backup_type type,
                     char out[FB_BACKUP_ID_LEN + 1], fb_error *err);

#endif
