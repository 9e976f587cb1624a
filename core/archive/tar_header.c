/* Tar member proof (see tar_header_i.h): the ustar header format (POSIX
 * pax, "ustar\0" "00") and pax extended header records, parsed strictly
 * from untrusted bytes. */
#include "tar_header_i.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fb_hash.h"
#include "fb_text.h"

/* ustar field offsets and lengths */
#define F_NAME 0
#define L_NAME 100
#define F_SIZE 124
#define L_SIZE 12
#define F_CHKSUM 148
#define L_CHKSUM 8
#define F_TYPEFLAG 156
#define F_MAGIC 257
#define F_PREFIX 345
#define L_PREFIX 155

/* An octal field: optional leading spaces, digits, then only NULs or
 * spaces. At least one digit. */
static bool parse_octal(const uint8_t *p, size_t n, uint64_t *out)
{
    size_t k = 0;
    while (k < n && p[k] == ' ')
        k++;
    uint64_t v = 0;
    size_t digits = 0;
    for (; k < n && p[k] >= '0' && p[k] <= '7'; k++, digits++) {
        if (v > (UINT64_MAX >> 3))
            return false;
        v = v << 3 | (uint64_t)(p[k] - '0');
    }
    if (digits == 0)
        return false;
    for (; k < n; k++)
        if (p[k] != ' ' && p[k] != '\0')
            return false;
    *out = v;
    return true;
}

/* A numeric field: octal, or base-256 (first byte 0x80, then big-endian;
 * negative values are not sizes). */
static bool parse_number(const uint8_t *p, size_t n, uint64_t *out)
{
    if (!(p[0] & 0x80))
        return parse_octal(p, n, out);
    if (p[0] != 0x80)
        return false;
    uint64_t v = 0;
    for (size_t k = 1; k < n; k++) {
        if (v > (UINT64_MAX >> 8))
            return false;
        v = v << 8 | p[k];
    }
    *out = v;
    return true;
}

/* A name field: up to n bytes, NUL-terminated unless it fills the field. */
static size_t field_len(const uint8_t *p, size_t n)
{
    const uint8_t *z = memchr(p, 0, n);
    return z ? (size_t)(z - p) : n;
}

bool fb_tar_header_parse(const uint8_t block[FB_TAR_BLOCK], fb_tar_header *out)
{
    memset(out, 0, sizeof *out);
    if (memcmp(block + F_MAGIC, "ustar\0" "00", 8) != 0)
        return false;
    uint64_t want;
    if (!parse_octal(block + F_CHKSUM, L_CHKSUM, &want))
        return false;
    /* The checksum is the sum of the header's bytes with its own field
     * read as spaces; some old writers summed signed chars. */
    uint64_t usum = 0;
    int64_t ssum = 0;
    for (size_t k = 0; k < FB_TAR_BLOCK; k++) {
        uint8_t b = (k >= F_CHKSUM && k < F_CHKSUM + L_CHKSUM) ? ' ' : block[k];
        usum += b;
        ssum += (int8_t)b;
    }
    if (usum != want && (ssum < 0 || (uint64_t)ssum != want))
        return false;
    out->typeflag = (char)block[F_TYPEFLAG];
    out->size_ok = parse_number(block + F_SIZE, L_SIZE, &out->size);
    size_t plen = field_len(block + F_PREFIX, L_PREFIX);
    size_t nlen = field_len(block + F_NAME, L_NAME);
    size_t pos = 0;
    if (plen > 0) {
        memcpy(out->name, block + F_PREFIX, plen);
        pos = plen;
        out->name[pos++] = '/';
    }
    memcpy(out->name + pos, block + F_NAME, nlen);
    pos += nlen;
    out->name[pos] = '\0';
    out->name_len = pos;
    return true;
}

int fb_tar_pax_find(const uint8_t *data, size_t len, const char *key, const uint8_t **value,
                    size_t *value_len)
{
    size_t klen = strlen(key);
    int found = 0;
    size_t pos = 0;
    while (pos < len) {
        /* libarchive pads the data with NULs to the block: the records end
         * at the first NUL where a record would start. */
        if (data[pos] == '\0') {
            for (size_t k = pos; k < len; k++)
                if (data[k] != '\0')
                    return -1;
            break;
        }
        size_t rlen = 0, k = pos;
        for (; k < len && data[k] >= '0' && data[k] <= '9'; k++) {
            if (rlen > (SIZE_MAX - 9) / 10)
                return -1;
            rlen = rlen * 10 + (size_t)(data[k] - '0');
        }
        if (k == pos || k >= len || data[k] != ' ')
            return -1;
        if (rlen > len - pos || rlen < k - pos + 3 || data[pos + rlen - 1] != '\n')
            return -1;
        const uint8_t *rec = data + k + 1;
        size_t rec_len = pos + rlen - 1 - (k + 1); /* "key=value" without the newline */
        const uint8_t *eq = memchr(rec, '=', rec_len);
        if (!eq || eq == rec)
            return -1;
        if ((size_t)(eq - rec) == klen && memcmp(rec, key, klen) == 0) {
            *value = eq + 1;
            *value_len = rec_len - klen - 1;
            found = 1;
        }
        pos += rlen;
    }
    return found;
}

