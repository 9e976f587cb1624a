/* The rules a manifest must keep, on the in-memory form: the rules across
 * entries that the JSON reading (manifest_read.c) applies after it read
 * every entry, and the whole set (header, each entry, across entries,
 * totals) for a manifest that did not come from JSON text at all (the
 * local manifest cache, core/store/manifest_cache.c), so that no form of
 * a manifest reaches the mount with less checked than manifest.json. */
#include "fb_manifest.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fb_text.h"
#include "json_strict_i.h"
#include "manifest_i.h"

/* Formats the reason (a and b are paths of entries, names from disk, shown
 * escaped) and hands it to fail, which says where entry i is. */
static int entry_fail(fb_manifest_rule_fail fail, void *ctx, size_t i, const char *key,
                      fb_error *err, const char *fmt, const char *a, const char *b)
{
    char ea[256], eb[256], msg[640];
    fb_path_escape(a, ea, sizeof ea);
    fb_path_escape(b ? b : "", eb, sizeof eb);
    snprintf(msg, sizeof msg, fmt, ea, eb);
    return fail(ctx, i, key, msg, err);
}

/* One entry in the order check_entries sorts by. */
typedef struct path_key {
    const char *p;
    size_t len;
    size_t idx; /* entry index: ties (duplicates) sort in manifest order */
} path_key;

/* Length of the common prefix of a and b, both at least n bytes. Paths of
 * deeply nested trees share thousands of bytes, so 8 at a time. */
static size_t common_prefix(const char *a, const char *b, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y)
            break;
    }
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

int fb_manifest_tree_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    size_t i = common_prefix(a, b, n);
    if (i == n)
        return (alen > blen) - (alen < blen);
    int x = a[i] == '/' ? 0 : (unsigned char)a[i];
    int y = b[i] == '/' ? 0 : (unsigned char)b[i];
    return x - y;
}

