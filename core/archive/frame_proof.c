/* Frame proof (see frame_proof_i.h): the zstd frame format's header and
 * block headers, read by hand so that a frame's extent and content size are
 * known from a few bytes, without decompressing it; and a frame of raw
 * blocks read straight into its buffer. Field layout: RFC 8878, sections
 * 3.1.1 (frame header) and 3.1.1.2 (blocks). */
#include "frame_proof_i.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/uio.h>

#include <zstd.h>

#include "fb_hash.h"
#include "seek_table_i.h"

/* Largest block content a frame may carry (Block_Maximum_Size, 128 KiB). */
#define BLOCK_SIZE_MAX (128u * 1024)
#define FRAME_HEADER_MAX 18
#define BLOCK_HEADER_SIZE 3
#define CHECKSUM_SIZE 4

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t k = n; k > 0; k--)
        v = v << 8 | p[k - 1];
    return v;
}

/* What every check of a frame header starts with: a zstd data frame (not
 * a skippable one) whose descriptor has no reserved bit set. */
static int check_frame_start(const uint8_t *in, size_t len, size_t i, const char *name,
                             fb_error *err)
{
    if (len < 6 || get_le32(in) != ZSTD_MAGICNUMBER)
        return fb_error_set(err, FB_ECORRUPT, "%s: frame %zu: not a zstd frame (magic 0x%08" PRIx32
                            ")", name, i, len >= 4 ? get_le32(in) : 0);
    if (in[4] & 0x08)
        return fb_error_set(err, FB_ECORRUPT, "%s: frame %zu: reserved header bit set", name, i);
    return 0;
}

int fb_frame_header_check(const uint8_t *in, size_t len, size_t i, const char *name,
                          fb_error *err)
{
    int rc = check_frame_start(in, len, i, name, err);
    if (rc)
        return rc;
    uint8_t fhd = in[4];
    if (!(fhd & 0x04))
        return fb_error_set(err, FB_ECORRUPT, "%s: frame %zu: no content checksum", name, i);
    if (!(fhd & 0x20)) {
        /* Window_Descriptor: exponent (5 bits) and mantissa (3 bits). A
         * single-segment frame's window is its content size, which the
         * callers bound by FB_FRAME_DSIZE_MAX. */
        uint8_t wd = in[5];
        unsigned window_log = 10u + (wd >> 3);
        uint64_t base = (uint64_t)1 << window_log;
        uint64_t window = base + (base / 8) * (wd & 7u);
        if (window > ((uint64_t)1 << FB_FRAME_WINDOW_LOG_MAX))
            return fb_error_set(err, FB_ECORRUPT,
                                "%s: frame %zu: window of %" PRIu64
                                " bytes exceeds the 2^%d limit",
                                name, i, window, FB_FRAME_WINDOW_LOG_MAX);
    }
    return 0;
}

/* Parses the frame header at the start of `in` (len bytes available): its
 * size, the Frame_Content_Size it declares, and whether a checksum ends the
 * frame. Only what places the frame and its bytes is required here (the
 * magic, no reserved bit, a declared content size, which our writer always
 * writes); the rest (window, checksum, dictionary) is the decoder's to
 * refuse, and does not move any other frame. */
