/* Fields shared by manifest.json, index.json and `diff --json` (see
 * json_fields_i.h): one writer and one checker per field. */
#include "json_fields_i.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fb_hash.h"
#include "fb_ids.h"
#include "fb_text.h"

void fb_json_put_name(fb_json_writer *w, const char *key, const char *name)
{
    fb_json_key(w, key);
    fb_json_string(w, name);
    if (!fb_utf8_valid(name, strlen(name))) {
        char *b64 = NULL;
        char key_b64[32];
        snprintf(key_b64, sizeof key_b64, "%s_b64", key);
        if (fb_base64_encode((const uint8_t *)name, strlen(name), &b64) < 0) {
            w->error = w->error ? w->error : FB_ENOMEM;
            return;
        }
        fb_json_key(w, key_b64);
        fb_json_string(w, b64);
        free(b64);
    }
}

void fb_json_put_sha256(fb_json_writer *w, const char *key, const uint8_t digest[FB_SHA256_LEN])
{
    char hex[FB_SHA256_HEX_LEN + 1];
    fb_hex_encode(digest, FB_SHA256_LEN, hex);
    fb_json_key(w, key);
    fb_json_string(w, hex);
}

void fb_json_put_meta(fb_json_writer *w, const fb_entry_meta *meta)
{
    fb_json_key(w, "type");
    fb_json_string(w, fb_entry_type_name(meta->type));
    fb_json_key(w, "mode");
    fb_json_u64(w, meta->mode);
    fb_json_key(w, "uid");
    fb_json_u64(w, meta->uid);
    fb_json_key(w, "gid");
    fb_json_u64(w, meta->gid);
    fb_json_key(w, "mtime");
    fb_json_i64(w, meta->mtime);
    fb_json_key(w, "mtime_nsec");
    fb_json_u64(w, meta->mtime_nsec);
    fb_json_key(w, "size");
    fb_json_u64(w, meta->size);
}

void fb_json_put_backup_origin(fb_json_writer *w, fb_backup_type type, int64_t created_at,
                               const char *note, const char *base)
{
    char created[32];
    fb_rfc3339_format(created_at, created);
    fb_json_key(w, "type");
    fb_json_string(w, fb_backup_type_name(type));
    fb_json_key(w, "created_at");
    fb_json_string(w, created);
    fb_json_key(w, "note");
    fb_json_string_or_null(w, note);
    fb_json_key(w, "base");
    fb_json_string_or_null(w, base && base[0] ? base : NULL);
}

int fb_json_get_session_id(const fb_json_val *obj, const char **out, fb_error *err)
{
    int rc = fb_json_get_string(obj, "session_id", 0, out, err);
    if (rc < 0)
        return rc;
    fb_error serr;
    fb_error_clear(&serr);
    if (fb_session_id_check(*out, &serr) < 0)
        return fb_json_fail_key(obj, "session_id", err, "%s", serr.message);
    return 0;
}

int fb_json_get_backup_id(const fb_json_val *obj, const char *key, unsigned flags,
                          char out[FB_BACKUP_ID_LEN + 1], fb_error *err)
{
    const char *s;
    out[0] = '\0';
    int rc = fb_json_get_string(obj, key, flags, &s, err);
    if (rc)
        return rc;
    if (!fb_backup_id_is_valid(s)) {
        char q[FB_TEXT_QUOTE_SIZE(FB_JSON_QUOTE_CUT)];
        fb_text_quote_n(s, strlen(s), FB_JSON_QUOTE_CUT, q, sizeof q);
        return fb_json_fail_key(obj, key, err, "\"%s\" is not a valid backup id", q);
    }
    memcpy(out, s, FB_BACKUP_ID_LEN + 1);
    return 0;
}

int fb_json_get_sha256(const fb_json_val *obj, const char *key, uint8_t out[FB_SHA256_LEN],
                       fb_error *err)
{
    const char *hex;
    int rc = fb_json_get_string(obj, key, 0, &hex, err);
    if (rc < 0)
        return rc;
    if (fb_sha256_from_hex(hex, out) < 0) {
        char q[FB_TEXT_QUOTE_SIZE(FB_JSON_QUOTE_CUT)];
        fb_text_quote_n(hex, strlen(hex), FB_JSON_QUOTE_CUT, q, sizeof q);
        return fb_json_fail_key(obj, key, err, "expected 64 lowercase hex digits, got \"%s\"", q);
    }
    return 0;
}

