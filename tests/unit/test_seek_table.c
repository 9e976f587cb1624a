/* Tests of the seek table: encoding against the zstd seekable format byte by
 * byte, round trips in memory and through a file, the binary search at every
 * boundary, and rejection of each kind of hostile table. */
#include <stdbool.h>
#include <sys/stat.h>

#include "fb_seek_table.h"
#include "fbtest.h"

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* A fake archive: sum(c_size) filler bytes followed by the encoded table. */
static uint8_t *make_file(const fb_frame_entry *frames, size_t n, bool sums, size_t *len)
{
    uint8_t *table;
    size_t tlen;
    fb_error err;
    if (fb_seek_table_encode(frames, n, sums, &table, &tlen, &err) != 0)
        return NULL;
    size_t body = 0;
    for (size_t i = 0; i < n; i++)
        body += frames[i].c_size;
    uint8_t *file = malloc(body + tlen);
    memset(file, 0xAB, body);
    memcpy(file + body, table, tlen);
    free(table);
    *len = body + tlen;
    return file;
}

static int write_file(const char *path, const uint8_t *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, data, len);
    close(fd);
    return n == (ssize_t)len ? 0 : -1;
}

/* Parses data both in memory and through a file; both must agree. */
static int parse_both(const uint8_t *data, size_t len, fb_seek_table *t, fb_error *err)
{
    fb_seek_table t2;
    fb_seek_table_init(&t2);
    fb_error err2;
    int rc_mem = fb_seek_table_parse(data, len, "archive.tar.zst", t, err);
    char *dir = fbtest_tempdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/archive.tar.zst", dir);
    int rc_fd = -100;
    if (write_file(path, data, len) == 0) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        rc_fd = fb_seek_table_read_fd(fd, len, "archive.tar.zst", &t2, &err2);
        close(fd);
    }
    CHECK_EQ_INT(rc_mem, rc_fd);
    if (rc_mem == 0 && rc_fd == 0) {
        CHECK_EQ_INT(t->n_frames, t2.n_frames);
        CHECK(t->n_frames == 0 ||
              memcmp(t->frames, t2.frames, t->n_frames * sizeof *t->frames) == 0);
        CHECK_EQ_INT(t->d_size, t2.d_size);
        CHECK_EQ_INT(t->table_size, t2.table_size);
    } else if (rc_mem != 0 && rc_fd != 0) {
        CHECK(strcmp(err->message, err2.message) == 0);
    }
    fb_seek_table_fini(&t2);
    fbtest_rmtree(dir);
    return rc_mem;
}

static void test_encode_bytes_match_format(void)
{
    fb_frame_entry f[2] = {{.c_size = 0x11223344, .d_size = 0x55667788, .checksum = 0xA1B2C3D4},
                           {.c_size = 9, .d_size = 0, .checksum = 1}};
    uint8_t *out;
    size_t len;
    fb_error err;
    REQUIRE(fb_seek_table_encode(f, 2, true, &out, &len, &err) == 0);
    static const uint8_t expect[] = {
        0x5E, 0x2A, 0x4D, 0x18, /* skippable magic 0x184D2A5E */
        33, 0, 0, 0,            /* Frame_Size: 2 * 12 + 9 */
        0x44, 0x33, 0x22, 0x11, 0x88, 0x77, 0x66, 0x55, 0xD4, 0xC3, 0xB2, 0xA1,
        9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
        2, 0, 0, 0,             /* Number_Of_Frames */
        0x80,                   /* descriptor: checksum flag */
        0xB1, 0xEA, 0x92, 0x8F, /* seekable magic 0x8F92EAB1 */
    };
    CHECK_EQ_INT(len, sizeof expect);
    CHECK(len == sizeof expect && memcmp(out, expect, len) == 0);
    free(out);

    REQUIRE(fb_seek_table_encode(f, 1, false, &out, &len, &err) == 0);
    CHECK_EQ_INT(len, 8 + 8 + 9);
    CHECK_EQ_INT(out[4], 17);
    CHECK_EQ_INT(out[8 + 8 + 4], 0); /* descriptor without checksums */
    free(out);

    REQUIRE(fb_seek_table_encode(NULL, 0, false, &out, &len, &err) == 0);
    CHECK_EQ_INT(len, 17);
    free(out);

    CHECK_EQ_INT(fb_seek_table_encode(f, (size_t)FB_SEEK_FRAMES_MAX + 1, true, &out, &len, &err),
                 FB_EMISUSE);
    CHECK(out == NULL);
}

