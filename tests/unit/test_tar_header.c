/* Unit tests of the tar member proof (core/archive/tar_header.c): the pure header
 * and pax parsers on hand-made blocks, and fb_tar_member_prove on archives
 * written by the real writer, with right and wrong offsets, sizes and
 * names. */
#include <sys/stat.h>

#include "fbtest.h"
#include "fb_archive_reader.h"
#include "fb_archive_writer.h"
#include "tar_header_i.h"

typedef struct member {
    const char *path;
    fb_entry_type type;
    size_t size;
    uint64_t offset; /* filled by the writer */
} member;

#define LONG_DIR                                                                             \
    "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd" \
    "dddddddddddddddddddddddddddddddddddd"

static member members[] = {
    {"metadata.json", FB_ENTRY_FILE, 40, 0},
    {"logs", FB_ENTRY_DIR, 0, 0},
    {"logs/run.log", FB_ENTRY_FILE, 70000, 0},
    {"empty", FB_ENTRY_FILE, 0, 0},
    {LONG_DIR "/" LONG_DIR "/a-long-name.txt", FB_ENTRY_FILE, 1000, 0},
    {"caf\xc3\xa9.md", FB_ENTRY_FILE, 5, 0},
    {"bad-\xff-utf8", FB_ENTRY_FILE, 6, 0},
    {"link", FB_ENTRY_SYMLINK, 0, 0},
    {"last.bin", FB_ENTRY_FILE, 1024, 0},
};
#define N_MEMBERS (sizeof members / sizeof members[0])

/* Writes the members (data from fbtest_fill) into dir/archive.tar.zst and
 * returns a reader on it. */
static fb_archive_reader *write_archive(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/archive.tar.zst", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        fbtest_die(path);
    fb_archive_writer_options o = {.level = 1, .frame_size = 65536, .threads = 1};
    fb_archive_writer *w = NULL;
    fb_error err;
    if (fb_archive_writer_new(fd, &o, &w, &err) != 0)
        fbtest_die(err.message);
    for (size_t i = 0; i < N_MEMBERS; i++) {
        member *m = &members[i];
        fb_entry_meta meta = {.type = m->type, .mode = m->type == FB_ENTRY_DIR ? 0755 : 0644,
                              .uid = 1000, .gid = 1000, .mtime = 1800000000,
                              .mtime_nsec = (uint32_t)(i * 1000), .size = m->size};
        int rc;
        if (m->type == FB_ENTRY_DIR) {
            rc = fb_archive_writer_add_dir(w, m->path, &meta, &err);
        } else if (m->type == FB_ENTRY_SYMLINK) {
            rc = fb_archive_writer_add_symlink(w, m->path, &meta, "metadata.json", &err);
        } else {
            char src[4096];
            snprintf(src, sizeof src, "%s/src", dir);
            uint8_t *data = malloc(m->size + 1);
            fbtest_fill(data, m->size, i + 1, 1);
            FILE *f = fopen(src, "wb");
            if (!f || fwrite(data, 1, m->size, f) != m->size || fclose(f) != 0)
                fbtest_die(src);
            free(data);
            int sfd = open(src, O_RDONLY | O_CLOEXEC);
            fb_archive_file_result res;
            rc = fb_archive_writer_add_file(w, m->path, &meta, sfd, &res, &err);
            close(sfd);
            m->offset = res.offset;
        }
        if (rc != 0)
            fbtest_die(err.message);
    }
    fb_archive_summary sum;
    if (fb_archive_writer_finish(w, &sum, &err) != 0)
        fbtest_die(err.message);
    fb_archive_writer_free(w);
    close(fd);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    fb_archive_reader *r = NULL;
    if (fb_archive_reader_open(fd, NULL, "archive.tar.zst", &r, &err) != 0)
        fbtest_die(err.message);
    return r;
}

/* The flags of the proof: 0, or those of a file whose bytes the mount
 * checks against its digest (the pax header is then looked for in the
 * header's frame first). */
static unsigned prove_flags;

