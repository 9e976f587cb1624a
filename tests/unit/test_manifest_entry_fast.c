/* The fast reading of manifest entries (manifest_entry_fast.c): it takes
 * every entry the writer produces, gives every unusual one back to the
 * strict reading, and never changes a verdict, a message or what is read:
 * each case is parsed with and without it and the results compared. */
#include <inttypes.h>

#include "fb_manifest.h"
#include "fbtest.h"
#include "manifest_entry_fast_i.h"
#include "manifest_i.h"

#define FULL_ID "20261201T031500Z-full-3fa9c2"
#define SID "session_12345_1640995200_abc123"
#define HEX "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define FILE_A                                                                             \
    "{\"path\":\"a\",\"type\":\"file\",\"mode\":420,\"uid\":0,\"gid\":0,\"mtime\":1,"  \
    "\"mtime_nsec\":0,\"size\":5,\"sha256\":\"" HEX "\",\"offset\":512}"
#define TAIL "\"mtime_nsec\":0,\"size\":0}"

/* A manifest around entries, with the totals given. Malloc'd. */
static char *wrap(const char *entries, const char *totals)
{
    const char *fmt =
        "{\"format\":1,\"backup_id\":\"" FULL_ID "\",\"seq\":1,\"session_id\":\"" SID "\","
        "\"type\":\"full\",\"created_at\":\"2026-12-01T03:15:00Z\",\"note\":null,"
        "\"base\":null,\"tool_version\":\"t\",\"archive\":{\"size\":10240,\"sha256\":\"" HEX
        "\",\"frame_size\":1048576,\"frames\":1,\"level\":3},\"totals\":{%s},"
        "\"entries\":[\n%s\n]}\n";
    size_t n = strlen(fmt) + strlen(entries) + strlen(totals) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, fmt, totals, entries);
    return s;
}

static char *serialise(const fb_manifest *m)
{
    char *json = NULL;
    size_t len = 0;
    fb_error err;
    return fb_manifest_to_json(m, &json, &len, &err) == 0 ? json : NULL;
}

/* Parses text with and without the fast reading; both must agree. Returns
 * the verdict. */
static int parse_both(const char *text, const char *what)
{
    fb_manifest a, b;
    fb_error ea, eb;
    fb_error_clear(&ea);
    fb_error_clear(&eb);
    int ra = fb_manifest_parse_with(text, strlen(text), "manifest.json", true, &a, &ea);
    int rb = fb_manifest_parse_with(text, strlen(text), "manifest.json", false, &b, &eb);
    if (ra != rb || (ra != 0 && strcmp(ea.message, eb.message) != 0)) {
        fprintf(stderr, "%s: fast %d \"%s\", strict %d \"%s\"\n", what, ra, ea.message, rb,
                eb.message);
        fbtest_failures++;
    }
    if (ra == 0 && rb == 0) {
        char *ja = serialise(&a), *jb = serialise(&b);
        CHECK(ja && jb && strcmp(ja, jb) == 0);
        free(ja);
        free(jb);
    }
    fb_manifest_fini(&a);
    fb_manifest_fini(&b);
    return ra;
}

/* What the fast reading alone says of one entry's text. */
static int fast_verdict(const char *entry)
{
    fb_manifest_entry e;
    memset(&e, 0, sizeof e);
    size_t end = 0;
    int rc = fb_manifest_entry_read_fast(entry, strlen(entry), 0, &e, &end);
    if (rc == 1)
        CHECK_EQ_INT(end, strlen(entry));
    else
        CHECK(e.path == NULL && e.target == NULL);
    free(e.path);
    free(e.target);
    return rc;
}

typedef struct entry_case {
    const char *entry;  /* the last entry (after FILE_A when `after_file`) */
    bool after_file;
    const char *totals; /* right for the entries when they are valid */
    int fast;           /* what the fast reading says of `entry` */
    int verdict;        /* of the whole manifest */
} entry_case;

#define T(f, d, s, b) "\"files\":" #f ",\"dirs\":" #d ",\"symlinks\":" #s ",\"bytes\":" #b
#define DIR_HEAD "{\"path\":\"d\",\"type\":\"dir\",\"mode\":493,\"uid\":0,\"gid\":0,\"mtime\":1,"

