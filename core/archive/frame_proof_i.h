/* Frame proof: checks one zstd frame of an archive against its seek-table
 * entry without decompressing it, so that the reader never maps a stream
 * offset through a frame size nothing has checked.
 *
 * The seek table says where each frame starts (the sum of the compressed
 * sizes before it) and where its bytes land in the tar stream (the sum of
 * the decompressed sizes before it). Decoding frame i proves frame i, but
 * the offsets of every later frame depend on the sizes of all earlier ones.
 * A frame is proven when it starts with a zstd frame header that declares
 * its content size, that size equals the table's d_size, and walking its
 * block headers ends exactly c_size bytes after its start, checksum
 * included. Decoding then guarantees the frame yields exactly that many
 * bytes (zstd checks the content size; the reader also checks the checksum
 * and fb_frame_header_check), and every later frame's offsets follow. */
#ifndef FB_FRAME_PROOF_I_H
#define FB_FRAME_PROOF_I_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_error.h"
#include "fb_seek_table.h"

/* Frame windows above 2^FB_FRAME_WINDOW_LOG_MAX are refused: a reader never
 * needs more memory than that per frame. */
#define FB_FRAME_WINDOW_LOG_MAX 27

/* Checks the first len (>= 6) bytes of frame i: the zstd magic (not a
 * skippable frame), no reserved bit, a content checksum, and a window no
 * larger than 2^FB_FRAME_WINDOW_LOG_MAX. name is used in messages.
 * Returns 0 or FB_ECORRUPT. Pure; any thread. */
int fb_frame_header_check(const uint8_t *in, size_t len, size_t i, const char *name,
                          fb_error *err);

/* Proves frame i of table t in the archive open on fd (see above) with a
 * few small preads: the frame header, then one 3-byte read per block.
 * Returns 0, FB_ECORRUPT (the frame disagrees with the table, or its size
 * or extent cannot be known without decoding it), FB_EIO. Any thread
 * (pread only). */
int fb_frame_prove(int fd, const fb_seek_table *t, size_t i, const char *name, fb_error *err);

/* Frames of at most this many blocks (8 MiB) are read by fb_frame_read_raw. */
#define FB_FRAME_RAW_BLOCKS_MAX 64

/* A frame of incompressible data, which zstd stores as raw blocks (each a
 * 3-byte header and up to 128 KiB as is), read with one preadv straight
 * into out (f->d_size bytes): the decoder's copy out of the compressed
 * bytes is saved (8% of the daemon's CPU reading 24 MiB of random bytes
 * through the mount, 16.1 -> 14.8 ms). Returns true only when out holds the
 * frame's content and the frame is one the decoder accepts with the same
 * content: a single-segment frame header without a dictionary declaring
 * f->d_size and a checksum, raw blocks of 128 KiB up to the last (flagged
 * last), the checksum the table's, the content's XXH64 the checksum, all
 * in exactly f->c_size bytes. Otherwise false, whatever out then holds
 * (the caller decodes the frame the usual way, which reports any damage
 * or I/O error). Any thread (pread only). */
bool fb_frame_read_raw(int fd, const fb_frame_entry *f, bool has_checksums, uint8_t *out);

#endif
