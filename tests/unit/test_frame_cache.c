/* Tests of the decompressed-frame cache: hits and misses, the byte bound and
 * LRU order, references that outlive eviction, races between inserts, the
 * "cache nothing" mode, forgetting one archive, many threads at once, and
 * the decompression contexts kept between readers. */
#include <pthread.h>
#include <stdbool.h>

#include "fb_archive_reader.h"
#include "fb_frame_cache.h"
#include "fbtest.h"
#include "frame_cache_i.h"

/* Frame contents derived from the key so any mix-up shows. */
static uint8_t *frame_data(uint64_t key, uint32_t frame, size_t len)
{
    uint8_t *p = malloc(len ? len : 1);
    fbtest_fill(p, len, key * 1000003u + frame, 0);
    return p;
}

static bool frame_ok(const fb_frame_ref *ref, uint64_t key, uint32_t frame, size_t len)
{
    if (fb_frame_ref_size(ref) != len)
        return false;
    uint8_t *expect = frame_data(key, frame, len);
    bool ok = memcmp(fb_frame_ref_data(ref), expect, len) == 0;
    free(expect);
    return ok;
}

static void test_hit_miss_and_stats(void)
{
    fb_frame_cache *c;
    fb_error err;
    REQUIRE(fb_frame_cache_new(1000, &c, &err) == 0);
    uint64_t k = fb_frame_cache_new_key(c);
    CHECK(fb_frame_cache_lookup(c, k, 0) == NULL);
    fb_frame_ref *r = fb_frame_cache_insert(c, k, 0, frame_data(k, 0, 100), 100);
    REQUIRE(r);
    CHECK(frame_ok(r, k, 0, 100));
    fb_frame_ref_release(c, r);
    fb_frame_ref *h = fb_frame_cache_lookup(c, k, 0);
    CHECK(h == r);
    CHECK(h && frame_ok(h, k, 0, 100));
    fb_frame_ref_release(c, h);
    CHECK(fb_frame_cache_lookup(c, k, 1) == NULL);
    CHECK(fb_frame_cache_lookup(c, k + 1, 0) == NULL);
    fb_frame_cache_stats st;
    fb_frame_cache_get_stats(c, &st);
    CHECK_EQ_INT(st.hits, 1);
    CHECK_EQ_INT(st.misses, 3);
    CHECK_EQ_INT(st.evictions, 0);
    CHECK_EQ_INT(st.bytes, 100);
    CHECK_EQ_INT(st.max_bytes, 1000);
    fb_frame_cache_free(c);
    fb_frame_cache_free(NULL);
}

static void test_keys_unique(void)
{
    fb_frame_cache *c;
    fb_error err;
    REQUIRE(fb_frame_cache_new(10, &c, &err) == 0);
    uint64_t a = fb_frame_cache_new_key(c), b = fb_frame_cache_new_key(c);
    CHECK(a != b);
    fb_frame_cache_free(c);
}

static void test_byte_bound_and_lru_order(void)
{
    fb_frame_cache *c;
    fb_error err;
    REQUIRE(fb_frame_cache_new(1000, &c, &err) == 0);
    uint64_t k = fb_frame_cache_new_key(c);
    fb_frame_cache_stats st;
    for (uint32_t i = 0; i < 4; i++) { /* 4 x 250 = exactly full */
        fb_frame_ref_release(c, fb_frame_cache_insert(c, k, i, frame_data(k, i, 250), 250));
        fb_frame_cache_get_stats(c, &st);
        CHECK(st.bytes <= st.max_bytes);
    }
    CHECK_EQ_INT(st.bytes, 1000);
    CHECK_EQ_INT(st.evictions, 0);
    /* Touch 0 so 1 is the least recently used. */
    fb_frame_ref_release(c, fb_frame_cache_lookup(c, k, 0));
    fb_frame_ref_release(c, fb_frame_cache_insert(c, k, 4, frame_data(k, 4, 250), 250));
    fb_frame_cache_get_stats(c, &st);
    CHECK_EQ_INT(st.bytes, 1000);
    CHECK_EQ_INT(st.evictions, 1);
    fb_frame_ref *r;
    CHECK((r = fb_frame_cache_lookup(c, k, 1)) == NULL);
    uint32_t kept[] = {0, 2, 3, 4};
    for (size_t i = 0; i < 4; i++) {
        r = fb_frame_cache_lookup(c, k, kept[i]);
        CHECK(r && frame_ok(r, k, kept[i], 250));
        fb_frame_ref_release(c, r);
    }
    /* One large frame pushes out as many as needed. */
    fb_frame_ref_release(c, fb_frame_cache_insert(c, k, 5, frame_data(k, 5, 900), 900));
    fb_frame_cache_get_stats(c, &st);
    CHECK_EQ_INT(st.bytes, 900);
    CHECK_EQ_INT(st.evictions, 5);
    /* Larger than the whole bound: returned but not cached, nothing evicted. */
    r = fb_frame_cache_insert(c, k, 6, frame_data(k, 6, 1001), 1001);
    CHECK(r && frame_ok(r, k, 6, 1001));
    fb_frame_ref_release(c, r);
    CHECK(fb_frame_cache_lookup(c, k, 6) == NULL);
    fb_frame_cache_get_stats(c, &st);
    CHECK_EQ_INT(st.bytes, 900);
    CHECK_EQ_INT(st.evictions, 5);
    fb_frame_cache_free(c);
}

