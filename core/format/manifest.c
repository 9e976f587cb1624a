/* manifest.json: the in-memory manifest (building it, lookups by path).
 * Its JSON form is written by manifest_write.c and read, strictly, by
 * manifest_read.c. */
#include "fb_manifest.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fb_store.h"
#include "fb_text.h"
#include "manifest_i.h"


/* ----------------------------------------------------------- in memory */

void fb_manifest_init(fb_manifest *m)
{
    memset(m, 0, sizeof *m);
    m->format = FB_MANIFEST_FORMAT;
}

bool fb_manifest_in_strings(const fb_manifest *m, const char *s)
{
    /* As integers: comparing pointers into different objects is undefined. */
    uintptr_t at = (uintptr_t)s, lo = (uintptr_t)m->strings;
    return m->strings && s && at >= lo && at - lo < m->strings_len;
}

/* Frees s unless the strings block holds it. */
static void free_string(const fb_manifest *m, char *s)
{
    if (!fb_manifest_in_strings(m, s))
        free(s);
}

void fb_manifest_fini(fb_manifest *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_entries; i++) {
        free_string(m, m->entries[i].path);
        free_string(m, m->entries[i].target);
    }
    free(m->entries);
    free_string(m, m->note);
    free_string(m, m->tool_version);
    free(m->strings);
    fb_manifest_init(m);
}

static int set_string(fb_manifest *m, char **dst, const char *src, const char *what,
                      fb_error *err)
{
    char *copy = NULL;
    if (src) {
        copy = strdup(src);
        if (!copy)
            return fb_error_set(err, FB_ENOMEM, "manifest: %s: out of memory", what);
    }
    free_string(m, *dst);
    *dst = copy;
    return 0;
}

int fb_manifest_set_note(fb_manifest *m, const char *note, fb_error *err)
{
    return set_string(m, &m->note, note, "note", err);
}

int fb_manifest_set_tool_version(fb_manifest *m, const char *version, fb_error *err)
{
    return set_string(m, &m->tool_version, version, "tool_version", err);
}

bool fb_manifest_totals_add(fb_manifest_totals *t, const fb_entry_meta *meta)
{
    switch (meta->type) {
    case FB_ENTRY_FILE:
        t->files++;
        return !__builtin_add_overflow(t->bytes, meta->size, &t->bytes);
    case FB_ENTRY_HARDLINK:
        t->files++;
        break;
    case FB_ENTRY_DIR:
        t->dirs++;
        break;
    case FB_ENTRY_SYMLINK:
        t->symlinks++;
        break;
    }
    return true;
}

int fb_manifest_reserve(fb_manifest *m, size_t n, fb_error *err)
{
    if (n <= m->cap_entries)
        return 0;
    size_t bytes;
    if (__builtin_mul_overflow(n, sizeof *m->entries, &bytes))
        return fb_error_set(err, FB_ENOMEM, "manifest: too many entries");
    fb_manifest_entry *e = realloc(m->entries, bytes);
    if (!e)
        return fb_error_set(err, FB_ENOMEM, "manifest: out of memory");
    m->entries = e;
    m->cap_entries = n;
    return 0;
}

int fb_manifest_add_entry(fb_manifest *m, const char *path, const fb_entry_meta *meta,
                          const uint8_t *sha256, uint64_t offset, const char *target,
                          fb_error *err)
{
    if (!path || !meta)
        return fb_error_set(err, FB_EMISUSE, "manifest: add_entry without path or metadata");
    bool is_file = meta->type == FB_ENTRY_FILE;
    bool has_target = meta->type == FB_ENTRY_SYMLINK || meta->type == FB_ENTRY_HARDLINK;
    char esc[256];
    if (meta->type > FB_ENTRY_HARDLINK || (is_file && !sha256) || (has_target && !target))
        return fb_error_set(err, FB_EMISUSE, "manifest: entry '%s': missing %s",
                            fb_path_escape(path, esc, sizeof esc), is_file ? "sha256" : "target");

    fb_manifest_totals t = m->totals;
    if (!fb_manifest_totals_add(&t, meta))
        return fb_error_set(err, FB_EMISUSE, "manifest: entry '%s': total size overflows",
                            fb_path_escape(path, esc, sizeof esc));

    if (m->n_entries == m->cap_entries) {
        size_t cap = m->cap_entries ? m->cap_entries * 2 : 64;
        int rc = fb_manifest_reserve(m, cap, err);
        if (rc < 0)
            return rc;
    }
    fb_manifest_entry *e = &m->entries[m->n_entries];
    memset(e, 0, sizeof *e);
    e->path = strdup(path);
    e->target = has_target ? strdup(target) : NULL;
    if (!e->path || (has_target && !e->target)) {
        free(e->path);
        free(e->target);
        return fb_error_set(err, FB_ENOMEM, "manifest: out of memory");
    }
    e->meta = *meta;
    if (is_file) {
        memcpy(e->sha256, sha256, FB_SHA256_LEN);
        e->offset = offset;
    }
    m->n_entries++;
    m->totals = t;
    return 0;
}

/* ------------------------------------------------------------- lookups */

static int cmp_entry_path(const void *a, const void *b, void *ctx)
{
    const fb_manifest_entry *e = ctx;
    return strcmp(e[*(const size_t *)a].path, e[*(const size_t *)b].path);
}

size_t *fb_manifest_sort_by_path(const fb_manifest *m)
{
    size_t n = m->n_entries;
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    if (!order)
        return NULL;
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    qsort_r(order, n, sizeof *order, cmp_entry_path, m->entries);
    return order;
}

long fb_manifest_find_path(const fb_manifest *m, const size_t *by_path, const char *p, size_t n)
{
    size_t lo = 0, hi = m->n_entries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *q = m->entries[by_path[mid]].path;
        int c = strncmp(q, p, n);
        if (c == 0)
            c = q[n] == '\0' ? 0 : 1;
        if (c == 0)
            return (long)by_path[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

const char *fb_manifest_path_problem(const char *p, size_t n)
{
    if (n == 0)
        return "empty";
    if (n > FB_PATH_MAX)
        return "longer than 4096 bytes";
    if (p[0] == '/')
        return "absolute";
    /* Component by component, memchr finding each '/': every path of every
     * manifest goes through here. */
    for (size_t start = 0;;) {
        const char *slash = memchr(p + start, '/', n - start);
        size_t i = slash ? (size_t)(slash - p) : n;
        size_t len = i - start;
        if (len == 0)
            return i == n ? "ends with '/'" : "has an empty component";
        if ((len == 1 && p[start] == '.') || (len == 2 && p[start] == '.' && p[start + 1] == '.'))
            return "has a '.' or '..' component";
        if (i == n)
            return NULL;
        start = i + 1;
    }
}
