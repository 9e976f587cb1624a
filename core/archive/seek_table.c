/* The zstd seekable-format seek table: encoding it for the archive writer and
 * validating it, as hostile input, for the archive reader. Every size read
 * from disk is checked against the file size with overflow-checked sums so a
 * table that is accepted describes the file exactly. */
#include "fb_seek_table.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zstd.h>

#include "seek_table_i.h"

#define SKIPPABLE_HEADER_SIZE 8
#define DESCRIPTOR_CHECKSUM_FLAG 0x80u
/* Bits 2..6 are reserved and must be zero; bits 0..1 are unused. */
#define DESCRIPTOR_RESERVED_MASK 0x7Cu
/* A frame may not claim more compressed bytes than zstd could ever need for
 * its content; the slack covers encoders other than ZSTD_compress. Without
 * this, one hostile entry could make a reader allocate 4 GiB. */
#define C_SIZE_SLACK 4096u

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

void fb_seek_table_init(fb_seek_table *t)
{
    memset(t, 0, sizeof *t);
}

void fb_seek_table_fini(fb_seek_table *t)
{
    if (!t)
        return;
    free(t->frames);
    fb_seek_table_init(t);
}

int fb_pread_exact(int fd, void *buf, size_t len, uint64_t offset, const char *name,
                   const char *what, fb_error *err)
{
    uint8_t *p = buf;
    size_t done = 0;
    while (done < len) {
        uint64_t at;
        if (__builtin_add_overflow(offset, (uint64_t)done, &at) || at > (uint64_t)INT64_MAX)
            return fb_error_set(err, FB_ECORRUPT, "%s: %s: offset out of range", name, what);
        ssize_t n = pread(fd, p + done, len - done, (off_t)at);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fb_error_set_errno(err, errno, "%s: %s: read at offset %" PRIu64, name, what,
                                      at);
        }
        if (n == 0)
            return fb_error_set(err, FB_ECORRUPT,
                                "%s: %s: file ends at offset %" PRIu64 ", %zu bytes short", name,
                                what, at, len - done);
        done += (size_t)n;
    }
    return 0;
}

static size_t entry_size(bool with_checksums)
{
    return with_checksums ? 12 : 8;
}

/* Size of the whole skippable frame (header, entries, footer) for n frames,
 * or 0 on overflow. */
static uint64_t table_size_for(uint64_t n_frames, bool with_checksums)
{
    uint64_t entries, total;
    if (__builtin_mul_overflow(n_frames, (uint64_t)entry_size(with_checksums), &entries) ||
        __builtin_add_overflow(entries, (uint64_t)(SKIPPABLE_HEADER_SIZE + FB_SEEK_FOOTER_SIZE),
                               &total))
        return 0;
    return total;
}

int fb_seek_table_encode(const fb_frame_entry *frames, size_t n_frames, bool with_checksums,
                         uint8_t **out, size_t *out_len, fb_error *err)
{
    *out = NULL;
    *out_len = 0;
    if (n_frames > FB_SEEK_FRAMES_MAX)
        return fb_error_set(err, FB_EMISUSE, "seek table: %zu frames, more than the %u allowed",
                            n_frames, FB_SEEK_FRAMES_MAX);
    uint64_t total = table_size_for(n_frames, with_checksums);
    /* FRAMES_MAX keeps Frame_Size within 32 bits; checked anyway. */
    if (total == 0 || total - SKIPPABLE_HEADER_SIZE > UINT32_MAX || total > SIZE_MAX)
        return fb_error_set(err, FB_EMISUSE, "seek table: too large for %zu frames", n_frames);
    uint8_t *buf = malloc((size_t)total);
    if (!buf)
        return fb_error_set(err, FB_ENOMEM, "seek table: out of memory (%" PRIu64 " bytes)",
                            total);
    uint8_t *p = buf;
    put_le32(p, FB_SKIPPABLE_MAGIC_SEEK);
    put_le32(p + 4, (uint32_t)(total - SKIPPABLE_HEADER_SIZE));
    p += SKIPPABLE_HEADER_SIZE;
    for (size_t i = 0; i < n_frames; i++) {
        put_le32(p, frames[i].c_size);
        put_le32(p + 4, frames[i].d_size);
        if (with_checksums)
            put_le32(p + 8, frames[i].checksum);
        p += entry_size(with_checksums);
    }
    put_le32(p, (uint32_t)n_frames);
    p[4] = with_checksums ? DESCRIPTOR_CHECKSUM_FLAG : 0;
    put_le32(p + 5, FB_SEEKABLE_MAGIC);
    *out = buf;
    *out_len = (size_t)total;
    return 0;
}

/* Checks the 9-byte footer and derives the table size; does not need the
 * rest of the table, so the fd reader knows how much to read. */
