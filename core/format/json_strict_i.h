/* Strict JSON reading for manifests, indexes and the config (the writer,
 * which keeps to the same limits, is in json_write_i.h).
 *
 * cJSON 1.7.15 builds the tree, but it is lenient in ways that let two
 * readers disagree about one file (parser differentials, RELIABILITY A13):
 * it accepts trailing data, duplicate keys, raw control characters, leading
 * zeros, invalid UTF-8, and truncates strings at an escaped NUL. So a parse
 * here is: size cap -> one lexical pre-scan of the raw text (strict RFC 8259
 * tokens, valid UTF-8, no \u0000, nesting <= FB_JSON_DEPTH_MAX, at most one
 * value per 8 bytes plus 65,536: cJSON spends about 80 bytes a value, so
 * "[0,0,0,...]" near the size cap would need gigabytes; a real manifest has
 * about 18 bytes a value) -> cJSON -> only whitespace after the value -> no
 * duplicate or case-twin keys.
 *
 * Integers are taken from the original number text, never from cJSON's
 * double, so 2^53+1 is not silently read as 2^53 and 1.0 / 1e2 are not
 * integers.
 *
 * Every error names the source file and the JSON path of the value
 * ("manifest.json: entries[12].size: ..."), with the error code the caller
 * chose (FB_ECORRUPT for stored data, FB_EINVAL for user config). */
#ifndef FB_JSON_STRICT_I_H
#define FB_JSON_STRICT_I_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "fb_error.h"
#include "fb_text.h" /* fb_utf8_valid, fb_utf8_lossy */

/* Same limit cJSON enforces; checked by the pre-scan too for a clear message. */
#define FB_JSON_DEPTH_MAX 1000
/* Largest integer accepted or written: every reader using doubles (jq,
 * JavaScript, Python's json for floats) keeps it exact. */
#define FB_JSON_INT_MAX (UINT64_C(1) << 53)
/* Longest JSON path kept for messages; longer ones are cut with "...". */
#define FB_JSON_PATH_MAX 256
/* How many bytes of a document's key or string a message shows: they are
 * quoted with fb_text_quote_n, as any untrusted value. */
#define FB_JSON_QUOTE_CUT 64

typedef struct fb_json_doc fb_json_doc;

/* Parses text[0..len) strictly. max_len caps the size; code is the error
 * code for any rejection (FB_ECORRUPT or FB_EINVAL); source names the file
 * in messages. text must stay alive and unchanged while the doc is used
 * (number values are re-read from it). Returns 0, code, or FB_ENOMEM. */
int fb_json_parse(const char *text, size_t len, size_t max_len, const char *source, int code,
                  fb_json_doc **out, fb_error *err);
void fb_json_doc_free(fb_json_doc *doc);

/* A value in a document and where it is: its parent value and key or
 * index. The JSON path ("entries[3].size") is only rendered for a message,
 * so reading 100k entries does not build 1M path strings. A val refers to
 * its parent: keep the parent alive (in an enclosing scope) while the val
 * is used. */
typedef struct fb_json_val {
    const fb_json_doc *doc;
    const cJSON *node;
    const struct fb_json_val *parent; /* NULL for the root */
    const char *key;                  /* member name, or NULL for an element */
    size_t index;                     /* element index when key is NULL */
} fb_json_val;

void fb_json_root(const fb_json_doc *doc, fb_json_val *out);

/* Reading a large document in parts (manifest_read.c), so that it is never
 * a tree as a whole: fb_json_check_text does the size cap and the pre-scan
 * of fb_json_parse on the whole text (same messages); fb_json_doc_new makes
 * a document of that text whose root is an empty object, which
 * fb_json_doc_add fills with members parsed by fb_json_parse_part (any
 * value of the text, at off, n bytes, with where as its place for
 * messages: parent, key, index). fb_json_doc_check_keys does the duplicate
 * and case-twin check of the root. Errors of parts name no position: a
 * caller that must report one re-reads the text with fb_json_parse. */
int fb_json_check_text(const char *text, size_t len, size_t max_len, const char *source,
                       int code, fb_error *err);
int fb_json_doc_new(const char *text, size_t len, const char *source, int code,
                    fb_json_doc **out, fb_error *err);
