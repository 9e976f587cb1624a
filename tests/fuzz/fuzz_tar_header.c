/* Fuzz target: the tar member proof (core/archive/tar_header.c), which the mount
 * relies on to know that the bytes at a manifest entry's offset belong to
 * that entry.
 *
 * Input, first byte bit 7 set: the pure parsers on raw bytes
 * (fb_tar_header_parse on the next 512 bytes, its checksum made right when
 * bit 0 is set; fb_tar_pax_find on the rest as pax data), checked against
 * their contracts and an independent checksum.
 *
 * Otherwise a recipe: up to 6 entries (files of up to 2 KiB, directories,
 * symlinks, hardlinks; short, long, exactly-100-byte, non-UTF-8, fuzzed and
 * prefix-sharing names) are written with the real fb_archive_writer, the
 * tar stream is read back, damaged as the input says (bits and bytes of a
 * member's header area, names and sizes rewritten with the header checksum
 * "repaired", type flags changed, header blocks copied into another file's
 * data, as a file holding tar headers would), recompressed into a seekable
 * archive and opened with fb_archive_reader_open. Then fb_tar_member_prove
 * is asked about (offset, path, size) triples: the true members, and ones
 * with the offset moved by 512 or to another member, another member's or a
 * truncated path, the name the ustar fields alone give, a size off by one.
 *
 * The property: whenever the proof returns 0, the member whose data starts
 * at that offset really is a regular file of that path and size, as a
 * sequential tar reader (libarchive, which restore and verify use) reads
 * the damaged stream; where libarchive stops before that offset, the truth
 * is what the writer wrote, provided every byte the proof can look at is
 * as written. And undamaged, every regular file written must be proven.
 * Offsets where neither applies (libarchive warned or stopped, and the
 * bytes around changed) are not judged, nor are the two cases the mount
 * leaves to other defences (see th_prove): a copied header whose bytes the
 * content proof refuses, and a forged (path, size) never written. */
#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fb_archive_reader.h"
#include "fb_archive_writer.h"
#include "fb_hash.h"
#include "fb_seek_table.h"
#include "fuzz_util.h"
#include "tar_header_i.h"

#define TH_ENTRIES_MAX 6
#define TH_FILE_MAX 2048
#define TH_OPS_MAX 4
#define TH_QUERIES_MAX 8
#define TH_VIEW_MAX 64
#define TH_NAME_MAX 700
#define BLK FB_TAR_BLOCK

/* ---- the pure parsers ---- */

/* The ustar checksum by the format's definition: the header's bytes summed
 * with the checksum field counted as spaces. */
static unsigned th_checksum(const uint8_t *blk)
{
    unsigned sum = 0;
    for (size_t k = 0; k < BLK; k++)
        sum += (k >= 148 && k < 156) ? ' ' : blk[k];
    return sum;
}

static void th_fix_checksum(uint8_t *blk)
{
    char field[9];
    snprintf(field, sizeof field, "%06o", th_checksum(blk) & 0777777u);
    memcpy(blk + 148, field, 6);
    blk[154] = '\0';
    blk[155] = ' ';
}

