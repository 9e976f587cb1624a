/* Tests of the file-system helpers: atomic replace without leftovers and
 * with the old content kept on every failure, reads that refuse symlinks,
 * FIFOs and oversized files, and a tree removal that never follows a
 * symlink out of the tree and copes with deep trees on few fds. */
#include <dirent.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "fb_fsutil.h"
#include "fbtest.h"

static int open_dir(const char *path)
{
    return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (write(fd, text, strlen(text)) < 0)
            perror("write");
        close(fd);
    }
}

/* Reads dir/name into buf (NUL-terminated); returns the length or -1. */
static long read_text(const char *dir, const char *name, char *buf, size_t size)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return n;
}

static int count_prefix(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d)
        return -1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
    return n;
}

static bool exists_nofollow(const char *dir, const char *name)
{
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return lstat(path, &st) == 0;
}

static void test_atomic_write_replaces(void)
{
    char *dir = fbtest_tempdir();
    int dfd = open_dir(dir);
    fb_error err;
    char buf[64];
    CHECK_EQ_INT(fb_atomic_write_at(dfd, dir, "index.json", "first\n", 6, &err), 0);
    CHECK_EQ_INT(read_text(dir, "index.json", buf, sizeof buf), 6);
    CHECK(strcmp(buf, "first\n") == 0);
    CHECK_EQ_INT(fb_atomic_write_at(dfd, dir, "index.json", "second!", 7, &err), 0);
    CHECK_EQ_INT(read_text(dir, "index.json", buf, sizeof buf), 7);
    CHECK(strcmp(buf, "second!") == 0);
    /* empty content is a valid file too */
    CHECK_EQ_INT(fb_atomic_write_at(dfd, dir, "empty", "", 0, &err), 0);
    CHECK_EQ_INT(read_text(dir, "empty", buf, sizeof buf), 0);
    CHECK_EQ_INT(count_prefix(dir, ".tmp-"), 0);
    struct stat st;
    char path[4200];
    snprintf(path, sizeof path, "%s/index.json", dir);
    REQUIRE(stat(path, &st) == 0);
    CHECK_EQ_INT(st.st_mode & 07777, 0600);
    close(dfd);
    fbtest_rmtree(dir);
}

/* The directory behind dirfd is gone: no temp file can be created, the
 * call fails and says which file. */
static void test_atomic_write_dir_removed(void)
{
    char *dir = fbtest_tempdir();
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/gone", dir);
    REQUIRE(mkdir(sub, 0700) == 0);
    int dfd = open_dir(sub);
    REQUIRE(dfd >= 0);
    REQUIRE(rmdir(sub) == 0);
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_atomic_write_at(dfd, "gone", "index.json", "x", 1, &err);
    CHECK(rc < 0);
    CHECK(err.code == rc);
    CHECK(strstr(err.message, "gone/index.json") != NULL);
    close(dfd);
    fbtest_rmtree(dir);
}

/* The final name is a directory: the rename fails, the directory and its
 * content survive, and the temp file is removed. */
static void test_atomic_write_onto_directory(void)
{
    char *dir = fbtest_tempdir();
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/index.json", dir);
    REQUIRE(mkdir(sub, 0700) == 0);
    write_text(sub, "keep", "precious");
    int dfd = open_dir(dir);
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_atomic_write_at(dfd, dir, "index.json", "new", 3, &err);
    CHECK_EQ_INT(rc, FB_EIO);
    CHECK(strstr(err.message, "index.json") != NULL);
    CHECK(err.sys_errno == EISDIR || err.sys_errno == ENOTEMPTY || err.sys_errno == EEXIST);
    struct stat st;
    CHECK(stat(sub, &st) == 0 && S_ISDIR(st.st_mode));
    char buf[32];
    CHECK_EQ_INT(read_text(sub, "keep", buf, sizeof buf), 8);
    CHECK_EQ_INT(count_prefix(dir, ".tmp-"), 0);
    close(dfd);
    fbtest_rmtree(dir);
}

