/* The mount tree's unit tests' fixture (test_mount_tree.c): a FlowLoom root
 * in a temp dir with real backups written by the archive writer, manifest
 * and index modules, and helpers that walk the tree as the kernel would. */
#ifndef MOUNT_FIXTURE_H
#define MOUNT_FIXTURE_H

#include <sys/stat.h>

#include "fbtest.h"
#include "fb_archive_writer.h"
#include "fb_fsutil.h"
#include "fb_index.h"
#include "fb_manifest.h"
#include "fb_mount_tree.h"
#include "fb_store.h"

/* ------------------------------------------------------------ fixture */

typedef struct spec_entry {
    const char *path;
    fb_entry_type type;
    uint32_t mode;
    size_t size;         /* files: bytes generated from seed */
    uint64_t seed;
    const char *target;  /* symlink target / hardlink link */
} spec_entry;

static const int64_t T0 = 1800000000; /* 2027-01-15 */

static inline void content_of(const spec_entry *e, uint8_t *buf)
{
    fbtest_fill(buf, e->size, e->seed, (int)(e->seed & 1));
}

static inline char *root_dir(const char *tmp)
{
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/root", tmp);
    return p;
}

static inline void make_root(const char *tmp)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/root", tmp);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/root/.flowloom", tmp);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/root/.flowloom/backups", tmp);
    mkdir(p, 0700);
}

/* Writes one published backup (archive, manifest, index record) made of the
 * given entries, an incremental with base as its base full (NULL: none).
 * Returns 0 on success. */
