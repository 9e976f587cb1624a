/* Unit tests of fb_index: records from manifests in seq order, lookups,
 * the JSON round trip (also through jq), and strict-parse rejections
 * (duplicate ids, non-monotonic seq, ...), and the fast reading of the
 * writer's text against the strict one. */
#include <sys/wait.h>

#include "fb_index.h"
#include "fbtest.h"
#include "index_i.h"

#define SID "session_12345_1640995200_abc123"
#define F1 "20261201T031500Z-full-3fa9c2"
#define I2 "20261201T041500Z-incr-0a1b2c"
#define F3 "20261202T031500Z-full-ffffff"

static void make_manifest(fb_manifest *m, const char *id, uint64_t seq, fb_backup_type type,
                          const char *base, const char *note)
{
    fb_manifest_init(m);
    snprintf(m->backup_id, sizeof m->backup_id, "%s", id);
    snprintf(m->session_id, sizeof m->session_id, "%s", SID);
    m->seq = seq;
    m->type = type;
    m->created_at = 1764558900 + (int64_t)seq * 3600;
    if (base)
        snprintf(m->base, sizeof m->base, "%s", base);
    fb_manifest_set_note(m, note, NULL);
    m->archive.size = 1000 * seq;
    memset(m->archive.sha256, (int)(0x10 * seq), FB_SHA256_LEN);
    m->totals.files = 3 * seq;
    m->totals.bytes = (UINT64_C(1) << 53) - seq;
}

static void build(fb_index *idx)
{
    fb_manifest a, b, c;
    fb_error err;
    make_manifest(&a, F1, 1, FB_BACKUP_FULL, NULL, "first \"full\"");
    make_manifest(&b, I2, 2, FB_BACKUP_INCREMENTAL, F1, NULL);
    make_manifest(&c, F3, 5, FB_BACKUP_FULL, NULL, "");
    fb_index_init(idx, SID);
    /* Out of order on purpose: the index keeps seq order. */
    CHECK_EQ_INT(fb_index_add_from_manifest(idx, &c, &err), 0);
    CHECK_EQ_INT(fb_index_add_from_manifest(idx, &a, &err), 0);
    CHECK_EQ_INT(fb_index_add_from_manifest(idx, &b, &err), 0);
    fb_manifest_fini(&a);
    fb_manifest_fini(&b);
    fb_manifest_fini(&c);
}

static void test_add_find_remove(void)
{
    fb_index idx;
    fb_error err;
    fb_index_init(&idx, SID);
    CHECK(fb_index_newest(&idx) == NULL && fb_index_newest_full(&idx) == NULL);
    CHECK(fb_index_next_seq(&idx) == 1);
    fb_index_fini(&idx);

    build(&idx);
    REQUIRE(idx.n == 3);
    CHECK(strcmp(idx.records[0].id, F1) == 0 && strcmp(idx.records[1].id, I2) == 0 &&
          strcmp(idx.records[2].id, F3) == 0);
    const fb_index_record *r = &idx.records[1];
    CHECK(r->seq == 2 && r->type == FB_BACKUP_INCREMENTAL && strcmp(r->base, F1) == 0 &&
          r->note == NULL && r->files == 6 && r->bytes == (UINT64_C(1) << 53) - 2 &&
          r->stored_bytes == 2000 && r->archive_sha256[0] == 0x20 &&
          r->created_at == 1764558900 + 7200);
    CHECK(strcmp(idx.records[0].note, "first \"full\"") == 0);
    CHECK_EQ_INT(fb_index_find(&idx, I2), 1);
    CHECK_EQ_INT(fb_index_find(&idx, "20990101T000000Z-full-000000"), -1);
    CHECK(strcmp(fb_index_newest(&idx)->id, F3) == 0);
    CHECK(strcmp(fb_index_newest_full(&idx)->id, F3) == 0);
    CHECK(fb_index_next_seq(&idx) == 6);

    /* Same id or same seq again is refused. */
    fb_manifest dup;
    make_manifest(&dup, I2, 9, FB_BACKUP_INCREMENTAL, F1, NULL);
    CHECK_EQ_INT(fb_index_add_from_manifest(&idx, &dup, &err), FB_EEXIST);
    CHECK(strstr(err.message, I2) != NULL);
    fb_manifest_fini(&dup);
    make_manifest(&dup, "20261201T051500Z-incr-000001", 2, FB_BACKUP_INCREMENTAL, F1, NULL);
    CHECK_EQ_INT(fb_index_add_from_manifest(&idx, &dup, &err), FB_EEXIST);
    CHECK(strstr(err.message, "seq 2"));
    /* Another session's manifest does not belong here. */
    snprintf(dup.session_id, sizeof dup.session_id, "other");
    dup.seq = 3;
    CHECK_EQ_INT(fb_index_add_from_manifest(&idx, &dup, &err), FB_EMISUSE);
    fb_manifest_fini(&dup);
    CHECK_EQ_INT(idx.n, 3);

    CHECK_EQ_INT(fb_index_remove(&idx, F3, &err), 0);
    CHECK_EQ_INT(idx.n, 2);
    CHECK(strcmp(fb_index_newest(&idx)->id, I2) == 0);
    CHECK(strcmp(fb_index_newest_full(&idx)->id, F1) == 0);
    CHECK(fb_index_next_seq(&idx) == 3);
    CHECK_EQ_INT(fb_index_remove(&idx, F3, &err), FB_ENOTFOUND);
    CHECK(strstr(err.message, F3));
    CHECK_EQ_INT(fb_index_remove(&idx, F1, &err), 0);
    CHECK(fb_index_newest_full(&idx) == NULL);
    fb_index_fini(&idx);
}

