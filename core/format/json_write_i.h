/* Exact JSON writing for manifests, indexes and `diff --json`: one writer
 * within the strict reader's limits (json_strict_i.h), with integers in
 * plain decimal (cJSON prints large ones as 9.00719925474099e+15) and none
 * beyond what a double holds. */
#ifndef FB_JSON_WRITE_I_H
#define FB_JSON_WRITE_I_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_error.h"
#include "json_strict_i.h" /* FB_JSON_INT_MAX: one limit for reading and writing */

/* JSON writer, pretty by default: 2-space indent, "key": value, empty containers as
 * {} / [], a trailing newline. Integers beyond +-FB_JSON_INT_MAX and
 * mismatched begin/end are recorded as FB_EMISUSE and reported by _finish;
 * strings that are not valid UTF-8 get U+FFFD per invalid byte (the caller
 * stores exact bytes separately, see fb_manifest). */
typedef struct fb_json_writer {
    char *buf;
    size_t len, cap;
    int depth;
    bool has_items[32];
    bool line_items[32]; /* compact: this container puts each item on a line */
    bool compact;        /* no indentation, "key":value */
    bool lines_next;     /* compact: the next container opened gets line_items */
    bool after_key;
    int error;           /* first error code, 0 if none */
    char error_what[96]; /* key or reason of that error */
    char last_key[64];
} fb_json_writer;

void fb_json_writer_init(fb_json_writer *w);
/* Compact layout: no whitespace at all, except that a container opened
 * after fb_json_items_on_lines puts each item on a line of its own, so a
 * manifest's entries can be found with grep (SPEC "manifest.json"). */
void fb_json_writer_init_compact(fb_json_writer *w);
/* Compact writer: the next container opened puts each item on a line. */
void fb_json_items_on_lines(fb_json_writer *w);
void fb_json_writer_fini(fb_json_writer *w);
void fb_json_begin_object(fb_json_writer *w);
void fb_json_end_object(fb_json_writer *w);
void fb_json_begin_array(fb_json_writer *w);
void fb_json_end_array(fb_json_writer *w);
void fb_json_key(fb_json_writer *w, const char *key);
void fb_json_string(fb_json_writer *w, const char *s);
void fb_json_string_or_null(fb_json_writer *w, const char *s);
void fb_json_u64(fb_json_writer *w, uint64_t v);
void fb_json_i64(fb_json_writer *w, int64_t v);
void fb_json_bool(fb_json_writer *w, bool v);
void fb_json_null(fb_json_writer *w);
/* Hands over the text (malloc'd, NUL-terminated, ends with "\n"); what
 * names the document in messages. The writer is left empty. */
int fb_json_writer_finish(fb_json_writer *w, const char *what, char **out, size_t *out_len,
                          fb_error *err);

#endif
