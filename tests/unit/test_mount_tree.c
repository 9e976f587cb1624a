/* Unit tests of the FUSE-free mount model (core/mount/mount_tree.c): the tree the
 * daemon serves, built on real stores written with the archive writer,
 * manifest and index modules. */
#include <pthread.h>
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

static void content_of(const spec_entry *e, uint8_t *buf)
{
    fbtest_fill(buf, e->size, e->seed, (int)(e->seed & 1));
}

static char *root_dir(const char *tmp)
{
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/root", tmp);
    return p;
}

static void make_root(const char *tmp)
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
 * given entries. Returns 0 on success. */
static int write_backup(const char *tmp, const char *sid, const char *id, uint64_t seq,
                        int64_t created_at, const spec_entry *entries, size_t n)
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

/* Removes a backup the way cleanup does: index first, then the directory. */
static int remove_backup(const char *tmp, const char *sid, const char *id)
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

static fb_mount_tree *open_tree(const char *tmp, double live, size_t cache)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/root/.flowloom/backups", tmp);
    fb_mount_options o = {.cache_bytes = cache, .live_seconds = live};
    fb_mount_tree *t = NULL;
    fb_error err;
    if (fb_mount_tree_new(p, &o, &t, &err) != 0) {
        fprintf(stderr, "tree: %s\n", err.message);
        return NULL;
    }
    return t;
}

/* Collects a listing's names (after "." and "..") joined by '|'. */
static void listing(fb_mount_tree *t, uint64_t ino, char *out, size_t size)
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

static int lookup_path(fb_mount_tree *t, const char *path, fb_mount_attr *a)
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

static int read_all(fb_mount_tree *t, uint64_t ino, uint8_t **out, size_t *len)
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

static char *setup_store(void)
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

/* -------------------------------------------------------------- tests */

static void test_store_root_and_mountpoint(void)
{
    char *tmp = fbtest_tempdir();
    make_root(tmp);
    char p[4096], q[4096];
    fb_error err;
    char *root = NULL;
    snprintf(p, sizeof p, "%s/root/.flowloom/backups/", tmp);
    CHECK_EQ_INT(fb_mount_store_root(p, &root, &err), 0);
    snprintf(q, sizeof q, "%s/root", tmp);
    char *real = realpath(q, NULL);
    REQUIRE(root && real);
    CHECK(strcmp(root, real) == 0);
    free(root);
    root = NULL;
    CHECK_EQ_INT(fb_mount_store_root(tmp, &root, &err), FB_EINVAL);
    CHECK(strstr(err.message, ".flowloom/backups") != NULL);
    CHECK(root == NULL);

    snprintf(p, sizeof p, "%s/root/.flowloom/backups", tmp);
    snprintf(q, sizeof q, "%s/root/.flowloom/backups/sub", tmp);
    mkdir(q, 0700);
    CHECK_EQ_INT(fb_mount_check_mountpoint(p, p, &err), FB_EINVAL);
    CHECK_EQ_INT(fb_mount_check_mountpoint(p, q, &err), FB_EINVAL);
    CHECK(strstr(err.message, "inside") != NULL);
    snprintf(q, sizeof q, "%s/root", tmp);
    CHECK_EQ_INT(fb_mount_check_mountpoint(p, q, &err), FB_EINVAL);
    CHECK_EQ_INT(fb_mount_check_mountpoint(p, "/", &err), FB_EINVAL);
    /* A name sharing the store's prefix is not inside it. */
    snprintf(q, sizeof q, "%s/root/.flowloom/backups2", tmp);
    mkdir(q, 0700);
    CHECK_EQ_INT(fb_mount_check_mountpoint(p, q, &err), 0);
    snprintf(q, sizeof q, "%s/missing", tmp);
    CHECK_EQ_INT(fb_mount_check_mountpoint(p, q, &err), FB_ENOTFOUND);
    free(real);
    fbtest_rmtree(tmp);
}