static int parse_frame_header(const uint8_t *in, size_t len, size_t i, const char *name,
                              size_t *header_size, uint64_t *content_size, bool *has_checksum,
                              fb_error *err)
{
    int rc = check_frame_start(in, len, i, name, err);
    if (rc)
        return rc;
    uint8_t fhd = in[4];
    unsigned fcs_flag = fhd >> 6;
    bool single_segment = (fhd & 0x20) != 0;
    static const size_t did_sizes[4] = {0, 1, 2, 4};
    static const size_t fcs_sizes[4] = {0, 2, 4, 8};
    size_t did_size = did_sizes[fhd & 0x03];
    size_t fcs_size = fcs_sizes[fcs_flag];
    if (fcs_flag == 0 && single_segment)
        fcs_size = 1;
    if (fcs_size == 0)
        return fb_error_set(err, FB_ECORRUPT,
                            "%s: frame %zu: the frame header does not declare its content size",
                            name, i);
    size_t pos = 5 + (single_segment ? 0 : 1) + did_size;
    if (pos + fcs_size > len)
        return fb_error_set(err, FB_ECORRUPT, "%s: frame %zu: frame header is cut short", name,
                            i);
    uint64_t fcs = get_le(in + pos, fcs_size);
    if (fcs_size == 2)
        fcs += 256; /* the 2-byte field is offset by 256 */
    *header_size = pos + fcs_size;
    *content_size = fcs;
    *has_checksum = (fhd & 0x04) != 0;
    return 0;
}

/* The 3-byte block header: last-block flag, type (0 raw, 1 RLE, 2
 * compressed, 3 reserved) and size. */
static uint32_t block_header(const uint8_t *bh, bool *last, unsigned *type)
{
    uint32_t v = (uint32_t)bh[0] | (uint32_t)bh[1] << 8 | (uint32_t)bh[2] << 16;
    *last = v & 1u;
    *type = (v >> 1) & 3u;
    return v >> 3;
}

int fb_frame_prove(int fd, const fb_seek_table *t, size_t i, const char *name, fb_error *err)
{
    const fb_frame_entry *f = &t->frames[i];
    uint8_t hdr[FRAME_HEADER_MAX];
    size_t n = f->c_size < sizeof hdr ? f->c_size : sizeof hdr;
    char what[64];
    snprintf(what, sizeof what, "frame %zu header", i);
    int rc = fb_pread_exact(fd, hdr, n, f->c_offset, name, what, err);
    if (rc)
        return rc;
    size_t header_size = 0;
    uint64_t fcs = 0;
    bool has_checksum = false;
    rc = parse_frame_header(hdr, n, i, name, &header_size, &fcs, &has_checksum, err);
    if (rc)
        return rc;
    if (fcs != f->d_size)
        return fb_error_set(err, FB_ECORRUPT,
                            "%s: frame %zu: header says %" PRIu64
                            " bytes, seek table says %" PRIu32,
                            name, i, fcs, f->d_size);

    /* Walk the blocks: each header gives the size of what follows it, so
     * the walk finds where the frame really ends. The table's c_size is
     * >= FB_ZSTD_FRAME_MIN, so the end is past the header. */
    uint64_t end = f->c_offset + f->c_size;
    uint64_t pos = f->c_offset + header_size;
    uint64_t tail = has_checksum ? CHECKSUM_SIZE : 0;
    snprintf(what, sizeof what, "frame %zu block header", i);
    for (;;) {
        if (end < pos || end - pos < BLOCK_HEADER_SIZE + tail)
            return fb_error_set(err, FB_ECORRUPT,
                                "%s: frame %zu: blocks run past the %" PRIu32
                                " bytes the seek table gives the frame",
                                name, i, f->c_size);
        uint8_t bh[BLOCK_HEADER_SIZE];
        rc = fb_pread_exact(fd, bh, sizeof bh, pos, name, what, err);
        if (rc)
            return rc;
        bool last;
        unsigned type;
        uint32_t size = block_header(bh, &last, &type);
        if (type == 3)
            return fb_error_set(err, FB_ECORRUPT, "%s: frame %zu: reserved block type", name, i);
        if (size > BLOCK_SIZE_MAX)
            return fb_error_set(err, FB_ECORRUPT,
                                "%s: frame %zu: block of %" PRIu32 " bytes exceeds 128 KiB",
                                name, i, size);
        /* An RLE block stores one byte that is repeated `size` times. */
        uint64_t stored = type == 1 ? 1 : size;
        pos += BLOCK_HEADER_SIZE;
        if (stored > end - pos)
            return fb_error_set(err, FB_ECORRUPT,
                                "%s: frame %zu: blocks run past the %" PRIu32
                                " bytes the seek table gives the frame",
                                name, i, f->c_size);
        pos += stored;
        if (last)
            break;
    }
    if (end - pos != tail)
        return fb_error_set(err, FB_ECORRUPT,
                            "%s: frame %zu: the frame is %" PRIu64
                            " bytes, seek table says %" PRIu32,
                            name, i, pos + tail - f->c_offset, f->c_size);
    return 0;
}

