/* Tests of the archive reader on archives built here frame by frame
 * (ZSTD_compress2 + fb_seek_table_encode, independent of the writer):
 * random-range reads against the source, every kind of damaged frame, the
 * window cap, many threads on one reader, cache behaviour, and the
 * sequential stream with its whole-file SHA-256. */
#include <pthread.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <zstd.h>

#include "fb_archive_reader.h"
#include "fb_archive_writer.h"
#include "fb_hash.h"
#include "fbtest.h"
#include "frame_cache_i.h"
#include "frame_proof_i.h"

#define NAME "archive.tar.zst"

/* ---- building archives ---- */

typedef struct builder {
    uint8_t *data;
    size_t len, cap;
    fb_frame_entry *frames;
    size_t n, frames_cap;
} builder;

static void append(builder *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->data = realloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Appends compressed bytes as one seek-table entry claiming d_size. */
static void add_raw(builder *b, const uint8_t *c, size_t clen, uint32_t d_size)
{
    if (b->n == b->frames_cap) {
        b->frames_cap = b->frames_cap ? b->frames_cap * 2 : 16;
        b->frames = realloc(b->frames, b->frames_cap * sizeof *b->frames);
    }
    b->frames[b->n++] = (fb_frame_entry){
        .c_size = (uint32_t)clen, .d_size = d_size, .checksum = clen >= 4 ? le32(c + clen - 4) : 0};
    append(b, c, clen);
}

/* One zstd frame of src with a content checksum (and content size unless
 * no_size), as the writer makes them. */
static uint8_t *compress_frame(const uint8_t *src, size_t len, bool no_size, size_t *clen)
{
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 3);
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    if (no_size)
        ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0);
    size_t cap = ZSTD_compressBound(len);
    uint8_t *out = malloc(cap);
    size_t n = ZSTD_compress2(c, out, cap, src, len);
    ZSTD_freeCCtx(c);
    if (ZSTD_isError(n)) {
        fprintf(stderr, "ZSTD_compress2: %s\n", ZSTD_getErrorName(n));
        exit(2);
    }
    *clen = n;
    return out;
}

static void add_frame(builder *b, const uint8_t *src, size_t len)
{
    size_t clen;
    uint8_t *c = compress_frame(src, len, false, &clen);
    add_raw(b, c, clen, (uint32_t)len);
    free(c);
}

/* Writes frames + seek table to path; returns the file size. */
static size_t finish(builder *b, bool sums, const char *path)
{
    uint8_t *table;
    size_t tlen;
    fb_error err;
    if (fb_seek_table_encode(b->frames, b->n, sums, &table, &tlen, &err) != 0) {
        fprintf(stderr, "encode: %s\n", err.message);
        exit(2);
    }
    append(b, table, tlen);
    free(table);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, b->data, b->len) != (ssize_t)b->len) {
        perror(path);
        exit(2);
    }
    close(fd);
    size_t len = b->len;
    free(b->data);
    free(b->frames);
    memset(b, 0, sizeof *b);
    return len;
}

/* The standard fixture: SRC_LEN bytes, alternating compressible and random
 * stretches, in FRAME-byte frames (the last one shorter). */
enum { SRC_LEN = 2 * 1024 * 1024 + 12345, FRAME = 64 * 1024 };

static uint8_t *make_source(void)
{
    uint8_t *src = malloc(SRC_LEN);
    for (size_t off = 0, k = 0; off < SRC_LEN; off += 50000, k++) {
        size_t n = SRC_LEN - off < 50000 ? SRC_LEN - off : 50000;
        fbtest_fill(src + off, n, 100 + k, (int)(k % 2));
    }
    return src;
}

static size_t build_standard(const uint8_t *src, bool sums, const char *path)
{
    builder b = {0};
    for (size_t off = 0; off < SRC_LEN; off += FRAME)
        add_frame(&b, src + off, SRC_LEN - off < FRAME ? SRC_LEN - off : FRAME);
    return finish(&b, sums, path);
}

static char *path_in(const char *dir, const char *name)
{
    char *p = malloc(4200);
    snprintf(p, 4200, "%s/%s", dir, name);
    return p;
}

static fb_archive_reader *open_reader(const char *path, fb_frame_cache *cache)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    fb_archive_reader *r = NULL;
    fb_error err;
    if (fd < 0 || fb_archive_reader_open(fd, cache, NAME, &r, &err) != 0) {
        fprintf(stderr, "open %s: %s\n", path, err.message);
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    return r;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    fstat(fd, &st);
    uint8_t *p = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, p + got, (size_t)st.st_size - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    *len = got;
    return p;
}

static void spit(const char *path, const uint8_t *p, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, p, len) != (ssize_t)len)
        exit(2);
    close(fd);
}

/* Reads [off, off+len) and compares with src; returns 0 when right. */
static int check_range(fb_archive_reader *r, const uint8_t *src, uint64_t src_len, uint64_t off,
                       size_t len, uint8_t *buf)
{
    size_t got = (size_t)-1;
    fb_error err;
    int rc = fb_archive_reader_pread(r, buf, len, off, &got, &err);
    if (rc != 0) {
        fprintf(stderr, "pread %zu@%llu: %s\n", len, (unsigned long long)off, err.message);
        return -1;
    }
    size_t expect = off >= src_len ? 0 : (src_len - off < len ? (size_t)(src_len - off) : len);
    if (got != expect) {
        fprintf(stderr, "pread %zu@%llu: got %zu bytes, expected %zu\n", len,
                (unsigned long long)off, got, expect);
        return -1;
    }
    if (expect && memcmp(buf, src + off, expect) != 0) {
        fprintf(stderr, "pread %zu@%llu: wrong bytes\n", len, (unsigned long long)off);
        return -1;
    }
    return 0;
}

static size_t random_len(uint64_t *seed)
{
    switch (fbtest_rand(seed) % 5) {
    case 0: return 0;
    case 1: return (size_t)(fbtest_rand(seed) % 100);
    case 2: return (size_t)(fbtest_rand(seed) % 5000);
    case 3: return (size_t)(fbtest_rand(seed) % 70000);
    default: return (size_t)(fbtest_rand(seed) % 300000); /* spans several frames */
    }
}

/* ---- tests ---- */

static void test_open_and_sizes(void)
{
    char *dir = fbtest_tempdir(), *path = path_in(dir, NAME);
    uint8_t *src = make_source();
    size_t fsize = build_standard(src, true, path);
    fb_archive_reader *r = open_reader(path, NULL);
    REQUIRE(r);
    CHECK_EQ_INT(fb_archive_reader_uncompressed_size(r), SRC_LEN);
    CHECK_EQ_INT(fb_archive_reader_file_size(r), fsize);
    const fb_seek_table *t = fb_archive_reader_seek_table(r);
    CHECK_EQ_INT(t->n_frames, (SRC_LEN + FRAME - 1) / FRAME);
    CHECK(t->has_checksums);
    fb_archive_reader_free(r);
    fb_archive_reader_free(NULL);
    free(src);
    free(path);
    fbtest_rmtree(dir);
}

/* The zstd CLI must accept our layout (frames + skippable seek table). */
static void test_zstd_cli_reads_archive(void)
{
    if (system("command -v zstd >/dev/null 2>&1") != 0) {
        fprintf(stderr, "zstd not installed: skipped\n");
        return;
    }
    char *dir = fbtest_tempdir(), *path = path_in(dir, NAME), *out = path_in(dir, "out");
    uint8_t *src = make_source();
    build_standard(src, true, path);
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "zstd -q -t '%s' && zstd -q -d -c '%s' > '%s'", path, path, out);
    CHECK_EQ_INT(system(cmd), 0);
    size_t n;
    uint8_t *back = slurp(out, &n);
    CHECK_EQ_INT(n, SRC_LEN);
    CHECK(n == SRC_LEN && memcmp(back, src, n) == 0);
    free(back);
    free(src);
    free(out);
    free(path);
    fbtest_rmtree(dir);
}

static void random_preads(fb_frame_cache *cache, bool sums)
{
    char *dir = fbtest_tempdir(), *path = path_in(dir, NAME);
    uint8_t *src = make_source();
    build_standard(src, sums, path);
    fb_archive_reader *r = open_reader(path, cache);
    REQUIRE(r);
    uint8_t *buf = malloc(SRC_LEN + 100);
    int bad = 0;
    uint64_t seed = sums ? 42 : 43;
    for (int n = 0; n < 3000 && bad < 5; n++) {
        uint64_t off = fbtest_rand(&seed) % (SRC_LEN + 100);
        if (check_range(r, src, SRC_LEN, off, random_len(&seed), buf))
            bad++;
    }
    /* Edges: every frame boundary, ends, zero length, past the end. */
    for (uint64_t b = 0; b <= SRC_LEN + FRAME; b += FRAME) {
        for (int d = -2; d <= 2; d++) {
            uint64_t off = (uint64_t)((int64_t)b + d);
            if ((int64_t)b + d < 0)
                continue;
            bad += check_range(r, src, SRC_LEN, off, 1, buf) != 0;
            bad += check_range(r, src, SRC_LEN, off, 3, buf) != 0;
            bad += check_range(r, src, SRC_LEN, off, FRAME + 7, buf) != 0;
        }
    }
    bad += check_range(r, src, SRC_LEN, 0, SRC_LEN, buf) != 0;
    bad += check_range(r, src, SRC_LEN, 0, SRC_LEN + 100, buf) != 0;
    bad += check_range(r, src, SRC_LEN, 0, 0, buf) != 0;
    bad += check_range(r, src, SRC_LEN, SRC_LEN - 1, 100, buf) != 0;
    bad += check_range(r, src, SRC_LEN, SRC_LEN, 100, buf) != 0;
    bad += check_range(r, src, SRC_LEN, SRC_LEN + 1000000, 100, buf) != 0;
    bad += check_range(r, src, SRC_LEN, UINT64_MAX, 100, buf) != 0;
    bad += check_range(r, src, SRC_LEN, UINT64_MAX - 5, 1000, buf) != 0;
    CHECK_EQ_INT(bad, 0);
    fb_archive_reader_free(r);
    free(buf);
    free(src);
    free(path);
    fbtest_rmtree(dir);
}

