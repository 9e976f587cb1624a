/* .flowloom/backup.json: the optional user configuration. Parsed with the
 * same strict JSON layer as manifests (duplicate keys would make "which
 * value wins" a guess), but failures are the user's input, so FB_EINVAL
 * naming the key, and unknown keys are only warnings so a newer config
 * still works with an older tool. */
#include "fb_config.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fb_fsutil.h"
#include "fb_path_match.h"
#include "fb_text.h"
#include "fb_types.h"
#include "json_strict_i.h"

/* A config is a few hundred bytes; anything near this is not a config. */
#define CONFIG_SIZE_MAX (1024 * 1024)
#define INCLUDE_MAX 256

static const char *const default_include[] = {"*.json", "state/"};

static void free_patterns(char **p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(p[i]);
    free(p);
}

int fb_config_init_defaults(fb_config *cfg, fb_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->retention.keep_full = 10;
    /* 0 is accepted and means "no age limit" (see fb_config.h). */
    cfg->retention.max_age_days = 30;
    cfg->retention.min_keep = 1;
    cfg->level = 3;
    cfg->frame_size = 1048576;
    cfg->threads = 0;
    size_t n = sizeof default_include / sizeof default_include[0];
    cfg->include = calloc(n, sizeof *cfg->include);
    if (!cfg->include)
        return fb_error_set(err, FB_ENOMEM, "config: out of memory");
    for (size_t i = 0; i < n; i++) {
        cfg->include[i] = strdup(default_include[i]);
        if (!cfg->include[i]) {
            free_patterns(cfg->include, i);
            cfg->include = NULL;
            return fb_error_set(err, FB_ENOMEM, "config: out of memory");
        }
    }
    cfg->n_include = n;
    return 0;
}

void fb_config_fini(fb_config *cfg)
{
    if (!cfg)
        return;
    free_patterns(cfg->include, cfg->n_include);
    memset(cfg, 0, sizeof *cfg);
}

static void warn_unknown(const fb_json_val *parent, const cJSON *child, const char *source,
                         fb_warn_fn warn, void *warn_ctx)
{
    fb_json_val v;
    char path[FB_JSON_PATH_MAX];
    fb_json_child(parent, child, &v);
    fb_json_path(&v, path, sizeof path);
    fb_warnf(warn, warn_ctx, "%s: unknown key '%s' ignored", source, path);
}

static bool key_is(const cJSON *c, const char *key)
{
    return strcmp(c->string, key) == 0;
}

static int parse_u32(const fb_json_val *v, uint32_t min, uint32_t max, uint32_t *out,
                     fb_error *err)
{
    uint64_t x;
    int rc = fb_json_as_u64(v, 0, min, max, &x, err);
    if (rc < 0)
        return rc;
    *out = (uint32_t)x;
    return 0;
}

/* keep_full and min_keep start at 1 because the newest full backup and the
 * newest backup are always kept (SPEC "Retention"): a 0 would promise a
 * removal that never happens. max_age_days 0 turns the age rule off. */
static const struct {
    const char *key;
    uint32_t min, max;
    const char *why_min;
} retention_ranges[] = {
    {"keep_full", 1, 100000, "the newest full backup is always kept"},
    {"max_age_days", 0, 36500, NULL},
    {"min_keep", 1, 100000, "the newest backup is always kept"},
};

int fb_config_retention_check(const char *key, const uint64_t *value, const char *name,
                              const char *got, fb_error *err)
{
    for (size_t i = 0; i < sizeof retention_ranges / sizeof retention_ranges[0]; i++) {
        if (strcmp(key, retention_ranges[i].key) != 0)
            continue;
        uint32_t min = retention_ranges[i].min, max = retention_ranges[i].max;
        if (value && *value >= min && *value <= max)
            return 0;
        const char *why = value && *value < min ? retention_ranges[i].why_min : NULL;
        return fb_error_set(err, FB_EINVAL, "%s: expected an integer %" PRIu32 "..%" PRIu32
                            ", got %s%s%s%s", name, min, max, got, why ? " (" : "",
                            why ? why : "", why ? ")" : "");
    }
    return fb_error_set(err, FB_EMISUSE, "%s: no retention setting '%s'", name, key);
}

