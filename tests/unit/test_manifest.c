/* Unit tests of fb_manifest: round trips (in memory and through a file that
 * jq must read), and every strict-parse rejection of RELIABILITY (b)
 * "Manifests", each asserting the code and that the message names the file
 * and the field. */
#include <inttypes.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "fb_hash.h"
#include "fb_manifest.h"
#include "fbtest.h"

#define FULL_ID "20261201T031500Z-full-3fa9c2"
#define INCR_ID "20261201T041500Z-incr-0a1b2c"
#define SID "session_12345_1640995200_abc123"
#define P53 (UINT64_C(1) << 53)

static void fill_digest(uint8_t d[FB_SHA256_LEN], uint8_t v)
{
    memset(d, v, FB_SHA256_LEN);
}

static fb_entry_meta meta(fb_entry_type type, uint32_t mode, uint64_t size)
{
    fb_entry_meta m = {.type = type, .mode = mode, .uid = 1000, .gid = 1000,
                       .mtime = 1700000000, .mtime_nsec = 123456789, .size = size};
    return m;
}

static void base_header(fb_manifest *m, fb_backup_type type, const char *id)
{
    fb_manifest_init(m);
    snprintf(m->backup_id, sizeof m->backup_id, "%s", id);
    snprintf(m->session_id, sizeof m->session_id, "%s", SID);
    m->seq = 1;
    m->type = type;
    m->created_at = 1764558900; /* 2025-12-01T03:15:00Z */
    fb_manifest_set_tool_version(m, "test-1", NULL);
    m->archive.size = 777;
    fill_digest(m->archive.sha256, 0xbb);
    m->archive.frame_size = 1048576;
    m->archive.frames = 1;
    m->archive.level = 3;
}

/* Every entry type, raw-byte names, extreme integers. */
static void build_rich(fb_manifest *m)
{
    base_header(m, FB_BACKUP_FULL, FULL_ID);
    m->seq = P53;
    m->archive.size = P53;
    m->archive.frames = P53;
    m->archive.level = 19;
    fb_manifest_set_note(m, "Major \"milestone\" backup\nline2 \xc3\xa9 \\ tab\t", NULL);
    uint8_t d[FB_SHA256_LEN];
    fb_error err;
    fb_entry_meta e;

    e = meta(FB_ENTRY_DIR, 0755, 0);
    REQUIRE(fb_manifest_add_entry(m, "artifacts", &e, NULL, 0, NULL, &err) == 0);
    e = meta(FB_ENTRY_FILE, 0644, 10);
    fill_digest(d, 0x11);
    REQUIRE(fb_manifest_add_entry(m, "metadata.json", &e, d, 512, NULL, &err) == 0);
    e = meta(FB_ENTRY_FILE, 0600, 0);
    fill_digest(d, 0x22);
    REQUIRE(fb_manifest_add_entry(m, "artifacts/line\nbreak.txt", &e, d, 1536, NULL, &err) == 0);
    e = meta(FB_ENTRY_FILE, 04755, 3);
    fill_digest(d, 0x33);
    REQUIRE(fb_manifest_add_entry(m, "artifacts/bad\xff\xfename", &e, d, 2048, NULL, &err) == 0);
    e = meta(FB_ENTRY_SYMLINK, 0777, 15);
    REQUIRE(fb_manifest_add_entry(m, "artifacts/link", &e, NULL, 0, "../../outside\xff", &err) ==
            0);
    e = meta(FB_ENTRY_HARDLINK, 04755, 3);
    REQUIRE(fb_manifest_add_entry(m, "artifacts/hl", &e, NULL, 0, "artifacts/bad\xff\xfename",
                                  &err) == 0);
    e = meta(FB_ENTRY_DIR, 0700, 0);
    e.uid = UINT32_MAX;
    e.gid = 0;
    e.mtime = -1;
    e.mtime_nsec = 999999999;
    REQUIRE(fb_manifest_add_entry(m, "state", &e, NULL, 0, NULL, &err) == 0);
    e = meta(FB_ENTRY_FILE, 0644, 0);
    e.mtime = -(INT64_C(1) << 53);
    fill_digest(d, 0x44);
    REQUIRE(fb_manifest_add_entry(m, "state/\xc3\xa9t\xc3\xa9.json", &e, d, 3072, NULL, &err) ==
            0);
    e = meta(FB_ENTRY_FILE, 0644, P53 - 13);
    e.mtime = INT64_C(1) << 53;
    fill_digest(d, 0x55);
    REQUIRE(fb_manifest_add_entry(m, "big", &e, d, 4096, NULL, &err) == 0);
}

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int manifests_equal(const fb_manifest *a, const fb_manifest *b)
{
    if (a->format != b->format || strcmp(a->backup_id, b->backup_id) || a->seq != b->seq ||
        strcmp(a->session_id, b->session_id) || a->type != b->type ||
        a->created_at != b->created_at || !same_str(a->note, b->note) ||
        strcmp(a->base, b->base) || !same_str(a->tool_version, b->tool_version) ||
        a->archive.size != b->archive.size ||
        memcmp(a->archive.sha256, b->archive.sha256, FB_SHA256_LEN) ||
        a->archive.frame_size != b->archive.frame_size || a->archive.frames != b->archive.frames ||
        a->archive.level != b->archive.level ||
        memcmp(&a->totals, &b->totals, sizeof a->totals) || a->n_entries != b->n_entries)
        return 0;
    for (size_t i = 0; i < a->n_entries; i++) {
        const fb_manifest_entry *x = &a->entries[i], *y = &b->entries[i];
        /* Field by field: struct padding is not compared. */
        if (strcmp(x->path, y->path) || x->meta.type != y->meta.type ||
            x->meta.mode != y->meta.mode || x->meta.uid != y->meta.uid ||
            x->meta.gid != y->meta.gid || x->meta.mtime != y->meta.mtime ||
            x->meta.mtime_nsec != y->meta.mtime_nsec || x->meta.size != y->meta.size ||
            !same_str(x->target, y->target))
            return 0;
        if (x->meta.type == FB_ENTRY_FILE &&
            (memcmp(x->sha256, y->sha256, FB_SHA256_LEN) || x->offset != y->offset))
            return 0;
    }
    return 1;
}