static int parse_footer(const uint8_t footer[FB_SEEK_FOOTER_SIZE], uint64_t file_size,
                        const char *name, uint32_t *n_frames, bool *with_checksums,
                        uint64_t *table_size, fb_error *err)
{
    if (get_le32(footer + 5) != FB_SEEKABLE_MAGIC)
        return fb_error_set(err, FB_ECORRUPT,
                            "%s: seek table: bad seekable magic number 0x%08" PRIx32
                            " (not a seekable zstd archive)",
                            name, get_le32(footer + 5));
    uint8_t desc = footer[4];
    if (desc & DESCRIPTOR_RESERVED_MASK)
        return fb_error_set(err, FB_ECORRUPT,
                            "%s: seek table: reserved descriptor bits set (0x%02x)", name, desc);
    *with_checksums = (desc & DESCRIPTOR_CHECKSUM_FLAG) != 0;
    *n_frames = get_le32(footer);
    if (*n_frames > FB_SEEK_FRAMES_MAX)
        return fb_error_set(err, FB_ECORRUPT, "%s: seek table: %" PRIu32
                            " frames, more than the %u allowed", name, *n_frames,
                            FB_SEEK_FRAMES_MAX);
    *table_size = table_size_for(*n_frames, *with_checksums);
    if (*table_size == 0 || *table_size > file_size)
        return fb_error_set(err, FB_ECORRUPT,
                            "%s: seek table: %" PRIu32 " frames need %" PRIu64
                            " bytes, file has %" PRIu64,
                            name, *n_frames, *table_size, file_size);
    /* Every frame takes at least FB_ZSTD_FRAME_MIN bytes before the table:
     * checked before anything is allocated for the entries. */
    uint64_t min_size = (uint64_t)*n_frames * FB_ZSTD_FRAME_MIN + *table_size;
    if (min_size > file_size)
        return fb_error_set(err, FB_ECORRUPT,
                            "%s: seek table: %" PRIu32 " frames cannot fit in %" PRIu64 " bytes",
                            name, *n_frames, file_size);
    if (*table_size > SIZE_MAX)
        return fb_error_set(err, FB_ENOMEM, "%s: seek table: too large to load", name);
    return 0;
}

/* Validates the whole table (skippable frame as it sits at the end of a file
 * of file_size bytes) and fills out. */
static int parse_table(const uint8_t *table, uint64_t table_size, uint32_t n_frames,
                       bool with_checksums, uint64_t file_size, const char *name,
                       fb_seek_table *out, fb_error *err)
{
    if (get_le32(table) != FB_SKIPPABLE_MAGIC_SEEK)
        return fb_error_set(err, FB_ECORRUPT,
                            "%s: seek table: bad skippable frame magic 0x%08" PRIx32, name,
                            get_le32(table));
    uint32_t frame_size = get_le32(table + 4);
    if ((uint64_t)frame_size + SKIPPABLE_HEADER_SIZE != table_size)
        return fb_error_set(err, FB_ECORRUPT,
                            "%s: seek table: frame size %" PRIu32 " does not match %" PRIu32
                            " entries (expected %" PRIu64 ")",
                            name, frame_size, n_frames, table_size - SKIPPABLE_HEADER_SIZE);

    fb_frame_entry *frames = NULL;
    if (n_frames) {
        frames = calloc(n_frames, sizeof *frames);
        if (!frames)
            return fb_error_set(err, FB_ENOMEM, "%s: seek table: out of memory for %" PRIu32
                                " frames", name, n_frames);
    }
    const uint8_t *p = table + SKIPPABLE_HEADER_SIZE;
    uint64_t c_off = 0, d_off = 0;
    int rc = 0;
    for (uint32_t i = 0; i < n_frames; i++, p += entry_size(with_checksums)) {
        fb_frame_entry *f = &frames[i];
        f->c_size = get_le32(p);
        f->d_size = get_le32(p + 4);
        f->checksum = with_checksums ? get_le32(p + 8) : 0;
        f->c_offset = c_off;
        f->d_offset = d_off;
        if (f->c_size == 0) {
            rc = fb_error_set(err, FB_ECORRUPT, "%s: seek table: frame %" PRIu32
                              " compressed size 0", name, i);
            break;
        }
        if (f->c_size < FB_ZSTD_FRAME_MIN) {
            rc = fb_error_set(err, FB_ECORRUPT,
                              "%s: seek table: frame %" PRIu32 " compressed size %" PRIu32
                              " is smaller than any zstd frame",
                              name, i, f->c_size);
            break;
        }
        if (f->d_size > FB_FRAME_DSIZE_MAX) {
            rc = fb_error_set(err, FB_ECORRUPT,
                              "%s: seek table: frame %" PRIu32 " decompressed size %" PRIu32
                              " exceeds the %u-byte limit",
                              name, i, f->d_size, FB_FRAME_DSIZE_MAX);
            break;
        }
        if ((uint64_t)f->c_size > (uint64_t)ZSTD_compressBound(f->d_size) + C_SIZE_SLACK) {
            rc = fb_error_set(err, FB_ECORRUPT,
                              "%s: seek table: frame %" PRIu32 " compressed size %" PRIu32
                              " is impossible for %" PRIu32 " decompressed bytes",
                              name, i, f->c_size, f->d_size);
            break;
        }
        if (__builtin_add_overflow(c_off, (uint64_t)f->c_size, &c_off) ||
            __builtin_add_overflow(d_off, (uint64_t)f->d_size, &d_off) || c_off > file_size) {
            rc = fb_error_set(err, FB_ECORRUPT,
                              "%s: seek table: frames up to %" PRIu32
                              " extend past the end of the file (%" PRIu64 " bytes)",
                              name, i, file_size);
            break;
        }
    }
    if (rc == 0) {
        uint64_t total;
        if (__builtin_add_overflow(c_off, table_size, &total) || total != file_size)
            rc = fb_error_set(err, FB_ECORRUPT,
                              "%s: seek table: frames (%" PRIu64 " bytes) + table (%" PRIu64
                              " bytes) != file size %" PRIu64,
                              name, c_off, table_size, file_size);
    }
    if (rc) {
        free(frames);
        return rc;
    }
    fb_seek_table_fini(out);
    out->frames = frames;
    out->n_frames = n_frames;
    out->has_checksums = with_checksums;
    out->c_frames_size = c_off;
    out->d_size = d_off;
    out->table_size = table_size;
    return 0;
}