static void test_evicted_ref_stays_valid(void)
{
    fb_frame_cache *c;
    fb_error err;
    REQUIRE(fb_frame_cache_new(300, &c, &err) == 0);
    uint64_t k = fb_frame_cache_new_key(c);
    fb_frame_ref *held = fb_frame_cache_insert(c, k, 0, frame_data(k, 0, 200), 200);
    REQUIRE(held);
    fb_frame_ref_release(c, fb_frame_cache_insert(c, k, 1, frame_data(k, 1, 200), 200));
    CHECK(fb_frame_cache_lookup(c, k, 0) == NULL); /* evicted */
    CHECK(frame_ok(held, k, 0, 200));             /* but still readable */
    /* A new copy of frame 0 can be cached while the old one is held. */
    fb_frame_ref *again = fb_frame_cache_insert(c, k, 0, frame_data(k, 0, 200), 200);
    CHECK(again && again != held && frame_ok(again, k, 0, 200));
    fb_frame_ref_release(c, again);
    CHECK(frame_ok(held, k, 0, 200));
    fb_frame_ref_release(c, held); /* frees it: valgrind / ASan see any misuse */
    fb_frame_cache_stats st;
    fb_frame_cache_get_stats(c, &st);
    CHECK_EQ_INT(st.bytes, 200);
    fb_frame_cache_free(c);
}

static void test_duplicate_insert_returns_existing(void)
{
    fb_frame_cache *c;
    fb_error err;
    REQUIRE(fb_frame_cache_new(1000, &c, &err) == 0);
    uint64_t k = fb_frame_cache_new_key(c);
    fb_frame_ref *a = fb_frame_cache_insert(c, k, 3, frame_data(k, 3, 100), 100);
    /* The second copy (different bytes) must be dropped, the first kept. */
    uint8_t *other = malloc(100);
    memset(other, 0x5A, 100);
    fb_frame_ref *b = fb_frame_cache_insert(c, k, 3, other, 100);
    CHECK(a && a == b);
    CHECK(b && frame_ok(b, k, 3, 100));
    fb_frame_cache_stats st;
    fb_frame_cache_get_stats(c, &st);
    CHECK_EQ_INT(st.bytes, 100);
    fb_frame_ref_release(c, a);
    fb_frame_ref_release(c, b);
    fb_frame_cache_free(c);
}

static void test_zero_bound_caches_nothing(void)
{
    fb_frame_cache *c;
    fb_error err;
    REQUIRE(fb_frame_cache_new(0, &c, &err) == 0);
    uint64_t k = fb_frame_cache_new_key(c);
    fb_frame_ref *r = fb_frame_cache_insert(c, k, 0, frame_data(k, 0, 64), 64);
    CHECK(r && frame_ok(r, k, 0, 64));
    CHECK(fb_frame_cache_lookup(c, k, 0) == NULL);
    fb_frame_ref_release(c, r);
    fb_frame_cache_stats st;
    fb_frame_cache_get_stats(c, &st);
    CHECK_EQ_INT(st.bytes, 0);
    CHECK_EQ_INT(st.hits, 0);
    CHECK_EQ_INT(st.misses, 1);
    fb_frame_cache_free(c);
}

static void test_forget_one_archive(void)
{
    fb_frame_cache *c;
    fb_error err;
    REQUIRE(fb_frame_cache_new(1 << 20, &c, &err) == 0);
    uint64_t a = fb_frame_cache_new_key(c), b = fb_frame_cache_new_key(c);
    for (uint32_t i = 0; i < 50; i++) {
        fb_frame_ref_release(c, fb_frame_cache_insert(c, a, i, frame_data(a, i, 100), 100));
        fb_frame_ref_release(c, fb_frame_cache_insert(c, b, i, frame_data(b, i, 10), 10));
    }
    fb_frame_ref *held = fb_frame_cache_lookup(c, a, 7);
    fb_frame_cache_forget(c, a);
    fb_frame_cache_stats st;
    fb_frame_cache_get_stats(c, &st);
    CHECK_EQ_INT(st.bytes, 500);
    for (uint32_t i = 0; i < 50; i++) {
        CHECK(fb_frame_cache_lookup(c, a, i) == NULL);
        fb_frame_ref *r = fb_frame_cache_lookup(c, b, i);
        CHECK(r && frame_ok(r, b, i, 10));
        fb_frame_ref_release(c, r);
    }
    CHECK(held && frame_ok(held, a, 7, 100));
    fb_frame_ref_release(c, held);
    fb_frame_cache_free(c);
}

