/* Unit tests of the archive writer: the seekable .tar.zst it produces is
 * checked byte by byte (our own zstd decode and seek-table parse), through
 * the archive reader, and with the real zstd, GNU tar and bsdtar. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include "fbtest.h"
#include "fb_archive_reader.h"
#include "fb_archive_writer.h"
#include "fb_hash.h"
#include "fb_seek_table.h"
#include "frame_ring_i.h"

#define SMALL_FRAME 65536u

/* ---- helpers ---- */

static char *path_join(const char *a, const char *b)
{
    size_t n = strlen(a) + 1 + strlen(b) + 1;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

static uint8_t *read_all(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return NULL;
    }
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    *len = got;
    return buf;
}

static void write_file(const char *path, const uint8_t *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror(path);
        exit(2);
    }
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n <= 0) {
            perror(path);
            exit(2);
        }
        off += (size_t)n;
    }
    close(fd);
}

/* Runs a shell command (paths we build contain no shell metacharacters);
 * returns its exit status, or -1 if it did not exit normally. */
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void meta_from_stat(const struct stat *st, fb_entry_type type, fb_entry_meta *m)
{
    memset(m, 0, sizeof *m);
    m->type = type;
    m->mode = st->st_mode & 07777;
    m->uid = st->st_uid;
    m->gid = st->st_gid;
    m->mtime = st->st_mtim.tv_sec;
    m->mtime_nsec = (uint32_t)st->st_mtim.tv_nsec;
    m->size = type == FB_ENTRY_FILE ? (uint64_t)st->st_size : 0;
}

static void set_mtime(const char *path, time_t sec, long nsec, bool nofollow)
{
    struct timespec ts[2] = {{sec, nsec}, {sec, nsec}};
    if (utimensat(AT_FDCWD, path, ts, nofollow ? AT_SYMLINK_NOFOLLOW : 0) != 0) {
        perror(path);
        exit(2);
    }
}

static fb_archive_writer_options opts_of(int level, uint64_t frame_size, unsigned threads)
{
    fb_archive_writer_options o;
    memset(&o, 0, sizeof o);
    o.level = level;
    o.frame_size = frame_size;
    o.threads = threads;
    return o;
}

/* The seek table as the test parses it, independently of core/archive/seek_table.c. */
typedef struct parsed_table {
    uint32_t n;
    uint32_t *c_size, *d_size, *checksum;
    uint64_t table_size;
} parsed_table;

static bool parse_table(const uint8_t *f, size_t len, parsed_table *t)
{
    memset(t, 0, sizeof *t);
    if (len < 9 + 8)
        return false;
    const uint8_t *foot = f + len - 9;
    if (le32(foot + 5) != 0x8F92EAB1u || (foot[4] & 0x80) == 0 || (foot[4] & 0x7c) != 0)
        return false;
    t->n = le32(foot);
    t->table_size = 8 + (uint64_t)t->n * 12 + 9;
    if (t->table_size > len)
        return false;
    const uint8_t *hdr = f + len - t->table_size;
    if (le32(hdr) != 0x184D2A5Eu || le32(hdr + 4) != t->table_size - 8)
        return false;
    t->c_size = calloc(t->n + 1, 4);
    t->d_size = calloc(t->n + 1, 4);
    t->checksum = calloc(t->n + 1, 4);
    for (uint32_t i = 0; i < t->n; i++) {
        const uint8_t *e = hdr + 8 + (size_t)i * 12;
        t->c_size[i] = le32(e);
        t->d_size[i] = le32(e + 4);
        t->checksum[i] = le32(e + 8);
    }
    return true;
}

static void free_table(parsed_table *t)
{
    free(t->c_size);
    free(t->d_size);
    free(t->checksum);
}

/* Decompresses the whole archive (skippable frames are skipped by zstd). */
static uint8_t *decompress_all(const uint8_t *f, size_t len, size_t expect, size_t *out_len)
{
    uint8_t *out = malloc(expect + 1);
    size_t r = ZSTD_decompress(out, expect + 1, f, len);
    if (ZSTD_isError(r)) {
        fprintf(stderr, "ZSTD_decompress: %s\n", ZSTD_getErrorName(r));
        free(out);
        return NULL;
    }
    *out_len = r;
    return out;
}

/* archive_writer.c's SMALL_FRAME: a file smaller than this starts a frame
 * once the frame being filled holds this much. */
#define WRITER_SMALL_FRAME (32u * 1024)

/* Whether the tar stream of archive f has, at stream offset off, the
 * headers of a regular file smaller than WRITER_SMALL_FRAME (a pax header, then
 * its ustar header). */
static bool starts_small_member(const uint8_t *f, size_t len, size_t d_size, uint64_t off)
{
    size_t n = 0;
    uint8_t *d = decompress_all(f, len, d_size, &n);
    bool ok = false;
    if (d && off + 512 <= n) {
        const uint8_t *h = d + off;
        if (h[156] == 'x') { /* skip the pax header and its data blocks */
            uint64_t psize = strtoull((const char *)h + 124, NULL, 8);
            h += 512 + (psize + 511) / 512 * 512;
        }
        uint64_t size = strtoull((const char *)h + 124, NULL, 8);
        ok = h + 512 <= d + n && (h[156] == '0' || h[156] == '\0') && size < WRITER_SMALL_FRAME &&
             memcmp(h + 257, "ustar", 5) == 0;
    }
    free(d);
    return ok;
}