static int check_min_size(uint64_t file_size, const char *name, fb_error *err)
{
    if (file_size < SKIPPABLE_HEADER_SIZE + FB_SEEK_FOOTER_SIZE)
        return fb_error_set(err, FB_ECORRUPT,
                            "%s: seek table: file of %" PRIu64
                            " bytes is too short to hold one", name, file_size);
    return 0;
}

int fb_seek_table_parse(const uint8_t *file, size_t file_size, const char *name,
                        fb_seek_table *out, fb_error *err)
{
    int rc = check_min_size(file_size, name, err);
    if (rc)
        return rc;
    /* Set by parse_footer when it returns 0; initialised because GCC -O3
     * cannot see that and warns (fatal with -Dwerror=true). */
    uint32_t n_frames = 0;
    bool with_checksums = false;
    uint64_t table_size = 0;
    rc = parse_footer(file + file_size - FB_SEEK_FOOTER_SIZE, file_size, name, &n_frames,
                      &with_checksums, &table_size, err);
    if (rc)
        return rc;
    return parse_table(file + (file_size - (size_t)table_size), table_size, n_frames,
                       with_checksums, file_size, name, out, err);
}

int fb_seek_table_read_fd(int fd, uint64_t file_size, const char *name, fb_seek_table *out,
                          fb_error *err)
{
    int rc = check_min_size(file_size, name, err);
    if (rc)
        return rc;
    uint8_t footer[FB_SEEK_FOOTER_SIZE];
    rc = fb_pread_exact(fd, footer, sizeof footer, file_size - FB_SEEK_FOOTER_SIZE, name,
                        "seek table footer", err);
    if (rc)
        return rc;
    /* Set by parse_footer when it returns 0; initialised because GCC -O3
     * cannot see that and warns (fatal with -Dwerror=true). */
    uint32_t n_frames = 0;
    bool with_checksums = false;
    uint64_t table_size = 0;
    rc = parse_footer(footer, file_size, name, &n_frames, &with_checksums, &table_size, err);
    if (rc)
        return rc;
    uint8_t *table = malloc((size_t)table_size);
    if (!table)
        return fb_error_set(err, FB_ENOMEM, "%s: seek table: out of memory (%" PRIu64 " bytes)",
                            name, table_size);
    rc = fb_pread_exact(fd, table, (size_t)table_size, file_size - table_size, name,
                        "seek table", err);
    if (rc == 0)
        rc = parse_table(table, table_size, n_frames, with_checksums, file_size, name, out, err);
    free(table);
    return rc;
}

size_t fb_seek_table_find(const fb_seek_table *t, uint64_t d_off)
{
    if (d_off >= t->d_size)
        return t->n_frames;
    /* Last frame whose d_offset <= d_off: it holds d_off, because any empty
     * frame at the same offset comes before the non-empty one. */
    size_t lo = 0, hi = t->n_frames;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->frames[mid].d_offset <= d_off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}
