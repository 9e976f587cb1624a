/* Strict JSON reading: the one place manifests, indexes and the config are
 * parsed, so that every file we accept means the same thing to us, to jq
 * and to any other reader (see json_strict_i.h for the rules and why). The
 * typed getters are in json_get.c, the writer in json_write.c. */
#include "json_strict_i.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fb_text.h"
#include "json_prescan_i.h"

/* Numbers are read from their text, never from cJSON's double. Where a
 * number node's text starts is kept in the node itself, in valueint (cJSON's
 * int copy of the value, which nothing here reads): set once by the walk of
 * fb_json_parse, it makes the lookup O(1) and costs no memory, where a map
 * from node to offset cost 16 bytes per number and a sort. So a document
 * is at most INT_MAX bytes. */
struct fb_json_doc {
    cJSON *root;
    const char *text;
    size_t len;
    int code;
    char source[512];
    /* fb_json_parse_part's number offsets, the buffer kept from part to part. */
    uint32_t *nums;
    size_t cap_nums;
};

/* ------------------------------------------------------------ messages */

void fb_json_line_col(const char *text, size_t offset, size_t *line, size_t *col)
{
    size_t l = 1, c = 1;
    for (size_t i = 0; i < offset; i++) {
        if (text[i] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
}

/* Appends s to dst (capacity cap), cutting it and ending in "..." when it
 * does not fit. */
static void append_cut(char *dst, size_t cap, const char *s)
{
    size_t used = strlen(dst), n = strlen(s);
    if (used + n < cap) {
        memcpy(dst + used, s, n + 1);
        return;
    }
    if (cap < 4 || used + 4 > cap)
        return;
    size_t room = cap - used - 4;
    memcpy(dst + used, s, room);
    memcpy(dst + used + room, "...", 4);
}

/* Keys come from the document: in a path they are quoted like any
 * untrusted value, so a key cannot forge a line of a message. */
static void append_key(char *dst, size_t cap, const char *key, size_t n)
{
    char q[FB_TEXT_QUOTE_SIZE(FB_JSON_QUOTE_CUT)];
    if (dst[0])
        append_cut(dst, cap, ".");
    append_cut(dst, cap, fb_text_quote_n(key, n, FB_JSON_QUOTE_CUT, q, sizeof q));
}

/* nonnull(4) is not decoration: under -fsanitize=undefined GCC 12 splits off
 * a "fmt == NULL" path for its nonnull check of vsnprintf and then warns
 * "null format string" on it (fatal with -Dwerror=true). Every caller passes
 * the literal format of fb_json_fail/fb_json_fail_key, so telling GCC so
 * removes that path. */
__attribute__((format(printf, 4, 0), nonnull(4)))
static int doc_fail_at(const fb_json_doc *doc, const char *path, fb_error *err,
                       const char *fmt, va_list ap)
{
    char msg[FB_ERROR_MESSAGE_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (path && path[0])
        return fb_error_set(err, doc->code, "%s: %s: %s", doc->source, path, msg);
    return fb_error_set(err, doc->code, "%s: %s", doc->source, msg);
}

static void render_path(const fb_json_val *val, char *buf, size_t cap)
{
    if (!val->parent) {
        buf[0] = '\0';
        return;
    }
    render_path(val->parent, buf, cap);
    if (val->key) {
        append_key(buf, cap, val->key, strlen(val->key));
    } else {
        char idx[32];
        snprintf(idx, sizeof idx, "[%zu]", val->index);
        append_cut(buf, cap, idx);
    }
}

void fb_json_path(const fb_json_val *val, char *buf, size_t cap)
{
    if (cap == 0)
        return;
    render_path(val, buf, cap);
}

int fb_json_fail(const fb_json_val *val, fb_error *err, const char *fmt, ...)
{
    char path[FB_JSON_PATH_MAX];
    fb_json_path(val, path, sizeof path);
    va_list ap;
    va_start(ap, fmt);
    int rc = doc_fail_at(val->doc, path, err, fmt, ap);
    va_end(ap);
    return rc;
}

int fb_json_fail_key(const fb_json_val *obj, const char *key, fb_error *err, const char *fmt,
                     ...)
{
    char path[FB_JSON_PATH_MAX];
    fb_json_path(obj, path, sizeof path);
    append_key(path, sizeof path, key, strlen(key));
    va_list ap;
    va_start(ap, fmt);
    int rc = doc_fail_at(obj->doc, path, err, fmt, ap);
    va_end(ap);
    return rc;
}

static int syntax_fail(const char *source, int code, const char *text, size_t off,
                       const char *path, fb_error *err, const char *reason)
{
    size_t line, col;
    fb_json_line_col(text, off, &line, &col);
    if (path && path[0])
        return fb_error_set(err, code, "%s: invalid JSON at line %zu col %zu (%s): %s", source,
                            line, col, path, reason);
    return fb_error_set(err, code, "%s: invalid JSON at line %zu col %zu: %s", source, line, col,
                        reason);
}

/* ------------------------------------------------------------- pre-scan */

/* Renders the JSON path of the position where the scan stopped. */
static void prescan_path(const fb_json_prescan *s, char *buf, size_t cap)
{
    buf[0] = '\0';
    for (size_t i = 0; i < s->depth; i++) {
        const fb_json_prescan_level *l = &s->stack[i];
        if (l->kind == '[') {
            char idx[32];
            snprintf(idx, sizeof idx, "[%zu]", l->index);
            append_cut(buf, cap, idx);
        } else if (l->has_key) {
            append_key(buf, cap, (const char *)s->p + l->key_off, l->key_len);
        }
    }
}

/* ------------------------------------------------------------- tree walk */

typedef struct walker {
    fb_json_doc *doc;
    const uint32_t *offs; /* the pre-scan's number offsets, document order */
    size_t n_offs;
    size_t n; /* number nodes seen so far */
    fb_error *err;
    int rc;
} walker;

static int cmp_key_ci(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    int r = strcasecmp(x->string, y->string);
    return r ? r : strcmp(x->string, y->string);
}

static bool key_clash(walker *w, const fb_json_val *here, const char *a, const char *b)
{
    char path[FB_JSON_PATH_MAX];
    fb_json_path(here, path, sizeof path);
    char qa[FB_TEXT_QUOTE_SIZE(FB_JSON_QUOTE_CUT)], qb[FB_TEXT_QUOTE_SIZE(FB_JSON_QUOTE_CUT)];
    fb_text_quote_n(a, strlen(a), FB_JSON_QUOTE_CUT, qa, sizeof qa);
    fb_text_quote_n(b, strlen(b), FB_JSON_QUOTE_CUT, qb, sizeof qb);
    const char *where = path[0] ? path : "top-level object";
    if (strcmp(a, b) == 0)
        w->rc = fb_error_set(w->err, w->doc->code, "%s: %s: duplicate key \"%s\"",
                             w->doc->source, where, qa);
    else
        w->rc = fb_error_set(w->err, w->doc->code,
                             "%s: %s: keys \"%s\" and \"%s\" differ only in case",
                             w->doc->source, where, qa, qb);
    return false;
}

/* Duplicate and case-twin keys (ASCII case folding: every key we define is
 * ASCII). Small objects pairwise, large ones sorted. */
static bool check_keys(walker *w, const fb_json_val *here)
{
    const cJSON *obj = here->node;
    size_t n = 0;
    for (const cJSON *c = obj->child; c; c = c->next)
        n++;
    if (n < 2)
        return true;
    if (n <= 16) {
        for (const cJSON *a = obj->child; a; a = a->next)
            for (const cJSON *b = a->next; b; b = b->next)
                /* Keys equal but for ASCII case have first bytes equal
                 * but for bit 0x20: most pairs differ there already. */
                if (((a->string[0] ^ b->string[0]) & ~0x20) == 0 &&
                    strcasecmp(a->string, b->string) == 0)
                    return key_clash(w, here, a->string, b->string);
        return true;
    }
    const cJSON **keys = malloc(n * sizeof *keys);
    if (!keys) {
        w->rc = fb_error_set(w->err, FB_ENOMEM, "%s: out of memory", w->doc->source);
        return false;
    }
    size_t i = 0;
    for (const cJSON *c = obj->child; c; c = c->next)
        keys[i++] = c;
    qsort(keys, n, sizeof *keys, cmp_key_ci);
    bool ok = true;
    for (i = 1; i < n && ok; i++)
        if (strcasecmp(keys[i - 1]->string, keys[i]->string) == 0)
            ok = key_clash(w, here, keys[i - 1]->string, keys[i]->string);
    free(keys);
    return ok;
}

/* Recursion depth is bounded by cJSON's nesting limit (1000); each level
 * keeps only its location (a fb_json_val), paths are rendered on error. */
static bool walk(walker *w, const fb_json_val *here)
{
    const cJSON *node = here->node;
    if (cJSON_IsNumber(node)) {
        /* The tree is the document's own (fb_json_doc.root is not const):
         * the walk is where each number learns where its text is. */
        if (w->n < w->n_offs)
            ((cJSON *)node)->valueint = (int)w->offs[w->n];
        w->n++;
        return true;
    }
    if (cJSON_IsObject(node)) {
        if (!check_keys(w, here))
            return false;
        for (const cJSON *c = node->child; c; c = c->next) {
            fb_json_val sub;
            fb_json_child(here, c, &sub);
            if (!walk(w, &sub))
                return false;
        }
        return true;
    }
    if (cJSON_IsArray(node)) {
        size_t i = 0;
        for (const cJSON *c = node->child; c; c = c->next, i++) {
            fb_json_val sub;
            fb_json_element(here, c, i, &sub);
            if (!walk(w, &sub))
                return false;
        }
        return true;
    }
    return true;
}

/* ----------------------------------------------------------------- parse */

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Size cap and pre-scan of a whole document, which must not be empty;
 * s->nums holds the number offsets unless nums is false. */
static int prescan_doc(const char *text, size_t len, size_t max_len, const char *source,
                       int code, bool nums, fb_json_prescan *s, fb_error *err)
{
    if (max_len > INT_MAX)
        max_len = INT_MAX; /* number offsets are kept in an int */
    if (len > max_len)
        return fb_error_set(err, code, "%s: %zu bytes, more than the limit of %zu", source, len,
                            max_len);
    *s = (fb_json_prescan){.p = (const unsigned char *)text, .len = len, .no_nums = !nums,
                   .max_values = VALUES_FREE + len / VALUE_BYTES_MIN};
    if (!fb_json_prescan_run(s)) {
        char path[FB_JSON_PATH_MAX];
        prescan_path(s, path, sizeof path);
        free(s->nums);
        free(s->stack);
        if (s->oom)
            return fb_error_set(err, FB_ENOMEM, "%s: out of memory", source);
        if (s->too_many)
            return fb_error_set(err, code,
                                "%s: more than %zu JSON values in %zu bytes (at most one per %d "
                                "bytes, and %d): refused before building them",
                                source, s->max_values, len, VALUE_BYTES_MIN, VALUES_FREE);
        return syntax_fail(source, code, text, s->pos, path, err, s->reason);
    }
    free(s->stack);
    s->stack = NULL;
    size_t first = 0;
    while (first < len && is_ws(text[first]))
        first++;
    if (first == len) {
        free(s->nums);
        return fb_error_set(err, code, "%s: invalid JSON: empty document", source);
    }
    return 0;
}

int fb_json_check_text(const char *text, size_t len, size_t max_len, const char *source,
                       int code, fb_error *err)
{
    fb_json_prescan s;
    return prescan_doc(text, len, max_len, source, code, false, &s, err);
}

int fb_json_parse(const char *text, size_t len, size_t max_len, const char *source, int code,
                  fb_json_doc **out, fb_error *err)
{
    *out = NULL;
    fb_json_prescan s;
    int rc = prescan_doc(text, len, max_len, source, code, true, &s, err);
    if (rc)
        return rc;

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        free(s.nums);
        size_t off = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        return syntax_fail(source, code, text, off, NULL, err, "syntax error");
    }
    size_t off = (size_t)(end - text);
    while (off < len && is_ws(text[off]))
        off++;
    if (off < len) {
        free(s.nums);
        cJSON_Delete(root);
        return syntax_fail(source, code, text, off, NULL, err,
                           "unexpected data after the JSON value");
    }

    fb_json_doc *doc = calloc(1, sizeof *doc);
    if (!doc) {
        free(s.nums);
        cJSON_Delete(root);
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", source);
    }
    doc->root = root;
    doc->text = text;
    doc->len = len;
    doc->code = code;
    snprintf(doc->source, sizeof doc->source, "%s", source);

    walker w = {.doc = doc, .offs = s.nums, .n_offs = s.n_nums, .err = err};
    fb_json_val top;
    fb_json_root(doc, &top);
    bool ok = walk(&w, &top);
    free(s.nums);
    if (!ok) {
        fb_json_doc_free(doc);
        return w.rc;
    }
    if (w.n != s.n_nums) {
        /* Both walk the same text in order; a mismatch means cJSON read a
         * number token differently than the grammar says. */
        fb_json_doc_free(doc);
        return fb_error_set(err, code, "%s: numbers parsed inconsistently (%zu vs %zu)", source,
                            w.n, s.n_nums);
    }
    *out = doc;
    return 0;
}

void fb_json_doc_free(fb_json_doc *doc)
{
    if (!doc)
        return;
    cJSON_Delete(doc->root);
    free(doc->nums);
    free(doc);
}

/* ------------------------------------------------------ documents in parts */

int fb_json_doc_new(const char *text, size_t len, const char *source, int code,
                    fb_json_doc **out, fb_error *err)
{
    *out = NULL;
    fb_json_doc *doc = calloc(1, sizeof *doc);
    if (doc)
        doc->root = cJSON_CreateObject();
    if (!doc || !doc->root) {
        free(doc);
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", source);
    }
    doc->text = text;
    doc->len = len;
    doc->code = code;
    snprintf(doc->source, sizeof doc->source, "%s", source);
    *out = doc;
    return 0;
}

int fb_json_doc_add(fb_json_doc *doc, const char *key, cJSON *value, fb_error *err)
{
    if (!cJSON_AddItemToObject(doc->root, key, value)) {
        cJSON_Delete(value);
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", doc->source);
    }
    return 0;
}

int fb_json_doc_check_keys(const fb_json_doc *doc, fb_error *err)
{
    walker w = {.doc = (fb_json_doc *)doc, .err = err};
    fb_json_val top;
    fb_json_root(doc, &top);
    return check_keys(&w, &top) ? 0 : w.rc;
}

/* The checks of fb_json_parse on a part: cJSON, only whitespace after,
 * keys, numbers in step (the pre-scan was done on the whole text). */
int fb_json_parse_part(fb_json_doc *doc, size_t off, size_t n, const fb_json_val *where,
                       cJSON **out, fb_error *err)
{
    *out = NULL;
    fb_json_prescan s = {.p = (const unsigned char *)doc->text + off, .len = n, .base = off,
                 .nums = doc->nums, .cap_nums = doc->cap_nums};
    bool ok = fb_json_prescan_numbers(&s);
    doc->nums = s.nums;
    doc->cap_nums = s.cap_nums;
    if (!ok)
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", doc->source);
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(doc->text + off, n, &end, 0);
    if (!v)
        return fb_error_set(err, doc->code, "%s: invalid JSON", doc->source);
    size_t e = (size_t)(end - doc->text);
    while (e < off + n && is_ws(doc->text[e]))
        e++;
    walker w = {.doc = doc, .offs = s.nums, .n_offs = s.n_nums, .err = err};
    fb_json_val here = *where;
    here.doc = doc;
    here.node = v;
    if (e < off + n || !walk(&w, &here) || w.n != s.n_nums) {
        cJSON_Delete(v);
        return w.rc ? w.rc : fb_error_set(err, doc->code, "%s: invalid JSON", doc->source);
    }
    *out = v;
    return 0;
}

/* ------------------------------------------------------------- locations */

void fb_json_root(const fb_json_doc *doc, fb_json_val *out)
{
    memset(out, 0, sizeof *out);
    out->doc = doc;
    out->node = doc->root;
}

void fb_json_element(const fb_json_val *arr, const cJSON *child, size_t i, fb_json_val *out)
{
    out->doc = arr->doc;
    out->node = child;
    out->parent = arr;
    out->key = NULL;
    out->index = i;
}

void fb_json_child(const fb_json_val *obj, const cJSON *child, fb_json_val *out)
{
    out->doc = obj->doc;
    out->node = child;
    out->parent = obj;
    out->key = child->string ? child->string : "";
    out->index = 0;
}

bool fb_json_number_text(const fb_json_val *val, const char **p, size_t *n)
{
    const fb_json_doc *doc = val->doc;
    const cJSON *node = val->node;
    if (!cJSON_IsNumber(node) || node->valueint < 0 || (size_t)node->valueint >= doc->len)
        return false;
    size_t off = (size_t)node->valueint;
    bool is_int;
    *p = doc->text + off;
    *n = fb_json_number_len((const unsigned char *)*p, doc->len - off, &is_int);
    return *n > 0;
}