static const entry_case cases[] = {
    /* Taken by the fast reading. */
    {FILE_A, false, T(1, 0, 0, 5), 1, 0},
    {DIR_HEAD TAIL, false, T(0, 1, 0, 0), 1, 0},
    {" { \"path\" : \"d\" ,\"type\":\"dir\",\"mode\":493,\"uid\":0,\"gid\":0,\"mtime\":-5,"
     "\"mtime_nsec\":999999999,\"size\":0 } ",
     false, T(0, 1, 0, 0), 0, 0}, /* leading space: not at '{' */
    {"{ \"path\" : \"d\" ,\"type\":\"dir\",\"mode\":4095,\"uid\":4294967295,\"gid\":0,"
     "\"mtime\":-9007199254740992,\"mtime_nsec\":999999999,\"size\":0 }",
     false, T(0, 1, 0, 0), 1, 0},
    {"{\"path\":\"caf\xc3\xa9 d/x y\",\"type\":\"symlink\",\"mode\":511,\"uid\":0,\"gid\":0,"
     "\"mtime\":1,\"mtime_nsec\":0,\"size\":3,\"target\":\"../../etc\"}",
     false, T(0, 0, 1, 0), 1, 0},
    {"{\"path\":\"h\",\"type\":\"hardlink\",\"mode\":420,\"uid\":0,\"gid\":0,\"mtime\":1,"
     "\"mtime_nsec\":0,\"size\":5,\"link\":\"a\"}",
     true, T(2, 0, 0, 5), 1, 0},
    {"{\"size\":0,\"mtime_nsec\":0,\"mtime\":1,\"gid\":0,\"uid\":0,\"mode\":493,\"type\":\"dir\","
     "\"path\":\"d\"}",
     false, T(0, 1, 0, 0), 1, 0},
    /* Valid, but for the strict reading: escapes, unknown keys, _b64. */
    {"{\"path\":\"d\\u00e9\",\"type\":\"dir\",\"mode\":493,\"uid\":0,\"gid\":0,\"mtime\":1," TAIL,
     false, T(0, 1, 0, 0), 0, 0},
    {"{\"path\":\"d\\/e\",\"type\":\"dir\",\"mode\":493,\"uid\":0,\"gid\":0,\"mtime\":1," TAIL,
     false, T(0, 1, 0, 0), 0, 0},
    {DIR_HEAD "\"mtime_nsec\":0,\"size\":0,\"future\":[1,{\"x\":null}]}", false,
     T(0, 1, 0, 0), 0, 0},
    {"{\"path\":\"\xef\xbf\xbd\",\"path_b64\":\"/w==\",\"type\":\"dir\",\"mode\":493,\"uid\":0,"
     "\"gid\":0,\"mtime\":1," TAIL,
     false, T(0, 1, 0, 0), 0, 0},
    /* Refused: every one left to the strict reading, which names it. */
    {DIR_HEAD "\"mtime_nsec\":0,\"size\":0,\"size\":0}", false, T(0, 1, 0, 0), 0, FB_ECORRUPT},
    {DIR_HEAD "\"mtime_nsec\":0,\"size\":0,\"Size\":0}", false, T(0, 1, 0, 0), 0, FB_ECORRUPT},
    {"{\"path\":\"d\",\"type\":\"dir\",\"mode\":4096,\"uid\":0,\"gid\":0,\"mtime\":1," TAIL,
     false, T(0, 1, 0, 0), 0, FB_ECORRUPT},
    {"{\"path\":\"d\",\"type\":\"dir\",\"mode\":493,\"uid\":4294967296,\"gid\":0,\"mtime\":1," TAIL,
     false, T(0, 1, 0, 0), 0, FB_ECORRUPT},
    {"{\"path\":\"d\",\"type\":\"dir\",\"mode\":-1,\"uid\":0,\"gid\":0,\"mtime\":1," TAIL, false,
     T(0, 1, 0, 0), 0, FB_ECORRUPT},
    {"{\"path\":\"d\",\"type\":\"dir\",\"mode\":493,\"uid\":0,\"gid\":0,\"mtime\":-0," TAIL,
     false, T(0, 1, 0, 0), 0, 0}, /* -0 is 0 to the strict reading */
    {"{\"path\":\"d\",\"type\":\"dir\",\"mode\":493,\"uid\":0,\"gid\":0,\"mtime\":1.0," TAIL,
     false, T(0, 1, 0, 0), 0, -1},
    {"{\"path\":\"d\",\"type\":\"dir\",\"mode\":493,\"uid\":0,\"gid\":0,\"mtime\":1e2," TAIL,
     false, T(0, 1, 0, 0), 0, -1},
    {"{\"path\":\"d\",\"type\":\"dir\",\"mode\":493,\"uid\":0,\"gid\":0,"
     "\"mtime\":9007199254740993," TAIL,
     false, T(0, 1, 0, 0), 0, FB_ECORRUPT},
    {DIR_HEAD "\"mtime_nsec\":1000000000,\"size\":0}", false, T(0, 1, 0, 0), 0, FB_ECORRUPT},
    {DIR_HEAD "\"mtime_nsec\":0,\"size\":\"0\"}", false, T(0, 1, 0, 0), 0, FB_ECORRUPT},
    {DIR_HEAD "\"mtime_nsec\":0,\"size\":null}", false, T(0, 1, 0, 0), 0, FB_ECORRUPT},
    {DIR_HEAD "\"mtime_nsec\":0}", false, T(0, 1, 0, 0), 0, FB_ECORRUPT},
    {DIR_HEAD "\"mtime_nsec\":0,\"size\":0,\"sha256\":\"" HEX "\"}", false, T(0, 1, 0, 0), 0,
     FB_ECORRUPT},
    {"{\"path\":\"d\",\"type\":\"Dir\",\"mode\":493,\"uid\":0,\"gid\":0,\"mtime\":1," TAIL,
     false, T(0, 1, 0, 0), 0, FB_ECORRUPT},
    {"{\"path\":\"/d\",\"type\":\"dir\",\"mode\":493,\"uid\":0,\"gid\":0,\"mtime\":1," TAIL,
     false, T(0, 1, 0, 0), 0, FB_ECORRUPT},
    {"{\"path\":\"a/../d\",\"type\":\"dir\",\"mode\":493,\"uid\":0,\"gid\":0,\"mtime\":1," TAIL,
     false, T(0, 1, 0, 0), 0, FB_ECORRUPT},
    {"{\"path\":\"d/\",\"type\":\"dir\",\"mode\":493,\"uid\":0,\"gid\":0,\"mtime\":1," TAIL,
     false, T(0, 1, 0, 0), 0, FB_ECORRUPT},
    {"{\"path\":\"\",\"type\":\"dir\",\"mode\":493,\"uid\":0,\"gid\":0,\"mtime\":1," TAIL,
     false, T(0, 1, 0, 0), 0, FB_ECORRUPT},
    {"{\"path\":\"b\",\"type\":\"file\",\"mode\":420,\"uid\":0,\"gid\":0,\"mtime\":1,"
     "\"mtime_nsec\":0,\"size\":5,\"sha256\":\"" "0123456789ABCDEF0123456789abcdef0123456789abcdef"
     "0123456789abcdef\",\"offset\":512}",
     false, T(1, 0, 0, 5), 0, FB_ECORRUPT},
    {"{\"path\":\"b\",\"type\":\"file\",\"mode\":420,\"uid\":0,\"gid\":0,\"mtime\":1,"
     "\"mtime_nsec\":0,\"size\":5,\"sha256\":\"" HEX "\"}",
     false, T(1, 0, 0, 5), 0, FB_ECORRUPT},
    {"{\"path\":\"b\",\"type\":\"file\",\"mode\":420,\"uid\":0,\"gid\":0,\"mtime\":1,"
     "\"mtime_nsec\":0,\"size\":5,\"sha256\":\"" HEX "\",\"offset\":512,\"target\":\"x\"}",
     false, T(1, 0, 0, 5), 0, FB_ECORRUPT},
    {"{\"path\":\"s\",\"type\":\"symlink\",\"mode\":511,\"uid\":0,\"gid\":0,\"mtime\":1,"
     "\"mtime_nsec\":0,\"size\":0,\"target\":\"\"}",
     false, T(0, 0, 1, 0), 0, FB_ECORRUPT},
    {"{\"path\":\"h\",\"type\":\"hardlink\",\"mode\":420,\"uid\":0,\"gid\":0,\"mtime\":1,"
     "\"mtime_nsec\":0,\"size\":5,\"link\":\"/a\"}",
     true, T(2, 0, 0, 5), 0, FB_ECORRUPT},
    /* Broken only across entries: read fast, refused by the checks after. */
    {"{\"path\":\"h\",\"type\":\"hardlink\",\"mode\":420,\"uid\":0,\"gid\":0,\"mtime\":1,"
     "\"mtime_nsec\":0,\"size\":5,\"link\":\"zz\"}",
     true, T(2, 0, 0, 5), 1, FB_ECORRUPT},
    {"{\"path\":\"a\",\"type\":\"dir\",\"mode\":493,\"uid\":0,\"gid\":0,\"mtime\":1," TAIL, true,
     T(1, 1, 0, 5), 1, FB_ECORRUPT},
    {"{\"path\":\"a/x\",\"type\":\"dir\",\"mode\":493,\"uid\":0,\"gid\":0,\"mtime\":1," TAIL,
     true, T(1, 1, 0, 5), 1, FB_ECORRUPT},
    {DIR_HEAD TAIL, false, T(0, 2, 0, 0), 1, FB_ECORRUPT},
    /* Grammar the fast reading stops at. */
    {DIR_HEAD "\"mtime_nsec\":0,\"size\":0,}", false, T(0, 1, 0, 0), 0, -1},
    {DIR_HEAD "\"mtime_nsec\":0 \"size\":0}", false, T(0, 1, 0, 0), 0, -1},
    {DIR_HEAD "\"mtime_nsec\":0,\"size\":0]", false, T(0, 1, 0, 0), 0, -1},
    {"{\"path\":\"d\",\"type\":\"dir\",\"mode\":493,\"uid\":0,\"gid\":0,\"mtime\":01," TAIL,
     false, T(0, 1, 0, 0), 0, -1},
};