static void roundtrip(bool sums)
{
    enum { N = 200 };
    fb_frame_entry f[N];
    uint64_t seed = sums ? 7 : 8;
    for (size_t i = 0; i < N; i++) {
        f[i].d_size = (uint32_t)(fbtest_rand(&seed) % 100000);
        if (i % 17 == 0)
            f[i].d_size = 0;
        f[i].c_size = 13 + (uint32_t)(fbtest_rand(&seed) % (f[i].d_size / 2 + 1));
        f[i].checksum = (uint32_t)fbtest_rand(&seed);
    }
    size_t len;
    uint8_t *file = make_file(f, N, sums, &len);
    REQUIRE(file);
    fb_seek_table t;
    fb_seek_table_init(&t);
    fb_error err;
    int rc = parse_both(file, len, &t, &err);
    CHECK_EQ_INT(rc, 0);
    if (rc == 0) {
        CHECK_EQ_INT(t.n_frames, N);
        CHECK(t.has_checksums == sums);
        CHECK_EQ_INT(t.table_size, 8 + N * (sums ? 12 : 8) + 9);
        uint64_t c = 0, d = 0;
        for (size_t i = 0; i < N; i++) {
            CHECK_EQ_INT(t.frames[i].c_offset, c);
            CHECK_EQ_INT(t.frames[i].d_offset, d);
            CHECK_EQ_INT(t.frames[i].c_size, f[i].c_size);
            CHECK_EQ_INT(t.frames[i].d_size, f[i].d_size);
            CHECK_EQ_INT(t.frames[i].checksum, sums ? f[i].checksum : 0);
            c += f[i].c_size;
            d += f[i].d_size;
        }
        CHECK_EQ_INT(t.c_frames_size, c);
        CHECK_EQ_INT(t.d_size, d);
        CHECK_EQ_INT(c + t.table_size, len);
    }
    fb_seek_table_fini(&t);
    CHECK(t.frames == NULL && t.n_frames == 0);
    fb_seek_table_fini(&t); /* twice is harmless */
    free(file);
}

static void test_roundtrip_with_checksums(void)
{
    roundtrip(true);
}

static void test_roundtrip_without_checksums(void)
{
    roundtrip(false);
}

static void test_empty_table(void)
{
    size_t len;
    uint8_t *file = make_file(NULL, 0, true, &len);
    REQUIRE(file);
    CHECK_EQ_INT(len, 17);
    fb_seek_table t;
    fb_seek_table_init(&t);
    fb_error err;
    CHECK_EQ_INT(parse_both(file, len, &t, &err), 0);
    CHECK_EQ_INT(t.n_frames, 0);
    CHECK_EQ_INT(t.d_size, 0);
    CHECK_EQ_INT(fb_seek_table_find(&t, 0), 0);
    fb_seek_table_fini(&t);
    free(file);
}

static void test_find_every_boundary(void)
{
    /* Empty frames at the start, in the middle (several in a row) and at the end. */
    static const uint32_t dsz[] = {0, 5, 1, 0, 0, 7, 100, 0, 3, 1, 0};
    enum { N = sizeof dsz / sizeof dsz[0] };
    fb_frame_entry f[N];
    for (size_t i = 0; i < N; i++)
        f[i] = (fb_frame_entry){.c_size = 20, .d_size = dsz[i]};
    size_t len;
    uint8_t *file = make_file(f, N, false, &len);
    REQUIRE(file);
    fb_seek_table t;
    fb_seek_table_init(&t);
    fb_error err;
    REQUIRE(fb_seek_table_parse(file, len, "a", &t, &err) == 0);
    free(file);
    CHECK_EQ_INT(t.d_size, 117);
    for (uint64_t off = 0; off < t.d_size + 3; off++) {
        size_t expect = N;
        for (size_t i = 0; i < N; i++)
            if (off >= t.frames[i].d_offset && off < t.frames[i].d_offset + t.frames[i].d_size)
                expect = i;
        CHECK_EQ_INT(fb_seek_table_find(&t, off), expect);
    }
    for (size_t i = 0; i < N; i++) {
        if (!dsz[i])
            continue;
        CHECK_EQ_INT(fb_seek_table_find(&t, t.frames[i].d_offset), i);
        CHECK_EQ_INT(fb_seek_table_find(&t, t.frames[i].d_offset + dsz[i] - 1), i);
    }
    CHECK_EQ_INT(fb_seek_table_find(&t, UINT64_MAX), N);
    fb_seek_table_fini(&t);

    /* A large table: every first and last byte of each frame. */
    enum { M = 5000 };
    fb_frame_entry *g = calloc(M, sizeof *g);
    for (size_t i = 0; i < M; i++)
        g[i] = (fb_frame_entry){.c_size = 9, .d_size = (uint32_t)(1 + i % 13)};
    file = make_file(g, M, true, &len);
    free(g);
    REQUIRE(file);
    REQUIRE(fb_seek_table_parse(file, len, "a", &t, &err) == 0);
    free(file);
    for (size_t i = 0; i < M; i++) {
        CHECK_EQ_INT(fb_seek_table_find(&t, t.frames[i].d_offset), i);
        CHECK_EQ_INT(fb_seek_table_find(&t, t.frames[i].d_offset + t.frames[i].d_size - 1), i);
    }
    CHECK_EQ_INT(fb_seek_table_find(&t, t.d_size), M);
    fb_seek_table_fini(&t);
}

