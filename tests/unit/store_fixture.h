/* Shared by the store and retention unit tests: a FlowLoom root in a temp
 * dir and synthetic backups (a real manifest written with
 * fb_manifest_to_json, plus a placeholder archive file), so the store code
 * is exercised on disk without the archive writer. */
#ifndef STORE_FIXTURE_H
#define STORE_FIXTURE_H

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fb_fsutil.h"
#include "fb_index.h"
#include "fb_manifest.h"
#include "fb_store.h"

/* Deterministic id: the UTC time t, the type, and n as the 6 hex digits. */
static inline void fixture_id(int64_t t, fb_backup_type type, unsigned n,
                              char out[FB_BACKUP_ID_LEN + 1])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    char buf[64];
    snprintf(buf, sizeof buf, "%04d%02d%02dT%02d%02d%02dZ-%s-%06x", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             type == FB_BACKUP_FULL ? "full" : "incr", n & 0xffffffu);
    memcpy(out, buf, FB_BACKUP_ID_LEN + 1);
}

/* Bounded copy that gcc's truncation checks can see through. */
static inline void fixture_copy(char *dst, size_t size, const char *src)
{
    size_t n = src ? strnlen(src, size - 1) : 0;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

/* A small but complete manifest: one file entry. base may be NULL. */
static inline int fixture_manifest(fb_manifest *m, const char *sid, const char *id, uint64_t seq,
                                   int64_t created_at, const char *base, const char *note)
{
    fb_error err;
    fb_manifest_init(m);
    m->format = FB_MANIFEST_FORMAT;
    fixture_copy(m->backup_id, sizeof m->backup_id, id);
    fixture_copy(m->session_id, sizeof m->session_id, sid);
    m->seq = seq;
    m->type = fb_backup_id_type(id);
    m->created_at = created_at;
    fixture_copy(m->base, sizeof m->base, base);
    if (fb_manifest_set_tool_version(m, "0.1.0-test", &err) != 0 ||
        fb_manifest_set_note(m, note, &err) != 0)
        return -1;
    m->archive.size = 1024 + seq;
    for (int i = 0; i < FB_SHA256_LEN; i++)
        m->archive.sha256[i] = (uint8_t)(seq * 7 + (uint64_t)i);
    m->archive.frame_size = 1048576;
    m->archive.frames = 1;
    m->archive.level = 3;
    fb_entry_meta meta = {.type = FB_ENTRY_FILE, .mode = 0644, .uid = 1000, .gid = 1000,
                          .mtime = created_at, .mtime_nsec = 5, .size = 10 + seq};
    uint8_t sha[FB_SHA256_LEN];
    memset(sha, (int)(seq & 0xff), sizeof sha);
    return fb_manifest_add_entry(m, "metadata.json", &meta, sha, 512, NULL, &err);
}

/* Writes <session_fd>/<id>/{manifest.json,archive.tar.zst}. */
static inline int fixture_write_backup(int session_fd, const fb_manifest *m)
{
    fb_error err;
    if (mkdirat(session_fd, m->backup_id, 0700) != 0)
        return -1;
    int dfd = openat(session_fd, m->backup_id, O_RDONLY | O_DIRECTORY);
    if (dfd < 0)
        return -1;
    char *json = NULL;
    size_t len = 0;
    int rc = fb_manifest_to_json(m, &json, &len, &err);
    if (rc == 0)
        rc = fb_atomic_write_at(dfd, m->backup_id, "manifest.json", json, len, &err);
    if (rc == 0)
        rc = fb_atomic_write_at(dfd, m->backup_id, "archive.tar.zst", "not really", 10, &err);
    if (rc)
        fprintf(stderr, "fixture: %s\n", err.message);
    free(json);
    close(dfd);
    return rc;
}

/* Makes <dir>/.flowloom/sessions and opens the store (creating backups/). */
static inline fb_store *fixture_store(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/.flowloom", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/.flowloom/sessions", dir);
    mkdir(path, 0700);
    fb_store *st = NULL;
    fb_error err;
    if (fb_store_open(dir, true, &st, &err) != 0) {
        fprintf(stderr, "fixture: %s\n", err.message);
        return NULL;
    }
    return st;
}

#endif
