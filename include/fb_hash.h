/* SHA-256 over OpenSSL's EVP (hardware accelerated), XXH64 for damage
 * checks, and hex helpers.
 * A fb_sha256 is used by one thread at a time. */
#ifndef FB_HASH_H
#define FB_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "fb_error.h"
#include "fb_types.h"

typedef struct fb_sha256 {
    void *ctx; /* EVP_MD_CTX, hidden so callers need no OpenSSL headers */
} fb_sha256;

/* Returns 0 or FB_ENOMEM. Pair with fb_sha256_fini. */
/* Loads the hash implementation now rather than at the first hash
 * (OpenSSL then reads its configuration file and fetches the algorithm,
 * about a millisecond): for a program whose first hash is waited for, the
 * mount's first read. Thread-safe, idempotent. */
void fb_sha256_prepare(void);
int fb_sha256_init(fb_sha256 *h, fb_error *err);
void fb_sha256_update(fb_sha256 *h, const void *data, size_t len);
/* Writes the digest; the context can then be reset or fini'd. */
void fb_sha256_final(fb_sha256 *h, uint8_t out[FB_SHA256_LEN]);
/* Starts a new digest in an init'd context (after final, or to drop a
 * partial one): one allocation serves every file of a backup or a verify.
 * Returns 0 or FB_EIO. */
int fb_sha256_reset(fb_sha256 *h, fb_error *err);
void fb_sha256_fini(fb_sha256 *h);

/* One-shot digest of a buffer. */
int fb_sha256_buffer(const void *data, size_t len, uint8_t out[FB_SHA256_LEN], fb_error *err);

/* XXH64 with seed 0 (libxxhash), the checksum zstd frames carry: over
 * 10 GB/s, for telling damaged bytes from the bytes written (a torn or
 * rotted cache file), never for resisting a forger, who can compute it as
 * well as anyone. A fb_xxh64 is used by one thread at a time. */
typedef struct fb_xxh64 {
    void *state; /* XXH64_state_t, hidden so callers need no xxhash header */
} fb_xxh64;

/* Returns 0 or FB_ENOMEM. Pair with fb_xxh64_fini. */
int fb_xxh64_init(fb_xxh64 *h, fb_error *err);
void fb_xxh64_update(fb_xxh64 *h, const void *data, size_t len);
/* The checksum of everything updated so far. */
uint64_t fb_xxh64_digest(const fb_xxh64 *h);
void fb_xxh64_fini(fb_xxh64 *h);
/* One-shot checksum of a buffer. */
uint64_t fb_xxh64_buffer(const void *data, size_t len);

/* XXH3-128 with seed 0 (libxxhash): a fingerprint of a file's bytes,
 * tens of GB/s, for a backup's validation to tell the bytes it stored from
 * the bytes it read (docs/archive-format.md, "Validation follows the
 * writer"). Like XXH64 it finds damage and mistakes, never a forger. The
 * fingerprint is the canonical (big-endian) form. A fb_xxh128 is used by
 * one thread at a time. */
#define FB_XXH128_LEN 16
typedef struct fb_xxh128 {
    void *state; /* XXH3_state_t, hidden so callers need no xxhash header */
} fb_xxh128;

/* Returns 0 or FB_ENOMEM. Pair with fb_xxh128_fini. */
int fb_xxh128_init(fb_xxh128 *h, fb_error *err);
/* Starts a new fingerprint in an init'd state. */
void fb_xxh128_reset(fb_xxh128 *h);
void fb_xxh128_update(fb_xxh128 *h, const void *data, size_t len);
/* The fingerprint of everything updated since the last reset. */
void fb_xxh128_digest(const fb_xxh128 *h, uint8_t out[FB_XXH128_LEN]);
/* Accepts a state never init'd (zeroed) or already fini'd. */
void fb_xxh128_fini(fb_xxh128 *h);
/* One-shot fingerprint of a buffer. */
void fb_xxh128_buffer(const void *data, size_t len, uint8_t out[FB_XXH128_LEN]);

/* Lowercase hex of n bytes into out (2n+1 bytes, NUL-terminated). */
void fb_hex_encode(const uint8_t *in, size_t n, char *out);
/* Parses exactly 64 lowercase hex digits; returns 0 or FB_ECORRUPT. */
int fb_sha256_from_hex(const char *hex, uint8_t out[FB_SHA256_LEN]);

#endif
