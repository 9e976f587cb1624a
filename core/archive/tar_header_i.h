/* Tar member proof: before the mount serves a file's bytes by offset, the
 * tar header that ends at that offset must be the header of that file.
 *
 * A manifest entry says "path P, size S, data at offset O of the tar
 * stream". The frames prove the stream's bytes; only the header proves that
 * the bytes at O belong to P: the 512-byte ustar header ending at O must be
 * a valid header (ustar magic, checksum) of a regular file whose name is P
 * and whose size is S, either in the ustar fields or in the pax extended
 * header ('x') right before it (pax `path` and `size` records override the
 * ustar fields, as in every pax reader). A shifted offset, a wrong size or
 * a damaged header is refused as corrupt.
 *
 * The parsers are pure functions of their bytes (fuzzed in tests/fuzz). */
#ifndef FB_TAR_HEADER_I_H
#define FB_TAR_HEADER_I_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_archive_reader.h"
#include "fb_error.h"

#define FB_TAR_BLOCK 512
/* Pax extended headers larger than this are not looked at: ours hold a
 * path and a link name of at most PATH_MAX bytes each, plus a few short
 * records. */
#define FB_TAR_PAX_MAX (64u * 1024)

typedef struct fb_tar_header {
    char typeflag;
    uint64_t size;      /* valid when size_ok */
    bool size_ok;       /* the size field parsed (octal or base-256) */
    char name[155 + 1 + 100 + 1]; /* prefix "/" name, NUL-terminated */
    size_t name_len;
} fb_tar_header;

/* Parses one header block: returns true when it is a valid ustar or pax
 * header (magic "ustar", checksum right), false otherwise (zeros, garbage,
 * a data block). Pure. */
bool fb_tar_header_parse(const uint8_t block[FB_TAR_BLOCK], fb_tar_header *out);

/* Finds the record `key` in pax extended header data (records
 * "LEN key=value\n", LEN the record's decimal length). Returns 1 and the
 * value (not NUL-terminated, points into data) when found, 0 when the data
 * is well formed and has no such record, -1 when the data is malformed.
 * The last record of a key wins, as in pax. Pure. */
int fb_tar_pax_find(const uint8_t *data, size_t len, const char *key, const uint8_t **value,
                    size_t *value_len);

/* Proves that the member whose data starts at data_offset of r's tar
 * stream is the regular file `path` (NUL-terminated bytes) of `size`
 * bytes. flags: of fb_archive_reader_pread_flags (FB_ARCHIVE_READ_CHECKED
 * only when the content is then proven too, fb_tar_member_prove_content
 * with the same flags). `label` names the archive in messages. Returns 0, FB_ECORRUPT
 * (the message names the path and what differs), FB_EIO, FB_ENOMEM.
 * Threads: as fb_archive_reader_pread. */
int fb_tar_member_prove(fb_archive_reader *r, uint64_t data_offset, const char *path,
                        uint64_t size, unsigned flags, const char *label, fb_error *err);

/* Proves the content as well: the size bytes at data_offset hash to
 * sha256 (the manifest's). A header proof is local: a file whose data
 * holds a copy of another member's header (a .tar kept in the session)
 * could pass it at a moved offset; its bytes cannot pass this. The mount
 * does it on open for files it can read in a moment. Returns 0,
 * FB_ECORRUPT naming path, FB_EIO, FB_ENOMEM. Threads: as pread. */
int fb_tar_member_prove_content(fb_archive_reader *r, uint64_t data_offset, uint64_t size,
                                const uint8_t sha256[FB_SHA256_LEN], unsigned flags,
                                const char *path, const char *label, fb_error *err);

#endif