static void test_random_preads_small_cache(void)
{
    fb_frame_cache *c;
    fb_error err;
    REQUIRE(fb_frame_cache_new(256 * 1024, &c, &err) == 0);
    random_preads(c, true);
    fb_frame_cache_stats st;
    fb_frame_cache_get_stats(c, &st);
    CHECK(st.hits > 0);
    CHECK(st.evictions > 0);
    CHECK_EQ_INT(st.bytes, 0); /* the reader forgot its frames when freed */
    fb_frame_cache_free(c);
}

static void test_random_preads_no_cache(void)
{
    random_preads(NULL, false);
}

static void test_random_preads_cache_nothing(void)
{
    fb_frame_cache *c;
    fb_error err;
    REQUIRE(fb_frame_cache_new(0, &c, &err) == 0);
    random_preads(c, true);
    fb_frame_cache_free(c);
}

/* Sequential 4 KiB reads: each frame is decoded once, the rest are hits. */
static void test_sequential_cache_stats(void)
{
    char *dir = fbtest_tempdir(), *path = path_in(dir, NAME);
    uint8_t *src = make_source();
    build_standard(src, true, path);
    fb_frame_cache *c;
    fb_error err;
    REQUIRE(fb_frame_cache_new(3 * FRAME, &c, &err) == 0);
    REQUIRE(fb_archive_prepare(c, &err) == 0);
    fb_archive_reader *r = open_reader(path, c);
    REQUIRE(r);
    uint8_t buf[4096];
    int bad = 0, reads = 0;
    for (uint64_t off = 0; off < SRC_LEN; off += sizeof buf, reads++) {
        bad += check_range(r, src, SRC_LEN, off, sizeof buf, buf) != 0;
        fb_frame_cache_stats st;
        fb_frame_cache_get_stats(c, &st);
        if (st.bytes > st.max_bytes)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    fb_frame_cache_stats st;
    fb_frame_cache_get_stats(c, &st);
    size_t frames = (SRC_LEN + FRAME - 1) / FRAME;
    CHECK_EQ_INT(st.misses, frames);
    CHECK_EQ_INT(st.hits + st.misses, reads); /* FRAME is a multiple of the read size */
    CHECK_EQ_INT(st.evictions, frames - 3);
    CHECK_EQ_INT(st.bytes, 2 * FRAME + SRC_LEN % FRAME); /* the last frame is short */
    fb_archive_reader_free(r);
    fb_frame_cache_get_stats(c, &st);
    CHECK_EQ_INT(st.bytes, 0);
    /* One reader, one thread: every decode took the prepared context from
     * the cache and gave it back there, for the next decode of any reader. */
    ZSTD_DCtx *d = fb_frame_cache_dctx_take(c);
    CHECK(d != NULL);
    CHECK(fb_frame_cache_dctx_take(c) == NULL);
    ZSTD_freeDCtx(d);
    fb_frame_cache_free(c);
    free(src);
    free(path);
    fbtest_rmtree(dir);
}

/* pread over frame k must fail with a message naming the archive and the
 * frame; other frames still read right. Returns nothing; records failures. */
static void expect_frame_corrupt(const char *path, const uint8_t *src, size_t k,
                                 fb_frame_cache *cache, const char *reason)
{
    fb_archive_reader *r = open_reader(path, cache);
    REQUIRE(r);
    const fb_seek_table *t = fb_archive_reader_seek_table(r);
    uint8_t *buf = malloc(3 * FRAME);
    char frame_name[64];
    snprintf(frame_name, sizeof frame_name, "frame %zu", k);
    for (int attempt = 0; attempt < 2; attempt++) { /* a failure is not cached */
        size_t got = 7;
        fb_error err;
        fb_error_clear(&err);
        int rc = fb_archive_reader_pread(r, buf, 10, t->frames[k].d_offset + 100, &got, &err);
        CHECK_EQ_INT(rc, FB_ECORRUPT);
        CHECK_EQ_INT(got, 0);
        if (!strstr(err.message, NAME) || !strstr(err.message, frame_name) ||
            (reason && !strstr(err.message, reason))) {
            fprintf(stderr, "message \"%s\" lacks \"%s\" / \"%s\"\n", err.message, frame_name,
                    reason ? reason : "");
            fbtest_failures++;
        }
    }
    if (k > 0) {
        size_t got;
        fb_error err;
        /* A range that starts in a good frame and runs into the bad one. */
        CHECK_EQ_INT(fb_archive_reader_pread(r, buf, FRAME, t->frames[k].d_offset - 10, &got,
                                             &err),
                     FB_ECORRUPT);
        CHECK_EQ_INT(check_range(r, src, SRC_LEN, t->frames[k - 1].d_offset, FRAME, buf), 0);
    }
    if (k + 1 < t->n_frames)
        CHECK_EQ_INT(check_range(r, src, SRC_LEN, t->frames[k + 1].d_offset + 5,
                                 t->frames[k + 1].d_size - 5, buf), 0);
    CHECK_EQ_INT(check_range(r, src, SRC_LEN, 3, 1000, buf), 0);
    fb_archive_reader_free(r);
    free(buf);
}

static void test_flipped_byte(void)
{
    char *dir = fbtest_tempdir(), *path = path_in(dir, NAME);
    uint8_t *src = make_source();
    fb_frame_cache *c;
    fb_error err;
    REQUIRE(fb_frame_cache_new(1 << 20, &c, &err) == 0);
    for (int sums = 0; sums <= 1; sums++) {
        size_t fsize = build_standard(src, sums, path);
        size_t n;
        uint8_t *good = slurp(path, &n);
        REQUIRE(n == fsize);
        fb_seek_table t;
        fb_seek_table_init(&t);
        REQUIRE(fb_seek_table_parse(good, n, NAME, &t, &err) == 0);
        /* Frame 1 holds random data (raw blocks), frame 5 compressible data. */
        size_t ks[] = {1, 5, t.n_frames - 1};
        for (size_t i = 0; i < 3; i++) {
            size_t k = ks[i];
            const fb_frame_entry *f = &t.frames[k];
            uint8_t *bad = malloc(n);
            memcpy(bad, good, n);
            bad[f->c_offset + f->c_size / 2] ^= 0x10;
            spit(path, bad, n);
            expect_frame_corrupt(path, src, k, c, NULL);
            expect_frame_corrupt(path, src, k, NULL, NULL);
            /* The frame's own checksum: caught by the seek table's copy, or by zstd. */
            memcpy(bad, good, n);
            bad[f->c_offset + f->c_size - 1] ^= 0x01;
            spit(path, bad, n);
            expect_frame_corrupt(path, src, k, c, sums ? "differs from the seek table" : NULL);
            free(bad);
        }
        /* Every byte of one small frame flipped in turn: an error or the
         * right bytes, never wrong bytes. */
        const fb_frame_entry *f = &t.frames[t.n_frames - 1];
        uint8_t *buf = malloc(f->d_size);
        int wrong = 0, errors = 0;
        for (uint32_t pos = 0; pos < f->c_size; pos += 1 + pos / 64) {
            uint8_t *bad = malloc(n);
            memcpy(bad, good, n);
            bad[f->c_offset + pos] ^= 0x04;
            spit(path, bad, n);
            free(bad);
            fb_archive_reader *r = open_reader(path, NULL);
            if (!r) {
                wrong++;
                continue;
            }
            size_t got;
            int rc = fb_archive_reader_pread(r, buf, f->d_size, f->d_offset, &got, &err);
            if (rc == FB_ECORRUPT)
                errors++;
            else if (rc != 0 || got != f->d_size || memcmp(buf, src + f->d_offset, got) != 0)
                wrong++;
            fb_archive_reader_free(r);
        }
        CHECK_EQ_INT(wrong, 0);
        CHECK(errors > 0);
        free(buf);
        fb_seek_table_fini(&t);
        free(good);
    }
    fb_frame_cache_stats st;
    fb_frame_cache_get_stats(c, &st);
    CHECK_EQ_INT(st.bytes, 0);
    fb_frame_cache_free(c);
    free(src);
    free(path);
    fbtest_rmtree(dir);
}

/* Builds an archive whose frame 1 is the given raw bytes claiming d_size,
 * between two good frames of src. */
static void build_with_frame1(const uint8_t *src, const uint8_t *c, size_t clen, uint32_t d_size,
                              bool sums, const char *path)
{
    builder b = {0};
    add_frame(&b, src, FRAME);
    add_raw(&b, c, clen, d_size);
    add_frame(&b, src + 2 * FRAME, FRAME);
    finish(&b, sums, path);
}

/* The stream returns frame 0, then fails on frame 1 with reason. */
static void expect_stream_frame1_corrupt(const char *path, const uint8_t *src, const char *reason)
{
    fb_archive_reader *r = open_reader(path, NULL);
    REQUIRE(r);
    fb_archive_stream *s;
    fb_error err;
    REQUIRE(fb_archive_stream_new(r, &s, &err) == 0);
    const uint8_t *data;
    size_t len;
    CHECK_EQ_INT(fb_archive_stream_next(s, &data, &len, &err), 0);
    CHECK(len == FRAME && memcmp(data, src, FRAME) == 0);
    fb_error_clear(&err);
    int rc = fb_archive_stream_next(s, &data, &len, &err);
    if (rc != FB_ECORRUPT || !strstr(err.message, NAME ": frame 1: ") ||
        !strstr(err.message, reason)) {
        fprintf(stderr, "stream: rc %d message \"%s\", expected \"%s\"\n", rc, err.message,
                reason);
        fbtest_failures++;
    }
    fb_archive_stream_free(s);
    fb_archive_reader_free(r);
}

/* later_readable: frame 1's damage leaves its size and extent provable
 * (frame_proof_i.h), so frame 2 still reads; otherwise no offset past frame
 * 1 can be mapped and frame 2 is refused too, naming frame 1. */
static void expect_frame1_corrupt(const char *path, const uint8_t *src, const char *reason,
                                  bool later_readable)
{
    expect_stream_frame1_corrupt(path, src, reason);
    fb_archive_reader *r = open_reader(path, NULL);
    REQUIRE(r);
    const fb_seek_table *t = fb_archive_reader_seek_table(r);
    uint8_t *buf = malloc(FRAME + 10);
    size_t got;
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_archive_reader_pread(r, buf, 1, t->frames[1].d_offset, &got, &err);
    if (rc != FB_ECORRUPT || !strstr(err.message, NAME ": frame 1: ") ||
        !strstr(err.message, reason)) {
        fprintf(stderr, "rc %d message \"%s\", expected \"%s\"\n", rc, err.message, reason);
        fbtest_failures++;
    }
    /* Frame 0 still reads; the frame after 1 only when 1 places it. */
    CHECK_EQ_INT(fb_archive_reader_pread(r, buf, FRAME, 0, &got, &err), 0);
    CHECK(got == FRAME && memcmp(buf, src, FRAME) == 0);
    fb_error_clear(&err);
    rc = fb_archive_reader_pread(r, buf, FRAME, t->frames[2].d_offset, &got, &err);
    if (later_readable) {
        CHECK_EQ_INT(rc, 0);
        CHECK(got == FRAME && memcmp(buf, src + 2 * FRAME, FRAME) == 0);
    } else {
        CHECK_EQ_INT(rc, FB_ECORRUPT);
        CHECK(strstr(err.message, NAME ": frame 1: ") != NULL);
    }
    fb_archive_reader_free(r);
    free(buf);
}

static void test_wrong_declared_size(void)
{
    char *dir = fbtest_tempdir(), *path = path_in(dir, NAME);
    uint8_t *src = make_source();
    const uint8_t *d = src + FRAME;
    for (int no_size = 0; no_size <= 1; no_size++) {
        size_t clen;
        uint8_t *c = compress_frame(d, FRAME, no_size, &clen);
        /* Sanity: the untouched frame reads, unless it does not declare
         * its size (which our writer always does). */
        build_with_frame1(src, c, clen, FRAME, true, path);
        fb_archive_reader *r = open_reader(path, NULL);
        REQUIRE(r);
        uint8_t *buf = malloc(3 * FRAME);
        CHECK_EQ_INT(check_range(r, src, 3 * FRAME, 0, 3 * FRAME, buf),
                     no_size ? FB_ECORRUPT : 0);
        fb_archive_reader_free(r);
        free(buf);

        /* Without a declared content size nothing proves the table's, so
         * nothing after the frame can be placed. */
        const char *undeclared = "the frame header does not declare its content size";
        build_with_frame1(src, c, clen, FRAME + 1, true, path);
        expect_frame1_corrupt(path, src, no_size ? undeclared
                                                 : "header says 65536 bytes, seek table says 65537",
                              false);
        build_with_frame1(src, c, clen, FRAME - 1, true, path);
        expect_frame1_corrupt(path, src, no_size ? undeclared
                                                 : "header says 65536 bytes, seek table says 65535",
                              false);
        build_with_frame1(src, c, clen, FRAME - 1000, true, path);
        expect_frame1_corrupt(path, src, no_size ? undeclared
                                                 : "header says 65536 bytes, seek table says 64536",
                              false);
        free(c);
    }
    free(src);
    free(path);
    fbtest_rmtree(dir);
}

/* Gives a frame compressed without a content size a 4-byte
 * Frame_Content_Size field (the reader requires one); the frame stays
 * valid, the decoder checks the size. Frees c. */
static uint8_t *declare_content_size(uint8_t *c, size_t *clen, size_t content)
{
    if ((c[4] & 0xC3) != 0 || (c[4] & 0x20) != 0) { /* want no size, no dict id, a window byte */
        fprintf(stderr, "declare_content_size: unexpected frame header 0x%02x\n", c[4]);
        exit(2);
    }
    uint8_t *out = malloc(*clen + 4);
    memcpy(out, c, 6);
    out[4] |= 0x80; /* FCS_Field_Size 4 */
    for (int k = 0; k < 4; k++)
        out[6 + k] = (uint8_t)(content >> (8 * k));
    memcpy(out + 10, c + 6, *clen - 6);
    *clen += 4;
    free(c);
    return out;
}

/* A zstd frame whose header asks for a 2^28 window, made cheaply: streaming
 * compression with no size known keeps the window the parameter asks for
 * (the size is then put in the header by hand). */
static uint8_t *compress_with_window(const uint8_t *src, size_t len, int window_log,
                                     size_t *clen)
{
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, window_log);
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    size_t cap = ZSTD_compressBound(len) + 64;
    uint8_t *out = malloc(cap);
    ZSTD_outBuffer o = {out, cap, 0};
    ZSTD_inBuffer i = {src, len, 0};
    size_t rc = ZSTD_compressStream2(c, &o, &i, ZSTD_e_continue);
    if (!ZSTD_isError(rc))
        rc = ZSTD_compressStream2(c, &o, &i, ZSTD_e_end);
    ZSTD_freeCCtx(c);
    if (ZSTD_isError(rc) || rc != 0)
        exit(2);
    *clen = o.pos;
    return declare_content_size(out, clen, len);
}

