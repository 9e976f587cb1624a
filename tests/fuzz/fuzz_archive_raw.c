/* Fuzz target: the archive reader on raw bytes. Input = 8 bytes of
 * parameters followed by an archive.tar.zst: the archive is put in a memfd,
 * opened with fb_archive_reader_open (with or without a shared frame cache)
 * and read with fb_archive_reader_pread at ranges the parameters choose
 * (around frame edges, across frames, past the end). It must never crash,
 * leak or return an undocumented error, and reads must be clipped exactly at
 * the end of the stream.
 *
 * When the parameters ask for it, the sequential fb_archive_stream reads the
 * whole archive first: every frame it returns has passed the same checks, so
 * its bytes are the truth for those offsets, and any pread that returns
 * other bytes there, or fails where the stream read everything, is a bug.
 * (Raw mutation rarely makes a frame that passes its checksum; the
 * structured target, fuzz_archive_structured.c, is the one for wrong bytes.) */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fb_archive_reader.h"
#include "fb_frame_cache.h"
#include "fb_hash.h"
#include "fuzz_util.h"

#define RAW_PARAMS 8
/* Bytes of stream kept as the truth; a tiny input can claim 64 MiB frames. */
#define RAW_TRUTH_MAX (8u * 1024 * 1024)
#define RAW_READ_MAX (256u * 1024)

enum {
    RAW_CACHE = 1,  /* open with a shared frame cache */
    RAW_STREAM = 2, /* stream the whole archive first (the truth) */
};

typedef struct raw_truth {
    uint8_t *bytes;
    uint64_t len;   /* stream bytes known, from offset 0 */
    bool complete;  /* the stream read every frame and the whole file */
} raw_truth;

static const int raw_allowed[] = {FB_ECORRUPT, FB_EIO, FB_ENOMEM, 0};

static void raw_stream(fb_archive_reader *r, const uint8_t *file, size_t size, raw_truth *t)
{
    fb_archive_stream *s = NULL;
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_archive_stream_new(r, &s, &err);
    if (rc != 0) {
        fz_check_error("fb_archive_stream_new", rc, &err, raw_allowed);
        return;
    }
    uint64_t total = fb_archive_reader_uncompressed_size(r);
    size_t cap = total < RAW_TRUTH_MAX ? (size_t)total : RAW_TRUTH_MAX;
    t->bytes = malloc(cap ? cap : 1);
    if (!t->bytes)
        fz_harness("malloc");
    bool whole = true;
    for (;;) {
        const uint8_t *data;
        size_t len;
        rc = fb_archive_stream_next(s, &data, &len, &err);
        if (rc != 0) {
            fz_check_error("fb_archive_stream_next", rc, &err, raw_allowed);
            whole = false;
            break;
        }
        if (len == 0)
            break;
        if (whole && len > total - t->len)
            fz_fail("archive: the stream returns more bytes than the seek table holds");
        if (!whole)
            continue;
        if (t->len + len > cap) {
            whole = false; /* beyond what we keep: the truth ends here */
            continue;
        }
        memcpy(t->bytes + t->len, data, len);
        t->len += len;
    }
    if (whole) {
        if (t->len != total)
            fz_fail("archive: the stream ended after %llu of %llu bytes without an error",
                    (unsigned long long)t->len, (unsigned long long)total);
        uint8_t got[FB_SHA256_LEN], want[FB_SHA256_LEN];
        if (fb_archive_stream_file_sha256(s, got, &err) != 0)
            fz_fail("archive: no file SHA-256 after a complete stream: %s", err.message);
        if (fb_sha256_buffer(file, size, want, &err) != 0)
            fz_harness("sha256");
        if (memcmp(got, want, sizeof got) != 0)
            fz_fail("archive: the stream's file SHA-256 is not the file's");
        t->complete = true;
    }
    fb_archive_stream_free(s);
}

/* One read of [off, off + len) checked against the clipping rule and the
 * truth. */