/* Takes value over (frees it on failure). */
int fb_json_doc_add(fb_json_doc *doc, const char *key, cJSON *value, fb_error *err);
int fb_json_doc_check_keys(const fb_json_doc *doc, fb_error *err);
int fb_json_parse_part(fb_json_doc *doc, size_t off, size_t n, const fb_json_val *where,
                       cJSON **out, fb_error *err);
/* Renders the JSON path of val ("" for the root), cut with "..." to cap. */
void fb_json_path(const fb_json_val *val, char *buf, size_t cap);

/* Flags of the getters. */
enum {
    FB_JSON_OPTIONAL = 1, /* an absent key is not an error: returns FB_JSON_ABSENT */
    FB_JSON_NULLABLE = 2, /* null is accepted: returns FB_JSON_ABSENT */
};
/* Positive return of getters: key absent (OPTIONAL) or value null (NULLABLE). */
#define FB_JSON_ABSENT 1

/* Sets err to "<source>: <path>: <message>" with the document's code and
 * returns that code. */
int fb_json_fail(const fb_json_val *val, fb_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Same, for the member key of obj (present or not): "<path>.<key>: ...". */
int fb_json_fail_key(const fb_json_val *obj, const char *key, fb_error *err, const char *fmt,
                     ...) __attribute__((format(printf, 4, 5)));

/* Short rendering of a value for "got ..." in messages: the number as
 * written, a quoted (escaped, cut) string, true/false/null, an object,
 * an array. */
void fb_json_describe(const fb_json_val *val, char *buf, size_t n);

/* The first member of the object obj named key (exactly), or NULL. */
const cJSON *fb_json_find_key(const cJSON *obj, const char *key);

/* Child value of an object by exact (case-sensitive) key. Absent: error
 * "missing", or FB_JSON_ABSENT with FB_JSON_OPTIONAL. */
int fb_json_member(const fb_json_val *obj, const char *key, unsigned flags, fb_json_val *out,
                   fb_error *err);
/* out = element child (the i-th of arr), path "arr[i]". */
void fb_json_element(const fb_json_val *arr, const cJSON *child, size_t i, fb_json_val *out);
/* out = member child of obj (from iterating obj->node->child). */
void fb_json_child(const fb_json_val *obj, const cJSON *child, fb_json_val *out);

/* Typed views of one value. Strings contain no NUL and are valid UTF-8
 * (the pre-scan guarantees it); *out points into the document. */
int fb_json_as_string(const fb_json_val *val, unsigned flags, const char **out, fb_error *err);
int fb_json_as_bool(const fb_json_val *val, unsigned flags, bool *out, fb_error *err);
int fb_json_as_object(const fb_json_val *val, unsigned flags, fb_error *err);
int fb_json_as_array(const fb_json_val *val, unsigned flags, size_t *count, fb_error *err);
/* An integer written without fraction or exponent, in [min, max] (max is
 * capped at FB_JSON_INT_MAX, min at -FB_JSON_INT_MAX). */
int fb_json_as_u64(const fb_json_val *val, unsigned flags, uint64_t min, uint64_t max,
                   uint64_t *out, fb_error *err);
int fb_json_as_i64(const fb_json_val *val, unsigned flags, int64_t min, int64_t max,
                   int64_t *out, fb_error *err);

/* fb_json_member + fb_json_as_*: the usual way to read a field. */
int fb_json_get_string(const fb_json_val *obj, const char *key, unsigned flags, const char **out,
                       fb_error *err);
int fb_json_get_bool(const fb_json_val *obj, const char *key, unsigned flags, bool *out,
                     fb_error *err);
int fb_json_get_object(const fb_json_val *obj, const char *key, unsigned flags,
                       fb_json_val *out, fb_error *err);
int fb_json_get_array(const fb_json_val *obj, const char *key, unsigned flags, fb_json_val *out,
                      size_t *count, fb_error *err);
int fb_json_get_u64(const fb_json_val *obj, const char *key, unsigned flags, uint64_t min,
                    uint64_t max, uint64_t *out, fb_error *err);
int fb_json_get_i64(const fb_json_val *obj, const char *key, unsigned flags, int64_t min,
                    int64_t max, int64_t *out, fb_error *err);

/* The text of a number value as the document spells it (the getters
 * read integers from it, exactly); false when val is not a number. */
bool fb_json_number_text(const fb_json_val *val, const char **p, size_t *n);

/* Offset of a byte in text as 1-based line and column (columns in bytes). */
void fb_json_line_col(const char *text, size_t offset, size_t *line, size_t *col);

#endif