static void test_round_trip_in_memory(void)
{
    fb_manifest m, back;
    build_rich(&m);
    CHECK(m.totals.files == 6 && m.totals.dirs == 2 && m.totals.symlinks == 1);
    CHECK(m.totals.bytes == P53);
    char *json = NULL;
    size_t len = 0;
    fb_error err;
    fb_error_clear(&err);
    REQUIRE(fb_manifest_to_json(&m, &json, &len, &err) == 0);
    CHECK(len == strlen(json) && json[len - 1] == '\n' && json[len - 2] == '}');
    /* Compact (SPEC "manifest.json"): the top-level fields on the first
     * line, then one entry per line, no other whitespace. */
    CHECK(strncmp(json, "{\"format\":1,\"backup_id\":\"" FULL_ID "\",", 45) == 0);
    /* Integers in plain decimal, names with exact bytes beside the lossy text. */
    CHECK(strstr(json, "\"seq\":9007199254740992,"));
    CHECK(strstr(json, "\"size\":9007199254740979,"));
    CHECK(strstr(json, "\"mtime\":-9007199254740992,"));
    CHECK(strstr(json, "\"uid\":4294967295,"));
    CHECK(strstr(json, "\n{\"path\":\"artifacts/bad\xef\xbf\xbd\xef\xbf\xbdname\","
                       "\"path_b64\":\"YXJ0aWZhY3RzL2JhZP/+bmFtZQ==\","));
    CHECK(strstr(json, "\n{\"path\":\"artifacts/line\\nbreak.txt\""));
    CHECK(strstr(json, "\"target_b64\":"));
    CHECK(strstr(json, "\"link_b64\":"));
    CHECK(strstr(json, "\"note\":\"Major \\\"milestone\\\" backup\\nline2 \xc3\xa9 \\\\ tab\\t\""));
    CHECK(!strstr(json, ": ") && !strstr(json, "\n "));
    CHECK(!strstr(json, "e+"));

    CHECK_EQ_INT(fb_manifest_parse(json, len, "manifest.json", &back, &err), 0);
    if (err.code)
        fprintf(stderr, "  %s\n", err.message);
    CHECK(manifests_equal(&m, &back));
    fb_manifest_fini(&back);

    /* note: null and a full with no base; an incremental with a base. */
    fb_manifest n;
    base_header(&n, FB_BACKUP_INCREMENTAL, INCR_ID);
    snprintf(n.base, sizeof n.base, "%s", FULL_ID);
    char *j2 = NULL;
    REQUIRE(fb_manifest_to_json(&n, &j2, NULL, &err) == 0);
    CHECK(strstr(j2, "\"note\":null,"));
    CHECK(strstr(j2, "\"base\":\"" FULL_ID "\","));
    CHECK(strstr(j2, "\"entries\":[]}\n"));
    CHECK_EQ_INT(fb_manifest_parse(j2, strlen(j2), "manifest.json", &back, &err), 0);
    CHECK(manifests_equal(&n, &back));
    CHECK(back.note == NULL);
    fb_manifest_fini(&back);
    fb_manifest_set_note(&n, "", &err);
    free(j2);
    REQUIRE(fb_manifest_to_json(&n, &j2, NULL, &err) == 0);
    CHECK(strstr(j2, "\"note\":\"\","));
    CHECK_EQ_INT(fb_manifest_parse(j2, strlen(j2), "manifest.json", &back, &err), 0);
    CHECK(back.note && back.note[0] == '\0');
    fb_manifest_fini(&back);
    free(j2);
    fb_manifest_fini(&n);

    free(json);
    fb_manifest_fini(&m);
}

/* Runs a shell command, returns its stdout (malloc'd) and exit status. */
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

static void test_round_trip_on_disk(void)
{
    char *dir = fbtest_tempdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    fb_manifest m, back;
    build_rich(&m);
    char *json = NULL;
    size_t len = 0;
    fb_error err;
    REQUIRE(fb_manifest_to_json(&m, &json, &len, &err) == 0);
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    CHECK(fwrite(json, 1, len, f) == len);
    fclose(f);

    /* Read back from disk. */
    f = fopen(path, "rb");
    REQUIRE(f);
    char *disk = calloc(1, len + 1);
    CHECK(fread(disk, 1, len + 1, f) == len);
    fclose(f);
    CHECK_EQ_INT(fb_manifest_parse(disk, len, path, &back, &err), 0);
    CHECK(manifests_equal(&m, &back));
    fb_manifest_fini(&back);
    free(disk);

    /* jq reads it, and reads the same values. */
    char cmd[8600];
    int st = -1;
    snprintf(cmd, sizeof cmd, "jq -e . '%s' >/dev/null", path);
    free(run(cmd, &st));
    CHECK_EQ_INT(st, 0);
    snprintf(cmd, sizeof cmd,
             "jq -r '.entries[0].path, .entries[1].path, .seq, .totals.bytes, "
             ".entries[6].mtime, .entries[2].path' '%s'",
             path);
    char *out = run(cmd, &st);
    CHECK_EQ_INT(st, 0);
    const char *want = "artifacts\nmetadata.json\n9007199254740992\n9007199254740992\n-1\n"
                       "artifacts/line\nbreak.txt\n";
    CHECK(out && strcmp(out, want) == 0);
    if (out && strcmp(out, want))
        fprintf(stderr, "  jq printed:\n%s", out);
    free(out);
    /* The exact bytes of a non-UTF-8 name come back through base64. */
    snprintf(cmd, sizeof cmd, "jq -r '.entries[3].path_b64' '%s' | base64 -d", path);
    out = run(cmd, &st);
    CHECK_EQ_INT(st, 0);
    CHECK(out && strcmp(out, "artifacts/bad\xff\xfename") == 0);
    free(out);

    free(json);
    fb_manifest_fini(&m);
    fbtest_rmtree(dir);
}

/* ---------------------------------------------------------- rejections */

/* The compact manifest json re-indented into the layout earlier versions
 * wrote (2-space indent, "key": value, an entry over several lines): the
 * rejection tests edit that layout, so they also show that every rule holds
 * for old manifests, which readers must go on reading. */
static char *old_layout(const char *json)
{
    size_t n = strlen(json), cap = n * 8 + 64, o = 0;
    char *out = malloc(cap);
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < n && o + 2 * (size_t)depth + 8 < cap; i++) {
        char c = json[i];
        if (in_str) {
            out[o++] = c;
            if (c == '\\')
                out[o++] = json[++i];
            else if (c == '"')
                in_str = false;
            continue;
        }
        if (c == '\n')
            continue;
        size_t next = i + 1;
        while (next < n && json[next] == '\n')
            next++;
        bool empty = (c == '{' && json[next] == '}') || (c == '[' && json[next] == ']');
        if (c == '}' || c == ']') {
            depth--;
            out[o++] = '\n';
            for (int k = 0; k < depth; k++)
                o += (size_t)sprintf(out + o, "  ");
        }
        out[o++] = c;
        if (c == '"') {
            in_str = true;
        } else if (c == ':') {
            out[o++] = ' ';
        } else if (empty) {
            out[o++] = json[next];
            i = next;
        } else if (c == '{' || c == '[' || c == ',') {
            depth += c != ',';
            out[o++] = '\n';
            for (int k = 0; k < depth; k++)
                o += (size_t)sprintf(out + o, "  ");
        }
    }
    out[o++] = '\n';
    out[o] = '\0';
    return out;
}

/* Small valid manifest: dir d, file d/f (5 bytes), symlink s -> t, hardlink h -> d/f. */
static char *small_json(fb_backup_type type, const char *id, const char *base)
{
    fb_manifest m;
    base_header(&m, type, id);
    if (base)
        snprintf(m.base, sizeof m.base, "%s", base);
    uint8_t d[FB_SHA256_LEN];
    fill_digest(d, 0xaa);
    fb_entry_meta e = meta(FB_ENTRY_DIR, 0755, 0);
    fb_manifest_add_entry(&m, "d", &e, NULL, 0, NULL, NULL);
    e = meta(FB_ENTRY_FILE, 0644, 5);
    fb_manifest_add_entry(&m, "d/f", &e, d, 1536, NULL, NULL);
    e = meta(FB_ENTRY_SYMLINK, 0777, 1);
    fb_manifest_add_entry(&m, "s", &e, NULL, 0, "t", NULL);
    e = meta(FB_ENTRY_HARDLINK, 0644, 5);
    fb_manifest_add_entry(&m, "h", &e, NULL, 0, "d/f", NULL);
    char *json = NULL;
    fb_manifest_to_json(&m, &json, NULL, NULL);
    fb_manifest_fini(&m);
    char *old = json ? old_layout(json) : NULL;
    free(json);
    return old;
}

/* src with the first occurrence of old replaced (NULL if old is absent). */
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

/* Parses json (freed here) and checks the code and that the message starts
 * with the file name and contains field (and detail). */
static int expect_bad_code(char *json, int code, const char *field, const char *detail)
{
    if (!json)
        return 0;
    fb_manifest m;
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_manifest_parse(json, strlen(json), "manifest.json", &m, &err);
    int ok = rc == code && err.code == code && strncmp(err.message, "manifest.json: ", 15) == 0 &&
             strstr(err.message, field) && (!detail || strstr(err.message, detail)) &&
             m.n_entries == 0 && m.entries == NULL && m.note == NULL;
    if (!ok)
        fprintf(stderr, "  rc %d, message \"%s\" (wanted %d, \"%s\", \"%s\")\n", rc, err.message,
                code, field, detail ? detail : "");
    fb_manifest_fini(&m);
    free(json);
    return ok;
}

