/* The decompressed-frame cache: a byte-bounded LRU shared by every archive
 * reader of a process (the mount keeps one per daemon).
 *
 * One mutex guards a chained hash table keyed by (archive_key, frame) and a
 * doubly linked LRU list. Entries are reference counted and separately
 * flagged as cached: eviction only unlinks an entry, and whoever drops the
 * last reference of an unlinked entry frees it, so a reader never sees its
 * frame vanish mid-copy. Frame data is freed outside the lock, or kept as
 * a spare buffer for the next decode (fb_frame_cache_buffer), which is
 * only ever a buffer no reference holds. */
#include "fb_frame_cache.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "frame_cache_i.h"

#define INITIAL_BUCKETS 64u
/* Spare buffers kept (see the struct): a sequential reader's next frame
 * and the compressed bytes it is decoded from, for a few readers; small
 * next to the cache's bound, and one bound for every reader of the cache
 * however many archives are open. */
#define SPARES_MAX 6u
/* Decompression contexts kept for the next decode: as many as threads
 * decode at once in the mount, give or take; more still work, making and
 * freeing their own. */
#define DCTX_SPARES_MAX 8u
#define SPARE_BYTES_MAX (4u << 20)

struct fb_frame_ref {
    uint64_t archive_key;
    uint32_t frame;
    bool cached;           /* linked in the table and the LRU list */
    size_t refs;           /* readers holding it */
    uint8_t *data;
    size_t len;
    struct fb_frame_ref *hash_next;
    struct fb_frame_ref *lru_prev; /* towards the most recently used end */
    struct fb_frame_ref *lru_next;
};

struct fb_frame_cache {
    pthread_mutex_t lock;
    size_t max_bytes;
    size_t bytes;
    size_t count;
    struct fb_frame_ref **buckets;
    size_t n_buckets; /* power of two */
    struct fb_frame_ref *lru_head; /* most recently used */
    struct fb_frame_ref *lru_tail; /* next to evict */
    uint64_t next_key;
    uint64_t hits, misses, evictions;
    /* Buffers of frames that left the cache, and of compressed bytes
     * already decoded, kept for the next decode: their pages are already
     * faulted in, and a sequential reader drops one frame for every frame
     * it decodes. spare_len is each buffer's size. Guarded by lock. */
    uint8_t *spare[SPARES_MAX];
    size_t spare_len[SPARES_MAX];
    size_t n_spare;
    size_t spare_bytes;
    /* Decompression contexts kept for the next decode (frame_cache_i.h). */
    ZSTD_DCtx *spare_dctx[DCTX_SPARES_MAX];
    size_t n_spare_dctx;
};

static size_t bucket_of(uint64_t key, uint32_t frame, size_t n_buckets)
{
    uint64_t h = key * 0x9E3779B97F4A7C15ull ^ ((uint64_t)frame + 0x632BE59BD9B4E019ull);
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    return (size_t)h & (n_buckets - 1);
}

int fb_frame_cache_new(size_t max_bytes, fb_frame_cache **out, fb_error *err)
{
    *out = NULL;
    fb_frame_cache *c = calloc(1, sizeof *c);
    if (!c)
        return fb_error_set(err, FB_ENOMEM, "frame cache: out of memory");
    c->buckets = calloc(INITIAL_BUCKETS, sizeof *c->buckets);
    if (!c->buckets) {
        free(c);
        return fb_error_set(err, FB_ENOMEM, "frame cache: out of memory");
    }
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c->buckets);
        free(c);
        return fb_error_set(err, FB_ENOMEM, "frame cache: cannot create its mutex");
    }
    c->n_buckets = INITIAL_BUCKETS;
    c->max_bytes = max_bytes;
    c->next_key = 1;
    *out = c;
    return 0;
}

