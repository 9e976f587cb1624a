/* The typed getters of the strict reader (see json_strict_i.h): a member
 * by exact key, and a value as a string, bool, container or exact integer,
 * each refusing anything else with the value's path and what it was. */
#include "json_strict_i.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "fb_text.h"

void fb_json_describe(const fb_json_val *val, char *buf, size_t n)
{
    const cJSON *node = val->node;
    const char *p;
    size_t k;
    if (n == 0)
        return;
    buf[0] = '\0';
    if (fb_json_number_text(val, &p, &k)) {
        fb_text_quote_n(p, k, FB_JSON_QUOTE_CUT, buf, n);
    } else if (cJSON_IsNumber(node)) {
        snprintf(buf, n, "%g", node->valuedouble);
    } else if (cJSON_IsString(node)) {
        char q[FB_TEXT_QUOTE_SIZE(FB_JSON_QUOTE_CUT)];
        const char *s = node->valuestring;
        snprintf(buf, n, "\"%s\"", fb_text_quote_n(s, strlen(s), FB_JSON_QUOTE_CUT, q, sizeof q));
    } else if (cJSON_IsTrue(node)) {
        snprintf(buf, n, "true");
    } else if (cJSON_IsFalse(node)) {
        snprintf(buf, n, "false");
    } else if (cJSON_IsNull(node)) {
        snprintf(buf, n, "null");
    } else if (cJSON_IsObject(node)) {
        snprintf(buf, n, "an object");
    } else if (cJSON_IsArray(node)) {
        snprintf(buf, n, "an array");
    } else {
        snprintf(buf, n, "an unknown value");
    }
}

static int type_fail(const fb_json_val *val, fb_error *err, const char *expected)
{
    char got[FB_TEXT_QUOTE_SIZE(FB_JSON_QUOTE_CUT) + 2];
    fb_json_describe(val, got, sizeof got);
    return fb_json_fail(val, err, "expected %s, got %s", expected, got);
}

/* Common null / type handling; returns 2 to go on, FB_JSON_ABSENT, or error. */
static int accept_null(const fb_json_val *val, unsigned flags, const char *expected,
                       fb_error *err)
{
    if (cJSON_IsNull(val->node)) {
        if (flags & FB_JSON_NULLABLE)
            return FB_JSON_ABSENT;
        return type_fail(val, err, expected);
    }
    return 2;
}

const cJSON *fb_json_find_key(const cJSON *obj, const char *key)
{
    /* Manifests look up a dozen keys in each of a million entries: most
     * keys differ in their first byte, so strcmp is mostly not called. */
    for (const cJSON *c = obj->child; c; c = c->next)
        if (c->string && c->string[0] == key[0] && strcmp(c->string, key) == 0)
            return c;
    return NULL;
}

int fb_json_member(const fb_json_val *obj, const char *key, unsigned flags, fb_json_val *out,
                   fb_error *err)
{
    out->doc = obj->doc;
    out->parent = obj;
    out->key = key;
    out->index = 0;
    out->node = NULL;
    if (!cJSON_IsObject(obj->node))
        return type_fail(obj, err, "an object");
    out->node = fb_json_find_key(obj->node, key);
    if (out->node)
        out->key = out->node->string; /* lives as long as the document */
    if (!out->node) {
        if (flags & FB_JSON_OPTIONAL)
            return FB_JSON_ABSENT;
        return fb_json_fail(out, err, "missing required field");
    }
    return 0;
}

int fb_json_as_string(const fb_json_val *val, unsigned flags, const char **out, fb_error *err)
{
    *out = NULL;
    int rc = accept_null(val, flags, "a string", err);
    if (rc != 2)
        return rc;
    if (!cJSON_IsString(val->node) || !val->node->valuestring)
        return type_fail(val, err, flags & FB_JSON_NULLABLE ? "a string or null" : "a string");
    *out = val->node->valuestring;
    return 0;
}

int fb_json_as_bool(const fb_json_val *val, unsigned flags, bool *out, fb_error *err)
{
    int rc = accept_null(val, flags, "true or false", err);
    if (rc != 2)
        return rc;
    if (!cJSON_IsBool(val->node))
        return type_fail(val, err, "true or false");
    *out = cJSON_IsTrue(val->node);
    return 0;
}

int fb_json_as_object(const fb_json_val *val, unsigned flags, fb_error *err)
{
    int rc = accept_null(val, flags, "an object", err);
    if (rc != 2)
        return rc;
    if (!cJSON_IsObject(val->node))
        return type_fail(val, err, "an object");
    return 0;
}

int fb_json_as_array(const fb_json_val *val, unsigned flags, size_t *count, fb_error *err)
{
    int rc = accept_null(val, flags, "an array", err);
    if (rc != 2)
        return rc;
    if (!cJSON_IsArray(val->node))
        return type_fail(val, err, "an array");
    if (count) {
        size_t n = 0;
        for (const cJSON *c = val->node->child; c; c = c->next)
            n++;
        *count = n;
    }
    return 0;
}