static int expect_bad(char *json, const char *field, const char *detail)
{
    return expect_bad_code(json, FB_ECORRUPT, field, detail);
}

static void test_the_fixture_is_valid(void)
{
    char *j = small_json(FB_BACKUP_FULL, FULL_ID, NULL);
    REQUIRE(j);
    fb_manifest m;
    fb_error err;
    CHECK_EQ_INT(fb_manifest_parse(j, strlen(j), "manifest.json", &m, &err), 0);
    CHECK_EQ_INT(m.n_entries, 4);
    /* The exact spellings the rejection tests edit. */
    CHECK(strstr(j, "      \"size\": 5,\n      \"sha256\""));
    CHECK(strstr(j, "  \"seq\": 1,\n"));
    CHECK(strstr(j, "      \"mode\": 493,\n"));
    fb_manifest_fini(&m);
    /* Unknown keys are ignored (forward compatible). */
    char *k = replace1(j, "\"seq\": 1,", "\"seq\": 1, \"future\": {\"x\": 1.5},");
    CHECK_EQ_INT(fb_manifest_parse(k, strlen(k), "manifest.json", &m, &err), 0);
    fb_manifest_fini(&m);
    free(k);
    free(j);
}

static void test_rejects_malformed_structure(void)
{
    char *j = small_json(FB_BACKUP_FULL, FULL_ID, NULL);
    REQUIRE(j);
    size_t n = strlen(j);
    char *t = malloc(n + 8);
    memcpy(t, j, n);
    strcpy(t + n, "{}");
    CHECK(expect_bad(t, "invalid JSON at line", "after the JSON value"));
    CHECK(expect_bad(replace1(j, "\"seq\": 1,", "\"seq\": 1, \"seq\": 2,"), "duplicate key \"seq\"",
                     NULL));
    CHECK(expect_bad(replace1(j, "\"size\": 5,", "\"Size\": 5, \"size\": 5,"),
                     "entries[1]: keys \"Size\" and \"size\" differ only in case", NULL));
    CHECK(expect_bad(replace1(j, "\"frames\": 1,", "\"frames\": 1, \"Frames\": 1,"),
                     "archive: keys", NULL));
    char deep[2100];
    memset(deep, '[', 1001);
    memset(deep + 1001, ']', 1001);
    deep[2002] = '\0';
    char note[2200];
    snprintf(note, sizeof note, "\"note\": %s", deep);
    CHECK(expect_bad(replace1(j, "\"note\": null", note), "(note[0][0]", "nesting deeper"));
    /* A manifest over the cap is refused before it is read. */
    fb_manifest m;
    fb_error err;
    CHECK_EQ_INT(fb_manifest_parse(j, (size_t)FB_MANIFEST_SIZE_MAX + 1, "manifest.json", &m, &err),
                 FB_ECORRUPT);
    CHECK(strstr(err.message, "manifest.json: 268435457 bytes, more than the limit"));
    free(j);
}

static void test_rejects_format_missing_and_types(void)
{
    char *j = small_json(FB_BACKUP_FULL, FULL_ID, NULL);
    REQUIRE(j);
    CHECK(expect_bad_code(replace1(j, "\"format\": 1,", "\"format\": 2,"), FB_EUNSUPPORTED,
                          "format: unsupported manifest format 2", NULL));
    CHECK(expect_bad(replace1(j, "\"format\": 1,", "\"format\": \"1\","), "format: expected an integer",
                     NULL));
    CHECK(expect_bad(replace1(j, "  \"tool_version\": \"test-1\",\n", ""),
                     "tool_version: missing required field", NULL));
    CHECK(expect_bad(replace1(j, "      \"mode\": 493,\n", ""),
                     "entries[0].mode: missing required field", NULL));
    CHECK(expect_bad(replace1(j, "      \"target\": \"t\"", "      \"x\": \"t\""),
                     "entries[2].target: missing required field", NULL));
    CHECK(expect_bad(replace1(j, "\"seq\": 1,", "\"seq\": \"1\","), "seq: expected an integer",
                     "got \"1\""));
    CHECK(expect_bad(replace1(j, "\"seq\": 1,", "\"seq\": 0,"), "seq: expected an integer 1..",
                     NULL));
    CHECK(expect_bad(replace1(j, "\"archive\": {", "\"archive\": \"../../etc/passwd\", \"a0\": {"),
                     "archive: expected an object, got \"../../etc/passwd\"", NULL));
    CHECK(expect_bad(replace1(j, "\"entries\": [", "\"entries\": {}, \"e0\": ["),
                     "entries: expected an array", NULL));
    CHECK(expect_bad(replace1(j, "\"note\": null", "\"note\": 5"), "note: expected a string or null",
                     NULL));
    CHECK(expect_bad(replace1(j, "\"note\": null", "\"note\": false"), "note: expected", NULL));
    CHECK(expect_bad(replace1(j, "\"type\": \"dir\"", "\"type\": \"fifo\""),
                     "entries[0].type: expected file, dir, symlink or hardlink", NULL));
    CHECK(expect_bad(replace1(j, "\"type\": \"full\"", "\"type\": \"incremental\""),
                     "type: \"incremental\" disagrees with backup_id", NULL));
    CHECK(expect_bad(replace1(j, "\"type\": \"full\"", "\"type\": \"Full\""), "type: expected full",
                     NULL));
    CHECK(expect_bad(replace1(j, "\"session_id\": \"" SID "\"", "\"session_id\": \"../x\""),
                     "session_id", NULL));
    CHECK(expect_bad(replace1(j, "\"backup_id\": \"" FULL_ID "\"",
                              "\"backup_id\": \"../../etc\""),
                     "backup_id: \"../../etc\" is not a valid backup id", NULL));
    CHECK(expect_bad(replace1(j, "\"created_at\": \"2025-12-01T03:15:00Z\"",
                              "\"created_at\": \"2025-02-30T03:15:00Z\""),
                     "created_at: expected YYYY-MM-DDTHH:MM:SSZ", NULL));
    CHECK(expect_bad(replace1(j, "\"created_at\": \"2025-12-01T03:15:00Z\"",
                              "\"created_at\": 1764558900"),
                     "created_at: expected a string", NULL));
    CHECK(expect_bad(replace1(j, "\"mode\": 493,", "\"mode\": 4096,"),
                     "entries[0].mode: expected an integer 0..4095", NULL));
    CHECK(expect_bad(replace1(j, "\"mtime_nsec\": 123456789", "\"mtime_nsec\": 1000000000"),
                     "entries[0].mtime_nsec", NULL));
    CHECK(expect_bad(replace1(j, "\"uid\": 1000", "\"uid\": 4294967296"), "entries[0].uid", NULL));
    CHECK(expect_bad(replace1(j, "\"level\": 3", "\"level\": 23"), "archive.level", NULL));
    CHECK(expect_bad(replace1(j, "\"frame_size\": 1048576", "\"frame_size\": 0"),
                     "archive.frame_size", NULL));
    free(j);
}

static void test_rejects_bad_numbers(void)
{
    char *j = small_json(FB_BACKUP_FULL, FULL_ID, NULL);
    REQUIRE(j);
    const char *bad[] = {"-1", "1.5", "1e400", "9007199254740993", "\"1\"", "5.0", "null"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char repl[64];
        snprintf(repl, sizeof repl, "\"size\": %s,", bad[i]);
        char got[64];
        snprintf(got, sizeof got, "got %s", bad[i]);
        CHECK(expect_bad(replace1(j, "\"size\": 5,", repl), "entries[1].size: expected an integer",
                         got));
    }
    CHECK(expect_bad(replace1(j, "\"size\": 777,", "\"size\": 1e400,"), "archive.size", NULL));
    free(j);
}

