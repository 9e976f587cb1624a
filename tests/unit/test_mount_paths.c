/* Unit tests of where a mount may go and which mount umount may stop
 * (core/mount/mount_paths.c) and of the mountinfo reader under them
 * (fb_mount_find in core/base/fsutil.c). Runs unprivileged: the mount points
 * every Linux system has ("/", "/proc") stand in for "something else is
 * mounted there"; mounting a flowloom-backupfs or a tmpfs needs root and is
 * tests/fuse/test_mount_checks.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fb_fsutil.h"
#include "fb_mount_paths.h"
#include "fbtest.h"

static void test_parse_line(void)
{
    fb_mount_entry e;
    fb_error err;
    CHECK_EQ_INT(fb_mountinfo_parse_line("36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 "
                                         "shared:7 - ext3 /dev/root rw,errors=continue\n",
                                         &e, &err),
                 0);
    CHECK_EQ_INT(e.mount_id, 36);
    CHECK(strcmp(e.mount_point, "/mnt/a b") == 0);
    CHECK(strcmp(e.fstype, "ext3") == 0);
    CHECK(strcmp(e.source, "/dev/root") == 0);
    fb_mount_entry_free(&e);
    CHECK(e.mount_point == NULL);

    /* No optional fields; a FUSE type; tab, newline and backslash escaped;
     * "\000" would cut the string short and stays as written. */
    CHECK_EQ_INT(fb_mountinfo_parse_line("912 30 0:77 / /t/x\\011y\\012z\\134w\\000 ro,nosuid - "
                                         "fuse.flowloom-backupfs /r/.flowloom/backups "
                                         "ro,user_id=0",
                                         &e, &err),
                 0);
    CHECK_EQ_INT(e.mount_id, 912);
    CHECK(strcmp(e.mount_point, "/t/x\ty\nz\\w\\000") == 0);
    CHECK(strcmp(e.fstype, FB_MOUNT_FSTYPE) == 0);
    CHECK(strcmp(e.source, "/r/.flowloom/backups") == 0);
    fb_mount_entry_free(&e);

    /* "\4" is no escape (too short at the end of the field) */
    CHECK_EQ_INT(fb_mountinfo_parse_line("1 0 0:1 / /a\\4 rw - tmpfs none rw", &e, &err), 0);
    CHECK(strcmp(e.mount_point, "/a\\4") == 0);
    fb_mount_entry_free(&e);

    static const char *const bad[] = {
        "",
        "36 35 98:0 /mnt1 /mnt2 rw,noatime ext3 /dev/root rw", /* no "-" */
        "36 35 98:0 /mnt1 /mnt2 rw - ext3",                   /* no source */
        "x6 35 98:0 /mnt1 /mnt2 rw - ext3 /dev/root rw",      /* id */
        "36 35 98:0 /mnt1 - rw ext3 /dev/root",               /* "-" too early */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(fb_mountinfo_parse_line(bad[i], &e, &err), FB_ECORRUPT);
        CHECK(e.mount_point == NULL && e.fstype == NULL);
    }
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        fbtest_die(path);
}

static void test_find_in_a_mountinfo_file(void)
{
    char *dir = fbtest_tempdir();
    char mi[4200];
    snprintf(mi, sizeof mi, "%s/mountinfo", dir);
    /* Paths that do not exist, so statx cannot name a mount id and the
     * lines alone decide: the last of stacked mounts is the visible one. */
    write_text(mi, "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
                   "900001 1 0:50 / /nonexistent-fbtest/m\\040n rw - tmpfs none rw\n"
                   "900002 900001 0:51 / /nonexistent-fbtest/m\\040n ro - "
                   "fuse.flowloom-backupfs /s/.flowloom/backups ro\n"
                   "900003 1 0:52 / /nonexistent-fbtest/other rw - tmpfs t2 rw\n");
    fb_mount_entry e;
    fb_error err;
    CHECK_EQ_INT(fb_mount_find("/nonexistent-fbtest/m n", mi, &e, &err), 0);
    CHECK_EQ_INT(e.mount_id, 900002);
    CHECK(e.fstype && strcmp(e.fstype, FB_MOUNT_FSTYPE) == 0);
    fb_mount_entry_free(&e);
    CHECK_EQ_INT(fb_mount_find("/nonexistent-fbtest/other", mi, &e, &err), 0);
    CHECK(e.source && strcmp(e.source, "t2") == 0);
    fb_mount_entry_free(&e);
    /* a prefix of a mount point is not it */
    CHECK_EQ_INT(fb_mount_find("/nonexistent-fbtest/m", mi, &e, &err), FB_ENOTFOUND);
    CHECK(e.mount_point == NULL);

    /* A line the reader cannot parse is a runtime failure naming the file. */
    write_text(mi, "1 0 8:1 / / rw - ext4 /dev/sda1 rw\ngarbage\n");
    CHECK_EQ_INT(fb_mount_find("/nonexistent-fbtest/m n", mi, &e, &err), FB_EIO);
    CHECK(strstr(err.message, "line 2") != NULL);
    CHECK(strstr(err.message, mi) != NULL);
    snprintf(mi, sizeof mi, "%s/missing", dir);
    CHECK_EQ_INT(fb_mount_find("/", mi, &e, &err), FB_EIO);
    CHECK(strstr(err.message, "cannot read") != NULL);
    fbtest_rmtree(dir);
}

