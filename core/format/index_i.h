/* What index.c offers beyond include/fb_index.h, for its tests. */
#ifndef FB_INDEX_I_H
#define FB_INDEX_I_H

#include <stdbool.h>

#include "fb_index.h"

/* fb_index_parse, with the fast reading of the records the writer produces
 * (fast) or with the strict reading through cJSON alone (!fast). The two
 * accept the same texts with the same result and refuse the same texts
 * with the same message: the fast reading gives any text it is not sure
 * of to the strict one. */
int fb_index_parse_with(const char *json, size_t len, const char *source, bool fast,
                        fb_index *out, fb_error *err);

/* The fast reading alone, on a text that passed fb_json_check_text: the
 * whole text as the writer lays it out ({"format": 1, "session_id": ...,
 * "backups": [...]}, every record of plain values) into *out. 1 when read,
 * 0 when the strict reading must decide (*out then holds whatever was read
 * so far: fini it), FB_ENOMEM. */
int fb_index_parse_fast(const char *json, size_t len, fb_index *out);

#endif