static void test_rejects_bad_names(void)
{
    char *j = small_json(FB_BACKUP_FULL, FULL_ID, NULL);
    REQUIRE(j);
    CHECK(expect_bad(replace1(j, "\"path\": \"d/f\"", "\"path\": \"../x\""),
                     "entries[1].path: \"../x\": has a '.' or '..' component", NULL));
    CHECK(expect_bad(replace1(j, "\"path\": \"d/f\"", "\"path\": \"a/../../x\""),
                     "entries[1].path", "'..'"));
    CHECK(expect_bad(replace1(j, "\"path\": \"d/f\"", "\"path\": \"/abs\""),
                     "entries[1].path: \"/abs\": absolute", NULL));
    CHECK(expect_bad(replace1(j, "\"path\": \"d/f\"", "\"path\": \"a\\u0000b\""),
                     "(entries[1].path)", "\\u0000"));
    CHECK(expect_bad(replace1(j, "\"path\": \"d/f\"", "\"path\": \"\""),
                     "entries[1].path: \"\": empty", NULL));
    CHECK(expect_bad(replace1(j, "\"path\": \"d/f\"", "\"path\": \"d\xff\""),
                     "(entries[1].path)", "invalid UTF-8"));
    CHECK(expect_bad(replace1(j, "\"path\": \"d/f\"", "\"path\": \"d//f\""), "entries[1].path",
                     "empty component"));
    CHECK(expect_bad(replace1(j, "\"path\": \"d/f\"", "\"path\": \"d/./f\""), "entries[1].path",
                     "'.'"));
    CHECK(expect_bad(replace1(j, "\"path\": \"d\"", "\"path\": \"d/\""), "entries[0].path",
                     "ends with '/'"));
    CHECK(expect_bad(replace1(j, "\"path\": \"d\"", "\"path\": \".\""), "entries[0].path", "'.'"));
    char *longp = malloc(5100);
    strcpy(longp, "\"path\": \"");
    memset(longp + 9, 'a', 5000);
    strcpy(longp + 5009, "\"");
    CHECK(expect_bad(replace1(j, "\"path\": \"s\"", longp), "entries[2].path",
                     "longer than 4096 bytes"));
    free(longp);
    CHECK(expect_bad(replace1(j, "\"target\": \"t\"", "\"target\": \"\""), "entries[2].target",
                     "empty symlink target"));
    /* sha256 must be 64 lowercase hex digits. */
    char upper[80], short_hex[80];
    memset(upper, 'A', 64);
    upper[64] = '\0';
    memset(short_hex, 'a', 63);
    short_hex[63] = '\0';
    char aa[80];
    memset(aa, 'a', 64);
    aa[64] = '\0';
    char repl[128];
    snprintf(repl, sizeof repl, "\"sha256\": \"%s\"", upper);
    char orig[128];
    snprintf(orig, sizeof orig, "\"sha256\": \"%s\"", aa);
    CHECK(expect_bad(replace1(j, orig, repl), "entries[1].sha256: expected 64 lowercase hex", NULL));
    snprintf(repl, sizeof repl, "\"sha256\": \"%s\"", short_hex);
    CHECK(expect_bad(replace1(j, orig, repl), "entries[1].sha256", NULL));
    snprintf(repl, sizeof repl, "\"sha256\": \"%sg\"", short_hex);
    CHECK(expect_bad(replace1(j, orig, repl), "entries[1].sha256", NULL));
    CHECK(expect_bad(replace1(j, "\"sha256\": \"bbbb", "\"sha256\": \"BBbb"),
                     "archive.sha256: expected 64 lowercase hex", NULL));
    /* Keys of other entry types are refused, not ignored. */
    snprintf(repl, sizeof repl, "\"type\": \"dir\", \"sha256\": \"%s\"", aa);
    CHECK(expect_bad(replace1(j, "\"type\": \"dir\"", repl),
                     "entries[0].sha256: not allowed on a dir entry", NULL));
    CHECK(expect_bad(replace1(j, "\"type\": \"dir\"", "\"type\": \"dir\", \"target\": \"x\""),
                     "entries[0].target: not allowed on a dir entry", NULL));
    CHECK(expect_bad(replace1(j, "\"target\": \"t\"", "\"target\": \"t\", \"link\": \"d/f\""),
                     "entries[2].link: not allowed on a symlink entry", NULL));
    free(j);
}

static void test_rejects_bad_base(void)
{
    char *j = small_json(FB_BACKUP_INCREMENTAL, INCR_ID, "20261130T000000Z-full-000001");
    REQUIRE(j);
    fb_manifest m;
    fb_error err;
    CHECK_EQ_INT(fb_manifest_parse(j, strlen(j), "manifest.json", &m, &err), 0);
    CHECK(strcmp(m.base, "20261130T000000Z-full-000001") == 0);
    fb_manifest_fini(&m);
    CHECK(expect_bad(replace1(j, "20261130T000000Z-full-000001", "20261130T000000Z-incr-000001"),
                     "base: 20261130T000000Z-incr-000001 is not a full backup", NULL));
    CHECK(expect_bad(replace1(j, "20261130T000000Z-full-000001", "../full"),
                     "base: \"../full\" is not a valid backup id", NULL));
    CHECK(expect_bad(replace1(j, "\"base\": \"20261130T000000Z-full-000001\"", "\"base\": 7"),
                     "base: expected a string or null", NULL));
    free(j);
    j = small_json(FB_BACKUP_FULL, FULL_ID, NULL);
    CHECK(expect_bad(replace1(j, "\"base\": null", "\"base\": \"20261130T000000Z-full-000001\""),
                     "base: a full backup has no base", NULL));
    free(j);
}

static void test_rejects_names_in_base64(void)
{
    fb_manifest m;
    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    uint8_t d[FB_SHA256_LEN];
    fill_digest(d, 0xaa);
    fb_entry_meta e = meta(FB_ENTRY_FILE, 0644, 1);
    fb_manifest_add_entry(&m, "x\xff", &e, d, 512, NULL, NULL);
    char *j = NULL;
    REQUIRE(fb_manifest_to_json(&m, &j, NULL, NULL) == 0);
    fb_manifest_fini(&m);
    CHECK(strstr(j, "\"path_b64\":\"eP8=\""));
    CHECK(expect_bad(replace1(j, "\"eP8=\"", "\"eQ==\""), "entries[0].path: does not match path_b64",
                     NULL));
    CHECK(expect_bad(replace1(j, "\"eP8=\"", "\"eP8\""), "entries[0].path_b64: not valid base64",
                     NULL));
    CHECK(expect_bad(replace1(j, "\"eP8=\"", "\"AP8=\""), "entries[0].path_b64: contains a NUL",
                     NULL));
    CHECK(expect_bad(replace1(j, "\"eP8=\"", "5"), "entries[0].path_b64: expected a string", NULL));
    /* A valid _b64 that decodes to "../x" is caught by the path rules too. */
    char *k = replace1(j, "\"eP8=\"", "\"Li4veA==\"");
    CHECK(expect_bad(replace1(k, "\"x\xef\xbf\xbd\"", "\"../x\""), "entries[0].path: \"../x\"",
                     NULL));
    free(k);
    free(j);
}

/* Serialises m (then frees it) and expects the parse to fail naming field. */
static int expect_bad_manifest(fb_manifest *m, const char *field, const char *detail)
{
    char *j = NULL;
    int rc = fb_manifest_to_json(m, &j, NULL, NULL);
    fb_manifest_fini(m);
    if (rc != 0)
        return 0;
    return expect_bad(j, field, detail);
}

