/* The lexical pre-scan of strict JSON reading (json_prescan_i.h): every
 * token of a text checked before cJSON sees it, and where its numbers
 * start, so that integers are read from their text. */
#include "json_prescan_i.h"

#include <stdlib.h>
#include <string.h>

#include "fb_text.h"
#include "json_stream_i.h"
#include "json_strict_i.h" /* FB_JSON_DEPTH_MAX */

static int hex4(const unsigned char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static bool scan_string(fb_json_prescan *s)
{
    s->pos++; /* opening quote */
    while (s->pos < s->len) {
        unsigned char c = s->p[s->pos];
        if (c == '"') {
            s->pos++;
            return true;
        }
        if (c == '\\') {
            if (s->pos + 1 >= s->len)
                break;
            unsigned char e = s->p[s->pos + 1];
            if (strchr("\"\\/bfnrt", e) && e != '\0') {
                s->pos += 2;
                continue;
            }
            if (e != 'u') {
                s->reason = "invalid escape in a string";
                return false;
            }
            unsigned u;
            if (s->pos + 6 > s->len || hex4(s->p + s->pos + 2, &u) < 0) {
                s->reason = "invalid \\u escape in a string";
                return false;
            }
            if (u == 0) {
                /* cJSON would cut the string here; a name with a NUL
                 * cannot be a file name either. */
                s->reason = "\\u0000 in a string";
                return false;
            }
            if (u >= 0xDC00 && u <= 0xDFFF) {
                s->reason = "unpaired UTF-16 surrogate in a string";
                return false;
            }
            if (u >= 0xD800 && u <= 0xDBFF) {
                unsigned lo;
                if (s->pos + 12 > s->len || s->p[s->pos + 6] != '\\' || s->p[s->pos + 7] != 'u' ||
                    hex4(s->p + s->pos + 8, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF) {
                    s->reason = "unpaired UTF-16 surrogate in a string";
                    return false;
                }
                s->pos += 12;
                continue;
            }
            s->pos += 6;
            continue;
        }
        if (c < 0x20) {
            s->reason = "unescaped control character in a string";
            return false;
        }
        if (c < 0x80) { /* most bytes: no call for a one-byte sequence */
            s->pos++;
            continue;
        }
        size_t k = fb_utf8_seq_len((const char *)s->p + s->pos, s->len - s->pos);
        if (k == 0) {
            s->reason = "invalid UTF-8 in a string";
            return false;
        }
        s->pos += k;
    }
    s->reason = "unterminated string";
    return false;
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Length of the RFC 8259 number at p (n bytes), or 0 if malformed. Also
 * rejects a number directly followed by number characters ("01", "1.2.3"),
 * which cJSON would read differently. */
size_t fb_json_number_len(const unsigned char *p, size_t n, bool *is_int)
{
    size_t i = 0;
    *is_int = true;
    if (i < n && p[i] == '-')
        i++;
    if (i >= n || !is_digit(p[i]))
        return 0;
    if (p[i] == '0') {
        i++;
    } else {
        while (i < n && is_digit(p[i]))
            i++;
    }
    if (i < n && p[i] == '.') {
        *is_int = false;
        i++;
        if (i >= n || !is_digit(p[i]))
            return 0;
        while (i < n && is_digit(p[i]))
            i++;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        *is_int = false;
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        if (i >= n || !is_digit(p[i]))
            return 0;
        while (i < n && is_digit(p[i]))
            i++;
    }
    if (i < n && (is_digit(p[i]) || p[i] == '.' || p[i] == 'e' || p[i] == 'E' || p[i] == '+' ||
                  p[i] == '-'))
        return 0;
    return i;
}

static bool push_number(fb_json_prescan *s, size_t off)
{
    if (s->no_nums)
        return true;
    if (s->n_nums == s->cap_nums) {
        size_t cap = s->cap_nums ? s->cap_nums * 2 : 64;
        uint32_t *n = realloc(s->nums, cap * sizeof *n);
        if (!n) {
            s->oom = true;
            return false;
        }
        s->nums = n;
        s->cap_nums = cap;
    }
    s->nums[s->n_nums++] = (uint32_t)(s->base + off); /* < len <= INT_MAX */
    return true;
}

static bool scan_literal(fb_json_prescan *s, const char *word)
{
    size_t n = strlen(word);
    if (s->len - s->pos < n || memcmp(s->p + s->pos, word, n) != 0) {
        s->reason = "unexpected character";
        return false;
    }
    s->pos += n;
    return true;
}

/* Checks every token of the text; structure (matching brackets, commas,
 * colons) is left to cJSON. */
static bool push_level(fb_json_prescan *s, char kind)
{
    if (s->depth >= FB_JSON_DEPTH_MAX) {
        s->reason = "nesting deeper than 1000 levels";
        return false;
    }
    if (s->depth == s->cap_stack) {
        size_t cap = s->cap_stack ? s->cap_stack * 2 : 16;
        fb_json_prescan_level *st = realloc(s->stack, cap * sizeof *st);
        if (!st) {
            s->oom = true;
            return false;
        }
        s->stack = st;
        s->cap_stack = cap;
    }
    fb_json_prescan_level *l = &s->stack[s->depth++];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    l->want_key = kind == '{';
    return true;
}

static bool count_value(fb_json_prescan *s)
{
    if (++s->n_values <= s->max_values)
        return true;
    s->too_many = true;
    return false;
}

bool fb_json_prescan_run(fb_json_prescan *s)
{
    while (s->pos < s->len) {
        unsigned char c = s->p[s->pos];
        fb_json_prescan_level *top = s->depth ? &s->stack[s->depth - 1] : NULL;
        switch (c) {
        case ' ':
        case '\t':
        case '\n':
        case '\r':
            s->pos++;
            break;
        case ':':
            if (top && top->kind == '{')
                top->want_key = false;
            s->pos++;
            break;
        case ',':
            if (top && top->kind == '[')
                top->index++;
            else if (top)
                top->want_key = true;
            s->pos++;
            break;
        case '{':
        case '[':
            if (!count_value(s))
                return false;
            if (!push_level(s, (char)c))
                return false;
            s->pos++;
            break;
        case '}':
        case ']':
            if (s->depth > 0)
                s->depth--;
            s->pos++;
            break;
        case '"':
            if (top && top->kind == '{' && top->want_key) {
                top->has_key = true;
                top->key_off = s->pos + 1;
                top->key_len = 0;
                bool ok = scan_string(s);
                top->key_len = (ok ? s->pos - 1 : s->pos) - top->key_off;
                if (!ok)
                    return false;
                break;
            }
            if (!count_value(s))
                return false;
            if (!scan_string(s))
                return false;
            break;
        case 't':
            if (!count_value(s))
                return false;
            if (!scan_literal(s, "true"))
                return false;
            break;
        case 'f':
            if (!count_value(s))
                return false;
            if (!scan_literal(s, "false"))
                return false;
            break;
        case 'n':
            if (!count_value(s))
                return false;
            if (!scan_literal(s, "null"))
                return false;
            break;
        default:
            if (c == '-' || is_digit(c)) {
                bool is_int;
                size_t k = fb_json_number_len(s->p + s->pos, s->len - s->pos, &is_int);
                if (k == 0) {
                    s->reason = "malformed number";
                    return false;
                }
                if (!count_value(s))
                    return false;
                if (!push_number(s, s->pos))
                    return false;
                s->pos += k;
                break;
            }
            s->reason = c >= 0x80 ? "unexpected non-ASCII byte outside a string"
                                  : "unexpected character";
            return false;
        }
    }
    return true;
}

/* Where the numbers of a part start. The whole text passed the pre-scan,
 * so tokens are valid and a string's end is its next unescaped quote: this
 * needs none of the pre-scan's checks, at a fraction of its cost (it runs
 * over every byte of every entry of a manifest). */
bool fb_json_prescan_numbers(fb_json_prescan *s)
{
    const unsigned char *p = s->p;
    size_t i = 0, n = s->len;
    while (i < n) {
        unsigned char c = p[i];
        if (c == '"') {
            size_t e = fb_json_string_end((const char *)p, n, i);
            i = e ? e : n;
        } else if (c == '-' || is_digit(c)) {
            if (!push_number(s, i))
                return false;
            bool is_int;
            size_t k = fb_json_number_len(p + i, n - i, &is_int);
            i += k ? k : 1;
        } else {
            i++;
        }
    }
    return true;
}