/* Checks everything about the file layout that does not need the source. */
static void check_layout(const char *archive, const fb_archive_summary *sum, uint64_t frame_size)
{
    size_t len = 0;
    uint8_t *f = read_all(archive, &len);
    REQUIRE(f);
    CHECK_EQ_INT(len, sum->compressed_size);

    uint8_t digest[FB_SHA256_LEN];
    REQUIRE(fb_sha256_buffer(f, len, digest, NULL) == 0);
    CHECK(memcmp(digest, sum->sha256, FB_SHA256_LEN) == 0);

    parsed_table t;
    bool ok = parse_table(f, len, &t);
    CHECK(ok);
    if (!ok) {
        free(f);
        return;
    }
    CHECK_EQ_INT(t.n, sum->frames);
    CHECK(t.n >= 1);
    uint64_t c_sum = 0, d_sum = 0;
    for (uint32_t i = 0; i < t.n; i++) {
        const uint8_t *frame = f + c_sum;
        CHECK(t.d_size[i] > 0);
        CHECK(t.d_size[i] <= frame_size);
        /* Frames are cut at exactly frame_size, or end early right before
         * a small file's headers once they hold WRITER_SMALL_FRAME bytes. */
        if (i + 1 < t.n && t.d_size[i] != frame_size) {
            CHECK(t.d_size[i] >= WRITER_SMALL_FRAME);
            CHECK(starts_small_member(f, len, sum->uncompressed_size, d_sum + t.d_size[i]));
        }
        /* Each entry describes exactly one whole zstd frame. */
        CHECK_EQ_INT(le32(frame), 0xFD2FB528u);
        CHECK_EQ_INT(ZSTD_findFrameCompressedSize(frame, len - c_sum), t.c_size[i]);
        CHECK_EQ_INT(ZSTD_getFrameContentSize(frame, t.c_size[i]), t.d_size[i]);
        CHECK_EQ_INT(le32(frame + t.c_size[i] - 4), t.checksum[i]);
        c_sum += t.c_size[i];
        d_sum += t.d_size[i];
    }
    CHECK_EQ_INT(c_sum + t.table_size, len);
    CHECK_EQ_INT(d_sum, sum->uncompressed_size);
    CHECK_EQ_INT(d_sum % 512, 0);

    /* The project's own seek-table reader agrees. */
    int fd = open(archive, O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    fb_seek_table st;
    fb_seek_table_init(&st);
    fb_error err;
    fb_error_clear(&err);
    CHECK(fb_seek_table_read_fd(fd, len, archive, &st, &err) == 0);
    if (!err.code) {
        CHECK_EQ_INT(st.n_frames, t.n);
        CHECK(st.has_checksums);
        CHECK_EQ_INT(st.d_size, sum->uncompressed_size);
        for (size_t i = 0; i < st.n_frames && i < t.n; i++)
            CHECK_EQ_INT(st.frames[i].checksum, t.checksum[i]);
    } else {
        fprintf(stderr, "seek table: %s\n", err.message);
    }
    fb_seek_table_fini(&st);
    close(fd);
    free_table(&t);
    free(f);
}

/* ---- a source tree with every kind of entry ---- */

typedef struct src_entry {
    const char *rel; /* path inside the tree (raw bytes) */
    fb_entry_type type;
    const char *target; /* symlink target / hardlink's file */
    size_t size;
    int compressible;
    time_t mtime;
    long nsec;
    /* filled when written */
    fb_archive_file_result res;
} src_entry;

static char long_component[256]; /* 255 'c's */
static char deep_path[4000];
static char deep_file[4096];

static void make_names(void)
{
    memset(long_component, 'c', 255);
    long_component[255] = '\0';
    /* 30 directories of 120 bytes: a path of more than 3600 bytes. */
    size_t off = 0;
    for (int i = 0; i < 30; i++) {
        if (i)
            deep_path[off++] = '/';
        memset(deep_path + off, 'a' + i % 26, 120);
        off += 120;
    }
    deep_path[off] = '\0';
    snprintf(deep_file, sizeof deep_file, "%s/leaf.txt", deep_path);
}

static src_entry *tree_entries(size_t *n)
{
    make_names();
    static src_entry e[] = {
        {"empty", FB_ENTRY_FILE, NULL, 0, 1, 1700000000, 0, {0}},
        {"exact", FB_ENTRY_FILE, NULL, SMALL_FRAME, 1, 1700000001, 123456789, {0}},
        {"multi", FB_ENTRY_FILE, NULL, 300001, 1, 1700000002, 1, {0}},
        {"random.bin", FB_ENTRY_FILE, NULL, 200000, 0, 1700000003, 999999999, {0}},
        {"sub", FB_ENTRY_DIR, NULL, 0, 0, 1600000000, 500000000, {0}},
        {"sub/nested.txt", FB_ENTRY_FILE, NULL, 777, 1, 1700000004, 42, {0}},
        {"sub/hard", FB_ENTRY_HARDLINK, "multi", 0, 0, 0, 0, {0}},
        {"link_out", FB_ENTRY_SYMLINK, "/etc/shadow", 0, 0, 1700000005, 5, {0}},
        {"with space.txt", FB_ENTRY_FILE, NULL, 10, 1, 1700000006, 600000000, {0}},
        {"new\nline", FB_ENTRY_FILE, NULL, 11, 1, 1700000007, 7, {0}},
        {"bad\xff\xfe name", FB_ENTRY_FILE, NULL, 12, 1, 1700000008, 8, {0}},
        {"e\xcc\x81-nfd", FB_ENTRY_FILE, NULL, 13, 1, 1700000009, 9, {0}},
        {"cesu\xed\xa0\xbd\xed\xb8\x80", FB_ENTRY_FILE, NULL, 14, 1, 1700000010, 10, {0}},
        {"old", FB_ENTRY_FILE, NULL, 15, 1, -5, 250000000, {0}},
        {long_component, FB_ENTRY_FILE, NULL, 16, 1, 1700000011, 11, {0}},
        {"deep", FB_ENTRY_DIR, NULL, 0, 0, 1700000012, 0, {0}},
        {deep_file, FB_ENTRY_FILE, NULL, 1000, 1, 1700000013, 13, {0}},
    };
    *n = sizeof e / sizeof e[0];
    for (size_t i = 0; i < *n; i++)
        memset(&e[i].res, 0, sizeof e[i].res);
    return e;
}

static uint8_t *entry_data(const src_entry *e)
{
    uint8_t *d = malloc(e->size + 1);
    fbtest_fill(d, e->size, (uint64_t)(uintptr_t)e->size * 31 + (uint64_t)strlen(e->rel),
                e->compressible);
    return d;
}

static void mkdir_p(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    }
    mkdir(buf, 0755);
}

static void build_tree(const char *root, src_entry *e, size_t n)
{
    mkdir_p(root);
    char *deep = path_join(root, deep_path);
    mkdir_p(deep);
    free(deep);
    for (size_t i = 0; i < n; i++) {
        char *p = path_join(root, e[i].rel);
        switch (e[i].type) {
        case FB_ENTRY_FILE: {
            uint8_t *d = entry_data(&e[i]);
            write_file(p, d, e[i].size);
            free(d);
            set_mtime(p, e[i].mtime, e[i].nsec, false);
            break;
        }
        case FB_ENTRY_DIR:
            mkdir(p, 0750);
            break;
        case FB_ENTRY_SYMLINK:
            if (symlink(e[i].target, p) != 0) {
                perror(p);
                exit(2);
            }
            set_mtime(p, e[i].mtime, e[i].nsec, true);
            break;
        case FB_ENTRY_HARDLINK: {
            char *t = path_join(root, e[i].target);
            if (link(t, p) != 0) {
                perror(p);
                exit(2);
            }
            free(t);
            break;
        }
        }
        free(p);
    }
    /* Directory mtimes last: creating entries inside changes them. */
    for (size_t i = 0; i < n; i++) {
        if (e[i].type == FB_ENTRY_DIR) {
            char *p = path_join(root, e[i].rel);
            set_mtime(p, e[i].mtime, e[i].nsec, false);
            free(p);
        }
    }
}

