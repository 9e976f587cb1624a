/* Fuzz target: the user config parser (fb_config_parse over the defaults,
 * as fb_config_load does), input = the bytes of .flowloom/backup.json, and
 * the include-pattern matcher on the patterns it accepted. An accepted
 * config holds only values in the documented ranges; a rejected one is
 * FB_EINVAL (or FB_ENOMEM) with a message and leaves the defaults exactly as
 * they were ("a config that fails halfway changes nothing"); every warning
 * is a proper string. */
#include <stdio.h>
#include <string.h>

#include "fb_config.h"
#include "fuzz_util.h"

static void config_warn(void *ctx, const char *message)
{
    size_t *n = ctx;
    /* Reading it all is the check: ASan flags a message that is not a
     * terminated string. */
    if (strlen(message) == 0)
        fz_fail("config: empty warning");
    (*n)++;
}

static void config_check_defaults(const fb_config *got, const fb_config *want)
{
    if (memcmp(&got->retention, &want->retention, sizeof got->retention) != 0 ||
        got->level != want->level || got->frame_size != want->frame_size ||
        got->threads != want->threads || got->n_include != want->n_include)
        fz_fail("config: a rejected config changed the defaults");
    for (size_t i = 0; i < got->n_include; i++)
        if (strcmp(got->include[i], want->include[i]) != 0)
            fz_fail("config: a rejected config changed include[%zu]", i);
}

static void config_check_ranges(const fb_config *c)
{
    if (c->retention.keep_full < 1 || c->retention.keep_full > 100000 ||
        c->retention.max_age_days > 36500 || c->retention.min_keep < 1 ||
        c->retention.min_keep > 100000)
        fz_fail("config: retention out of range");
    if (c->level < 1 || c->level > 19 || c->frame_size < 65536 || c->frame_size > 67108864 ||
        c->threads > 256)
        fz_fail("config: compression out of range");
    if (c->n_include < 1 || c->n_include > 256)
        fz_fail("config: %zu include patterns", c->n_include);
    for (size_t i = 0; i < c->n_include; i++)
        if (!c->include[i] || !c->include[i][0] || strlen(c->include[i]) > 4096)
            fz_fail("config: include[%zu] is empty or too long", i);
}

int fuzz_config(const uint8_t *data, size_t size)
{
    static const int allowed[] = {FB_EINVAL, FB_ENOMEM, 0};
    fb_config cfg, defaults;
    fb_error err;
    fb_error_clear(&err);
    if (fb_config_init_defaults(&cfg, &err) != 0 || fb_config_init_defaults(&defaults, &err) != 0)
        fz_harness("fb_config_init_defaults");
    size_t warnings = 0;
    int rc = fb_config_parse((const char *)data, size, "backup.json", &cfg, config_warn,
                             &warnings, &err);
    if (rc != 0) {
        fz_check_error("fb_config_parse", rc, &err, allowed);
        config_check_defaults(&cfg, &defaults);
    } else {
        config_check_ranges(&cfg);
        /* The matcher on typical session paths and on the patterns
         * themselves taken as paths (what a user would expect to match). */
        static const char *const paths[] = {
            "metadata.json", "state.json", "state/x.json", "state", "logs/run.log",
            "artifacts/deep/out.txt", "a", ".hidden.json",
        };
        for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
            (void)fb_config_include_matches(&cfg, paths[i]);
        for (size_t i = 0; i < cfg.n_include; i++)
            (void)fb_config_include_matches(&cfg, cfg.include[i]);
    }
    fb_config_fini(&defaults);
    fb_config_fini(&cfg);
    return 0;
}

FB_FUZZ_ENTRY(fuzz_config)
