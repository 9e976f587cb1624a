/* The fast reading of one manifest entry (manifest_entry_fast.c): the
 * entries a writer of this format produces (plain strings, plain
 * integers, the known keys once each) read straight from the text, with
 * no JSON tree. It never refuses anything: an entry it is not sure of,
 * for any reason, is left to the strict reading through cJSON
 * (manifest_read.c), which then accepts or refuses it with the message it
 * always gave. So the fast reading only decides how fast an entry is read,
 * never whether it is accepted nor what it holds. */
#ifndef FB_MANIFEST_ENTRY_FAST_I_H
#define FB_MANIFEST_ENTRY_FAST_I_H

#include <stddef.h>

#include "fb_manifest.h"

/* The text must have passed fb_json_check_text (fb_json_prescan): strings
 * are valid UTF-8 without raw control characters, numbers well-formed.
 *
 * Reads the entry object starting at t[off] (its '{') into *e (zeroed by
 * the caller; path and target malloc'd on success, nothing kept on 0).
 * Returns 1 with *end one past its '}' when the entry is one the strict
 * reading would accept with exactly this content, 0 when the strict
 * reading must decide, FB_ENOMEM. Thread-safe (no state). */
int fb_manifest_entry_read_fast(const char *t, size_t len, size_t off, fb_manifest_entry *e,
                                size_t *end);

#endif