static void th_pure(const uint8_t *data, size_t size, bool fix)
{
    uint8_t blk[BLK];
    memset(blk, 0, sizeof blk);
    memcpy(blk, data, size < BLK ? size : BLK);
    /* With fix, the checksum is made right, or the parser would never get
     * past it: the fuzzer cannot solve a sum over 512 bytes. */
    if (fix)
        th_fix_checksum(blk);
    fb_tar_header h;
    bool ok = fb_tar_header_parse(blk, &h);
    if (ok) {
        if (h.name_len >= sizeof h.name || h.name[h.name_len] != '\0' ||
            strlen(h.name) != h.name_len)
            fz_fail("tar header: name of %zu bytes is not a proper string", h.name_len);
        if (memcmp(blk + 257, "ustar\0" "00", 8) != 0)
            fz_fail("tar header: accepted without the ustar magic");
    } else if (memcmp(blk + 257, "ustar\0" "00", 8) == 0 && fix) {
        /* Magic and checksum right (written just above): the only other
         * reason to refuse would be the checksum field itself, which we
         * wrote in the standard form. */
        fz_fail("tar header: a header with the ustar magic and a right checksum is refused");
    }

    /* Pax records: the rest of the input, after the block. */
    const uint8_t *pax = data + (size < BLK ? size : BLK);
    size_t pax_len = size < BLK ? 0 : size - BLK;
    static const char *const keys[] = {"path", "size", "linkpath", "x"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        const uint8_t *v = NULL;
        size_t vlen = 0;
        int r = fb_tar_pax_find(pax, pax_len, keys[k], &v, &vlen);
        if (r < -1 || r > 1)
            fz_fail("pax: fb_tar_pax_find returned %d", r);
        if (r == 1) {
            size_t klen = strlen(keys[k]);
            if (v < pax + klen + 1 || v + vlen > pax + pax_len || v[-1] != '=' ||
                memcmp(v - 1 - klen, keys[k], klen) != 0)
                fz_fail("pax: the value of '%s' is not where a record holds it", keys[k]);
            if (v + vlen >= pax + pax_len || v[vlen] != '\n')
                fz_fail("pax: the value of '%s' does not end its record", keys[k]);
        }
    }
}

/* ---- the archive scenario ---- */

/* One entry as a sequential tar reader (libarchive) sees it. */
typedef struct th_member {
    uint64_t data_off; /* where its data starts in the tar stream */
    uint64_t size;
    char *path;        /* NULL when libarchive could not give one */
    bool regular;      /* a regular file, not a hardlink */
    bool ambiguous;    /* libarchive warned: its name is not judged */
} th_member;

typedef struct th_view {
    th_member m[TH_VIEW_MAX];
    size_t n;
    bool complete;     /* read to the end without an error */
} th_view;

static void th_view_read(const uint8_t *tar, size_t len, th_view *v)
{
    memset(v, 0, sizeof *v);
    struct archive *a = archive_read_new();
    if (!a || archive_read_support_format_tar(a) != ARCHIVE_OK)
        fz_harness("libarchive");
    if (archive_read_open_memory(a, tar, len) != ARCHIVE_OK) {
        archive_read_free(a);
        return;
    }
    while (v->n < TH_VIEW_MAX) {
        struct archive_entry *ae;
        int r = archive_read_next_header(a, &ae);
        if (r == ARCHIVE_EOF) {
            v->complete = true;
            break;
        }
        if (r < ARCHIVE_WARN)
            break;
        th_member *m = &v->m[v->n++];
        /* libarchive has consumed exactly the headers (as in tar_check.c). */
        m->data_off = (uint64_t)archive_filter_bytes(a, 0);
        m->size = archive_entry_size_is_set(ae) ? (uint64_t)archive_entry_size(ae) : 0;
        const char *p = archive_entry_pathname(ae);
        m->path = p ? strdup(p) : NULL;
        m->regular = archive_entry_filetype(ae) == AE_IFREG && !archive_entry_hardlink(ae);
        m->ambiguous = r == ARCHIVE_WARN || !p;
        if (archive_read_data_skip(a) != ARCHIVE_OK)
            break;
    }
    archive_read_free(a);
}

static void th_view_show(const char *what, const th_view *v)
{
    fprintf(stderr, "%s (%s):\n", what, v->complete ? "read to the end" : "libarchive stopped");
    for (size_t i = 0; i < v->n; i++)
        fprintf(stderr, "  data at %llu, %llu bytes, %s%s: %s\n",
                (unsigned long long)v->m[i].data_off, (unsigned long long)v->m[i].size,
                v->m[i].regular ? "file" : "other", v->m[i].ambiguous ? ", ambiguous" : "",
                v->m[i].path ? v->m[i].path : "(no path)");
}

static void th_view_free(th_view *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->m[i].path);
}

/* 1: the view has a regular file (path, size) with data at off; 0: it
 * has something else there or, having read past off, nothing; -1: it
 * cannot say. */