static void test_tree_shape(void)
{
    char *tmp = setup_store();
    REQUIRE(tmp);
    fb_mount_tree *t = open_tree(tmp, 10.0, 1 << 20);
    REQUIRE(t);
    char names[4096];
    listing(t, FB_MOUNT_ROOT_INO, names, sizeof names);
    CHECK(strcmp(names, "sess-a|sess-b") == 0);

    fb_mount_attr a, b;
    fb_error err;
    REQUIRE(lookup_path(t, "sess-a", &a) == 0);
    CHECK(S_ISDIR(a.st.st_mode));
    CHECK(!a.immutable);
    CHECK_EQ_INT(a.st.st_mtim.tv_sec, T0 + 3600); /* newest backup */
    uint64_t sess_ino = a.st.st_ino;
    listing(t, sess_ino, names, sizeof names);
    char want[256];
    snprintf(want, sizeof want, "%s|%s|latest|latest-full", ID_FULL, ID_INCR);
    CHECK(strcmp(names, want) == 0);

    fb_mount_stats stats;
    fb_mount_tree_get_stats(t, &stats);
    CHECK_EQ_INT(stats.loaded_manifests, 0); /* listings read no manifest */

    char *target = NULL;
    REQUIRE(lookup_path(t, "sess-a/latest", &a) == 0);
    CHECK(S_ISLNK(a.st.st_mode));
    CHECK_EQ_INT(fb_mount_tree_readlink(t, a.st.st_ino, &target, &err), 0);
    CHECK(target && strcmp(target, ID_INCR) == 0);
    free(target);
    REQUIRE(lookup_path(t, "sess-a/latest-full", &a) == 0);
    CHECK_EQ_INT(fb_mount_tree_readlink(t, a.st.st_ino, &target, &err), 0);
    CHECK(target && strcmp(target, ID_FULL) == 0);
    free(target);

    char path[512];
    snprintf(path, sizeof path, "sess-a/%s", ID_FULL);
    REQUIRE(lookup_path(t, path, &a) == 0);
    CHECK(S_ISDIR(a.st.st_mode));
    CHECK_EQ_INT(a.st.st_mtim.tv_sec, T0);
    uint64_t full_ino = a.st.st_ino;
    fb_mount_tree_get_stats(t, &stats);
    CHECK_EQ_INT(stats.loaded_manifests, 0);
    listing(t, full_ino, names, sizeof names);
    CHECK(strcmp(names, "artifacts|link|logs|metadata.json|state.json") == 0);
    fb_mount_tree_get_stats(t, &stats);
    CHECK_EQ_INT(stats.loaded_manifests, 1);
    snprintf(path, sizeof path, "sess-a/%s/artifacts", ID_FULL);
    REQUIRE(lookup_path(t, path, &a) == 0);
    listing(t, a.st.st_ino, names, sizeof names);
    CHECK(strcmp(names, "big.bin|copy.bin|sub") == 0);
    CHECK_EQ_INT(a.st.st_mode, S_IFDIR | 0750);
    CHECK_EQ_INT(a.st.st_nlink, 3);
    CHECK(a.immutable);

    /* Stored metadata, nanoseconds included; hardlinks share an inode. */
    snprintf(path, sizeof path, "sess-a/%s/artifacts/big.bin", ID_FULL);
    REQUIRE(lookup_path(t, path, &a) == 0);
    CHECK_EQ_INT(a.st.st_mode, S_IFREG | 0640);
    CHECK_EQ_INT(a.st.st_size, 200000);
    CHECK_EQ_INT(a.st.st_uid, 1001);
    CHECK_EQ_INT(a.st.st_gid, 2001);
    CHECK_EQ_INT(a.st.st_mtim.tv_sec, T0 - 1000 + 1);
    CHECK_EQ_INT(a.st.st_mtim.tv_nsec, 123456789 + 1);
    CHECK_EQ_INT(a.st.st_nlink, 2);
    snprintf(path, sizeof path, "sess-a/%s/artifacts/copy.bin", ID_FULL);
    REQUIRE(lookup_path(t, path, &b) == 0);
    CHECK_EQ_INT(b.st.st_ino, a.st.st_ino);
    CHECK_EQ_INT(b.st.st_nlink, 2);
    CHECK_EQ_INT(b.st.st_size, 200000);
    snprintf(path, sizeof path, "sess-a/%s/logs/run.log", ID_FULL);
    REQUIRE(lookup_path(t, path, &b) == 0);
    CHECK(b.st.st_ino != a.st.st_ino);
    CHECK_EQ_INT(b.st.st_nlink, 1);

    snprintf(path, sizeof path, "sess-a/%s/link", ID_FULL);
    REQUIRE(lookup_path(t, path, &a) == 0);
    CHECK(S_ISLNK(a.st.st_mode));
    CHECK_EQ_INT(a.st.st_size, strlen("artifacts/../metadata.json"));
    CHECK_EQ_INT(fb_mount_tree_readlink(t, a.st.st_ino, &target, &err), 0);
    CHECK(target && strcmp(target, "artifacts/../metadata.json") == 0);
    free(target);
    CHECK_EQ_INT(fb_mount_tree_readlink(t, b.st.st_ino, &target, &err), FB_EMISUSE);

    /* Directories only implied by paths (incrementals). */
    snprintf(path, sizeof path, "sess-a/%s/state/deep", ID_INCR);
    REQUIRE(lookup_path(t, path, &a) == 0);
    CHECK_EQ_INT(a.st.st_mode, S_IFDIR | 0755);
    CHECK_EQ_INT(a.st.st_mtim.tv_sec, T0 + 3600);
    snprintf(path, sizeof path, "sess-a/%s", ID_INCR);
    REQUIRE(lookup_path(t, path, &a) == 0);
    listing(t, a.st.st_ino, names, sizeof names);
    CHECK(strcmp(names, "metadata.json|state") == 0);

    /* Misses. */
    CHECK_EQ_INT(lookup_path(t, "sess-empty", &a), FB_ENOTFOUND);
    CHECK_EQ_INT(lookup_path(t, ".hidden", &a), FB_ENOTFOUND);
    CHECK_EQ_INT(lookup_path(t, "sess-b/latest-fullx", &a), FB_ENOTFOUND);
    snprintf(path, sizeof path, "sess-a/%s/nope", ID_FULL);
    CHECK_EQ_INT(lookup_path(t, path, &a), FB_ENOTFOUND);
    snprintf(path, sizeof path, "sess-a/%s/metadata.json/x", ID_FULL);
    CHECK_EQ_INT(lookup_path(t, path, &a), FB_EMISUSE);
    CHECK_EQ_INT(fb_mount_tree_getattr(t, 999999999, &a, &err), FB_ENOTFOUND);

    /* A missed name is escaped in the message: a newline cannot forge a
     * line of the daemon's log. */
    CHECK_EQ_INT(lookup_path(t, "sess-a", &a), 0);
    CHECK_EQ_INT(fb_mount_tree_lookup(t, a.st.st_ino, "no\nsuch", &a, &err), FB_ENOTFOUND);
    CHECK(strchr(err.message, '\n') == NULL && strstr(err.message, "no\\nsuch") != NULL);
    snprintf(path, sizeof path, "sess-a/%s", ID_FULL);
    CHECK_EQ_INT(lookup_path(t, path, &a), 0);
    CHECK_EQ_INT(fb_mount_tree_lookup(t, a.st.st_ino, "x\ny", &a, &err), FB_ENOTFOUND);
    CHECK(strchr(err.message, '\n') == NULL && strstr(err.message, "x\\ny") != NULL);
    CHECK_EQ_INT(fb_mount_tree_lookup(t, FB_MOUNT_ROOT_INO, "s\nx", &a, &err), FB_ENOTFOUND);
    CHECK(strchr(err.message, '\n') == NULL);

    struct statvfs sv;
    CHECK_EQ_INT(fb_mount_tree_statfs(t, &sv, &err), 0);
    CHECK(sv.f_bsize > 0);
    fb_mount_tree_free(t);
    fbtest_rmtree(tmp);
}

