/* Fuzz target: the archive reader against known plaintext.
 *
 * Raw-byte mutation of an archive almost never produces a frame that passes
 * its content checksum, so it cannot show a reader serving wrong bytes. Here
 * the input is a recipe instead: it chooses up to 8 frames of plaintext
 * (lengths, kind of content, a seed), which are compressed with zstd exactly
 * as the writer does (content size and checksum in every frame header)
 * followed by a seek table, giving a valid seekable archive whose every byte
 * of plaintext we know. The rest of the input then damages it the way disk
 * rot, a careless edit or an attacker who "repairs" checksums would: a seek
 * table d_size / c_size / checksum changed (by +-1, +-512, x2, /2, 0, any
 * value), bits flipped in the table or in the frames, bytes cut out of or
 * added to a frame with its c_size adjusted, the table checksum recomputed
 * from the damaged frame. The archive is then opened and read by
 * fb_archive_reader_pread and fb_archive_reader_pread_anchored (every frame
 * as the reader's table places it, as the true table places it, the whole
 * stream, and ranges the input picks) and optionally by fb_archive_stream.
 *
 * The property (include/fb_archive_reader.h: "wrong bytes are never
 * returned"): every byte returned with rc 0 equals the plaintext at that
 * offset; a byte past the true end is wrong by definition. For the plain
 * pread, the header says one case is left to the anchored read: a frame
 * whose header lies together with the seek table; the target decodes every
 * frame itself to know when that is the case and then judges only the
 * anchored read. Undamaged, the archive must read back completely. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zstd.h>

#include "fb_archive_reader.h"
#include "fb_frame_cache.h"
#include "fb_seek_table.h"
#include "fuzz_util.h"

#define ST_FRAMES_MAX 8
#define ST_FRAME_BYTES_MAX 3000
#define ST_OPS_MAX 4
#define ST_READS_MAX 16
#define ST_TABLE_HEADER 8

enum {
    ST_CHECKSUMS = 1, /* the seek table carries checksums (the writer's way) */
    ST_CACHE = 2,     /* read through a shared frame cache */
    ST_STREAM = 4,    /* also read everything with fb_archive_stream */
};

typedef struct st_archive {
    uint8_t *plain; /* the true stream */
    size_t plain_len;
    size_t n_frames;
    size_t d_off[ST_FRAMES_MAX + 1]; /* true plaintext offsets, [n] = plain_len */
    uint8_t *file;                   /* the archive, damaged in place */
    size_t file_len;
    size_t file_cap;
    size_t table_at; /* where the seek table frame starts */
    bool checksums;
} st_archive;

static const int st_allowed[] = {FB_ECORRUPT, FB_EIO, FB_ENOMEM, 0};

/* Plaintext of one frame: the kinds of content a session holds (random
 * bytes, repetitive text, runs of zeros, repeats of earlier data, which
 * zstd may encode as matches). */
static void st_fill(uint8_t *p, size_t n, unsigned kind, uint64_t *seed, const uint8_t *before,
                    size_t n_before)
{
    static const char text[] = "{\"step\": 3, \"log\": \"tool output line\"}\n";
    for (size_t i = 0; i < n; i++) {
        switch (kind % 4) {
        case 0:
            p[i] = (uint8_t)fz_next(seed);
            break;
        case 1:
            p[i] = (uint8_t)text[(i + (*seed & 7)) % (sizeof text - 1)];
            break;
        case 2:
            p[i] = (i % 97 == 0) ? (uint8_t)fz_next(seed) : 0;
            break;
        default:
            p[i] = n_before ? before[i % n_before] : (uint8_t)i;
            break;
        }
    }
}

static void st_append(st_archive *a, const void *data, size_t len)
{
    if (a->file_len + len > a->file_cap) {
        a->file_cap = (a->file_len + len) * 2 + 64;
        a->file = realloc(a->file, a->file_cap);
        if (!a->file)
            fz_harness("realloc");
    }
    memcpy(a->file + a->file_len, data, len);
    a->file_len += len;
}