int fb_json_get_backup_type(const fb_json_val *obj, const char *id_key, const char *id,
                            fb_backup_type *out, fb_error *err)
{
    const char *s;
    int rc = fb_json_get_string(obj, "type", 0, &s, err);
    if (rc < 0)
        return rc;
    if (fb_backup_type_parse(s, out) < 0) {
        char q[FB_TEXT_QUOTE_SIZE(FB_JSON_QUOTE_CUT)];
        fb_text_quote_n(s, strlen(s), FB_JSON_QUOTE_CUT, q, sizeof q);
        return fb_json_fail_key(obj, "type", err, "expected full or incremental, got \"%s\"", q);
    }
    if (fb_backup_id_type(id) != *out)
        return fb_json_fail_key(obj, "type", err, "\"%s\" disagrees with %s %s", s, id_key, id);
    return 0;
}

int fb_json_get_created_at(const fb_json_val *obj, int64_t *out, fb_error *err)
{
    const char *s;
    int rc = fb_json_get_string(obj, "created_at", 0, &s, err);
    if (rc < 0)
        return rc;
    if (fb_rfc3339_parse(s, out) < 0) {
        char q[FB_TEXT_QUOTE_SIZE(FB_JSON_QUOTE_CUT)];
        fb_text_quote_n(s, strlen(s), FB_JSON_QUOTE_CUT, q, sizeof q);
        return fb_json_fail_key(obj, "created_at", err,
                                "expected YYYY-MM-DDTHH:MM:SSZ, got \"%s\"", q);
    }
    return 0;
}

int fb_json_get_base(const fb_json_val *obj, fb_backup_type type,
                     char out[FB_BACKUP_ID_LEN + 1], fb_error *err)
{
    int rc = fb_json_get_backup_id(obj, "base", FB_JSON_NULLABLE, out, err);
    if (rc < 0)
        return rc;
    if (out[0] && type == FB_BACKUP_FULL)
        return fb_json_fail_key(obj, "base", err, "a full backup has no base (got %s)", out);
    if (out[0] && fb_backup_id_type(out) != FB_BACKUP_FULL)
        return fb_json_fail_key(obj, "base", err, "%s is not a full backup", out);
    return 0;
}

int fb_json_get_name(const fb_json_val *obj, const char *key, unsigned flags, char **out,
                     fb_error *err)
{
    *out = NULL;
    char key_b64[32];
    snprintf(key_b64, sizeof key_b64, "%s_b64", key);
    const char *text, *b64;
    int rc = fb_json_get_string(obj, key, flags, &text, err);
    if (rc < 0)
        return rc;
    int rc64 = fb_json_get_string(obj, key_b64, FB_JSON_OPTIONAL, &b64, err);
    if (rc64 < 0)
        return rc64;
    if (rc == FB_JSON_ABSENT) {
        if (rc64 == 0)
            return fb_json_fail_key(obj, key_b64, err, "present without '%s'", key);
        return FB_JSON_ABSENT;
    }
    if (rc64 == FB_JSON_ABSENT) {
        *out = strdup(text);
        if (!*out)
            return fb_error_set(err, FB_ENOMEM, "out of memory");
        return 0;
    }
    uint8_t *raw;
    size_t raw_len;
    rc = fb_base64_decode(b64, strlen(b64), &raw, &raw_len);
    if (rc == FB_ENOMEM)
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    if (rc < 0)
        return fb_json_fail_key(obj, key_b64, err, "not valid base64");
    if (memchr(raw, '\0', raw_len)) {
        free(raw);
        return fb_json_fail_key(obj, key_b64, err, "contains a NUL byte");
    }
    /* The text form must be what the bytes render as, so a reader that
     * ignores _b64 still sees the same name (modulo U+FFFD). */
    char *lossy;
    if (fb_utf8_lossy((const char *)raw, raw_len, &lossy) < 0) {
        free(raw);
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    }
    bool same = strcmp(lossy, text) == 0;
    free(lossy);
    if (!same) {
        free(raw);
        return fb_json_fail_key(obj, key, err, "does not match %s", key_b64);
    }
    *out = (char *)raw;
    return 0;
}