static void test_rejects_cross_entry_rules(void)
{
    fb_manifest m;
    uint8_t d[FB_SHA256_LEN];
    fill_digest(d, 0xaa);
    fb_entry_meta f1 = meta(FB_ENTRY_FILE, 0644, 100), dir = meta(FB_ENTRY_DIR, 0755, 0);
    fb_entry_meta sl = meta(FB_ENTRY_SYMLINK, 0777, 4), hl = meta(FB_ENTRY_HARDLINK, 0644, 100);

    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    fb_manifest_add_entry(&m, "a", &f1, d, 512, NULL, NULL);
    fb_manifest_add_entry(&m, "a", &f1, d, 1536, NULL, NULL);
    CHECK(expect_bad_manifest(&m, "entries[1].path: \"a\": duplicate path", NULL));
    /* Paths are names from disk: shown by fb_path_escape's rule (UTF-8 and
     * quotes as they are, backslash, controls and invalid bytes escaped). */
    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    fb_manifest_add_entry(&m, "caf\xc3\xa9 \"q\"\\x\n\xff", &f1, d, 512, NULL, NULL);
    fb_manifest_add_entry(&m, "caf\xc3\xa9 \"q\"\\x\n\xff", &f1, d, 1536, NULL, NULL);
    CHECK(expect_bad_manifest(
        &m, "entries[1].path: \"caf\xc3\xa9 \"q\"\\\\x\\n\\xff\": duplicate path", NULL));

    /* A4 within one manifest: an entry below a symlink or a file. */
    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    fb_manifest_add_entry(&m, "x", &sl, NULL, 0, "../../out", NULL);
    fb_manifest_add_entry(&m, "x/authorized_keys", &f1, d, 512, NULL, NULL);
    CHECK(expect_bad_manifest(&m, "entries[1].path",
                              "lies below \"x\", which is not a directory"));
    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    fb_manifest_add_entry(&m, "a/b/c", &f1, d, 512, NULL, NULL);
    fb_manifest_add_entry(&m, "a", &dir, NULL, 0, NULL, NULL);
    fb_manifest_add_entry(&m, "a/b", &f1, d, 1536, NULL, NULL);
    CHECK(expect_bad_manifest(&m, "entries[0].path", "lies below \"a/b\""));

    /* Hardlinks: to an earlier file of the same size only. */
    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    fb_manifest_add_entry(&m, "h", &hl, NULL, 0, "f", NULL);
    fb_manifest_add_entry(&m, "f", &f1, d, 512, NULL, NULL);
    CHECK(expect_bad_manifest(&m, "entries[0].link: \"f\" is not an earlier entry", NULL));
    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    fb_manifest_add_entry(&m, "h", &hl, NULL, 0, "nowhere", NULL);
    CHECK(expect_bad_manifest(&m, "entries[0].link: \"nowhere\" is not an earlier entry", NULL));
    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    fb_manifest_add_entry(&m, "d", &dir, NULL, 0, NULL, NULL);
    fb_manifest_add_entry(&m, "h", &hl, NULL, 0, "d", NULL);
    CHECK(expect_bad_manifest(&m, "entries[1].link: \"d\" is not a file entry", NULL));
    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    fb_manifest_add_entry(&m, "f", &f1, d, 512, NULL, NULL);
    hl.size = 99;
    fb_manifest_add_entry(&m, "h", &hl, NULL, 0, "f", NULL);
    hl.size = 100;
    CHECK(expect_bad_manifest(&m, "entries[1].size: differs from the size of \"f\"", NULL));
    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    fb_manifest_add_entry(&m, "f", &f1, d, 512, NULL, NULL);
    fb_manifest_add_entry(&m, "h", &hl, NULL, 0, "../f", NULL);
    CHECK(expect_bad_manifest(&m, "entries[1].link: \"../f\"", "'..'"));

    /* File data ranges must increase and not overlap. */
    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    fb_manifest_add_entry(&m, "a", &f1, d, 512, NULL, NULL);
    fb_manifest_add_entry(&m, "b", &f1, d, 611, NULL, NULL);
    CHECK(expect_bad_manifest(&m, "entries[1].offset: 611 overlaps", NULL));
    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    fb_manifest_add_entry(&m, "a", &f1, d, 1536, NULL, NULL);
    fb_manifest_add_entry(&m, "b", &f1, d, 512, NULL, NULL);
    CHECK(expect_bad_manifest(&m, "entries[1].offset: 512", NULL));
    fb_entry_meta empty = meta(FB_ENTRY_FILE, 0644, 0);
    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    fb_manifest_add_entry(&m, "a", &empty, d, 512, NULL, NULL);
    fb_manifest_add_entry(&m, "b", &empty, d, 512, NULL, NULL);
    CHECK(expect_bad_manifest(&m, "entries[1].offset", NULL));
    /* Adjacent ranges are fine. */
    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    fb_manifest_add_entry(&m, "a", &f1, d, 512, NULL, NULL);
    fb_manifest_add_entry(&m, "b", &f1, d, 612, NULL, NULL);
    char *j = NULL;
    REQUIRE(fb_manifest_to_json(&m, &j, NULL, NULL) == 0);
    fb_manifest_fini(&m);
    fb_manifest back;
    fb_error err;
    CHECK_EQ_INT(fb_manifest_parse(j, strlen(j), "manifest.json", &back, &err), 0);
    fb_manifest_fini(&back);
    free(j);

    /* Totals are recomputed. */
    const char *fields[] = {"totals.files", "totals.dirs", "totals.symlinks", "totals.bytes"};
    for (int i = 0; i < 4; i++) {
        base_header(&m, FB_BACKUP_FULL, FULL_ID);
        fb_manifest_add_entry(&m, "a", &f1, d, 512, NULL, NULL);
        fb_manifest_add_entry(&m, "d", &dir, NULL, 0, NULL, NULL);
        fb_manifest_add_entry(&m, "s", &sl, NULL, 0, "a", NULL);
        uint64_t *t[] = {&m.totals.files, &m.totals.dirs, &m.totals.symlinks, &m.totals.bytes};
        (*t[i])++;
        CHECK(expect_bad_manifest(&m, fields[i], "but the entries add up to"));
    }
}

/* Serialises m (then frees it), parses it and returns the parse's code;
 * *entries gets the number of entries read. */
static int parse_manifest(fb_manifest *m, size_t *entries, fb_error *err)
{
    char *j = NULL;
    int rc = fb_manifest_to_json(m, &j, NULL, err);
    fb_manifest_fini(m);
    if (rc != 0)
        return rc;
    fb_manifest back;
    rc = fb_manifest_parse(j, strlen(j), "manifest.json", &back, err);
    if (rc != 0)
        fprintf(stderr, "  %s\n", err->message);
    *entries = back.n_entries;
    fb_manifest_fini(&back);
    free(j);
    return rc;
}

#define DEEP 2000 /* "d/d/.../d": 3999 bytes, about as deep as a 4096-byte path goes */

/* The chain d, d/d, ... (DEEP directories) and, in the deepest ones, files.
 * skip (a depth, 0 for none) leaves that directory out; nondir (a depth,
 * 0 for none) makes that one a file (sym: a symlink) instead. */
