/* The zstd seekable-format seek table (contrib/seekable_format in zstd):
 * a skippable frame (magic 0x184D2A5E) at the end of the archive holding one
 * entry per frame (compressed size, decompressed size, optional XXH64-low-32
 * checksum) and a 9-byte footer (frame count, descriptor, magic 0x8F92EAB1).
 * See docs/archive-format.md. Pure data: no threads, no I/O except _read_fd. */
#ifndef FB_SEEK_TABLE_H
#define FB_SEEK_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_error.h"
#include "fb_types.h"

#define FB_SEEKABLE_MAGIC 0x8F92EAB1u
#define FB_SKIPPABLE_MAGIC_SEEK 0x184D2A5Eu
#define FB_SEEK_FOOTER_SIZE 9
/* Hostile-input caps: no frame we read may claim more than this many
 * decompressed bytes, and no table more than this many frames. */
#define FB_FRAME_DSIZE_MAX FB_FRAME_SIZE_MAX
#define FB_SEEK_FRAMES_MAX (1u << 26)

typedef struct fb_frame_entry {
    uint64_t c_offset; /* offset of the frame in the archive file */
    uint64_t d_offset; /* offset of its first byte in the decompressed stream */
    uint32_t c_size;
    uint32_t d_size;
    uint32_t checksum; /* low 32 bits of XXH64 of the content, if has_checksums */
} fb_frame_entry;

typedef struct fb_seek_table {
    fb_frame_entry *frames; /* owned */
    size_t n_frames;
    bool has_checksums;
    uint64_t c_frames_size; /* sum of c_size: where the seek table frame starts */
    uint64_t d_size;        /* total decompressed size */
    uint64_t table_size;    /* size of the skippable frame incl. its 8-byte header */
} fb_seek_table;

void fb_seek_table_init(fb_seek_table *t);
void fb_seek_table_fini(fb_seek_table *t);

/* Serialises a seek table frame for the given frames (c_size/d_size/checksum
 * are used; offsets ignored). *out is malloc'd, caller frees. */
int fb_seek_table_encode(const fb_frame_entry *frames, size_t n_frames, bool with_checksums,
                         uint8_t **out, size_t *out_len, fb_error *err);

/* Reads and validates the seek table at the end of the file open on fd whose
 * size is file_size: magic numbers, reserved bits, the table fits in the file,
 * sum of compressed sizes + table size == file_size exactly, every d_size <=
 * FB_FRAME_DSIZE_MAX, no c_size 0, totals without overflow. Fills offsets.
 * Returns 0, FB_ECORRUPT (message names `name` and the reason), FB_EIO, FB_ENOMEM. */
int fb_seek_table_read_fd(int fd, uint64_t file_size, const char *name, fb_seek_table *out,
                          fb_error *err);

/* Same from an in-memory copy of the whole archive. */
int fb_seek_table_parse(const uint8_t *file, size_t file_size, const char *name,
                        fb_seek_table *out, fb_error *err);

/* Index of the frame holding decompressed offset d_off (binary search);
 * returns n_frames when d_off >= d_size. */
size_t fb_seek_table_find(const fb_seek_table *t, uint64_t d_off);

#endif