static void test_record_matches(void)
{
    fb_index idx;
    fb_manifest m;
    fb_error err;
    fb_index_init(&idx, SID);
    make_manifest(&m, I2, 2, FB_BACKUP_INCREMENTAL, F1, "n");
    REQUIRE(fb_index_add_from_manifest(&idx, &m, &err) == 0);
    CHECK(fb_index_record_matches(&idx.records[0], &m));
    m.archive.sha256[31] ^= 1;
    CHECK(!fb_index_record_matches(&idx.records[0], &m));
    m.archive.sha256[31] ^= 1;
    m.totals.files++;
    CHECK(!fb_index_record_matches(&idx.records[0], &m));
    m.totals.files--;
    fb_manifest_set_note(&m, NULL, &err);
    CHECK(!fb_index_record_matches(&idx.records[0], &m));
    fb_manifest_set_note(&m, "n", &err);
    m.base[0] = '\0';
    CHECK(!fb_index_record_matches(&idx.records[0], &m));
    snprintf(m.base, sizeof m.base, "%s", F1);
    CHECK(fb_index_record_matches(&idx.records[0], &m));
    m.created_at++;
    CHECK(!fb_index_record_matches(&idx.records[0], &m));
    fb_manifest_fini(&m);
    fb_index_fini(&idx);
}

static char *run(const char *cmd, int *status)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return NULL;
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, p);
    buf[n] = '\0';
    int st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return buf;
}

static void test_round_trip(void)
{
    fb_index idx, back;
    fb_error err;
    build(&idx);
    char *json = NULL;
    size_t len = 0;
    REQUIRE(fb_index_to_json(&idx, &json, &len, &err) == 0);
    CHECK(strncmp(json, "{\n  \"format\": 1,\n  \"session_id\": \"" SID "\",\n  \"backups\": [\n",
                  strlen("{\n  \"format\": 1,\n  \"session_id\": \"" SID "\",\n  \"backups\": [\n")) ==
          0);
    CHECK(strstr(json, "\"bytes\": 9007199254740991,"));
    CHECK(json[len - 1] == '\n');
    CHECK_EQ_INT(fb_index_parse(json, len, "index.json", &back, &err), 0);
    REQUIRE(back.n == 3);
    CHECK(strcmp(back.session_id, SID) == 0);
    for (size_t i = 0; i < 3; i++) {
        const fb_index_record *a = &idx.records[i], *b = &back.records[i];
        CHECK(strcmp(a->id, b->id) == 0 && a->seq == b->seq && a->type == b->type &&
              a->created_at == b->created_at && strcmp(a->base, b->base) == 0 &&
              a->files == b->files && a->bytes == b->bytes && a->stored_bytes == b->stored_bytes &&
              memcmp(a->archive_sha256, b->archive_sha256, FB_SHA256_LEN) == 0);
        CHECK((!a->note && !b->note) || (a->note && b->note && strcmp(a->note, b->note) == 0));
    }
    fb_index_fini(&back);

    /* On disk, jq reads it (newest last). */
    char *dir = fbtest_tempdir();
    char path[4200], cmd[8600];
    snprintf(path, sizeof path, "%s/index.json", dir);
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    CHECK(fwrite(json, 1, len, f) == len);
    fclose(f);
    int st = -1;
    snprintf(cmd, sizeof cmd,
             "jq -e -r '.backups[-1].id, .backups[1].base, .backups[1].note, .backups[0].bytes' '%s'",
             path);
    char *out = run(cmd, &st);
    CHECK_EQ_INT(st, 0);
    CHECK(out && strcmp(out, F3 "\n" F1 "\nnull\n9007199254740991\n") == 0);
    free(out);
    fbtest_rmtree(dir);

    /* An empty index is valid too. */
    fb_index empty;
    fb_index_init(&empty, SID);
    char *j2 = NULL;
    REQUIRE(fb_index_to_json(&empty, &j2, NULL, &err) == 0);
    CHECK(strstr(j2, "\"backups\": []"));
    CHECK_EQ_INT(fb_index_parse(j2, strlen(j2), "index.json", &back, &err), 0);
    CHECK_EQ_INT(back.n, 0);
    fb_index_fini(&back);
    free(j2);
    fb_index_fini(&empty);
    free(json);
    fb_index_fini(&idx);
}