static void test_window_too_large(void)
{
    char *dir = fbtest_tempdir(), *path = path_in(dir, NAME);
    uint8_t *src = make_source();
    size_t clen;
    uint8_t *c = compress_with_window(src + FRAME, FRAME, 28, &clen);
    CHECK_EQ_INT(c[4] & 0x20, 0);         /* not single segment: a window descriptor */
    CHECK_EQ_INT(c[5], (28 - 10) << 3);   /* which says 2^28 */
    build_with_frame1(src, c, clen, FRAME, true, path);
    expect_frame1_corrupt(path, src, "window of 268435456 bytes exceeds the 2^27 limit", true);
    free(c);

    /* 2^27 itself is allowed; 2^27 + 2^24 (mantissa 1) is not. */
    c = compress_with_window(src + FRAME, FRAME, 27, &clen);
    CHECK_EQ_INT(c[5], (27 - 10) << 3);
    build_with_frame1(src, c, clen, FRAME, true, path);
    fb_archive_reader *r = open_reader(path, NULL);
    REQUIRE(r);
    uint8_t *buf = malloc(3 * FRAME);
    CHECK_EQ_INT(check_range(r, src, 3 * FRAME, 0, 3 * FRAME, buf), 0);
    fb_archive_reader_free(r);
    free(buf);
    c[5] |= 1;
    build_with_frame1(src, c, clen, FRAME, true, path);
    expect_frame1_corrupt(path, src, "window of 150994944 bytes exceeds", true);
    free(c);
    free(src);
    free(path);
    fbtest_rmtree(dir);
}

static void test_frame_not_exactly_one_zstd_frame(void)
{
    char *dir = fbtest_tempdir(), *path = path_in(dir, NAME);
    uint8_t *src = make_source();
    size_t l1, l2;
    uint8_t *c1 = compress_frame(src + FRAME, FRAME / 2, false, &l1);
    uint8_t *c2 = compress_frame(src + FRAME + FRAME / 2, FRAME / 2, false, &l2);
    /* Two zstd frames under one seek table entry. */
    uint8_t *two = malloc(l1 + l2);
    memcpy(two, c1, l1);
    memcpy(two + l1, c2, l2);
    build_with_frame1(src, two, l1 + l2, FRAME, true, path);
    expect_frame1_corrupt(path, src, "seek table says", false);
    /* A frame cut short (the entry claims fewer bytes than the frame has). */
    build_with_frame1(src, c1, l1 - 1, FRAME / 2, false, path);
    expect_frame1_corrupt(path, src, "", false);
    /* A skippable frame where a data frame should be. */
    uint8_t skip[16] = {0x50, 0x2A, 0x4D, 0x18, 8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8};
    build_with_frame1(src, skip, sizeof skip, 8, false, path);
    expect_frame1_corrupt(path, src, "not a zstd frame", false);
    /* Even claiming no content: pread never needs it, the stream rejects it. */
    build_with_frame1(src, skip, sizeof skip, 0, false, path);
    expect_stream_frame1_corrupt(path, src, "not a zstd frame");
    /* A frame without a content checksum. */
    size_t clen = ZSTD_compressBound(FRAME);
    uint8_t *plain = malloc(clen);
    clen = ZSTD_compress(plain, clen, src + FRAME, FRAME, 3);
    REQUIRE(!ZSTD_isError(clen));
    build_with_frame1(src, plain, clen, FRAME, false, path);
    expect_frame1_corrupt(path, src, "no content checksum", true);
    free(plain);
    free(two);
    free(c1);
    free(c2);
    free(src);
    free(path);
    fbtest_rmtree(dir);
}

/* Frames placed by a seek table that lies about earlier frames: the sizes
 * of frame 0 decide where every later byte is, so no later offset may be
 * served until frame 0 is proven (issue 7: served shifted bytes before). */