/* Builds the valid archive from the recipe at the start of the input. */
static void st_build(st_archive *a, fz_in *in, uint8_t flags)
{
    a->n_frames = 1 + fz_u8(in) % ST_FRAMES_MAX;
    int level = 1 + fz_u8(in) % 5;
    uint64_t seed = fz_u32(in);
    a->checksums = (flags & ST_CHECKSUMS) != 0;

    size_t lens[ST_FRAMES_MAX];
    unsigned kinds[ST_FRAMES_MAX];
    a->plain_len = 0;
    for (size_t i = 0; i < a->n_frames; i++) {
        /* Bits 0-11: length; 12-13: kind of content; 14 and 15 both set:
         * an empty frame (d_size 0), which the writer never makes but the
         * format allows. */
        uint16_t v = fz_u16(in);
        lens[i] = (v & 0xC000) == 0xC000 ? 0 : (size_t)(v & 0x0FFF) % (ST_FRAME_BYTES_MAX + 1);
        kinds[i] = (v >> 12) & 3;
        a->d_off[i] = a->plain_len;
        a->plain_len += lens[i];
    }
    a->d_off[a->n_frames] = a->plain_len;
    a->plain = malloc(a->plain_len ? a->plain_len : 1);
    if (!a->plain)
        fz_harness("malloc");
    fb_frame_entry frames[ST_FRAMES_MAX];
    memset(frames, 0, sizeof frames);
    for (size_t i = 0; i < a->n_frames; i++) {
        uint8_t *p = a->plain + a->d_off[i];
        st_fill(p, lens[i], kinds[i], &seed, a->plain, a->d_off[i]);
        size_t c;
        uint8_t *cbuf = fz_zstd_frame(p, lens[i], level, &c);
        frames[i].c_size = (uint32_t)c;
        frames[i].d_size = (uint32_t)lens[i];
        /* zstd's content checksum, the frame's last 4 bytes, is the low 32
         * bits of XXH64: exactly what the seek table entry holds. */
        frames[i].checksum = fz_get_le32(cbuf + c - 4);
        st_append(a, cbuf, c);
        free(cbuf);
    }
    a->table_at = a->file_len;
    uint8_t *table;
    size_t table_len;
    fb_error err;
    if (fb_seek_table_encode(frames, a->n_frames, a->checksums, &table, &table_len, &err) != 0)
        fz_harness("fb_seek_table_encode");
    st_append(a, table, table_len);
    free(table);
}

static size_t st_entry_size(const st_archive *a)
{
    return a->checksums ? 12 : 8;
}

/* Position of field k (0 c_size, 1 d_size, 2 checksum) of frame i's seek
 * table entry, if the table is still where it was built. */
static uint8_t *st_field(st_archive *a, size_t i, unsigned k)
{
    size_t at = a->table_at + ST_TABLE_HEADER + i * st_entry_size(a) + 4 * k;
    return at + 4 <= a->file_len ? a->file + at : NULL;
}

/* A new value for a size field: the changes the damage sweep
 * makes, and arbitrary ones. */
static uint32_t st_new_size(uint32_t old, uint32_t v)
{
    switch (v % 10) {
    case 0: return old + 1;
    case 1: return old - 1;
    case 2: return old + 512;
    case 3: return old - 512;
    case 4: return old * 2;
    case 5: return old / 2;
    case 6: return 0;
    case 7: return old + (v >> 4) % 4096;
    case 8: return old - (v >> 4) % 4096;
    default: return v >> 4;
    }
}

/* Start of frame i as the built table placed it, kept inside the frames
 * (bytes cut out earlier may have moved the rest). */
static size_t st_frame_start(const st_archive *a, size_t i, const size_t *c_start)
{
    size_t at = i < a->n_frames ? c_start[i] : a->table_at;
    return at < a->table_at ? at : a->table_at;
}

