/* Fuzz target: the seek table parser, input = a whole archive file (the
 * table is read from its end). Both entry points (fb_seek_table_parse from
 * memory, fb_seek_table_read_fd from a file) must agree; an accepted table
 * must describe the file exactly (frames back to back from offset 0, the
 * table right after them, no frame over the caps), encode back to the very
 * bytes it was read from, and map every decompressed offset to the frame
 * that holds it. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fb_seek_table.h"
#include "fuzz_util.h"

static void seek_table_check(const fb_seek_table *t, const uint8_t *file, size_t size)
{
    uint64_t c = 0, d = 0;
    for (size_t i = 0; i < t->n_frames; i++) {
        const fb_frame_entry *f = &t->frames[i];
        if (f->c_offset != c || f->d_offset != d)
            fz_fail("seek table: frame %zu is not placed right after the frames before it", i);
        if (f->c_size == 0 || f->d_size > FB_FRAME_DSIZE_MAX)
            fz_fail("seek table: frame %zu sizes out of bounds", i);
        c += f->c_size;
        d += f->d_size;
    }
    if (c != t->c_frames_size || d != t->d_size || c + t->table_size != size ||
        t->n_frames > FB_SEEK_FRAMES_MAX)
        fz_fail("seek table: totals do not describe the file");

    /* The bytes we were given, from the table start, are what the encoder
     * writes for these frames, except the two descriptor bits the format
     * leaves unused. */
    uint8_t *enc = NULL;
    size_t enc_len = 0;
    fb_error err;
    if (fb_seek_table_encode(t->frames, t->n_frames, t->has_checksums, &enc, &enc_len, &err) != 0)
        fz_fail("seek table: accepted table cannot be encoded: %s", err.message);
    const uint8_t *orig = file + t->c_frames_size;
    if (enc_len != t->table_size)
        fz_fail("seek table: encodes to %zu bytes, read from %llu", enc_len,
                (unsigned long long)t->table_size);
    size_t desc = enc_len - 5; /* footer: count (4), descriptor (1), magic (4) */
    for (size_t i = 0; i < enc_len; i++) {
        uint8_t mask = i == desc ? 0xFC : 0xFF;
        if ((enc[i] & mask) != (orig[i] & mask))
            fz_fail("seek table: byte %zu of the table reads back differently", i);
    }
    free(enc);

    /* fb_seek_table_find at every frame edge and just around it. */
    for (size_t i = 0; i < t->n_frames && i < 4096; i++) {
        const fb_frame_entry *f = &t->frames[i];
        uint64_t probes[3] = {f->d_offset, f->d_offset + f->d_size - 1, f->d_offset + f->d_size};
        for (int k = 0; k < 3; k++) {
            uint64_t off = probes[k];
            if (f->d_size == 0 && k < 2)
                continue;
            size_t j = fb_seek_table_find(t, off);
            if (off >= t->d_size) {
                if (j != t->n_frames)
                    fz_fail("seek table: offset %llu past the end maps to frame %zu",
                            (unsigned long long)off, j);
                continue;
            }
            if (j >= t->n_frames || off < t->frames[j].d_offset ||
                off - t->frames[j].d_offset >= t->frames[j].d_size)
                fz_fail("seek table: offset %llu maps to frame %zu, which does not hold it",
                        (unsigned long long)off, j);
        }
    }
}

int fuzz_seek_table(const uint8_t *data, size_t size)
{
    static const int allowed[] = {FB_ECORRUPT, FB_ENOMEM, 0};
    fb_seek_table a, b;
    fb_seek_table_init(&a);
    fb_seek_table_init(&b);
    fb_error ea, eb;
    fb_error_clear(&ea);
    fb_error_clear(&eb);
    int ra = fb_seek_table_parse(data, size, "archive", &a, &ea);
    int fd = fz_memfd(data, size);
    int rb = fb_seek_table_read_fd(fd, size, "archive", &b, &eb);
    close(fd);
    if (ra != rb)
        fz_fail("seek table: parse says %d (%s), read_fd says %d (%s)", ra, ea.message, rb,
                eb.message);
    if (ra != 0) {
        fz_check_error("fb_seek_table_parse", ra, &ea, allowed);
        fz_check_error("fb_seek_table_read_fd", rb, &eb, allowed);
        if (strcmp(ea.message, eb.message) != 0)
            fz_fail("seek table: the two readers refuse for different reasons: %s / %s",
                    ea.message, eb.message);
    } else {
        if (a.n_frames != b.n_frames || a.has_checksums != b.has_checksums ||
            a.d_size != b.d_size || a.table_size != b.table_size)
            fz_fail("seek table: parse and read_fd read different tables");
        for (size_t i = 0; i < a.n_frames; i++)
            if (a.frames[i].c_size != b.frames[i].c_size ||
                a.frames[i].d_size != b.frames[i].d_size ||
                a.frames[i].checksum != b.frames[i].checksum)
                fz_fail("seek table: parse and read_fd differ at frame %zu", i);
        seek_table_check(&a, data, size);
    }
    fb_seek_table_fini(&a);
    fb_seek_table_fini(&b);
    return 0;
}

FB_FUZZ_ENTRY(fuzz_seek_table)