static void test_lying_table_never_shifts_bytes(void)
{
    char *dir = fbtest_tempdir(), *path = path_in(dir, NAME);
    uint8_t *src = make_source();
    size_t n_frames = (SRC_LEN + FRAME - 1) / FRAME;
    uint8_t *buf = malloc(FRAME);
    fb_error err;
    size_t got;
    for (int how = 0; how < 3; how++) {
        builder b = {0};
        size_t c0, c1;
        /* Case 2 needs frames 0 and 1 small enough together to pass for
         * one frame's compressed size. */
        fbtest_fill(src, 2 * FRAME, 77, how == 2);
        uint8_t *f0 = compress_frame(src, FRAME, false, &c0);
        uint8_t *f1 = compress_frame(src + FRAME, FRAME, false, &c1);
        size_t first = 1;
        if (how == 0) {
            /* frame 0 claims 4096 more bytes than it holds */
            add_raw(&b, f0, c0, FRAME + 4096);
        } else if (how == 1) {
            /* frame 0 claims 4096 fewer */
            add_raw(&b, f0, c0, FRAME - 4096);
        } else {
            /* frames 0 and 1 under one entry that claims frame 0's content:
             * the next entry then lands on frame 2, whose size and
             * checksum are those of a good frame */
            uint8_t *both = malloc(c0 + c1);
            memcpy(both, f0, c0);
            memcpy(both + c0, f1, c1);
            add_raw(&b, both, c0 + c1, FRAME);
            free(both);
            first = 2;
        }
        for (size_t i = first; i < n_frames; i++) {
            size_t off = i * FRAME;
            add_frame(&b, src + off, SRC_LEN - off < FRAME ? SRC_LEN - off : FRAME);
        }
        finish(&b, true, path);
        free(f0);
        free(f1);
        /* Straight to a late offset first, then everywhere after frame 0:
         * an error or the genuine bytes at that stream offset, never others. */
        fb_archive_reader *r = open_reader(path, NULL);
        REQUIRE(r);
        const fb_seek_table *t = fb_archive_reader_seek_table(r);
        int refused = 0;
        uint64_t probes[] = {t->frames[t->n_frames / 2].d_offset + 5, t->frames[1].d_offset,
                             t->frames[1].d_offset + 100, t->frames[t->n_frames - 1].d_offset};
        for (size_t k = 0; k < sizeof probes / sizeof probes[0]; k++) {
            fb_error_clear(&err);
            int rc = fb_archive_reader_pread(r, buf, 1000, probes[k], &got, &err);
            if (rc == 0 && (probes[k] + got > SRC_LEN ||
                            memcmp(buf, src + probes[k], got) != 0)) {
                fprintf(stderr, "case %d: wrong bytes at %llu\n", how,
                        (unsigned long long)probes[k]);
                fbtest_failures++;
            }
            if (rc == FB_ECORRUPT && strstr(err.message, NAME ": frame 0: "))
                refused++;
        }
        CHECK_EQ_INT(refused, 4);
        /* Frame 0's own bytes: the decoder refuses a frame that does not
         * hold what its entry says. */
        CHECK_EQ_INT(fb_archive_reader_pread(r, buf, 100, 0, &got, &err), FB_ECORRUPT);
        fb_archive_reader_free(r);
    }
    free(buf);
    free(src);
    free(path);
    fbtest_rmtree(dir);
}

/* Frame 0's header and its seek-table entry both claim one byte more than
 * it holds: each frame's header agrees with the table, so only decoding
 * frame 0 tells. A plain read of frame 1 is placed one byte off (the limit
 * fb_archive_reader.h states); a read anchored at the start decodes frame 0
 * first and refuses. */
static void test_header_and_table_lying_together(void)
{
    char *dir = fbtest_tempdir(), *path = path_in(dir, NAME);
    uint8_t *src = make_source();
    size_t clen;
    uint8_t *c = compress_with_window(src, FRAME, 17, &clen);
    /* declare_content_size put a 4-byte Frame_Content_Size at 6..9 */
    uint32_t lie = FRAME + 1;
    for (int k = 0; k < 4; k++)
        c[6 + k] = (uint8_t)(lie >> (8 * k));
    builder b = {0};
    add_raw(&b, c, clen, lie);
    add_frame(&b, src + FRAME, FRAME);
    add_frame(&b, src + 2 * FRAME, FRAME);
    finish(&b, true, path);
    free(c);
    fb_archive_reader *r = open_reader(path, NULL);
    REQUIRE(r);
    uint8_t buf[100];
    size_t got;
    fb_error err;
    /* plain: proven by the headers, served shifted by one */
    CHECK_EQ_INT(fb_archive_reader_pread(r, buf, sizeof buf, FRAME + 1, &got, &err), 0);
    CHECK(got == sizeof buf && memcmp(buf, src + FRAME, sizeof buf) == 0);
    /* anchored at 0: frame 0 must decode first, and it does not */
    fb_error_clear(&err);
    CHECK_EQ_INT(fb_archive_reader_pread_anchored(r, buf, sizeof buf, FRAME + 1, 0, &got, &err),
                 FB_ECORRUPT);
    CHECK(strstr(err.message, NAME ": frame 0: ") != NULL);
    /* anchored inside frame 1 (a proven tar header there): frame 1 on is fine */
    CHECK_EQ_INT(fb_archive_reader_pread_anchored(r, buf, sizeof buf, 2 * FRAME + 1, FRAME + 1,
                                                  &got, &err),
                 0);
    CHECK_EQ_INT(fb_archive_reader_pread_anchored(r, buf, sizeof buf, 5, 9, &got, &err),
                 FB_EMISUSE);
    fb_archive_reader_free(r);
    free(src);
    free(path);
    fbtest_rmtree(dir);
}

/* A proof carries over to a later reader of the very same file, and to no
 * other file, nor to the same file once it was written to. */
static void test_proof_carries_over_only_to_the_same_file(void)
{
    char *dir = fbtest_tempdir(), *path = path_in(dir, NAME), *other = path_in(dir, "b.zst");
    uint8_t *src = make_source();
    build_standard(src, true, path);
    build_standard(src, true, other);
    fb_archive_reader *a = open_reader(path, NULL);
    REQUIRE(a);
    const fb_seek_table *t = fb_archive_reader_seek_table(a);
    size_t n = t->n_frames;
    fb_archive_proof p;
    fb_archive_reader_get_proof(a, &p);
    CHECK_EQ_INT(p.frames, 0); /* nothing proven before a read */
    uint8_t byte;
    size_t got;
    fb_error err;
    CHECK_EQ_INT(fb_archive_reader_pread(a, &byte, 1, SRC_LEN - 1, &got, &err), 0);
    fb_archive_reader_get_proof(a, &p);
    CHECK_EQ_INT(p.frames, n);
    fb_archive_reader_free(a);

    fb_archive_proof q;
    fb_archive_reader *b = open_reader(path, NULL);
    fb_archive_reader_adopt_proof(b, &p);
    fb_archive_reader_get_proof(b, &q);
    CHECK_EQ_INT(q.frames, n);
    fb_archive_proof wrong = p;
    wrong.table_digest ^= 1; /* a table that changed without a write */
    fb_archive_reader_free(b);
    b = open_reader(path, NULL);
    fb_archive_reader_adopt_proof(b, &wrong);
    fb_archive_reader_get_proof(b, &q);
    CHECK_EQ_INT(q.frames, 0);
    fb_archive_reader_free(b);

    b = open_reader(other, NULL); /* same bytes, another inode */
    fb_archive_reader_adopt_proof(b, &p);
    fb_archive_reader_get_proof(b, &q);
    CHECK_EQ_INT(q.frames, 0);
    fb_archive_reader_free(b);

    /* Written to (same bytes back): the ctime moved, the proof is stale. */
    struct timespec pause = {0, 20 * 1000 * 1000};
    nanosleep(&pause, NULL);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    uint8_t first;
    int rfd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(pread(rfd, &first, 1, 0) == 1);
    close(rfd);
    CHECK(pwrite(fd, &first, 1, 0) == 1);
    close(fd);
    b = open_reader(path, NULL);
    fb_archive_reader_adopt_proof(b, &p);
    fb_archive_reader_get_proof(b, &q);
    CHECK_EQ_INT(q.frames, 0);
    /* and it proves again on demand */
    CHECK_EQ_INT(fb_archive_reader_pread(b, &byte, 1, SRC_LEN - 1, &got, &err), 0);
    CHECK(got == 1 && byte == src[SRC_LEN - 1]);
    fb_archive_reader_free(b);
    free(src);
    free(path);
    free(other);
    fbtest_rmtree(dir);
}

/* Kept frames serve the next reader of the same file from the cache, and
 * only that reader: one of another file decodes (and checks) its own. */
static void test_kept_frames_carry_over_only_with_the_proof(void)
{
    char *dir = fbtest_tempdir(), *path = path_in(dir, NAME), *other = path_in(dir, "b.zst");
    uint8_t *src = make_source();
    build_standard(src, true, path);
    build_standard(src, true, other);
    fb_frame_cache *cache = NULL;
    fb_error err;
    REQUIRE(fb_frame_cache_new(64u << 20, &cache, &err) == 0);
    uint8_t buf[100];
    size_t got;
    fb_frame_cache_stats st0, st1;

    fb_archive_reader *a = open_reader(path, cache);
    REQUIRE(a);
    CHECK_EQ_INT(fb_archive_reader_pread(a, buf, sizeof buf, 3 * FRAME + 7, &got, &err), 0);
    fb_archive_proof p;
    fb_archive_reader_keep_frames(a);
    fb_archive_reader_get_proof(a, &p);
    CHECK(p.frames_kept);
    fb_archive_reader_free(a);
    fb_frame_cache_get_stats(cache, &st0);
    CHECK(st0.bytes > 0); /* still cached after the reader went */

    fb_archive_reader *b = open_reader(path, cache);
    REQUIRE(b);
    fb_archive_reader_adopt_proof(b, &p);
    CHECK_EQ_INT(fb_archive_reader_pread(b, buf, sizeof buf, 3 * FRAME + 7, &got, &err), 0);
    CHECK(got == sizeof buf && memcmp(buf, src + 3 * FRAME + 7, sizeof buf) == 0);
    fb_frame_cache_get_stats(cache, &st1);
    CHECK(st1.hits == st0.hits + 1 && st1.misses == st0.misses);
    fb_archive_reader_free(b); /* not kept: the key's frames go with it */
    fb_frame_cache_get_stats(cache, &st1);
    CHECK(st1.bytes == 0);

    a = open_reader(path, cache);
    REQUIRE(a);
    CHECK_EQ_INT(fb_archive_reader_pread(a, buf, sizeof buf, 3 * FRAME + 7, &got, &err), 0);
    fb_archive_reader_keep_frames(a);
    fb_archive_reader_get_proof(a, &p);
    fb_archive_reader_free(a);
    b = open_reader(other, cache); /* same bytes, another inode */
    REQUIRE(b);
    fb_archive_reader_adopt_proof(b, &p);
    fb_frame_cache_get_stats(cache, &st0);
    CHECK_EQ_INT(fb_archive_reader_pread(b, buf, sizeof buf, 3 * FRAME + 7, &got, &err), 0);
    fb_frame_cache_get_stats(cache, &st1);
    CHECK(st1.misses > st0.misses);
    fb_archive_reader_free(b);
    fb_frame_cache_forget(cache, p.frame_key);
    fb_frame_cache_free(cache);
    free(src);
    free(path);
    free(other);
    fbtest_rmtree(dir);
}