static void test_cases_agree(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const entry_case *c = &cases[i];
        char entries[2048], what[64];
        snprintf(entries, sizeof entries, "%s%s", c->after_file ? FILE_A ",\n" : "", c->entry);
        snprintf(what, sizeof what, "case %zu", i);
        char *text = wrap(entries, c->totals);
        REQUIRE(text);
        int verdict = parse_both(text, what);
        /* -1: any refusal (the pre-scan's or the grammar's). */
        if (c->verdict == -1 ? verdict == 0 : verdict != c->verdict) {
            fprintf(stderr, "case %zu: verdict %d, expected %d\n", i, verdict, c->verdict);
            fbtest_failures++;
        }
        int fast = fast_verdict(c->entry);
        if (fast != c->fast) {
            fprintf(stderr, "case %zu: fast reading %d, expected %d\n", i, fast, c->fast);
            fbtest_failures++;
        }
        free(text);
    }
}

/* Every entry the writer produces is taken by the fast reading, with the
 * content that was written. */
static void test_writer_output_is_read_fast(void)
{
    fb_manifest m;
    fb_manifest_init(&m);
    snprintf(m.backup_id, sizeof m.backup_id, "%s", FULL_ID);
    snprintf(m.session_id, sizeof m.session_id, "%s", SID);
    m.seq = 1;
    m.type = FB_BACKUP_FULL;
    m.created_at = 1764558900;
    m.archive.frame_size = 1 << 20;
    m.archive.level = 3;
    fb_error err;
    REQUIRE(fb_manifest_set_tool_version(&m, "t", &err) == 0);
    uint8_t digest[FB_SHA256_LEN];
    for (size_t i = 0; i < sizeof digest; i++)
        digest[i] = (uint8_t)(i * 7);
    fb_entry_meta dir = {.type = FB_ENTRY_DIR, .mode = 0755, .mtime = -3, .mtime_nsec = 7};
    fb_entry_meta file = {.type = FB_ENTRY_FILE, .mode = 0600, .uid = 1000, .gid = 1000,
                          .mtime = 1700000000, .size = 12345};
    fb_entry_meta link = {.type = FB_ENTRY_SYMLINK, .mode = 0777, .size = 4};
    fb_entry_meta hard = file;
    hard.type = FB_ENTRY_HARDLINK;
    REQUIRE(fb_manifest_add_entry(&m, "artifacts", &dir, NULL, 0, NULL, &err) == 0);
    REQUIRE(fb_manifest_add_entry(&m, "artifacts/r\xc3\xa9sum\xc3\xa9 1.json", &file, digest,
                                  512, NULL, &err) == 0);
    REQUIRE(fb_manifest_add_entry(&m, "artifacts/latest", &link, NULL, 0, "../x", &err) == 0);
    REQUIRE(fb_manifest_add_entry(&m, "artifacts/again", &hard, NULL, 0,
                                  "artifacts/r\xc3\xa9sum\xc3\xa9 1.json", &err) == 0);
    char *json = serialise(&m);
    REQUIRE(json);
    size_t n = 0;
    for (char *line = strchr(json, '\n') + 1; line[0] == '{'; line = strchr(line, '\n') + 1, n++) {
        size_t len = (size_t)(strchr(line, '\n') - line);
        fb_manifest_entry e;
        memset(&e, 0, sizeof e);
        size_t end = 0;
        REQUIRE(n < m.n_entries);
        CHECK_EQ_INT(fb_manifest_entry_read_fast(line, len, 0, &e, &end), 1);
        const fb_manifest_entry *w = &m.entries[n];
        CHECK(end == len || (end + 1 == len && line[end] == ','));
        CHECK(e.path && strcmp(e.path, w->path) == 0);
        CHECK(!w->target || (e.target && strcmp(e.target, w->target) == 0));
        CHECK(e.meta.type == w->meta.type && e.meta.mode == w->meta.mode &&
              e.meta.uid == w->meta.uid && e.meta.gid == w->meta.gid &&
              e.meta.mtime == w->meta.mtime && e.meta.mtime_nsec == w->meta.mtime_nsec &&
              e.meta.size == w->meta.size);
        if (w->meta.type == FB_ENTRY_FILE)
            CHECK(e.offset == w->offset && memcmp(e.sha256, w->sha256, FB_SHA256_LEN) == 0);
        free(e.path);
        free(e.target);
    }
    CHECK_EQ_INT(n, m.n_entries);
    free(json);
    fb_manifest_fini(&m);
}

int main(void)
{
    RUN_TEST(test_writer_output_is_read_fast);
    RUN_TEST(test_cases_agree);
    FBTEST_EXIT();
}