/* An existing file keeps its old bytes when the write cannot complete:
 * RLIMIT_FSIZE makes write() fail with EFBIG half-way through the temp. */
static void test_atomic_write_keeps_old_on_error(void)
{
    char *dir = fbtest_tempdir();
    write_text(dir, "index.json", "old content");
    int dfd = open_dir(dir);
    fb_error err;
    fb_error_clear(&err);
    /* A name with a slash is refused before anything is created. */
    CHECK_EQ_INT(fb_atomic_write_at(dfd, dir, "a/index.json", "x", 1, &err), FB_EMISUSE);

    struct rlimit old, small;
    REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
    small = old;
    small.rlim_cur = 4096;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
    static uint8_t big[20000];
    fbtest_fill(big, sizeof big, 3, 1);
    int rc = fb_atomic_write_at(dfd, dir, "index.json", big, sizeof big, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    CHECK_EQ_INT(rc, FB_EIO);
    CHECK_EQ_INT(err.sys_errno, EFBIG);
    CHECK(strstr(err.message, "index.json") != NULL);

    char buf[32];
    CHECK_EQ_INT(read_text(dir, "index.json", buf, sizeof buf), 11);
    CHECK(strcmp(buf, "old content") == 0);
    CHECK_EQ_INT(count_prefix(dir, ".tmp-"), 0);
    close(dfd);
    fbtest_rmtree(dir);
}

static void test_read_file_at(void)
{
    char *dir = fbtest_tempdir();
    int dfd = open_dir(dir);
    fb_error err;
    char *data = NULL;
    size_t len = 99;
    write_text(dir, "a.json", "{\"k\":1}");
    REQUIRE(fb_read_file_at(dfd, "D", "a.json", 100, &data, &len, &err) == 0);
    CHECK_EQ_INT(len, 7);
    CHECK(memcmp(data, "{\"k\":1}", 8) == 0); /* NUL-terminated */
    free(data);

    /* exactly at the cap is fine, one byte over is corrupt */
    CHECK_EQ_INT(fb_read_file_at(dfd, "D", "a.json", 7, &data, &len, &err), 0);
    free(data);
    CHECK_EQ_INT(fb_read_file_at(dfd, "D", "a.json", 6, &data, &len, &err), FB_ECORRUPT);
    CHECK(data == NULL);
    CHECK(strstr(err.message, "D/a.json") != NULL);

    CHECK_EQ_INT(fb_read_file_at(dfd, "D", "missing", 100, &data, &len, &err), FB_ENOTFOUND);
    CHECK(strstr(err.message, "D/missing") != NULL);

    char path[4200];
    snprintf(path, sizeof path, "%s/link", dir);
    REQUIRE(symlink("a.json", path) == 0);
    CHECK_EQ_INT(fb_read_file_at(dfd, "D", "link", 100, &data, &len, &err), FB_ECORRUPT);
    CHECK(strstr(err.message, "symlink") != NULL);

    /* A FIFO must neither block nor be read. */
    snprintf(path, sizeof path, "%s/fifo", dir);
    REQUIRE(mkfifo(path, 0600) == 0);
    CHECK_EQ_INT(fb_read_file_at(dfd, "D", "fifo", 100, &data, &len, &err), FB_ECORRUPT);
    CHECK(strstr(err.message, "not a regular file") != NULL);

    snprintf(path, sizeof path, "%s/subdir", dir);
    REQUIRE(mkdir(path, 0700) == 0);
    CHECK_EQ_INT(fb_read_file_at(dfd, "D", "subdir", 100, &data, &len, &err), FB_ECORRUPT);
    close(dfd);
    fbtest_rmtree(dir);
}

static void test_write_and_pread_all(void)
{
    char *dir = fbtest_tempdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/f", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    uint8_t data[100000], back[100000];
    fbtest_fill(data, sizeof data, 7, 0);
    CHECK_EQ_INT(fb_write_all(fd, data, sizeof data), 0);
    memset(back, 0, sizeof back);
    CHECK(pread(fd, back, 5000, 1000) == 5000 && memcmp(back, data + 1000, 5000) == 0);
    close(fd);
    /* A failure is the errno itself, positive: never one of the FB_E*
     * codes (-EBADF would read as one). */
    CHECK_EQ_INT(fb_write_all(fd, data, 10), EBADF);
    fbtest_rmtree(dir);
}

static void test_remove_tree_never_follows_symlinks(void)
{
    char *dir = fbtest_tempdir();
    char outside[4200], tree[4200], path[4300];
    snprintf(outside, sizeof outside, "%s/outside", dir);
    snprintf(tree, sizeof tree, "%s/.trash-x", dir);
    REQUIRE(mkdir(outside, 0700) == 0);
    write_text(outside, "keep", "must survive");
    REQUIRE(mkdir(tree, 0700) == 0);
    snprintf(path, sizeof path, "%s/a", tree);
    REQUIRE(mkdir(path, 0700) == 0);
    snprintf(path, sizeof path, "%s/a/b", tree);
    REQUIRE(mkdir(path, 0700) == 0);
    write_text(path, "f1", "one");
    write_text(tree, "f2", "two");
    snprintf(path, sizeof path, "%s/linkdir", tree);
    REQUIRE(symlink(outside, path) == 0);
    snprintf(path, sizeof path, "%s/a/b/linkfile", tree);
    char target[4300];
    snprintf(target, sizeof target, "%s/keep", outside);
    REQUIRE(symlink(target, path) == 0);
    snprintf(path, sizeof path, "%s/a/c", tree);
    REQUIRE(mkdir(path, 0700) == 0);
    write_text(path, "x", "x");

    int dfd = open_dir(dir);
    fb_error err;
    CHECK_EQ_INT(fb_remove_tree_at(dfd, dir, ".trash-x", &err), 0);
    CHECK(!exists_nofollow(dir, ".trash-x"));
    char buf[64];
    CHECK_EQ_INT(read_text(outside, "keep", buf, sizeof buf), 12);
    CHECK(strcmp(buf, "must survive") == 0);

    /* the name itself being a symlink to a directory: only the link goes */
    REQUIRE(symlink(outside, tree) == 0);
    CHECK_EQ_INT(fb_remove_tree_at(dfd, dir, ".trash-x", &err), 0);
    CHECK(!exists_nofollow(dir, ".trash-x"));
    CHECK_EQ_INT(read_text(outside, "keep", buf, sizeof buf), 12);

    /* missing is fine, a plain file is removed */
    CHECK_EQ_INT(fb_remove_tree_at(dfd, dir, "nothing-here", &err), 0);
    write_text(dir, "plain", "p");
    CHECK_EQ_INT(fb_remove_tree_at(dfd, dir, "plain", &err), 0);
    CHECK(!exists_nofollow(dir, "plain"));
    close(dfd);
    fbtest_rmtree(dir);
}

/* 300 levels with only 40 fds allowed: the walk must not hold one fd per
 * level. */
static void test_remove_tree_deep(void)
{
    char *dir = fbtest_tempdir();
    int dfd = open_dir(dir);
    REQUIRE(mkdirat(dfd, "deep", 0700) == 0);
    int cur = openat(dfd, "deep", O_RDONLY | O_DIRECTORY);
    for (int i = 0; i < 300 && cur >= 0; i++) {
        int f = openat(cur, "file", O_WRONLY | O_CREAT, 0600);
        if (f >= 0)
            close(f);
        if (mkdirat(cur, "d", 0700) != 0)
            break;
        int next = openat(cur, "d", O_RDONLY | O_DIRECTORY);
        close(cur);
        cur = next;
    }
    REQUIRE(cur >= 0);
    close(cur);
    struct rlimit old, low;
    REQUIRE(getrlimit(RLIMIT_NOFILE, &old) == 0);
    low = old;
    low.rlim_cur = 40;
    REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_remove_tree_at(dfd, dir, "deep", &err);
    setrlimit(RLIMIT_NOFILE, &old);
    CHECK_EQ_INT(rc, 0);
    if (rc)
        fprintf(stderr, "  %s\n", err.message);
    CHECK(!exists_nofollow(dir, "deep"));
    close(dfd);
    fbtest_rmtree(dir);
}

/* A restored tree may carry modes that deny its owner (0555, 0000); the
 * removal still succeeds. Meaningful when run unprivileged (root bypasses
 * the permission checks). */
static void test_remove_tree_restrictive_modes(void)
{
    char *dir = fbtest_tempdir();
    int dfd = open_dir(dir);
    REQUIRE(mkdirat(dfd, "t", 0700) == 0);
    REQUIRE(mkdirat(dfd, "t/ro", 0700) == 0);
    write_text(dir, "t/ro/f", "x");
    REQUIRE(mkdirat(dfd, "t/none", 0700) == 0);
    write_text(dir, "t/none/g", "y");
    REQUIRE(mkdirat(dfd, "t/rx", 0700) == 0);
    REQUIRE(mkdirat(dfd, "t/rx/inner", 0700) == 0);
    write_text(dir, "t/rx/inner/h", "z");
    REQUIRE(fchmodat(dfd, "t/ro", 0400, 0) == 0);
    REQUIRE(fchmodat(dfd, "t/none", 0000, 0) == 0);
    REQUIRE(fchmodat(dfd, "t/rx", 0500, 0) == 0);
    REQUIRE(fchmodat(dfd, "t", 0500, 0) == 0);
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_remove_tree_at(dfd, dir, "t", &err);
    CHECK_EQ_INT(rc, 0);
    if (rc)
        fprintf(stderr, "  %s\n", err.message);
    CHECK(!exists_nofollow(dir, "t"));
    close(dfd);
    fbtest_rmtree(dir);
}

static void test_make_temp_dir(void)
{
    char *dir = fbtest_tempdir();
    int dfd = open_dir(dir);
    fb_error err;
    char n1[64], n2[64];
    int fd1 = -1, fd2 = -1;
    mode_t old_umask = umask(0);
    CHECK_EQ_INT(fb_make_temp_dir_at(dfd, dir, ".tmp-", n1, sizeof n1, &fd1, &err), 0);
    umask(old_umask);
    CHECK_EQ_INT(fb_make_temp_dir_at(dfd, dir, ".tmp-", n2, sizeof n2, &fd2, &err), 0);
    CHECK(strncmp(n1, ".tmp-", 5) == 0 && strlen(n1) == 5 + 16);
    CHECK(strcmp(n1, n2) != 0);
    struct stat st;
    REQUIRE(fd1 >= 0 && fstat(fd1, &st) == 0);
    CHECK(S_ISDIR(st.st_mode));
    CHECK_EQ_INT(st.st_mode & 07777, 0700);
    /* the fd is usable to create files inside */
    CHECK_EQ_INT(fb_atomic_write_at(fd1, n1, "manifest.json", "{}", 2, &err), 0);
    char sub[4200], buf[8];
    snprintf(sub, sizeof sub, "%s/%s", dir, n1);
    CHECK_EQ_INT(read_text(sub, "manifest.json", buf, sizeof buf), 2);
    /* buffer too small for prefix + 16 hex + NUL */
    CHECK_EQ_INT(fb_make_temp_dir_at(dfd, dir, ".tmp-", n1, 21, NULL, &err), FB_EMISUSE);
    close(fd1);
    close(fd2);
    close(dfd);
    fbtest_rmtree(dir);
}

static void test_path_join_and_random(void)
{
    char *p = fb_path_join("a", "b");
    CHECK(p && strcmp(p, "a/b") == 0);
    free(p);
    p = fb_path_join("/root/", ".flowloom");
    CHECK(p && strcmp(p, "/root/.flowloom") == 0);
    free(p);
    p = fb_path_join("/", "x");
    CHECK(p && strcmp(p, "/x") == 0);
    free(p);
    uint8_t a[32], b[32];
    fb_error err;
    CHECK_EQ_INT(fb_random_bytes(a, sizeof a, &err), 0);
    CHECK_EQ_INT(fb_random_bytes(b, sizeof b, &err), 0);
    CHECK(memcmp(a, b, sizeof a) != 0);
}

static void test_open_parent_beneath(void)
{
    char *dir = fbtest_tempdir();
    int root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    REQUIRE(root >= 0);
    REQUIRE(mkdirat(root, "a", 0755) == 0 && mkdirat(root, "a/b", 0755) == 0);
    REQUIRE(symlinkat("a", root, "link") == 0);
    int fd = openat(root, "file", O_WRONLY | O_CREAT, 0600);
    REQUIRE(fd >= 0);
    close(fd);
    int pfd;
    const char *base;
    size_t failed;
    CHECK_EQ_INT(fb_open_parent_beneath(root, "a/b/c.txt", false, &pfd, &base, &failed), 0);
    CHECK(pfd >= 0 && strcmp(base, "c.txt") == 0);
    struct stat st;
    CHECK(fstat(pfd, &st) == 0 && S_ISDIR(st.st_mode));
    close(pfd);
    CHECK_EQ_INT(fb_open_parent_beneath(root, "top.txt", false, &pfd, &base, &failed), 0);
    CHECK(pfd >= 0 && strcmp(base, "top.txt") == 0);
    close(pfd);
    /* never through a symlink, nor a file; missing parts; bad components */
    CHECK_EQ_INT(fb_open_parent_beneath(root, "link/b/x", false, &pfd, &base, &failed), ELOOP);
    CHECK(pfd == -1 && failed == 4);
    CHECK_EQ_INT(fb_open_parent_beneath(root, "file/x", false, &pfd, &base, &failed), ENOTDIR);
    CHECK_EQ_INT(fb_open_parent_beneath(root, "a/nope/x", false, &pfd, &base, &failed), ENOENT);
    CHECK_EQ_INT(failed, 6);
    CHECK_EQ_INT(fb_open_parent_beneath(root, "a//b/x", false, &pfd, &base, &failed), EINVAL);
    /* create makes the missing directories, private */
    CHECK_EQ_INT(fb_open_parent_beneath(root, "a/n1/n2/x", true, &pfd, &base, &failed), 0);
    close(pfd);
    CHECK(fstatat(root, "a/n1/n2", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode) &&
          (st.st_mode & 07777) == 0700);
    CHECK_EQ_INT(fb_open_parent_beneath(root, "link/n3/x", true, &pfd, &base, &failed), ELOOP);
    CHECK(fstatat(root, "a/n3", &st, AT_SYMLINK_NOFOLLOW) != 0); /* nothing made through it */
    close(root);
    fbtest_rmtree(dir);
}

int main(void)
{
    RUN_TEST(test_open_parent_beneath);
    RUN_TEST(test_atomic_write_replaces);
    RUN_TEST(test_atomic_write_dir_removed);
    RUN_TEST(test_atomic_write_onto_directory);
    RUN_TEST(test_atomic_write_keeps_old_on_error);
    RUN_TEST(test_read_file_at);
    RUN_TEST(test_write_and_pread_all);
    RUN_TEST(test_remove_tree_never_follows_symlinks);
    RUN_TEST(test_remove_tree_deep);
    RUN_TEST(test_remove_tree_restrictive_modes);
    RUN_TEST(test_make_temp_dir);
    RUN_TEST(test_path_join_and_random);
    FBTEST_EXIT();
}