static int prove(fb_archive_reader *r, uint64_t offset, const char *path, uint64_t size,
                 fb_error *err)
{
    fb_error_clear(err);
    return fb_tar_member_prove(r, offset, path, size, prove_flags, "archive.tar.zst", err);
}

static void test_members_prove(void)
{
    char *dir = fbtest_tempdir();
    fb_archive_reader *r = write_archive(dir);
    fb_error err;
    for (size_t i = 0; i < N_MEMBERS; i++) {
        const member *m = &members[i];
        if (m->type != FB_ENTRY_FILE)
            continue;
        if (prove(r, m->offset, m->path, m->size, &err) != 0) {
            fprintf(stderr, "%s: %s\n", m->path, err.message);
            fbtest_failures++;
        }
        /* Moved by a byte or a block either way, or doubled: refused. */
        const int64_t deltas[] = {1, -1, 512, -512, 1024};
        for (size_t d = 0; d < sizeof deltas / sizeof deltas[0]; d++) {
            uint64_t off = m->offset + (uint64_t)deltas[d];
            CHECK_EQ_INT(prove(r, off, m->path, m->size, &err), FB_ECORRUPT);
            CHECK(strstr(err.message, "archive.tar.zst: ") == err.message);
        }
        CHECK_EQ_INT(prove(r, m->offset * 2 + 512, m->path, m->size, &err), FB_ECORRUPT);
        /* Wrong size or another name at the right offset: refused. */
        CHECK_EQ_INT(prove(r, m->offset, m->path, m->size + 1, &err), FB_ECORRUPT);
        CHECK(strstr(err.message, "size") != NULL);
        if (m->size > 0)
            CHECK_EQ_INT(prove(r, m->offset, m->path, m->size - 1, &err), FB_ECORRUPT);
        CHECK_EQ_INT(prove(r, m->offset, "other.json", m->size, &err), FB_ECORRUPT);
        CHECK(strstr(err.message, "belongs to another entry") != NULL);
    }
    /* Offsets that cannot follow a header. */
    CHECK_EQ_INT(prove(r, 0, "metadata.json", 40, &err), FB_ECORRUPT);
    CHECK_EQ_INT(prove(r, 100, "metadata.json", 40, &err), FB_ECORRUPT);
    CHECK(strstr(err.message, "does not follow a tar header block") != NULL);
    CHECK_EQ_INT(prove(r, UINT64_MAX - 511, "metadata.json", 40, &err), FB_ECORRUPT);
    fb_archive_reader_free(r);
    fbtest_rmtree(dir);
}

static void test_members_prove_checked(void)
{
    prove_flags = FB_ARCHIVE_READ_CHECKED | FB_ARCHIVE_READ_PROOF;
    test_members_prove();
    prove_flags = 0;
}

/* A long name's pax header in the frame before its ustar header (a frame
 * boundary between the two, as another writer may cut): the proof of a
 * checked file looks past its frame when the ustar name alone disagrees. */