/* Expects parse (memory and fd) to fail with FB_ECORRUPT and a message that
 * names the archive and contains reason. */
static void expect_corrupt(const uint8_t *data, size_t len, const char *reason, int line)
{
    fb_seek_table t;
    fb_seek_table_init(&t);
    fb_error err;
    fb_error_clear(&err);
    int rc = parse_both(data, len, &t, &err);
    if (rc != FB_ECORRUPT || !strstr(err.message, "archive.tar.zst") ||
        !strstr(err.message, reason)) {
        fprintf(stderr, "line %d: rc %d, message \"%s\", expected \"%s\"\n", line, rc,
                err.message, reason);
        fbtest_failures++;
    }
    CHECK(t.frames == NULL && t.n_frames == 0);
    fb_seek_table_fini(&t);
}

#define EXPECT_CORRUPT(data, len, reason) expect_corrupt(data, len, reason, __LINE__)

static void test_corrupt_tables(void)
{
    fb_frame_entry f[4] = {{.c_size = 30, .d_size = 100, .checksum = 1},
                           {.c_size = 40, .d_size = 200, .checksum = 2},
                           {.c_size = 20, .d_size = 50, .checksum = 3},
                           {.c_size = 10, .d_size = 0, .checksum = 4}};
    size_t len;
    uint8_t *good = make_file(f, 4, true, &len);
    REQUIRE(good);
    size_t table_at = 100, footer_at = len - 9;
    uint8_t *b = malloc(len + 1);
    fb_seek_table t;
    fb_seek_table_init(&t);
    fb_error err;
    REQUIRE(parse_both(good, len, &t, &err) == 0);
    fb_seek_table_fini(&t);

    memcpy(b, good, len);
    b[len - 1] ^= 1;
    EXPECT_CORRUPT(b, len, "bad seekable magic");

    memcpy(b, good, len);
    b[table_at] ^= 1;
    EXPECT_CORRUPT(b, len, "bad skippable frame magic");

    for (int bit = 2; bit <= 6; bit++) {
        memcpy(b, good, len);
        b[footer_at + 4] |= (uint8_t)(1u << bit);
        EXPECT_CORRUPT(b, len, "reserved descriptor bits");
    }

    memcpy(b, good, len);
    put32(b + footer_at, FB_SEEK_FRAMES_MAX + 1);
    EXPECT_CORRUPT(b, len, "more than the");
    put32(b + footer_at, UINT32_MAX);
    EXPECT_CORRUPT(b, len, "more than the");

    memcpy(b, good, len);
    put32(b + footer_at, 100); /* fits the limit but not the file */
    EXPECT_CORRUPT(b, len, "frames need");

    /* The table fits, but not the minimal frames it would describe. */
    fb_frame_entry *many = calloc(60, sizeof *many);
    for (size_t i = 0; i < 60; i++)
        many[i] = (fb_frame_entry){.c_size = 9, .d_size = 1};
    size_t mlen;
    uint8_t *m = make_file(many, 60, true, &mlen);
    free(many);
    REQUIRE(m);
    /* 60 frames of 9 bytes + a 737-byte table = 1277 bytes. A 61-entry
     * table (749 bytes) still fits, but 61 frames of at least 9 bytes do not. */
    CHECK_EQ_INT(mlen, 1277);
    put32(m + mlen - 9, 61);
    EXPECT_CORRUPT(m, mlen, "61 frames cannot fit in 1277 bytes");
    put32(m + mlen - 9, 200); /* a 2417-byte table does not fit at all */
    EXPECT_CORRUPT(m, mlen, "200 frames need 2417 bytes");
    free(m);

    memcpy(b, good, len);
    put32(b + footer_at, 3); /* the table would start inside the entries */
    EXPECT_CORRUPT(b, len, "bad skippable frame magic");

    memcpy(b, good, len);
    put32(b + table_at + 4, 4 * 12 + 9 + 1);
    EXPECT_CORRUPT(b, len, "does not match");

    memcpy(b, good, len);
    b[footer_at + 4] = 0; /* claims no checksums: entries misread, sizes no longer fit */
    EXPECT_CORRUPT(b, len, "seek table");

    /* Sizes not summing to the file size: one byte more or less before the table. */
    b[0] = 0;
    memcpy(b + 1, good, len);
    EXPECT_CORRUPT(b, len + 1, "!= file size");
    EXPECT_CORRUPT(good + 1, len - 1, "!= file size");
    memcpy(b, good, len);
    put32(b + table_at + 8, 29);
    EXPECT_CORRUPT(b, len, "!= file size");
    memcpy(b, good, len);
    put32(b + table_at + 8 + 12, 0xFFFFFFF0u); /* huge c_size: past the end */
    put32(b + table_at + 8 + 12 + 4, 0x03000000u);
    EXPECT_CORRUPT(b, len, "seek table: frame");

    /* Truncated: the table itself cut, and files too short to hold any table. */
    EXPECT_CORRUPT(good, len - 1, "seek table");
    EXPECT_CORRUPT(good + len - 16, 16, "too short");
    EXPECT_CORRUPT(good, 0, "too short");

    memcpy(b, good, len);
    put32(b + table_at + 8 + 12 * 3, 0);
    EXPECT_CORRUPT(b, len, "frame 3 compressed size 0");
    memcpy(b, good, len);
    put32(b + table_at + 8 + 12 * 3, 8);
    EXPECT_CORRUPT(b, len, "frame 3 compressed size 8 is smaller");

    memcpy(b, good, len);
    put32(b + table_at + 8 + 12 + 4, FB_FRAME_DSIZE_MAX + 1);
    EXPECT_CORRUPT(b, len, "frame 1 decompressed size 67108865 exceeds");
    put32(b + table_at + 8 + 12 + 4, FB_FRAME_DSIZE_MAX); /* the cap itself is allowed */
    REQUIRE(parse_both(b, len, &t, &err) == 0);
    CHECK_EQ_INT(t.frames[1].d_size, FB_FRAME_DSIZE_MAX);
    fb_seek_table_fini(&t);

    free(b);
    free(good);

    /* A compressed size no zstd frame could have for its content. */
    fb_frame_entry big[1] = {{.c_size = 100000, .d_size = 10}};
    good = make_file(big, 1, false, &len);
    REQUIRE(good);
    EXPECT_CORRUPT(good, len, "frame 0 compressed size 100000 is impossible");
    free(good);
}

