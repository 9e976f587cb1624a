/* Unit tests of the FUSE-free mount model (core/mount/mount_tree.c): the tree the
 * daemon serves, built on real stores written with the archive writer,
 * manifest and index modules (mount_fixture.h). */
#include <dirent.h>
#include <pthread.h>
#include <sys/stat.h>

#include "fb_manifest_cache.h"
#include "mount_fixture.h"

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
    snprintf(want, sizeof want, "%s|%s|latest|latest-full|as-of|history", ID_FULL, ID_INCR);
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

/* Threads of this process (entries of /proc/self/task). */
static int task_count(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        fbtest_die("opendir /proc/self/task");
    int n = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/* fb_mount_tree_start runs the janitor at once, once; freeing the tree
 * ends it (and every other thread it started). A file read then leaves its
 * archive idle for the janitor to close. */
static void test_start_runs_the_janitor_once(void)
{
    char *tmp = setup_store();
    REQUIRE(tmp);
    int before = task_count();
    fb_mount_tree *t = open_tree(tmp, 10.0, 256 * 1024);
    REQUIRE(t);
    CHECK_EQ_INT(task_count(), before);
    fb_mount_tree_start(t);
    CHECK_EQ_INT(task_count(), before + 1);
    fb_mount_tree_start(t);
    CHECK_EQ_INT(task_count(), before + 1);
    fb_mount_attr a;
    char path[512];
    snprintf(path, sizeof path, "sess-a/%s/logs/run.log", ID_FULL);
    REQUIRE(lookup_path(t, path, &a) == 0);
    uint8_t *got = NULL;
    size_t len = 0;
    CHECK_EQ_INT(read_all(t, a.st.st_ino, &got, &len), 0);
    free(got);
    fb_mount_stats st;
    fb_mount_tree_get_stats(t, &st);
    CHECK_EQ_INT(st.idle_archives, 1);
    /* (The read may have started the prefetch thread too.) */
    fb_mount_tree_free(t);
    CHECK_EQ_INT(task_count(), before);
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
    CHECK_EQ_INT(stats.idle_archives, 0);
    fb_mount_file_close(t, f);
    fb_mount_tree_get_stats(t, &stats);
    CHECK_EQ_INT(stats.open_archives, 0);
    /* The reader stays a moment for the next open, then the janitor closes
     * it (its archive's fd with it). */
    CHECK_EQ_INT(stats.idle_archives, 1);
    REQUIRE(fb_mount_tree_open(t, a.st.st_ino, &f, &err) == 0);
    fb_mount_tree_get_stats(t, &stats);
    CHECK(stats.open_archives == 1 && stats.idle_archives == 0);
    fb_mount_file_close(t, f);
    for (int i = 0; i < 300; i++) {
        fb_mount_tree_get_stats(t, &stats);
        if (stats.idle_archives == 0)
            break;
        usleep(10000);
    }
    CHECK(stats.open_archives == 0 && stats.idle_archives == 0);
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
    snprintf(want, sizeof want, "%s|latest|latest-full|as-of|history", ID_B);
    CHECK(strcmp(names, want) == 0);

    /* A new backup appears, and latest follows it. */
    static const char ID_B2[] = "20270115T100000Z-incr-dddddd";
    REQUIRE(write_backup(tmp, "sess-b", ID_B2, 2, T0 + 7200, incr_entries, 1) == 0);
    listing(t, s.st.st_ino, names, sizeof names);
    snprintf(want, sizeof want, "%s|%s|latest|latest-full|as-of|history", ID_B, ID_B2);
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
    snprintf(want, sizeof want, "%s|latest|latest-full|as-of|history", ID_B);
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

/* ------------------------------------------------ the metadata budget */

#define BUDGET_BACKUPS 4
#define BUDGET_FILES 40
#define BUDGET_ENTRIES (BUDGET_FILES + 3)

/* BUDGET_BACKUPS full backups of one session, each "dir", its files, a
 * hardlink and a symlink; contents differ between backups. */
typedef struct budget_store {
    char *tmp;
    char ids[BUDGET_BACKUPS][FB_BACKUP_ID_LEN + 1];
    char paths[BUDGET_BACKUPS][BUDGET_FILES][32];
    spec_entry entries[BUDGET_BACKUPS][BUDGET_ENTRIES];
    uint64_t ino[BUDGET_BACKUPS][BUDGET_ENTRIES];
    fb_mount_attr attr[BUDGET_BACKUPS][BUDGET_ENTRIES];
} budget_store;

static budget_store *budget_setup(void)
{
    budget_store *bs = calloc(1, sizeof *bs);
    bs->tmp = fbtest_tempdir();
    make_root(bs->tmp);
    for (int k = 0; k < BUDGET_BACKUPS; k++) {
        snprintf(bs->ids[k], sizeof bs->ids[k], "20270115T%02d0000Z-full-%06x", 10 + k, k + 1);
        spec_entry *e = bs->entries[k];
        e[0] = (spec_entry){"dir", FB_ENTRY_DIR, 0755, 0, 0, NULL};
        for (int i = 0; i < BUDGET_FILES; i++) {
            snprintf(bs->paths[k][i], sizeof bs->paths[k][i], "dir/f%02d", i);
            e[1 + i] = (spec_entry){bs->paths[k][i], FB_ENTRY_FILE, 0640,
                                    (size_t)(100 + 37 * i + 5 * k), (uint64_t)(1000 * k + i),
                                    NULL};
        }
        e[1 + BUDGET_FILES] = (spec_entry){"dir/hl", FB_ENTRY_HARDLINK, 0640, 0, 0, "dir/f00"};
        e[2 + BUDGET_FILES] = (spec_entry){"ln", FB_ENTRY_SYMLINK, 0777, 0, 0, "dir/f01"};
        if (write_backup(bs->tmp, "sess-m", bs->ids[k], (uint64_t)k + 1, T0 + 3600 * k, e,
                         BUDGET_ENTRIES) != 0) {
            fbtest_rmtree(bs->tmp); /* frees the path too */
            free(bs);
            return NULL;
        }
    }
    return bs;
}

static void budget_free(budget_store *bs)
{
    fbtest_rmtree(bs->tmp);
    free(bs);
}

static fb_mount_tree *open_budget_tree(const budget_store *bs, uint64_t meta_bytes)
{
    fb_mount_options o = {.cache_bytes = 1 << 20, .live_seconds = 10.0,
                          .meta_cache_bytes = meta_bytes};
    return open_tree_with(bs->tmp, &o);
}

/* The bytes entry i of backup k must read as (a hardlink reads its file's). */
static bool budget_bytes_ok(const budget_store *bs, fb_mount_tree *t, int k, int i, uint64_t ino)
{
    const spec_entry *e = &bs->entries[k][i];
    if (e->type == FB_ENTRY_HARDLINK)
        e = &bs->entries[k][1];
    uint8_t *got = NULL, *want = malloc(e->size + 1);
    size_t len = 0;
    content_of(e, want);
    bool ok = read_all(t, ino, &got, &len) == 0 && len == e->size &&
              memcmp(got, want, len) == 0;
    free(got);
    free(want);
    return ok;
}

static bool same_attr(const fb_mount_attr *a, const fb_mount_attr *b)
{
    const struct stat *x = &a->st, *y = &b->st;
    return x->st_ino == y->st_ino && x->st_mode == y->st_mode && x->st_nlink == y->st_nlink &&
           x->st_uid == y->st_uid && x->st_gid == y->st_gid && x->st_size == y->st_size &&
           x->st_mtim.tv_sec == y->st_mtim.tv_sec && x->st_mtim.tv_nsec == y->st_mtim.tv_nsec;
}

/* Looks every entry of backup k up by path (the kernel then holds them),
 * checking file bytes; records inode numbers and attributes in bs. */
static int budget_walk(budget_store *bs, fb_mount_tree *t, int k)
{
    int failures = 0;
    for (int i = 0; i < BUDGET_ENTRIES; i++) {
        char path[256];
        snprintf(path, sizeof path, "sess-m/%s/%s", bs->ids[k], bs->entries[k][i].path);
        fb_mount_attr *a = &bs->attr[k][i];
        if (lookup_path(t, path, a) != 0) {
            failures++;
            continue;
        }
        bs->ino[k][i] = a->st.st_ino;
        fb_entry_type ty = bs->entries[k][i].type;
        if ((ty == FB_ENTRY_FILE || ty == FB_ENTRY_HARDLINK) &&
            !budget_bytes_ok(bs, t, k, i, a->st.st_ino))
            failures++;
    }
    return failures;
}

/* A budget of one byte keeps only the backup in use: every other one is
 * evicted although the kernel still holds its inodes, and comes back with
 * the same numbers, attributes and bytes. */
static void test_budget_evicts_and_reloads(void)
{
    budget_store *bs = budget_setup();
    REQUIRE(bs);
    fb_mount_tree *t = open_budget_tree(bs, 1);
    REQUIRE(t);
    for (int k = 0; k < BUDGET_BACKUPS; k++)
        CHECK_EQ_INT(budget_walk(bs, t, k), 0);
    fb_mount_stats st;
    fb_mount_tree_get_stats(t, &st);
    CHECK_EQ_INT(st.loaded_manifests, 1);
    CHECK_EQ_INT(st.meta_loads, BUDGET_BACKUPS);
    CHECK_EQ_INT(st.meta_evictions, BUDGET_BACKUPS - 1);
    CHECK(st.meta_bytes > BUDGET_ENTRIES * 64 && st.meta_bytes_peak >= st.meta_bytes);
    /* Numbers the kernel kept, used without a new lookup. */
    fb_error err;
    for (int k = 0; k < BUDGET_BACKUPS; k++) {
        for (int i = 0; i < BUDGET_ENTRIES; i++) {
            fb_mount_attr a;
            CHECK_EQ_INT(fb_mount_tree_getattr(t, bs->ino[k][i], &a, &err), 0);
            CHECK(same_attr(&a, &bs->attr[k][i]));
            if (bs->entries[k][i].type == FB_ENTRY_FILE)
                CHECK(budget_bytes_ok(bs, t, k, i, bs->ino[k][i]));
        }
        /* Using the next backup evicts this one before each request. */
        uint64_t next_dir = bs->ino[(k + 1) % BUDGET_BACKUPS][0];
        fb_mount_attr other;
        char *target = NULL;
        CHECK_EQ_INT(fb_mount_tree_getattr(t, next_dir, &other, &err), 0);
        CHECK_EQ_INT(fb_mount_tree_readlink(t, bs->ino[k][BUDGET_ENTRIES - 1], &target, &err), 0);
        CHECK(target && strcmp(target, "dir/f01") == 0);
        free(target);
        char names[4096];
        CHECK_EQ_INT(fb_mount_tree_getattr(t, next_dir, &other, &err), 0);
        listing(t, bs->ino[k][0], names, sizeof names);
        CHECK(strncmp(names, "f00|f01|", 8) == 0 && strstr(names, "|hl") != NULL);
    }
    for (int k = 0; k < BUDGET_BACKUPS; k++)
        CHECK_EQ_INT(budget_walk(bs, t, k), 0); /* lookups by name: the same numbers */
    fb_mount_tree_get_stats(t, &st);
    CHECK_EQ_INT(st.loaded_manifests, 1);
    CHECK(st.meta_loads >= 3 * BUDGET_BACKUPS);
    uint64_t first[BUDGET_BACKUPS][BUDGET_ENTRIES];
    memcpy(first, bs->ino, sizeof first);
    fb_mount_tree_free(t);

    /* Without a bound nothing is evicted, and the numbering is the same. */
    t = open_budget_tree(bs, 0);
    REQUIRE(t);
    for (int k = 0; k < BUDGET_BACKUPS; k++)
        CHECK_EQ_INT(budget_walk(bs, t, k), 0);
    CHECK(memcmp(first, bs->ino, sizeof first) == 0);
    fb_mount_tree_get_stats(t, &st);
    CHECK_EQ_INT(st.loaded_manifests, BUDGET_BACKUPS);
    CHECK_EQ_INT(st.meta_evictions, 0);
    fb_mount_tree_free(t);
    budget_free(bs);
}

/* An open file or directory handle keeps its backup loaded; once closed,
 * the backup is evicted by the next load and its file reads the same. */
static void test_budget_open_handles_pin(void)
{
    budget_store *bs = budget_setup();
    REQUIRE(bs);
    fb_mount_tree *t = open_budget_tree(bs, 1);
    REQUIRE(t);
    CHECK_EQ_INT(budget_walk(bs, t, 0), 0);
    CHECK_EQ_INT(budget_walk(bs, t, 1), 0);
    fb_error err;
    fb_mount_file *f = NULL;
    fb_mount_dir *d = NULL;
    REQUIRE(fb_mount_tree_open(t, bs->ino[0][5], &f, &err) == 0);
    REQUIRE(fb_mount_tree_opendir(t, bs->ino[1][0], &d, &err) == 0);
    CHECK_EQ_INT(budget_walk(bs, t, 2), 0);
    CHECK_EQ_INT(budget_walk(bs, t, 3), 0);
    fb_mount_stats st;
    fb_mount_tree_get_stats(t, &st);
    CHECK_EQ_INT(st.loaded_manifests, 3); /* 0 (file), 1 (dir handle), 3 (in use) */
    const spec_entry *e = &bs->entries[0][5];
    uint8_t want[4096], buf[4096];
    content_of(e, want);
    size_t got = 0;
    CHECK_EQ_INT(fb_mount_file_read(f, buf, sizeof buf, 0, &got, &err), 0);
    CHECK(got == e->size && memcmp(buf, want, got) == 0);
    const char *name;
    uint64_t ino;
    uint32_t mode;
    CHECK(fb_mount_dir_get(d, 2, &name, &ino, &mode) && strcmp(name, "f00") == 0);
    CHECK_EQ_INT(ino, bs->ino[1][1]);
    fb_mount_file_close(t, f);
    fb_mount_dir_close(t, d);
    CHECK_EQ_INT(budget_walk(bs, t, 2), 0);
    fb_mount_tree_get_stats(t, &st);
    CHECK_EQ_INT(st.loaded_manifests, 1);
    CHECK(budget_bytes_ok(bs, t, 0, 5, bs->ino[0][5]));
    fb_mount_tree_free(t);
    budget_free(bs);
}

/* A file kept for reads without an open (fb_mount_tree_file_get) does not
 * hold its backup's contents: the next load evicts them, and the kept file
 * reads on from its archive. */
static void test_budget_kept_file_does_not_pin(void)
{
    budget_store *bs = budget_setup();
    REQUIRE(bs);
    fb_mount_tree *t = open_budget_tree(bs, 1);
    REQUIRE(t);
    CHECK_EQ_INT(budget_walk(bs, t, 0), 0);
    fb_error err;
    fb_mount_file *f = NULL;
    REQUIRE(fb_mount_tree_file_get(t, bs->ino[0][5], &f, &err) == 0);
    CHECK_EQ_INT(budget_walk(bs, t, 2), 0);
    fb_mount_stats st;
    fb_mount_tree_get_stats(t, &st);
    CHECK_EQ_INT(st.loaded_manifests, 1);
    CHECK_EQ_INT(st.kept_files, 1);
    const spec_entry *e = &bs->entries[0][5];
    uint8_t want[4096], buf[4096];
    content_of(e, want);
    size_t got = 0;
    CHECK_EQ_INT(fb_mount_file_read(f, buf, sizeof buf, 0, &got, &err), 0);
    CHECK(got == e->size && memcmp(buf, want, got) == 0);
    fb_mount_file_put(t, f);
    fb_mount_tree_free(t);
    budget_free(bs);
}

typedef struct budget_ctx {
    budget_store *bs;
    fb_mount_tree *t;
    int k;
    int failures;
} budget_ctx;

/* Reads, stats and looks up entries of its backup and the next one, so
 * that loads, evictions and uses of the same backups interleave. */
static void *budget_thread(void *arg)
{
    budget_ctx *c = arg;
    uint64_t s = 77 + (uint64_t)c->k;
    fb_error err;
    for (int n = 0; n < 120; n++) {
        int k = (c->k + (int)(fbtest_rand(&s) % 2)) % BUDGET_BACKUPS;
        int i = 1 + (int)(fbtest_rand(&s) % (BUDGET_FILES + 1));
        fb_mount_attr a;
        if (fb_mount_tree_getattr(c->t, c->bs->ino[k][i], &a, &err) != 0 ||
            !same_attr(&a, &c->bs->attr[k][i]))
            c->failures++;
        if (!budget_bytes_ok(c->bs, c->t, k, i, c->bs->ino[k][i]))
            c->failures++;
        if (n % 8 == 0) {
            if (fb_mount_tree_lookup(c->t, c->bs->ino[k][0], "f03", &a, &err) != 0 ||
                a.st.st_ino != c->bs->ino[k][4])
                c->failures++;
            else
                fb_mount_tree_forget(c->t, a.st.st_ino, 1);
        }
    }
    return NULL;
}

static void test_budget_threads(void)
{
    budget_store *bs = budget_setup();
    REQUIRE(bs);
    fb_mount_tree *t = open_budget_tree(bs, 1);
    REQUIRE(t);
    for (int k = 0; k < BUDGET_BACKUPS; k++)
        CHECK_EQ_INT(budget_walk(bs, t, k), 0);
    pthread_t th[8];
    budget_ctx ctx[8];
    for (int i = 0; i < 8; i++) {
        ctx[i] = (budget_ctx){bs, t, i % BUDGET_BACKUPS, 0};
        pthread_create(&th[i], NULL, budget_thread, &ctx[i]);
    }
    int failures = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        failures += ctx[i].failures;
    }
    CHECK_EQ_INT(failures, 0);
    fb_mount_stats st;
    fb_mount_tree_get_stats(t, &st);
    /* How many loads the threads caused depends on timing; every load is
     * either still loaded or was evicted (the kernel forgot nothing). */
    CHECK(st.meta_evictions >= BUDGET_BACKUPS - 1);
    CHECK_EQ_INT(st.meta_loads, st.meta_evictions + st.loaded_manifests);
    CHECK_EQ_INT(st.open_archives, 0);
    fb_mount_tree_free(t);
    budget_free(bs);
}

/* A manifest not in tree order (a hand-edited or older one: readers accept
 * any valid layout) lists the same as one in order: the children of each
 * directory are sorted where the writer's order does not already have them
 * sorted. */
static void test_entries_out_of_order(void)
{
    char *tmp = setup_store();
    REQUIRE(tmp);
    static const spec_entry shuffled[] = {
        {"zeta.json", FB_ENTRY_FILE, 0644, 10, 21, NULL},
        {"alpha/b.json", FB_ENTRY_FILE, 0644, 11, 22, NULL},
        {"alpha/a.json", FB_ENTRY_FILE, 0644, 12, 23, NULL},
        {"beta.json", FB_ENTRY_FILE, 0644, 13, 24, NULL},
        {"alpha/c/d.json", FB_ENTRY_FILE, 0644, 14, 25, NULL},
        {"alpha", FB_ENTRY_DIR, 0755, 0, 0, NULL},
        {"Alpha.json", FB_ENTRY_FILE, 0644, 15, 26, NULL},
    };
    REQUIRE(write_backup(tmp, "sess-r", ID_FULL, 1, T0, shuffled,
                         sizeof shuffled / sizeof shuffled[0]) == 0);
    fb_mount_tree *t = open_tree(tmp, 10.0, 1 << 20);
    REQUIRE(t);
    char names[4096], path[512];
    fb_mount_attr a;
    snprintf(path, sizeof path, "sess-r/%s", ID_FULL);
    REQUIRE(lookup_path(t, path, &a) == 0);
    listing(t, a.st.st_ino, names, sizeof names);
    CHECK(strcmp(names, "Alpha.json|alpha|beta.json|zeta.json") == 0);
    snprintf(path, sizeof path, "sess-r/%s/alpha", ID_FULL);
    REQUIRE(lookup_path(t, path, &a) == 0);
    listing(t, a.st.st_ino, names, sizeof names);
    CHECK(strcmp(names, "a.json|b.json|c") == 0);
    snprintf(path, sizeof path, "sess-r/%s/alpha/c/d.json", ID_FULL);
    CHECK_EQ_INT(lookup_path(t, path, &a), 0);
    CHECK_EQ_INT(a.st.st_size, 14);
    fb_mount_tree_free(t);
    fbtest_rmtree(tmp);
}

/* Listing, mode, size and link count of everything below path in t and
 * in u, which must agree (inode numbers aside). */
static void same_tree(fb_mount_tree *t, fb_mount_tree *u, const char *tp, const char *up)
{
    fb_mount_attr a, b;
    REQUIRE(lookup_path(t, tp, &a) == 0 && lookup_path(u, up, &b) == 0);
    CHECK_EQ_INT(a.st.st_mode, b.st.st_mode);
    CHECK_EQ_INT(a.st.st_size, b.st.st_size);
    CHECK_EQ_INT(a.st.st_nlink, b.st.st_nlink);
    if (!S_ISDIR(a.st.st_mode))
        return;
    char la[4096], lb[4096];
    listing(t, a.st.st_ino, la, sizeof la);
    listing(u, b.st.st_ino, lb, sizeof lb);
    CHECK(strcmp(la, lb) == 0);
    for (char *save = NULL, *nm = strtok_r(la, "|", &save); nm; nm = strtok_r(NULL, "|", &save)) {
        char ct[1024], cu[1024];
        snprintf(ct, sizeof ct, "%s/%s", tp, nm);
        snprintf(cu, sizeof cu, "%s/%s", up, nm);
        same_tree(t, u, ct, cu);
    }
}

/* A manifest in tree order with every parent listed (what the writer
 * writes) is built without hashing (mount_contents.c); the same entries
 * in another order, or with a parent left implied, go the general way.
 * All three show the same tree. */
static void test_tree_order_builds_as_any_order(void)
{
    char *tmp = fbtest_tempdir();
    make_root(tmp);
    static const spec_entry ordered[] = {
        {"a", FB_ENTRY_DIR, 0755, 0, 0, NULL},
        {"a/b", FB_ENTRY_DIR, 0750, 0, 0, NULL},
        {"a/b/f.txt", FB_ENTRY_FILE, 0644, 100, 1, NULL},
        {"a/b/h.txt", FB_ENTRY_HARDLINK, 0644, 100, 1, "a/b/f.txt"},
        {"a/l", FB_ENTRY_SYMLINK, 0777, 0, 0, "b/f.txt"},
        {"a-b", FB_ENTRY_FILE, 0600, 20, 2, NULL},
        {"z", FB_ENTRY_DIR, 0700, 0, 0, NULL},
    };
    /* Hardlinks still follow their file (a rule of manifests). */
    static const spec_entry shuffled[] = {
        {"z", FB_ENTRY_DIR, 0700, 0, 0, NULL},
        {"a-b", FB_ENTRY_FILE, 0600, 20, 2, NULL},
        {"a/b/f.txt", FB_ENTRY_FILE, 0644, 100, 1, NULL},
        {"a", FB_ENTRY_DIR, 0755, 0, 0, NULL},
        {"a/l", FB_ENTRY_SYMLINK, 0777, 0, 0, "b/f.txt"},
        {"a/b", FB_ENTRY_DIR, 0750, 0, 0, NULL},
        {"a/b/h.txt", FB_ENTRY_HARDLINK, 0644, 100, 1, "a/b/f.txt"},
    };
    /* Tree order, but a/b implied. */
    static const spec_entry implied[] = {
        {"a", FB_ENTRY_DIR, 0755, 0, 0, NULL},
        {"a/b/f.txt", FB_ENTRY_FILE, 0644, 100, 1, NULL},
        {"a/b/h.txt", FB_ENTRY_HARDLINK, 0644, 100, 1, "a/b/f.txt"},
    };
    REQUIRE(write_backup(tmp, "sess-o", ID_FULL, 1, T0, ordered, 7) == 0);
    REQUIRE(write_backup(tmp, "sess-s", ID_FULL, 1, T0, shuffled, 7) == 0);
    REQUIRE(write_backup(tmp, "sess-i", ID_FULL, 1, T0, implied, 3) == 0);
    fb_mount_tree *t = open_tree(tmp, 10.0, 1 << 20);
    REQUIRE(t);
    char po[128], ps[128], pi[128];
    snprintf(po, sizeof po, "sess-o/%s", ID_FULL);
    snprintf(ps, sizeof ps, "sess-s/%s", ID_FULL);
    snprintf(pi, sizeof pi, "sess-i/%s", ID_FULL);
    same_tree(t, t, po, ps);
    fb_mount_attr a;
    char names[256], path[256];
    REQUIRE(lookup_path(t, po, &a) == 0);
    listing(t, a.st.st_ino, names, sizeof names);
    CHECK(strcmp(names, "a|a-b|z") == 0);
    /* The file and its hardlink: one inode, two links. */
    fb_mount_attr f, h;
    snprintf(path, sizeof path, "%s/a/b/f.txt", po);
    REQUIRE(lookup_path(t, path, &f) == 0);
    snprintf(path, sizeof path, "%s/a/b/h.txt", po);
    REQUIRE(lookup_path(t, path, &h) == 0);
    CHECK(f.st.st_ino == h.st.st_ino && f.st.st_nlink == 2);
    /* a: itself, its own entry in /, and b below it. */
    snprintf(path, sizeof path, "%s/a", po);
    REQUIRE(lookup_path(t, path, &a) == 0);
    CHECK_EQ_INT(a.st.st_nlink, 3);
    /* The implied a/b holds the same two names, one file. */
    snprintf(path, sizeof path, "%s/a/b", pi);
    REQUIRE(lookup_path(t, path, &a) == 0);
    listing(t, a.st.st_ino, names, sizeof names);
    CHECK(strcmp(names, "f.txt|h.txt") == 0);
    snprintf(path, sizeof path, "%s/a/b/h.txt", pi);
    REQUIRE(lookup_path(t, path, &h) == 0);
    CHECK_EQ_INT(h.st.st_nlink, 2);
    uint8_t *got = NULL;
    size_t len = 0;
    CHECK_EQ_INT(read_all(t, h.st.st_ino, &got, &len), 0);
    uint8_t want[100];
    content_of(&ordered[2], want);
    CHECK(len == 100 && memcmp(got, want, 100) == 0);
    free(got);
    fb_mount_tree_free(t);
    fbtest_rmtree(tmp);
}

typedef struct cache_warnings {
    int count;
    char last[FB_ERROR_MESSAGE_MAX];
} cache_warnings;

static void note_warning(void *ctx, const char *message)
{
    cache_warnings *w = ctx;
    w->count++;
    snprintf(w->last, sizeof w->last, "%s", message);
}

/* A tree with the manifest cache in dir (NULL: none), warnings counted. */
static fb_mount_tree *open_cached_tree(const char *tmp, const char *dir, cache_warnings *w)
{
    fb_mount_options o = {.cache_bytes = 1 << 20, .live_seconds = 10.0,
                          .manifest_cache_dir = dir, .warn = note_warning, .warn_ctx = w};
    return open_tree_with(tmp, &o);
}

/* The manifest cache through the tree: a second tree (a later mount)
 * loads the backup from it, with the same listing and bytes; the history
 * view reads through it too; an unusable directory is a warning and no
 * cache; none asked, none used. */
static void test_manifest_cache_serves_later_trees(void)
{
    char *tmp = setup_store();
    REQUIRE(tmp);
    sleep(FB_MANIFEST_CACHE_SETTLE_SECONDS); /* the manifests are settled */
    usleep(200 * 1000);
    char dir[4096], path[512], names[2][4096];
    snprintf(dir, sizeof dir, "%s/cache", tmp);
    snprintf(path, sizeof path, "sess-a/%s/artifacts/big.bin", ID_FULL);
    uint8_t *bytes[2] = {NULL, NULL};
    size_t len[2] = {0, 0};
    fb_mount_stats st[2];
    for (int k = 0; k < 2; k++) {
        cache_warnings w = {0};
        fb_mount_tree *t = open_cached_tree(tmp, dir, &w);
        REQUIRE(t);
        fb_mount_attr a;
        char top[512];
        snprintf(top, sizeof top, "sess-a/%s", ID_FULL);
        REQUIRE(lookup_path(t, top, &a) == 0);
        listing(t, a.st.st_ino, names[k], sizeof names[k]);
        REQUIRE(lookup_path(t, path, &a) == 0);
        CHECK_EQ_INT(read_all(t, a.st.st_ino, &bytes[k], &len[k]), 0);
        CHECK_EQ_INT(w.count, 0);
        fb_mount_tree_get_stats(t, &st[k]);
        fb_mount_tree_free(t);
    }
    CHECK(st[0].manifest_cache_hits == 0 && st[0].manifest_cache_misses == 1);
    CHECK(st[1].manifest_cache_hits == 1 && st[1].manifest_cache_misses == 0);
    CHECK(strcmp(names[0], names[1]) == 0 && strstr(names[0], "artifacts") != NULL);
    CHECK(len[0] == 200000 && len[1] == len[0] && memcmp(bytes[0], bytes[1], len[0]) == 0);
    free(bytes[0]);
    free(bytes[1]);

    /* history/ loads every backup's manifest: the two of sess-a. */
    cache_warnings w = {0};
    fb_mount_tree *t = open_cached_tree(tmp, dir, &w);
    REQUIRE(t);
    fb_mount_attr a;
    REQUIRE(lookup_path(t, "sess-a/history/state.json", &a) == 0);
    fb_mount_stats hs;
    fb_mount_tree_get_stats(t, &hs);
    CHECK(hs.manifest_cache_hits == 1 && hs.manifest_cache_misses == 1);
    fb_mount_tree_free(t);

    /* Others may write into it: a warning, and the tree goes on without. */
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/manifests", dir);
    REQUIRE(chmod(sub, 0777) == 0);
    t = open_cached_tree(tmp, dir, &w);
    REQUIRE(t);
    CHECK_EQ_INT(w.count, 1);
    CHECK(strstr(w.last, "not private") != NULL);
    REQUIRE(lookup_path(t, path, &a) == 0);
    fb_mount_tree_get_stats(t, &hs);
    CHECK(hs.manifest_cache_hits == 0 && hs.manifest_cache_misses == 0);
    fb_mount_tree_free(t);
    fbtest_rmtree(tmp);
}

int main(void)
{
    RUN_TEST(test_store_root_and_mountpoint);
    RUN_TEST(test_tree_shape);
    RUN_TEST(test_entries_out_of_order);
    RUN_TEST(test_tree_order_builds_as_any_order);
    RUN_TEST(test_reads);
    RUN_TEST(test_start_runs_the_janitor_once);
    RUN_TEST(test_live_changes_and_forget);
    RUN_TEST(test_corruption);
    RUN_TEST(test_concurrent_reads);
    RUN_TEST(test_free_with_open_handles);
    RUN_TEST(test_budget_evicts_and_reloads);
    RUN_TEST(test_budget_open_handles_pin);
    RUN_TEST(test_budget_kept_file_does_not_pin);
    RUN_TEST(test_budget_threads);
    RUN_TEST(test_manifest_cache_serves_later_trees);
    FBTEST_EXIT();
}