/* The JSON layer only decides whether the value is a non-negative integer;
 * its range is fb_config_retention_check's, as for the options. */
static int parse_retention_value(const fb_json_val *v, const char *key, const char *source,
                                 uint32_t *out, fb_error *err)
{
    uint64_t x = 0;
    bool integer = fb_json_as_u64(v, 0, 0, UINT64_MAX, &x, NULL) == 0;
    char path[FB_JSON_PATH_MAX], got[FB_TEXT_QUOTE_SIZE(FB_JSON_QUOTE_CUT) + 2];
    char name[FB_ERROR_MESSAGE_MAX]; /* as long as the message it goes into */
    fb_json_path(v, path, sizeof path);
    fb_json_describe(v, got, sizeof got);
    snprintf(name, sizeof name, "%s: %s", source, path);
    int rc = fb_config_retention_check(key, integer ? &x : NULL, name, got, err);
    if (rc == 0)
        *out = (uint32_t)x;
    return rc;
}

static int parse_retention(const fb_json_val *sec, fb_config *c, const char *source,
                           fb_warn_fn warn, void *warn_ctx, fb_error *err)
{
    int rc = fb_json_as_object(sec, 0, err);
    for (const cJSON *ch = sec->node->child; ch && rc == 0; ch = ch->next) {
        fb_json_val v;
        fb_json_child(sec, ch, &v);
        if (key_is(ch, "keep_full"))
            rc = parse_retention_value(&v, "keep_full", source, &c->retention.keep_full, err);
        else if (key_is(ch, "max_age_days"))
            rc = parse_retention_value(&v, "max_age_days", source, &c->retention.max_age_days,
                                       err);
        else if (key_is(ch, "min_keep"))
            rc = parse_retention_value(&v, "min_keep", source, &c->retention.min_keep, err);
        else
            warn_unknown(sec, ch, source, warn, warn_ctx);
    }
    return rc;
}

static int parse_include(const fb_json_val *arr, fb_config *c, fb_error *err)
{
    size_t n;
    int rc = fb_json_as_array(arr, 0, &n, err);
    if (rc < 0)
        return rc;
    if (n < 1 || n > INCLUDE_MAX)
        return fb_json_fail(arr, err, "expected 1..%d patterns, got %zu", INCLUDE_MAX, n);
    char **pats = calloc(n, sizeof *pats);
    if (!pats)
        return fb_error_set(err, FB_ENOMEM, "config: out of memory");
    size_t i = 0;
    for (const cJSON *ch = arr->node->child; ch; ch = ch->next, i++) {
        fb_json_val v;
        const char *s;
        fb_json_element(arr, ch, i, &v);
        rc = fb_json_as_string(&v, 0, &s, err);
        if (rc == 0 && (s[0] == '\0' || strlen(s) > FB_PATH_MAX)) {
            char got[128];
            fb_json_describe(&v, got, sizeof got);
            rc = fb_json_fail(&v, err, "expected a non-empty pattern of at most %d bytes, got %s",
                              FB_PATH_MAX, got);
        }
        if (rc == 0 && !(pats[i] = strdup(s)))
            rc = fb_error_set(err, FB_ENOMEM, "config: out of memory");
        if (rc < 0) {
            free_patterns(pats, i + 1);
            return rc;
        }
    }
    free_patterns(c->include, c->n_include);
    c->include = pats;
    c->n_include = n;
    return 0;
}

static int parse_incremental(const fb_json_val *sec, fb_config *c, const char *source,
                             fb_warn_fn warn, void *warn_ctx, fb_error *err)
{
    int rc = fb_json_as_object(sec, 0, err);
    for (const cJSON *ch = sec->node->child; ch && rc == 0; ch = ch->next) {
        fb_json_val v;
        fb_json_child(sec, ch, &v);
        if (key_is(ch, "include"))
            rc = parse_include(&v, c, err);
        else
            warn_unknown(sec, ch, source, warn, warn_ctx);
    }
    return rc;
}

