/* The JSON writer (see json_write_i.h): pretty text within the limits the
 * strict reader keeps to (valid UTF-8, integers exact and within 2^53),
 * so that what we write we can read back. */
#include "json_write_i.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fb_text.h"

void fb_json_writer_init(fb_json_writer *w)
{
    memset(w, 0, sizeof *w);
}

void fb_json_writer_init_compact(fb_json_writer *w)
{
    fb_json_writer_init(w);
    w->compact = true;
}

void fb_json_items_on_lines(fb_json_writer *w)
{
    w->lines_next = true;
}

void fb_json_writer_fini(fb_json_writer *w)
{
    free(w->buf);
    memset(w, 0, sizeof *w);
}

/* Only the first error is kept: what follows it is written into a
 * document that is already lost. nonnull(3) keeps GCC 12's
 * -fsanitize=undefined from inventing a NULL format path and warning about
 * it; every caller passes a literal. */
__attribute__((format(printf, 3, 4), nonnull(3)))
static void w_error(fb_json_writer *w, int code, const char *fmt, ...)
{
    if (w->error)
        return;
    w->error = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->error_what, sizeof w->error_what, fmt, ap);
    va_end(ap);
}

static void w_put(fb_json_writer *w, const char *s, size_t n)
{
    if (w->error)
        return;
    size_t need;
    if (__builtin_add_overflow(w->len, n + 1, &need)) {
        w_error(w, FB_ENOMEM, "too large");
        return;
    }
    if (need > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < need) {
            if (__builtin_mul_overflow(cap, 2, &cap)) {
                w_error(w, FB_ENOMEM, "too large");
                return;
            }
        }
        char *b = realloc(w->buf, cap);
        if (!b) {
            w_error(w, FB_ENOMEM, "out of memory");
            return;
        }
        w->buf = b;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void w_puts(fb_json_writer *w, const char *s)
{
    w_put(w, s, strlen(s));
}

/* The break before an item of the open container, or before its end
 * (indented one level less). */
static void w_newline_indent(fb_json_writer *w, int depth)
{
    static const char spaces[] = "                                ";
    if (w->compact) {
        if (w->line_items[w->depth])
            w_put(w, "\n", 1);
        return;
    }
    w_put(w, "\n", 1);
    for (int i = 0; i < depth; i++)
        w_put(w, spaces, 2);
}

/* Separator and indentation before a value or a key. */
static void w_before_item(fb_json_writer *w)
{
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (w->depth == 0) {
        if (w->len)
            w_error(w, FB_EMISUSE, "more than one top-level value");
        return;
    }
    if (w->has_items[w->depth])
        w_put(w, ",", 1);
    w->has_items[w->depth] = true;
    w_newline_indent(w, w->depth);
}

static void w_open(fb_json_writer *w, char c)
{
    w_before_item(w);
    if (w->depth + 1 >= (int)(sizeof w->has_items / sizeof w->has_items[0])) {
        w_error(w, FB_EMISUSE, "nesting too deep");
        return;
    }
    w_put(w, &c, 1);
    w->depth++;
    w->has_items[w->depth] = false;
    w->line_items[w->depth] = w->compact && w->lines_next;
    w->lines_next = false;
}

static void w_close(fb_json_writer *w, char c)
{
    if (w->depth == 0 || w->after_key) {
        w_error(w, FB_EMISUSE, "unbalanced end of container");
        return;
    }
    if (w->has_items[w->depth])
        w_newline_indent(w, w->depth - 1);
    w_put(w, &c, 1);
    w->depth--;
}

void fb_json_begin_object(fb_json_writer *w)
{
    w_open(w, '{');
}

void fb_json_end_object(fb_json_writer *w)
{
    w_close(w, '}');
}

void fb_json_begin_array(fb_json_writer *w)
{
    w_open(w, '[');
}

void fb_json_end_array(fb_json_writer *w)
{
    w_close(w, ']');
}

static void w_string_body(fb_json_writer *w, const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    size_t i = 0;
    w_put(w, "\"", 1);
    while (i < n) {
        /* Copy the longest run that needs no escaping in one call. */
        size_t start = i;
        while (i < n && u[i] >= 0x20 && u[i] < 0x7f && u[i] != '"' && u[i] != '\\')
            i++;
        if (i > start)
            w_put(w, s + start, i - start);
        if (i >= n)
            break;
        unsigned char c = u[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            w_put(w, esc, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            const char *named = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r"
                              : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
            if (named) {
                w_puts(w, named);
            } else {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                w_puts(w, esc);
            }
            i++;
        } else {
            size_t k = fb_utf8_seq_len(s + i, n - i);
            if (k == 0) {
                w_puts(w, "\xEF\xBF\xBD"); /* U+FFFD for each invalid byte */
                i++;
            } else {
                w_put(w, s + i, k);
                i += k;
            }
        }
    }
    w_put(w, "\"", 1);
}

void fb_json_key(fb_json_writer *w, const char *key)
{
    if (w->depth == 0 || w->after_key) {
        w_error(w, FB_EMISUSE, "key outside an object");
        return;
    }
    w_before_item(w);
    w_string_body(w, key);
    w_put(w, ": ", w->compact ? 1 : 2);
    w->after_key = true;
    snprintf(w->last_key, sizeof w->last_key, "%s", key);
}

void fb_json_string(fb_json_writer *w, const char *s)
{
    w_before_item(w);
    w_string_body(w, s);
}

void fb_json_string_or_null(fb_json_writer *w, const char *s)
{
    if (s)
        fb_json_string(w, s);
    else
        fb_json_null(w);
}

/* Writes the integer formatted in num, or, when it is not exact (beyond
 * what a double holds), records "<key>: <num> is beyond 2^53" instead. */
static void w_integer(fb_json_writer *w, const char *num, bool exact)
{
    if (!exact) {
        w_error(w, FB_EMISUSE, "%s: %s is beyond 2^53", w->last_key, num);
        return;
    }
    w_before_item(w);
    w_puts(w, num);
}

void fb_json_u64(fb_json_writer *w, uint64_t v)
{
    char num[24];
    snprintf(num, sizeof num, "%" PRIu64, v);
    w_integer(w, num, v <= FB_JSON_INT_MAX);
}

void fb_json_i64(fb_json_writer *w, int64_t v)
{
    char num[24];
    snprintf(num, sizeof num, "%" PRId64, v);
    w_integer(w, num, v <= (int64_t)FB_JSON_INT_MAX && v >= -(int64_t)FB_JSON_INT_MAX);
}

void fb_json_bool(fb_json_writer *w, bool v)
{
    w_before_item(w);
    w_puts(w, v ? "true" : "false");
}

void fb_json_null(fb_json_writer *w)
{
    w_before_item(w);
    w_puts(w, "null");
}

int fb_json_writer_finish(fb_json_writer *w, const char *what, char **out, size_t *out_len,
                          fb_error *err)
{
    *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!w->error && (w->depth != 0 || w->after_key || w->len == 0))
        w_error(w, FB_EMISUSE, "incomplete document");
    if (!w->error)
        w_put(w, "\n", 1);
    if (w->error) {
        int code = w->error;
        char msg[sizeof w->error_what];
        memcpy(msg, w->error_what, sizeof msg);
        fb_json_writer_fini(w);
        return fb_error_set(err, code, "%s: cannot write JSON: %s", what, msg);
    }
    *out = w->buf;
    if (out_len)
        *out_len = w->len;
    w->buf = NULL;
    fb_json_writer_fini(w);
    return 0;
}