static void test_reads(void)
{
    char *tmp = setup_store();
    REQUIRE(tmp);
    fb_mount_tree *t = open_tree(tmp, 10.0, 256 * 1024);
    REQUIRE(t);
    fb_error err;
    for (size_t i = 0; i < N_FULL; i++) {
        const spec_entry *e = &full_entries[i];
        if (e->type != FB_ENTRY_FILE)
            continue;
        char path[512];
        snprintf(path, sizeof path, "sess-a/%s/%s", ID_FULL, e->path);
        fb_mount_attr a;
        REQUIRE(lookup_path(t, path, &a) == 0);
        uint8_t *got = NULL;
        size_t len = 0;
        CHECK_EQ_INT(read_all(t, a.st.st_ino, &got, &len), 0);
        uint8_t *want = malloc(e->size + 1);
        content_of(e, want);
        CHECK_EQ_INT(len, e->size);
        CHECK(len == e->size && memcmp(got, want, len) == 0);
        free(want);
        free(got);
    }
    /* Ranges, past the end, zero length. */
    char path[512];
    snprintf(path, sizeof path, "sess-a/%s/logs/run.log", ID_FULL);
    fb_mount_attr a;
    REQUIRE(lookup_path(t, path, &a) == 0);
    fb_mount_file *f = NULL;
    REQUIRE(fb_mount_tree_open(t, a.st.st_ino, &f, &err) == 0);
    uint8_t *want = malloc(150000);
    content_of(&full_entries[7], want);
    uint8_t buf[70000];
    size_t got = 1;
    CHECK_EQ_INT(fb_mount_file_read(f, buf, sizeof buf, 65000, &got, &err), 0);
    CHECK_EQ_INT(got, sizeof buf);
    CHECK(memcmp(buf, want + 65000, sizeof buf) == 0);
    CHECK_EQ_INT(fb_mount_file_read(f, buf, sizeof buf, 149990, &got, &err), 0);
    CHECK_EQ_INT(got, 10);
    CHECK(memcmp(buf, want + 149990, 10) == 0);
    CHECK_EQ_INT(fb_mount_file_read(f, buf, sizeof buf, 150000, &got, &err), 0);
    CHECK_EQ_INT(got, 0);
    CHECK_EQ_INT(fb_mount_file_read(f, buf, sizeof buf, UINT64_MAX, &got, &err), 0);
    CHECK_EQ_INT(got, 0);
    fb_mount_stats stats;
    fb_mount_tree_get_stats(t, &stats);
    CHECK_EQ_INT(stats.open_archives, 1);
    fb_mount_file_close(t, f);
    fb_mount_tree_get_stats(t, &stats);
    CHECK_EQ_INT(stats.open_archives, 0);
    free(want);
    /* Directories and symlinks are not files. */
    snprintf(path, sizeof path, "sess-a/%s/logs", ID_FULL);
    REQUIRE(lookup_path(t, path, &a) == 0);
    CHECK_EQ_INT(fb_mount_tree_open(t, a.st.st_ino, &f, &err), FB_EMISUSE);
    fb_mount_tree_free(t);
    fbtest_rmtree(tmp);
}

