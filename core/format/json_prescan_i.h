/* The pre-scan of strict JSON reading (json_strict.c): one pass over the
 * raw text that checks every token (RFC 8259, valid UTF-8, no \u0000,
 * nesting, a bound on the number of values) and records where each number
 * starts. Structure (brackets, commas, colons) is left to cJSON. */
#ifndef FB_JSON_PRESCAN_I_H
#define FB_JSON_PRESCAN_I_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* cJSON builds a node of about 80 bytes (with malloc's overhead) for every
 * value, and a string for every string and key: that costs 150-450 ns per
 * value, mostly page faults, whatever the value. Dense junk such as an
 * unknown key holding [0,0,0,...] is 2 bytes a value: 256 MB of it took
 * 57 s and 10.5 GB. No document we read comes near: the densest manifest
 * entry possible ({"path":"a","type":"dir", six 0s}, compact) is 9 values
 * in 85 bytes, one our writer makes about 18 bytes a value (28 when it was
 * indented). So a document may hold one value per VALUE_BYTES_MIN bytes,
 * plus VALUES_FREE for small ones (a config with a list of one-letter
 * patterns): that bounds a tree to about 10 times the text (manifests are
 * read a part at a time and never build a whole tree, see manifest_read.c)
 * and the time to about half a second per 10 MB (bench/manifest_parse.py). The pre-scan stops at the first
 * value over the limit, so junk is refused in a fraction of a second,
 * before anything is built. */
#define VALUE_BYTES_MIN 8
#define VALUES_FREE 65536

/* One open container, so a lexical error can be reported with the JSON
 * path of the value it is in ("entries[3].path"), not only line/col. */
typedef struct fb_json_prescan_level {
    char kind;     /* '{' or '[' */
    bool want_key; /* object: the next string is a key */
    bool has_key;
    size_t key_off, key_len; /* raw text of the current key */
    size_t index;            /* array: current element */
} fb_json_prescan_level;

typedef struct fb_json_prescan {
    const unsigned char *p;
    size_t len;
    size_t pos;
    size_t base;  /* offset of p in the document: numbers are recorded from it */
    bool no_nums; /* a check only: numbers are not recorded */
    const char *reason; /* set on a lexical error, at pos */
    uint32_t *nums;     /* offsets of number tokens, document order */
    size_t n_nums, cap_nums;
    fb_json_prescan_level *stack;
    size_t depth, cap_stack;
    size_t n_values; /* every value: containers, strings (not keys), numbers, literals */
    size_t max_values;
    bool too_many; /* stopped at value max_values + 1 */
    bool oom;
} fb_json_prescan;

/* Scans s->p[s->pos..s->len). False on a lexical error (s->reason, at
 * s->pos), past the value limit (s->too_many) or out of memory (s->oom). */
bool fb_json_prescan_run(fb_json_prescan *s);
/* Only records where the numbers of s->p[0..len) start (offsets from
 * s->base), for a part of a text that passed fb_json_prescan_run whole. */
bool fb_json_prescan_numbers(fb_json_prescan *s);
/* Length of the RFC 8259 number at p (n bytes), or 0 if malformed. */
size_t fb_json_number_len(const unsigned char *p, size_t n, bool *is_int);

#endif
