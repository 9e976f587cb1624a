/* manifest.json: what a backup holds, the source of truth (SPEC "Storage
 * layout"). In-memory form, strict parsing and serialisation.
 *
 * Names are raw bytes. JSON strings must be UTF-8, so a path, target or link
 * that is not valid UTF-8 is written as `path` with each invalid byte replaced
 * by U+FFFD plus `path_b64` holding the exact bytes (base64); readers prefer
 * the _b64 field. Integers must be exact in a double (<= 2^53).
 *
 * Not thread-safe; a parsed manifest is immutable and may then be read by
 * many threads. */
#ifndef FB_MANIFEST_H
#define FB_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_error.h"
#include "fb_ids.h"
#include "fb_types.h"

#define FB_MANIFEST_FORMAT 1
/* Manifests and indexes larger than this are refused as corrupt. */
#define FB_MANIFEST_SIZE_MAX (256u * 1024 * 1024)

typedef struct fb_manifest_entry {
    char *path;   /* owned, raw bytes */
    fb_entry_meta meta;
    uint8_t sha256[FB_SHA256_LEN]; /* files only */
    uint64_t offset;               /* files only: data offset in the tar stream */
    char *target; /* owned: symlink target or hardlink `link`; NULL otherwise */
} fb_manifest_entry;

typedef struct fb_manifest_archive {
    uint64_t size;
    uint8_t sha256[FB_SHA256_LEN];
    uint64_t frame_size;
    uint64_t frames;
    int level;
} fb_manifest_archive;

typedef struct fb_manifest_totals {
    uint64_t files;    /* file + hardlink entries */
    uint64_t dirs;
    uint64_t symlinks;
    uint64_t bytes;    /* sum of file entry sizes */
} fb_manifest_totals;

typedef struct fb_manifest {
    int format;
    char backup_id[FB_BACKUP_ID_LEN + 1];
    uint64_t seq;
    char session_id[FB_SESSION_ID_MAX + 1];
    fb_backup_type type;
    int64_t created_at;   /* seconds since the epoch, UTC */
    char *note;           /* owned, NULL = null */
    char base[FB_BACKUP_ID_LEN + 1]; /* "" = null */
    char *tool_version;   /* owned */
    fb_manifest_archive archive;
    fb_manifest_totals totals;
    fb_manifest_entry *entries; /* owned, in archive order */
    size_t n_entries;
    size_t cap_entries;
    /* Owned, NULL for most manifests: one allocation that holds strings of
     * the manifest in place (entry paths and targets, note, tool_version),
     * freed as a whole. A string inside it is not freed on its own. The
     * local manifest cache decodes into one, which saves an allocation
     * and a copy per entry. */
    char *strings;
    size_t strings_len;
} fb_manifest;

void fb_manifest_init(fb_manifest *m);
/* Frees what m owns (each string, or the strings block as a whole). */
void fb_manifest_fini(fb_manifest *m);
/* True when s lies inside m's strings block (and is freed with it). */
bool fb_manifest_in_strings(const fb_manifest *m, const char *s);

/* Copies note (NULL clears it). */
int fb_manifest_set_note(fb_manifest *m, const char *note, fb_error *err);
int fb_manifest_set_tool_version(fb_manifest *m, const char *version, fb_error *err);

/* Makes room for n entries in all, so that adding that many never
 * reallocates (a caller that knows the count avoids the up to 2x slack of
 * growing by doubling). Returns 0, FB_ENOMEM. */
int fb_manifest_reserve(fb_manifest *m, size_t n, fb_error *err);

/* Appends an entry, copying path and target, and updates totals.
 * sha256 is required for files (NULL otherwise); target for symlinks and
 * hardlinks. Returns 0, FB_ENOMEM, FB_EMISUSE. */
int fb_manifest_add_entry(fb_manifest *m, const char *path, const fb_entry_meta *meta,
                          const uint8_t *sha256, uint64_t offset, const char *target,
                          fb_error *err);

/* Takes the next len bytes of the text (data is valid during the call
 * only). Returns 0, or a negative FB_E* code with err filled (naming where
 * the text was going), which stops the writing. */
typedef int (*fb_manifest_sink)(void *ctx, const char *data, size_t len, fb_error *err);

/* fb_manifest_write hands the text over in pieces of about this many bytes
 * (one entry may overshoot it), never the whole document at once. */
#define FB_MANIFEST_CHUNK (64u * 1024)

/* The JSON text in the layout of SPEC "manifest.json": compact, the
 * top-level fields on the first line, then "entries":[ and one entry per
 * line, a trailing newline. Written straight from m (no JSON tree) and
 * handed to sink in order, in chunks: the concatenation is exactly
 * fb_manifest_to_json's text. Returns 0, FB_EMISUSE (m cannot be written:
 * nothing was passed to sink then, or only a prefix), FB_ENOMEM, or the
 * sink's error unchanged (sink is not called again after it fails). */
int fb_manifest_write(const fb_manifest *m, fb_manifest_sink sink, void *ctx, fb_error *err);

/* The same text, malloc'd whole (for callers that need it in memory). */
int fb_manifest_to_json(const fb_manifest *m, char **out, size_t *out_len, fb_error *err);

/* Strict parse (see json_strict) of any valid JSON layout, entry by
 * entry: the document is never a tree as a whole, the peak is m itself
 * plus one entry's tree. No duplicate or case-twin keys, no trailing
 * data, integers exact, every required field present with the right type,
 * format == 1, ids valid, paths relative without "." / ".." / empty
 * components and unique, sha256 64 lowercase hex, modes <= 07777, file
 * offsets increasing without overlap, hardlinks pointing to an earlier file,
 * totals equal to the entries. Also refused: an entry below a non-directory
 * entry (a restore would write through a symlink), keys of another entry
 * type (`target` on a file), a full with a base, an incremental whose base
 * is not a full id, backup_id type != `type`. Unknown keys are ignored
 * (forward compatible). source names the file in messages.
 * Returns 0, FB_ECORRUPT (names source and field), FB_EUNSUPPORTED (format),
 * FB_ENOMEM. On error *out is left initialised and empty. */
int fb_manifest_parse(const char *json, size_t len, const char *source, fb_manifest *out,
                      fb_error *err);

/* Every rule fb_manifest_parse enforces, checked on m itself: for a
 * manifest that comes from somewhere other than JSON text (the local
 * manifest cache), so that it is trusted no further than manifest.json.
 * Returns 0 or FB_ECORRUPT naming source, the entry and the rule. */
int fb_manifest_check(const fb_manifest *m, const char *source, fb_error *err);

/* Tree order, the order the writer lists entries in: bytewise with '/'
 * below every other byte (paths hold no NUL), an absent byte (the end of
 * a path) first, so that a path is directly followed by everything below
 * it: "a", "a/b", "a/c/d", "a-b". Returns <0, 0 or >0 as strcmp does. */
int fb_manifest_tree_cmp(const char *a, size_t alen, const char *b, size_t blen);

/* The indices of m's entries sorted by path (bytewise), so that lookups by
 * path stay O(log n) whatever the names: a malloc'd array of n_entries
 * (at least one slot), or NULL when out of memory. */
size_t *fb_manifest_sort_by_path(const fb_manifest *m);
/* With by_path from fb_manifest_sort_by_path: the index of the entry whose
 * path is exactly p[0..n), or -1. */
long fb_manifest_find_path(const fb_manifest *m, const size_t *by_path, const char *p,
                           size_t n);

#endif
