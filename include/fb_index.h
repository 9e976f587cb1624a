/* index.json: the per-session list of backups, newest (highest seq) last.
 * Derived data, rebuilt from manifests by fb_store when it disagrees.
 * Not thread-safe. */
#ifndef FB_INDEX_H
#define FB_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "fb_error.h"
#include "fb_manifest.h"
#include "fb_types.h"

#define FB_INDEX_FORMAT 1

typedef struct fb_index_record {
    char id[FB_BACKUP_ID_LEN + 1];
    uint64_t seq;
    fb_backup_type type;
    int64_t created_at;
    char *note; /* owned, NULL = null */
    char base[FB_BACKUP_ID_LEN + 1]; /* "" = null */
    uint64_t files;
    uint64_t bytes;
    uint64_t stored_bytes; /* archive size */
    uint8_t archive_sha256[FB_SHA256_LEN];
} fb_index_record;

typedef struct fb_index {
    char session_id[FB_SESSION_ID_MAX + 1];
    fb_index_record *records; /* owned, sorted by seq ascending */
    size_t n;
    size_t cap;
} fb_index;

void fb_index_init(fb_index *idx, const char *session_id);
void fb_index_fini(fb_index *idx);

/* Adds the manifest's record, keeping seq order. FB_EEXIST if the id or seq
 * is already present. */
int fb_index_add_from_manifest(fb_index *idx, const fb_manifest *m, fb_error *err);
/* Removes a record; FB_ENOTFOUND if absent. */
int fb_index_remove(fb_index *idx, const char *backup_id, fb_error *err);
/* Index of the record with that id, or -1. */
long fb_index_find(const fb_index *idx, const char *backup_id);
/* Newest record (any type, or full only); NULL when none. */
const fb_index_record *fb_index_newest(const fb_index *idx);
const fb_index_record *fb_index_newest_full(const fb_index *idx);
/* 1 + highest seq, or 1 when empty. */
uint64_t fb_index_next_seq(const fb_index *idx);
/* True when every field the record carries equals the manifest's. */
bool fb_index_record_matches(const fb_index_record *rec, const fb_manifest *m);
/* The name of the first field of the record that differs from the
 * manifest's ("id", "seq", "type", "created_at", "note", "base", "files",
 * "bytes", "stored_bytes", "archive_sha256"), or NULL when none does. */
const char *fb_index_record_mismatch(const fb_index_record *rec, const fb_manifest *m);

/* Pretty JSON (2-space indent, trailing newline), malloc'd. */
int fb_index_to_json(const fb_index *idx, char **out, size_t *out_len, fb_error *err);
/* Strict parse: format 1, session_id valid, every record valid, ids unique,
 * seq strictly increasing. Returns 0, FB_ECORRUPT (names source and field),
 * FB_ENOMEM. */
int fb_index_parse(const char *json, size_t len, const char *source, fb_index *out,
                   fb_error *err);

#endif