static char *replace1(const char *src, const char *old, const char *new)
{
    const char *at = strstr(src, old);
    if (!at) {
        fprintf(stderr, "  fixture lacks \"%s\"\n", old);
        return NULL;
    }
    size_t pre = (size_t)(at - src), ol = strlen(old), nl = strlen(new);
    char *out = malloc(strlen(src) - ol + nl + 1);
    memcpy(out, src, pre);
    memcpy(out + pre, new, nl);
    strcpy(out + pre + nl, at + ol);
    return out;
}

static int expect_bad(char *json, const char *field, const char *detail)
{
    if (!json)
        return 0;
    fb_index idx;
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_index_parse(json, strlen(json), "index.json", &idx, &err);
    int ok = rc == FB_ECORRUPT && strncmp(err.message, "index.json: ", 12) == 0 &&
             strstr(err.message, field) && (!detail || strstr(err.message, detail)) &&
             idx.n == 0 && idx.records == NULL;
    if (!ok)
        fprintf(stderr, "  rc %d, message \"%s\" (wanted \"%s\", \"%s\")\n", rc, err.message, field,
                detail ? detail : "");
    fb_index_fini(&idx);
    free(json);
    return ok;
}

static void test_rejections(void)
{
    fb_index idx;
    fb_error err;
    build(&idx);
    char *j = NULL;
    REQUIRE(fb_index_to_json(&idx, &j, NULL, &err) == 0);
    fb_index_fini(&idx);

    CHECK(expect_bad(replace1(j, "\"id\": \"" F3 "\"", "\"id\": \"" F1 "\""),
                     "backups[2].id: " F1 " is listed twice (also backups[0])", NULL));
    CHECK(expect_bad(replace1(j, "\"seq\": 5,", "\"seq\": 2,"),
                     "backups[2].seq: 2 is not greater than the previous record's 2", NULL));
    CHECK(expect_bad(replace1(j, "\"seq\": 5,", "\"seq\": 1,"), "backups[2].seq", NULL));
    CHECK(expect_bad(replace1(j, "\"seq\": 5,", "\"seq\": 5.5,"), "backups[2].seq: expected an integer",
                     NULL));
    CHECK(expect_bad(replace1(j, "\"seq\": 5,", "\"seq\": 5, \"seq\": 6,"), "backups[2]: duplicate key",
                     NULL));
    CHECK(expect_bad(replace1(j, "\"seq\": 5,", "\"seq\": 5, \"Seq\": 6,"), "differ only in case",
                     NULL));
    CHECK(expect_bad(replace1(j, "\"id\": \"" F3 "\"", "\"id\": \"../../x\""),
                     "backups[2].id: \"../../x\" is not a valid backup id", NULL));
    CHECK(expect_bad(replace1(j, "\"type\": \"incremental\"", "\"type\": \"full\""),
                     "backups[1].type: \"full\" disagrees with id", NULL));
    CHECK(expect_bad(replace1(j, "\"base\": \"" F1 "\"", "\"base\": \"" I2 "\""),
                     "backups[1].base", "not a full backup"));
    CHECK(expect_bad(replace1(j, "\"session_id\": \"" SID "\"", "\"session_id\": \"a/b\""),
                     "index.json: session_id", NULL));
    CHECK(expect_bad(replace1(j, "\"format\": 1,", "\"format\": 2,"), "format", "unsupported"));
    CHECK(expect_bad(replace1(j, "\"format\": 1,", ""), "format: missing required field", NULL));
    CHECK(expect_bad(replace1(j, "\"stored_bytes\": 5000,", ""),
                     "backups[2].stored_bytes: missing required field", NULL));
    CHECK(expect_bad(replace1(j, "\"backups\": [", "\"backups\": {}, \"b\": ["),
                     "backups: expected an array", NULL));
    CHECK(expect_bad(replace1(j, "\"archive_sha256\": \"10", "\"archive_sha256\": \"1A"),
                     "backups[0].archive_sha256", NULL));
    CHECK(expect_bad(replace1(j, "\"created_at\": \"", "\"created_at\": \"x"),
                     "backups[0].created_at", NULL));
    size_t n = strlen(j);
    char *t = malloc(n + 4);
    memcpy(t, j, n);
    strcpy(t + n, "[]");
    CHECK(expect_bad(t, "after the JSON value", NULL));
    CHECK(expect_bad(strdup("{"), "invalid JSON at line 1 col", NULL));
    CHECK(expect_bad(strdup("[]"), "expected an object", NULL));
    free(j);
}

