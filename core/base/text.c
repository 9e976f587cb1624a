/* Raw-byte names as text: the strict UTF-8 decoder shared by the JSON
 * reader and writer, the manifest's name encoding and message escaping (see
 * fb_text.h for why there is only one). */
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

void fb_path_escape(const char *path, char *out, size_t size)
{
    if (size == 0)
        return;
    const unsigned char *s = (const unsigned char *)path;
    size_t len = strlen(path);
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        char buf[8];
        size_t n = fb_utf8_seq_len(path + i, len - i);
        size_t blen;
        if (n == 1 && s[i] >= 0x20 && s[i] != 0x7F && s[i] != '\\') {
            buf[0] = (char)s[i];
            blen = 1;
        } else if (n > 1) {
            memcpy(buf, s + i, n);
            blen = n;
        } else {
            if (s[i] == '\n')
                blen = (size_t)snprintf(buf, sizeof buf, "\\n");
            else if (s[i] == '\t')
                blen = (size_t)snprintf(buf, sizeof buf, "\\t");
            else if (s[i] == '\\')
                blen = (size_t)snprintf(buf, sizeof buf, "\\\\");
            else
                blen = (size_t)snprintf(buf, sizeof buf, "\\x%02x", s[i]);
            n = 1;
        }
        /* keep room for "..." and the NUL when truncating */
        if (o + blen + 1 > size || (i + n < len && o + blen + 4 > size)) {
            if (size >= 4) {
                while (o + 4 > size)
                    o--;
                memcpy(out + o, "...", 3);
                o += 3;
            }
            break;
        }
        memcpy(out + o, buf, blen);
        o += blen;
        i += n;
    }
    out[o < size ? o : size - 1] = '\0';
}

void fb_text_quote(const char *s, char *out, size_t size)
{
    static const size_t input_max = 160;
    size_t o = 0;
    size_t i = 0;
    if (size == 0)
        return;
    for (; s[i] && i < input_max; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[8];
        if (c == '\n')
            snprintf(tmp, sizeof tmp, "\\n");
        else if (c == '\t')
            snprintf(tmp, sizeof tmp, "\\t");
        else if (c == '\r')
            snprintf(tmp, sizeof tmp, "\\r");
        else if (c == '\\' || c == '\'')
            snprintf(tmp, sizeof tmp, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            snprintf(tmp, sizeof tmp, "\\x%02x", c);
        else
            snprintf(tmp, sizeof tmp, "%c", c);
        size_t l = strlen(tmp);
        if (o + l + 4 >= size)
            break;
        memcpy(out + o, tmp, l);
        o += l;
    }
    if (s[i] && o + 4 < size) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
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

const char *fb_path_escape_n(const char *p, size_t len, char *out, size_t size)
{
    char raw[FB_PATH_MAX + 1];
    if (len > FB_PATH_MAX)
        len = FB_PATH_MAX;
    memcpy(raw, p, len);
    raw[len] = '\0';
    fb_path_escape(raw, out, size);
    return out;
}
