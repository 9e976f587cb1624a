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

/* cJSON builds a node of about 80 bytes (with malloc's overhead) for every
 * value, and a string for every string and key: that costs 150-450 ns per
 * value, mostly page faults, whatever the value. Dense junk such as an
 * unknown key holding [0,0,0,...] is 2 bytes a value: 256 MB of it took
 * 57 s and 10.5 GB. No document we read comes near: the densest manifest
 * entry possible ({"path":"a","type":"dir", six 0s}, compact) is 9 values
 * in 85 bytes, one our writer makes (indented) about 28 bytes a value. So a
 * document may hold one value per VALUE_BYTES_MIN bytes, plus VALUES_FREE
 * for small ones (a config with a list of one-letter patterns): that bounds
 * the tree to about 10 times the text, and the time to about half a second
 * per 10 MB (bench/manifest_parse.py). The pre-scan stops at the first
 * value over the limit, so junk is refused in a fraction of a second,
 * before anything is built. */
#define VALUE_BYTES_MIN 8
#define VALUES_FREE 65536

/* One open container, so a lexical error can be reported with the JSON
 * path of the value it is in ("entries[3].path"), not only line/col. */
typedef struct prescan_level {
    char kind;     /* '{' or '[' */
    bool want_key; /* object: the next string is a key */
    bool has_key;
    size_t key_off, key_len; /* raw text of the current key */
    size_t index;            /* array: current element */
} prescan_level;

typedef struct prescan {
    const unsigned char *p;
    size_t len;
    size_t pos;
    const char *reason; /* set on a lexical error, at pos */
    uint32_t *nums;     /* offsets of number tokens, document order */
    size_t n_nums, cap_nums;
    prescan_level *stack;
    size_t depth, cap_stack;
    size_t n_values; /* every value: containers, strings (not keys), numbers, literals */
    size_t max_values;
    bool too_many; /* stopped at value max_values + 1 */
    bool oom;
} prescan;