static bool same_record(const fb_index_record *a, const fb_index_record *b)
{
    return strcmp(a->id, b->id) == 0 && a->seq == b->seq && a->type == b->type &&
           a->created_at == b->created_at && strcmp(a->base, b->base) == 0 &&
           a->files == b->files && a->bytes == b->bytes && a->stored_bytes == b->stored_bytes &&
           memcmp(a->archive_sha256, b->archive_sha256, FB_SHA256_LEN) == 0 &&
           ((!a->note && !b->note) || (a->note && b->note && strcmp(a->note, b->note) == 0));
}

/* The text parsed with and without the fast reading: the same code, the
 * same message, the same records. Returns the code; frees json. */
static int agree(char *json, int want_rc)
{
    if (!json)
        return -1000;
    fb_index f, s;
    fb_error ef, es;
    fb_error_clear(&ef);
    fb_error_clear(&es);
    size_t len = strlen(json);
    int rf = fb_index_parse_with(json, len, "index.json", true, &f, &ef);
    int rs = fb_index_parse_with(json, len, "index.json", false, &s, &es);
    bool same = rf == rs && strcmp(ef.message, es.message) == 0 && f.n == s.n &&
                strcmp(f.session_id, s.session_id) == 0;
    for (size_t i = 0; same && i < f.n; i++)
        same = same_record(&f.records[i], &s.records[i]);
    if (!same || rf != want_rc)
        fprintf(stderr, "  fast %d \"%s\", strict %d \"%s\", wanted %d, in:\n%s\n", rf, ef.message,
                rs, es.message, want_rc, json);
    fb_index_fini(&f);
    fb_index_fini(&s);
    free(json);
    return same ? rf : -1000;
}

/* An index of the writer's plain values: 40 records, fulls and their
 * incrementals, notes null, empty and plain. */
static void build_plain(fb_index *idx)
{
    fb_index_init(idx, SID);
    char base[FB_BACKUP_ID_LEN + 1] = "";
    for (uint64_t seq = 1; seq <= 40; seq++) {
        bool full = seq % 4 == 1;
        char id[FB_BACKUP_ID_LEN + 1];
        snprintf(id, sizeof id, "202612%02uT%02u1500Z-%s-%06x", (unsigned)(seq / 24 + 1),
                 (unsigned)(seq % 24), full ? "full" : "incr", (unsigned)(seq * 7919));
        fb_manifest m;
        make_manifest(&m, id, seq, full ? FB_BACKUP_FULL : FB_BACKUP_INCREMENTAL,
                      full ? NULL : base, seq % 3 == 0 ? NULL : seq % 3 == 1 ? "" : "plain note");
        fb_error err;
        CHECK_EQ_INT(fb_index_add_from_manifest(idx, &m, &err), 0);
        fb_manifest_fini(&m);
        if (full)
            memcpy(base, id, sizeof base);
    }
}

