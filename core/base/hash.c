/* SHA-256 through OpenSSL EVP, XXH64 through libxxhash, plus the hex form
 * used in manifests. */
#include "fb_hash.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>
#include <xxhash.h>

/* EVP_sha256() is an implicit fetch: OpenSSL 3 looks the algorithm up in
 * its provider store (locks, a hash lookup) on every EVP_DigestInit_ex. With
 * one digest per file that cost as much as hashing a 200-byte file, so the
 * algorithm is fetched once per process and kept. */
static EVP_MD *fetched_md;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void)
{
    fetched_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sha256_md(void)
{
    pthread_once(&fetch_once, fetch_sha256);
    return fetched_md ? fetched_md : EVP_sha256();
}

void fb_sha256_prepare(void)
{
    (void)sha256_md();
}

int fb_sha256_init(fb_sha256 *h, fb_error *err)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return fb_error_set(err, FB_ENOMEM, "sha256: out of memory");
    if (EVP_DigestInit_ex(ctx, sha256_md(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return fb_error_set(err, FB_EIO, "sha256: EVP_DigestInit_ex failed");
    }
    h->ctx = ctx;
    return 0;
}

int fb_sha256_reset(fb_sha256 *h, fb_error *err)
{
    if (EVP_DigestInit_ex((EVP_MD_CTX *)h->ctx, sha256_md(), NULL) != 1)
        return fb_error_set(err, FB_EIO, "sha256: EVP_DigestInit_ex failed");
    return 0;
}

void fb_sha256_update(fb_sha256 *h, const void *data, size_t len)
{
    if (len)
        EVP_DigestUpdate((EVP_MD_CTX *)h->ctx, data, len);
}

void fb_sha256_final(fb_sha256 *h, uint8_t out[FB_SHA256_LEN])
{
    unsigned int n = 0;
    EVP_DigestFinal_ex((EVP_MD_CTX *)h->ctx, out, &n);
}

void fb_sha256_fini(fb_sha256 *h)
{
    if (h && h->ctx) {
        EVP_MD_CTX_free((EVP_MD_CTX *)h->ctx);
        h->ctx = NULL;
    }
}

int fb_sha256_buffer(const void *data, size_t len, uint8_t out[FB_SHA256_LEN], fb_error *err)
{
    fb_sha256 h;
    int rc = fb_sha256_init(&h, err);
    if (rc)
        return rc;
    fb_sha256_update(&h, data, len);
    fb_sha256_final(&h, out);
    fb_sha256_fini(&h);
    return 0;
}

int fb_xxh64_init(fb_xxh64 *h, fb_error *err)
{
    XXH64_state_t *st = XXH64_createState();
    if (!st)
        return fb_error_set(err, FB_ENOMEM, "xxh64: out of memory");
    XXH64_reset(st, 0);
    h->state = st;
    return 0;
}

void fb_xxh64_update(fb_xxh64 *h, const void *data, size_t len)
{
    if (len)
        XXH64_update((XXH64_state_t *)h->state, data, len);
}

uint64_t fb_xxh64_digest(const fb_xxh64 *h)
{
    return XXH64_digest((const XXH64_state_t *)h->state);
}

void fb_xxh64_fini(fb_xxh64 *h)
{
    if (h && h->state) {
        XXH64_freeState((XXH64_state_t *)h->state);
        h->state = NULL;
    }
}

uint64_t fb_xxh64_buffer(const void *data, size_t len)
{
    return XXH64(data, len, 0);
}

int fb_xxh128_init(fb_xxh128 *h, fb_error *err)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        return fb_error_set(err, FB_ENOMEM, "xxh128: out of memory");
    XXH3_128bits_reset(st);
    h->state = st;
    return 0;
}

void fb_xxh128_reset(fb_xxh128 *h)
{
    XXH3_128bits_reset((XXH3_state_t *)h->state);
}

void fb_xxh128_update(fb_xxh128 *h, const void *data, size_t len)
{
    if (len)
        XXH3_128bits_update((XXH3_state_t *)h->state, data, len);
}

static void xxh128_out(XXH128_hash_t v, uint8_t out[FB_XXH128_LEN])
{
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, v);
    memcpy(out, c.digest, FB_XXH128_LEN);
}

void fb_xxh128_digest(const fb_xxh128 *h, uint8_t out[FB_XXH128_LEN])
{
    xxh128_out(XXH3_128bits_digest((const XXH3_state_t *)h->state), out);
}

void fb_xxh128_fini(fb_xxh128 *h)
{
    if (h && h->state) {
        XXH3_freeState((XXH3_state_t *)h->state);
        h->state = NULL;
    }
}

void fb_xxh128_buffer(const void *data, size_t len, uint8_t out[FB_XXH128_LEN])
{
    xxh128_out(XXH3_128bits(data, len), out);
}

void fb_hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Each lowercase hex digit's value plus one, 0 for any other byte. A table:
 * digests are random, so a branch on digit-or-letter mispredicts half the
 * time, which made this a tenth of parsing a manifest. */
static const unsigned char hex_plus1[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,
    ['6'] = 7,  ['7'] = 8,  ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12,
    ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

int fb_sha256_from_hex(const char *hex, uint8_t out[FB_SHA256_LEN])
{
    if (!hex || strlen(hex) != FB_SHA256_HEX_LEN)
        return FB_ECORRUPT;
    unsigned bad = 0;
    for (size_t i = 0; i < FB_SHA256_LEN; i++) {
        unsigned hi = hex_plus1[(unsigned char)hex[2 * i]];
        unsigned lo = hex_plus1[(unsigned char)hex[2 * i + 1]];
        bad |= (hi == 0) | (lo == 0);
        out[i] = (uint8_t)((hi - 1) << 4 | (lo - 1));
    }
    return bad ? FB_ECORRUPT : 0;
}