static void raw_read(fb_archive_reader *r, const raw_truth *t, uint64_t off, size_t len)
{
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        fz_harness("malloc");
    size_t got = 12345;
    fb_error err;
    fb_error_clear(&err);
    /* Anchored at the start of the stream: the strongest claim the reader
     * makes (no byte served through a size only a header vouches for). */
    int rc = fb_archive_reader_pread_anchored(r, buf, len, off, 0, &got, &err);
    uint64_t total = fb_archive_reader_uncompressed_size(r);
    if (rc != 0) {
        fz_check_error("fb_archive_reader_pread_anchored", rc, &err, raw_allowed);
        if (t->complete && rc != FB_ENOMEM)
            fz_fail("archive: pread [%llu, +%zu) fails (%s) but the stream read every frame",
                    (unsigned long long)off, len, err.message);
    } else {
        size_t want = off >= total ? 0 : (total - off < len ? (size_t)(total - off) : len);
        if (got != want)
            fz_fail("archive: pread [%llu, +%zu) returned %zu bytes, expected %zu",
                    (unsigned long long)off, len, got, want);
        for (size_t i = 0; i < got && off + i < t->len; i++)
            if (buf[i] != t->bytes[off + i])
                fz_fail("archive: pread at %llu returned a byte the stream read differently",
                        (unsigned long long)(off + i));
    }
    free(buf);
}

int fuzz_archive_raw(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    uint64_t seed = fz_u32(&in);
    uint8_t flags = fz_u8(&in);
    unsigned n_reads = 1u + fz_u8(&in) % 24u;
    size_t got;
    (void)fz_bytes(&in, RAW_PARAMS - 6, &got);
    const uint8_t *file = in.p;
    size_t file_size = in.n;

    fb_frame_cache *cache = NULL;
    fb_error err;
    fb_error_clear(&err);
    if ((flags & RAW_CACHE) && fb_frame_cache_new(1u << 20, &cache, &err) != 0)
        fz_harness("fb_frame_cache_new");
    int fd = fz_memfd(file, file_size);
    fb_archive_reader *r = NULL;
    int rc = fb_archive_reader_open(fd, cache, "fuzz.tar.zst", &r, &err);
    if (rc != 0) {
        fz_check_error("fb_archive_reader_open", rc, &err, raw_allowed);
        close(fd);
        fb_frame_cache_free(cache);
        return 0;
    }
    if (fb_archive_reader_file_size(r) != file_size)
        fz_fail("archive: file size %llu, the memfd holds %zu",
                (unsigned long long)fb_archive_reader_file_size(r), file_size);
    const fb_seek_table *tab = fb_archive_reader_seek_table(r);
    if (tab->d_size != fb_archive_reader_uncompressed_size(r))
        fz_fail("archive: uncompressed size differs from the seek table's");

    raw_truth truth = {0};
    if (flags & RAW_STREAM)
        raw_stream(r, file, file_size, &truth);

    uint64_t total = tab->d_size;
    for (unsigned k = 0; k < n_reads; k++) {
        uint64_t x = fz_next(&seed);
        uint64_t off;
        size_t n_frames = tab->n_frames ? tab->n_frames : 1;
        const fb_frame_entry *f = tab->n_frames ? &tab->frames[(x >> 8) % n_frames] : NULL;
        int64_t jitter = (int64_t)((x >> 32) % 33) - 16;
        switch (x & 3) {
        case 0: /* anywhere, a little past the end included */
            off = (x >> 8) % (total + 17);
            break;
        case 1: /* around a frame start */
            off = f ? f->d_offset : 0;
            off = jitter < 0 && (uint64_t)-jitter > off ? 0 : off + (uint64_t)jitter;
            break;
        case 2: /* around a frame end */
            off = f ? f->d_offset + f->d_size : 0;
            off = jitter < 0 && (uint64_t)-jitter > off ? 0 : off + (uint64_t)jitter;
            break;
        default: /* from the start */
            off = 0;
            break;
        }
        uint64_t y = fz_next(&seed);
        size_t len = (y & 1) ? (size_t)(y >> 1) % 64 : (size_t)(y >> 1) % RAW_READ_MAX;
        raw_read(r, &truth, off, len);
    }
    /* Zero-length and past-the-end reads are documented to give 0 bytes. */
    raw_read(r, &truth, total, 16);
    raw_read(r, &truth, 0, 0);

    free(truth.bytes);
    fb_archive_reader_free(r);
    fb_frame_cache_free(cache);
    return 0;
}

FB_FUZZ_ENTRY(fuzz_archive_raw)
