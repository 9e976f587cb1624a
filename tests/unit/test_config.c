/* Unit tests of fb_config: SPEC defaults, overrides, errors naming the key,
 * unknown-key warnings, loading from <root>/.flowloom/backup.json, and
 * include-pattern matching. */
#include <sys/stat.h>

#include "fb_config.h"
#include "fbtest.h"

typedef struct warnings {
    char text[8][512];
    int n;
} warnings;

static void collect(void *ctx, const char *message)
{
    warnings *w = ctx;
    if (w->n < 8)
        snprintf(w->text[w->n], sizeof w->text[0], "%s", message);
    w->n++;
}

static int is_default(const fb_config *c)
{
    return c->retention.keep_full == 10 && c->retention.max_age_days == 30 &&
           c->retention.min_keep == 1 && c->level == 3 && c->frame_size == 1048576 &&
           c->threads == 0 && c->n_include == 2 && strcmp(c->include[0], "*.json") == 0 &&
           strcmp(c->include[1], "state/") == 0;
}

static int parse(fb_config *c, const char *json, warnings *w, fb_error *err)
{
    fb_error_clear(err);
    return fb_config_parse(json, strlen(json), "backup.json", c, collect, w, err);
}

static void test_defaults_and_overrides(void)
{
    fb_config c;
    fb_error err;
    warnings w = {.n = 0};
    REQUIRE(fb_config_init_defaults(&c, &err) == 0);
    CHECK(is_default(&c));

    /* Every key may be omitted. */
    CHECK_EQ_INT(parse(&c, "{}", &w, &err), 0);
    CHECK(is_default(&c));
    CHECK_EQ_INT(parse(&c, "{\"retention\": {}, \"incremental\": {}, \"compression\": {}}", &w, &err),
                 0);
    CHECK(is_default(&c));

    CHECK_EQ_INT(parse(&c, "{\"compression\": {\"level\": 19}}", &w, &err), 0);
    CHECK(c.level == 19 && c.frame_size == 1048576 && c.retention.keep_full == 10 &&
          c.n_include == 2);
    CHECK_EQ_INT(parse(&c,
                       "{\"retention\": {\"keep_full\": 3, \"max_age_days\": 0, \"min_keep\": 2},\n"
                       " \"incremental\": {\"include\": [\"notes/*.md\", \"logs/\", \"x\"]},\n"
                       " \"compression\": {\"frame_size\": 65536, \"threads\": 256}}",
                       &w, &err),
                 0);
    CHECK(c.retention.keep_full == 3 && c.retention.max_age_days == 0 &&
          c.retention.min_keep == 2);
    CHECK(c.level == 19 && c.frame_size == 65536 && c.threads == 256);
    REQUIRE(c.n_include == 3);
    CHECK(strcmp(c.include[0], "notes/*.md") == 0 && strcmp(c.include[2], "x") == 0);
    CHECK_EQ_INT(w.n, 0);
    CHECK_EQ_INT(parse(&c, "{\"compression\": {\"frame_size\": 67108864, \"level\": 1}}", &w, &err),
                 0);
    CHECK(c.frame_size == 67108864 && c.level == 1);
    fb_config_fini(&c);
    fb_config_fini(&c); /* fini twice is harmless */
}