/* Decompressed totals beyond 2^32 must be summed in 64 bits. */
static void test_large_totals(void)
{
    enum { N = 100 };
    fb_frame_entry *f = calloc(N, sizeof *f);
    for (size_t i = 0; i < N; i++)
        f[i] = (fb_frame_entry){.c_size = 9, .d_size = FB_FRAME_DSIZE_MAX};
    size_t len;
    uint8_t *file = make_file(f, N, false, &len);
    free(f);
    REQUIRE(file);
    fb_seek_table t;
    fb_seek_table_init(&t);
    fb_error err;
    REQUIRE(fb_seek_table_parse(file, len, "a", &t, &err) == 0);
    CHECK_EQ_INT(t.d_size, (uint64_t)N * FB_FRAME_DSIZE_MAX);
    CHECK_EQ_INT(t.frames[N - 1].d_offset, (uint64_t)(N - 1) * FB_FRAME_DSIZE_MAX);
    CHECK_EQ_INT(fb_seek_table_find(&t, (uint64_t)70 * FB_FRAME_DSIZE_MAX + 5), 70);
    fb_seek_table_fini(&t);
    free(file);
}

static void test_read_fd_short_file(void)
{
    /* file_size larger than the file really is: the read must fail, not
     * return stale bytes. */
    fb_frame_entry f[1] = {{.c_size = 20, .d_size = 10}};
    size_t len;
    uint8_t *file = make_file(f, 1, true, &len);
    REQUIRE(file);
    char *dir = fbtest_tempdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/archive.tar.zst", dir);
    REQUIRE(write_file(path, file, len) == 0);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    fb_seek_table t;
    fb_seek_table_init(&t);
    fb_error err;
    CHECK_EQ_INT(fb_seek_table_read_fd(fd, len + 5, "archive.tar.zst", &t, &err), FB_ECORRUPT);
    CHECK(strstr(err.message, "archive.tar.zst") != NULL);
    CHECK_EQ_INT(fb_seek_table_read_fd(fd, len, "archive.tar.zst", &t, &err), 0);
    fb_seek_table_fini(&t);
    close(fd);
    free(file);
    fbtest_rmtree(dir);
}

int main(void)
{
    RUN_TEST(test_encode_bytes_match_format);
    RUN_TEST(test_roundtrip_with_checksums);
    RUN_TEST(test_roundtrip_without_checksums);
    RUN_TEST(test_empty_table);
    RUN_TEST(test_find_every_boundary);
    RUN_TEST(test_corrupt_tables);
    RUN_TEST(test_large_totals);
    RUN_TEST(test_read_fd_short_file);
    FBTEST_EXIT();
}