static int th_view_says(const th_view *v, uint64_t off, const char *path, uint64_t size,
                        const th_member **there)
{
    *there = NULL;
    for (size_t i = 0; i < v->n; i++) {
        const th_member *m = &v->m[i];
        if (m->data_off != off)
            continue;
        if (m->ambiguous)
            return -1;
        *there = m;
        return m->regular && strcmp(m->path, path) == 0 && m->size == size;
    }
    if (v->complete || (v->n > 0 && off <= v->m[v->n - 1].data_off))
        return 0;
    return -1;
}

typedef struct th_case {
    uint8_t *tar;     /* the stream as written */
    uint8_t *dmg;     /* the stream damaged */
    size_t len;
    th_view written;  /* libarchive on tar */
    th_view damaged;  /* libarchive on dmg */
    size_t regular[TH_VIEW_MAX]; /* indices of regular files in `written` */
    size_t n_regular;
} th_case;

/* Names that sit on the format's edges: 100 bytes (ustar name), 155 + 100
 * (prefix and name), longer (pax only), non-UTF-8, fuzzed bytes, and one
 * that extends the previous name (prefix confusions). */
static void th_name(char *out, size_t i, unsigned kind, fz_in *in, const char *prev)
{
    switch (kind % 6) {
    case 0:
        snprintf(out, TH_NAME_MAX, "f%zu.txt", i);
        break;
    case 1: { /* long, with directories: 90..600 bytes */
        size_t want = 90 + (size_t)fz_u8(in) * 2, n = 0;
        while (n + 12 < want)
            n += (size_t)snprintf(out + n, TH_NAME_MAX - n, "seg%zu-abcdef/", i);
        snprintf(out + n, TH_NAME_MAX - n, "f%zu", i);
        break;
    }
    case 2:
        snprintf(out, TH_NAME_MAX, "caf\xc3\xa9-%zu-\xff\xfe.bin", i);
        break;
    case 3: /* exactly 100 bytes */
        memset(out, 'x', 100);
        snprintf(out + 95, TH_NAME_MAX - 95, "-%04zu", i);
        break;
    case 4: { /* bytes from the input, one component */
        size_t got;
        const uint8_t *b = fz_bytes(in, fz_u8(in) % 40, &got);
        size_t n = (size_t)snprintf(out, TH_NAME_MAX, "n%zu-", i);
        for (size_t k = 0; k < got; k++)
            out[n++] = (b[k] == 0 || b[k] == '/') ? '_' : (char)b[k];
        out[n] = '\0';
        break;
    }
    default:
        if (prev && strlen(prev) + 8 < TH_NAME_MAX)
            snprintf(out, TH_NAME_MAX, "%s%zu", prev, i);
        else
            snprintf(out, TH_NAME_MAX, "p%zu", i);
        break;
    }
}

/* Writes the recipe's entries with the real writer and returns the tar
 * stream (via the real reader), or NULL when the writer refused them. */
