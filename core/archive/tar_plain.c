/* The headers of a plain small file, formatted here for the plainest files
 * byte for byte as libarchive's pax writer does (see tar_plain_i.h);
 * everything else still goes through libarchive. */
#include "tar_plain_i.h"

#include <stdio.h>
#include <string.h>

#define PAX_PREFIX "PaxHeader/"

static void put_octal(uint8_t *field, size_t digits, uint64_t v)
{
    for (size_t i = digits; i-- > 0; v >>= 3)
        field[i] = (uint8_t)('0' + (v & 7));
}

/* A ustar block as libarchive formats it for pax: numbers as 6 or 11 octal
 * digits with a space (and a NUL after the short ones). */
static void ustar_block(uint8_t *b, const char *name, size_t name_len, unsigned mode,
                        const fb_entry_meta *meta, uint64_t size, char type)
{
    memset(b, 0, FB_TAR_BLOCK);
    memcpy(b, name, name_len);
    put_octal(b + 100, 6, mode);
    b[106] = ' ';
    put_octal(b + 108, 6, meta->uid);
    b[114] = ' ';
    put_octal(b + 116, 6, meta->gid);
    b[122] = ' ';
    put_octal(b + 124, 11, size);
    b[135] = ' ';
    put_octal(b + 136, 11, (uint64_t)meta->mtime);
    b[147] = ' ';
    memset(b + 148, ' ', 8);
    b[156] = (uint8_t)type;
    memcpy(b + 257, "ustar\0" "00", 8);
    put_octal(b + 329, 6, 0);
    b[335] = ' ';
    put_octal(b + 337, 6, 0);
    b[343] = ' ';
    unsigned sum = 0;
    for (size_t i = 0; i < FB_TAR_BLOCK; i++)
        sum += b[i];
    put_octal(b + 148, 6, sum);
    b[154] = '\0';
}

bool fb_tar_plain_file(const char *path, size_t len, const fb_entry_meta *meta)
{
    if (len + sizeof PAX_PREFIX - 1 >= 100 || meta->uid > 0777777u || meta->gid > 0777777u ||
        meta->mtime < 0 || meta->mtime >= 0x7fffffff || meta->size > 077777777777u)
        return false;
    for (size_t i = 0; i < len; i++)
        if (path[i] < 0x20 || path[i] > 0x7e)
            return false;
    return true;
}

/* "LEN mtime=SEC[.FRACTION]\n", the fraction without trailing zeros; LEN
 * counts its own digits. Returns the record's length. */
static size_t pax_mtime_record(char *out, size_t cap, int64_t sec, uint32_t nsec)
{
    char value[40];
    int n = snprintf(value, sizeof value, "%lld", (long long)sec);
    if (nsec) {
        int digits = 9;
        while (nsec % 10 == 0) {
            nsec /= 10;
            digits--;
        }
        n += snprintf(value + n, sizeof value - (size_t)n, ".%0*u", digits, nsec);
    }
    size_t body = (size_t)n + sizeof " mtime=\n" - 1, total = body + 1;
    for (size_t p = 10; total >= p; p *= 10)
        total++;
    snprintf(out, cap, "%zu mtime=%s\n", total, value);
    return total;
}

size_t fb_tar_plain_headers(uint8_t hdr[3 * FB_TAR_BLOCK], const char *path, size_t len,
                            const fb_entry_meta *meta)
{
    unsigned mode = meta->mode & 07777;
    size_t at = 0;
    if (meta->mtime_nsec) {
        const char *slash = strrchr(path, '/');
        size_t dir = slash ? (size_t)(slash - path) + 1 : 0;
        char name[100];
        memcpy(name, path, dir);
        memcpy(name + dir, PAX_PREFIX, sizeof PAX_PREFIX - 1);
        memcpy(name + dir + sizeof PAX_PREFIX - 1, path + dir, len - dir);
        char rec[96];
        size_t rlen = pax_mtime_record(rec, sizeof rec, meta->mtime, meta->mtime_nsec);
        /* libarchive gives the 'x' header the permission bits only. */
        ustar_block(hdr, name, len + sizeof PAX_PREFIX - 1, mode & 0777, meta, rlen, 'x');
        memset(hdr + FB_TAR_BLOCK, 0, FB_TAR_BLOCK);
        memcpy(hdr + FB_TAR_BLOCK, rec, rlen);
        at = 2 * FB_TAR_BLOCK;
    }
    ustar_block(hdr + at, path, len, mode, meta, meta->size, '0');
    return at + FB_TAR_BLOCK;
}