/* Reads an integer exactly from its text: *neg, *mag (<= FB_JSON_INT_MAX).
 * False when it is not a plain integer or its magnitude is beyond 2^53. */
static bool exact_integer(const fb_json_val *val, bool *neg, uint64_t *mag)
{
    const char *p;
    size_t n;
    if (!fb_json_number_text(val, &p, &n))
        return false;
    size_t i = 0;
    *neg = false;
    if (p[0] == '-') {
        *neg = true;
        i = 1;
    }
    uint64_t v = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false; /* fraction or exponent: not written as an integer */
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (FB_JSON_INT_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *mag = v;
    return true;
}

static int range_fail(const fb_json_val *val, fb_error *err, const char *min, const char *max)
{
    char expected[96];
    snprintf(expected, sizeof expected, "an integer %s..%s", min, max);
    return type_fail(val, err, expected);
}

int fb_json_as_u64(const fb_json_val *val, unsigned flags, uint64_t min, uint64_t max,
                   uint64_t *out, fb_error *err)
{
    if (max > FB_JSON_INT_MAX)
        max = FB_JSON_INT_MAX;
    bool neg = false;
    uint64_t mag = 0;
    if (cJSON_IsNull(val->node) && (flags & FB_JSON_NULLABLE))
        return FB_JSON_ABSENT;
    if (!exact_integer(val, &neg, &mag) || (neg && mag != 0) || mag < min || mag > max) {
        char smin[24], smax[24];
        snprintf(smin, sizeof smin, "%" PRIu64, min);
        snprintf(smax, sizeof smax, "%" PRIu64, max);
        return range_fail(val, err, smin, smax);
    }
    *out = mag;
    return 0;
}

int fb_json_as_i64(const fb_json_val *val, unsigned flags, int64_t min, int64_t max,
                   int64_t *out, fb_error *err)
{
    const int64_t lim = (int64_t)FB_JSON_INT_MAX;
    if (max > lim)
        max = lim;
    if (min < -lim)
        min = -lim;
    bool neg = false;
    uint64_t mag = 0;
    if (cJSON_IsNull(val->node) && (flags & FB_JSON_NULLABLE))
        return FB_JSON_ABSENT;
    bool exact = exact_integer(val, &neg, &mag);
    int64_t v = neg ? -(int64_t)mag : (int64_t)mag;
    if (!exact || v < min || v > max) {
        char smin[24], smax[24];
        snprintf(smin, sizeof smin, "%" PRId64, min);
        snprintf(smax, sizeof smax, "%" PRId64, max);
        return range_fail(val, err, smin, smax);
    }
    *out = v;
    return 0;
}

int fb_json_get_string(const fb_json_val *obj, const char *key, unsigned flags, const char **out,
                       fb_error *err)
{
    fb_json_val v;
    *out = NULL;
    int rc = fb_json_member(obj, key, flags, &v, err);
    if (rc)
        return rc;
    return fb_json_as_string(&v, flags, out, err);
}

int fb_json_get_bool(const fb_json_val *obj, const char *key, unsigned flags, bool *out,
                     fb_error *err)
{
    fb_json_val v;
    int rc = fb_json_member(obj, key, flags, &v, err);
    if (rc)
        return rc;
    return fb_json_as_bool(&v, flags, out, err);
}

int fb_json_get_object(const fb_json_val *obj, const char *key, unsigned flags,
                       fb_json_val *out, fb_error *err)
{
    int rc = fb_json_member(obj, key, flags, out, err);
    if (rc)
        return rc;
    return fb_json_as_object(out, flags, err);
}

int fb_json_get_array(const fb_json_val *obj, const char *key, unsigned flags, fb_json_val *out,
                      size_t *count, fb_error *err)
{
    int rc = fb_json_member(obj, key, flags, out, err);
    if (rc)
        return rc;
    return fb_json_as_array(out, flags, count, err);
}

int fb_json_get_u64(const fb_json_val *obj, const char *key, unsigned flags, uint64_t min,
                    uint64_t max, uint64_t *out, fb_error *err)
{
    fb_json_val v;
    int rc = fb_json_member(obj, key, flags, &v, err);
    if (rc)
        return rc;
    return fb_json_as_u64(&v, flags, min, max, out, err);
}

int fb_json_get_i64(const fb_json_val *obj, const char *key, unsigned flags, int64_t min,
                    int64_t max, int64_t *out, fb_error *err)
{
    fb_json_val v;
    int rc = fb_json_member(obj, key, flags, &v, err);
    if (rc)
        return rc;
    return fb_json_as_i64(&v, flags, min, max, out, err);
}