/* Enough entries to grow the hash table several times; all stay findable. */
static void test_many_entries(void)
{
    fb_frame_cache *c;
    fb_error err;
    REQUIRE(fb_frame_cache_new(1 << 20, &c, &err) == 0);
    uint64_t k = fb_frame_cache_new_key(c);
    enum { N = 5000 };
    for (uint32_t i = 0; i < N; i++)
        fb_frame_ref_release(c, fb_frame_cache_insert(c, k, i, frame_data(k, i, 16), 16));
    size_t found = 0;
    for (uint32_t i = 0; i < N; i++) {
        fb_frame_ref *r = fb_frame_cache_lookup(c, k, i);
        if (r && frame_ok(r, k, i, 16))
            found++;
        fb_frame_ref_release(c, r);
    }
    CHECK_EQ_INT(found, N);
    fb_frame_cache_free(c);
}

struct worker {
    fb_frame_cache *c;
    uint64_t keys[2];
    uint64_t seed;
    int bad;
    int over_bound;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (int n = 0; n < 4000; n++) {
        uint64_t k = w->keys[fbtest_rand(&w->seed) % 2];
        uint32_t f = (uint32_t)(fbtest_rand(&w->seed) % 40);
        size_t len = 64 + f * 16;
        fb_frame_ref *r = fb_frame_cache_lookup(w->c, k, f);
        if (!r)
            r = fb_frame_cache_insert(w->c, k, f, frame_data(k, f, len), len);
        if (!r || !frame_ok(r, k, f, len))
            w->bad++;
        fb_frame_ref_release(w->c, r);
        fb_frame_cache_stats st;
        fb_frame_cache_get_stats(w->c, &st);
        if (st.bytes > st.max_bytes)
            w->over_bound++;
    }
    return NULL;
}

static void test_threads(void)
{
    fb_frame_cache *c;
    fb_error err;
    REQUIRE(fb_frame_cache_new(8000, &c, &err) == 0);
    enum { T = 8 };
    pthread_t th[T];
    struct worker w[T];
    uint64_t keys[2] = {fb_frame_cache_new_key(c), fb_frame_cache_new_key(c)};
    for (int i = 0; i < T; i++) {
        w[i] = (struct worker){.c = c, .keys = {keys[0], keys[1]}, .seed = (uint64_t)i + 11};
        REQUIRE(pthread_create(&th[i], NULL, worker_main, &w[i]) == 0);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(w[i].bad, 0);
        CHECK_EQ_INT(w[i].over_bound, 0);
    }
    fb_frame_cache_stats st;
    fb_frame_cache_get_stats(c, &st);
    CHECK(st.hits > 0);
    CHECK(st.evictions > 0);
    CHECK(st.bytes <= 8000);
    CHECK_EQ_INT(st.hits + st.misses, T * 4000);
    fb_frame_cache_free(c);
}

/* A frame leaving the cache leaves its buffer for the next decode of the
 * same size, but never while a reader still holds the frame, and never
 * more than a few: the bytes a reader holds are never overwritten. */
/* Contexts given back are taken again (the last first), at most eight are
 * kept (the rest freed, which ASan checks, as it checks those the cache
 * frees with itself), and fb_archive_prepare leaves one ready. */
static void test_spare_dctx(void)
{
    enum { KEPT = 8, GIVEN = 10 };
    fb_frame_cache *c;
    fb_error err;
    REQUIRE(fb_frame_cache_new(1000, &c, &err) == 0);
    CHECK(fb_frame_cache_dctx_take(c) == NULL);
    REQUIRE(fb_archive_prepare(c, &err) == 0);
    ZSTD_DCtx *ready = fb_frame_cache_dctx_take(c);
    CHECK(ready != NULL);
    CHECK(fb_frame_cache_dctx_take(c) == NULL);
    ZSTD_DCtx *d[GIVEN];
    d[0] = ready;
    for (int i = 1; i < GIVEN; i++)
        REQUIRE((d[i] = ZSTD_createDCtx()) != NULL);
    for (int i = 0; i < GIVEN; i++)
        fb_frame_cache_dctx_give(c, d[i]);
    fb_frame_cache_dctx_give(c, NULL);
    /* The first eight given are kept; the last two were freed. */
    for (int i = KEPT - 1; i >= 0; i--)
        CHECK(fb_frame_cache_dctx_take(c) == d[i]);
    CHECK(fb_frame_cache_dctx_take(c) == NULL);
    fb_frame_cache_dctx_give(c, d[0]);
    fb_frame_cache_dctx_give(c, d[1]);
    for (int i = 2; i < KEPT; i++)
        ZSTD_freeDCtx(d[i]);
    fb_frame_cache_free(c); /* frees d[0] and d[1] */
}