static inline int write_backup_based(const char *tmp, const char *sid, const char *id,
                                     uint64_t seq, int64_t created_at, const char *base,
                                     const spec_entry *entries, size_t n)
{
    fb_error err;
    char *root = root_dir(tmp);
    fb_store *store = NULL;
    int rc = fb_store_open(root, true, &store, &err);
    free(root);
    if (rc) {
        fprintf(stderr, "store: %s\n", err.message);
        return rc;
    }
    int sfd = -1;
    rc = fb_store_open_session(store, sid, true, &sfd, &err);
    if (rc) {
        fprintf(stderr, "session: %s\n", err.message);
        fb_store_free(store);
        return rc;
    }
    mkdirat(sfd, id, 0700);
    int bfd = openat(sfd, id, O_RDONLY | O_DIRECTORY);
    int afd = openat(bfd, "archive.tar.zst", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    fb_archive_writer_options wo = {.level = 1, .frame_size = 65536, .threads = 1};
    fb_archive_writer *w = NULL;
    fb_manifest m;
    fb_manifest_init(&m);
    snprintf(m.backup_id, sizeof m.backup_id, "%s", id);
    snprintf(m.session_id, sizeof m.session_id, "%s", sid);
    m.seq = seq;
    m.type = fb_backup_id_type(id);
    m.created_at = created_at;
    if (base)
        snprintf(m.base, sizeof m.base, "%s", base);
    fb_manifest_set_tool_version(&m, "test", &err);
    rc = fb_archive_writer_new(afd, &wo, &w, &err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const spec_entry *e = &entries[i];
        fb_entry_meta meta = {.type = e->type, .mode = e->mode, .uid = 1000 + (uint32_t)i,
                              .gid = 2000 + (uint32_t)i, .mtime = T0 - 1000 + (int64_t)i,
                              .mtime_nsec = 123456789u + (uint32_t)i, .size = e->size};
        if (e->type == FB_ENTRY_DIR) {
            meta.size = 0;
            rc = fb_archive_writer_add_dir(w, e->path, &meta, &err);
            if (rc == 0)
                rc = fb_manifest_add_entry(&m, e->path, &meta, NULL, 0, NULL, &err);
        } else if (e->type == FB_ENTRY_SYMLINK) {
            meta.size = 0;
            rc = fb_archive_writer_add_symlink(w, e->path, &meta, e->target, &err);
            if (rc == 0)
                rc = fb_manifest_add_entry(&m, e->path, &meta, NULL, 0, e->target, &err);
        } else if (e->type == FB_ENTRY_HARDLINK) {
            for (size_t j = 0; j < i; j++)
                if (strcmp(entries[j].path, e->target) == 0)
                    meta.size = entries[j].size;
            rc = fb_archive_writer_add_hardlink(w, e->path, &meta, e->target, &err);
            if (rc == 0)
                rc = fb_manifest_add_entry(&m, e->path, &meta, NULL, 0, e->target, &err);
        } else {
            uint8_t *buf = malloc(e->size + 1);
            content_of(e, buf);
            char tmpf[4096];
            snprintf(tmpf, sizeof tmpf, "%s/content.tmp", tmp);
            int cfd = open(tmpf, O_RDWR | O_CREAT | O_TRUNC, 0600);
            if (fb_write_all(cfd, buf, e->size) != 0)
                rc = FB_EIO;
            lseek(cfd, 0, SEEK_SET);
            fb_archive_file_result res;
            if (rc == 0)
                rc = fb_archive_writer_add_file(w, e->path, &meta, cfd, &res, &err);
            if (rc == 0)
                rc = fb_manifest_add_entry(&m, e->path, &meta, res.sha256, res.offset, NULL, &err);
            close(cfd);
            unlink(tmpf);
            free(buf);
        }
    }
    fb_archive_summary sum;
    if (rc == 0)
        rc = fb_archive_writer_finish(w, &sum, &err);
    fb_archive_writer_free(w);
    close(afd);
    if (rc == 0) {
        m.archive.size = sum.compressed_size;
        memcpy(m.archive.sha256, sum.sha256, FB_SHA256_LEN);
        m.archive.frame_size = wo.frame_size;
        m.archive.frames = sum.frames;
        m.archive.level = wo.level;
        char *json = NULL;
        size_t len = 0;
        rc = fb_manifest_to_json(&m, &json, &len, &err);
        if (rc == 0)
            rc = fb_atomic_write_at(bfd, id, "manifest.json", json, len, &err);
        free(json);
    }
    if (rc == 0) {
        fb_index idx;
        bool rebuilt;
        rc = fb_store_load_index(store, sid, FB_INDEX_LOAD_LOCKED, &idx, &rebuilt, NULL, NULL,
                                 &err);
        /* A fresh dir already makes the loader rebuild the index with it. */
        if (rc == 0 && fb_index_find(&idx, id) < 0)
            rc = fb_index_add_from_manifest(&idx, &m, &err);
        if (rc == 0)
            rc = fb_store_save_index(sfd, sid, &idx, &err);
        fb_index_fini(&idx);
    }
    if (rc)
        fprintf(stderr, "write_backup %s/%s: %s\n", sid, id, err.message);
    fb_manifest_fini(&m);
    close(bfd);
    close(sfd);
    fb_store_free(store);
    return rc;
}

static inline int write_backup(const char *tmp, const char *sid, const char *id,
                               uint64_t seq, int64_t created_at, const spec_entry *entries,
                               size_t n)
{
    return write_backup_based(tmp, sid, id, seq, created_at, NULL, entries, n);
}

/* Removes a backup the way cleanup does: index first, then the directory. */
static inline int remove_backup(const char *tmp, const char *sid, const char *id)
{
    fb_error err;
    char *root = root_dir(tmp);
    fb_store *store = NULL;
    int rc = fb_store_open(root, false, &store, &err);
    free(root);
    if (rc)
        return rc;
    int sfd = -1;
    rc = fb_store_open_session(store, sid, false, &sfd, &err);
    fb_index idx;
    bool rebuilt;
    if (rc == 0)
        rc = fb_store_load_index(store, sid, FB_INDEX_LOAD_LOCKED, &idx, &rebuilt, NULL, NULL,
                                 &err);
    if (rc == 0) {
        rc = fb_index_remove(&idx, id, &err);
        if (rc == 0)
            rc = fb_store_save_index(sfd, sid, &idx, &err);
        fb_index_fini(&idx);
    }
    if (rc == 0)
        rc = fb_remove_tree_at(sfd, sid, id, &err);
    if (rc)
        fprintf(stderr, "remove_backup: %s\n", err.message);
    if (sfd >= 0)
        close(sfd);
    fb_store_free(store);
    return rc;
}

static const spec_entry full_entries[] = {
    {"artifacts", FB_ENTRY_DIR, 0750, 0, 0, NULL},
    {"artifacts/big.bin", FB_ENTRY_FILE, 0640, 200000, 7, NULL},
    {"artifacts/copy.bin", FB_ENTRY_HARDLINK, 0640, 0, 0, "artifacts/big.bin"},
    {"artifacts/sub", FB_ENTRY_DIR, 0700, 0, 0, NULL},
    {"artifacts/sub/empty", FB_ENTRY_FILE, 0600, 0, 0, NULL},
    {"link", FB_ENTRY_SYMLINK, 0777, 0, 0, "artifacts/../metadata.json"},
    {"logs", FB_ENTRY_DIR, 0755, 0, 0, NULL},
    {"logs/run.log", FB_ENTRY_FILE, 0644, 150000, 4, NULL},
    {"metadata.json", FB_ENTRY_FILE, 0644, 100, 2, NULL},
    {"state.json", FB_ENTRY_FILE, 0600, 50, 9, NULL},
};
#define N_FULL (sizeof full_entries / sizeof full_entries[0])

/* An incremental whose file lives in a directory that has no entry. */
static const spec_entry incr_entries[] = {
    {"metadata.json", FB_ENTRY_FILE, 0644, 120, 12, NULL},
    {"state/deep/x.json", FB_ENTRY_FILE, 0644, 30, 13, NULL},
};
#define N_INCR (sizeof incr_entries / sizeof incr_entries[0])

static const char ID_FULL[] = "20270115T080000Z-full-aaaaaa";
static const char ID_INCR[] = "20270115T090000Z-incr-bbbbbb";
static const char ID_B[] = "20270115T070000Z-full-cccccc";

/* A tree on tmp's store with options o; NULL (the reason printed) if it
 * cannot be made. */
static inline fb_mount_tree *open_tree_with(const char *tmp, const fb_mount_options *o)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/root/.flowloom/backups", tmp);
    fb_mount_tree *t = NULL;
    fb_error err;
    if (fb_mount_tree_new(p, o, &t, &err) != 0) {
        fprintf(stderr, "tree: %s\n", err.message);
        return NULL;
    }
    return t;
}