static void test_pax_header_in_previous_frame(void)
{
    char *dir = fbtest_tempdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/archive.tar.zst", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    fb_archive_writer_options o = {.level = 1, .frame_size = 65536, .threads = 1};
    fb_archive_writer *w = NULL;
    fb_error err;
    REQUIRE(fb_archive_writer_new(fd, &o, &w, &err) == 0);
    /* a.bin: one header and 64000 bytes; then the long name's pax header
     * and its data (2 blocks) end at 65536, where its ustar header starts.
     * The long-named file is not small (the writer's 32 KiB), so the frame
     * is cut at frame_size, between its two headers. */
    static uint8_t data[64000];
    fbtest_fill(data, sizeof data, 3, 1);
    fb_entry_meta a = {.type = FB_ENTRY_FILE, .mode = 0644, .mtime = 1800000000,
                       .size = sizeof data};
    fb_entry_meta b = a;
    b.size = 40000;
    const char *long_name = LONG_DIR "/" LONG_DIR "/a-long-name.txt";
    fb_archive_file_result ra, rb;
    REQUIRE(fb_archive_writer_add_data(w, "a.bin", &a, data, &ra, &err) == 0);
    REQUIRE(fb_archive_writer_add_data(w, long_name, &b, data, &rb, &err) == 0);
    fb_archive_summary sum;
    REQUIRE(fb_archive_writer_finish(w, &sum, &err) == 0);
    fb_archive_writer_free(w);
    REQUIRE(ra.offset == 512 && rb.offset == 65536 + 512);
    fb_archive_reader *r = NULL;
    REQUIRE(fb_archive_reader_open(fd, NULL, "archive.tar.zst", &r, &err) == 0);
    CHECK_EQ_INT(fb_archive_reader_frame_start(r, 65536), 65536);
    CHECK_EQ_INT(fb_archive_reader_frame_start(r, 65535), 0);
    const unsigned flags[] = {0, FB_ARCHIVE_READ_CHECKED | FB_ARCHIVE_READ_PROOF};
    for (size_t i = 0; i < 2; i++) {
        prove_flags = flags[i];
        CHECK_EQ_INT(prove(r, rb.offset, long_name, b.size, &err), 0);
        CHECK_EQ_INT(prove(r, rb.offset, "a-long-name.txt", b.size, &err), FB_ECORRUPT);
        CHECK(strstr(err.message, "belongs to another entry") != NULL);
        CHECK_EQ_INT(prove(r, rb.offset, long_name, b.size - 1, &err), FB_ECORRUPT);
        CHECK_EQ_INT(prove(r, ra.offset, "a.bin", sizeof data, &err), 0);
    }
    prove_flags = 0;
    fb_archive_reader_free(r);
    fbtest_rmtree(dir);
}

/* Recomputes a header block's checksum after an edit. */
static void fix_checksum(uint8_t b[FB_TAR_BLOCK])
{
    memset(b + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < FB_TAR_BLOCK; i++)
        sum += b[i];
    snprintf((char *)b + 148, 8, "%06o", sum);
}

/* A header block of a regular file `name` of `size` bytes, checksummed. */
static void make_block(uint8_t b[FB_TAR_BLOCK], const char *name, uint64_t size, char type)
{
    memset(b, 0, FB_TAR_BLOCK);
    memcpy(b, name, strlen(name) < 100 ? strlen(name) : 100);
    snprintf((char *)b + 124, 12, "%011llo", (unsigned long long)size);
    b[156] = (uint8_t)type;
    memcpy(b + 257, "ustar\0" "00", 8);
    fix_checksum(b);
}

static void test_header_parse(void)
{
    uint8_t b[FB_TAR_BLOCK];
    fb_tar_header h;
    make_block(b, "state.json", 12345, '0');
    CHECK(fb_tar_header_parse(b, &h));
    CHECK(h.typeflag == '0' && h.size_ok && h.size == 12345);
    CHECK(strcmp(h.name, "state.json") == 0 && h.name_len == 10);

    /* Any single changed byte breaks the checksum (outside the field). */
    for (int i = 0; i < FB_TAR_BLOCK; i++) {
        if (i >= 148 && i < 156)
            continue;
        make_block(b, "state.json", 12345, '0');
        b[i] ^= 0x01;
        CHECK(!fb_tar_header_parse(b, &h));
    }
    /* Zeros, a GNU magic, a bad size field. */
    memset(b, 0, sizeof b);
    CHECK(!fb_tar_header_parse(b, &h));
    make_block(b, "x", 1, '0');
    memcpy(b + 257, "ustar  \0", 8);
    CHECK(!fb_tar_header_parse(b, &h));
    make_block(b, "x", 1, '0');
    memcpy(b + 124, "0000000009x", 11); /* not octal */
    fix_checksum(b);
    CHECK(fb_tar_header_parse(b, &h));
    CHECK(!h.size_ok);

    /* prefix + name, and a name that fills its whole field. */
    char name100[101];
    memset(name100, 'n', 100);
    name100[100] = 0;
    make_block(b, name100, 1, '0');
    memcpy(b + 345, "pre/fix", 7);
    fix_checksum(b);
    CHECK(fb_tar_header_parse(b, &h));
    CHECK(h.name_len == 108 && memcmp(h.name, "pre/fix/", 8) == 0 && h.name[107] == 'n');

    /* Both fields full: 155 + '/' + 100 bytes, the longest ustar name. */
    make_block(b, name100, 1, '0');
    memset(b + 345, 'p', 155);
    fix_checksum(b);
    CHECK(fb_tar_header_parse(b, &h));
    CHECK(h.name_len == 256 && h.name[155] == '/' && h.name[255] == 'n' && h.name[256] == 0);
}