static void test_spare_buffers(void)
{
    fb_frame_cache *c;
    fb_error err;
    REQUIRE(fb_frame_cache_new(1000, &c, &err) == 0);
    uint64_t k = fb_frame_cache_new_key(c);
    /* Dropped and unreferenced: its buffer is the next one of its size. */
    uint8_t *d0 = frame_data(k, 0, 200);
    fb_frame_ref_release(c, fb_frame_cache_insert(c, k, 0, d0, 200));
    fb_frame_cache_drop(c, k, 0);
    uint8_t *b = fb_frame_cache_buffer(c, 300);
    CHECK(b != d0); /* another size: a new buffer */
    fb_frame_cache_buffer_return(c, b, 300);
    uint8_t *again = fb_frame_cache_buffer(c, 200);
    CHECK(again == d0);
    uint8_t *b2 = fb_frame_cache_buffer(c, 300);
    CHECK(b2 == b);
    free(b2);
    /* Reused for frame 1, whose bytes are now what the buffer holds. */
    fbtest_fill(again, 200, k * 1000003u + 1, 0);
    fb_frame_ref *held = fb_frame_cache_insert(c, k, 1, again, 200);
    REQUIRE(held);
    /* Dropped while held: no buffer is handed out of it until released. */
    fb_frame_cache_drop(c, k, 1);
    uint8_t *other = fb_frame_cache_buffer(c, 200);
    CHECK(other != again);
    CHECK(frame_ok(held, k, 1, 200));
    fb_frame_ref_release(c, held);
    fb_frame_cache_buffer_return(c, other, 200);
    uint8_t *first = fb_frame_cache_buffer(c, 200), *second = fb_frame_cache_buffer(c, 200);
    CHECK((first == again && second == other) || (first == other && second == again));
    free(first);
    free(second);
    /* Several given back: the next takes of that size reuse them (at most
     * six are kept; the rest are freed, which ASan checks). */
    uint8_t *many[8];
    for (int i = 0; i < 8; i++)
        many[i] = fb_frame_cache_buffer(c, 64);
    for (int i = 0; i < 8; i++)
        fb_frame_cache_buffer_return(c, many[i], 64);
    uint8_t *taken[6];
    int reused = 0;
    for (int i = 0; i < 6; i++) {
        taken[i] = fb_frame_cache_buffer(c, 64);
        for (int j = 0; j < 6; j++)
            reused += taken[i] == many[j];
    }
    CHECK_EQ_INT(reused, 6);
    for (int i = 0; i < 6; i++)
        free(taken[i]);
    /* Scratch space (a frame's compressed bytes): the smallest spare that
     * is large enough, whatever its exact size. */
    uint8_t *s100 = malloc(100), *s500 = malloc(500), *s300 = malloc(300);
    REQUIRE(s100 && s500 && s300);
    fb_frame_cache_buffer_return(c, s100, 100);
    fb_frame_cache_buffer_return(c, s500, 500);
    fb_frame_cache_buffer_return(c, s300, 300);
    size_t size = 0;
    uint8_t *got = fb_frame_cache_scratch(c, 200, &size);
    CHECK(got == s300 && size == 300);
    fb_frame_cache_buffer_return(c, got, size);
    got = fb_frame_cache_scratch(c, 1000, &size); /* none is large enough */
    CHECK(got != s100 && got != s300 && got != s500 && size == 1000);
    free(got);
    fb_frame_cache_free(c); /* frees the spares it still has */
}

int main(void)
{
    RUN_TEST(test_hit_miss_and_stats);
    RUN_TEST(test_keys_unique);
    RUN_TEST(test_byte_bound_and_lru_order);
    RUN_TEST(test_evicted_ref_stays_valid);
    RUN_TEST(test_duplicate_insert_returns_existing);
    RUN_TEST(test_zero_bound_caches_nothing);
    RUN_TEST(test_forget_one_archive);
    RUN_TEST(test_many_entries);
    RUN_TEST(test_threads);
    RUN_TEST(test_spare_buffers);
    RUN_TEST(test_spare_dctx);
    FBTEST_EXIT();
}
