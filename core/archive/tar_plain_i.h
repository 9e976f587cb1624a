/* The tar headers of a plain file, formatted without libarchive, byte for
 * byte as libarchive's pax writer formats them (test_archive compares the
 * two). libarchive copies the entry, converts its strings and formats two
 * headers per file: ~1.6 us a file, the largest cost left on the writing
 * thread for 100,000 small files. */
#ifndef FB_TAR_PLAIN_I_H
#define FB_TAR_PLAIN_I_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_types.h"

#define FB_TAR_BLOCK 512u

/* Can this file's headers be formatted here? An ASCII name that fits the
 * ustar name field even as its PaxHeader name, ids and times in ustar
 * range. len is strlen(path). */
bool fb_tar_plain_file(const char *path, size_t len, const fb_entry_meta *meta);

/* Formats the headers of a plain file into hdr (room for 3 blocks): the
 * optional pax 'x' header holding only the mtime with its fraction, then
 * the ustar header. Returns their length. */
size_t fb_tar_plain_headers(uint8_t hdr[3 * FB_TAR_BLOCK], const char *path, size_t len,
                            const fb_entry_meta *meta);

#endif
