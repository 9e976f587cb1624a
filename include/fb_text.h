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

/* Two rules make text safe to put in a message, one per kind of text, so
 * that a name or a value reads the same in every message and none can
 * forge a line or a terminal escape. Both write at most size bytes with
 * the NUL (nothing when size is 0), never split an escape, end with "..."
 * when part of the input is left out (if size >= 4), and return out. */

/* A name from disk (a path, a symlink target): valid UTF-8 as is, except
 * the C1 controls U+0080..U+009F; \n, \t, \r and \\ by name; other control
 * bytes and bytes that are not valid UTF-8 as \xNN. Quote characters are
 * left as they are. out needs 4 * strlen(path) + 1 bytes to hold it all. */
const char *fb_path_escape(const char *path, char *out, size_t size);
/* The same for the first len bytes of p, which need not be NUL-terminated
 * (a NUL among them shows as \x00). */
const char *fb_path_escape_n(const char *p, size_t len, char *out, size_t size);

/* An untrusted value quoted in a message: text typed by a user (an id, a
 * backup spec) or a string or key of a JSON document we read. Printable
 * ASCII as is; \n, \t, \r, \\, \' and \" by name; every other byte (other
 * controls, DEL, anything non-ASCII) as \xNN, so the text is plain ASCII
 * that fits between '' or "" in any message. fb_text_quote shows at most
 * FB_TEXT_QUOTE_CUT bytes of s. */
#define FB_TEXT_QUOTE_CUT 160
const char *fb_text_quote(const char *s, char *out, size_t size);
/* The same for s[0..len) (need not be NUL-terminated), showing at most
 * cut bytes of it. */
const char *fb_text_quote_n(const char *s, size_t len, size_t cut, char *out, size_t size);
/* Size of an out that holds any cut bytes quoted, and the "...". */
#define FB_TEXT_QUOTE_SIZE(cut) (4 * (cut) + 4)

/* Names that are not valid UTF-8 are written in JSON as text (invalid
 * bytes as U+FFFD) plus "<key>_b64", their exact bytes in base64: the one
 * rule for every JSON document and output of the project.
 * Standard base64 with padding. encode: malloc'd NUL-terminated text.
 * decode: strict (alphabet, padding, zero trailing bits); malloc'd bytes
 * with a NUL appended. Return 0, FB_ENOMEM, or -1 (decode: invalid). */
int fb_base64_encode(const uint8_t *in, size_t n, char **out);
int fb_base64_decode(const char *in, size_t n, uint8_t **out, size_t *out_len);

#endif