static uint8_t *th_write(fz_in *in, size_t *len_out)
{
    int afd = fz_memfd(NULL, 0);
    fb_archive_writer_options o = {.level = 1, .frame_size = 65536, .threads = 1};
    fb_archive_writer *w = NULL;
    fb_error err;
    if (fb_archive_writer_new(afd, &o, &w, &err) != 0)
        fz_harness("fb_archive_writer_new");
    size_t n = 1 + fz_u8(in) % TH_ENTRIES_MAX;
    char names[TH_ENTRIES_MAX][TH_NAME_MAX];
    long first_file = -1;
    uint64_t seed = fz_u32(in);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint8_t kind = fz_u8(in);
        th_name(names[i], i, fz_u8(in), in, i ? names[i - 1] : NULL);
        unsigned type = kind % 8;
        if (type == 7 && first_file < 0)
            type = 0;
        fb_entry_meta meta = {.mode = 0644, .uid = 1000, .gid = 1000, .mtime = 1800000000,
                              .mtime_nsec = (uint32_t)i};
        if (type == 5) {
            meta.type = FB_ENTRY_DIR;
            meta.mode = 0755;
            rc = fb_archive_writer_add_dir(w, names[i], &meta, &err);
        } else if (type == 6) {
            meta.type = FB_ENTRY_SYMLINK;
            rc = fb_archive_writer_add_symlink(w, names[i], &meta, "f0.txt", &err);
        } else if (type == 7) {
            meta.type = FB_ENTRY_HARDLINK;
            rc = fb_archive_writer_add_hardlink(w, names[i], &meta, names[first_file], &err);
        } else {
            meta.type = FB_ENTRY_FILE;
            meta.size = fz_u16(in) % (TH_FILE_MAX + 1);
            uint8_t *data = malloc(meta.size + 1);
            if (!data)
                fz_harness("malloc");
            for (size_t k = 0; k < meta.size; k++)
                data[k] = (kind & 0x80) ? (uint8_t)('a' + k % 26) : (uint8_t)fz_next(&seed);
            int sfd = fz_memfd(data, meta.size);
            free(data);
            fb_archive_file_result res;
            rc = fb_archive_writer_add_file(w, names[i], &meta, sfd, &res, &err);
            close(sfd);
            if (first_file < 0)
                first_file = (long)i;
        }
    }
    fb_archive_summary sum;
    if (rc == 0)
        rc = fb_archive_writer_finish(w, &sum, &err);
    fb_archive_writer_free(w);
    if (rc != 0) {
        /* Names the writer refuses (it is not under test here). */
        close(afd);
        return NULL;
    }
    fb_archive_reader *r = NULL;
    if (fb_archive_reader_open(afd, NULL, "written", &r, &err) != 0)
        fz_fail("tar: the writer's own archive does not open: %s", err.message);
    size_t len = (size_t)fb_archive_reader_uncompressed_size(r), got = 0;
    uint8_t *tar = malloc(len ? len : 1);
    if (!tar)
        fz_harness("malloc");
    if (fb_archive_reader_pread(r, tar, len, 0, &got, &err) != 0 || got != len)
        fz_fail("tar: the writer's own archive does not read back: %s", err.message);
    fb_archive_reader_free(r);
    *len_out = len;
    return tar;
}

/* Where member j's headers lie in the written stream: from the end of
 * the previous member's data to its own data. */
static void th_header_area(const th_case *c, size_t j, size_t *from, size_t *to)
{
    const th_member *m = &c->written.m[j];
    size_t start = 0;
    if (j > 0) {
        const th_member *p = &c->written.m[j - 1];
        uint64_t data = p->regular ? (p->size + BLK - 1) / BLK * BLK : 0;
        start = (size_t)(p->data_off + data);
    }
    *to = (size_t)m->data_off;
    *from = start < *to ? start : *to;
}

static void th_damage(th_case *c, fz_in *in)
{
    unsigned n_ops = fz_u8(in) % (TH_OPS_MAX + 1);
    for (unsigned k = 0; k < n_ops; k++) {
        uint8_t op = fz_u8(in);
        size_t j = fz_u8(in) % c->written.n;
        uint32_t v = fz_u32(in);
        size_t from, to;
        th_header_area(c, j, &from, &to);
        size_t hdr = to >= BLK ? to - BLK : 0; /* the ustar header of member j */
        if (fz_verbose())
            fprintf(stderr, "damage: op %u on member %zu (headers [%zu, %zu)), value 0x%08x\n",
                    op % 8u, j, from, to, v);
        switch (op % 8) {
        case 0: /* a bit of member j's headers */
            if (to > from)
                c->dmg[from + v / 8 % (to - from)] ^= (uint8_t)(1u << (v & 7));
            break;
        case 1: /* a byte of them */
            if (to > from)
                c->dmg[from + (v >> 8) % (to - from)] = (uint8_t)v;
            break;
        case 2: /* bytes of its ustar name (or prefix), checksum repaired */
        {
            size_t at = hdr + (v % 2 ? 345 + (v >> 1) % 155 : (v >> 1) % 100);
            size_t got;
            const uint8_t *b = fz_bytes(in, 1 + (v >> 16) % 8, &got);
            for (size_t i = 0; i < got && at + i < hdr + BLK; i++)
                c->dmg[at + i] = b[i];
            th_fix_checksum(c->dmg + hdr);
            break;
        }
        case 3: /* the checksum of a block of its headers repaired */
        {
            size_t at = to - from >= BLK ? from + (v % ((to - from) / BLK)) * BLK : hdr;
            th_fix_checksum(c->dmg + at);
            break;
        }
        case 4: /* its ustar size, checksum repaired */
        {
            char field[13];
            uint64_t s = c->written.m[j].size;
            uint64_t ns = (v & 1) ? s + (v >> 1) % 1024 : s - (v >> 1) % 1024;
            snprintf(field, sizeof field, "%011llo", (unsigned long long)(ns & 077777777777ull));
            memcpy(c->dmg + hdr + 124, field, 12);
            th_fix_checksum(c->dmg + hdr);
            break;
        }
        case 5: /* a header block copied into a file's data: a file that
                 * holds tar headers */
        {
            if (c->n_regular == 0)
                break;
            size_t dst_file = (v >> 8) % c->n_regular;
            const th_member *d = &c->written.m[c->regular[dst_file]];
            size_t blocks = (size_t)(d->size / BLK);
            if (blocks == 0 || to - from < BLK)
                break;
            size_t src = from + (v % ((to - from) / BLK)) * BLK;
            size_t dst = (size_t)d->data_off + ((v >> 16) % blocks) * BLK;
            memcpy(c->dmg + dst, c->dmg + src, BLK);
            break;
        }
        case 6: /* its type flag, checksum repaired */
            c->dmg[hdr + 156] = (uint8_t)v;
            th_fix_checksum(c->dmg + hdr);
            break;
        default: /* a bit anywhere */
            c->dmg[(v >> 3) % c->len] ^= (uint8_t)(1u << (v & 7));
            break;
        }
    }
}

