/* The plain tokens the fast readings of our own JSON documents take
 * straight from the text (manifest_entry_fast.c for manifest entries,
 * index.c for index records): whitespace, strings without escapes, small
 * integers, null. The text must have passed fb_json_check_text (strings
 * valid UTF-8 without control characters, numbers well-formed); anything
 * these do not recognise makes the caller leave the document to the strict
 * reading through cJSON. Header-only: four small functions two modules
 * share. */
#ifndef FB_JSON_PLAIN_I_H
#define FB_JSON_PLAIN_I_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "json_strict_i.h" /* FB_JSON_INT_MAX */

static inline size_t fb_json_plain_ws(const char *t, size_t len, size_t i)
{
    while (i < len && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r'))
        i++;
    return i;
}

/* A string without escapes whose opening quote is at t[i]: its content in
 * *s and *n, and the index past the closing quote, or 0. Its bytes are
 * taken as they are, which is what cJSON makes of them too. */
static inline size_t fb_json_plain_string(const char *t, size_t len, size_t i, const char **s,
                                          size_t *n)
{
    if (i >= len || t[i] != '"')
        return 0;
    size_t start = ++i;
    while (i < len && t[i] != '"' && t[i] != '\\')
        i++;
    if (i >= len || t[i] != '"')
        return 0;
    *s = t + start;
    *n = i - start;
    return i + 1;
}

/* An integer token at t[i] ('-'? digits, not followed by a fraction or an
 * exponent) of magnitude <= FB_JSON_INT_MAX: the index past it, or 0. */
static inline size_t fb_json_plain_integer(const char *t, size_t len, size_t i, uint64_t *v,
                                           bool *neg)
{
    *neg = i < len && t[i] == '-';
    if (*neg)
        i++;
    size_t start = i;
    uint64_t x = 0;
    while (i < len && t[i] >= '0' && t[i] <= '9' && i - start < 17)
        x = x * 10 + (uint64_t)(t[i++] - '0');
    if (i == start || i - start > 16 || x > FB_JSON_INT_MAX)
        return 0;
    if ((t[start] == '0' && i - start > 1) || (*neg && x == 0))
        return 0;
    if (i < len && (t[i] == '.' || t[i] == 'e' || t[i] == 'E' || (t[i] >= '0' && t[i] <= '9')))
        return 0;
    *v = x;
    return i;
}

/* The literal null at t[i]: the index past it, or 0. */
static inline size_t fb_json_plain_null(const char *t, size_t len, size_t i)
{
    return len - i >= 4 && memcmp(t + i, "null", 4) == 0 ? i + 4 : 0;
}

#endif