static int cmp_path_key(const void *a, const void *b)
{
    const path_key *x = a, *y = b;
    int c = fb_manifest_tree_cmp(x->p, x->len, y->p, y->len);
    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/* Index of the entry whose path is p[0..n) in keys (sorted), or -1. */
static long find_key(const path_key *keys, size_t count, const char *p, size_t n)
{
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = fb_manifest_tree_cmp(keys[mid].p, keys[mid].len, p, n);
        if (c == 0)
            return (long)keys[mid].idx;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static bool same_path(const path_key *a, const path_key *b)
{
    return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

/* True when a lies below b (b followed by '/' is a prefix of a). */
static bool is_below(const path_key *a, const path_key *b)
{
    return a->len > b->len && a->p[b->len] == '/' && memcmp(a->p, b->p, b->len) == 0;
}

/* Rules across entries (manifest_i.h): unique paths, nothing below a non-directory entry,
 * hardlinks to earlier files of the same size, increasing file offsets.
 *
 * Cost: one sort (O(n log n) comparisons of at most a path each) and
 * linear passes, whatever the names and the depth. The order puts every
 * path right after the entry it lies below, so the entries below one path
 * are a contiguous run behind it; one pass then finds, for each entry, the
 * shallowest non-directory above it, without looking up every ancestor
 * (which cost a binary search per '/' of every path: seconds for a few MB
 * of deeply nested paths). Ancestors that are not entries at all are
 * allowed, as before (the mount implies them; restore has its own rule). */
int fb_manifest_check_entries(const fb_manifest *m, fb_manifest_rule_fail fail, void *ctx,
                              fb_error *err)
{
    size_t n = m->n_entries;
    if (n == 0)
        return 0;
    path_key *keys = malloc(n * sizeof *keys);
    if (!keys)
        return fb_error_set(err, FB_ENOMEM, "manifest: out of memory");
    /* A manifest the writer wrote is already in this order (tree order):
     * checking that is n comparisons, the sort n log n (5% of reading
     * 100,000 entries). With the index as the last key the order is total,
     * so both give the same array. */
    bool sorted = true;
    for (size_t i = 0; i < n; i++) {
        keys[i] = (path_key){m->entries[i].path, strlen(m->entries[i].path), i};
        sorted = sorted && (i == 0 || cmp_path_key(&keys[i - 1], &keys[i]) < 0);
    }
    if (!sorted)
        qsort(keys, n, sizeof *keys, cmp_path_key);

    /* Duplicates are adjacent, in manifest order: report the first entry
     * (in the manifest) that repeats an earlier one. */
    size_t dup = n;
    for (size_t k = 1; k < n; k++) {
        /* The second of a run of equal paths has the run's second index. */
        if (same_path(&keys[k - 1], &keys[k]) && (k == 1 || !same_path(&keys[k - 2], &keys[k])) &&
            keys[k].idx < dup)
            dup = keys[k].idx;
    }
    if (dup < n) {
        free(keys);
        return entry_fail(fail, ctx, dup, "path", err, "\"%s\": duplicate path%s",
                          m->entries[dup].path, "");
    }

    /* A restore would have to write through a symlink or into a file. In
     * this order, the entries below a path P are the run right behind P;
     * `block` is the shallowest non-directory whose run we are in. The
     * entry reported is the first one in manifest order, named with its
     * shallowest non-directory ancestor. */
    size_t bad = n, bad_under = 0;
    const path_key *block = NULL;
    for (size_t k = 0; k < n; k++) {
        const path_key *c = &keys[k];
        if (block && is_below(c, block)) {
            if (c->idx < bad) {
                bad = c->idx;
                bad_under = block->idx;
            }
            continue;
        }
        block = m->entries[c->idx].meta.type != FB_ENTRY_DIR ? c : NULL;
    }

    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const fb_manifest_entry *e = &m->entries[i];
        if (i == bad) {
            rc = entry_fail(fail, ctx, i, "path", err,
                            "\"%s\" lies below \"%s\", which is not a directory", e->path,
                            m->entries[bad_under].path);
            break;
        }
        if (e->meta.type != FB_ENTRY_HARDLINK)
            continue;
        long j = find_key(keys, n, e->target, strlen(e->target));
        if (j < 0 || (size_t)j >= i)
            rc = entry_fail(fail, ctx, i, "link", err, "\"%s\" is not an earlier entry%s",
                            e->target, "");
        else if (m->entries[j].meta.type != FB_ENTRY_FILE)
            rc = entry_fail(fail, ctx, i, "link", err, "\"%s\" is not a file entry%s", e->target,
                            "");
        else if (m->entries[j].meta.size != e->meta.size)
            rc = entry_fail(fail, ctx, i, "size", err,
                            "differs from the size of \"%s\", the file it links to%s",
                            e->target, "");
    }
    free(keys);
    if (rc)
        return rc;

    bool have_prev = false;
    uint64_t prev_offset = 0, prev_end = 0;
    for (size_t i = 0; i < n; i++) {
        const fb_manifest_entry *e = &m->entries[i];
        if (e->meta.type != FB_ENTRY_FILE)
            continue;
        if (have_prev && (e->offset <= prev_offset || e->offset < prev_end)) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "%" PRIu64 " overlaps or precedes the previous file's data "
                     "(which ends at %" PRIu64 ")",
                     e->offset, prev_end);
            return fail(ctx, i, "offset", msg, err);
        }
        have_prev = true;
        prev_offset = e->offset;
        prev_end = e->offset + e->meta.size; /* checked when parsed */
    }
    return 0;
}

/* ------------------------------------------------ the whole, without JSON */

typedef struct plain_fail_ctx {
    const fb_manifest *m;
    const char *source;
} plain_fail_ctx;

static int plain_fail(void *ctx, size_t i, const char *key, const char *msg, fb_error *err)
{
    const plain_fail_ctx *c = ctx;
    char esc[256];
    fb_path_escape(c->m->entries[i].path ? c->m->entries[i].path : "", esc, sizeof esc);
    return fb_error_set(err, FB_ECORRUPT, "%s: entry %zu (\"%s\") %s: %s", c->source, i, esc, key,
                        msg);
}

