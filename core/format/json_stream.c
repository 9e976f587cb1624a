/* Finding the parts of a JSON text (see json_stream_i.h) for the readers
 * that parse a large document a part at a time. Byte loops only: this runs
 * over every byte of a manifest before cJSON does, so it must cost little
 * next to it. */
#include "json_stream_i.h"

#include <stdlib.h>
#include <string.h>

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

size_t fb_json_string_end(const char *t, size_t len, size_t i)
{
    /* memchr to the next quote, which ends the string unless an odd run of
     * backslashes escapes it: paths and digests are long runs of plain
     * bytes, scanned a word at a time. */
    size_t start = ++i;
    /* Keys and short values end within a few bytes: no call for them. */
    for (size_t stop = len - i < 16 ? len : i + 16; i < stop; i++) {
        if (t[i] == '\\')
            break;
        if (t[i] == '"')
            return i + 1;
    }
    while (i < len) {
        const char *q = memchr(t + i, '"', len - i);
        if (!q)
            return 0;
        size_t j = (size_t)(q - t), bs = 0;
        while (j - bs > start && t[j - bs - 1] == '\\')
            bs++;
        if (bs % 2 == 0)
            return j + 1;
        i = j + 1;
    }
    return 0;
}

static size_t skip_ws(const char *t, size_t len, size_t i)
{
    while (i < len && is_ws(t[i]))
        i++;
    return i;
}

/* End of the value starting at t[i], or 0. Brackets are only counted, not
 * matched ("[}" ends): the strict parse of the part refuses a mismatch.
 * *commas (if not NULL) gets the number of commas directly inside. */
static size_t value_end(const char *t, size_t len, size_t i, size_t *commas)
{
    if (i >= len)
        return 0;
    char c = t[i];
    if (c == '"')
        return fb_json_string_end(t, len, i);
    if (c == '{' || c == '[') {
        size_t depth = 0, n = 0;
        for (; i < len; i++) {
            c = t[i];
            if (c == '"') {
                size_t e = fb_json_string_end(t, len, i);
                if (e == 0)
                    return 0;
                i = e - 1;
            } else if (c == '{' || c == '[') {
                depth++;
            } else if (c == ',') {
                n += depth == 1;
            } else if ((c == '}' || c == ']') && --depth == 0) {
                if (commas)
                    *commas = n;
                return i + 1;
            }
        }
        return 0;
    }
    size_t start = i;
    while (i < len && !is_ws(t[i]) && t[i] != ',' && t[i] != '}' && t[i] != ']' &&
           t[i] != ':')
        i++;
    return i > start ? i : 0;
}

static int push_member(fb_json_member_span **out, size_t *n, size_t *cap,
                       fb_json_member_span m)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        fb_json_member_span *a = realloc(*out, c * sizeof *a);
        if (!a)
            return FB_JSON_SCAN_NOMEM;
        *out = a;
        *cap = c;
    }
    (*out)[(*n)++] = m;
    return FB_JSON_SCAN_OK;
}

/* One "key": value at t[i]; *next is where the scan goes on. */
static int scan_member(const char *t, size_t len, size_t i, fb_json_member_span *m, size_t *next)
{
    if (i >= len || t[i] != '"')
        return FB_JSON_SCAN_BAD;
    size_t ke = fb_json_string_end(t, len, i);
    if (ke == 0)
        return FB_JSON_SCAN_BAD;
    m->key = (fb_json_span){i, ke - i};
    i = skip_ws(t, len, ke);
    if (i >= len || t[i] != ':')
        return FB_JSON_SCAN_BAD;
    i = skip_ws(t, len, i + 1);
    size_t commas = 0;
    size_t ve = value_end(t, len, i, &commas);
    if (ve == 0)
        return FB_JSON_SCAN_BAD;
    m->value = (fb_json_span){i, ve - i};
    m->items_max = commas + 1;
    *next = skip_ws(t, len, ve);
    return FB_JSON_SCAN_OK;
}

int fb_json_scan_object(const char *text, size_t len, fb_json_member_span **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t cap = 0, i = skip_ws(text, len, 0);
    if (i >= len || text[i] != '{')
        return FB_JSON_SCAN_BAD;
    i = skip_ws(text, len, i + 1);
    int rc = FB_JSON_SCAN_OK;
    if (i < len && text[i] == '}') {
        i++;
    } else {
        for (;;) {
            fb_json_member_span m;
            if ((rc = scan_member(text, len, i, &m, &i)) != FB_JSON_SCAN_OK ||
                (rc = push_member(out, n, &cap, m)) != FB_JSON_SCAN_OK)
                break;
            if (i < len && text[i] == ',') {
                i = skip_ws(text, len, i + 1);
                continue;
            }
            if (i < len && text[i] == '}')
                i++;
            else
                rc = FB_JSON_SCAN_BAD;
            break;
        }
    }
    if (rc == FB_JSON_SCAN_OK && skip_ws(text, len, i) != len)
        rc = FB_JSON_SCAN_BAD;
    if (rc != FB_JSON_SCAN_OK) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

bool fb_json_elements_begin(fb_json_elements *it, const char *text, fb_json_span arr)
{
    *it = (fb_json_elements){.text = text, .pos = arr.off + 1, .end = arr.off + arr.len};
    return arr.len >= 2 && text[arr.off] == '[' && text[it->end - 1] == ']';
}

/* Where the next element begins, past the separator, or 0 after the last
 * element, or -1 on a grammar error. */
static int element_start(fb_json_elements *it, size_t *at)
{
    if (it->done)
        return 0;
    const char *t = it->text;
    size_t i = skip_ws(t, it->end, it->pos);
    if (i < it->end && t[i] == ']') {
        /* "[]" or after an element; "[1,]" is refused below (no value). */
        it->done = true;
        return i + 1 == it->end ? 0 : -1;
    }
    if (it->started) {
        if (i >= it->end || t[i] != ',')
            return -1;
        i = skip_ws(t, it->end, i + 1);
    }
    *at = i;
    return 1;
}

int fb_json_elements_next(fb_json_elements *it, fb_json_span *out)
{
    size_t i;
    int rc = element_start(it, &i);
    if (rc <= 0)
        return rc;
    size_t e = value_end(it->text, it->end, i, NULL);
    if (e == 0 || e >= it->end)
        return -1;
    *out = (fb_json_span){i, e - i};
    it->pos = e;
    it->started = true;
    return 1;
}

int fb_json_elements_peek(fb_json_elements *it, size_t *at)
{
    fb_json_elements copy = *it;
    int rc = element_start(&copy, at);
    return rc > 0 && *at >= it->end - 1 ? -1 : rc;
}

void fb_json_elements_skip(fb_json_elements *it, size_t end)
{
    it->pos = end;
    it->started = true;
}