/* The damaged stream as a seekable archive, in frames of sizes the input
 * picks, open in a reader. */
static fb_archive_reader *th_reader(const th_case *c, fz_in *in)
{
    uint64_t seed = fz_u16(in);
    size_t cap = c->len / 64 + 4, n = 0, pos = 0;
    fb_frame_entry *frames = calloc(cap, sizeof *frames);
    uint8_t *file = NULL;
    size_t file_len = 0;
    if (!frames)
        fz_harness("calloc");
    while (pos < c->len || n == 0) {
        size_t want = 1 + (size_t)(fz_next(&seed) % 16384);
        if (n + 1 == cap || want > c->len - pos)
            want = c->len - pos;
        size_t clen;
        uint8_t *cf = fz_zstd_frame(c->dmg + pos, want, 1, &clen);
        file = realloc(file, file_len + clen);
        if (!file)
            fz_harness("realloc");
        memcpy(file + file_len, cf, clen);
        file_len += clen;
        frames[n].c_size = (uint32_t)clen;
        frames[n].d_size = (uint32_t)want;
        frames[n].checksum = fz_get_le32(cf + clen - 4);
        free(cf);
        n++;
        pos += want;
    }
    uint8_t *table;
    size_t table_len;
    fb_error err;
    if (fb_seek_table_encode(frames, n, true, &table, &table_len, &err) != 0)
        fz_harness("fb_seek_table_encode");
    free(frames);
    file = realloc(file, file_len + table_len);
    if (!file)
        fz_harness("realloc");
    memcpy(file + file_len, table, table_len);
    file_len += table_len;
    free(table);
    int fd = fz_memfd(file, file_len);
    free(file);
    fb_archive_reader *r = NULL;
    if (fb_archive_reader_open(fd, NULL, "damaged", &r, &err) != 0)
        fz_fail("tar: a freshly compressed archive does not open: %s", err.message);
    return r;
}

/* Is every byte the proof may read before off as written? */
static bool th_window_intact(const th_case *c, uint64_t off)
{
    uint64_t reach = (uint64_t)FB_TAR_PAX_MAX + 2 * BLK;
    size_t from = off > reach ? (size_t)(off - reach) : 0;
    size_t to = off < c->len ? (size_t)off : c->len;
    return from >= to || memcmp(c->tar + from, c->dmg + from, to - from) == 0;
}

