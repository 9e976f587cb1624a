/* Unit tests of fb_path_pattern_matches (include/fb_path_match.h), the one
 * rule for incremental.include and recover --path: fnmatch with
 * FNM_PATHNAME ('*' and '?' never cross a '/'), and a pattern ending in '/'
 * taking the directory it names and everything below it. */
#include "fbtest.h"

#include <stdbool.h>

#include "fb_config.h"
#include "fb_path_match.h"
#include "fb_types.h"

static void test_plain_patterns(void)
{
    CHECK(fb_path_pattern_matches("state.json", "state.json"));
    CHECK(!fb_path_pattern_matches("state.json", "state/state.json"));
    CHECK(fb_path_pattern_matches("*.json", "metadata.json"));
    CHECK(!fb_path_pattern_matches("*.json", "state/plan.json"));
    CHECK(fb_path_pattern_matches("artifacts/*.json", "artifacts/a.json"));
    CHECK(!fb_path_pattern_matches("artifacts/*.json", "artifacts/models/a.json"));
    CHECK(!fb_path_pattern_matches("artifacts/*.json", "artifacts/a.bin"));
    CHECK(fb_path_pattern_matches("*/*.json", "state/plan.json"));
    CHECK(fb_path_pattern_matches("logs/run.?og", "logs/run.log"));
    CHECK(!fb_path_pattern_matches("logs?run.log", "logs/run.log"));
    CHECK(fb_path_pattern_matches("[ab].txt", "b.txt"));
    /* Without a '/' at its end a pattern is the entry itself, not what is
     * below it. */
    CHECK(fb_path_pattern_matches("logs", "logs"));
    CHECK(!fb_path_pattern_matches("logs", "logs/run.log"));
    CHECK(!fb_path_pattern_matches("", "logs"));
    CHECK(!fb_path_pattern_matches(NULL, "logs"));
    CHECK(!fb_path_pattern_matches("logs", NULL));
}

static void test_directory_patterns(void)
{
    CHECK(fb_path_pattern_matches("logs/", "logs"));
    CHECK(fb_path_pattern_matches("logs/", "logs/run.log"));
    CHECK(fb_path_pattern_matches("logs/", "logs/a/b/c.txt"));
    CHECK(!fb_path_pattern_matches("logs/", "logsx"));
    CHECK(!fb_path_pattern_matches("logs/", "logsx/run.log"));
    CHECK(!fb_path_pattern_matches("logs/", "log"));
    CHECK(!fb_path_pattern_matches("logs/", "other/logs/run.log"));
    CHECK(fb_path_pattern_matches("artifacts/models/", "artifacts/models/w.bin"));
    CHECK(!fb_path_pattern_matches("artifacts/models/", "artifacts"));
    /* A glob in a directory pattern matches the directories it names. */
    CHECK(fb_path_pattern_matches("*/", "anything/at/all"));
    CHECK(fb_path_pattern_matches("st*/", "state/plan.json"));
    CHECK(!fb_path_pattern_matches("st*/", "logs/state/plan.json"));
    /* "/" alone is no directory pattern: it matches nothing relative. */
    CHECK(!fb_path_pattern_matches("/", "logs"));
}

static void test_long_paths(void)
{
    char *p = malloc(FB_PATH_MAX + 2);
    memset(p, 'a', FB_PATH_MAX + 1);
    p[FB_PATH_MAX + 1] = '\0';
    CHECK(!fb_path_pattern_matches("*", p));
    CHECK(!fb_path_pattern_matches("a/", p));
    p[FB_PATH_MAX] = '\0';
    CHECK(fb_path_pattern_matches("*", p));
    p[10] = '/';
    CHECK(fb_path_pattern_matches("aaaaaaaaaa/", p));
    free(p);
}

/* incremental.include goes through the same rule. */
static void test_config_include_uses_it(void)
{
    fb_config cfg;
    fb_error err;
    REQUIRE(fb_config_init_defaults(&cfg, &err) == 0);
    const char *paths[] = {"state.json", "metadata.json", "state", "state/plan.json",
                           "state/x/y", "logs/run.log", "artifacts/a.json", "statex"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        bool any = false;
        for (size_t k = 0; k < cfg.n_include; k++)
            any = any || fb_path_pattern_matches(cfg.include[k], paths[i]);
        CHECK(fb_config_include_matches(&cfg, paths[i]) == any);
    }
    CHECK(fb_config_include_matches(&cfg, "state/x/y"));
    CHECK(!fb_config_include_matches(&cfg, "artifacts/a.json"));
    fb_config_fini(&cfg);
}

int main(void)
{
    RUN_TEST(test_plain_patterns);
    RUN_TEST(test_directory_patterns);
    RUN_TEST(test_long_paths);
    RUN_TEST(test_config_include_uses_it);
    FBTEST_EXIT();
}
