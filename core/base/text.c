/* Raw-byte names as text: the strict UTF-8 decoder shared by the JSON
 * reader and writer, the manifest's name encoding and message escaping (see
 * fb_text.h for why there is only one), and the two escaping rules every
 * message is built with. */
#include "fb_text.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fb_error.h"
#include "fb_types.h"

size_t fb_utf8_seq_len(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    if (c < 0xC2) /* continuation byte, or overlong 2-byte lead */
        return 0;
    if (c < 0xE0) {
        if (n < 2 || (s[1] & 0xC0) != 0x80)
            return 0;
        return 2;
    }
    if (c < 0xF0) {
        if (n < 3)
            return 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* UTF-16 surrogates */
        if (s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80)
            return 0;
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4)
            return 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* > U+10FFFF */
        if (s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

bool fb_utf8_valid(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t k = fb_utf8_seq_len(s + i, n - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

int fb_utf8_lossy(const char *s, size_t n, char **out)
{
    *out = NULL;
    if (n > (SIZE_MAX - 1) / 3)
        return FB_ENOMEM;
    char *o = malloc(n * 3 + 1); /* each invalid byte grows to 3 */
    if (!o)
        return FB_ENOMEM;
    size_t i = 0, j = 0;
    while (i < n) {
        size_t k = fb_utf8_seq_len(s + i, n - i);
        if (k == 0) {
            memcpy(o + j, "\xEF\xBF\xBD", 3);
            j += 3;
            i++;
        } else {
            memcpy(o + j, s + i, k);
            j += k;
            i += k;
        }
    }
    o[j] = '\0';
    *out = o;
    return 0;
}

/* ---- escaping for messages ---- */

/* The one rule for a byte shown on its own: printable ASCII as is, the
 * common controls by name, backslash (and, for quoted values, both quote
 * characters) behind a backslash, anything else as \xNN. buf holds 16. */
static size_t escape_byte(unsigned char c, bool quotes, char *buf)
{
    const char *named = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : NULL;
    if (named) {
        memcpy(buf, named, 2);
        return 2;
    }
    if (c == '\\' || (quotes && (c == '\'' || c == '"'))) {
        buf[0] = '\\';
        buf[1] = (char)c;
        return 2;
    }
    if (c < 0x20 || c >= 0x7F)
        return (size_t)snprintf(buf, 16, "\\x%02x", c);
    buf[0] = (char)c;
    return 1;
}

/* A name keeps its valid UTF-8, so names in any script stay readable; C1
 * controls (U+0080..U+009F) are valid UTF-8 but terminal controls, so
 * they are shown byte by byte. */
static size_t path_piece(const unsigned char *s, size_t avail, char *buf, size_t *used)
{
    size_t n = fb_utf8_seq_len((const char *)s, avail);
    if (n > 1) {
        *used = n;
        if (n == 2 && s[0] == 0xC2 && s[1] < 0xA0)
            return (size_t)snprintf(buf, 16, "\\x%02x\\x%02x", s[0], s[1]);
        memcpy(buf, s, n);
        return n;
    }
    *used = 1;
    return escape_byte(s[0], false, buf);
}

static size_t quote_piece(const unsigned char *s, size_t avail, char *buf, size_t *used)
{
    (void)avail;
    *used = 1;
    return escape_byte(s[0], true, buf);
}

/* Shared by both escapers: the first `cut` bytes of s[0..len), piece by
 * piece, never splitting an escape. When anything is left out, by the cut
 * or because out is full, the output ends at the last piece after which
 * "..." still fits, and says so; in fewer than 4 bytes it is empty rather
 * than cut without a word. */
static const char *escape_into(const char *s, size_t len, size_t cut,
                               size_t (*piece)(const unsigned char *, size_t, char *, size_t *),
                               char *out, size_t size)
{
    if (size == 0)
        return out;
    size_t end = len < cut ? len : cut;
    size_t i = 0, o = 0, mark = 0;
    while (i < end) {
        char buf[16];
        size_t used;
        size_t blen = piece((const unsigned char *)s + i, end - i, buf, &used);
        if (o + blen + 1 > size)
            break;
        memcpy(out + o, buf, blen);
        o += blen;
        i += used;
        if (o + 4 <= size)
            mark = o;
    }
    if (i < len) {
        o = mark; /* 0 when size < 4 */
        if (size >= 4) {
            memcpy(out + o, "...", 3);
            o += 3;
        }
    }
    out[o] = '\0';
    return out;
}

const char *fb_path_escape_n(const char *p, size_t len, char *out, size_t size)
{
    return escape_into(p, len, SIZE_MAX, path_piece, out, size);
}

const char *fb_path_escape(const char *path, char *out, size_t size)
{
    return fb_path_escape_n(path, strlen(path), out, size);
}

const char *fb_text_quote_n(const char *s, size_t len, size_t cut, char *out, size_t size)
{
    return escape_into(s, len, cut, quote_piece, out, size);
}

const char *fb_text_quote(const char *s, char *out, size_t size)
{
    return fb_text_quote_n(s, strlen(s), FB_TEXT_QUOTE_CUT, out, size);
}

/* ---- base64: the exact bytes of a name that UTF-8 text cannot carry ---- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int fb_base64_encode(const uint8_t *in, size_t n, char **out)
{
    *out = NULL;
    if (n > (SIZE_MAX - 1) / 4 * 3 - 3)
        return FB_ENOMEM;
    size_t olen = (n + 2) / 3 * 4;
    char *o = malloc(olen + 1);
    if (!o)
        return FB_ENOMEM;
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        o[j++] = b64_alphabet[(v >> 18) & 63];
        o[j++] = b64_alphabet[(v >> 12) & 63];
        o[j++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
        o[j++] = i + 2 < n ? b64_alphabet[v & 63] : '=';
    }
    o[j] = '\0';
    *out = o;
    return 0;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int fb_base64_decode(const char *in, size_t n, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (n % 4 != 0)
        return -1;
    uint8_t *o = malloc(n / 4 * 3 + 1);
    if (!o)
        return FB_ENOMEM;
    size_t j = 0;
    for (size_t i = 0; i < n; i += 4) {
        bool last = i + 4 == n;
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)in[i + k];
            if (c == '=' && last && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad) /* data after '=' */
                goto bad;
            v[k] = b64_value(c);
            if (v[k] < 0)
                goto bad;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                     (uint32_t)v[3];
        /* Canonical form only: the bits beyond the data must be zero, so one
         * byte string has exactly one encoding. */
        if ((pad == 1 && (w & 0xFF) != 0) || (pad == 2 && (w & 0xFFFF) != 0))
            goto bad;
        o[j++] = (uint8_t)(w >> 16);
        if (pad < 2)
            o[j++] = (uint8_t)(w >> 8);
        if (pad < 1)
            o[j++] = (uint8_t)w;
    }
    o[j] = '\0';
    *out = o;
    *out_len = j;
    return 0;
bad:
    free(o);
    return -1;
}