static int parse_compression(const fb_json_val *sec, fb_config *c, const char *source,
                             fb_warn_fn warn, void *warn_ctx, fb_error *err)
{
    int rc = fb_json_as_object(sec, 0, err);
    for (const cJSON *ch = sec->node->child; ch && rc == 0; ch = ch->next) {
        fb_json_val v;
        fb_json_child(sec, ch, &v);
        uint32_t u = 0;
        if (key_is(ch, "level")) {
            rc = parse_u32(&v, FB_LEVEL_MIN, FB_LEVEL_MAX, &u, err);
            if (rc == 0)
                c->level = (int)u;
        } else if (key_is(ch, "frame_size")) {
            rc = fb_json_as_u64(&v, 0, FB_FRAME_SIZE_MIN, FB_FRAME_SIZE_MAX, &c->frame_size,
                                err);
        } else if (key_is(ch, "threads")) {
            rc = parse_u32(&v, 0, FB_THREADS_MAX, &c->threads, err);
        } else {
            warn_unknown(sec, ch, source, warn, warn_ctx);
        }
    }
    return rc;
}

int fb_config_parse(const char *json, size_t len, const char *source, fb_config *cfg,
                    fb_warn_fn warn, void *warn_ctx, fb_error *err)
{
    if (!source)
        source = "backup.json";
    fb_json_doc *doc;
    int rc = fb_json_parse(json, len, CONFIG_SIZE_MAX, source, FB_EINVAL, &doc, err);
    if (rc < 0)
        return rc;
    fb_json_val root;
    fb_json_root(doc, &root);

    /* Work on a copy so a config that fails halfway changes nothing. */
    fb_config c = *cfg;
    c.include = NULL;
    c.n_include = 0;
    rc = fb_json_as_object(&root, 0, err);
    for (const cJSON *ch = root.node->child; ch && rc == 0; ch = ch->next) {
        fb_json_val sec;
        fb_json_child(&root, ch, &sec);
        if (key_is(ch, "retention"))
            rc = parse_retention(&sec, &c, source, warn, warn_ctx, err);
        else if (key_is(ch, "incremental"))
            rc = parse_incremental(&sec, &c, source, warn, warn_ctx, err);
        else if (key_is(ch, "compression"))
            rc = parse_compression(&sec, &c, source, warn, warn_ctx, err);
        else
            warn_unknown(&root, ch, source, warn, warn_ctx);
    }
    fb_json_doc_free(doc);
    if (rc < 0) {
        free_patterns(c.include, c.n_include);
        return rc;
    }
    if (c.include) {
        free_patterns(cfg->include, cfg->n_include);
    } else {
        c.include = cfg->include;
        c.n_include = cfg->n_include;
    }
    *cfg = c;
    return 0;
}

int fb_config_load(const char *root, fb_config *cfg, fb_warn_fn warn, void *warn_ctx,
                   fb_error *err)
{
    int rc = fb_config_init_defaults(cfg, err);
    if (rc < 0)
        return rc;
    char *flowloom = fb_path_join(root, FB_FLOWLOOM_DIR);
    char *path = flowloom ? fb_path_join(flowloom, "backup.json") : NULL;
    free(flowloom);
    if (!path) {
        fb_config_fini(cfg);
        return fb_error_set(err, FB_ENOMEM, "config: out of memory");
    }
    char *text = NULL;
    size_t len = 0;
    rc = fb_read_file_at(AT_FDCWD, NULL, path, CONFIG_SIZE_MAX, &text, &len, err);
    if (rc == FB_ENOTFOUND) {
        fb_error_clear(err);
        free(path);
        return 0; /* no config: the defaults */
    }
    if (rc == FB_ECORRUPT && err)
        err->code = FB_EINVAL; /* a symlink, not a file, too big: bad user input */
    if (rc == FB_ECORRUPT)
        rc = FB_EINVAL;
    if (rc == 0)
        rc = fb_config_parse(text, len, path, cfg, warn, warn_ctx, err);
    free(text);
    free(path);
    if (rc < 0)
        fb_config_fini(cfg);
    return rc;
}

bool fb_config_include_matches(const fb_config *cfg, const char *path)
{
    /* The rule is the one recover --path uses too (fb_path_match.h). */
    for (size_t i = 0; i < cfg->n_include; i++)
        if (fb_path_pattern_matches(cfg->include[i], path))
            return true;
    return false;
}