static inline fb_mount_tree *open_tree(const char *tmp, double live, size_t cache)
{
    fb_mount_options o = {.cache_bytes = cache, .live_seconds = live};
    return open_tree_with(tmp, &o);
}

/* Collects a listing's names (after "." and "..") joined by '|'. */
static inline void listing(fb_mount_tree *t, uint64_t ino, char *out, size_t size)
{
    out[0] = '\0';
    fb_mount_dir *d = NULL;
    fb_error err;
    if (fb_mount_tree_opendir(t, ino, &d, &err) != 0) {
        snprintf(out, size, "ERROR %s", err.message);
        return;
    }
    const char *name;
    uint64_t child;
    uint32_t mode;
    for (uint64_t pos = 2; fb_mount_dir_get(d, pos, &name, &child, &mode); pos++) {
        size_t used = strlen(out);
        snprintf(out + used, size - used, "%s%s", used ? "|" : "", name);
    }
    fb_mount_dir_close(t, d);
}

static inline int lookup_path(fb_mount_tree *t, const char *path, fb_mount_attr *a)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    uint64_t ino = FB_MOUNT_ROOT_INO;
    fb_error err;
    int rc = fb_mount_tree_getattr(t, ino, a, &err);
    for (char *save = NULL, *c = strtok_r(buf, "/", &save); c && rc == 0;
         c = strtok_r(NULL, "/", &save)) {
        rc = fb_mount_tree_lookup(t, ino, c, a, &err);
        ino = a->st.st_ino;
    }
    return rc;
}

static inline int read_all(fb_mount_tree *t, uint64_t ino, uint8_t **out, size_t *len)
{
    fb_mount_file *f = NULL;
    fb_error err;
    int rc = fb_mount_tree_open(t, ino, &f, &err);
    if (rc)
        return rc;
    size_t size = (size_t)fb_mount_file_size(f);
    uint8_t *buf = malloc(size + 1);
    size_t done = 0;
    while (rc == 0) {
        size_t got = 0;
        rc = fb_mount_file_read(f, buf + done, 4096, done, &got, &err);
        if (got == 0)
            break;
        done += got;
    }
    fb_mount_file_close(t, f);
    *out = buf;
    *len = done;
    return rc;
}

static inline char *setup_store(void)
{
    char *tmp = fbtest_tempdir();
    make_root(tmp);
    if (write_backup(tmp, "sess-a", ID_FULL, 1, T0, full_entries, N_FULL) != 0 ||
        write_backup(tmp, "sess-a", ID_INCR, 2, T0 + 3600, incr_entries, N_INCR) != 0 ||
        write_backup(tmp, "sess-b", ID_B, 1, T0 - 3600, full_entries, 2) != 0) {
        fbtest_rmtree(tmp);
        return NULL;
    }
    /* Not shown: a session dir with neither index nor backups, and a dir
     * whose name is not a session id. */
    char p[4096];
    snprintf(p, sizeof p, "%s/root/.flowloom/backups/sess-empty", tmp);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/root/.flowloom/backups/.hidden", tmp);
    mkdir(p, 0700);
    return tmp;
}

#endif