static void build_deep(fb_manifest *m, int skip, int nondir, bool sym)
{
    static char path[FB_PATH_MAX + 1];
    uint8_t d[FB_SHA256_LEN];
    fill_digest(d, 0x5a);
    base_header(m, FB_BACKUP_FULL, FULL_ID);
    fb_entry_meta dir = meta(FB_ENTRY_DIR, 0755, 0), f = meta(FB_ENTRY_FILE, 0644, 1);
    fb_entry_meta sl = meta(FB_ENTRY_SYMLINK, 0777, 1);
    uint64_t off = 512;
    for (int k = 1; k <= DEEP; k++) {
        size_t n = (size_t)(2 * k - 1);
        for (size_t i = 0; i < n; i++)
            path[i] = i % 2 ? '/' : 'd';
        path[n] = '\0';
        if (k == skip)
            continue;
        if (k == nondir && sym) {
            REQUIRE(fb_manifest_add_entry(m, path, &sl, NULL, 0, "elsewhere", NULL) == 0);
        } else if (k == nondir) {
            REQUIRE(fb_manifest_add_entry(m, path, &f, d, off, NULL, NULL) == 0);
            off += 1024;
        } else {
            REQUIRE(fb_manifest_add_entry(m, path, &dir, NULL, 0, NULL, NULL) == 0);
        }
    }
    /* Files in the 4 deepest directories: long shared prefixes. */
    for (int i = 0; i < 200; i++) {
        int k = DEEP - i % 4;
        size_t n = (size_t)(2 * k - 1);
        for (size_t c = 0; c < n; c++)
            path[c] = c % 2 ? '/' : 'd';
        snprintf(path + n, sizeof path - n, "/f%03d", i);
        REQUIRE(fb_manifest_add_entry(m, path, &f, d, off, NULL, NULL) == 0);
        off += 1024;
    }
}

/* issue 7: every '/' of every path used to cost a binary search over all
 * paths (seconds for a few MB of deep paths). Deep trees parse, and every
 * rule about what lies below what still holds at any depth. */
static void test_deep_nesting(void)
{
    fb_manifest m;
    fb_error err;
    size_t n = 0;
    build_deep(&m, 0, 0, false);
    CHECK_EQ_INT(parse_manifest(&m, &n, &err), 0);
    CHECK_EQ_INT(n, DEEP + 200);

    /* A directory in the middle that is a file, or a symlink: everything
     * below it is refused, the first such entry named, with the file. */
    char want[64];
    snprintf(want, sizeof want, "entries[%d].path", 1000);
    build_deep(&m, 0, 1000, false);
    CHECK(expect_bad_manifest(&m, want, "which is not a directory"));
    build_deep(&m, 0, 1000, true);
    CHECK(expect_bad_manifest(&m, want, "which is not a directory"));
    build_deep(&m, 0, 3, false);
    CHECK(expect_bad_manifest(&m, "entries[3].path", "lies below \"d/d/d\", which is not"));
    /* The deepest directory a file: only the files below it are refused. */
    build_deep(&m, 0, DEEP, false);
    snprintf(want, sizeof want, "entries[%d].path", DEEP);
    CHECK(expect_bad_manifest(&m, want, "which is not a directory"));

    /* An ancestor that is not an entry at all is allowed (as before: the
     * mount implies the directory, restore refuses it on its own, see
     * check_tree_order), but a non-directory above the gap is still
     * found: checking only each path's parent would miss it. */
    build_deep(&m, 1500, 0, false);
    CHECK_EQ_INT(parse_manifest(&m, &n, &err), 0);
    CHECK_EQ_INT(n, DEEP - 1 + 200);
    build_deep(&m, 2, 1, true);
    CHECK(expect_bad_manifest(&m, "entries[1].path", "lies below \"d\", which is not"));
    /* d/...(1499 deep) a file, the next level absent: the first entry
     * refused is the one 1501 deep (index 1499, one entry skipped). */
    build_deep(&m, 1500, 1499, false);
    CHECK(expect_bad_manifest(&m, "entries[1499].path", "which is not a directory"));
}

/* Names with bytes that sort before '/' ("a/b-x", "a/b.c") sit between "a/b"
 * and "a/b/..." in byte order; none of them is below "a/b". */
static void test_below_rules_and_neighbours(void)
{
    fb_manifest m;
    fb_error err;
    size_t n = 0;
    uint8_t d[FB_SHA256_LEN];
    fill_digest(d, 0xaa);
    fb_entry_meta f = meta(FB_ENTRY_FILE, 0644, 1), dir = meta(FB_ENTRY_DIR, 0755, 0);
    fb_entry_meta sl = meta(FB_ENTRY_SYMLINK, 0777, 1);

    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    fb_manifest_add_entry(&m, "a", &dir, NULL, 0, NULL, NULL);
    fb_manifest_add_entry(&m, "a/b", &f, d, 512, NULL, NULL);
    fb_manifest_add_entry(&m, "a/b-x", &dir, NULL, 0, NULL, NULL);
    fb_manifest_add_entry(&m, "a/b-x/y", &f, d, 1536, NULL, NULL);
    fb_manifest_add_entry(&m, "a/b.c", &dir, NULL, 0, NULL, NULL);
    fb_manifest_add_entry(&m, "a/b.c/z", &sl, NULL, 0, "a/b", NULL);
    fb_manifest_add_entry(&m, "a/b\x01", &f, d, 2560, NULL, NULL);
    fb_manifest_add_entry(&m, "a/bb/c", &f, d, 3584, NULL, NULL);
    CHECK_EQ_INT(parse_manifest(&m, &n, &err), 0);
    CHECK_EQ_INT(n, 8);

    /* The same with one entry below the file "a/b", listed last. */
    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    fb_manifest_add_entry(&m, "a/b", &f, d, 512, NULL, NULL);
    fb_manifest_add_entry(&m, "a/b-x", &dir, NULL, 0, NULL, NULL);
    fb_manifest_add_entry(&m, "a/b-x/y", &f, d, 1536, NULL, NULL);
    fb_manifest_add_entry(&m, "a/b.c/z", &sl, NULL, 0, "a/b", NULL);
    fb_manifest_add_entry(&m, "a/b/c/d", &f, d, 2560, NULL, NULL);
    fb_manifest_add_entry(&m, "a/b/c", &dir, NULL, 0, NULL, NULL);
    CHECK(expect_bad_manifest(&m, "entries[4].path",
                              "\"a/b/c/d\" lies below \"a/b\", which is not a directory"));
    /* Named with the shallowest non-directory above it. */
    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    fb_manifest_add_entry(&m, "x/y/z", &f, d, 512, NULL, NULL);
    fb_manifest_add_entry(&m, "x/y", &sl, NULL, 0, "t", NULL);
    fb_manifest_add_entry(&m, "x", &sl, NULL, 0, "t", NULL);
    CHECK(expect_bad_manifest(&m, "entries[0].path", "\"x/y/z\" lies below \"x\","));

    /* The first entry repeating an earlier path is the one named. */
    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    fb_manifest_add_entry(&m, "b", &dir, NULL, 0, NULL, NULL);
    fb_manifest_add_entry(&m, "a", &dir, NULL, 0, NULL, NULL);
    fb_manifest_add_entry(&m, "b", &dir, NULL, 0, NULL, NULL);
    fb_manifest_add_entry(&m, "a", &dir, NULL, 0, NULL, NULL);
    fb_manifest_add_entry(&m, "a", &dir, NULL, 0, NULL, NULL);
    CHECK(expect_bad_manifest(&m, "entries[2].path: \"b\": duplicate path", NULL));
    /* A duplicate is found before anything below it. */
    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    fb_manifest_add_entry(&m, "f", &f, d, 512, NULL, NULL);
    fb_manifest_add_entry(&m, "f/g", &f, d, 1536, NULL, NULL);
    fb_manifest_add_entry(&m, "f/g", &f, d, 2560, NULL, NULL);
    CHECK(expect_bad_manifest(&m, "entries[2].path: \"f/g\": duplicate path", NULL));

    /* Hardlinks are looked up in the same order: "a/b" is found among its
     * neighbours, "a" (a prefix of them) is not a file. */
    fb_entry_meta hl = meta(FB_ENTRY_HARDLINK, 0644, 1);
    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    fb_manifest_add_entry(&m, "a", &dir, NULL, 0, NULL, NULL);
    fb_manifest_add_entry(&m, "a/b-x", &f, d, 512, NULL, NULL);
    fb_manifest_add_entry(&m, "a/b", &f, d, 1536, NULL, NULL);
    fb_manifest_add_entry(&m, "a/b.c", &f, d, 2560, NULL, NULL);
    fb_manifest_add_entry(&m, "h", &hl, NULL, 0, "a/b", NULL);
    CHECK_EQ_INT(parse_manifest(&m, &n, &err), 0);
    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    fb_manifest_add_entry(&m, "a", &dir, NULL, 0, NULL, NULL);
    fb_manifest_add_entry(&m, "a/b", &f, d, 512, NULL, NULL);
    fb_manifest_add_entry(&m, "h", &hl, NULL, 0, "a", NULL);
    CHECK(expect_bad_manifest(&m, "entries[2].link: \"a\" is not a file entry", NULL));
    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    fb_manifest_add_entry(&m, "a/b", &f, d, 512, NULL, NULL);
    fb_manifest_add_entry(&m, "h", &hl, NULL, 0, "a/b/c", NULL);
    CHECK(expect_bad_manifest(&m, "entries[1].link: \"a/b/c\" is not an earlier entry", NULL));
}

