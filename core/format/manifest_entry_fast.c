/* The fast reading of one manifest entry (see manifest_entry_fast_i.h).
 *
 * Why it exists: reading an entry through cJSON (a tree of ten nodes, the
 * strict key checks, a lookup per field) cost about 60% of parsing a
 * manifest, and the first read of a file in a fresh mount waits for that
 * parse. The entries this format's writer produces are flat objects of
 * known keys with plain strings and integers, which one pass over the text
 * reads. Everything else (an escape, an unknown or repeated key, a value of
 * another kind, a rule broken) makes it give the entry back to the strict
 * reading, so the two can never disagree about what is accepted. */
#include "manifest_entry_fast_i.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fb_hash.h"
#include "json_plain_i.h"
#include "manifest_i.h"

enum {
    K_PATH,
    K_TYPE,
    K_MODE,
    K_UID,
    K_GID,
    K_MTIME,
    K_MTIME_NSEC,
    K_SIZE,
    K_SHA256,
    K_OFFSET,
    K_TARGET,
    K_LINK,
    K_COUNT
};

#define BIT(k) (1u << (k))
#define STRING_KEYS (BIT(K_PATH) | BIT(K_TYPE) | BIT(K_SHA256) | BIT(K_TARGET) | BIT(K_LINK))
#define COMMON_KEYS                                                                            \
    (BIT(K_PATH) | BIT(K_TYPE) | BIT(K_MODE) | BIT(K_UID) | BIT(K_GID) | BIT(K_MTIME) |       \
     BIT(K_MTIME_NSEC) | BIT(K_SIZE))

static const char *const key_names[K_COUNT] = {
    "path", "type", "mode", "uid", "gid", "mtime", "mtime_nsec", "size",
    "sha256", "offset", "target", "link",
};

/* What one entry's text holds, before any rule is applied. */
typedef struct raw_entry {
    unsigned seen;
    const char *str[K_COUNT];
    size_t str_len[K_COUNT];
    uint64_t num[K_COUNT]; /* magnitude, <= FB_JSON_INT_MAX */
    bool neg[K_COUNT];
} raw_entry;

/* The key whose name is t[0..n) exactly, or -1. Every entry has ten
 * keys, so the lengths are compared before any byte. */
static int key_of(const char *t, size_t n)
{
    static const unsigned char key_len[K_COUNT] = {4, 4, 4, 3, 3, 5, 10, 4, 6, 6, 6, 4};
    for (int k = 0; k < K_COUNT; k++)
        if (key_len[k] == n && memcmp(key_names[k], t, n) == 0)
            return k;
    return -1;
}

/* The members of the object at t[off]: each known key once, strings or
 * integers as the key asks. The index past '}', or 0. */
static size_t read_members(const char *t, size_t len, size_t off, raw_entry *r)
{
    size_t i = off;
    if (i >= len || t[i] != '{')
        return 0;
    i = fb_json_plain_ws(t, len, i + 1);
    for (;;) {
        const char *kname;
        size_t klen;
        if (!(i = fb_json_plain_string(t, len, i, &kname, &klen)))
            return 0;
        int k = key_of(kname, klen);
        if (k < 0 || (r->seen & BIT(k)))
            return 0;
        r->seen |= BIT(k);
        i = fb_json_plain_ws(t, len, i);
        if (i >= len || t[i] != ':')
            return 0;
        i = fb_json_plain_ws(t, len, i + 1);
        if (STRING_KEYS & BIT(k))
            i = fb_json_plain_string(t, len, i, &r->str[k], &r->str_len[k]);
        else
            i = fb_json_plain_integer(t, len, i, &r->num[k], &r->neg[k]);
        if (!i)
            return 0;
        i = fb_json_plain_ws(t, len, i);
        if (i < len && t[i] == ',') {
            i = fb_json_plain_ws(t, len, i + 1);
            continue;
        }
        return i < len && t[i] == '}' ? i + 1 : 0;
    }
}