static void test_open_rejects(void)
{
    char *dir = fbtest_tempdir(), *path = path_in(dir, NAME);
    fb_archive_reader *r = NULL;
    fb_error err;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK_EQ_INT(fb_archive_reader_open(fd, NULL, NAME, &r, &err), FB_ECORRUPT);
    CHECK(strstr(err.message, "not a regular file") != NULL);
    CHECK(r == NULL);
    CHECK(fcntl(fd, F_GETFD) != -1); /* still the caller's */
    close(fd);

    spit(path, (const uint8_t *)"", 0);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK_EQ_INT(fb_archive_reader_open(fd, NULL, NAME, &r, &err), FB_ECORRUPT);
    CHECK(strstr(err.message, NAME ": seek table") != NULL);
    close(fd);

    /* A plain zstd stream without a seek table. */
    uint8_t *src = make_source();
    size_t clen;
    uint8_t *c = compress_frame(src, FRAME, false, &clen);
    spit(path, c, clen);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK_EQ_INT(fb_archive_reader_open(fd, NULL, NAME, &r, &err), FB_ECORRUPT);
    CHECK(strstr(err.message, "not a seekable zstd archive") != NULL);
    close(fd);

    /* A good archive truncated, as F24 does. */
    size_t fsize = build_standard(src, true, path);
    CHECK(truncate(path, (off_t)fsize / 2) == 0);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK_EQ_INT(fb_archive_reader_open(fd, NULL, NAME, &r, &err), FB_ECORRUPT);
    close(fd);
    free(c);
    free(src);
    free(path);
    fbtest_rmtree(dir);
}

/* The file shrinks after the reader validated it: reads of the lost part
 * fail, they do not return zeros. */
static void test_truncated_after_open(void)
{
    char *dir = fbtest_tempdir(), *path = path_in(dir, NAME);
    uint8_t *src = make_source();
    size_t fsize = build_standard(src, true, path);
    fb_archive_reader *r = open_reader(path, NULL);
    REQUIRE(r);
    CHECK(truncate(path, (off_t)fsize / 2) == 0);
    uint8_t *buf = malloc(FRAME);
    size_t got;
    fb_error err;
    CHECK_EQ_INT(fb_archive_reader_pread(r, buf, 100, SRC_LEN - 200, &got, &err), FB_ECORRUPT);
    CHECK(strstr(err.message, "file ends at offset") != NULL);
    CHECK_EQ_INT(check_range(r, src, SRC_LEN, 10, 1000, buf), 0);
    fb_archive_stream *s;
    REQUIRE(fb_archive_stream_new(r, &s, &err) == 0);
    const uint8_t *data;
    size_t len;
    int rc;
    while ((rc = fb_archive_stream_next(s, &data, &len, &err)) == 0 && len > 0)
        ;
    CHECK_EQ_INT(rc, FB_ECORRUPT);
    fb_archive_stream_free(s);
    fb_archive_reader_free(r);
    free(buf);
    free(src);
    free(path);
    fbtest_rmtree(dir);
}

/* Empty frames (legal in the format) are skipped by pread and the stream;
 * an archive of no frames at all reads as empty. */
static void test_empty_frames(void)
{
    char *dir = fbtest_tempdir(), *path = path_in(dir, NAME);
    uint8_t *src = make_source();
    builder b = {0};
    add_frame(&b, src, 0);
    add_frame(&b, src, 1000);
    add_frame(&b, src + 1000, 0);
    add_frame(&b, src + 1000, 0);
    add_frame(&b, src + 1000, 3000);
    add_frame(&b, src + 4000, 0);
    finish(&b, true, path);
    fb_archive_reader *r = open_reader(path, NULL);
    REQUIRE(r);
    CHECK_EQ_INT(fb_archive_reader_uncompressed_size(r), 4000);
    uint8_t buf[5000];
    for (uint64_t off = 0; off < 4010; off += 97)
        CHECK_EQ_INT(check_range(r, src, 4000, off, 1500, buf), 0);
    CHECK_EQ_INT(check_range(r, src, 4000, 999, 2, buf), 0);
    fb_archive_stream *s;
    fb_error err;
    REQUIRE(fb_archive_stream_new(r, &s, &err) == 0);
    const uint8_t *data;
    size_t len;
    CHECK_EQ_INT(fb_archive_stream_next(s, &data, &len, &err), 0);
    CHECK(len == 1000 && memcmp(data, src, 1000) == 0);
    CHECK_EQ_INT(fb_archive_stream_next(s, &data, &len, &err), 0);
    CHECK(len == 3000 && memcmp(data, src + 1000, 3000) == 0);
    CHECK_EQ_INT(fb_archive_stream_next(s, &data, &len, &err), 0);
    CHECK_EQ_INT(len, 0);
    fb_archive_stream_free(s);
    fb_archive_reader_free(r);

    finish(&b, false, path); /* no frames */
    r = open_reader(path, NULL);
    REQUIRE(r);
    CHECK_EQ_INT(fb_archive_reader_uncompressed_size(r), 0);
    CHECK_EQ_INT(check_range(r, src, 0, 0, 100, buf), 0);
    REQUIRE(fb_archive_stream_new(r, &s, &err) == 0);
    CHECK_EQ_INT(fb_archive_stream_next(s, &data, &len, &err), 0);
    CHECK_EQ_INT(len, 0);
    uint8_t got[FB_SHA256_LEN], want[FB_SHA256_LEN];
    CHECK_EQ_INT(fb_archive_stream_file_sha256(s, got, &err), 0);
    size_t n;
    uint8_t *file = slurp(path, &n);
    CHECK_EQ_INT(n, 17);
    fb_sha256_buffer(file, n, want, &err);
    CHECK(memcmp(got, want, FB_SHA256_LEN) == 0);
    free(file);
    fb_archive_stream_free(s);
    fb_archive_reader_free(r);
    free(src);
    free(path);
    fbtest_rmtree(dir);
}

struct reader_worker {
    fb_archive_reader *r;
    const uint8_t *src;
    uint64_t seed;
    int bad;
};

static void *reader_worker_main(void *arg)
{
    struct reader_worker *w = arg;
    uint8_t *buf = malloc(300000);
    for (int n = 0; n < 300; n++) {
        uint64_t off = fbtest_rand(&w->seed) % (SRC_LEN + 10);
        if (check_range(w->r, w->src, SRC_LEN, off, random_len(&w->seed), buf))
            w->bad++;
    }
    free(buf);
    return NULL;
}

static void concurrent(fb_frame_cache *cache)
{
    char *dir = fbtest_tempdir(), *path = path_in(dir, NAME);
    uint8_t *src = make_source();
    build_standard(src, true, path);
    fb_archive_reader *r = open_reader(path, cache);
    REQUIRE(r);
    enum { T = 8 };
    pthread_t th[T];
    struct reader_worker w[T];
    for (int i = 0; i < T; i++) {
        w[i] = (struct reader_worker){.r = r, .src = src, .seed = 1000 + (uint64_t)i};
        REQUIRE(pthread_create(&th[i], NULL, reader_worker_main, &w[i]) == 0);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(w[i].bad, 0);
    }
    fb_archive_reader_free(r);
    free(src);
    free(path);
    fbtest_rmtree(dir);
}

static void test_concurrent_preads_small_cache(void)
{
    fb_frame_cache *c;
    fb_error err;
    REQUIRE(fb_frame_cache_new(200 * 1024, &c, &err) == 0);
    concurrent(c);
    fb_frame_cache_stats st;
    fb_frame_cache_get_stats(c, &st);
    CHECK(st.hits > 0);
    CHECK(st.evictions > 0);
    CHECK(st.bytes <= st.max_bytes);
    fb_frame_cache_free(c);
}

static void test_concurrent_preads_no_cache(void)
{
    concurrent(NULL);
}

/* Two readers on one cache never see each other's frames (same frame
 * indexes, different content). */
static void test_two_readers_share_cache(void)
{
    char *dir = fbtest_tempdir(), *pa = path_in(dir, "a.tar.zst"), *pb = path_in(dir, "b.tar.zst");
    uint8_t *src = make_source();
    uint8_t *rev = malloc(SRC_LEN);
    for (size_t i = 0; i < SRC_LEN; i++)
        rev[i] = src[SRC_LEN - 1 - i];
    build_standard(src, true, pa);
    build_standard(rev, true, pb);
    fb_frame_cache *c;
    fb_error err;
    REQUIRE(fb_frame_cache_new(1 << 20, &c, &err) == 0);
    fb_archive_reader *a = open_reader(pa, c), *b = open_reader(pb, c);
    REQUIRE(a && b);
    uint8_t *buf = malloc(FRAME * 2);
    for (uint64_t off = 0; off < 4 * FRAME; off += 1000) {
        CHECK_EQ_INT(check_range(a, src, SRC_LEN, off, 3000, buf), 0);
        CHECK_EQ_INT(check_range(b, rev, SRC_LEN, off, 3000, buf), 0);
    }
    fb_frame_cache_stats st;
    fb_frame_cache_get_stats(c, &st);
    CHECK_EQ_INT(st.bytes, 2 * 5 * FRAME);
    fb_archive_reader_free(a);
    fb_frame_cache_get_stats(c, &st);
    CHECK_EQ_INT(st.bytes, 5 * FRAME);
    CHECK_EQ_INT(check_range(b, rev, SRC_LEN, 10, 1000, buf), 0);
    fb_archive_reader_free(b);
    fb_frame_cache_free(c);
    free(buf);
    free(rev);
    free(src);
    free(pa);
    free(pb);
    fbtest_rmtree(dir);
}