/* An unknown key may hold anything, but not so many values that building
 * them costs far more than the text: one per 8 bytes (and 65536) at most. */
static void test_refuses_dense_values(void)
{
    char *j = small_json(FB_BACKUP_FULL, FULL_ID, NULL);
    REQUIRE(j);
    size_t count = 120000;
    char *junk = malloc(count * 8 + 64);
    REQUIRE(junk);
    /* "0      ,": 8 bytes a value is accepted. */
    size_t k = (size_t)sprintf(junk, "\"seq\": 1, \"junk\": [");
    for (size_t i = 0; i < count; i++)
        k += (size_t)sprintf(junk + k, i + 1 < count ? "0      ," : "0]");
    strcpy(junk + k, ",");
    char *ok = replace1(j, "\"seq\": 1,", junk);
    fb_manifest m;
    fb_error err;
    CHECK_EQ_INT(fb_manifest_parse(ok, strlen(ok), "manifest.json", &m, &err), 0);
    CHECK_EQ_INT(m.n_entries, 4);
    fb_manifest_fini(&m);
    free(ok);
    /* "0,": 2 bytes a value is refused, before cJSON builds them. */
    k = (size_t)sprintf(junk, "\"seq\": 1, \"junk\": [");
    for (size_t i = 0; i < count; i++)
        k += (size_t)sprintf(junk + k, i + 1 < count ? "0," : "0]");
    strcpy(junk + k, ",");
    CHECK(expect_bad(replace1(j, "\"seq\": 1,", junk), "JSON values in",
                     "at most one per 8 bytes"));
    free(junk);
    free(j);
}