/* For a (path, size) the writer wrote as a regular file, what the content
 * proof makes of the bytes at off, given that member's SHA-256: refused
 * (the mount would not open it), or passed, which means the bytes are that
 * member's (a copy elsewhere, identical files): either way no wrong byte.
 * Unknown when no such member was written. */
enum { TH_CONTENT_UNKNOWN, TH_CONTENT_REFUSED, TH_CONTENT_GENUINE };

static int th_content_verdict(fb_archive_reader *r, const th_case *c, uint64_t off,
                              const char *path, uint64_t size)
{
    for (size_t i = 0; i < c->written.n; i++) {
        const th_member *m = &c->written.m[i];
        if (!m->regular || !m->path || strcmp(m->path, path) != 0 || m->size != size ||
            m->data_off + size > c->len)
            continue;
        uint8_t sha[FB_SHA256_LEN];
        fb_error err;
        if (fb_sha256_buffer(c->tar + m->data_off, (size_t)size, sha, &err) != 0)
            fz_harness("fb_sha256_buffer");
        fb_error_clear(&err);
        return fb_tar_member_prove_content(r, off, size, sha, FB_ARCHIVE_READ_CHECKED, path,
                                           "fuzz", &err) != 0
                   ? TH_CONTENT_REFUSED
                   : TH_CONTENT_GENUINE;
    }
    return TH_CONTENT_UNKNOWN;
}

static void th_prove(fb_archive_reader *r, const th_case *c, uint64_t off, const char *path,
                     uint64_t size, bool must_prove)
{
    static const int allowed[] = {FB_ECORRUPT, FB_EIO, FB_ENOMEM, 0};
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_tar_member_prove(r, off, path, size, 0, "fuzz", &err);
    if (fz_verbose())
        fprintf(stderr, "prove(%llu, %s [%zu bytes], %llu): %d %s\n", (unsigned long long)off, path, strlen(path),
                (unsigned long long)size, rc, rc ? err.message : "");
    if (rc != 0) {
        fz_check_error("fb_tar_member_prove", rc, &err, allowed);
        if (must_prove)
            fz_fail("tar: the genuine member %.200s at %llu (%llu bytes) is not proven: %s", path,
                    (unsigned long long)off, (unsigned long long)size, err.message);
        return;
    }
    const th_member *there;
    int truth = th_view_says(&c->damaged, off, path, size, &there);
    if (truth < 0 && th_window_intact(c, off))
        truth = th_view_says(&c->written, off, path, size, &there);
    /* A header proof is local: a copy of a member's header inside another
     * file's data passes it. The mount then also proves the content of a
     * file it can read whole (fb_tar_member_prove_content, every file
     * here): for a (path, size) that was written, the bytes at off must
     * hash as that member's, else the open is refused, which is fine. */
    if (truth == 0 && th_content_verdict(r, c, off, path, size) != TH_CONTENT_UNKNOWN)
        return;
    /* A (path, size) that was never written can only be asked for by a
     * manifest that was forged too; with headers rewritten around it and
     * their checksums repaired, the stream forges it consistently, which no
     * local proof can tell (SECURITY.md: a consistent forgery is out of
     * scope; the content proof checks what the manifest vouches for). Such
     * a query is judged only where the proof's view is as written. */
    if (truth == 0 && !th_window_intact(c, off))
        return;
    if (truth == 0 && there)
        fz_fail("tar: proven that the data at %llu is %.300s (%llu bytes), but a tar reader "
                "reads %s %.300s (%llu bytes) there",
                (unsigned long long)off, path, (unsigned long long)size,
                there->regular ? "the file" : "a non-file", there->path,
                (unsigned long long)there->size);
    if (truth == 0)
        fz_fail("tar: proven that the data at %llu is %.300s (%llu bytes), but no member's data "
                "starts there",
                (unsigned long long)off, path, (unsigned long long)size);
}

/* The name the ustar fields alone give for the header ending at off
 * (prefix "/" name), whatever the pax header says. */
static void th_ustar_name(const th_case *c, uint64_t off, char *out)
{
    out[0] = '\0';
    if (off < BLK || off > c->len)
        return;
    const uint8_t *h = c->dmg + off - BLK;
    size_t plen = strnlen((const char *)h + 345, 155), nlen = strnlen((const char *)h, 100);
    size_t n = 0;
    if (plen) {
        memcpy(out, h + 345, plen);
        n = plen;
        out[n++] = '/';
    }
    memcpy(out + n, h, nlen);
    out[n + nlen] = '\0';
}