static void test_stream(void)
{
    char *dir = fbtest_tempdir(), *path = path_in(dir, NAME);
    uint8_t *src = make_source();
    for (int sums = 0; sums <= 1; sums++) {
        size_t fsize = build_standard(src, sums, path);
        fb_frame_cache *c;
        fb_error err;
        REQUIRE(fb_frame_cache_new(1 << 20, &c, &err) == 0);
        fb_archive_reader *r = open_reader(path, c);
        REQUIRE(r);
        fb_archive_stream *s;
        REQUIRE(fb_archive_stream_new(r, &s, &err) == 0);
        uint8_t digest[FB_SHA256_LEN], want[FB_SHA256_LEN];
        CHECK_EQ_INT(fb_archive_stream_file_sha256(s, digest, &err), FB_EMISUSE);
        const uint8_t *data;
        size_t len, off = 0, frames = 0;
        int rc, wrong = 0;
        while ((rc = fb_archive_stream_next(s, &data, &len, &err)) == 0 && len > 0) {
            const fb_frame_entry *f = &fb_archive_reader_seek_table(r)->frames[frames];
            if (len != f->d_size || off + len > SRC_LEN || memcmp(data, src + off, len) != 0)
                wrong++;
            off += len;
            frames++;
            if (frames == 3) /* before the end, the file hash is not ready */
                CHECK_EQ_INT(fb_archive_stream_file_sha256(s, digest, &err), FB_EMISUSE);
        }
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(wrong, 0);
        CHECK_EQ_INT(off, SRC_LEN);
        CHECK_EQ_INT(frames, fb_archive_reader_seek_table(r)->n_frames);
        /* The end repeats. */
        CHECK_EQ_INT(fb_archive_stream_next(s, &data, &len, &err), 0);
        CHECK_EQ_INT(len, 0);
        CHECK_EQ_INT(fb_archive_stream_file_sha256(s, digest, &err), 0);
        size_t n;
        uint8_t *file = slurp(path, &n);
        CHECK_EQ_INT(n, fsize);
        fb_sha256_buffer(file, n, want, &err);
        CHECK(memcmp(digest, want, FB_SHA256_LEN) == 0);
        free(file);
        /* The stream bypasses the cache. */
        fb_frame_cache_stats st;
        fb_frame_cache_get_stats(c, &st);
        CHECK_EQ_INT(st.hits + st.misses, 0);
        fb_archive_stream_free(s);
        fb_archive_reader_free(r);
        fb_frame_cache_free(c);
    }
    /* Cross-check the digest against sha256sum when it is there. */
    if (system("command -v sha256sum >/dev/null 2>&1") == 0) {
        fb_archive_reader *r = open_reader(path, NULL);
        REQUIRE(r);
        fb_archive_stream *s;
        fb_error err;
        REQUIRE(fb_archive_stream_new(r, &s, &err) == 0);
        const uint8_t *data;
        size_t len;
        while (fb_archive_stream_next(s, &data, &len, &err) == 0 && len > 0)
            ;
        uint8_t digest[FB_SHA256_LEN];
        char hex[FB_SHA256_HEX_LEN + 1], cmd[8300], line[200] = "";
        CHECK_EQ_INT(fb_archive_stream_file_sha256(s, digest, &err), 0);
        fb_hex_encode(digest, FB_SHA256_LEN, hex);
        snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
        FILE *p = popen(cmd, "r");
        REQUIRE(p);
        CHECK(fgets(line, sizeof line, p) != NULL);
        pclose(p);
        CHECK(strncmp(line, hex, FB_SHA256_HEX_LEN) == 0);
        fb_archive_stream_free(s);
        fb_archive_reader_free(r);
    }
    free(src);
    free(path);
    fbtest_rmtree(dir);
}

static void test_stream_stops_at_corrupt_frame(void)
{
    char *dir = fbtest_tempdir(), *path = path_in(dir, NAME);
    uint8_t *src = make_source();
    size_t fsize = build_standard(src, true, path);
    size_t n;
    uint8_t *file = slurp(path, &n);
    REQUIRE(n == fsize);
    fb_seek_table t;
    fb_seek_table_init(&t);
    fb_error err;
    REQUIRE(fb_seek_table_parse(file, n, NAME, &t, &err) == 0);
    file[t.frames[4].c_offset + t.frames[4].c_size / 3] ^= 0xFF;
    spit(path, file, n);
    fb_archive_reader *r = open_reader(path, NULL);
    REQUIRE(r);
    fb_archive_stream *s;
    REQUIRE(fb_archive_stream_new(r, &s, &err) == 0);
    const uint8_t *data;
    size_t len, off = 0;
    int rc, good = 0;
    while ((rc = fb_archive_stream_next(s, &data, &len, &err)) == 0 && len > 0) {
        CHECK(memcmp(data, src + off, len) == 0);
        off += len;
        good++;
    }
    CHECK_EQ_INT(rc, FB_ECORRUPT);
    CHECK_EQ_INT(good, 4);
    CHECK(data == NULL && len == 0);
    CHECK(strstr(err.message, NAME ": frame 4: ") != NULL);
    CHECK_EQ_INT(fb_archive_stream_next(s, &data, &len, &err), FB_EMISUSE);
    uint8_t digest[FB_SHA256_LEN];
    CHECK_EQ_INT(fb_archive_stream_file_sha256(s, digest, &err), FB_EMISUSE);
    fb_archive_stream_free(s);
    fb_archive_reader_free(r);
    fb_seek_table_fini(&t);
    free(file);
    free(src);
    free(path);
    fbtest_rmtree(dir);
}

/* ---- archives made by fb_archive_writer ---- */

typedef struct written_file {
    uint8_t *data;
    size_t size;
    uint64_t offset;
} written_file;

/* Writes n files of the given sizes through the writer; fills files[].
 * Returns 0 or the writer's error code. */
