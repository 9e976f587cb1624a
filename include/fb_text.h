/* Raw-byte names as text: names on disk are bytes, while JSON, messages and
 * terminals want valid UTF-8 with control bytes made visible. The one
 * UTF-8 decoder of the project lives here, so that what the manifest calls
 * valid, what the JSON writer replaces and what a message escapes agree. */
#ifndef FB_TEXT_H
#define FB_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length (1..4) of the valid UTF-8 sequence at s, of which avail >= 1 bytes
 * may be read, or 0 if it is not one. Strict: no overlong forms, no UTF-16
 * surrogates, nothing above U+10FFFF. On a NUL-terminated string,
 * avail = strlen(s) + 1 is safe (a NUL is never a continuation byte). */
size_t fb_utf8_seq_len(const char *s, size_t avail);

/* s[0..n) is strict UTF-8 throughout. */
bool fb_utf8_valid(const char *s, size_t n);

/* Copy of s[0..n) with each byte that is not part of valid UTF-8 replaced
 * by U+FFFD (what the JSON writer writes). *out is malloc'd and
 * NUL-terminated. Returns 0 or FB_ENOMEM. */
int fb_utf8_lossy(const char *s, size_t n, char **out);

/* Copies path into out (size >= 1) for use in a message: control bytes,
 * backslash and bytes that are not valid UTF-8 become \n, \t, \\ or \xNN.
 * Truncates with "..." when out is too small. */
void fb_path_escape(const char *path, char *out, size_t size);
/* The same for the first len bytes of p (at most FB_PATH_MAX), which need
 * not be NUL-terminated; returns out. */
const char *fb_path_escape_n(const char *p, size_t len, char *out, size_t size);

/* Copies untrusted text typed by a user (an id, a backup spec) into out
 * (size >= 1) for quoting between '' in a message: printable ASCII as is,
 * everything else (and ' and \\) escaped, input cut after 160 bytes with
 * "...", so a hostile id cannot forge lines or terminal escapes. */
void fb_text_quote(const char *s, char *out, size_t size);

/* Names that are not valid UTF-8 are written in JSON as text (invalid
 * bytes as U+FFFD) plus "<key>_b64", their exact bytes in base64: the one
 * rule for every JSON document and output of the project.
 * Standard base64 with padding. encode: malloc'd NUL-terminated text.
 * decode: strict (alphabet, padding, zero trailing bits); malloc'd bytes
 * with a NUL appended. Return 0, FB_ENOMEM, or -1 (decode: invalid). */
int fb_base64_encode(const uint8_t *in, size_t n, char **out);
int fb_base64_decode(const char *in, size_t n, uint8_t **out, size_t *out_len);

#endif