static int hex4(const unsigned char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static bool scan_string(prescan *s)
{
    s->pos++; /* opening quote */
    while (s->pos < s->len) {
        unsigned char c = s->p[s->pos];
        if (c == '"') {
            s->pos++;
            return true;
        }
        if (c == '\\') {
            if (s->pos + 1 >= s->len)
                break;
            unsigned char e = s->p[s->pos + 1];
            if (strchr("\"\\/bfnrt", e) && e != '\0') {
                s->pos += 2;
                continue;
            }
            if (e != 'u') {
                s->reason = "invalid escape in a string";
                return false;
            }
            unsigned u;
            if (s->pos + 6 > s->len || hex4(s->p + s->pos + 2, &u) < 0) {
                s->reason = "invalid \\u escape in a string";
                return false;
            }
            if (u == 0) {
                /* cJSON would cut the string here; a name with a NUL
                 * cannot be a file name either. */
                s->reason = "\\u0000 in a string";
                return false;
            }
            if (u >= 0xDC00 && u <= 0xDFFF) {
                s->reason = "unpaired UTF-16 surrogate in a string";
                return false;
            }
            if (u >= 0xD800 && u <= 0xDBFF) {
                unsigned lo;
                if (s->pos + 12 > s->len || s->p[s->pos + 6] != '\\' || s->p[s->pos + 7] != 'u' ||
                    hex4(s->p + s->pos + 8, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF) {
                    s->reason = "unpaired UTF-16 surrogate in a string";
                    return false;
                }
                s->pos += 12;
                continue;
            }
            s->pos += 6;
            continue;
        }
        if (c < 0x20) {
            s->reason = "unescaped control character in a string";
            return false;
        }
        size_t k = fb_utf8_seq_len((const char *)s->p + s->pos, s->len - s->pos);
        if (k == 0) {
            s->reason = "invalid UTF-8 in a string";
            return false;
        }
        s->pos += k;
    }
    s->reason = "unterminated string";
    return false;
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Length of the RFC 8259 number at p (n bytes), or 0 if malformed. Also
 * rejects a number directly followed by number characters ("01", "1.2.3"),
 * which cJSON would read differently. */
static size_t number_len(const unsigned char *p, size_t n, bool *is_int)
{
    size_t i = 0;
    *is_int = true;
    if (i < n && p[i] == '-')
        i++;
    if (i >= n || !is_digit(p[i]))
        return 0;
    if (p[i] == '0') {
        i++;
    } else {
        while (i < n && is_digit(p[i]))
            i++;
    }
    if (i < n && p[i] == '.') {
        *is_int = false;
        i++;
        if (i >= n || !is_digit(p[i]))
            return 0;
        while (i < n && is_digit(p[i]))
            i++;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        *is_int = false;
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        if (i >= n || !is_digit(p[i]))
            return 0;
        while (i < n && is_digit(p[i]))
            i++;
    }
    if (i < n && (is_digit(p[i]) || p[i] == '.' || p[i] == 'e' || p[i] == 'E' || p[i] == '+' ||
                  p[i] == '-'))
        return 0;
    return i;
}

static bool push_number(prescan *s, size_t off)
{
    if (s->n_nums == s->cap_nums) {
        size_t cap = s->cap_nums ? s->cap_nums * 2 : 64;
        uint32_t *n = realloc(s->nums, cap * sizeof *n);
        if (!n) {
            s->oom = true;
            return false;
        }
        s->nums = n;
        s->cap_nums = cap;
    }
    s->nums[s->n_nums++] = (uint32_t)off; /* off < len <= INT_MAX */
    return true;
}

static bool scan_literal(prescan *s, const char *word)
{
    size_t n = strlen(word);
    if (s->len - s->pos < n || memcmp(s->p + s->pos, word, n) != 0) {
        s->reason = "unexpected character";
        return false;
    }
    s->pos += n;
    return true;
}

/* Checks every token of the text; structure (matching brackets, commas,
 * colons) is left to cJSON. */
static bool push_level(prescan *s, char kind)
{
    if (s->depth >= FB_JSON_DEPTH_MAX) {
        s->reason = "nesting deeper than 1000 levels";
        return false;
    }
    if (s->depth == s->cap_stack) {
        size_t cap = s->cap_stack ? s->cap_stack * 2 : 16;
        prescan_level *st = realloc(s->stack, cap * sizeof *st);
        if (!st) {
            s->oom = true;
            return false;
        }
        s->stack = st;
        s->cap_stack = cap;
    }
    prescan_level *l = &s->stack[s->depth++];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    l->want_key = kind == '{';
    return true;
}

/* Renders the JSON path of the position where the scan stopped. */
static void prescan_path(const prescan *s, char *buf, size_t cap)
{
    buf[0] = '\0';
    for (size_t i = 0; i < s->depth; i++) {
        const prescan_level *l = &s->stack[i];
        if (l->kind == '[') {
            char idx[32];
            snprintf(idx, sizeof idx, "[%zu]", l->index);
            append_cut(buf, cap, idx);
        } else if (l->has_key) {
            append_key(buf, cap, (const char *)s->p + l->key_off, l->key_len);
        }
    }
}

static bool count_value(prescan *s)
{
    if (++s->n_values <= s->max_values)
        return true;
    s->too_many = true;
    return false;
}

static bool prescan_run(prescan *s)
{
    while (s->pos < s->len) {
        unsigned char c = s->p[s->pos];
        prescan_level *top = s->depth ? &s->stack[s->depth - 1] : NULL;
        switch (c) {
        case ' ':
        case '\t':
        case '\n':
        case '\r':
            s->pos++;
            break;
        case ':':
            if (top && top->kind == '{')
                top->want_key = false;
            s->pos++;
            break;
        case ',':
            if (top && top->kind == '[')
                top->index++;
            else if (top)
                top->want_key = true;
            s->pos++;
            break;
        case '{':
        case '[':
            if (!count_value(s))
                return false;
            if (!push_level(s, (char)c))
                return false;
            s->pos++;
            break;
        case '}':
        case ']':
            if (s->depth > 0)
                s->depth--;
            s->pos++;
            break;
        case '"':
            if (top && top->kind == '{' && top->want_key) {
                top->has_key = true;
                top->key_off = s->pos + 1;
                top->key_len = 0;
                bool ok = scan_string(s);
                top->key_len = (ok ? s->pos - 1 : s->pos) - top->key_off;
                if (!ok)
                    return false;
                break;
            }
            if (!count_value(s))
                return false;
            if (!scan_string(s))
                return false;
            break;
        case 't':
            if (!count_value(s))
                return false;
            if (!scan_literal(s, "true"))
                return false;
            break;
        case 'f':
            if (!count_value(s))
                return false;
            if (!scan_literal(s, "false"))
                return false;
            break;
        case 'n':
            if (!count_value(s))
                return false;
            if (!scan_literal(s, "null"))
                return false;
            break;
        default:
            if (c == '-' || is_digit(c)) {
                bool is_int;
                size_t k = number_len(s->p + s->pos, s->len - s->pos, &is_int);
                if (k == 0) {
                    s->reason = "malformed number";
                    return false;
                }
                if (!count_value(s))
                    return false;
                if (!push_number(s, s->pos))
                    return false;
                s->pos += k;
                break;
            }
            s->reason = c >= 0x80 ? "unexpected non-ASCII byte outside a string"
                                  : "unexpected character";
            return false;
        }
    }
    return true;
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
                if (strcasecmp(a->string, b->string) == 0)
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

int fb_json_parse(const char *text, size_t len, size_t max_len, const char *source, int code,
                  fb_json_doc **out, fb_error *err)
{
    *out = NULL;
    if (max_len > INT_MAX)
        max_len = INT_MAX; /* number offsets are kept in an int */
    if (len > max_len)
        return fb_error_set(err, code, "%s: %zu bytes, more than the limit of %zu", source, len,
                            max_len);
    prescan s = {.p = (const unsigned char *)text, .len = len,
                 .max_values = VALUES_FREE + len / VALUE_BYTES_MIN};
    if (!prescan_run(&s)) {
        char path[FB_JSON_PATH_MAX];
        prescan_path(&s, path, sizeof path);
        free(s.nums);
        free(s.stack);
        if (s.oom)
            return fb_error_set(err, FB_ENOMEM, "%s: out of memory", source);
        if (s.too_many)
            return fb_error_set(err, code,
                                "%s: more than %zu JSON values in %zu bytes (at most one per %d "
                                "bytes, and %d): refused before building them",
                                source, s.max_values, len, VALUE_BYTES_MIN, VALUES_FREE);
        return syntax_fail(source, code, text, s.pos, path, err, s.reason);
    }
    free(s.stack);
    size_t first = 0;
    while (first < len && is_ws(text[first]))
        first++;
    if (first == len) {
        free(s.nums);
        return fb_error_set(err, code, "%s: invalid JSON: empty document", source);
    }

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
    free(doc);
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
    *n = number_len((const unsigned char *)*p, doc->len - off, &is_int);
    return *n > 0;
}