static void test_live_changes_and_forget(void)
{
    char *tmp = setup_store();
    REQUIRE(tmp);
    fb_mount_tree *t = open_tree(tmp, 0, 1 << 20); /* always re-read listings */
    REQUIRE(t);
    fb_error err;
    fb_mount_attr a, s;
    REQUIRE(lookup_path(t, "sess-b", &s) == 0);
    char names[4096], want[256];
    listing(t, s.st.st_ino, names, sizeof names);
    snprintf(want, sizeof want, "%s|latest|latest-full", ID_B);
    CHECK(strcmp(names, want) == 0);

    /* A new backup appears, and latest follows it. */
    static const char ID_B2[] = "20270115T100000Z-incr-dddddd";
    REQUIRE(write_backup(tmp, "sess-b", ID_B2, 2, T0 + 7200, incr_entries, 1) == 0);
    listing(t, s.st.st_ino, names, sizeof names);
    snprintf(want, sizeof want, "%s|%s|latest|latest-full", ID_B, ID_B2);
    CHECK(strcmp(names, want) == 0);
    char path[512];
    snprintf(path, sizeof path, "sess-b/%s/metadata.json", ID_B2);
    REQUIRE(lookup_path(t, path, &a) == 0);
    uint64_t file_ino = a.st.st_ino;
    char *target = NULL;
    REQUIRE(lookup_path(t, "sess-b/latest", &a) == 0);
    CHECK_EQ_INT(fb_mount_tree_readlink(t, a.st.st_ino, &target, &err), 0);
    CHECK(target && strcmp(target, ID_B2) == 0);
    free(target);

    /* Contents go when the kernel forgets them and come back with the same
     * inode numbers. lookup_path took one reference per component. */
    fb_mount_stats st0, st1;
    fb_mount_tree_get_stats(t, &st0);
    snprintf(path, sizeof path, "sess-b/%s", ID_B2);
    REQUIRE(lookup_path(t, path, &a) == 0);
    uint64_t dir_ino = a.st.st_ino;
    fb_mount_tree_forget(t, file_ino, 1);
    fb_mount_tree_forget(t, dir_ino, 2);
    fb_mount_tree_get_stats(t, &st1);
    CHECK_EQ_INT(st1.loaded_manifests + 1, st0.loaded_manifests);
    snprintf(path, sizeof path, "sess-b/%s/metadata.json", ID_B2);
    REQUIRE(lookup_path(t, path, &a) == 0);
    CHECK_EQ_INT(a.st.st_ino, file_ino);

    /* Open a file, then remove its backup: the handle keeps reading. */
    fb_mount_file *f = NULL;
    REQUIRE(fb_mount_tree_open(t, file_ino, &f, &err) == 0);
    REQUIRE(remove_backup(tmp, "sess-b", ID_B2) == 0);
    listing(t, s.st.st_ino, names, sizeof names);
    snprintf(want, sizeof want, "%s|latest|latest-full", ID_B);
    CHECK(strcmp(names, want) == 0);
    CHECK_EQ_INT(lookup_path(t, path, &a), FB_ENOTFOUND);
    uint8_t buf[200], expect[200];
    content_of(&incr_entries[0], expect);
    size_t got = 0;
    CHECK_EQ_INT(fb_mount_file_read(f, buf, sizeof buf, 0, &got, &err), 0);
    CHECK_EQ_INT(got, incr_entries[0].size);
    CHECK(memcmp(buf, expect, got) == 0);
    /* The kernel still holds the inodes: attributes still answer. */
    CHECK_EQ_INT(fb_mount_tree_getattr(t, file_ino, &a, &err), 0);
    fb_mount_tree_get_stats(t, &st0);
    fb_mount_tree_forget(t, file_ino, 1);
    fb_mount_tree_forget(t, dir_ino, 1);
    fb_mount_tree_get_stats(t, &st1);
    CHECK_EQ_INT(st1.backups + 1, st0.backups); /* gone from store and kernel: freed */
    CHECK_EQ_INT(st1.open_archives, 1);         /* but the open file keeps its reader */
    CHECK_EQ_INT(fb_mount_file_read(f, buf, sizeof buf, 10, &got, &err), 0);
    CHECK(got == incr_entries[0].size - 10 && memcmp(buf, expect + 10, got) == 0);
    fb_mount_file_close(t, f);
    fb_mount_tree_get_stats(t, &st1);
    CHECK_EQ_INT(st1.open_archives, 0);
    CHECK_EQ_INT(fb_mount_tree_getattr(t, file_ino, &a, &err), FB_ENOTFOUND);

    /* A whole new session shows in the root. */
    REQUIRE(write_backup(tmp, "sess-c", ID_B, 1, T0, incr_entries, 1) == 0);
    listing(t, FB_MOUNT_ROOT_INO, names, sizeof names);
    CHECK(strcmp(names, "sess-a|sess-b|sess-c") == 0);
    fb_mount_tree_free(t);
    fbtest_rmtree(tmp);
}