static void test_errors_name_the_key(void)
{
    fb_config c;
    fb_error err;
    warnings w = {.n = 0};
    REQUIRE(fb_config_init_defaults(&c, &err) == 0);

    CHECK_EQ_INT(parse(&c, "{\"compression\": {\"level\": \"fast\"}}", &w, &err), FB_EINVAL);
    CHECK(strcmp(err.message,
                 "backup.json: compression.level: expected an integer 1..19, got \"fast\"") == 0);
    CHECK_EQ_INT(parse(&c, "{\"retention\": {\"keep_full\": 10,\n  \"max_age_days\": tru}}", &w,
                       &err),
                 FB_EINVAL);
    CHECK(strstr(err.message, "backup.json: invalid JSON at line 2 col 19"));
    CHECK(strstr(err.message, "retention.max_age_days"));
    CHECK_EQ_INT(parse(&c, "{\"retention\": {\"keep_full\": 1,}}", &w, &err), FB_EINVAL);
    CHECK(strstr(err.message, "backup.json: invalid JSON at line 1 col"));
    CHECK_EQ_INT(parse(&c, "", &w, &err), FB_EINVAL);
    CHECK(strstr(err.message, "backup.json: invalid JSON"));

    struct {
        const char *json, *message;
    } cases[] = {
        {"[]", "backup.json: expected an object, got an array"},
        {"{\"retention\": 5}", "backup.json: retention: expected an object, got 5"},
        {"{\"retention\": {\"keep_full\": 0}}",
         "backup.json: retention.keep_full: expected an integer 1..100000, got 0"},
        {"{\"retention\": {\"keep_full\": 2.5}}", "retention.keep_full: expected an integer"},
        {"{\"retention\": {\"max_age_days\": -1}}",
         "retention.max_age_days: expected an integer 0..36500, got -1"},
        {"{\"retention\": {\"min_keep\": null}}", "retention.min_keep: expected an integer"},
        {"{\"compression\": {\"level\": 20}}", "compression.level: expected an integer 1..19, got 20"},
        {"{\"compression\": {\"level\": 0}}", "compression.level"},
        {"{\"compression\": {\"frame_size\": 65535}}",
         "compression.frame_size: expected an integer 65536..67108864, got 65535"},
        {"{\"compression\": {\"threads\": 257}}", "compression.threads"},
        {"{\"compression\": {\"threads\": true}}", "compression.threads: expected an integer 0..256, got true"},
        {"{\"incremental\": {\"include\": \"*.json\"}}",
         "incremental.include: expected an array, got \"*.json\""},
        {"{\"incremental\": {\"include\": []}}", "incremental.include: expected 1..256 patterns, got 0"},
        {"{\"incremental\": {\"include\": [\"a\", \"\"]}}",
         "incremental.include[1]: expected a non-empty pattern"},
        {"{\"incremental\": {\"include\": [\"a\", 5]}}",
         "incremental.include[1]: expected a string, got 5"},
        {"{\"incremental\": {\"include\": [\"a\\u0000b\"]}}", "(incremental.include[0])"},
        {"{\"compression\": {\"level\": 3, \"level\": 4}}",
         "backup.json: compression: duplicate key \"level\""},
        {"{\"compression\": {\"level\": 3, \"Level\": 4}}", "differ only in case"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = parse(&c, cases[i].json, &w, &err);
        CHECK_EQ_INT(rc, FB_EINVAL);
        if (!strstr(err.message, cases[i].message)) {
            fprintf(stderr, "  %s -> \"%s\" (wanted \"%s\")\n", cases[i].json, err.message,
                    cases[i].message);
            CHECK(0);
        }
        /* A failed parse changes nothing. */
        CHECK(is_default(&c));
    }
    /* Not even keys that came before the bad one. */
    CHECK_EQ_INT(parse(&c, "{\"incremental\": {\"include\": [\"x\"]}, \"compression\": {\"level\": 99}}",
                       &w, &err),
                 FB_EINVAL);
    CHECK(is_default(&c));
    CHECK_EQ_INT(w.n, 0);
    fb_config_fini(&c);
}

static void test_unknown_keys_warn(void)
{
    fb_config c;
    fb_error err;
    warnings w = {.n = 0};
    REQUIRE(fb_config_init_defaults(&c, &err) == 0);
    CHECK_EQ_INT(parse(&c,
                       "{\"foo\": 1, \"retention\": {\"keep_ful\": 3, \"keep_full\": 4},"
                       " \"compression\": {\"Levels\": 1}}",
                       &w, &err),
                 0);
    CHECK(c.retention.keep_full == 4);
    REQUIRE(w.n == 3);
    CHECK(strcmp(w.text[0], "backup.json: unknown key 'foo' ignored") == 0);
    CHECK(strcmp(w.text[1], "backup.json: unknown key 'retention.keep_ful' ignored") == 0);
    CHECK(strcmp(w.text[2], "backup.json: unknown key 'compression.Levels' ignored") == 0);
    /* No callback: still fine. */
    CHECK_EQ_INT(fb_config_parse("{\"bar\": 2}", 10, "backup.json", &c, NULL, NULL, &err), 0);
    fb_config_fini(&c);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

static void test_load(void)
{
    char *root = fbtest_tempdir();
    char fl[4200], file[4300], other[4300];
    fb_config c;
    fb_error err;
    warnings w = {.n = 0};

    /* No .flowloom/backup.json: the defaults. */
    CHECK_EQ_INT(fb_config_load(root, &c, collect, &w, &err), 0);
    CHECK(is_default(&c));
    fb_config_fini(&c);

    snprintf(fl, sizeof fl, "%s/.flowloom", root);
    REQUIRE(mkdir(fl, 0700) == 0);
    CHECK_EQ_INT(fb_config_load(root, &c, collect, &w, &err), 0);
    CHECK(is_default(&c));
    fb_config_fini(&c);

    snprintf(file, sizeof file, "%s/backup.json", fl);
    write_file(file, "{\"retention\": {\"keep_full\": 7}, \"extra\": true}\n");
    CHECK_EQ_INT(fb_config_load(root, &c, collect, &w, &err), 0);
    CHECK(c.retention.keep_full == 7 && c.level == 3);
    CHECK_EQ_INT(w.n, 1);
    CHECK(strstr(w.text[0], "/.flowloom/backup.json: unknown key 'extra' ignored"));
    fb_config_fini(&c);

    write_file(file, "{\"compression\": {\"level\": \"fast\"}}");
    CHECK_EQ_INT(fb_config_load(root, &c, collect, &w, &err), FB_EINVAL);
    CHECK(strstr(err.message, "/.flowloom/backup.json: compression.level: expected an integer"));
    fb_config_fini(&c); /* harmless after a failed load */

    /* A symlinked config is refused like every other file we read. */
    snprintf(other, sizeof other, "%s/real.json", root);
    write_file(other, "{}");
    REQUIRE(unlink(file) == 0);
    REQUIRE(symlink(other, file) == 0);
    CHECK_EQ_INT(fb_config_load(root, &c, collect, &w, &err), FB_EINVAL);
    CHECK(strstr(err.message, "backup.json"));
    REQUIRE(unlink(file) == 0);
    REQUIRE(mkdir(file, 0700) == 0);
    CHECK_EQ_INT(fb_config_load(root, &c, collect, &w, &err), FB_EINVAL);
    CHECK(strstr(err.message, "not a regular file"));
    fbtest_rmtree(root);
}

static void test_include_matching(void)
{
    fb_config c;
    fb_error err;
    REQUIRE(fb_config_init_defaults(&c, &err) == 0);
    CHECK(fb_config_include_matches(&c, "metadata.json"));
    CHECK(fb_config_include_matches(&c, "state.json"));
    CHECK(fb_config_include_matches(&c, ".hidden.json"));
    CHECK(!fb_config_include_matches(&c, "logs/x.json"));
    CHECK(!fb_config_include_matches(&c, "metadata.json.bak"));
    CHECK(!fb_config_include_matches(&c, "logs"));
    CHECK(fb_config_include_matches(&c, "state"));
    CHECK(fb_config_include_matches(&c, "state/a"));
    CHECK(fb_config_include_matches(&c, "state/a/b"));
    CHECK(!fb_config_include_matches(&c, "stateful"));
    CHECK(!fb_config_include_matches(&c, "states/a"));
    CHECK(!fb_config_include_matches(&c, "x/state/a"));

    warnings w = {.n = 0};
    CHECK_EQ_INT(parse(&c, "{\"incremental\": {\"include\": [\"art*/\", \"logs/*.log\"]}}", &w, &err),
                 0);
    CHECK(fb_config_include_matches(&c, "artifacts"));
    CHECK(fb_config_include_matches(&c, "artifacts/deep/x.bin"));
    CHECK(fb_config_include_matches(&c, "logs/run.log"));
    CHECK(!fb_config_include_matches(&c, "logs/old/run.log"));
    CHECK(!fb_config_include_matches(&c, "metadata.json"));
    char longpath[5000];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[sizeof longpath - 1] = '\0';
    longpath[0] = 'a';
    memcpy(longpath, "artifacts/", 10);
    CHECK(!fb_config_include_matches(&c, longpath));
    fb_config_fini(&c);
}

#define CHECK_STR(got, want)                                                       \
    do {                                                                           \
        if (strcmp((got), (want)) != 0) {                                          \
            fprintf(stderr, "%s:%d: got \"%s\", wanted \"%s\"\n", __FILE__, __LINE__, \
                    (got), (want));                                                \
            fbtest_failures++;                                                     \
        }                                                                          \
    } while (0)

/* The rule the config and the cleanup options share (fb_config_retention_check). */
static void test_retention_check(void)
{
    fb_error err;
    uint64_t v;
    v = 1;
    CHECK_EQ_INT(fb_config_retention_check("keep_full", &v, "--keep-full", "1", &err), 0);
    v = 0;
    CHECK_EQ_INT(fb_config_retention_check("max_age_days", &v, "--max-age", "0", &err), 0);
    v = 100000;
    CHECK_EQ_INT(fb_config_retention_check("min_keep", &v, "--min-keep", "100000", &err), 0);
    v = 0;
    CHECK_EQ_INT(fb_config_retention_check("keep_full", &v, "--keep-full", "0", &err),
                 FB_EINVAL);
    CHECK_STR(err.message, "--keep-full: expected an integer 1..100000, got 0 "
                              "(the newest full backup is always kept)");
    CHECK_EQ_INT(fb_config_retention_check("min_keep", &v, "k", "0", &err), FB_EINVAL);
    CHECK_STR(err.message, "k: expected an integer 1..100000, got 0 "
                              "(the newest backup is always kept)");
    v = 36501;
    CHECK_EQ_INT(fb_config_retention_check("max_age_days", &v, "m", "36501", &err), FB_EINVAL);
    CHECK_STR(err.message, "m: expected an integer 0..36500, got 36501");
    CHECK_EQ_INT(fb_config_retention_check("keep_full", NULL, "k", "'x'", &err), FB_EINVAL);
    CHECK_STR(err.message, "k: expected an integer 1..100000, got 'x'");
    CHECK_EQ_INT(fb_config_retention_check("keep_fill", &v, "k", "1", &err), FB_EMISUSE);
}

int main(void)
{
    RUN_TEST(test_retention_check);
    RUN_TEST(test_defaults_and_overrides);
    RUN_TEST(test_errors_name_the_key);
    RUN_TEST(test_unknown_keys_warn);
    RUN_TEST(test_load);
    RUN_TEST(test_include_matching);
    FBTEST_EXIT();
}