static void test_fast_reading_agrees_with_strict(void)
{
    fb_index idx;
    fb_error err;
    build_plain(&idx);
    char *j = NULL;
    size_t len = 0;
    REQUIRE(fb_index_to_json(&idx, &j, &len, &err) == 0);

    /* The writer's text is read fast, to the same records. */
    fb_index fast;
    CHECK_EQ_INT(fb_index_parse_fast(j, len, &fast), 1);
    REQUIRE(fast.n == idx.n);
    CHECK(strcmp(fast.session_id, SID) == 0);
    size_t same = 0;
    for (size_t i = 0; i < idx.n; i++)
        same += same_record(&fast.records[i], &idx.records[i]);
    CHECK_EQ_INT(same, idx.n);
    fb_index_fini(&fast);
    fb_index_fini(&idx);
    CHECK_EQ_INT(agree(strdup(j), 0), 0);

    const char *r1 = "\"id\": \"20261201T011500Z-full-001eef\"";
    /* Accepted either way, some only by the strict reading. */
    const char *ok[][2] = {
        {"\"note\": \"plain note\"", "\"note\": \"with \\\"quotes\\\" \\u00e9\""},
        {"\"note\": \"plain note\"", "\"note\": \"caf\xc3\xa9\""},
        {"\"seq\": 1,", "\"seq\" :1 ,"},
        {"\"id\": \"20261201T011500Z-full-001eef\",\n      \"seq\": 1,",
         "\"seq\": 1, \"id\": \"20261201T011500Z-full-001eef\","},
        {"  \"backups\": [", "  \"extra\": 1, \"backups\": ["},
        {"\"bytes\": 9007199254740990,", "\"bytes\": 0,"},
        {"\"base\": null,", "\"base\": null ,"},
    };
    /* Refused either way, with the same message. */
    const char *bad[][2] = {
        {"\"seq\": 2,", "\"seq\": 2, \"seq\": 3,"},
        {"\"seq\": 2,", "\"seq\": 1,"},
        {"\"seq\": 1,", "\"seq\": 0,"},
        {"\"seq\": 1,", "\"seq\": -1,"},
        {"\"files\": 3,", "\"files\": -3,"},
        {"\"files\": 3,", "\"files\": 9007199254740993,"},
        {"\"files\": 3,", "\"files\": 3e0,"},
        {"\"files\": 3,", ""},
        {"\"note\": \"\",", "\"note\": 5,"},
        {"\"base\": null,", "\"base\": \"20261201T011500Z-full-001eef\","},
        {"\"base\": \"20261201T011500Z-full-001eef\"", "\"base\": \"20261201T021500Z-incr-003dde\""},
        {"\"type\": \"full\"", "\"type\": \"incremental\""},
        {"\"type\": \"full\"", "\"type\": \"Full\""},
        {"\"created_at\": \"", "\"created_at\": \"2026"},
        {"\"archive_sha256\": \"10", "\"archive_sha256\": \"1A"},
        {"\"archive_sha256\": \"10", "\"archive_sha256\": \"1"},
        {r1, "\"id\": \"20261201T011500Z-full-001eeF\""},
        {"\"id\": \"20261201T021500Z-incr-003dde\"", "\"id\": \"20261201T011500Z-full-001eef\""},
        {"\"format\": 1,", "\"format\": 2,"},
        {"\"format\": 1,", "\"format\": 1.0,"},
        {"\"format\": 1,", "\"format\": 1, \"format\": 1,"},
        {"\"session_id\": \"" SID "\"", "\"session_id\": \"a/b\""},
        {"\"session_id\": \"" SID "\"", "\"session_id\": \"" SID "\", \"session_id\": \"x\""},
        {"  \"backups\": [", "  \"backups\": {}, \"b\": ["},
        {"\n}\n", "\n},\n"},
        {"\n}\n", "\n} x\n"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        CHECK_EQ_INT(agree(replace1(j, ok[i][0], ok[i][1]), 0), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ_INT(agree(replace1(j, bad[i][0], bad[i][1]), FB_ECORRUPT), FB_ECORRUPT);
    /* Every whitespace between tokens dropped: still the fast reading. */
    char *compact = malloc(len + 1);
    size_t k = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        if (j[i] == '"' && (i == 0 || j[i - 1] != '\\'))
            in_string = !in_string;
        if (in_string || (j[i] != ' ' && j[i] != '\n'))
            compact[k++] = j[i];
    }
    compact[k] = '\0';
    CHECK_EQ_INT(fb_index_parse_fast(compact, k, &fast), 1);
    CHECK_EQ_INT(fast.n, 40);
    fb_index_fini(&fast);
    CHECK_EQ_INT(agree(compact, 0), 0);
    free(j);
}

int main(void)
{
    RUN_TEST(test_add_find_remove);
    RUN_TEST(test_record_matches);
    RUN_TEST(test_round_trip);
    RUN_TEST(test_rejections);
    RUN_TEST(test_fast_reading_agrees_with_strict);
    FBTEST_EXIT();
}