/* Flips one byte in the compressed data of the frame holding a file. */
static void test_corruption(void)
{
    char *tmp = setup_store();
    REQUIRE(tmp);
    fb_mount_tree *t = open_tree(tmp, 10.0, 1 << 20);
    REQUIRE(t);
    char path[4096];
    snprintf(path, sizeof path, "%s/root/.flowloom/backups/sess-a/%s/archive.tar.zst", tmp,
             ID_FULL);
    struct stat st;
    REQUIRE(stat(path, &st) == 0);
    int fd = open(path, O_RDWR);
    REQUIRE(fd >= 0);
    /* big.bin (incompressible, 200000 bytes) starts the archive after a
     * directory header: its frames are the first ones. Corrupt early. */
    uint8_t byte;
    REQUIRE(pread(fd, &byte, 1, 3000) == 1);
    byte ^= 0x55;
    REQUIRE(pwrite(fd, &byte, 1, 3000) == 1);
    close(fd);
    fb_mount_attr a;
    uint8_t *got = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "sess-a/%s/artifacts/big.bin", ID_FULL);
    REQUIRE(lookup_path(t, path, &a) == 0);
    CHECK_EQ_INT(read_all(t, a.st.st_ino, &got, &len), FB_ECORRUPT);
    free(got);
    /* Another file in a later frame still reads correctly. */
    snprintf(path, sizeof path, "sess-a/%s/logs/run.log", ID_FULL);
    REQUIRE(lookup_path(t, path, &a) == 0);
    CHECK_EQ_INT(read_all(t, a.st.st_ino, &got, &len), 0);
    uint8_t *want = malloc(150000);
    content_of(&full_entries[7], want);
    CHECK(len == 150000 && memcmp(got, want, len) == 0);
    free(want);
    free(got);
    /* An archive whose size disagrees with the manifest is refused at open. */
    snprintf(path, sizeof path, "%s/root/.flowloom/backups/sess-b/%s/archive.tar.zst", tmp, ID_B);
    REQUIRE(stat(path, &st) == 0);
    fd = open(path, O_WRONLY | O_APPEND);
    REQUIRE(fd >= 0 && write(fd, "x", 1) == 1);
    close(fd);
    snprintf(path, sizeof path, "sess-b/%s/artifacts/big.bin", ID_B);
    REQUIRE(lookup_path(t, path, &a) == 0);
    fb_mount_file *f = NULL;
    fb_error err;
    CHECK(fb_mount_tree_open(t, a.st.st_ino, &f, &err) < 0);
    CHECK(f == NULL);
    fb_mount_tree_free(t);
    fbtest_rmtree(tmp);
}

