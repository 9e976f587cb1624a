/* SHA-256 and its hex form (core/base/hash.c): a known digest, the hex
 * round trip, and every byte that is not a lowercase hex digit refused in
 * every place of the 64; XXH64's and XXH3-128's known values, one-shot and
 * streamed. */
#include "fb_hash.h"
#include "fbtest.h"

static void test_known_digest(void)
{
    uint8_t d[FB_SHA256_LEN];
    char hex[FB_SHA256_HEX_LEN + 1];
    fb_error err;
    fb_sha256_prepare();
    REQUIRE(fb_sha256_buffer("abc", 3, d, &err) == 0);
    fb_hex_encode(d, sizeof d, hex);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
}

/* Values from xxhsum -H1 (xxHash's own tool). */
static void test_xxh64_known_values(void)
{
    CHECK(fb_xxh64_buffer("", 0) == 0xef46db3751d8e999ULL);
    CHECK(fb_xxh64_buffer("abc", 3) == 0x44bc2cf5ad770999ULL);
    unsigned char big[768];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)i;
    CHECK(fb_xxh64_buffer(big, sizeof big) == 0x8e03c838c596036fULL);
    /* Streamed in uneven pieces: the same value. */
    fb_xxh64 h;
    fb_error err;
    REQUIRE(fb_xxh64_init(&h, &err) == 0);
    for (size_t at = 0, step = 1; at < sizeof big; at += step, step = step * 3 % 97 + 1)
        fb_xxh64_update(&h, big + at, at + step <= sizeof big ? step : sizeof big - at);
    CHECK(fb_xxh64_digest(&h) == 0x8e03c838c596036fULL);
    fb_xxh64_fini(&h);
    fb_xxh64_fini(&h); /* a second fini is harmless */
}

static void xxh128_hex(const void *p, size_t n, char hex[2 * FB_XXH128_LEN + 1])
{
    uint8_t d[FB_XXH128_LEN];
    fb_xxh128_buffer(p, n, d);
    fb_hex_encode(d, sizeof d, hex);
}

#define XXH128_BIG "a9ee10cbf43517e44066a57f4496584a"

/* Values from xxhsum -H2, which prints the canonical (big-endian) form. */
static void test_xxh128_known_values(void)
{
    char hex[2 * FB_XXH128_LEN + 1];
    xxh128_hex("", 0, hex);
    CHECK(strcmp(hex, "99aa06d3014798d86001c324468d497f") == 0);
    xxh128_hex("abc", 3, hex);
    CHECK(strcmp(hex, "06b05ab6733a618578af5f94892f3950") == 0);
    unsigned char big[768];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)i;
    xxh128_hex(big, sizeof big, hex);
    CHECK(strcmp(hex, XXH128_BIG) == 0);
    /* Streamed in uneven pieces, twice through one state: the same value. */
    fb_xxh128 h = {0};
    fb_error err;
    REQUIRE(fb_xxh128_init(&h, &err) == 0);
    for (int turn = 0; turn < 2; turn++) {
        fb_xxh128_update(&h, "junk", 4);
        fb_xxh128_reset(&h);
        for (size_t at = 0, step = 1; at < sizeof big; at += step, step = step * 3 % 97 + 1)
            fb_xxh128_update(&h, big + at, at + step <= sizeof big ? step : sizeof big - at);
        uint8_t d[FB_XXH128_LEN];
        fb_xxh128_digest(&h, d);
        fb_hex_encode(d, sizeof d, hex);
        CHECK(strcmp(hex, XXH128_BIG) == 0);
    }
    fb_xxh128_fini(&h);
    fb_xxh128_fini(&h); /* a second fini is harmless */
}

static void test_hex_round_trip_and_refusals(void)
{
    uint8_t in[FB_SHA256_LEN], out[FB_SHA256_LEN];
    char hex[FB_SHA256_HEX_LEN + 1];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (uint8_t)(i * 37 + 11);
    fb_hex_encode(in, sizeof in, hex);
    REQUIRE(fb_sha256_from_hex(hex, out) == 0);
    CHECK(memcmp(in, out, sizeof in) == 0);
    /* All sixteen digits in both halves of a byte. */
    for (unsigned v = 0; v < 256; v++) {
        memset(in, (int)v, sizeof in);
        fb_hex_encode(in, sizeof in, hex);
        CHECK(fb_sha256_from_hex(hex, out) == 0 && out[5] == v);
    }
    /* Every other byte value, at the first, a middle and the last place. */
    const size_t places[] = {0, 33, FB_SHA256_HEX_LEN - 1};
    int accepted = 0;
    for (unsigned c = 1; c < 256; c++) {
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))
            continue;
        for (size_t p = 0; p < sizeof places / sizeof places[0]; p++) {
            fb_hex_encode(in, sizeof in, hex);
            hex[places[p]] = (char)c;
            accepted += fb_sha256_from_hex(hex, out) == 0;
        }
    }
    CHECK_EQ_INT(accepted, 0);
    fb_hex_encode(in, sizeof in, hex);
    hex[63] = '\0';
    CHECK_EQ_INT(fb_sha256_from_hex(hex, out), FB_ECORRUPT);
    CHECK_EQ_INT(fb_sha256_from_hex(NULL, out), FB_ECORRUPT);
    char longer[FB_SHA256_HEX_LEN + 2];
    fb_hex_encode(in, sizeof in, longer);
    strcat(longer, "0");
    CHECK_EQ_INT(fb_sha256_from_hex(longer, out), FB_ECORRUPT);
}

int main(void)
{
    RUN_TEST(test_known_digest);
    RUN_TEST(test_xxh64_known_values);
    RUN_TEST(test_xxh128_known_values);
    RUN_TEST(test_hex_round_trip_and_refusals);
    FBTEST_EXIT();
}
