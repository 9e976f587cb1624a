/* Names and grammars shared by every layer (core/base/ids.c): the session id
 * rule, the backup id grammar, the names of entry and backup types, and the
 * RFC 3339 form of timestamps. Pure functions; any thread. */
#ifndef FB_IDS_H
#define FB_IDS_H

#include <stdbool.h>
#include <stdint.h>

#include "fb_error.h"
#include "fb_types.h"

/* Session id rule: 1..128 of [A-Za-z0-9._-], not starting with '.' or '-'.
 * Returns 0 or FB_EINVAL with a message quoting the id (escaped) and the reason. */
int fb_session_id_check(const char *id, fb_error *err);
/* Backup id grammar: YYYYMMDDTHHMMSSZ-(full|incr)-[0-9a-f]{6}. Has the
 * shape: the characters are of the right kinds in the right places (what
 * tells a typed id from a session name). Is valid: the shape and a real
 * date and time (what the store accepts). */
bool fb_backup_id_has_shape(const char *id);
bool fb_backup_id_is_valid(const char *id);
/* Type encoded in a valid id. */
fb_backup_type fb_backup_id_type(const char *id);
/* The base rule of a backup of this type: base "" (none), or the valid id
 * of a full backup when the backup is incremental. A full backup has no
 * base. */
bool fb_backup_base_is_allowed(fb_backup_type type, const char *base);
/* New id for time now: "YYYYMMDDTHHMMSSZ-full-3fa9c2" with random hex. */
int fb_backup_id_generate(int64_t now, fb_backup_type type, char out[FB_BACKUP_ID_LEN + 1],
                          fb_error *err);

/* "file", "dir", "symlink", "hardlink" */
const char *fb_entry_type_name(fb_entry_type type);
/* "full", "incremental" */
const char *fb_backup_type_name(fb_backup_type type);
/* The names above parsed back: 0, or FB_EINVAL for any other string
 * (case-sensitive). */
int fb_entry_type_parse(const char *s, fb_entry_type *out);
int fb_backup_type_parse(const char *s, fb_backup_type *out);

/* RFC 3339 UTC with seconds: "2026-12-01T03:15:00Z" (out >= 21 bytes). */
void fb_rfc3339_format(int64_t t, char out[32]);
/* Accepts only that exact form, a real date and time. Returns 0 or
 * FB_ECORRUPT. */
int fb_rfc3339_parse(const char *s, int64_t *out);

#endif
