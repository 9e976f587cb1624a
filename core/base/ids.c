/* The names and grammars every layer shares (SPEC "Finding things",
 * "Storage layout"): session ids, backup ids, the type names of entries and
 * backups, and RFC 3339 timestamps. Pure functions, at the bottom of core,
 * so that the JSON fields, the manifest, the index and the store all use
 * one rule for each. */
#include "fb_ids.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fb_fsutil.h"
#include "fb_hash.h"
#include "fb_text.h"

static bool session_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

int fb_session_id_check(const char *id, fb_error *err)
{
    char shown[FB_ERROR_MESSAGE_MAX / 2];
    if (!id)
        return fb_error_set(err, FB_EINVAL, "invalid session id: none given");
    fb_text_quote(id, shown, sizeof shown);
    size_t len = strlen(id);
    if (len == 0)
        return fb_error_set(err, FB_EINVAL, "invalid session id '': it is empty");
    for (size_t i = 0; i < len; i++) {
        if (!session_char_ok((unsigned char)id[i]))
            return fb_error_set(err, FB_EINVAL,
                                "invalid session id '%s': only letters, digits, '.', '_' and "
                                "'-' are allowed",
                                shown);
    }
    if (len > FB_SESSION_ID_MAX)
        return fb_error_set(err, FB_EINVAL,
                            "invalid session id '%s': longer than %d characters (%zu)", shown,
                            FB_SESSION_ID_MAX, len);
    /* A leading '.' would allow "." and ".." and hide the dir; a leading '-'
     * would look like an option to any tool a user pipes the name into. */
    if (id[0] == '.' || id[0] == '-')
        return fb_error_set(err, FB_EINVAL,
                            "invalid session id '%s': must not start with '.' or '-'", shown);
    return 0;
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static int digits_value(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

static bool is_leap_year(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && is_leap_year(y))
        return 29;
    return days[m - 1];
}

/* A real date and time of day (no leap second): what both the ids and the
 * RFC 3339 timestamps must spell. */
static bool calendar_valid(int year, int month, int day, int hour, int min, int sec)
{
    return month >= 1 && month <= 12 && day >= 1 && day <= days_in_month(year, month) &&
           hour <= 23 && min <= 59 && sec <= 59;
}

bool fb_backup_id_has_shape(const char *id)
{
    /* YYYYMMDDTHHMMSSZ-full-xxxxxx: fixed length, so the type word is 4 chars */
    if (!id || strlen(id) != FB_BACKUP_ID_LEN)
        return false;
    if (!all_digits(id, 8) || id[8] != 'T' || !all_digits(id + 9, 6) || id[15] != 'Z' ||
        id[16] != '-' || id[21] != '-')
        return false;
    if (memcmp(id + 17, "full", 4) != 0 && memcmp(id + 17, "incr", 4) != 0)
        return false;
    for (int i = 22; i < FB_BACKUP_ID_LEN; i++) {
        char c = id[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

bool fb_backup_id_is_valid(const char *id)
{
    if (!fb_backup_id_has_shape(id))
        return false;
    int year = digits_value(id, 4), month = digits_value(id + 4, 2), day = digits_value(id + 6, 2);
    int hour = digits_value(id + 9, 2), min = digits_value(id + 11, 2), sec = digits_value(id + 13, 2);
    return calendar_valid(year, month, day, hour, min, sec);
}

fb_backup_type fb_backup_id_type(const char *id)
{
    if (id && strlen(id) >= 21 && memcmp(id + 17, "full", 4) == 0)
        return FB_BACKUP_FULL;
    return FB_BACKUP_INCREMENTAL;
}

bool fb_backup_base_is_allowed(fb_backup_type type, const char *base)
{
    if (!base || !base[0])
        return true;
    return type == FB_BACKUP_INCREMENTAL && fb_backup_id_is_valid(base) &&
           fb_backup_id_type(base) == FB_BACKUP_FULL;
}

int fb_backup_id_generate(int64_t now, fb_backup_type type, char out[FB_BACKUP_ID_LEN + 1],
                          fb_error *err)
{
    out[0] = '\0';
    time_t t = (time_t)now;
    struct tm tm;
    if ((int64_t)t != now || !gmtime_r(&t, &tm) || tm.tm_year + 1900 < 0 ||
        tm.tm_year + 1900 > 9999)
        return fb_error_set(err, FB_EINVAL, "time %lld cannot be written as a backup id",
                            (long long)now);
    uint8_t raw[3];
    int rc = fb_random_bytes(raw, sizeof raw, err);
    if (rc)
        return rc;
    char hex[7];
    fb_hex_encode(raw, sizeof raw, hex);
    char buf[64];
    snprintf(buf, sizeof buf, "%04d%02d%02dT%02d%02d%02dZ-%s-%s", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             type == FB_BACKUP_FULL ? "full" : "incr", hex);
    if (!fb_backup_id_is_valid(buf))
        return fb_error_set(err, FB_EINVAL, "time %lld cannot be written as a backup id",
                            (long long)now);
    memcpy(out, buf, FB_BACKUP_ID_LEN + 1);
    return 0;
}

/* ------------------------------------------------------------ type names */

const char *fb_entry_type_name(fb_entry_type type)
{
    switch (type) {
    case FB_ENTRY_FILE: return "file";
    case FB_ENTRY_DIR: return "dir";
    case FB_ENTRY_SYMLINK: return "symlink";
    case FB_ENTRY_HARDLINK: return "hardlink";
    }
    return "unknown";
}

const char *fb_backup_type_name(fb_backup_type type)
{
    switch (type) {
    case FB_BACKUP_FULL: return "full";
    case FB_BACKUP_INCREMENTAL: return "incremental";
    }
    return "unknown";
}

int fb_entry_type_parse(const char *s, fb_entry_type *out)
{
    static const fb_entry_type all[] = {FB_ENTRY_FILE, FB_ENTRY_DIR, FB_ENTRY_SYMLINK,
                                        FB_ENTRY_HARDLINK};
    for (size_t i = 0; s && i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(s, fb_entry_type_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return FB_EINVAL;
}

int fb_backup_type_parse(const char *s, fb_backup_type *out)
{
    if (s && strcmp(s, "full") == 0) {
        *out = FB_BACKUP_FULL;
        return 0;
    }
    if (s && strcmp(s, "incremental") == 0) {
        *out = FB_BACKUP_INCREMENTAL;
        return 0;
    }
    return FB_EINVAL;
}

/* ------------------------------------------------------------- RFC 3339 */

void fb_rfc3339_format(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    char tmp[96];
    if (!gmtime_r(&tt, &tm))
        memset(&tm, 0, sizeof tm);
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    memcpy(out, tmp, 31);
    out[31] = '\0';
}

int fb_rfc3339_parse(const char *s, int64_t *out)
{
    if (!s || strlen(s) != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':' || s[19] != 'Z' || !all_digits(s, 4) || !all_digits(s + 5, 2) ||
        !all_digits(s + 8, 2) || !all_digits(s + 11, 2) || !all_digits(s + 14, 2) ||
        !all_digits(s + 17, 2))
        return FB_ECORRUPT;
    int year = digits_value(s, 4), mon = digits_value(s + 5, 2), day = digits_value(s + 8, 2);
    int hour = digits_value(s + 11, 2), min = digits_value(s + 14, 2);
    int sec = digits_value(s + 17, 2);
    if (!calendar_valid(year, mon, day, hour, min, sec))
        return FB_ECORRUPT;
    struct tm tm = {
        .tm_year = year - 1900,
        .tm_mon = mon - 1,
        .tm_mday = day,
        .tm_hour = hour,
        .tm_min = min,
        .tm_sec = sec,
    };
    *out = (int64_t)timegm(&tm);
    return 0;
}