static void test_find_on_this_system(void)
{
    fb_mount_entry e;
    fb_error err;
    CHECK_EQ_INT(fb_mount_find("/proc", NULL, &e, &err), 0);
    CHECK(e.fstype && strcmp(e.fstype, "proc") == 0);
    fb_mount_entry_free(&e);
    CHECK_EQ_INT(fb_mount_find("/", NULL, &e, &err), 0);
    fb_mount_entry_free(&e);
    /* inside a mount, not its root: statx names /proc's mount, whose mount
     * point is not this path */
    CHECK_EQ_INT(fb_mount_find("/proc/self", NULL, &e, &err), FB_ENOTFOUND);
    char *dir = fbtest_tempdir();
    char *real = realpath(dir, NULL);
    REQUIRE(real);
    CHECK_EQ_INT(fb_mount_find(real, NULL, &e, &err), FB_ENOTFOUND);
    free(real);
    fbtest_rmtree(dir);
}

static void test_check_target(void)
{
    char *dir = fbtest_tempdir();
    char p[4200];
    fb_error err;
    CHECK_EQ_INT(fb_mount_check_target(dir, &err), 0);

    snprintf(p, sizeof p, "%s/missing", dir);
    CHECK_EQ_INT(fb_mount_check_target(p, &err), FB_EINVAL);
    CHECK(strstr(err.message, p) && strstr(err.message, "does not exist"));

    snprintf(p, sizeof p, "%s/state.json", dir);
    write_text(p, "{}\n");
    CHECK_EQ_INT(fb_mount_check_target(p, &err), FB_EINVAL);
    CHECK(strstr(err.message, p) && strstr(err.message, "is not a directory (it is a regular file)"));
    snprintf(p, sizeof p, "%s/state.json/x", dir);
    CHECK_EQ_INT(fb_mount_check_target(p, &err), FB_EINVAL);
    CHECK(strstr(err.message, "not a directory") != NULL);

    /* A symlink to a directory is that directory. */
    snprintf(p, sizeof p, "%s/link", dir);
    REQUIRE(symlink(".", p) == 0);
    CHECK_EQ_INT(fb_mount_check_target(p, &err), 0);

    CHECK_EQ_INT(fb_mount_check_target("/proc", &err), FB_EINVAL);
    CHECK(strstr(err.message, "mountpoint /proc is already a mount point: proc is mounted there") !=
          NULL);
    /* reached through a name with ".." and a trailing slash */
    CHECK_EQ_INT(fb_mount_check_target("/proc/self/../", &err), FB_EINVAL);
    CHECK(strstr(err.message, "already a mount point") != NULL);
    fbtest_rmtree(dir);
}

static void test_check_unmount(void)
{
    char *dir = fbtest_tempdir();
    char p[4200];
    fb_error err;
    char *path = (char *)"untouched";
    CHECK_EQ_INT(fb_mount_check_unmount(dir, &path, &err), FB_ENOTFOUND);
    CHECK(path == NULL);
    char want[4300];
    snprintf(want, sizeof want, "%s: not mounted", dir);
    CHECK(strcmp(err.message, want) == 0);

    snprintf(p, sizeof p, "%s/missing", dir);
    CHECK_EQ_INT(fb_mount_check_unmount(p, &path, &err), FB_ENOTFOUND);
    CHECK(strstr(err.message, "not mounted") != NULL);

    CHECK_EQ_INT(fb_mount_check_unmount("/proc", &path, &err), FB_EINVAL);
    CHECK(path == NULL);
    CHECK(strstr(err.message, "/proc: not a flowloom-backupfs mount: proc is mounted there") !=
          NULL);
    CHECK(strstr(err.message, "left mounted") != NULL);
    fbtest_rmtree(dir);
}

int main(void)
{
    RUN_TEST(test_parse_line);
    RUN_TEST(test_find_in_a_mountinfo_file);
    RUN_TEST(test_find_on_this_system);
    RUN_TEST(test_check_target);
    RUN_TEST(test_check_unmount);
    FBTEST_EXIT();
}