static int corrupt(fb_error *err, const char *label, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* "label: path: what" as FB_ECORRUPT. */
static int corrupt(fb_error *err, const char *label, const char *path, const char *fmt, ...)
{
    char esc[600], what[256];
    fb_path_escape(path, esc, sizeof esc);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return fb_error_set(err, FB_ECORRUPT, "%s: %s: %s", label, esc, what);
}

static int read_exact(fb_archive_reader *r, uint8_t *buf, size_t len, uint64_t off,
                      unsigned flags, const char *label, const char *path, fb_error *err)
{
    size_t got = 0;
    int rc = fb_archive_reader_pread_flags(r, buf, len, off, off, flags, &got, err);
    if (rc)
        return rc;
    if (got != len)
        return corrupt(err, label, path, "the tar stream ends at %" PRIu64
                       " bytes, inside the header before its data at %" PRIu64,
                       off + got, off + len);
    return 0;
}

/* The pax extended header that ends right where the ustar header at
 * header_off starts, if there is one, looked for no further back than
 * floor: its data (malloc'd into *data). */
static int find_pax(fb_archive_reader *r, uint64_t header_off, uint64_t floor, unsigned flags,
                    const char *label, const char *path, uint8_t **data, size_t *data_len,
                    fb_error *err)
{
    *data = NULL;
    *data_len = 0;
    uint64_t span = FB_TAR_PAX_MAX + FB_TAR_BLOCK;
    if (span > header_off - floor)
        span = (header_off - floor) - (header_off - floor) % FB_TAR_BLOCK;
    if (span < 2 * FB_TAR_BLOCK)
        return 0;
    uint8_t *buf = malloc((size_t)span);
    if (!buf)
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", label);
    int rc = read_exact(r, buf, (size_t)span, header_off - span, flags, label, path, err);
    if (rc) {
        free(buf);
        return rc;
    }
    /* The 'x' header k blocks before the data blocks of k: its size must
     * take exactly those k blocks. */
    for (size_t k = 1; (k + 1) * FB_TAR_BLOCK <= span; k++) {
        const uint8_t *blk = buf + span - (k + 1) * FB_TAR_BLOCK;
        /* Only an 'x' block can be it: before a small file, every other
         * block is another member's header, and parsing each (a checksum
         * over its 512 bytes) was most of an open. */
        if (blk[F_TYPEFLAG] != 'x')
            continue;
        fb_tar_header h;
        if (!fb_tar_header_parse(blk, &h) || h.typeflag != 'x' || !h.size_ok || h.size == 0)
            continue;
        if ((h.size + FB_TAR_BLOCK - 1) / FB_TAR_BLOCK != k)
            continue;
        memmove(buf, blk + FB_TAR_BLOCK, (size_t)h.size);
        *data = buf;
        *data_len = (size_t)h.size;
        return 0;
    }
    free(buf);
    return 0;
}

/* A pax decimal number, strictly: digits only. */
static bool parse_decimal(const uint8_t *p, size_t n, uint64_t *out)
{
    if (n == 0 || n > 20)
        return false;
    uint64_t v = 0;
    for (size_t k = 0; k < n; k++) {
        if (p[k] < '0' || p[k] > '9')
            return false;
        uint64_t d = (uint64_t)(p[k] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

int fb_tar_member_prove(fb_archive_reader *r, uint64_t data_offset, const char *path,
                        uint64_t size, unsigned flags, const char *label, fb_error *err)
{
    if (data_offset < FB_TAR_BLOCK || data_offset % FB_TAR_BLOCK != 0)
        return corrupt(err, label, path,
                       "data offset %" PRIu64 " does not follow a tar header block",
                       data_offset);
    uint64_t header_off = data_offset - FB_TAR_BLOCK;
    uint8_t blk[FB_TAR_BLOCK];
    int rc = read_exact(r, blk, sizeof blk, header_off, flags, label, path, err);
    if (rc)
        return rc;
    fb_tar_header h;
    if (!fb_tar_header_parse(blk, &h))
        return corrupt(err, label, path,
                       "no valid tar header at offset %" PRIu64 ", before its data",
                       header_off);
    if (h.typeflag != '0' && h.typeflag != '\0')
        return corrupt(err, label, path,
                       "the tar header at offset %" PRIu64 " is not a regular file (type 0x%02x)",
                       header_off, (unsigned)(uint8_t)h.typeflag);
    /* A pax header right before overrides the ustar fields (path, size),
     * as in every pax reader: it is always looked for, even when the
     * ustar name already matches.
     *
     * For a file whose bytes are checked against the manifest's SHA-256
     * (FB_ARCHIVE_READ_CHECKED) it is first looked for within the frame
     * that holds the header only: the writer starts a small file's frame
     * right before its first header, and looking 64 KiB further back
     * decoded the whole frame before (half of a small file's first read).
     * Only when that finds no pax header and the ustar fields disagree
     * with the manifest is the whole window read (a long path's pax header
     * in the frame before, in an archive some other writer cut). A pax
     * header further back that overrides fields which already agree is
     * then not seen, and cannot change a byte served: those are checked
     * against the digest. */
    size_t plen = strlen(path);
    bool ustar_name_ok = h.name_len == plen && memcmp(h.name, path, plen) == 0;
    bool ustar_size_ok = h.size_ok && h.size == size;
    uint64_t floor = (flags & FB_ARCHIVE_READ_CHECKED)
                         ? fb_archive_reader_frame_start(r, header_off) : 0;
    if (floor > header_off)
        floor = 0;
    bool name_ok, size_ok;
    uint64_t got_size;
    int found, found_size;
    for (;;) {
        name_ok = ustar_name_ok;
        size_ok = ustar_size_ok;
        got_size = h.size;
        uint8_t *pax;
        size_t pax_len;
        rc = find_pax(r, header_off, floor, flags, label, path, &pax, &pax_len, err);
        if (rc)
            return rc;
        const uint8_t *v;
        size_t vlen;
        found = pax ? fb_tar_pax_find(pax, pax_len, "path", &v, &vlen) : 0;
        if (found == 1)
            name_ok = vlen == plen && memcmp(v, path, plen) == 0;
        found_size = found >= 0 && pax ? fb_tar_pax_find(pax, pax_len, "size", &v, &vlen) : 0;
        if (found_size == 1)
            size_ok = parse_decimal(v, vlen, &got_size) && got_size == size;
        bool had_pax = pax != NULL;
        free(pax);
        if (floor == 0 || had_pax || (name_ok && size_ok))
            break;
        floor = 0;
    }
    if (found < 0 || found_size < 0)
        return corrupt(err, label, path,
                       "malformed pax header before the tar header at offset %" PRIu64,
                       header_off);
    if (!name_ok)
        return corrupt(err, label, path,
                       "the tar header at offset %" PRIu64 " belongs to another entry",
                       header_off);
    if (!size_ok)
        return corrupt(err, label, path,
                       "the tar header gives size %" PRIu64 ", the manifest %" PRIu64, got_size,
                       size);
    return 0;
}

int fb_tar_member_prove_content(fb_archive_reader *r, uint64_t data_offset, uint64_t size,
                                const uint8_t sha256[FB_SHA256_LEN], unsigned flags,
                                const char *path, const char *label, fb_error *err)
{
    enum { CHUNK = 64 * 1024 };
    uint8_t *buf = malloc(CHUNK);
    fb_sha256 h;
    if (!buf)
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", label);
    int rc = fb_sha256_init(&h, err);
    if (rc) {
        free(buf);
        return rc;
    }
    uint64_t done = 0;
    while (rc == 0 && done < size) {
        size_t want = size - done < CHUNK ? (size_t)(size - done) : CHUNK;
        rc = read_exact(r, buf, want, data_offset + done, flags, label, path, err);
        if (rc == 0)
            fb_sha256_update(&h, buf, want);
        done += want;
    }
    uint8_t got[FB_SHA256_LEN];
    fb_sha256_final(&h, got);
    fb_sha256_fini(&h);
    free(buf);
    if (rc)
        return rc;
    if (memcmp(got, sha256, FB_SHA256_LEN) != 0)
        return corrupt(err, label, path, "content sha256 differs from the manifest's");
    return 0;
}