/* The keys each entry type must have, beyond the common ones. */
static unsigned type_keys(fb_entry_type type)
{
    switch (type) {
    case FB_ENTRY_FILE:
        return BIT(K_SHA256) | BIT(K_OFFSET);
    case FB_ENTRY_SYMLINK:
        return BIT(K_TARGET);
    case FB_ENTRY_HARDLINK:
        return BIT(K_LINK);
    case FB_ENTRY_DIR:
        break;
    }
    return 0;
}

static bool parse_type(const raw_entry *r, fb_entry_type *out)
{
    char name[16];
    if (r->str_len[K_TYPE] >= sizeof name)
        return false;
    memcpy(name, r->str[K_TYPE], r->str_len[K_TYPE]);
    name[r->str_len[K_TYPE]] = '\0';
    return fb_entry_type_parse(name, out) == 0;
}

/* Every rule of parse_entry (manifest_read.c) the entry must pass, into
 * e's fields but the strings. False: leave it to the strict reading. */
static bool apply_rules(const raw_entry *r, fb_manifest_entry *e)
{
    fb_entry_type type;
    if (!parse_type(r, &type) || r->seen != (COMMON_KEYS | type_keys(type)))
        return false;
    for (int k = K_MODE; k <= K_OFFSET; k++)
        if (r->neg[k] && k != K_MTIME)
            return false;
    if (r->num[K_MODE] > 07777 || r->num[K_UID] > UINT32_MAX || r->num[K_GID] > UINT32_MAX ||
        r->num[K_MTIME_NSEC] > 999999999)
        return false;
    if (fb_manifest_path_problem(r->str[K_PATH], r->str_len[K_PATH]))
        return false;
    e->meta.type = type;
    e->meta.mode = (uint32_t)r->num[K_MODE];
    e->meta.uid = (uint32_t)r->num[K_UID];
    e->meta.gid = (uint32_t)r->num[K_GID];
    e->meta.mtime = r->neg[K_MTIME] ? -(int64_t)r->num[K_MTIME] : (int64_t)r->num[K_MTIME];
    e->meta.mtime_nsec = (uint32_t)r->num[K_MTIME_NSEC];
    e->meta.size = r->num[K_SIZE];
    switch (type) {
    case FB_ENTRY_FILE: {
        char hex[FB_SHA256_HEX_LEN + 1];
        if (r->str_len[K_SHA256] != FB_SHA256_HEX_LEN)
            return false;
        memcpy(hex, r->str[K_SHA256], FB_SHA256_HEX_LEN);
        hex[FB_SHA256_HEX_LEN] = '\0';
        e->offset = r->num[K_OFFSET]; /* with size, far below overflow */
        return fb_sha256_from_hex(hex, e->sha256) == 0;
    }
    case FB_ENTRY_SYMLINK:
        return r->str_len[K_TARGET] > 0 && r->str_len[K_TARGET] <= FB_PATH_MAX;
    case FB_ENTRY_HARDLINK:
        return !fb_manifest_path_problem(r->str[K_LINK], r->str_len[K_LINK]);
    case FB_ENTRY_DIR:
        break;
    }
    return true;
}

int fb_manifest_entry_read_fast(const char *t, size_t len, size_t off, fb_manifest_entry *e,
                                size_t *end)
{
    raw_entry r;
    r.seen = 0;
    memset(r.num, 0, sizeof r.num);
    memset(r.neg, 0, sizeof r.neg);
    size_t past = read_members(t, len, off, &r);
    if (!past || !apply_rules(&r, e)) {
        memset(e, 0, sizeof *e);
        return 0;
    }
    int tk = e->meta.type == FB_ENTRY_SYMLINK    ? K_TARGET
             : e->meta.type == FB_ENTRY_HARDLINK ? K_LINK
                                                 : -1;
    e->path = strndup(r.str[K_PATH], r.str_len[K_PATH]);
    if (tk >= 0)
        e->target = strndup(r.str[tk], r.str_len[tk]);
    if (!e->path || (tk >= 0 && !e->target)) {
        free(e->path);
        free(e->target);
        memset(e, 0, sizeof *e);
        return FB_ENOMEM;
    }
    *end = past;
    return 1;
}