/* Writes the tree's entries in order into archive; returns 0 or the error. */
static int write_tree(const char *root, src_entry *e, size_t n, const char *archive,
                      const fb_archive_writer_options *o, fb_archive_summary *sum)
{
    int afd = open(archive, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (afd < 0)
        return -1;
    fb_error err;
    fb_error_clear(&err);
    fb_archive_writer *w = NULL;
    int rc = fb_archive_writer_new(afd, o, &w, &err);
    for (size_t i = 0; !rc && i < n; i++) {
        char *p = path_join(root, e[i].rel);
        struct stat st;
        if (lstat(p, &st) != 0) {
            perror(p);
            exit(2);
        }
        fb_entry_meta m;
        meta_from_stat(&st, e[i].type, &m);
        switch (e[i].type) {
        case FB_ENTRY_FILE: {
            int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
            rc = fb_archive_writer_add_file(w, e[i].rel, &m, fd, &e[i].res, &err);
            close(fd);
            break;
        }
        case FB_ENTRY_DIR:
            rc = fb_archive_writer_add_dir(w, e[i].rel, &m, &err);
            break;
        case FB_ENTRY_SYMLINK:
            rc = fb_archive_writer_add_symlink(w, e[i].rel, &m, e[i].target, &err);
            break;
        case FB_ENTRY_HARDLINK:
            m.size = (uint64_t)st.st_size;
            rc = fb_archive_writer_add_hardlink(w, e[i].rel, &m, e[i].target, &err);
            break;
        }
        free(p);
    }
    if (!rc)
        rc = fb_archive_writer_finish(w, sum, &err);
    if (rc)
        fprintf(stderr, "write_tree: %s\n", err.message);
    fb_archive_writer_free(w);
    close(afd);
    return rc;
}

static bool same_bytes(const char *path, const uint8_t *want, size_t len)
{
    size_t got_len = 0;
    uint8_t *got = read_all(path, &got_len);
    bool same = got && got_len == len && memcmp(got, want, len) == 0;
    free(got);
    return same;
}

/* ---- tests ---- */

static void test_options_validated(void)
{
    struct {
        int level;
        uint64_t frame;
        unsigned threads;
        int expect;
    } cases[] = {
        {0, 1 << 20, 1, FB_EINVAL},        {20, 1 << 20, 1, FB_EINVAL},
        {-3, 1 << 20, 1, FB_EINVAL},       {3, 65535, 1, FB_EINVAL},
        {3, 67108865, 1, FB_EINVAL},       {3, 0, 1, FB_EINVAL},
        {3, 1 << 20, 257, FB_EINVAL},      {1, 65536, 1, 0},
        {19, 67108864, 256, 0},            {3, 1 << 20, 0, 0},
    };
    char *dir = fbtest_tempdir();
    char *a = path_join(dir, "a.tar.zst");
    int fd = open(a, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fb_archive_writer_options o = opts_of(cases[i].level, cases[i].frame, cases[i].threads);
        o.name = "opts.tar.zst";
        fb_archive_writer *w = NULL;
        fb_error err;
        fb_error_clear(&err);
        int rc = fb_archive_writer_new(fd, &o, &w, &err);
        CHECK_EQ_INT(rc, cases[i].expect);
        if (rc) {
            CHECK(w == NULL);
            CHECK_EQ_INT(err.code, rc);
            CHECK(strstr(err.message, "opts.tar.zst") != NULL);
        } else {
            CHECK(w != NULL);
        }
        fb_archive_writer_free(w);
    }
    close(fd);

    long online = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned expect = online < 1 ? 1 : online > 64 ? 64 : (unsigned)online;
    CHECK_EQ_INT(fb_archive_writer_resolve_threads(0), expect);
    CHECK_EQ_INT(fb_archive_writer_resolve_threads(1), 1);
    CHECK_EQ_INT(fb_archive_writer_resolve_threads(7), 7);
    fb_archive_writer_free(NULL);
    free(a);
    fbtest_rmtree(dir);
}

/* The full tree: layout, offsets, SHA-256s, reader round trip, and the
 * external tools. */
static void test_tree_roundtrip_and_interop(void)
{
    char *dir = fbtest_tempdir();
    char *src = path_join(dir, "src");
    char *archive = path_join(dir, "archive.tar.zst");
    size_t n = 0;
    src_entry *e = tree_entries(&n);
    build_tree(src, e, n);

    fb_archive_writer_options o = opts_of(3, SMALL_FRAME, 2);
    fb_archive_summary sum;
    memset(&sum, 0, sizeof sum);
    REQUIRE(write_tree(src, e, n, archive, &o, &sum) == 0);
    CHECK(sum.frames > 8); /* several files span frames */
    check_layout(archive, &sum, SMALL_FRAME);

    /* Offsets and SHA-256s against our own full decode. */
    size_t alen = 0;
    uint8_t *abytes = read_all(archive, &alen);
    REQUIRE(abytes);
    size_t tlen = 0;
    uint8_t *tar = decompress_all(abytes, alen, (size_t)sum.uncompressed_size, &tlen);
    REQUIRE(tar);
    CHECK_EQ_INT(tlen, sum.uncompressed_size);
    /* The stream ends with the two zero blocks of a tar trailer. */
    static const uint8_t zeros[1024];
    CHECK(tlen >= 1024 && memcmp(tar + tlen - 1024, zeros, 1024) == 0);
    for (size_t i = 0; i < n; i++) {
        if (e[i].type != FB_ENTRY_FILE)
            continue;
        uint8_t *d = entry_data(&e[i]);
        CHECK(e[i].res.offset % 512 == 0);
        CHECK(e[i].res.offset + e[i].size <= tlen);
        if (e[i].res.offset + e[i].size <= tlen)
            CHECK(memcmp(tar + e[i].res.offset, d, e[i].size) == 0);
        uint8_t digest[FB_SHA256_LEN];
        fb_sha256_buffer(d, e[i].size, digest, NULL);
        CHECK(memcmp(digest, e[i].res.sha256, FB_SHA256_LEN) == 0);
        /* No fingerprint unless asked for. */
        static const uint8_t no_fp[FB_XXH128_LEN];
        CHECK(memcmp(e[i].res.fingerprint, no_fp, FB_XXH128_LEN) == 0);
        free(d);
    }

    /* Random ranges of every file through the archive reader. */
    int rfd = open(archive, O_RDONLY | O_CLOEXEC);
    REQUIRE(rfd >= 0);
    fb_archive_reader *r = NULL;
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_archive_reader_open(rfd, NULL, archive, &r, &err);
    CHECK_EQ_INT(rc, 0);
    if (rc) {
        fprintf(stderr, "reader: %s\n", err.message);
        close(rfd);
    } else {
        CHECK_EQ_INT(fb_archive_reader_uncompressed_size(r), sum.uncompressed_size);
        CHECK_EQ_INT(fb_archive_reader_file_size(r), sum.compressed_size);
        uint64_t seed = 12345;
        for (size_t i = 0; i < n; i++) {
            if (e[i].type != FB_ENTRY_FILE || e[i].size == 0)
                continue;
            uint8_t *d = entry_data(&e[i]);
            uint8_t *buf = malloc(e[i].size);
            /* whole file, then random slices */
            size_t got = 0;
            rc = fb_archive_reader_pread(r, buf, e[i].size, e[i].res.offset, &got, &err);
            CHECK(rc == 0 && got == e[i].size && memcmp(buf, d, e[i].size) == 0);
            for (int k = 0; k < 20; k++) {
                size_t off = (size_t)(fbtest_rand(&seed) % e[i].size);
                size_t len = 1 + (size_t)(fbtest_rand(&seed) % (e[i].size - off));
                rc = fb_archive_reader_pread(r, buf, len, e[i].res.offset + off, &got, &err);
                CHECK(rc == 0 && got == len && memcmp(buf, d + off, len) == 0);
            }
            free(buf);
            free(d);
        }
        /* The sequential stream yields the same tar bytes and file hash. */
        fb_archive_stream *as = NULL;
        CHECK(fb_archive_stream_new(r, &as, &err) == 0);
        if (as) {
            size_t pos = 0;
            const uint8_t *chunk;
            size_t clen = 0;
            bool same = true;
            while ((rc = fb_archive_stream_next(as, &chunk, &clen, &err)) == 0 && clen) {
                same = same && pos + clen <= tlen && memcmp(tar + pos, chunk, clen) == 0;
                pos += clen;
            }
            CHECK_EQ_INT(rc, 0);
            CHECK(same && pos == tlen);
            uint8_t digest[FB_SHA256_LEN];
            CHECK(fb_archive_stream_file_sha256(as, digest, &err) == 0);
            CHECK(memcmp(digest, sum.sha256, FB_SHA256_LEN) == 0);
            fb_archive_stream_free(as);
        }
        fb_archive_reader_free(r);
    }

    /* zstd, GNU tar and bsdtar read it unchanged. */
    CHECK_EQ_INT(run("zstd -q -t '%s'", archive), 0);
    char *out = path_join(dir, "out");
    REQUIRE(mkdir(out, 0700) == 0);
    CHECK_EQ_INT(run("cd '%s' && tar --zstd -xf '%s' 2>'%s/tar.err'", out, archive, dir), 0);
    /* GNU tar's only complaints: the hdrcharset keyword of non-ASCII names and
     * the pre-1970 mtime of "old". */
    CHECK_EQ_INT(run("! grep -v -e hdrcharset -e 'implausibly old' '%s/tar.err' >&2", dir), 0);
    for (size_t i = 0; i < n; i++) {
        char *p = path_join(out, e[i].rel);
        struct stat st;
        int lrc = lstat(p, &st);
        CHECK_EQ_INT(lrc, 0);
        if (lrc) {
            fprintf(stderr, "missing after tar -x: entry %zu\n", i);
            free(p);
            continue;
        }
        switch (e[i].type) {
        case FB_ENTRY_FILE: {
            uint8_t *d = entry_data(&e[i]);
            CHECK(S_ISREG(st.st_mode));
            CHECK(same_bytes(p, d, e[i].size));
            CHECK_EQ_INT(st.st_mtim.tv_sec, e[i].mtime);
            CHECK_EQ_INT(st.st_mtim.tv_nsec, e[i].nsec);
            free(d);
            break;
        }
        case FB_ENTRY_DIR:
            CHECK(S_ISDIR(st.st_mode));
            CHECK_EQ_INT(st.st_mode & 07777, 0750);
            CHECK_EQ_INT(st.st_mtim.tv_sec, e[i].mtime);
            CHECK_EQ_INT(st.st_mtim.tv_nsec, e[i].nsec);
            break;
        case FB_ENTRY_SYMLINK: {
            char t[256] = {0};
            CHECK(S_ISLNK(st.st_mode));
            CHECK(readlink(p, t, sizeof t - 1) > 0 && strcmp(t, e[i].target) == 0);
            CHECK_EQ_INT(st.st_mtim.tv_sec, e[i].mtime);
            CHECK_EQ_INT(st.st_mtim.tv_nsec, e[i].nsec);
            break;
        }
        case FB_ENTRY_HARDLINK: {
            char *t = path_join(out, e[i].target);
            struct stat ts;
            CHECK(stat(t, &ts) == 0 && ts.st_ino == st.st_ino && st.st_nlink == 2);
            free(t);
            break;
        }
        }
        free(p);
    }

    /* bsdtar lists one line per entry and extracts the same bytes. */
    char *list = path_join(dir, "list.txt");
    CHECK_EQ_INT(run("bsdtar -tf '%s' >'%s'", archive, list), 0);
    size_t llen = 0;
    uint8_t *lbytes = read_all(list, &llen);
    REQUIRE(lbytes);
    size_t lines = 0;
    for (size_t i = 0; i < llen; i++)
        lines += lbytes[i] == '\n';
    CHECK_EQ_INT(lines, n);
    lbytes[llen] = '\0';
    for (size_t i = 0; i < n; i++) {
        bool printable = true;
        for (const char *c = e[i].rel; *c; c++)
            printable = printable && *c >= 0x20 && *c < 0x7f;
        if (!printable)
            continue; /* bsdtar escapes those; the extraction below checks them */
        char want[4200];
        snprintf(want, sizeof want, "\n%s%s\n", e[i].rel, e[i].type == FB_ENTRY_DIR ? "/" : "");
        /* Search with the preceding newline; the list's first line has none. */
        bool found = strstr((char *)lbytes, want) != NULL ||
                     strncmp((char *)lbytes, want + 1, strlen(want + 1)) == 0;
        CHECK(found);
        if (!found)
            fprintf(stderr, "bsdtar -t does not list entry %zu\n", i);
    }
    free(lbytes);

    char *out2 = path_join(dir, "out2");
    REQUIRE(mkdir(out2, 0700) == 0);
    CHECK_EQ_INT(run("bsdtar -xf '%s' -C '%s'", archive, out2), 0);
    for (size_t i = 0; i < n; i++) {
        if (e[i].type != FB_ENTRY_FILE)
            continue;
        char *p = path_join(out2, e[i].rel);
        uint8_t *d = entry_data(&e[i]);
        CHECK(same_bytes(p, d, e[i].size));
        free(d);
        free(p);
    }

    free(tar);
    free(abytes);
    free(list);
    free(out);
    free(out2);
    free(archive);
    free(src);
    fbtest_rmtree(dir);
}

static void write_two(const char *src, src_entry *e, size_t n, const char *a1, const char *a2,
                      fb_archive_summary *s1, fb_archive_summary *s2)
{
    fb_archive_writer_options o1 = opts_of(3, SMALL_FRAME, 1);
    fb_archive_writer_options o2 = opts_of(3, SMALL_FRAME, 2);
    CHECK(write_tree(src, e, n, a1, &o1, s1) == 0);
    CHECK(write_tree(src, e, n, a2, &o2, s2) == 0);
}

static void test_threads_same_stream(void)
{
    char *dir = fbtest_tempdir();
    char *src = path_join(dir, "src");
    char *a1 = path_join(dir, "t1.tar.zst");
    char *a2 = path_join(dir, "t2.tar.zst");
    size_t n = 0;
    src_entry *e = tree_entries(&n);
    build_tree(src, e, n);
    fb_archive_summary s1, s2;
    write_two(src, e, n, a1, a2, &s1, &s2);
    CHECK_EQ_INT(s1.uncompressed_size, s2.uncompressed_size);
    CHECK_EQ_INT(s1.frames, s2.frames);

    size_t l1 = 0, l2 = 0;
    uint8_t *f1 = read_all(a1, &l1), *f2 = read_all(a2, &l2);
    REQUIRE(f1 && f2);
    size_t t1 = 0, t2 = 0;
    uint8_t *d1 = decompress_all(f1, l1, (size_t)s1.uncompressed_size, &t1);
    uint8_t *d2 = decompress_all(f2, l2, (size_t)s2.uncompressed_size, &t2);
    REQUIRE(d1 && d2);
    CHECK(t1 == t2 && memcmp(d1, d2, t1) == 0);
    /* Frames are compressed independently with the same parameters, so the
     * thread count does not change a byte. */
    CHECK(l1 == l2 && memcmp(f1, f2, l1) == 0);
    CHECK(memcmp(s1.sha256, s2.sha256, FB_SHA256_LEN) == 0);
    free(d1);
    free(d2);
    free(f1);
    free(f2);
    free(a1);
    free(a2);
    free(src);
    fbtest_rmtree(dir);
}

static fb_archive_writer *open_writer(const char *archive, int *afd, uint64_t frame,
                                      unsigned threads)
{
    *afd = open(archive, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (*afd < 0)
        return NULL;
    fb_archive_writer_options o = opts_of(3, frame, threads);
    o.name = archive;
    o.file_fingerprints = true;
    fb_archive_writer *w = NULL;
    fb_error err;
    if (fb_archive_writer_new(*afd, &o, &w, &err) != 0) {
        fprintf(stderr, "%s\n", err.message);
        return NULL;
    }
    return w;
}

static fb_entry_meta file_meta(uint64_t size)
{
    fb_entry_meta m;
    memset(&m, 0, sizeof m);
    m.type = FB_ENTRY_FILE;
    m.mode = 0644;
    m.mtime = 1700000000;
    m.size = size;
    return m;
}

static void test_source_shrinks(void)
{
    char *dir = fbtest_tempdir();
    char *archive = path_join(dir, "a.tar.zst");
    char *srcp = path_join(dir, "short");
    uint8_t data[1000];
    fbtest_fill(data, sizeof data, 7, 1);
    write_file(srcp, data, sizeof data);

    int afd;
    fb_archive_writer *w = open_writer(archive, &afd, SMALL_FRAME, 2);
    REQUIRE(w);
    int fd = open(srcp, O_RDONLY | O_CLOEXEC);
    fb_entry_meta m = file_meta(200000); /* claims more than the file holds */
    fb_archive_file_result res;
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_archive_writer_add_file(w, "logs/short.log", &m, fd, &res, &err);
    CHECK_EQ_INT(rc, FB_ECHANGED);
    CHECK_EQ_INT(err.code, FB_ECHANGED);
    CHECK(strstr(err.message, "logs/short.log") != NULL);
    CHECK(strstr(err.message, "shrank while being read") != NULL);
    close(fd);

    /* The writer is failed from now on. */
    fb_entry_meta dm = file_meta(0);
    dm.type = FB_ENTRY_DIR;
    fb_error_clear(&err);
    CHECK(fb_archive_writer_add_dir(w, "d", &dm, &err) < 0);
    fb_archive_summary sum;
    fb_error_clear(&err);
    CHECK(fb_archive_writer_finish(w, &sum, &err) < 0);
    CHECK(strstr(err.message, "shrank") != NULL);
    fb_archive_writer_free(w);
    close(afd);
    free(srcp);
    free(archive);
    fbtest_rmtree(dir);
}

static void test_read_error_names_path(void)
{
    char *dir = fbtest_tempdir();
    char *archive = path_join(dir, "a.tar.zst");
    int afd;
    fb_archive_writer *w = open_writer(archive, &afd, SMALL_FRAME, 1);
    REQUIRE(w);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* read() gives EISDIR */
    fb_entry_meta m = file_meta(10);
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_archive_writer_add_file(w, "state/x.json", &m, dfd, NULL, &err);
    CHECK_EQ_INT(rc, FB_EIO);
    CHECK_EQ_INT(err.sys_errno, EISDIR);
    CHECK(strstr(err.message, "state/x.json") != NULL);
    close(dfd);
    fb_archive_writer_free(w);
    close(afd);
    free(archive);
    fbtest_rmtree(dir);
}

static void test_write_error_names_archive(void)
{
    char *dir = fbtest_tempdir();
    char *archive = path_join(dir, "ro.tar.zst");
    write_file(archive, (const uint8_t *)"", 0);
    int afd = open(archive, O_RDONLY | O_CLOEXEC); /* write() gives EBADF */
    REQUIRE(afd >= 0);
    fb_archive_writer_options o = opts_of(3, SMALL_FRAME, 2);
    o.name = archive;
    fb_archive_writer *w = NULL;
    fb_error err;
    fb_error_clear(&err);
    REQUIRE(fb_archive_writer_new(afd, &o, &w, &err) == 0);
    fb_entry_meta dm = file_meta(0);
    dm.type = FB_ENTRY_DIR;
    CHECK(fb_archive_writer_add_dir(w, "d", &dm, &err) == 0);
    fb_archive_summary sum;
    int rc = fb_archive_writer_finish(w, &sum, &err);
    CHECK_EQ_INT(rc, FB_EIO);
    CHECK_EQ_INT(err.sys_errno, EBADF);
    CHECK(strstr(err.message, archive) != NULL);
    fb_archive_writer_free(w);
    close(afd);
    free(archive);
    fbtest_rmtree(dir);
}

/* A write that fails while libarchive is writing a tar header: only
 * directories, so every byte of the stream is header, and with one thread
 * the ring of frame slots fills after a few frames, so a write() (EBADF)
 * happens inside archive_write_header. The error reaches the caller, the
 * writer refuses more, and freeing it releases everything libarchive holds.
 * Regression: the callback used to hand the failure to libarchive, which
 * went FATAL, and then archive_write_free (libarchive < 3.8.2) leaked the
 * 33 bytes archive_write_open2 had allocated (the same leak as a backup
 * failing with EFBIG); LeakSanitizer in the sanitizer build catches it. */
static void test_write_error_in_header_frees_everything(void)
{
    char *dir = fbtest_tempdir();
    char *archive = path_join(dir, "ro.tar.zst");
    write_file(archive, (const uint8_t *)"", 0);
    int afd = open(archive, O_RDONLY | O_CLOEXEC); /* write() gives EBADF */
    REQUIRE(afd >= 0);
    fb_archive_writer_options o = opts_of(3, SMALL_FRAME, 1);
    o.name = archive;
    fb_archive_writer *w = NULL;
    fb_error err;
    fb_error_clear(&err);
    REQUIRE(fb_archive_writer_new(afd, &o, &w, &err) == 0);
    fb_entry_meta dm = file_meta(0);
    dm.type = FB_ENTRY_DIR;
    dm.mtime_nsec = 123456789; /* a pax header too: more header bytes per entry */
    int rc = 0;
    for (int n = 0; n < 100000 && rc == 0; n++) {
        char name[32];
        snprintf(name, sizeof name, "dir-%06d", n);
        rc = fb_archive_writer_add_dir(w, name, &dm, &err);
    }
    CHECK_EQ_INT(rc, FB_EIO);
    CHECK_EQ_INT(err.sys_errno, EBADF);
    CHECK(strstr(err.message, archive) != NULL);
    fb_error_clear(&err);
    CHECK_EQ_INT(fb_archive_writer_add_dir(w, "more", &dm, &err), FB_EMISUSE);
    CHECK(strstr(err.message, "unusable") != NULL);
    fb_error_clear(&err);
    CHECK_EQ_INT(fb_archive_writer_finish(w, NULL, &err), FB_EMISUSE);
    fb_archive_writer_free(w);
    close(afd);
    free(archive);
    fbtest_rmtree(dir);
}

static void test_bad_entries_refused(void)
{
    char *dir = fbtest_tempdir();
    char *archive = path_join(dir, "a.tar.zst");
    int afd;
    fb_archive_writer *w = open_writer(archive, &afd, SMALL_FRAME, 1);
    REQUIRE(w);
    fb_entry_meta dm = file_meta(0);
    dm.type = FB_ENTRY_DIR;
    const char *bad[] = {"", "/abs", "a/../b", "..", "a//b", "dir/", "./x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fb_error err;
        fb_error_clear(&err);
        CHECK_EQ_INT(fb_archive_writer_add_dir(w, bad[i], &dm, &err), FB_EINVAL);
    }
    fb_error err;
    fb_error_clear(&err);
    fb_entry_meta fm = file_meta(0);
    CHECK_EQ_INT(fb_archive_writer_add_dir(w, "d", &fm, &err), FB_EMISUSE); /* wrong type */
    fb_entry_meta sm = file_meta(0);
    sm.type = FB_ENTRY_SYMLINK;
    CHECK_EQ_INT(fb_archive_writer_add_symlink(w, "s", &sm, "", &err), FB_EINVAL);
    fb_entry_meta hm = file_meta(0);
    hm.type = FB_ENTRY_HARDLINK;
    CHECK_EQ_INT(fb_archive_writer_add_hardlink(w, "h", &hm, "../etc/passwd", &err), FB_EINVAL);
    dm.mtime_nsec = 1000000000u;
    CHECK_EQ_INT(fb_archive_writer_add_dir(w, "d", &dm, &err), FB_EINVAL);

    /* Refused arguments wrote nothing: the archive is still good and empty. */
    fb_archive_summary sum;
    CHECK_EQ_INT(fb_archive_writer_finish(w, &sum, &err), 0);
    CHECK_EQ_INT(sum.uncompressed_size, 1024);
    CHECK_EQ_INT(sum.frames, 1);
    fb_archive_writer_free(w);
    close(afd);
    check_layout(archive, &sum, SMALL_FRAME);
    CHECK_EQ_INT(run("zstd -q -t '%s' && test -z \"$(tar --zstd -tf '%s')\"", archive, archive),
                 0);
    free(archive);
    fbtest_rmtree(dir);
}

/* A big file through a small frame size, with the writer freed mid-archive
 * (workers busy) and then a complete one: sizes and hashes must add up. */
static void test_many_frames_and_free_midway(void)
{
    char *dir = fbtest_tempdir();
    char *archive = path_join(dir, "a.tar.zst");
    char *srcp = path_join(dir, "big");
    size_t size = 3u * 1024 * 1024 + 17;
    uint8_t *data = malloc(size);
    fbtest_fill(data, size, 99, 1);
    write_file(srcp, data, size);

    for (int complete = 0; complete <= 1; complete++) {
        int afd;
        fb_archive_writer *w = open_writer(archive, &afd, SMALL_FRAME, 2);
        REQUIRE(w);
        int fd = open(srcp, O_RDONLY | O_CLOEXEC);
        fb_entry_meta m = file_meta(size);
        fb_archive_file_result res;
        fb_error err;
        CHECK(fb_archive_writer_add_file(w, "big", &m, fd, &res, &err) == 0);
        close(fd);
        /* A second large file right behind: files over 1 MiB are hashed on
         * the hash lane, which must be done with the first before the
         * second begins, and with every frame before it is refilled (with
         * 64 KiB frames, every few reads). */
        fd = open(srcp, O_RDONLY | O_CLOEXEC);
        fb_archive_file_result res2;
        CHECK(fb_archive_writer_add_file(w, "big2", &m, fd, &res2, &err) == 0);
        close(fd);
        CHECK(memcmp(res.sha256, res2.sha256, FB_SHA256_LEN) == 0);
        /* The fingerprint taken beside the SHA-256, on the lane too. */
        uint8_t fp[FB_XXH128_LEN];
        fb_xxh128_buffer(data, size, fp);
        CHECK(memcmp(fp, res.fingerprint, FB_XXH128_LEN) == 0);
        CHECK(memcmp(fp, res2.fingerprint, FB_XXH128_LEN) == 0);
        if (complete) {
            fb_archive_summary sum;
            CHECK(fb_archive_writer_finish(w, &sum, &err) == 0);
            CHECK_EQ_INT(sum.frames, (sum.uncompressed_size + SMALL_FRAME - 1) / SMALL_FRAME);
            CHECK(sum.uncompressed_size >= 2 * (size + 512) + 1024);
            CHECK(sum.compressed_size < size);
            uint8_t digest[FB_SHA256_LEN];
            fb_sha256_buffer(data, size, digest, NULL);
            CHECK(memcmp(digest, res.sha256, FB_SHA256_LEN) == 0);
            fb_archive_writer_free(w);
            close(afd);
            check_layout(archive, &sum, SMALL_FRAME);
            CHECK_EQ_INT(run("zstd -q -t '%s'", archive), 0);
            CHECK_EQ_INT(run("tar --zstd -xOf '%s' big | cmp -s - '%s'", archive, srcp), 0);
            CHECK_EQ_INT(run("tar --zstd -xOf '%s' big2 | cmp -s - '%s'", archive, srcp), 0);
        } else {
            fb_archive_writer_free(w); /* unfinished: must stop cleanly */
            close(afd);
        }
    }
    free(data);
    free(srcp);
    free(archive);
    fbtest_rmtree(dir);
}

/* add_data formats the headers of plain files itself (archive_writer.c);
 * they must be the bytes libarchive writes through add_file, for plain
 * files and at every edge where add_data hands over to libarchive. */
typedef struct data_case {
    const char *path;
    uint64_t size;
    int64_t mtime;
    uint32_t nsec;
    uint32_t uid, gid, mode;
} data_case;

static const data_case data_cases[] = {
    {"top.json", 120, 1796617129, 156508006, 0, 0, 0644},
    {"d000/f0000001.json", 37, 1796617129, 100000000, 1000, 1000, 0644},
    {"d000/nsec-one", 1, 1700000000, 1, 5, 6, 0600},
    {"d000/no-fraction", 200, 1700000000, 0, 0, 0, 0755},
    {"d000/empty", 0, 1700000000, 5, 0, 0, 0644},
    {"d001/block-511", 511, 1700000000, 999999999, 0, 0, 04755},
    {"d001/block-512", 512, 1700000000, 10, 0, 0, 0644},
    {"d001/block-513", 513, 0, 7, 0, 0, 0644},
    {"d001/x/y/z/16k", 16384, 0x7ffffffe, 3, 0777777, 0777777, 0644},
    {"d001/uid-big", 10, 1700000000, 3, 01000000, 0, 0644},
    {"d001/gid-big", 10, 1700000000, 3, 0, 2000000000u, 0644},
    {"d001/mtime-max", 10, 0x7fffffff, 3, 0, 0, 0644},
    {"d001/mtime-negative", 10, -5, 0, 0, 0, 0644},
    {"with space/and-~!", 10, 1700000000, 30, 0, 0, 0644},
    {"d\xc3\xa9j\xc3\xa0/caf\xc3\xa9.json", 10, 1700000000, 30, 0, 0, 0644},
    /* 89 and 90 bytes: the PaxHeader name takes 99, then 100 bytes. */
    {"dd/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 10, 1700000000, 30, 0, 0, 0644},
    {"dd/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", 10, 1700000000, 30, 0, 0, 0644},
};

static int write_cases(const char *archive, const char *srcdir, bool from_data,
                       fb_archive_file_result *res)
{
    int afd;
    fb_archive_writer *w = open_writer(archive, &afd, SMALL_FRAME, 2);
    if (!w)
        return -1;
    fb_error err;
    fb_error_clear(&err);
    int rc = 0;
    uint8_t data[16384];
    for (size_t i = 0; !rc && i < sizeof data_cases / sizeof data_cases[0]; i++) {
        const data_case *c = &data_cases[i];
        fb_entry_meta m = file_meta(c->size);
        m.mtime = c->mtime;
        m.mtime_nsec = c->nsec;
        m.uid = c->uid;
        m.gid = c->gid;
        m.mode = c->mode;
        fbtest_fill(data, (size_t)c->size, (uint32_t)i, 1);
        if (from_data) {
            rc = fb_archive_writer_add_data(w, c->path, &m, data, &res[i], &err);
            continue;
        }
        char name[32];
        snprintf(name, sizeof name, "src%zu", i);
        char *src = path_join(srcdir, name);
        write_file(src, data, (size_t)c->size);
        int fd = open(src, O_RDONLY | O_CLOEXEC);
        rc = fb_archive_writer_add_file(w, c->path, &m, fd, &res[i], &err);
        close(fd);
        free(src);
    }
    fb_archive_summary sum;
    if (!rc)
        rc = fb_archive_writer_finish(w, &sum, &err);
    if (rc)
        fprintf(stderr, "write_cases: %s\n", err.message);
    fb_archive_writer_free(w);
    close(afd);
    return rc;
}

static void test_add_data_same_bytes_as_libarchive(void)
{
    char *dir = fbtest_tempdir();
    char *a = path_join(dir, "lib.tar.zst");
    char *b = path_join(dir, "own.tar.zst");
    size_t n = sizeof data_cases / sizeof data_cases[0];
    fb_archive_file_result ra[sizeof data_cases / sizeof data_cases[0]];
    fb_archive_file_result rb[sizeof data_cases / sizeof data_cases[0]];
    REQUIRE(write_cases(a, dir, false, ra) == 0);
    REQUIRE(write_cases(b, dir, true, rb) == 0);
    size_t la = 0, lb = 0;
    uint8_t *ba = read_all(a, &la);
    uint8_t *bb = read_all(b, &lb);
    REQUIRE(ba && bb);
    CHECK(la == lb && memcmp(ba, bb, la) == 0);
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ_INT(ra[i].offset, rb[i].offset);
        CHECK(memcmp(ra[i].sha256, rb[i].sha256, FB_SHA256_LEN) == 0);
        /* Both ways take the same fingerprint, that of the bytes. */
        uint8_t data[16384], fp[FB_XXH128_LEN];
        fbtest_fill(data, (size_t)data_cases[i].size, (uint32_t)i, 1);
        fb_xxh128_buffer(data, (size_t)data_cases[i].size, fp);
        CHECK(memcmp(fp, ra[i].fingerprint, FB_XXH128_LEN) == 0);
        CHECK(memcmp(fp, rb[i].fingerprint, FB_XXH128_LEN) == 0);
    }
    /* And the archive reads back with the system's tar. */
    CHECK(run("zstd -dcq '%s' | tar -tf - >/dev/null 2>&1", b) == 0);
    free(ba);
    free(bb);
    free(a);
    free(b);
    fbtest_rmtree(dir);
}

/* A small file starts a frame once the frame being filled holds 32 KiB:
 * every small file then lies in a frame of at most 32 KiB plus itself, and
 * a large file still fills whole frames. */
static void test_small_files_start_frames(void)
{
    char *dir = fbtest_tempdir();
    char *archive = path_join(dir, "a.tar.zst");
    int afd = open(archive, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(afd >= 0);
    fb_archive_writer_options o = opts_of(3, 1024 * 1024, 2);
    fb_archive_writer *w = NULL;
    fb_error err;
    REQUIRE(fb_archive_writer_new(afd, &o, &w, &err) == 0);
    enum { N_SMALL = 300, SMALL = 3000, BIG = 3 * 1024 * 1024 };
    uint8_t *big = malloc(BIG);
    REQUIRE(big);
    fbtest_fill(big, BIG, 7, 1);
    uint64_t offsets[N_SMALL + 1], sizes[N_SMALL + 1];
    size_t k = 0;
    for (int i = 0; i < N_SMALL; i++) {
        char path[64];
        /* A long name now and then: its pax header goes in the same frame. */
        snprintf(path, sizeof path, i % 7 ? "s/%04d.json" : "s/%04d-%0100d.json", i, 0);
        uint8_t data[SMALL];
        fbtest_fill(data, sizeof data, (uint64_t)i, 1);
        fb_entry_meta meta = {.type = FB_ENTRY_FILE, .mode = 0644, .mtime = 1, .size = SMALL};
        fb_archive_file_result res;
        REQUIRE(fb_archive_writer_add_data(w, path, &meta, data, &res, &err) == 0);
        offsets[k] = res.offset;
        sizes[k++] = SMALL;
        if (i == N_SMALL / 2) {
            fb_entry_meta bm = {.type = FB_ENTRY_FILE, .mode = 0644, .mtime = 1, .size = BIG};
            REQUIRE(fb_archive_writer_add_data(w, "big.bin", &bm, big, &res, &err) == 0);
            offsets[k] = res.offset;
            sizes[k++] = BIG;
        }
    }
    fb_archive_summary sum;
    REQUIRE(fb_archive_writer_finish(w, &sum, &err) == 0);
    fb_archive_writer_free(w);
    close(afd);
    check_layout(archive, &sum, 1024 * 1024);

    int fd = open(archive, O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    fb_seek_table st;
    fb_seek_table_init(&st);
    REQUIRE(fb_seek_table_read_fd(fd, sum.compressed_size, archive, &st, &err) == 0);
    size_t full = 0;
    for (size_t i = 0; i < st.n_frames; i++)
        full += st.frames[i].d_size == 1024 * 1024;
    CHECK(full >= 2); /* the big file's */
    CHECK(st.n_frames > full + 4);
    for (size_t i = 0; i < k; i++) {
        if (sizes[i] != SMALL)
            continue;
        const fb_frame_entry *fe = &st.frames[fb_seek_table_find(&st, offsets[i])];
        /* Its frame starts at most 128 KiB before it, or holds the big file's tail. */
        CHECK(fe->d_offset + fe->d_size >= offsets[i] + SMALL || fe->d_size == 1024 * 1024 ||
              offsets[i] - fe->d_offset < WRITER_SMALL_FRAME + 4096);
        CHECK(offsets[i] - fe->d_offset < WRITER_SMALL_FRAME + 4096 || i == k - 1 ||
              (i > 0 && sizes[i - 1] == BIG));
    }
    fb_seek_table_fini(&st);
    close(fd);
    CHECK(run("zstd -dcq '%s' | tar -tf - | wc -l | grep -qx %d", archive, N_SMALL + 1) == 0);
    free(big);
    free(archive);
    fbtest_rmtree(dir);
}

/* ---- the frame ring under the writer ---- */

typedef struct written_log {
    fb_frame_entry *e;
    uint64_t n;
    bool out_of_order;
} written_log;

static void log_written(void *ctx, uint64_t index, uint32_t c_size, uint32_t d_size,
                        uint32_t checksum)
{
    written_log *l = ctx;
    if (index != l->n)
        l->out_of_order = true;
    l->e[l->n].c_size = c_size;
    l->e[l->n].d_size = d_size;
    l->e[l->n].checksum = checksum;
    l->n++;
}

/* The hashing turn grows the seek table with realloc while the filling
 * thread reports written frames: the report must not read the table (a
 * 1 GiB sparse file crashed the CLI with 16,385 frames when the table
 * moved). Tiny frames make the table grow often (18 reallocs here), and
 * under AddressSanitizer a read of the old table is a report. */
static void test_ring_reports_frames_while_the_table_grows(void)
{
    char *dir = fbtest_tempdir();
    char *archive = path_join(dir, "ring.bin");
    int fd = open(archive, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    enum { FRAMES = 200000, FRAME = 64 };
    written_log log = { .e = calloc(FRAMES, sizeof *log.e) };
    REQUIRE(log.e);
    fb_archive_writer_options o = { .level = 1, .frame_size = FRAME, .threads = 2,
                                    .on_written = log_written, .written_ctx = &log,
                                    .no_output_hash = true };
    fb_frame_ring g;
    fb_error err;
    fb_error_clear(&err);
    REQUIRE(fb_frame_ring_init(&g, fd, "ring.bin", &o, &err) == 0);
    for (uint32_t i = 0; i < FRAMES; i++) {
        uint8_t *dst;
        size_t room;
        REQUIRE(fb_frame_ring_room(&g, &dst, &room) == 0);
        REQUIRE(room == FRAME);
        /* frames differ in size and checksum, so a stale entry shows */
        memset(dst, 0, FRAME);
        memcpy(dst + i % 48, &i, sizeof i);
        REQUIRE(fb_frame_ring_commit(&g, FRAME) == 0);
    }
    fb_archive_summary sum;
    CHECK(fb_frame_ring_finish(&g, &sum) == 0);
    CHECK(sum.frames == FRAMES);
    CHECK(log.n == FRAMES);
    CHECK(!log.out_of_order);
    CHECK(g.n_frames == FRAMES);
    uint64_t bad = 0;
    for (uint64_t i = 0; i < log.n && i < g.n_frames; i++)
        bad += log.e[i].c_size != g.frames[i].c_size || log.e[i].d_size != g.frames[i].d_size ||
               log.e[i].checksum != g.frames[i].checksum;
    CHECK(bad == 0);
    fb_frame_ring_fini(&g);
    close(fd);
    free(log.e);
    free(archive);
    fbtest_rmtree(dir);
}

int main(void)
{
    RUN_TEST(test_options_validated);
    RUN_TEST(test_tree_roundtrip_and_interop);
    RUN_TEST(test_threads_same_stream);
    RUN_TEST(test_source_shrinks);
    RUN_TEST(test_read_error_names_path);
    RUN_TEST(test_write_error_names_archive);
    RUN_TEST(test_write_error_in_header_frees_everything);
    RUN_TEST(test_bad_entries_refused);
    RUN_TEST(test_many_frames_and_free_midway);
    RUN_TEST(test_add_data_same_bytes_as_libarchive);
    RUN_TEST(test_small_files_start_frames);
    RUN_TEST(test_ring_reports_frames_while_the_table_grows);
    FBTEST_EXIT();
}