static void st_damage(st_archive *a, fz_in *in, const size_t *c_start)
{
    unsigned n_ops = fz_u8(in) % (ST_OPS_MAX + 1);
    for (unsigned k = 0; k < n_ops; k++) {
        uint8_t op = fz_u8(in);
        size_t i = fz_u8(in) % a->n_frames;
        uint32_t v = fz_u32(in);
        uint8_t *field;
        if (fz_verbose())
            fprintf(stderr, "damage: op %u on frame %zu, value 0x%08x\n", op % 8u, i, v);
        switch (op % 8) {
        case 0: /* d_size */
        case 1: /* c_size */
            if ((field = st_field(a, i, op % 8 == 0 ? 1 : 0)))
                fz_put_le32(field, st_new_size(fz_get_le32(field), v));
            break;
        case 2: /* checksum changed, or "repaired" to the damaged frame's */
            if (!a->checksums || !(field = st_field(a, i, 2)))
                break;
            if (v & 1) {
                fz_put_le32(field, fz_get_le32(field) ^ (v | 1));
            } else {
                /* The frame's last 4 bytes as the (possibly lying) table
                 * places it: what a careless repair tool would write. */
                uint64_t end = 0;
                for (size_t j = 0; j <= i; j++) {
                    uint8_t *c = st_field(a, j, 0);
                    end += c ? fz_get_le32(c) : 0;
                }
                if (end >= 4 && end <= a->table_at)
                    fz_put_le32(field, fz_get_le32(a->file + end - 4));
            }
            break;
        case 3: /* a bit of the seek table frame */
            a->file[a->table_at + (v >> 3) % (a->file_len - a->table_at)] ^= (uint8_t)(1u << (v & 7));
            break;
        case 4: /* a bit of frame i (its header when v is small) */
        {
            size_t from = st_frame_start(a, i, c_start), to = st_frame_start(a, i + 1, c_start);
            if (to > from)
                a->file[from + (v >> 3) % (to - from)] ^= (uint8_t)(1u << (v & 7));
            break;
        }
        case 5: /* any byte of the file set to a value */
            a->file[(v >> 8) % a->file_len] = (uint8_t)v;
            break;
        case 6: /* cut 1..16 bytes out of frame i, c_size "fixed" to match */
        case 7: /* or insert 1..16 bytes into it */
        {
            size_t from = st_frame_start(a, i, c_start), to = st_frame_start(a, i + 1, c_start);
            size_t n = 1 + (v & 15);
            size_t at = from + (v >> 4) % (to - from + 1);
            if (op % 8 == 6) {
                if (at + n > to)
                    break;
                memmove(a->file + at, a->file + at + n, a->file_len - at - n);
                a->file_len -= n;
                a->table_at -= n;
            } else {
                st_append(a, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", n);
                memmove(a->file + at + n, a->file + at, a->file_len - n - at);
                for (size_t j = 0; j < n; j++)
                    a->file[at + j] = (uint8_t)(v >> (8 + j % 24));
                a->table_at += n;
            }
            if ((field = st_field(a, i, 0)))
                fz_put_le32(field, fz_get_le32(field) + (op % 8 == 6 ? (uint32_t)-n : (uint32_t)n));
            /* Later frames moved: c_start no longer holds for them, which
             * only makes later flips land elsewhere. */
            break;
        }
        }
    }
}

static void st_check(const st_archive *a, uint64_t off, const uint8_t *buf, size_t n,
                     const char *how)
{
    for (size_t j = 0; j < n; j++) {
        uint64_t at = off + j;
        if (at >= a->plain_len)
            fz_fail("archive (structured): %s: byte at %llu returned with rc 0 but the true "
                    "stream ends at %zu",
                    how, (unsigned long long)at, a->plain_len);
        if (buf[j] != a->plain[at])
            fz_fail("archive (structured): %s: WRONG BYTE at offset %llu (0x%02x, truth 0x%02x), "
                    "rc 0",
                    how, (unsigned long long)at, buf[j], a->plain[at]);
    }
}

/* One read of [off, off + len), plain or anchored at 0, checked: documented
 * errors only, clipped at the end, and (when strict) every byte the truth.
 * Returns the rc. */
static int st_one(fb_archive_reader *r, const st_archive *a, uint64_t off, size_t len,
                  bool anchored, bool strict, const char *how)
{
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        fz_harness("malloc");
    size_t got = 0;
    fb_error err;
    fb_error_clear(&err);
    /* Anchored at the start of the stream: the strongest claim the reader
     * makes (no byte served through a size only a header vouches for). */
    int rc = anchored ? fb_archive_reader_pread_anchored(r, buf, len, off, 0, &got, &err)
                      : fb_archive_reader_pread(r, buf, len, off, &got, &err);
    if (fz_verbose())
        fprintf(stderr, "%s: %s [%llu, +%zu): rc %d, %zu bytes %s\n", how,
                anchored ? "pread_anchored" : "pread", (unsigned long long)off, len, rc, got,
                rc ? err.message : "");
    if (rc != 0) {
        fz_check_error(anchored ? "fb_archive_reader_pread_anchored" : "fb_archive_reader_pread",
                       rc, &err, st_allowed);
    } else {
        uint64_t total = fb_archive_reader_uncompressed_size(r);
        size_t want = off >= total ? 0 : (total - off < len ? (size_t)(total - off) : len);
        if (got != want)
            fz_fail("archive (structured): %s [%llu, +%zu) gave %zu bytes, expected %zu",
                    anchored ? "pread_anchored" : "pread", (unsigned long long)off, len, got,
                    want);
        if (strict)
            st_check(a, off, buf, got, how);
    }
    free(buf);
    return rc;
}

/* Reads [off, off + len) both ways. The anchored read must never return a
 * wrong byte; the plain one neither, unless a frame's header lies together
 * with the table (plain_strict false), the case include/fb_archive_reader.h
 * leaves to anchored reads. Returns how many of the two failed. */
static int st_read(fb_archive_reader *r, const st_archive *a, uint64_t off, size_t len,
                   bool plain_strict, const char *how)
{
    int failed = st_one(r, a, off, len, false, plain_strict, how) != 0;
    return failed + (st_one(r, a, off, len, true, true, how) != 0);
}

/* Does some frame pass the header proof (its header declares the table's
 * d_size) while its content is not exactly d_size bytes? Then the plain
 * pread may place later frames wrongly, as documented. Decoded here with
 * zstd directly, independently of the reader. */
static bool st_header_lies(const st_archive *a, const fb_seek_table *t)
{
    static ZSTD_DCtx *dctx; /* kept across runs */
    if (!dctx && !(dctx = ZSTD_createDCtx()))
        fz_harness("ZSTD_createDCtx");
    for (size_t i = 0; i < t->n_frames; i++) {
        const fb_frame_entry *f = &t->frames[i];
        if (f->c_offset + f->c_size > a->file_len)
            return true; /* cannot judge: be lenient with the plain read */
        const uint8_t *in = a->file + f->c_offset;
        if (ZSTD_getFrameContentSize(in, f->c_size) != f->d_size)
            continue; /* the header proof refuses this frame */
        /* Past 1 MiB the decode fails as too small: counted as a lie,
         * which only makes the plain read's judgement lenient. */
        size_t cap = f->d_size < (1u << 20) ? (size_t)f->d_size + 1 : (1u << 20);
        uint8_t *out = malloc(cap);
        if (!out)
            fz_harness("malloc");
        size_t n = ZSTD_decompressDCtx(dctx, out, cap, in, f->c_size);
        free(out);
        if (ZSTD_isError(n) || n != f->d_size)
            return true;
    }
    return false;
}

static int st_stream(fb_archive_reader *r, const st_archive *a)
{
    fb_archive_stream *s = NULL;
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_archive_stream_new(r, &s, &err);
    if (rc != 0) {
        fz_check_error("fb_archive_stream_new", rc, &err, st_allowed);
        return rc;
    }
    uint64_t pos = 0;
    for (;;) {
        const uint8_t *data;
        size_t len;
        rc = fb_archive_stream_next(s, &data, &len, &err);
        if (rc != 0) {
            fz_check_error("fb_archive_stream_next", rc, &err, st_allowed);
            break;
        }
        if (len == 0)
            break;
        st_check(a, pos, data, len, "stream");
        pos += len;
    }
    if (rc == 0 && pos != a->plain_len)
        fz_fail("archive (structured): the stream ended cleanly after %llu of %zu bytes",
                (unsigned long long)pos, a->plain_len);
    fb_archive_stream_free(s);
    return rc;
}

int fuzz_archive_structured(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    uint8_t flags = fz_u8(&in);
    st_archive a;
    memset(&a, 0, sizeof a);
    st_build(&a, &in, flags);
    size_t c_start[ST_FRAMES_MAX];
    {
        size_t c = 0;
        for (size_t i = 0; i < a.n_frames; i++) {
            c_start[i] = c;
            c += fz_get_le32(st_field(&a, i, 0));
        }
    }
    uint8_t *pristine = malloc(a.file_len);
    if (!pristine)
        fz_harness("malloc");
    memcpy(pristine, a.file, a.file_len);
    size_t pristine_len = a.file_len;
    st_damage(&a, &in, c_start);
    bool intact = a.file_len == pristine_len && memcmp(a.file, pristine, a.file_len) == 0;
    free(pristine);

    fb_frame_cache *cache = NULL;
    fb_error err;
    fb_error_clear(&err);
    if ((flags & ST_CACHE) && fb_frame_cache_new(1u << 20, &cache, &err) != 0)
        fz_harness("fb_frame_cache_new");
    if (getenv("FB_FUZZ_DUMP")) {
        /* The damaged archive itself, to reproduce a finding without us. */
        unlink(getenv("FB_FUZZ_DUMP"));
        fz_write_file(getenv("FB_FUZZ_DUMP"), a.file, a.file_len);
    }
    int fd = fz_memfd(a.file, a.file_len);
    fb_archive_reader *r = NULL;
    int rc = fb_archive_reader_open(fd, cache, "structured.tar.zst", &r, &err);
    if (fz_verbose())
        fprintf(stderr, "%zu frames, %zu bytes of plaintext, archive of %zu bytes%s: open rc %d %s\n",
                a.n_frames, a.plain_len, a.file_len, intact ? " (intact)" : "", rc,
                rc ? err.message : "");
    if (rc != 0) {
        if (intact)
            fz_fail("archive (structured): an undamaged archive is refused: %s", err.message);
        fz_check_error("fb_archive_reader_open", rc, &err, st_allowed);
        close(fd);
    } else {
        int failures = 0;
        const fb_seek_table *t = fb_archive_reader_seek_table(r);
        if (fz_verbose()) {
            for (size_t i = 0; i < a.n_frames; i++)
                fprintf(stderr, "true frame %zu: plaintext [%zu, %zu), archive from %zu\n", i,
                        a.d_off[i], a.d_off[i + 1], c_start[i]);
            for (size_t i = 0; i < t->n_frames; i++) {
                /* The content size the frame's own header declares. */
                unsigned long long fcs = ZSTD_getFrameContentSize(
                    a.file + t->frames[i].c_offset,
                    a.file_len - (size_t)t->frames[i].c_offset);
                fprintf(stderr, "table frame %zu: d [%llu, +%u), c [%llu, +%u), header says %lld\n",
                        i, (unsigned long long)t->frames[i].d_offset, t->frames[i].d_size,
                        (unsigned long long)t->frames[i].c_offset, t->frames[i].c_size,
                        (long long)fcs);
            }
        }
        /* Every frame where the reader's table puts it (a lying table shows
         * here), where it truly is, and the whole stream at once. */
        bool plain_strict = !st_header_lies(&a, t);
        for (size_t i = 0; i < t->n_frames && i < 64; i++) {
            /* A byte past the true end is wrong anyway: no need to ask for
             * all of a frame that claims 64 MiB. */
            size_t len = t->frames[i].d_size < a.plain_len + 64 ? t->frames[i].d_size
                                                                : a.plain_len + 64;
            failures += st_read(r, &a, t->frames[i].d_offset, len, plain_strict,
                                "frame by the table");
        }
        for (size_t i = 0; i < a.n_frames; i++)
            failures += st_read(r, &a, a.d_off[i], a.d_off[i + 1] - a.d_off[i], plain_strict,
                                "frame by the truth");
        failures += st_read(r, &a, 0, a.plain_len + 64, plain_strict, "whole stream");
        /* Ranges the input picks: any offset, any length up to 2 frames. */
        for (unsigned k = 0; k < ST_READS_MAX && in.n > 0; k++) {
            uint64_t off = fz_u16(&in) % (a.plain_len + 64);
            size_t len = fz_u16(&in) % (2 * ST_FRAME_BYTES_MAX);
            failures += st_read(r, &a, off, len, plain_strict, "range");
        }
        if ((flags & ST_STREAM) && st_stream(r, &a) != 0)
            failures++;
        if (intact && failures)
            fz_fail("archive (structured): an undamaged archive fails %d reads", failures);
        fb_archive_reader_free(r);
    }
    fb_frame_cache_free(cache);
    free(a.plain);
    free(a.file);
    return 0;
}

FB_FUZZ_ENTRY(fuzz_archive_structured)
