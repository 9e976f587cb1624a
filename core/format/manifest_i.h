/* What the manifest modules (manifest.c, manifest_read.c,
 * manifest_write.c) share. */
#ifndef FB_MANIFEST_I_H
#define FB_MANIFEST_I_H

#include <stdbool.h>
#include <stddef.h>

#include "fb_manifest.h"
#include "json_fields_i.h"

/* Counts one entry into t (a hardlink is a file without bytes of its own);
 * false when the byte total would overflow. */
bool fb_manifest_totals_add(fb_manifest_totals *t, const fb_entry_meta *meta);

/* Why p[0..n), the path of an entry or a hardlink's `link`, is not an
 * acceptable relative path ("absolute", "has a '.' or '..' component"...),
 * or NULL when it is. */
const char *fb_manifest_path_problem(const char *p, size_t n);

/* Where a broken rule of entry i is reported: msg is the whole reason,
 * key the field it concerns; returns the negative code to stop with. The
 * JSON reading names the entry's place in the text. */
typedef int (*fb_manifest_rule_fail)(void *ctx, size_t i, const char *key, const char *msg,
                                     fb_error *err);

/* The rules across entries (manifest_rules.c): unique paths, nothing
 * below a non-directory entry, hardlinks to earlier files of the same
 * size, file data in increasing, non-overlapping ranges. The first broken
 * one goes to fail. Returns 0, what fail returned, or FB_ENOMEM. */
int fb_manifest_check_entries(const fb_manifest *m, fb_manifest_rule_fail fail, void *ctx,
                              fb_error *err);

/* fb_manifest_parse, with the fast reading of entries
 * (manifest_entry_fast_i.h) on or off: the same result either way, which
 * the unit tests and the manifest fuzz target check on the same texts. */
int fb_manifest_parse_with(const char *json, size_t len, const char *source, bool fast,
                           fb_manifest *out, fb_error *err);

#endif