static int write_with_writer(const char *dir, const char *archive, int level,
                             uint64_t frame_size, const size_t *sizes, size_t n,
                             written_file *files, fb_archive_summary *sum)
{
    fb_archive_writer_options o = {.level = level, .frame_size = frame_size, .threads = 2,
                                   .name = NAME};
    int afd = open(archive, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    fb_archive_writer *w = NULL;
    fb_error err;
    int rc = fb_archive_writer_new(afd, &o, &w, &err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        files[i].size = sizes[i];
        files[i].data = malloc(sizes[i] + 1);
        fbtest_fill(files[i].data, sizes[i], 77 + i, (int)(i % 2 == 0));
        char *srcp = path_in(dir, "src");
        spit(srcp, files[i].data, sizes[i]);
        int sfd = open(srcp, O_RDONLY | O_CLOEXEC);
        free(srcp);
        fb_entry_meta m = {.type = FB_ENTRY_FILE, .mode = 0644, .mtime = 1700000000,
                           .size = sizes[i]};
        char name[32];
        snprintf(name, sizeof name, "f%zu.bin", i);
        fb_archive_file_result res;
        rc = fb_archive_writer_add_file(w, name, &m, sfd, &res, &err);
        close(sfd);
        if (rc == 0)
            files[i].offset = res.offset;
    }
    if (rc == 0)
        rc = fb_archive_writer_finish(w, sum, &err);
    if (rc)
        fprintf(stderr, "writer: %s\n", err.message);
    fb_archive_writer_free(w);
    close(afd);
    return rc;
}

struct writer_worker {
    fb_archive_reader *r;
    const written_file *files;
    size_t n;
    uint64_t seed;
    int bad;
};

static void *writer_worker_main(void *arg)
{
    struct writer_worker *w = arg;
    for (int k = 0; k < 200; k++) {
        const written_file *f = &w->files[fbtest_rand(&w->seed) % w->n];
        size_t off = (size_t)(fbtest_rand(&w->seed) % f->size);
        size_t len = 1 + (size_t)(fbtest_rand(&w->seed) % (f->size - off));
        uint8_t *buf = malloc(len);
        size_t got;
        fb_error err;
        if (fb_archive_reader_pread(w->r, buf, len, f->offset + off, &got, &err) != 0 ||
            got != len || memcmp(buf, f->data + off, len) != 0)
            w->bad++;
        free(buf);
    }
    return NULL;
}

/* Many threads on a writer-made archive through a cache smaller than the
 * archive (test_archive.c covers the single-threaded, uncached round trip). */
static void test_writer_archive_threads_and_cache(void)
{
    char *dir = fbtest_tempdir(), *path = path_in(dir, NAME);
    static const size_t sizes[] = {1500000, 10000, 700000, 1, 300000};
    enum { N = sizeof sizes / sizeof sizes[0] };
    written_file files[N];
    memset(files, 0, sizeof files);
    fb_archive_summary sum;
    REQUIRE(write_with_writer(dir, path, 3, 64 * 1024, sizes, N, files, &sum) == 0);
    fb_frame_cache *c;
    fb_error err;
    REQUIRE(fb_frame_cache_new(160 * 1024, &c, &err) == 0);
    fb_archive_reader *r = open_reader(path, c);
    REQUIRE(r);
    CHECK_EQ_INT(fb_archive_reader_seek_table(r)->n_frames, sum.frames);
    CHECK(fb_archive_reader_seek_table(r)->has_checksums);
    enum { T = 8 };
    pthread_t th[T];
    struct writer_worker w[T];
    for (int i = 0; i < T; i++) {
        w[i] = (struct writer_worker){.r = r, .files = files, .n = N, .seed = 500 + (uint64_t)i};
        REQUIRE(pthread_create(&th[i], NULL, writer_worker_main, &w[i]) == 0);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(w[i].bad, 0);
    }
    fb_frame_cache_stats st;
    fb_frame_cache_get_stats(c, &st);
    CHECK(st.hits > 0 && st.evictions > 0 && st.bytes <= st.max_bytes);
    fb_archive_reader_free(r);
    fb_frame_cache_free(c);
    for (size_t i = 0; i < N; i++)
        free(files[i].data);
    free(path);
    fbtest_rmtree(dir);
}

/* The writer's strongest level and largest frames in this test still give
 * frames within the reader's window cap. */
static void test_writer_archive_level19(void)
{
    char *dir = fbtest_tempdir(), *path = path_in(dir, NAME);
    static const size_t sizes[] = {1200000};
    written_file files[1];
    memset(files, 0, sizeof files);
    fb_archive_summary sum;
    REQUIRE(write_with_writer(dir, path, 19, 1024 * 1024, sizes, 1, files, &sum) == 0);
    fb_archive_reader *r = open_reader(path, NULL);
    REQUIRE(r);
    uint8_t *buf = malloc(sizes[0]);
    size_t got;
    fb_error err;
    CHECK_EQ_INT(fb_archive_reader_pread(r, buf, sizes[0], files[0].offset, &got, &err), 0);
    CHECK(got == sizes[0] && memcmp(buf, files[0].data, got) == 0);
    fb_archive_stream *s;
    REQUIRE(fb_archive_stream_new(r, &s, &err) == 0);
    const uint8_t *data;
    size_t len, total = 0;
    int rc;
    while ((rc = fb_archive_stream_next(s, &data, &len, &err)) == 0 && len > 0)
        total += len;
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(total, sum.uncompressed_size);
    uint8_t digest[FB_SHA256_LEN];
    CHECK_EQ_INT(fb_archive_stream_file_sha256(s, digest, &err), 0);
    CHECK(memcmp(digest, sum.sha256, FB_SHA256_LEN) == 0);
    fb_archive_stream_free(s);
    fb_archive_reader_free(r);
    free(buf);
    free(files[0].data);
    free(path);
    fbtest_rmtree(dir);
}

/* Spans: the same bytes as a copying read, pinned while held (a frame
 * evicted meanwhile stays readable), and a read needing more spans than
 * given comes back short with every span used. */
static void test_spans(void)
{
    char *dir = fbtest_tempdir(), *path = path_in(dir, NAME);
    uint8_t *src = make_source();
    build_standard(src, true, path);
    fb_frame_cache *c;
    fb_error err;
    REQUIRE(fb_frame_cache_new(FRAME, &c, &err) == 0); /* one frame: every new one evicts */
    fb_archive_reader *r = open_reader(path, c);
    REQUIRE(r);
    fb_archive_span sp[4];
    size_t n = 0, got = 0;
    /* Inside frame 1. */
    REQUIRE(fb_archive_reader_pread_spans(r, 1000, FRAME + 10, 0, 0, sp, 4, &n, &got, &err) == 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(got, 1000);
    CHECK(memcmp(sp[0].data, src + FRAME + 10, 1000) == 0);
    /* Held across the eviction of its frame by a read of frame 5. */
    uint8_t buf[64];
    CHECK_EQ_INT(check_range(r, src, SRC_LEN, 5 * FRAME, sizeof buf, buf), 0);
    CHECK(memcmp(sp[0].data, src + FRAME + 10, 1000) == 0);
    fb_archive_spans_release(sp, n);
    CHECK(sp[0].data == NULL);
    /* Across three frames: three spans, in order. */
    REQUIRE(fb_archive_reader_pread_spans(r, 2 * FRAME, 2 * FRAME - 7, 0, 0, sp, 4, &n, &got, &err) ==
            0);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(got, 2 * FRAME);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(memcmp(sp[i].data, src + 2 * FRAME - 7 + at, sp[i].len) == 0);
        at += sp[i].len;
    }
    CHECK_EQ_INT(at, 2 * FRAME);
    fb_archive_spans_release(sp, n);
    /* Only one span allowed: short, that one span used. */
    REQUIRE(fb_archive_reader_pread_spans(r, 2 * FRAME, 2 * FRAME - 7, 0, 0, sp, 1, &n, &got, &err) ==
            0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(got, 7);
    fb_archive_spans_release(sp, n);
    /* Clipped at the end of the stream. */
    REQUIRE(fb_archive_reader_pread_spans(r, 4096, SRC_LEN - 100, 0, 0, sp, 4, &n, &got, &err) == 0);
    CHECK_EQ_INT(got, 100);
    CHECK(n == 1 && memcmp(sp[0].data, src + SRC_LEN - 100, 100) == 0);
    fb_archive_spans_release(sp, n);
    fb_archive_reader_free(r);
    fb_frame_cache_stats st;
    fb_frame_cache_get_stats(c, &st);
    CHECK_EQ_INT(st.bytes, 0);
    fb_frame_cache_free(c);
    free(src);
    free(path);
    fbtest_rmtree(dir);
}

static void count_job(void *owner)
{
    __atomic_add_fetch((int *)owner, 1, __ATOMIC_SEQ_CST);
}

/* Waits (bounded) until the cache holds `bytes`; returns its stats. */
static fb_frame_cache_stats wait_cached(fb_frame_cache *c, size_t bytes)
{
    fb_frame_cache_stats st;
    for (int i = 0; i < 2000; i++) {
        fb_frame_cache_get_stats(c, &st);
        if (st.bytes == bytes)
            break;
        usleep(1000);
    }
    return st;
}

/* The standard archive read through a 64-frame cache with a prefetcher,
 * in a fresh directory: what the prefetch tests share. */
typedef struct prefetch_fixture {
    char *dir, *path;
    uint8_t *src;
    fb_frame_cache *c;
    fb_frame_prefetcher *pf;
    fb_archive_reader *r;
} prefetch_fixture;

static bool prefetch_fixture_open(prefetch_fixture *x)
{
    fb_error err;
    x->dir = fbtest_tempdir();
    x->path = path_in(x->dir, NAME);
    x->src = make_source();
    build_standard(x->src, true, x->path);
    if (fb_frame_cache_new(64 * FRAME, &x->c, &err) != 0 ||
        fb_frame_prefetcher_new(&x->pf, &err) != 0 || !(x->r = open_reader(x->path, x->c)))
        return false;
    fb_archive_reader_set_prefetcher(x->r, x->pf);
    return true;
}

static void prefetch_fixture_close(prefetch_fixture *x)
{
    fb_archive_reader_free(x->r);
    fb_frame_prefetcher_free(x->pf);
    fb_frame_cache_free(x->c);
    free(x->src);
    free(x->path);
    fbtest_rmtree(x->dir);
}

/* A sequential reader with a prefetcher: the bytes are the same, the two
 * frames after the one it reads are decoded by the prefetcher (in the
 * cache before the reader gets there), one job at a time, and the frames
 * behind it are dropped. Reads a little out of order (as the kernel's
 * workers answer them) still count as sequential. Also the prefetcher
 * alone: a job runs, and one forgotten does not. */
static void test_prefetch(void)
{
    prefetch_fixture x = {0};
    REQUIRE(prefetch_fixture_open(&x));
    fb_frame_cache *c = x.c;
    fb_frame_prefetcher *pf = x.pf;
    fb_archive_reader *r = x.r;
    const uint8_t *src = x.src;
    fb_error err;
    uint8_t buf[FRAME / 4];
    /* The first read says nothing of a direction; the next ones, right
     * after it, make a sequential run, which asks for frame 1 once it
     * has read 64 KiB (a small file's read after its header asks for
     * nothing). */
    CHECK_EQ_INT(check_range(r, src, SRC_LEN, 0, sizeof buf, buf), 0);
    CHECK_EQ_INT(check_range(r, src, SRC_LEN, sizeof buf, sizeof buf, buf), 0);
    CHECK_EQ_INT(check_range(r, src, SRC_LEN, 2 * sizeof buf, sizeof buf, buf), 0);
    usleep(20000);
    fb_frame_cache_stats st;
    fb_frame_cache_get_stats(c, &st);
    CHECK_EQ_INT(st.bytes, FRAME);
    CHECK_EQ_INT(check_range(r, src, SRC_LEN, 3 * sizeof buf, sizeof buf, buf), 0);
    st = wait_cached(c, 2 * FRAME);
    CHECK_EQ_INT(st.bytes, 2 * FRAME);
    /* Lookups of frame 0 (the reader), of frame 1 (whether to ask for it). */
    CHECK_EQ_INT(st.misses, 2);
    /* The next read, frame 1 being there, asks for frame 2. */
    CHECK_EQ_INT(check_range(r, src, SRC_LEN, FRAME, sizeof buf, buf), 0);
    st = wait_cached(c, 3 * FRAME);
    CHECK_EQ_INT(st.bytes, 3 * FRAME);
    CHECK_EQ_INT(st.misses, 3);
    /* A read past the last one's end, then one before it: still the same
     * reader going forward (frames 1 and 2 cached, frame 3 asked for). */
    CHECK_EQ_INT(check_range(r, src, SRC_LEN, FRAME + 2 * sizeof buf, sizeof buf, buf), 0);
    CHECK_EQ_INT(check_range(r, src, SRC_LEN, FRAME + sizeof buf, sizeof buf, buf), 0);
    st = wait_cached(c, 4 * FRAME);
    CHECK_EQ_INT(st.bytes, 4 * FRAME);
    /* Reading on finds every frame cached, then the rest, all right. */
    for (uint64_t off = FRAME + 3 * sizeof buf; off < SRC_LEN; off += sizeof buf)
        CHECK_EQ_INT(check_range(r, src, SRC_LEN, off, sizeof buf, buf), 0);
    fb_frame_cache_get_stats(c, &st);
    CHECK(st.hits >= 3);
    /* The frames behind a sequential reader were dropped as it went: the
     * cache (room for 64) holds the last few, not the 33 it read. */
    CHECK(st.bytes <= 4 * FRAME);
    /* A read far from the last one is not sequential: nothing is asked. */
    fb_frame_cache_stats before = st;
    CHECK_EQ_INT(check_range(r, src, SRC_LEN, 8 * FRAME, sizeof buf, buf), 0);
    usleep(20000);
    fb_frame_cache_get_stats(c, &st);
    CHECK_EQ_INT(st.misses, before.misses + 1); /* frame 8 itself, no lookup of 9 */
    /* Proof reads (a member's headers and hash) are no sequential run,
     * however long: frames 12-14 are read, 15 is never looked up. */
    uint8_t *big = malloc(3 * FRAME / 2);
    REQUIRE(big);
    size_t got = 0;
    before = st;
    for (int k = 0; k < 2; k++) {
        uint64_t off = 12 * FRAME + (uint64_t)k * (3 * FRAME / 2);
        CHECK_EQ_INT(fb_archive_reader_pread_flags(r, big, 3 * FRAME / 2, off, off,
                                                   FB_ARCHIVE_READ_PROOF, &got, &err), 0);
        CHECK(got == 3 * FRAME / 2 && memcmp(big, src + off, got) == 0);
    }
    usleep(20000);
    fb_frame_cache_get_stats(c, &st);
    CHECK_EQ_INT(st.misses, before.misses + 3);
    free(big);

    int runs = 0;
    CHECK(fb_frame_prefetcher_enqueue(pf, &runs, count_job));
    fb_frame_prefetcher_forget(pf, &runs); /* queued or run: after this, nothing runs */
    int seen = __atomic_load_n(&runs, __ATOMIC_SEQ_CST);
    CHECK(seen == 0 || seen == 1);
    usleep(20000);
    CHECK_EQ_INT(__atomic_load_n(&runs, __ATOMIC_SEQ_CST), seen);
    int other = 0;
    CHECK(fb_frame_prefetcher_enqueue(pf, &other, count_job));
    for (int i = 0; i < 2000 && __atomic_load_n(&other, __ATOMIC_SEQ_CST) == 0; i++)
        usleep(1000);
    CHECK_EQ_INT(__atomic_load_n(&other, __ATOMIC_SEQ_CST), 1);
    prefetch_fixture_close(&x);
}

/* Two files of one archive read at once, their reads interleaved (as the
 * kernel sends them): each is its own sequential stream, so the frames
 * behind each are dropped (the cache holds a few, not the 14 read), with
 * the right bytes. */
static void test_prefetch_interleaved_streams(void)
{
    prefetch_fixture x = {0};
    REQUIRE(prefetch_fixture_open(&x));
    uint8_t buf[FRAME / 4];
    /* 7 frames each, 18 frames (more than 1 MiB) apart. */
    uint64_t a = 0, b = 25 * FRAME;
    for (int k = 0; k < 28; k++) {
        CHECK_EQ_INT(check_range(x.r, x.src, SRC_LEN, a, sizeof buf, buf), 0);
        CHECK_EQ_INT(check_range(x.r, x.src, SRC_LEN, b, sizeof buf, buf), 0);
        a += sizeof buf;
        b += sizeof buf;
        usleep(500); /* time for the prefetcher, as between a reader's requests */
    }
    fb_frame_cache_stats st;
    fb_frame_cache_get_stats(x.c, &st);
    CHECK(st.bytes <= 8 * FRAME);
    prefetch_fixture_close(&x);
}

/* ---- frames of raw blocks, read straight into their buffer ---- */

/* Frame k of the archive at path through fb_frame_read_raw: true or false,
 * and with true, out must hold want (the frame's content). */
static bool read_raw(const char *path, size_t k, const uint8_t *want, bool *same)
{
    *same = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        perror(path);
        exit(2);
    }
    struct stat st;
    fstat(fd, &st);
    fb_seek_table t;
    fb_seek_table_init(&t);
    fb_error err;
    bool ok = false;
    if (fb_seek_table_read_fd(fd, (uint64_t)st.st_size, NAME, &t, &err) == 0 && k < t.n_frames) {
        uint8_t *out = malloc(t.frames[k].d_size + 1);
        ok = fb_frame_read_raw(fd, &t.frames[k], t.has_checksums, out);
        *same = memcmp(out, want, t.frames[k].d_size) == 0;
        free(out);
    }
    fb_seek_table_fini(&t);
    close(fd);
    return ok;
}

/* Incompressible frames (zstd stores them as raw blocks of 128 KiB) are
 * read by fb_frame_read_raw, with the right bytes: one of three blocks, one
 * of exactly one block, one of 10 bytes; a compressible frame is not. Then
 * every byte of the three-block frame's header, block headers and
 * checksum, and a sample of its content, is flipped in turn: the raw way
 * then refuses it (or, never seen, gives the genuine bytes), and a read
 * through the reader fails with FB_ECORRUPT or gives the genuine bytes,
 * never other ones. */
static void test_raw_frames(void)
{
    char *dir = fbtest_tempdir(), *path = path_in(dir, NAME), *bad = path_in(dir, "bad.tar.zst");
    enum { R0 = 300 * 1024, C1 = 64 * 1024, R2 = 128 * 1024, R3 = 10 };
    size_t total = R0 + C1 + R2 + R3;
    uint8_t *src = malloc(total);
    fbtest_fill(src, R0, 1, 0);
    fbtest_fill(src + R0, C1, 2, 1);
    fbtest_fill(src + R0 + C1, R2 + R3, 3, 0);
    builder b = {0};
    add_frame(&b, src, R0);
    add_frame(&b, src + R0, C1);
    add_frame(&b, src + R0 + C1, R2);
    add_frame(&b, src + R0 + C1 + R2, R3);
    size_t len = finish(&b, true, path);
    bool same;
    CHECK(read_raw(path, 0, src, &same) && same);
    CHECK(!read_raw(path, 1, src + R0, &same));
    CHECK(read_raw(path, 2, src + R0 + C1, &same) && same);
    CHECK(read_raw(path, 3, src + R0 + C1 + R2, &same) && same);

    uint8_t *file = slurp(path, &len);
    /* Frame 0: a 9-byte header (magic, descriptor, 4-byte content size),
     * then 3 blocks, then the checksum. */
    size_t c0 = 9 + 3 * 3 + R0 + 4;
    uint8_t *buf = malloc(R0);
    unsigned refused = 0, reads_refused = 0;
    for (size_t at = 0; at < c0; at++) {
        bool structural = at < 9 || at >= c0 - 4 || (at - 9) % (3 + 128 * 1024) < 3;
        if (!structural && at % 997 != 0)
            continue;
        for (int bit = 0; bit < 8; bit += 7) {
            file[at] ^= (uint8_t)(1u << bit);
            spit(bad, file, len);
            file[at] ^= (uint8_t)(1u << bit);
            if (!read_raw(bad, 0, src, &same))
                refused++;
            else
                CHECK(same);
            fb_archive_reader *r = open_reader(bad, NULL);
            if (!r) { /* a header byte that made the table unreadable */
                reads_refused++;
                continue;
            }
            size_t got = 0;
            fb_error err;
            int rc = fb_archive_reader_pread(r, buf, R0, 0, &got, &err);
            if (rc == 0)
                CHECK(got == R0 && memcmp(buf, src, R0) == 0);
            else
                CHECK_EQ_INT(rc, FB_ECORRUPT);
            reads_refused += rc != 0;
            fb_archive_reader_free(r);
        }
    }
    fprintf(stderr, "  (%u damaged frames refused by the raw read, %u reads refused)\n", refused,
            reads_refused);
    CHECK(refused > 9 * 2);
    free(buf);
    free(file);
    free(src);
    free(bad);
    free(path);
    fbtest_rmtree(dir);
}

int main(void)
{
    RUN_TEST(test_spans);
    RUN_TEST(test_raw_frames);
    RUN_TEST(test_prefetch);
    RUN_TEST(test_prefetch_interleaved_streams);
    RUN_TEST(test_open_and_sizes);
    RUN_TEST(test_zstd_cli_reads_archive);
    RUN_TEST(test_random_preads_small_cache);
    RUN_TEST(test_random_preads_no_cache);
    RUN_TEST(test_random_preads_cache_nothing);
    RUN_TEST(test_sequential_cache_stats);
    RUN_TEST(test_flipped_byte);
    RUN_TEST(test_wrong_declared_size);
    RUN_TEST(test_window_too_large);
    RUN_TEST(test_frame_not_exactly_one_zstd_frame);
    RUN_TEST(test_lying_table_never_shifts_bytes);
    RUN_TEST(test_proof_carries_over_only_to_the_same_file);
    RUN_TEST(test_kept_frames_carry_over_only_with_the_proof);
    RUN_TEST(test_header_and_table_lying_together);
    RUN_TEST(test_open_rejects);
    RUN_TEST(test_truncated_after_open);
    RUN_TEST(test_empty_frames);
    RUN_TEST(test_concurrent_preads_small_cache);
    RUN_TEST(test_concurrent_preads_no_cache);
    RUN_TEST(test_two_readers_share_cache);
    RUN_TEST(test_stream);
    RUN_TEST(test_stream_stops_at_corrupt_frame);
    RUN_TEST(test_writer_archive_threads_and_cache);
    RUN_TEST(test_writer_archive_level19);
    FBTEST_EXIT();
}