/* Content length of block k of the nb a raw frame of f->d_size bytes has:
 * full blocks, then what is left. */
static size_t raw_block_len(const fb_frame_entry *f, size_t nb, size_t k)
{
    return k + 1 < nb ? BLOCK_SIZE_MAX : f->d_size - k * BLOCK_SIZE_MAX;
}

bool fb_frame_read_raw(int fd, const fb_frame_entry *f, bool has_checksums, uint8_t *out)
{
    if (!has_checksums || f->d_size == 0)
        return false;
    size_t nb = ((size_t)f->d_size + BLOCK_SIZE_MAX - 1) / BLOCK_SIZE_MAX;
    if (nb > FB_FRAME_RAW_BLOCKS_MAX)
        return false;
    /* Everything but the frame header, if every block is raw and full. */
    uint64_t fixed = (uint64_t)f->d_size + nb * BLOCK_HEADER_SIZE + CHECKSUM_SIZE;
    if (f->c_size <= fixed || f->c_size - fixed < 6 || f->c_size - fixed > FRAME_HEADER_MAX)
        return false;
    size_t hdr = (size_t)(f->c_size - fixed);
    uint8_t head[FRAME_HEADER_MAX], bh[FB_FRAME_RAW_BLOCKS_MAX][BLOCK_HEADER_SIZE];
    uint8_t sum[CHECKSUM_SIZE];
    struct iovec iov[2 * FB_FRAME_RAW_BLOCKS_MAX + 2];
    size_t n = 0;
    iov[n++] = (struct iovec){.iov_base = head, .iov_len = hdr};
    for (size_t k = 0; k < nb; k++) {
        size_t len = raw_block_len(f, nb, k);
        iov[n++] = (struct iovec){.iov_base = bh[k], .iov_len = BLOCK_HEADER_SIZE};
        iov[n++] = (struct iovec){.iov_base = out + k * BLOCK_SIZE_MAX, .iov_len = len};
    }
    iov[n++] = (struct iovec){.iov_base = sum, .iov_len = CHECKSUM_SIZE};
    /* Short, interrupted or failed: the decoder's way reads it again and
     * says what went wrong. */
    if (preadv(fd, iov, (int)n, (off_t)f->c_offset) != (ssize_t)f->c_size)
        return false;

    /* What the decoder would accept of this frame, and nothing else: a
     * single-segment frame (its window is its content, so no block can
     * exceed it) without a dictionary, declaring the table's content size
     * and a checksum, in exactly hdr bytes... */
    size_t header_size = 0;
    uint64_t fcs = 0;
    bool has_checksum = false;
    fb_error ignored;
    if (parse_frame_header(head, hdr, 0, "", &header_size, &fcs, &has_checksum, &ignored) ||
        fb_frame_header_check(head, hdr, 0, "", &ignored) || header_size != hdr ||
        fcs != f->d_size || !has_checksum || !(head[4] & 0x20) || (head[4] & 0x03))
        return false;
    /* ...whose blocks are all raw, full up to the last, which says so... */
    for (size_t k = 0; k < nb; k++) {
        bool last;
        unsigned type;
        uint32_t size = block_header(bh[k], &last, &type);
        if (type != 0 || size != raw_block_len(f, nb, k) || last != (k + 1 == nb))
            return false;
    }
    /* ...and whose content is what its checksum and the table say. */
    uint32_t want = get_le32(sum);
    return want == f->checksum && (uint32_t)fb_xxh64_buffer(out, f->d_size) == want;
}