static int entry_problem(const fb_manifest *m, size_t i, const char *source, fb_error *err)
{
    const fb_manifest_entry *e = &m->entries[i];
    plain_fail_ctx c = {m, source};
    if (!e->path)
        return fb_error_set(err, FB_ECORRUPT, "%s: entry %zu has no path", source, i);
    const char *why = fb_manifest_path_problem(e->path, strlen(e->path));
    const char *key = "path";
    if (!why && (e->meta.mode > 07777))
        why = "mode over 07777", key = "mode";
    /* JSON integers are exact in a double (json_strict_i.h). */
    if (!why && (e->meta.mtime > (int64_t)FB_JSON_INT_MAX || e->meta.mtime < -(int64_t)FB_JSON_INT_MAX))
        why = "mtime beyond 2^53", key = "mtime";
    if (!why && e->meta.mtime_nsec > 999999999u)
        why = "mtime_nsec over 999999999", key = "mtime_nsec";
    if (!why && e->meta.size > FB_JSON_INT_MAX)
        why = "size over 2^53", key = "size";
    if (!why) {
        uint64_t end;
        switch (e->meta.type) {
        case FB_ENTRY_FILE:
            key = "offset";
            if (e->offset > FB_JSON_INT_MAX)
                why = "offset over 2^53";
            else if (__builtin_add_overflow(e->offset, e->meta.size, &end))
                why = "offset + size overflows";
            else if (e->target)
                why = "a file entry has a target", key = "target";
            break;
        case FB_ENTRY_DIR:
            if (e->target)
                why = "a dir entry has a target", key = "target";
            break;
        case FB_ENTRY_SYMLINK:
            key = "target";
            if (!e->target || e->target[0] == '\0')
                why = "empty symlink target";
            else if (strlen(e->target) > FB_PATH_MAX)
                why = "longer than 4096 bytes";
            break;
        case FB_ENTRY_HARDLINK:
            key = "link";
            why = e->target ? fb_manifest_path_problem(e->target, strlen(e->target)) : "missing";
            break;
        default:
            why = "unknown entry type", key = "type";
        }
    }
    return why ? plain_fail(&c, i, key, why, err) : 0;
}

static int header_problem(const fb_manifest *m, const char *source, fb_error *err)
{
    const char *why = NULL;
    char when[32];
    int64_t back;
    fb_error sub;
    fb_error_clear(&sub);
    if (m->format != FB_MANIFEST_FORMAT)
        why = "unsupported format";
    else if (!fb_backup_id_is_valid(m->backup_id))
        why = "backup_id is not a valid backup id";
    else if (m->seq < 1 || m->seq > FB_JSON_INT_MAX)
        why = "seq out of range";
    else if (fb_session_id_check(m->session_id, &sub) != 0)
        why = "session_id is not a valid session id";
    else if (m->type != fb_backup_id_type(m->backup_id))
        why = "type disagrees with backup_id";
    else if (!m->tool_version)
        why = "no tool_version";
    else if (!fb_backup_base_is_allowed(m->type, m->base))
        why = "base is not the id of a full backup, or a full backup has one";
    else if (m->archive.size > FB_JSON_INT_MAX || m->archive.frame_size < 1 ||
             m->archive.frame_size > FB_JSON_INT_MAX || m->archive.frames > FB_JSON_INT_MAX ||
             m->archive.level < FB_ZSTD_LEVEL_MIN || m->archive.level > FB_ZSTD_LEVEL_MAX)
        why = "archive fields out of range";
    else if (m->totals.files > FB_JSON_INT_MAX || m->totals.dirs > FB_JSON_INT_MAX ||
             m->totals.symlinks > FB_JSON_INT_MAX || m->totals.bytes > FB_JSON_INT_MAX)
        why = "totals beyond 2^53";
    else {
        /* created_at is only ever a time that has an RFC 3339 form. */
        fb_rfc3339_format(m->created_at, when);
        if (fb_rfc3339_parse(when, &back) != 0 || back != m->created_at)
            why = "created_at has no RFC 3339 form";
    }
    return why ? fb_error_set(err, FB_ECORRUPT, "%s: %s", source, why) : 0;
}

int fb_manifest_check(const fb_manifest *m, const char *source, fb_error *err)
{
    int rc = header_problem(m, source, err);
    for (size_t i = 0; i < m->n_entries && rc == 0; i++)
        rc = entry_problem(m, i, source, err);
    plain_fail_ctx c = {m, source};
    if (rc == 0)
        rc = fb_manifest_check_entries(m, plain_fail, &c, err);
    if (rc)
        return rc;
    fb_manifest_totals t = {0};
    for (size_t i = 0; i < m->n_entries; i++)
        if (!fb_manifest_totals_add(&t, &m->entries[i].meta))
            return fb_error_set(err, FB_ECORRUPT, "%s: sum of file sizes overflows", source);
    if (memcmp(&t, &m->totals, sizeof t) != 0)
        return fb_error_set(err, FB_ECORRUPT, "%s: totals differ from the entries", source);
    return 0;
}