/* Keeps data as a spare if there is room, else frees it. */
static void buffer_retire(fb_frame_cache *c, uint8_t *data, size_t len)
{
    if (!data)
        return;
    pthread_mutex_lock(&c->lock);
    if (c->n_spare < SPARES_MAX && len > 0 && len <= SPARE_BYTES_MAX - c->spare_bytes) {
        c->spare[c->n_spare] = data;
        c->spare_len[c->n_spare++] = len;
        c->spare_bytes += len;
        data = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    free(data);
}

static void entry_free(fb_frame_cache *c, struct fb_frame_ref *e)
{
    buffer_retire(c, e->data, e->len);
    free(e);
}

uint8_t *fb_frame_cache_buffer(fb_frame_cache *c, size_t len)
{
    uint8_t *data = NULL;
    pthread_mutex_lock(&c->lock);
    for (size_t i = c->n_spare; i-- > 0;) {
        if (c->spare_len[i] == len) {
            data = c->spare[i];
            c->spare_bytes -= len;
            c->spare[i] = c->spare[--c->n_spare];
            c->spare_len[i] = c->spare_len[c->n_spare];
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return data ? data : malloc(len ? len : 1);
}

void fb_frame_cache_buffer_return(fb_frame_cache *c, uint8_t *data, size_t len)
{
    buffer_retire(c, data, len);
}

uint8_t *fb_frame_cache_scratch(fb_frame_cache *c, size_t need, size_t *size)
{
    if (need == 0)
        need = 1;
    uint8_t *data = NULL;
    size_t best = SIZE_MAX;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->n_spare; i++)
        if (c->spare_len[i] >= need && (best == SIZE_MAX || c->spare_len[i] < c->spare_len[best]))
            best = i;
    if (best != SIZE_MAX) {
        data = c->spare[best];
        *size = c->spare_len[best];
        c->spare_bytes -= *size;
        c->spare[best] = c->spare[--c->n_spare];
        c->spare_len[best] = c->spare_len[c->n_spare];
    }
    pthread_mutex_unlock(&c->lock);
    if (!data) {
        data = malloc(need);
        *size = data ? need : 0;
    }
    return data;
}

void fb_frame_cache_free(fb_frame_cache *c)
{
    if (!c)
        return;
    struct fb_frame_ref *e = c->lru_head;
    while (e) {
        struct fb_frame_ref *next = e->lru_next;
        free(e->data);
        free(e);
        e = next;
    }
    for (size_t i = 0; i < c->n_spare; i++)
        free(c->spare[i]);
    for (size_t i = 0; i < c->n_spare_dctx; i++)
        ZSTD_freeDCtx(c->spare_dctx[i]);
    free(c->buckets);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

ZSTD_DCtx *fb_frame_cache_dctx_take(fb_frame_cache *c)
{
    pthread_mutex_lock(&c->lock);
    ZSTD_DCtx *d = c->n_spare_dctx ? c->spare_dctx[--c->n_spare_dctx] : NULL;
    pthread_mutex_unlock(&c->lock);
    return d;
}

void fb_frame_cache_dctx_give(fb_frame_cache *c, ZSTD_DCtx *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&c->lock);
    if (c->n_spare_dctx < DCTX_SPARES_MAX) {
        c->spare_dctx[c->n_spare_dctx++] = d;
        d = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    ZSTD_freeDCtx(d);
}

void fb_frame_cache_get_stats(fb_frame_cache *c, fb_frame_cache_stats *out)
{
    pthread_mutex_lock(&c->lock);
    out->hits = c->hits;
    out->misses = c->misses;
    out->evictions = c->evictions;
    out->bytes = c->bytes;
    out->max_bytes = c->max_bytes;
    pthread_mutex_unlock(&c->lock);
}

uint64_t fb_frame_cache_new_key(fb_frame_cache *c)
{
    pthread_mutex_lock(&c->lock);
    uint64_t key = c->next_key++;
    pthread_mutex_unlock(&c->lock);
    return key;
}

/* ---- under the lock ---- */

static struct fb_frame_ref *find_locked(fb_frame_cache *c, uint64_t key, uint32_t frame)
{
    struct fb_frame_ref *e = c->buckets[bucket_of(key, frame, c->n_buckets)];
    while (e && !(e->archive_key == key && e->frame == frame))
        e = e->hash_next;
    return e;
}

static void lru_unlink(fb_frame_cache *c, struct fb_frame_ref *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        c->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        c->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(fb_frame_cache *c, struct fb_frame_ref *e)
{
    e->lru_prev = NULL;
    e->lru_next = c->lru_head;
    if (c->lru_head)
        c->lru_head->lru_prev = e;
    else
        c->lru_tail = e;
    c->lru_head = e;
}

/* Unlinks e from the table and the list. Returns e when nobody holds it any
 * more (the caller frees it after unlocking), else NULL. */
static struct fb_frame_ref *uncache_locked(fb_frame_cache *c, struct fb_frame_ref *e)
{
    struct fb_frame_ref **pp = &c->buckets[bucket_of(e->archive_key, e->frame, c->n_buckets)];
    while (*pp != e)
        pp = &(*pp)->hash_next;
    *pp = e->hash_next;
    e->hash_next = NULL;
    lru_unlink(c, e);
    e->cached = false;
    c->bytes -= e->len;
    c->count--;
    return e->refs == 0 ? e : NULL;
}

/* Doubles the bucket array; failure only makes chains longer. */
static void maybe_grow_locked(fb_frame_cache *c)
{
    if (c->count <= c->n_buckets || c->n_buckets > SIZE_MAX / 2 / sizeof *c->buckets)
        return;
    size_t n = c->n_buckets * 2;
    struct fb_frame_ref **nb = calloc(n, sizeof *nb);
    if (!nb)
        return;
    for (size_t i = 0; i < c->n_buckets; i++) {
        struct fb_frame_ref *e = c->buckets[i];
        while (e) {
            struct fb_frame_ref *next = e->hash_next;
            size_t b = bucket_of(e->archive_key, e->frame, n);
            e->hash_next = nb[b];
            nb[b] = e;
            e = next;
        }
    }
    free(c->buckets);
    c->buckets = nb;
    c->n_buckets = n;
}

/* ---- API ---- */

fb_frame_ref *fb_frame_cache_lookup(fb_frame_cache *c, uint64_t archive_key, uint32_t frame)
{
    pthread_mutex_lock(&c->lock);
    struct fb_frame_ref *e = find_locked(c, archive_key, frame);
    if (e) {
        e->refs++;
        if (c->lru_head != e) {
            lru_unlink(c, e);
            lru_push_front(c, e);
        }
        c->hits++;
    } else {
        c->misses++;
    }
    pthread_mutex_unlock(&c->lock);
    return e;
}

fb_frame_ref *fb_frame_cache_insert(fb_frame_cache *c, uint64_t archive_key, uint32_t frame,
                                    uint8_t *data, size_t len)
{
    struct fb_frame_ref *e = calloc(1, sizeof *e);
    if (!e) {
        free(data);
        return NULL;
    }
    e->archive_key = archive_key;
    e->frame = frame;
    e->data = data;
    e->len = len;
    e->refs = 1;

    struct fb_frame_ref *evicted = NULL; /* chain of entries to free, via hash_next */
    pthread_mutex_lock(&c->lock);
    struct fb_frame_ref *existing = find_locked(c, archive_key, frame);
    if (existing) {
        /* Another thread decompressed the same frame first: share its copy. */
        existing->refs++;
        pthread_mutex_unlock(&c->lock);
        entry_free(c, e);
        return existing;
    }
    if (len > 0 && len <= c->max_bytes) {
        e->cached = true;
        size_t b = bucket_of(archive_key, frame, c->n_buckets);
        e->hash_next = c->buckets[b];
        c->buckets[b] = e;
        lru_push_front(c, e);
        c->bytes += len;
        c->count++;
        while (c->bytes > c->max_bytes) {
            /* e is at the front and len <= max_bytes, so the tail is another entry. */
            struct fb_frame_ref *victim = uncache_locked(c, c->lru_tail);
            c->evictions++;
            if (victim) {
                victim->hash_next = evicted;
                evicted = victim;
            }
        }
        maybe_grow_locked(c);
    }
    pthread_mutex_unlock(&c->lock);
    while (evicted) {
        struct fb_frame_ref *next = evicted->hash_next;
        entry_free(c, evicted);
        evicted = next;
    }
    return e;
}

const uint8_t *fb_frame_ref_data(const fb_frame_ref *ref)
{
    return ref->data;
}

size_t fb_frame_ref_size(const fb_frame_ref *ref)
{
    return ref->len;
}

void fb_frame_ref_retain(fb_frame_cache *c, fb_frame_ref *ref)
{
    pthread_mutex_lock(&c->lock);
    ref->refs++;
    pthread_mutex_unlock(&c->lock);
}

void fb_frame_ref_release(fb_frame_cache *c, fb_frame_ref *ref)
{
    if (!ref)
        return;
    pthread_mutex_lock(&c->lock);
    bool dead = --ref->refs == 0 && !ref->cached;
    pthread_mutex_unlock(&c->lock);
    if (dead)
        entry_free(c, ref);
}

void fb_frame_cache_drop(fb_frame_cache *c, uint64_t archive_key, uint32_t frame)
{
    pthread_mutex_lock(&c->lock);
    struct fb_frame_ref *e = find_locked(c, archive_key, frame);
    struct fb_frame_ref *victim = e ? uncache_locked(c, e) : NULL;
    pthread_mutex_unlock(&c->lock);
    if (victim)
        entry_free(c, victim);
}

void fb_frame_cache_forget(fb_frame_cache *c, uint64_t archive_key)
{
    struct fb_frame_ref *dead = NULL;
    pthread_mutex_lock(&c->lock);
    struct fb_frame_ref *e = c->lru_head;
    while (e) {
        struct fb_frame_ref *next = e->lru_next;
        if (e->archive_key == archive_key) {
            struct fb_frame_ref *victim = uncache_locked(c, e);
            if (victim) {
                victim->hash_next = dead;
                dead = victim;
            }
        }
        e = next;
    }
    pthread_mutex_unlock(&c->lock);
    while (dead) {
        struct fb_frame_ref *next = dead->hash_next;
        entry_free(c, dead);
        dead = next;
    }
}
