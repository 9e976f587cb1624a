/* Private helpers shared by the seek table and the archive reader. */
#ifndef FB_SEEK_TABLE_I_H
#define FB_SEEK_TABLE_I_H

#include <stddef.h>
#include <stdint.h>

#include "fb_error.h"

/* Smallest possible zstd frame: magic (4) + frame header (2) + one block
 * header (3). Anything shorter in a seek table cannot be a frame. */
#define FB_ZSTD_FRAME_MIN 9

/* Reads exactly len bytes at offset, retrying on EINTR and short reads.
 * End of file before len bytes is FB_ECORRUPT (the file is shorter than
 * its seek table says); what names the read in messages ("name: what"). */
int fb_pread_exact(int fd, void *buf, size_t len, uint64_t offset, const char *name,
                   const char *what, fb_error *err);

#endif