typedef struct reader_ctx {
    fb_mount_tree *t;
    uint64_t ino[2];
    const uint8_t *want[2];
    size_t size[2];
    uint64_t seed;
    int failures;
} reader_ctx;

static void *reader_thread(void *arg)
{
    reader_ctx *c = arg;
    uint64_t s = c->seed;
    uint8_t buf[9000];
    for (int i = 0; i < 300; i++) {
        int k = (int)(fbtest_rand(&s) % 2);
        fb_mount_file *f = NULL;
        fb_error err;
        if (fb_mount_tree_open(c->t, c->ino[k], &f, &err) != 0) {
            c->failures++;
            continue;
        }
        uint64_t off = fbtest_rand(&s) % c->size[k];
        size_t len = (size_t)(fbtest_rand(&s) % sizeof buf);
        size_t got = 0;
        if (fb_mount_file_read(f, buf, len, off, &got, &err) != 0)
            c->failures++;
        size_t expect = c->size[k] - off < len ? (size_t)(c->size[k] - off) : len;
        if (got != expect || memcmp(buf, c->want[k] + off, got) != 0)
            c->failures++;
        fb_mount_file_close(c->t, f);
    }
    return NULL;
}

static void test_concurrent_reads(void)
{
    char *tmp = setup_store();
    REQUIRE(tmp);
    /* A cache smaller than the data: threads evict each other's frames. */
    fb_mount_tree *t = open_tree(tmp, 10.0, 128 * 1024);
    REQUIRE(t);
    reader_ctx base = {.t = t};
    const spec_entry *es[2] = {&full_entries[1], &full_entries[7]};
    uint8_t *wants[2];
    for (int k = 0; k < 2; k++) {
        char path[512];
        snprintf(path, sizeof path, "sess-a/%s/%s", ID_FULL, es[k]->path);
        fb_mount_attr a;
        REQUIRE(lookup_path(t, path, &a) == 0);
        base.ino[k] = a.st.st_ino;
        wants[k] = malloc(es[k]->size);
        content_of(es[k], wants[k]);
        base.want[k] = wants[k];
        base.size[k] = es[k]->size;
    }
    pthread_t th[8];
    reader_ctx ctx[8];
    for (int i = 0; i < 8; i++) {
        ctx[i] = base;
        ctx[i].seed = 1000 + (uint64_t)i;
        pthread_create(&th[i], NULL, reader_thread, &ctx[i]);
    }
    int failures = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        failures += ctx[i].failures;
    }
    CHECK_EQ_INT(failures, 0);
    fb_mount_stats st;
    fb_mount_tree_get_stats(t, &st);
    CHECK_EQ_INT(st.open_archives, 0);
    free(wants[0]);
    free(wants[1]);
    fb_mount_tree_free(t);
    fbtest_rmtree(tmp);
}

/* Handles left open when the daemon stops are freed with the tree (run
 * under ASan/LSan this shows no leak). */
static void test_free_with_open_handles(void)
{
    char *tmp = setup_store();
    REQUIRE(tmp);
    fb_mount_tree *t = open_tree(tmp, 10.0, 1 << 20);
    REQUIRE(t);
    char path[512];
    snprintf(path, sizeof path, "sess-a/%s/metadata.json", ID_FULL);
    fb_mount_attr a;
    REQUIRE(lookup_path(t, path, &a) == 0);
    fb_mount_file *f = NULL;
    fb_mount_dir *d = NULL;
    fb_error err;
    CHECK_EQ_INT(fb_mount_tree_open(t, a.st.st_ino, &f, &err), 0);
    CHECK_EQ_INT(fb_mount_tree_opendir(t, FB_MOUNT_ROOT_INO, &d, &err), 0);
    fb_mount_tree_free(t);
    fbtest_rmtree(tmp);
}

int main(void)
{
    RUN_TEST(test_store_root_and_mountpoint);
    RUN_TEST(test_tree_shape);
    RUN_TEST(test_reads);
    RUN_TEST(test_live_changes_and_forget);
    RUN_TEST(test_corruption);
    RUN_TEST(test_concurrent_reads);
    RUN_TEST(test_free_with_open_handles);
    FBTEST_EXIT();
}
