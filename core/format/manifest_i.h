/* What the manifest modules (manifest.c, manifest_read.c,
 * manifest_write.c) share. */
#ifndef FB_MANIFEST_I_H
#define FB_MANIFEST_I_H

#include <stdbool.h>

#include "fb_manifest.h"
#include "json_fields_i.h"

/* Counts one entry into t (a hardlink is a file without bytes of its own);
 * false when the byte total would overflow. */
bool fb_manifest_totals_add(fb_manifest_totals *t, const fb_entry_meta *meta);

#endif