static void test_rfc3339_and_names(void)
{
    char buf[32];
    fb_rfc3339_format(0, buf);
    CHECK(strcmp(buf, "1970-01-01T00:00:00Z") == 0);
    fb_rfc3339_format(1764558900, buf);
    CHECK(strcmp(buf, "2025-12-01T03:15:00Z") == 0);
    int64_t t = 0;
    CHECK_EQ_INT(fb_rfc3339_parse("2025-12-01T03:15:00Z", &t), 0);
    CHECK(t == 1764558900);
    CHECK_EQ_INT(fb_rfc3339_parse("2024-02-29T23:59:59Z", &t), 0);
    CHECK(t == 1709251199);
    CHECK_EQ_INT(fb_rfc3339_parse("1969-12-31T23:59:59Z", &t), 0);
    CHECK(t == -1);
    const char *bad[] = {"2023-02-29T00:00:00Z", "2025-12-01T03:15:00+00:00",
                         "2025-12-01 03:15:00Z", "2025-13-01T00:00:00Z", "2025-00-01T00:00:00Z",
                         "2025-12-32T00:00:00Z", "2025-12-01T24:00:00Z", "2025-12-01T00:60:00Z",
                         "2025-12-01T00:00:60Z", "2025-12-01T00:00:00z", "2025-12-01T00:00:00.5Z",
                         "+025-12-01T00:00:00Z", "2025-1-01T00:00:00Z", "", "2025-12-01T00:00:0Z"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ_INT(fb_rfc3339_parse(bad[i], &t), FB_ECORRUPT);

    fb_entry_type et;
    fb_backup_type bt;
    for (int i = FB_ENTRY_FILE; i <= FB_ENTRY_HARDLINK; i++) {
        CHECK_EQ_INT(fb_entry_type_parse(fb_entry_type_name((fb_entry_type)i), &et), 0);
        CHECK_EQ_INT(et, i);
    }
    CHECK(strcmp(fb_entry_type_name(FB_ENTRY_HARDLINK), "hardlink") == 0);
    CHECK(strcmp(fb_backup_type_name(FB_BACKUP_INCREMENTAL), "incremental") == 0);
    CHECK_EQ_INT(fb_backup_type_parse("full", &bt), 0);
    CHECK_EQ_INT(bt, FB_BACKUP_FULL);
    CHECK(fb_backup_type_parse("incr", &bt) < 0);
    CHECK(fb_entry_type_parse("File", &et) < 0);
    CHECK(fb_entry_type_parse(NULL, &et) < 0);
}

static void test_writer_refuses_unrepresentable(void)
{
    fb_manifest m;
    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    m.seq = P53 + 1;
    char *j = NULL;
    fb_error err;
    CHECK_EQ_INT(fb_manifest_to_json(&m, &j, NULL, &err), FB_EMISUSE);
    CHECK(j == NULL && strstr(err.message, "seq: 9007199254740993 is beyond 2^53"));
    m.seq = 1;
    m.created_at = INT64_C(300000000000); /* year 11476 */
    CHECK_EQ_INT(fb_manifest_to_json(&m, &j, NULL, &err), FB_EMISUSE);
    CHECK(strstr(err.message, "created_at"));
    fb_entry_meta e = meta(FB_ENTRY_FILE, 0644, 1);
    CHECK_EQ_INT(fb_manifest_add_entry(&m, "f", &e, NULL, 0, NULL, &err), FB_EMISUSE);
    e.type = FB_ENTRY_SYMLINK;
    CHECK_EQ_INT(fb_manifest_add_entry(&m, "l", &e, NULL, 0, NULL, &err), FB_EMISUSE);
    CHECK_EQ_INT(m.n_entries, 0);
    fb_manifest_fini(&m);
}

/* SPEC "manifest.json": the top-level fields, then "entries":[, then one
 * entry per line, so grep finds an entry by its path; the old indented
 * layout of the same manifest still reads to the same thing. */
static void test_compact_layout(void)
{
    fb_manifest m, back;
    build_rich(&m);
    char *json = NULL;
    size_t len = 0;
    fb_error err;
    REQUIRE(fb_manifest_to_json(&m, &json, &len, &err) == 0);
    const char *entries = strstr(json, ",\"entries\":[\n");
    REQUIRE(entries);
    CHECK(memchr(json, '\n', (size_t)(entries - json)) == NULL);
    CHECK(strcmp(json + len - 4, "}\n]}") == 0 || strcmp(json + len - 5, "}\n]}\n") == 0);
    /* Every line after the first is one whole entry ("{...}" or "{...},"). */
    size_t lines = 0;
    for (const char *l = strchr(json, '\n') + 1; *l && strcmp(l, "]}\n") != 0; lines++) {
        const char *end = strchr(l, '\n');
        REQUIRE(end);
        CHECK(l[0] == '{' && (end[-1] == '}' || (end[-2] == '}' && end[-1] == ',')));
        CHECK(strstr(l, "\"path\":") == l + 1);
        l = end + 1;
    }
    CHECK_EQ_INT(lines, m.n_entries);
    const char *hit = strstr(json, "{\"path\":\"metadata.json\",");
    CHECK(hit && hit[-1] == '\n' && !strstr(hit + 2, "\"path\":\"metadata.json\""));

    char *old = old_layout(json);
    CHECK(strstr(old, "{\n  \"format\": 1,\n  \"backup_id\": \"" FULL_ID "\",\n"));
    CHECK(strstr(old, "\n  \"entries\": [\n    {\n      \"path\": "));
    CHECK_EQ_INT(fb_manifest_parse(old, strlen(old), "manifest.json", &back, &err), 0);
    CHECK(manifests_equal(&m, &back));
    fb_manifest_fini(&back);
    /* Any valid layout: all on one line, or with spaces everywhere. */
    for (char *p = json; *p; p++)
        if (*p == '\n')
            *p = ' ';
    CHECK_EQ_INT(fb_manifest_parse(json, len, "manifest.json", &back, &err), 0);
    CHECK(manifests_equal(&m, &back));
    fb_manifest_fini(&back);
    free(old);
    free(json);
    fb_manifest_fini(&m);
}

/* The reader goes entry by entry, but reports errors in the order a
 * whole-document parse does: any syntax error (a later entry's duplicate
 * key, a missing comma) before any broken rule (an earlier entry's type, a
 * header field), and the entries may come before the header. */
static void test_streaming_keeps_the_error_order(void)
{
    fb_manifest m;
    base_header(&m, FB_BACKUP_FULL, FULL_ID);
    uint8_t d[FB_SHA256_LEN];
    fill_digest(d, 0xaa);
    fb_entry_meta e = meta(FB_ENTRY_DIR, 0755, 0);
    fb_manifest_add_entry(&m, "d", &e, NULL, 0, NULL, NULL);
    e = meta(FB_ENTRY_FILE, 0644, 5);
    fb_manifest_add_entry(&m, "d/f", &e, d, 1536, NULL, NULL);
    char *j = NULL;
    REQUIRE(fb_manifest_to_json(&m, &j, NULL, NULL) == 0);
    fb_manifest_fini(&m);

    char *bad_type = replace1(j, "\"type\":\"dir\"", "\"type\":\"dor\"");
    CHECK(expect_bad(replace1(bad_type, "\"size\":5,", "\"size\":5,\"Size\":5,"),
                     "entries[1]: keys \"size\" and \"Size\" differ only in case", NULL));
    CHECK(expect_bad(replace1(bad_type, "\"size\":5,", "\"size\":5"), "invalid JSON at line 3",
                     "syntax error"));
    CHECK(expect_bad(replace1(bad_type, "\"format\":1,", "\"format\":1,\"format\":1,"),
                     "duplicate key \"format\"", NULL));
    CHECK(expect_bad(bad_type, "entries[0].type", "got \"dor\""));
    CHECK(expect_bad(replace1(j, "\"seq\":1,", "\"seq\":0,"), "seq", NULL));
    char *k = replace1(j, "\"seq\":1,", "\"seq\":0,");
    CHECK(expect_bad(replace1(k, "]}", "],}"), "invalid JSON", "syntax error"));
    free(k);

    /* entries first, the header after it: the same manifest. */
    const char *arr = strstr(j, ",\"entries\":[");
    REQUIRE(arr);
    size_t head = (size_t)(arr - j), n = strlen(j);
    char *moved = malloc(n + 4);
    int w = snprintf(moved, n + 4, "{%.*s,", (int)(n - head - 3), arr + 1);
    snprintf(moved + w, n + 4 - (size_t)w, "%.*s}\n", (int)(head - 1), j + 1);
    fb_manifest back;
    fb_error err;
    CHECK_EQ_INT(fb_manifest_parse(moved, strlen(moved), "manifest.json", &back, &err), 0);
    CHECK_EQ_INT(back.n_entries, 2);
    fb_manifest_fini(&back);
    free(moved);
    free(j);
}

/* fb_manifest_write's chunks, gathered: what went to the sink and how. A
 * sink that fails on call fail_at (1-based; 0 never) names its target. */
typedef struct gathered {
    char *buf;
    size_t len;
    int calls;
    int fail_at;
    bool called_after_failure;
} gathered;

static int gather(void *ctx, const char *data, size_t len, fb_error *err)
{
    gathered *g = ctx;
    if (g->fail_at && g->calls >= g->fail_at)
        g->called_after_failure = true;
    if (++g->calls == g->fail_at)
        return fb_error_set_errno(err, ENOSPC, "gather-target: cannot write");
    char *b = realloc(g->buf, g->len + len + 1);
    if (!b)
        fbtest_die("realloc");
    memcpy(b + g->len, data, len);
    g->buf = b;
    g->len += len;
    b[g->len] = '\0';
    return 0;
}

/* The streamed text is fb_manifest_to_json's, byte for byte, for a small
 * manifest (one chunk) and one of several chunks; a failing sink stops the
 * writing with its own error, first chunk or later. */
static void test_streamed_bytes_equal_to_json(void)
{
    fb_manifest m;
    build_rich(&m);
    fb_manifest big;
    base_header(&big, FB_BACKUP_FULL, FULL_ID);
    uint8_t d[FB_SHA256_LEN];
    fill_digest(d, 0x5a);
    for (int i = 0; i < 3000; i++) {
        char path[64];
        snprintf(path, sizeof path, "dir/file-%05d.json", i);
        fb_entry_meta e = meta(FB_ENTRY_FILE, 0644, 100);
        REQUIRE(fb_manifest_add_entry(&big, path, &e, d, (uint64_t)i * 1024, NULL, NULL) == 0);
    }
    const fb_manifest *cases[] = {&m, &big};
    for (size_t c = 0; c < 2; c++) {
        char *json = NULL;
        size_t len = 0;
        fb_error err;
        REQUIRE(fb_manifest_to_json(cases[c], &json, &len, &err) == 0);
        gathered g = {0};
        CHECK_EQ_INT(fb_manifest_write(cases[c], gather, &g, &err), 0);
        CHECK(g.len == len && g.buf && memcmp(g.buf, json, len) == 0);
        CHECK(c == 0 ? g.calls == 1 : g.calls > 2); /* the big one: never whole */
        for (int at = 1; at <= 2; at++) {
            gathered f = {.fail_at = at};
            fb_error_clear(&err);
            CHECK_EQ_INT(fb_manifest_write(cases[c], gather, &f, &err), FB_EIO);
            CHECK(strstr(err.message, "gather-target: cannot write") != NULL);
            CHECK_EQ_INT(err.sys_errno, ENOSPC);
            CHECK(!f.called_after_failure);
            CHECK(f.len < len && (!f.len || memcmp(f.buf, json, f.len) == 0));
            free(f.buf);
            if (c == 0)
                break; /* one chunk only: no second call to fail */
        }
        free(g.buf);
        free(json);
    }
    fb_manifest_fini(&m);
    fb_manifest_fini(&big);
}

int main(void)
{
    RUN_TEST(test_round_trip_in_memory);
    RUN_TEST(test_round_trip_on_disk);
    RUN_TEST(test_compact_layout);
    RUN_TEST(test_streamed_bytes_equal_to_json);
    RUN_TEST(test_streaming_keeps_the_error_order);
    RUN_TEST(test_the_fixture_is_valid);
    RUN_TEST(test_rejects_malformed_structure);
    RUN_TEST(test_rejects_format_missing_and_types);
    RUN_TEST(test_rejects_bad_numbers);
    RUN_TEST(test_rejects_bad_names);
    RUN_TEST(test_rejects_bad_base);
    RUN_TEST(test_rejects_names_in_base64);
    RUN_TEST(test_rejects_cross_entry_rules);
    RUN_TEST(test_deep_nesting);
    RUN_TEST(test_below_rules_and_neighbours);
    RUN_TEST(test_refuses_dense_values);
    RUN_TEST(test_rfc3339_and_names);
    RUN_TEST(test_writer_refuses_unrepresentable);
    FBTEST_EXIT();
}
