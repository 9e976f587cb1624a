/* Where the parts of a JSON text lie, found without building anything: the
 * members of a top-level object and the elements of an array, so that a
 * large document (a manifest of a million entries) is parsed one part at a
 * time and never held as a tree (manifest_read.c).
 *
 * The text must have passed fb_json_check_text (every token valid: strings
 * terminated, escapes well-formed, no NUL), so only strings, nesting and
 * the grammar of the level walked (braces, colons, commas) matter here. A
 * value stepped over is not checked: the caller parses each part strictly
 * (fb_json_parse_part), which refuses whatever the scan let through. */
#ifndef FB_JSON_STREAM_I_H
#define FB_JSON_STREAM_I_H

#include <stdbool.h>
#include <stddef.h>

typedef struct fb_json_span {
    size_t off, len;
} fb_json_span;

typedef struct fb_json_member_span {
    fb_json_span key; /* the key token, quotes included */
    fb_json_span value;
    size_t items_max; /* a container's items: at most this many */
} fb_json_member_span;

/* End (one past the closing quote) of the string whose opening quote is at
 * t[i], or 0 when it is not closed. */
size_t fb_json_string_end(const char *t, size_t len, size_t i);

enum { FB_JSON_SCAN_OK = 0, FB_JSON_SCAN_BAD = 1, FB_JSON_SCAN_NOMEM = -1 };

/* The members of the object that is the whole text (whitespace around it
 * allowed), in order, in a malloc'd array (NULL when there are none).
 * FB_JSON_SCAN_BAD: the text is not one object, or its grammar is wrong. */
int fb_json_scan_object(const char *text, size_t len, fb_json_member_span **out, size_t *n);

/* Walks the elements of the array at arr (a member's value span). */
typedef struct fb_json_elements {
    const char *text;
    size_t pos, end;
    bool started, done;
} fb_json_elements;

/* False when arr is not an array. */
bool fb_json_elements_begin(fb_json_elements *it, const char *text, fb_json_span arr);
/* 1 with the next element's span, 0 after the last, -1 when the array's
 * grammar is wrong. */
int fb_json_elements_next(fb_json_elements *it, fb_json_span *out);
/* For a caller that reads the next element itself: *at is where it begins
 * (1), or 0 after the last, -1 on a grammar error; the iterator does not
 * move. fb_json_elements_skip then moves it past the element read, which
 * ended at end (exclusive, before the array's ']'). */
int fb_json_elements_peek(fb_json_elements *it, size_t *at);
void fb_json_elements_skip(fb_json_elements *it, size_t end);

#endif
