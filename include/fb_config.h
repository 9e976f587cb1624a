/* .flowloom/backup.json: optional user configuration (SPEC "Config").
 * Invalid JSON or a value of the wrong type or range is FB_EINVAL naming the
 * key; unknown keys are reported through warn. Not thread-safe. */
#ifndef FB_CONFIG_H
#define FB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_error.h"

typedef struct fb_retention_policy {
    uint32_t keep_full;
    uint32_t max_age_days; /* 0..36500; 0 = no age limit (rule (b) disabled) */
    uint32_t min_keep;
} fb_retention_policy;

typedef struct fb_config {
    fb_retention_policy retention;
    char **include;     /* owned array of owned patterns */
    size_t n_include;
    int level;          /* compression.level, 1..19 */
    uint64_t frame_size; /* compression.frame_size, 65536..67108864 */
    uint32_t threads;   /* compression.threads, 0..256; 0 = one per core */
} fb_config;

/* Fills the SPEC defaults. Returns 0 or FB_ENOMEM. */
int fb_config_init_defaults(fb_config *cfg, fb_error *err);
void fb_config_fini(fb_config *cfg);

/* Parses json over the defaults already in cfg. */
int fb_config_parse(const char *json, size_t len, const char *source, fb_config *cfg,
                    fb_warn_fn warn, void *warn_ctx, fb_error *err);

/* Loads <root>/.flowloom/backup.json if present (defaults otherwise).
 * cfg must not be initialised yet; on success the caller fini's it. */
int fb_config_load(const char *root, fb_config *cfg, fb_warn_fn warn, void *warn_ctx,
                   fb_error *err);

/* The one rule for a retention setting, used by the config loader and by
 * the command-line options (cleanup --keep-full N, ...), so that the two
 * never disagree. key: "keep_full", "max_age_days" or "min_keep". value:
 * what was given when it is a non-negative integer, NULL when it is not;
 * name: how the message calls the setting ("backup.json: retention.keep_full",
 * "--keep-full"); got: what was given, as the message shows it. Returns 0,
 * or FB_EINVAL "<name>: expected an integer MIN..MAX, got <got>" (with the
 * reason when 0 is refused). */
int fb_config_retention_check(const char *key, const uint64_t *value, const char *name,
                              const char *got, fb_error *err);

/* Does relative path `path` (raw bytes, no leading "./") match the include
 * patterns? fnmatch(FNM_PATHNAME); a pattern ending in '/' matches that
 * directory and everything below it. */
bool fb_config_include_matches(const fb_config *cfg, const char *path);

#endif