static void th_queries(fb_archive_reader *r, const th_case *c, fz_in *in)
{
    unsigned n = 1 + fz_u8(in) % TH_QUERIES_MAX;
    for (unsigned q = 0; q < n && c->n_regular; q++) {
        const th_member *m = &c->written.m[c->regular[fz_u8(in) % c->n_regular]];
        const th_member *o = &c->written.m[c->regular[fz_u8(in) % c->n_regular]];
        uint8_t how = fz_u8(in), arg = fz_u8(in);
        uint64_t off = m->data_off, size = m->size;
        char path[TH_NAME_MAX + 2];
        snprintf(path, sizeof path, "%s", m->path);
        switch (how % 6) {
        case 1: off += BLK; break;
        case 2: off -= off >= BLK ? BLK : 0; break;
        case 3: off += (uint64_t)(int64_t)(int8_t)arg * BLK; break;
        case 4: off = o->data_off; break;
        case 5: off += 1; break;
        default: break;
        }
        switch (how / 6 % 6) {
        case 1: snprintf(path, sizeof path, "%s", o->path); break;
        case 2: path[arg % (strlen(path) + 1)] = '\0'; break;
        case 3: th_ustar_name(c, off, path); break;
        case 4: if (path[0]) path[arg % strlen(path)] ^= (char)(1 + arg % 127); break;
        case 5: strcat(path, "x"); break;
        default: break;
        }
        switch (how / 36 % 5) {
        case 1: size++; break;
        case 2: size--; break;
        case 3: size = o->size; break;
        case 4: size += BLK; break;
        default: break;
        }
        th_prove(r, c, off, path, size, false);
    }
}

int fuzz_tar_header(const uint8_t *data, size_t size)
{
    if (size > 0 && (data[0] & 0x80)) {
        th_pure(data + 1, size - 1, data[0] & 1);
        return 0;
    }
    fz_in in = {data, size};
    (void)fz_u8(&in);
    th_case c;
    memset(&c, 0, sizeof c);
    c.tar = th_write(&in, &c.len);
    if (!c.tar)
        return 0;
    th_view_read(c.tar, c.len, &c.written);
    if (!c.written.complete)
        fz_fail("tar: libarchive cannot read the writer's stream");
    for (size_t i = 0; i < c.written.n; i++)
        if (c.written.m[i].regular && !c.written.m[i].ambiguous)
            c.regular[c.n_regular++] = i;

    c.dmg = malloc(c.len ? c.len : 1);
    if (!c.dmg)
        fz_harness("malloc");
    memcpy(c.dmg, c.tar, c.len);
    if (c.written.n > 0)
        th_damage(&c, &in);
    bool intact = memcmp(c.tar, c.dmg, c.len) == 0;
    th_view_read(c.dmg, c.len, &c.damaged);
    if (fz_verbose()) {
        th_view_show("written", &c.written);
        th_view_show(intact ? "undamaged" : "damaged", &c.damaged);
    }
    if (getenv("FB_FUZZ_DUMP")) {
        /* The damaged tar stream, to look at with tar tvf. */
        unlink(getenv("FB_FUZZ_DUMP"));
        fz_write_file(getenv("FB_FUZZ_DUMP"), c.dmg, c.len);
    }

    fb_archive_reader *r = th_reader(&c, &in);
    /* Undamaged, every regular file the writer wrote is proven. */
    if (intact)
        for (size_t i = 0; i < c.n_regular; i++) {
            const th_member *m = &c.written.m[c.regular[i]];
            th_prove(r, &c, m->data_off, m->path, m->size, true);
        }
    th_queries(r, &c, &in);

    fb_archive_reader_free(r);
    th_view_free(&c.written);
    th_view_free(&c.damaged);
    free(c.tar);
    free(c.dmg);
    return 0;
}

FB_FUZZ_ENTRY(fuzz_tar_header)
