/* Output helpers shared by the commands: human sizes, local time, names made
 * safe for a terminal, and JSON emission that keeps 64-bit integers exact. */
#include "cli_i.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fb_manifest.h"
#include "fb_retention.h"
#include "fb_text.h"

void cli_format_size(uint64_t bytes, char out[32])
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes < 1024) {
        snprintf(out, 32, "%" PRIu64 " B", bytes);
        return;
    }
    double v = (double)bytes;
    size_t u = 0;
    while (v >= 1024.0 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024.0;
        u++;
    }
    /* Keep three significant digits without printing "1024.0 KiB". */
    if (v >= 1023.95 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024.0;
        u++;
    }
    if (v < 10.0)
        snprintf(out, 32, "%.2f %s", v, units[u]);
    else if (v < 100.0)
        snprintf(out, 32, "%.1f %s", v, units[u]);
    else
        snprintf(out, 32, "%.0f %s", v, units[u]);
}

void cli_format_local_time(int64_t t, bool with_zone, char out[64])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!localtime_r(&tt, &tm) ||
        strftime(out, 64, with_zone ? "%Y-%m-%d %H:%M:%S %Z" : "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(out, 64, "@%" PRId64, t);
}

/* Both printers show text by core's rule for names (fb_path_escape_n), so
 * a name reads the same on the terminal as in core's messages. They go a
 * piece at a time, so a name of any length needs no allocation. A core
 * message keeps its backslashes: they start the escapes core wrote. */
#define PIECE 256

static void print_for_terminal(FILE *f, const char *s, bool keep_backslash)
{
    char buf[4 * PIECE + 1]; /* a byte shows as at most 4 */
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        if (keep_backslash && s[i] == '\\') {
            fputc('\\', f);
            i++;
            continue;
        }
        size_t end = len - i > PIECE ? i + PIECE : len;
        /* Do not split a UTF-8 sequence: end before its lead byte. Four
         * continuation bytes in a row belong to no sequence, so the cut
         * can stay where it is. */
        for (size_t k = 0; end < len && k < 4; k++) {
            if (((unsigned char)s[end - k] & 0xC0) != 0x80) {
                end -= k;
                break;
            }
        }
        if (keep_backslash) {
            const char *bs = memchr(s + i, '\\', end - i);
            if (bs)
                end = (size_t)(bs - s);
        }
        fputs(fb_path_escape_n(s + i, end - i, buf, sizeof buf), f);
        i = end;
    }
}

void cli_print_escaped(FILE *f, const char *str)
{
    print_for_terminal(f, str, false);
}

void cli_print_message(FILE *f, const char *message)
{
    print_for_terminal(f, message, true);
}

char *cli_utf8_sanitize(const char *str)
{
    char *out = NULL;
    return fb_utf8_lossy(str, strlen(str), &out) == 0 ? out : NULL;
}

cJSON *cli_json_uint(uint64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return cJSON_CreateRaw(buf);
}

cJSON *cli_json_int(int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    return cJSON_CreateRaw(buf);
}

cJSON *cli_json_string_or_null(const char *s)
{
    if (!s)
        return cJSON_CreateNull();
    char *clean = cli_utf8_sanitize(s);
    if (!clean)
        return NULL;
    cJSON *item = cJSON_CreateString(clean);
    free(clean);
    return item;
}

cJSON *cli_json_time(int64_t t)
{
    char buf[32];
    fb_rfc3339_format(t, buf);
    return cJSON_CreateString(buf);
}

bool cli_json_add(cJSON *obj, const char *key, cJSON *item)
{
    if (!item)
        return false;
    if (cJSON_IsArray(obj)) {
        if (!cJSON_AddItemToArray(obj, item)) {
            cJSON_Delete(item);
            return false;
        }
        return true;
    }
    if (!cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        return false;
    }
    return true;
}

int cli_json_emit(cJSON *root)
{
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        return cli_failf(CLI_EXIT_RUNTIME, "out of memory while formatting JSON");
    fputs(text, stdout);
    fputc('\n', stdout);
    cJSON_free(text);
    return 0;
}

void cli_print_policy(FILE *f, const fb_retention_policy *p)
{
    fprintf(f, "keep_full %" PRIu32 ", max_age_days %" PRIu32 "%s, min_keep %" PRIu32,
            p->keep_full, p->max_age_days, p->max_age_days == 0 ? " (no age limit)" : "",
            p->min_keep);
}

const char *cli_retention_rule_text(const char *desc)
{
    const char *colon = strstr(desc, ": ");
    if (colon && (strncmp(desc, "kept", 4) == 0 || strncmp(desc, "removed", 7) == 0))
        return colon + 2;
    return desc;
}

bool cli_json_add_retention(cJSON *obj, const fb_retention_policy *policy,
                            const fb_retention_decision *plan, size_t n)
{
    cJSON *pol = cJSON_CreateObject();
    cJSON *kept = cJSON_CreateArray();
    cJSON *removed = cJSON_CreateArray();
    if (!cli_json_add(obj, "policy", pol)) {
        cJSON_Delete(kept);
        cJSON_Delete(removed);
        return false;
    }
    bool ok = cli_json_add(pol, "keep_full", cli_json_uint(policy->keep_full)) &&
              cli_json_add(pol, "max_age_days", cli_json_uint(policy->max_age_days)) &&
              cli_json_add(pol, "min_keep", cli_json_uint(policy->min_keep));
    if (!cli_json_add(obj, "kept", kept)) {
        cJSON_Delete(removed);
        return false;
    }
    ok = cli_json_add(obj, "removed", removed) && ok;
    for (size_t i = 0; ok && i < n; i++) {
        const fb_retention_decision *d = &plan[i];
        char desc[256];
        fb_retention_describe(d, policy, desc, sizeof desc);
        cJSON *item = cJSON_CreateObject();
        ok = cli_json_add(d->remove ? removed : kept, NULL, item) &&
             cli_json_add(item, "id", cJSON_CreateString(d->id)) &&
             cli_json_add(item, "rule", cJSON_CreateString(cli_retention_rule_text(desc)));
    }
    return ok;
}

bool cli_json_add_name(cJSON *obj, const char *key, const char *name)
{
    if (!cli_json_add(obj, key, cli_json_string_or_null(name)))
        return false;
    if (fb_utf8_valid(name, strlen(name)))
        return true;
    char *b64 = NULL;
    if (fb_base64_encode((const uint8_t *)name, strlen(name), &b64) != 0)
        return false;
    char k[64];
    snprintf(k, sizeof k, "%s_b64", key);
    bool ok = b64 && cli_json_add(obj, k, cJSON_CreateString(b64));
    free(b64);
    return ok;
}