static void test_pax_find(void)
{
    const uint8_t *v;
    size_t n;
    const char *ok = "18 path=caf\xc3\xa9.txt\n11 size=42\n";
    CHECK_EQ_INT(fb_tar_pax_find((const uint8_t *)ok, strlen(ok), "path", &v, &n), 1);
    CHECK(n == 9 && memcmp(v, "caf\xc3\xa9.txt", 9) == 0);
    CHECK_EQ_INT(fb_tar_pax_find((const uint8_t *)ok, strlen(ok), "size", &v, &n), 1);
    CHECK(n == 2 && memcmp(v, "42", 2) == 0);
    CHECK_EQ_INT(fb_tar_pax_find((const uint8_t *)ok, strlen(ok), "linkpath", &v, &n), 0);
    /* NUL padding after the records is fine; anything else after it is not. */
    uint8_t padded[64] = {0};
    memcpy(padded, ok, strlen(ok));
    CHECK_EQ_INT(fb_tar_pax_find(padded, sizeof padded, "size", &v, &n), 1);
    padded[60] = 'x';
    CHECK_EQ_INT(fb_tar_pax_find(padded, sizeof padded, "size", &v, &n), -1);
    /* The last record of a key wins. */
    const char *twice = "10 path=a\n10 path=b\n";
    CHECK_EQ_INT(fb_tar_pax_find((const uint8_t *)twice, strlen(twice), "path", &v, &n), 1);
    CHECK(n == 1 && v[0] == 'b');
    /* Malformed: wrong length, no newline, no '=', no digits, huge length. */
    const char *bad[] = {"12 path=a\n", "10 path=ab", "8 pathx\n", " path=a\n",
                         "99999999999999999999999 path=a\n", "5 =a\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ_INT(fb_tar_pax_find((const uint8_t *)bad[i], strlen(bad[i]), "path", &v, &n),
                     -1);
}

/* The headers before a directory and a symlink are refused as a file's. */
static void test_non_file_headers(void)
{
    char *dir = fbtest_tempdir();
    fb_archive_reader *r = write_archive(dir);
    fb_error err;
    /* Every block boundary between metadata.json's data and run.log's
     * header: the pax and ustar headers of the directory "logs" and the
     * data block; none is a file's header. */
    int not_file = 0;
    for (uint64_t off = members[0].offset + 512; off + 512 < members[2].offset; off += 512) {
        CHECK_EQ_INT(prove(r, off, "logs", 0, &err), FB_ECORRUPT);
        not_file += strstr(err.message, "is not a regular file (type 0x35)") != NULL;
    }
    CHECK_EQ_INT(not_file, 1);
    /* The symlink's header, just before last.bin's pax header. */
    int sym = 0;
    for (uint64_t off = members[6].offset + 512; off < members[8].offset; off += 512) {
        prove(r, off, "link", 0, &err);
        sym += strstr(err.message, "is not a regular file (type 0x32)") != NULL;
    }
    CHECK_EQ_INT(sym, 1);
    fb_archive_reader_free(r);
    fbtest_rmtree(dir);
}

int main(void)
{
    test_header_parse();
    test_pax_find();
    test_members_prove();
    test_members_prove_checked();
    test_pax_header_in_previous_frame();
    test_non_file_headers();
    return fbtest_failures ? 1 : 0;
}
