/* Tests of the store: id rules (every bad id of RELIABILITY (b)), backup id
 * shape and calendar, root and current-session discovery, the session and
 * backup directory listings that ignore leftovers, junk and symlinks,
 * manifest reads bound to their directory, the index rebuild in each case
 * where the index cannot be trusted (and its write-back per flags),
 * leftover clearing, and resolving "latest" / ids. */
#include <stdbool.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "fb_lock.h"
#include "fbtest.h"
#include "store_fixture.h"

#define T0 1796094900 /* 2026-12-01T03:15:00Z */

typedef struct warnings {
    int count;
    char text[8192];
} warnings;

static void collect(void *ctx, const char *message)
{
    warnings *w = ctx;
    w->count++;
    size_t used = strlen(w->text);
    snprintf(w->text + used, sizeof w->text - used, "%s\n", message);
}

static void write_text_at(int dfd, const char *name, const char *text)
{
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (write(fd, text, strlen(text)) < 0)
            perror("write");
        close(fd);
    }
}

static void write_text(const char *path, const char *text)
{
    write_text_at(AT_FDCWD, path, text);
}

/* ---- ids ---- */

static void test_session_id_rules(void)
{
    char long129[130], long256[257], long128[129];
    memset(long129, 'a', 129);
    long129[129] = '\0';
    memset(long256, 'b', 256);
    long256[256] = '\0';
    memset(long128, 'c', 128);
    long128[128] = '\0';
    const char *bad[] = {"",     ".",       "..",     "../x",    "a/b",     "/etc",
                         "-rf",  "--help",  "a\nb",   "trail ",  long129,   long256,
                         ".hid", "a\\b",    "caf\xc3\xa9", "a b", "x\ty",   "a:b"};
    fb_error err;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fb_error_clear(&err);
        int rc = fb_session_id_check(bad[i], &err);
        CHECK_EQ_INT(rc, FB_EINVAL);
        CHECK(strncmp(err.message, "invalid session id '", 20) == 0);
        CHECK(strchr(err.message, '\n') == NULL);
    }
    CHECK_EQ_INT(fb_session_id_check(NULL, &err), FB_EINVAL);

    fb_session_id_check("../x", &err);
    CHECK(strcmp(err.message, "invalid session id '../x': only letters, digits, '.', '_' and "
                              "'-' are allowed") == 0);
    fb_session_id_check("a\nb", &err);
    CHECK(strstr(err.message, "'a\\nb'") != NULL);
    fb_session_id_check("..", &err);
    CHECK(strstr(err.message, "must not start with '.' or '-'") != NULL);
    fb_session_id_check("-rf", &err);
    CHECK(strstr(err.message, "must not start with '.' or '-'") != NULL);
    fb_session_id_check(long129, &err);
    CHECK(strstr(err.message, "longer than 128") != NULL);
    fb_session_id_check("", &err);
    CHECK(strstr(err.message, "empty") != NULL);

    const char *good[] = {"a", "session_12345_1640995200_abc123", "A.b-c_d", "9", "x.",
                          "a..b", long128};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECK_EQ_INT(fb_session_id_check(good[i], NULL), 0);
}

static void test_backup_id_rules(void)
{
    const char *good[] = {"20261201T031500Z-full-3fa9c2", "20261201T031500Z-incr-000000",
                          "20240229T235959Z-full-abcdef", "20000229T000000Z-incr-ffffff",
                          "19700101T000000Z-full-012345"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECK(fb_backup_id_is_valid(good[i]));
    const char *bad[] = {
        "",
        "latest",
        "20261301T031500Z-full-3fa9c2", /* month 13 */
        "20260230T031500Z-full-3fa9c2", /* Feb 30 */
        "20230229T031500Z-full-3fa9c2", /* not a leap year */
        "21000229T031500Z-full-3fa9c2", /* century, not a leap year */
        "20260431T031500Z-full-3fa9c2", /* April 31 */
        "20260100T031500Z-full-3fa9c2", /* day 0 */
        "20261201T241500Z-full-3fa9c2", /* hour 24 */
        "20261201T036000Z-full-3fa9c2", /* minute 60 */
        "20261201T031560Z-full-3fa9c2", /* second 60 */
        "20261201T031500Z-full-3FA9C2", /* uppercase hex */
        "20261201T031500Z-part-3fa9c2",
        "20261201T031500Z-full-3fa9c",
        "20261201T031500Z-full-3fa9c2a",
        "20261201 031500Z-full-3fa9c2",
        "20261201T031500-full-3fa9c2x",
        "20261201T031500Z_full_3fa9c2",
        "../61201T031500Z-full-3fa9c2",
        "2026-12-01T03:15:00Z-full-3f",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (fb_backup_id_is_valid(bad[i]))
            fprintf(stderr, "  accepted bad id %s\n", bad[i]);
        CHECK(!fb_backup_id_is_valid(bad[i]));
    }
    CHECK(!fb_backup_id_is_valid(NULL));
    /* The shape alone: the first nine bad ids are only bad dates or times. */
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECK(fb_backup_id_has_shape(good[i]));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(fb_backup_id_has_shape(bad[i]) == (i >= 2 && i <= 10));
    CHECK(!fb_backup_id_has_shape(NULL));
    CHECK(fb_backup_id_type("20261201T031500Z-full-3fa9c2") == FB_BACKUP_FULL);
    CHECK(fb_backup_id_type("20261201T031500Z-incr-3fa9c2") == FB_BACKUP_INCREMENTAL);
    /* the base rule: none for a full backup, a full one's id for an incremental */
    CHECK(fb_backup_base_is_allowed(FB_BACKUP_FULL, ""));
    CHECK(fb_backup_base_is_allowed(FB_BACKUP_INCREMENTAL, ""));
    CHECK(fb_backup_base_is_allowed(FB_BACKUP_INCREMENTAL, NULL));
    CHECK(fb_backup_base_is_allowed(FB_BACKUP_INCREMENTAL, "20261201T031500Z-full-3fa9c2"));
    CHECK(!fb_backup_base_is_allowed(FB_BACKUP_FULL, "20261201T031500Z-full-3fa9c2"));
    CHECK(!fb_backup_base_is_allowed(FB_BACKUP_INCREMENTAL, "20261201T031500Z-incr-3fa9c2"));
    CHECK(!fb_backup_base_is_allowed(FB_BACKUP_INCREMENTAL, "20261301T031500Z-full-3fa9c2"));
    CHECK(!fb_backup_base_is_allowed(FB_BACKUP_INCREMENTAL, "../x"));

    char a[FB_BACKUP_ID_LEN + 1], b[FB_BACKUP_ID_LEN + 1];
    fb_error err;
    REQUIRE(fb_backup_id_generate(T0, FB_BACKUP_FULL, a, &err) == 0);
    CHECK(strncmp(a, "20261201T031500Z-full-", 22) == 0);
    CHECK(fb_backup_id_is_valid(a));
    REQUIRE(fb_backup_id_generate(T0, FB_BACKUP_INCREMENTAL, b, &err) == 0);
    CHECK(strncmp(b, "20261201T031500Z-incr-", 22) == 0);
    CHECK(fb_backup_id_type(b) == FB_BACKUP_INCREMENTAL);
    /* leap day, end of a year, the epoch */
    REQUIRE(fb_backup_id_generate(1709251199, FB_BACKUP_FULL, a, &err) == 0);
    CHECK(strncmp(a, "20240229T235959Z-full-", 22) == 0);
    REQUIRE(fb_backup_id_generate(0, FB_BACKUP_FULL, a, &err) == 0);
    CHECK(strncmp(a, "19700101T000000Z-full-", 22) == 0);
    /* year 10000 cannot be written in four digits */
    CHECK_EQ_INT(fb_backup_id_generate(253402300800LL, FB_BACKUP_FULL, a, &err), FB_EINVAL);
    /* the random part differs between two ids of the same second */
    int same = 0;
    for (int i = 0; i < 4; i++) {
        fb_backup_id_generate(T0, FB_BACKUP_FULL, a, &err);
        fb_backup_id_generate(T0, FB_BACKUP_FULL, b, &err);
        same += strcmp(a, b) == 0;
    }
    CHECK(same < 4);
}

/* ---- root and current session ---- */

static bool flowloom_above(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s", dir);
    for (;;) {
        char probe[4300];
        struct stat st;
        snprintf(probe, sizeof probe, "%s/.flowloom", path);
        if (stat(probe, &st) == 0)
            return true;
        char *slash = strrchr(path, '/');
        if (!slash || slash == path)
            break;
        *slash = '\0';
    }
    struct stat st;
    return stat("/.flowloom", &st) == 0;
}

static void test_root_find(void)
{
    char *dir = fbtest_tempdir();
    char root[1024], nested[1100], path[1200], other[1100];
    snprintf(root, sizeof root, "%s/proj", dir);
    snprintf(nested, sizeof nested, "%s/a/b/c", root);
    snprintf(other, sizeof other, "%s/other", dir);
    REQUIRE(mkdir(root, 0700) == 0);
    snprintf(path, sizeof path, "%s/.flowloom", root);
    REQUIRE(mkdir(path, 0700) == 0);
    snprintf(path, sizeof path, "%s/a", root);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/a/b", root);
    mkdir(path, 0700);
    REQUIRE(mkdir(nested, 0700) == 0);
    REQUIRE(mkdir(other, 0700) == 0);
    snprintf(path, sizeof path, "%s/.flowloom", other);
    REQUIRE(mkdir(path, 0700) == 0);

    fb_error err;
    char *out = NULL;
    /* walking up from a nested directory */
    REQUIRE(fb_root_find(NULL, NULL, nested, &out, &err) == 0);
    CHECK(strcmp(out, root) == 0);
    free(out);
    /* trailing slash and the root itself */
    char withslash[4300];
    snprintf(withslash, sizeof withslash, "%s/", root);
    REQUIRE(fb_root_find(NULL, "", withslash, &out, &err) == 0);
    CHECK(strcmp(out, root) == 0);
    free(out);
    /* env beats walking, explicit beats env */
    REQUIRE(fb_root_find(NULL, other, nested, &out, &err) == 0);
    CHECK(strcmp(out, other) == 0);
    free(out);
    REQUIRE(fb_root_find(root, other, nested, &out, &err) == 0);
    CHECK(strcmp(out, root) == 0);
    free(out);
    /* an explicit root without .flowloom is named */
    CHECK_EQ_INT(fb_root_find(nested, NULL, NULL, &out, &err), FB_ENOTFOUND);
    CHECK(out == NULL);
    CHECK(strstr(err.message, nested) != NULL && strstr(err.message, "--root") != NULL);
    CHECK_EQ_INT(fb_root_find(NULL, nested, NULL, &out, &err), FB_ENOTFOUND);
    CHECK(strstr(err.message, "FLOWLOOM_ROOT") != NULL);

    /* nothing at or above */
    char lonely[4300];
    snprintf(lonely, sizeof lonely, "%s/lonely/deeper", dir);
    snprintf(path, sizeof path, "%s/lonely", dir);
    REQUIRE(mkdir(path, 0700) == 0);
    REQUIRE(mkdir(lonely, 0700) == 0);
    if (flowloom_above(dir)) {
        fprintf(stderr, "  skip: a .flowloom exists above %s\n", dir);
    } else {
        CHECK_EQ_INT(fb_root_find(NULL, NULL, lonely, &out, &err), FB_ENOTFOUND);
        char expect[4600];
        snprintf(expect, sizeof expect,
                 "no .flowloom directory found at or above %s; use --root DIR or set "
                 "FLOWLOOM_ROOT",
                 lonely);
        CHECK(strcmp(err.message, expect) == 0);
        /* "." means the working directory, named as such */
        char saved[4300];
        REQUIRE(getcwd(saved, sizeof saved) != NULL);
        REQUIRE(chdir(lonely) == 0);
        char here[4300];
        REQUIRE(getcwd(here, sizeof here) != NULL);
        CHECK_EQ_INT(fb_root_find(NULL, NULL, ".", &out, &err), FB_ENOTFOUND);
        snprintf(expect, sizeof expect,
                 "no .flowloom directory found at or above %s; use --root DIR or set "
                 "FLOWLOOM_ROOT",
                 here);
        CHECK(strcmp(err.message, expect) == 0);
        CHECK_EQ_INT(fb_root_find(NULL, NULL, "../deeper//.", &out, &err), FB_ENOTFOUND);
        CHECK(strcmp(err.message, expect) == 0);
        /* ".." is resolved, not walked textually */
        char via_dotdot[4400];
        snprintf(via_dotdot, sizeof via_dotdot, "%s/../../../%s", nested, "a");
        REQUIRE(fb_root_find(NULL, NULL, via_dotdot, &out, &err) == 0);
        CHECK(strcmp(out, root) == 0);
        free(out);
        REQUIRE(chdir(nested) == 0);
        REQUIRE(fb_root_find(NULL, NULL, NULL, &out, &err) == 0);
        CHECK(strcmp(out, root) == 0);
        free(out);
        REQUIRE(chdir(saved) == 0);
    }
    fbtest_rmtree(dir);
}

static void test_current_session(void)
{
    char *dir = fbtest_tempdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/.flowloom", dir);
    REQUIRE(mkdir(path, 0700) == 0);
    fb_error err;
    char *out = NULL;

    /* neither way set */
    CHECK_EQ_INT(fb_current_session_find(dir, NULL, &out, NULL, &err), FB_ENOTFOUND);
    char expect[4600];
    snprintf(expect, sizeof expect,
             "no current session: set FLOWLOOM_SESSION or write the session id into "
             "%s/.flowloom/current_session",
             dir);
    CHECK(strcmp(err.message, expect) == 0);
    CHECK(out == NULL);

    /* the file's first line, line ending and blanks stripped */
    snprintf(path, sizeof path, "%s/.flowloom/current_session", dir);
    write_text(path, "  session_1\r\nsecond line\n");
    fb_session_origin origin = FB_SESSION_FROM_ARGUMENT;
    REQUIRE(fb_current_session_find(dir, "", &out, &origin, &err) == 0);
    CHECK(strcmp(out, "session_1") == 0);
    CHECK_EQ_INT(origin, FB_SESSION_FROM_FILE);
    free(out);
    write_text(path, "session_2");
    REQUIRE(fb_current_session_find(dir, NULL, &out, NULL, &err) == 0);
    CHECK(strcmp(out, "session_2") == 0);
    free(out);

    /* the environment wins over the file */
    REQUIRE(fb_current_session_find(dir, "from_env", &out, &origin, &err) == 0);
    CHECK(strcmp(out, "from_env") == 0);
    CHECK_EQ_INT(origin, FB_SESSION_FROM_ENV);
    free(out);

    /* invalid values are refused, saying where they came from */
    CHECK_EQ_INT(fb_current_session_find(dir, "../x", &out, NULL, &err), FB_EINVAL);
    CHECK(strncmp(err.message, "FLOWLOOM_SESSION: invalid session id '../x'", 43) == 0);
    write_text(path, "../etc\n");
    CHECK_EQ_INT(fb_current_session_find(dir, NULL, &out, NULL, &err), FB_EINVAL);
    CHECK(strstr(err.message, "current_session") != NULL);
    CHECK(strstr(err.message, "'../etc'") != NULL);
    write_text(path, "\n");
    CHECK_EQ_INT(fb_current_session_find(dir, NULL, &out, NULL, &err), FB_ENOTFOUND);
    CHECK(strstr(err.message, "empty") != NULL);
    int fd = open(path, O_WRONLY | O_TRUNC);
    CHECK(write(fd, "ab\0cd\n", 6) == 6);
    close(fd);
    CHECK_EQ_INT(fb_current_session_find(dir, NULL, &out, NULL, &err), FB_EINVAL);
    CHECK(out == NULL);
    fbtest_rmtree(dir);
}

/* ---- opening things ---- */

static void test_store_open(void)
{
    char *dir = fbtest_tempdir();
    fb_store *st = NULL;
    fb_error err;
    CHECK_EQ_INT(fb_store_open(dir, true, &st, &err), FB_ENOTFOUND);
    CHECK(st == NULL);
    char path[4200];
    snprintf(path, sizeof path, "%s/.flowloom", dir);
    REQUIRE(mkdir(path, 0755) == 0);
    CHECK_EQ_INT(fb_store_open(dir, false, &st, &err), FB_ENOTFOUND);
    CHECK(strstr(err.message, ".flowloom/backups") != NULL);

    mode_t old = umask(022);
    int rc = fb_store_open(dir, true, &st, &err);
    umask(old);
    REQUIRE(rc == 0);
    struct stat sb;
    snprintf(path, sizeof path, "%s/.flowloom/backups", dir);
    REQUIRE(stat(path, &sb) == 0);
    CHECK_EQ_INT(sb.st_mode & 07777, 0700);
    CHECK(strcmp(fb_store_root(st), dir) == 0);
    CHECK(strcmp(fb_store_backups_path(st), path) == 0);
    CHECK(fb_store_backups_fd(st) >= 0);

    int sfd = -1;
    CHECK_EQ_INT(fb_store_open_session(st, "S1", false, &sfd, &err), FB_ENOTFOUND);
    old = umask(022);
    rc = fb_store_open_session(st, "S1", true, &sfd, &err);
    umask(old);
    REQUIRE(rc == 0);
    snprintf(path, sizeof path, "%s/.flowloom/backups/S1", dir);
    REQUIRE(stat(path, &sb) == 0);
    CHECK_EQ_INT(sb.st_mode & 07777, 0700);
    close(sfd);
    CHECK_EQ_INT(fb_store_open_session(st, "../x", true, &sfd, &err), FB_EINVAL);
    CHECK(sfd == -1);
    snprintf(path, sizeof path, "%s/.flowloom/x", dir);
    CHECK(access(path, F_OK) != 0);

    /* a session dir in the store that is a symlink is not followed */
    char target[4300];
    snprintf(target, sizeof target, "%s/elsewhere", dir);
    REQUIRE(mkdir(target, 0700) == 0);
    snprintf(path, sizeof path, "%s/.flowloom/backups/S2", dir);
    REQUIRE(symlink(target, path) == 0);
    CHECK(fb_store_open_session(st, "S2", false, &sfd, &err) < 0);
    CHECK(sfd == -1);
    fb_store_free(st);
    fb_store_free(NULL);
    fbtest_rmtree(dir);
}

static void test_open_source(void)
{
    char *dir = fbtest_tempdir();
    fb_store *st = fixture_store(dir);
    REQUIRE(st != NULL);
    fb_error err;
    int fd = -1;
    CHECK_EQ_INT(fb_store_open_source(st, "S", &fd, &err), FB_ENOTFOUND);
    CHECK(strstr(err.message, "session S not found") != NULL);
    char path[4200], target[4200];
    snprintf(path, sizeof path, "%s/.flowloom/sessions/S", dir);
    REQUIRE(mkdir(path, 0700) == 0);
    REQUIRE(fb_store_open_source(st, "S", &fd, &err) == 0);
    struct stat a, b;
    REQUIRE(fstat(fd, &a) == 0 && stat(path, &b) == 0);
    CHECK(a.st_ino == b.st_ino);
    close(fd);

    /* symlinked session dir: refused with a clear message */
    snprintf(target, sizeof target, "%s/etc-like", dir);
    REQUIRE(mkdir(target, 0700) == 0);
    snprintf(path, sizeof path, "%s/.flowloom/sessions/L", dir);
    REQUIRE(symlink(target, path) == 0);
    fd = -1;
    CHECK_EQ_INT(fb_store_open_source(st, "L", &fd, &err), FB_EINVAL);
    CHECK(fd == -1);
    CHECK(strstr(err.message, "is a symlink") != NULL);
    CHECK(strstr(err.message, "sessions/L") != NULL);

    /* a plain file is not a session */
    snprintf(path, sizeof path, "%s/.flowloom/sessions/F", dir);
    write_text(path, "x");
    CHECK_EQ_INT(fb_store_open_source(st, "F", &fd, &err), FB_EINVAL);
    CHECK_EQ_INT(fb_store_open_source(st, "..", &fd, &err), FB_EINVAL);
    fb_store_free(st);
    fbtest_rmtree(dir);
}

static void test_list_sessions(void)
{
    char *dir = fbtest_tempdir();
    fb_store *st = fixture_store(dir);
    REQUIRE(st != NULL);
    char path[4200];
    const char *dirs[] = {"zeta", "alpha", ".hidden", "bad name", "-x", "mid.dle"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(path, sizeof path, "%s/.flowloom/backups/%s", dir, dirs[i]);
        REQUIRE(mkdir(path, 0700) == 0);
    }
    snprintf(path, sizeof path, "%s/.flowloom/backups/afile", dir);
    write_text(path, "x");
    snprintf(path, sizeof path, "%s/.flowloom/backups/alink", dir);
    REQUIRE(symlink("alpha", path) == 0);
    char **list = NULL;
    size_t n = 0;
    fb_error err;
    REQUIRE(fb_store_list_sessions(st, &list, &n, &err) == 0);
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK(strcmp(list[0], "alpha") == 0);
        CHECK(strcmp(list[1], "mid.dle") == 0);
        CHECK(strcmp(list[2], "zeta") == 0);
    }
    fb_string_list_free(list, n);
    fb_string_list_free(NULL, 0);
    fb_store_free(st);
    fbtest_rmtree(dir);
}

/* A session dir with three backups F1, I2 (base F1), F3 and a saved index. */
typedef struct session_fixture {
    char *dir;
    fb_store *st;
    int sfd;
    char ids[4][FB_BACKUP_ID_LEN + 1];
} session_fixture;

static int make_backup(session_fixture *f, int k, uint64_t seq, const char *base)
{
    fb_manifest m;
    int rc = fixture_manifest(&m, "S", f->ids[k], seq, T0 + (int64_t)seq * 3600, base,
                              k == 1 ? "a note" : NULL);
    if (rc == 0)
        rc = fixture_write_backup(f->sfd, &m);
    fb_manifest_fini(&m);
    return rc;
}

static int session_setup(session_fixture *f, bool save_index)
{
    fb_error err;
    f->dir = fbtest_tempdir();
    f->st = fixture_store(f->dir);
    f->sfd = -1;
    if (!f->st || fb_store_open_session(f->st, "S", true, &f->sfd, &err) != 0)
        return -1;
    fixture_id(T0 + 3600, FB_BACKUP_FULL, 0x111111, f->ids[0]);
    fixture_id(T0 + 7200, FB_BACKUP_INCREMENTAL, 0x222222, f->ids[1]);
    fixture_id(T0 + 10800, FB_BACKUP_FULL, 0x333333, f->ids[2]);
    fixture_id(T0 + 14400, FB_BACKUP_FULL, 0x444444, f->ids[3]);
    if (make_backup(f, 0, 1, NULL) || make_backup(f, 1, 2, f->ids[0]) ||
        make_backup(f, 2, 3, NULL))
        return -1;
    if (!save_index)
        return 0;
    fb_index idx;
    fb_index_init(&idx, "S");
    int rc = 0;
    for (int k = 0; k < 3 && rc == 0; k++) {
        fb_manifest m;
        rc = fb_store_read_manifest(f->sfd, "S", f->ids[k], &m, &err);
        if (rc == 0)
            rc = fb_index_add_from_manifest(&idx, &m, &err);
        fb_manifest_fini(&m);
    }
    if (rc == 0)
        rc = fb_store_save_index(f->sfd, "S", &idx, &err);
    if (rc)
        fprintf(stderr, "setup: %s\n", err.message);
    fb_index_fini(&idx);
    return rc;
}

static void session_teardown(session_fixture *f)
{
    if (f->sfd >= 0)
        close(f->sfd);
    fb_store_free(f->st);
    fbtest_rmtree(f->dir);
}

static void test_list_backup_dirs(void)
{
    session_fixture f;
    REQUIRE(session_setup(&f, false) == 0);
    char path[4300];
    const char *junk_dirs[] = {".tmp-0123456789abcdef", ".trash-20261201T031500Z-full-aaaaaa-01",
                               "junk", "20261201T031500Z-full-bbbbbb" /* no manifest */};
    for (size_t i = 0; i < sizeof junk_dirs / sizeof junk_dirs[0]; i++) {
        snprintf(path, sizeof path, "%s/.flowloom/backups/S/%s", f.dir, junk_dirs[i]);
        REQUIRE(mkdir(path, 0700) == 0);
        snprintf(path, sizeof path, "%s/.flowloom/backups/S/%s/manifest.json", f.dir,
                 junk_dirs[i]);
        if (i < 3)
            write_text(path, "{}");
    }
    /* a symlink with a backup id name pointing at a real backup dir */
    snprintf(path, sizeof path, "%s/.flowloom/backups/S/20261201T031500Z-full-cccccc", f.dir);
    REQUIRE(symlink(f.ids[0], path) == 0);
    /* a regular file with a backup id name */
    snprintf(path, sizeof path, "%s/.flowloom/backups/S/20261201T031500Z-full-dddddd", f.dir);
    write_text(path, "x");
    /* a backup dir whose manifest.json is a symlink */
    snprintf(path, sizeof path, "%s/.flowloom/backups/S/20261201T031500Z-full-eeeeee", f.dir);
    REQUIRE(mkdir(path, 0700) == 0);
    snprintf(path, sizeof path,
             "%s/.flowloom/backups/S/20261201T031500Z-full-eeeeee/manifest.json", f.dir);
    char target[4300];
    snprintf(target, sizeof target, "../%s/manifest.json", f.ids[0]);
    REQUIRE(symlink(target, path) == 0);

    char **list = NULL;
    size_t n = 0;
    fb_error err;
    REQUIRE(fb_store_list_backup_dirs(f.sfd, &list, &n, &err) == 0);
    CHECK_EQ_INT(n, 3);
    if (n == 3)
        for (int k = 0; k < 3; k++)
            CHECK(strcmp(list[k], f.ids[k]) == 0);
    fb_string_list_free(list, n);
    session_teardown(&f);
}

static void test_read_manifest(void)
{
    session_fixture f;
    REQUIRE(session_setup(&f, false) == 0);
    fb_manifest m;
    fb_error err;
    REQUIRE(fb_store_read_manifest(f.sfd, "S", f.ids[1], &m, &err) == 0);
    CHECK(strcmp(m.backup_id, f.ids[1]) == 0);
    CHECK_EQ_INT(m.seq, 2);
    CHECK(strcmp(m.base, f.ids[0]) == 0);
    CHECK(m.note && strcmp(m.note, "a note") == 0);
    fb_manifest_fini(&m);

    /* not there */
    CHECK_EQ_INT(fb_store_read_manifest(f.sfd, "S", f.ids[3], &m, &err), FB_ENOTFOUND);
    char expect[256];
    snprintf(expect, sizeof expect, "backup %s not found in session S", f.ids[3]);
    CHECK(strcmp(err.message, expect) == 0);
    fb_manifest_fini(&m);

    /* another backup's manifest copied into this dir */
    char src[4300], dst[4300];
    snprintf(dst, sizeof dst, "%s/.flowloom/backups/S/%s", f.dir, f.ids[3]);
    REQUIRE(mkdir(dst, 0700) == 0);
    snprintf(src, sizeof src, "%s/.flowloom/backups/S/%s/manifest.json", f.dir, f.ids[2]);
    snprintf(dst, sizeof dst, "%s/.flowloom/backups/S/%s/manifest.json", f.dir, f.ids[3]);
    REQUIRE(link(src, dst) == 0);
    CHECK_EQ_INT(fb_store_read_manifest(f.sfd, "S", f.ids[3], &m, &err), FB_ECORRUPT);
    CHECK(strstr(err.message, "backup_id") != NULL);
    CHECK(strstr(err.message, f.ids[3]) != NULL);
    CHECK_EQ_INT(m.n_entries, 0);
    fb_manifest_fini(&m);

    /* read as if it were another session's */
    CHECK_EQ_INT(fb_store_read_manifest(f.sfd, "T", f.ids[2], &m, &err), FB_ECORRUPT);
    CHECK(strstr(err.message, "session_id") != NULL);
    fb_manifest_fini(&m);

    /* a manifest that fails strict parsing is corrupt and named */
    snprintf(dst, sizeof dst, "%s/.flowloom/backups/S/%s/manifest.json", f.dir, f.ids[0]);
    write_text(dst, "{\"format\":1} trailing");
    CHECK_EQ_INT(fb_store_read_manifest(f.sfd, "S", f.ids[0], &m, &err), FB_ECORRUPT);
    snprintf(expect, sizeof expect, "S/%s/manifest.json", f.ids[0]);
    CHECK(strstr(err.message, expect) != NULL);
    fb_manifest_fini(&m);

    /* invalid ids never reach the file system */
    CHECK_EQ_INT(fb_store_read_manifest(f.sfd, "S", "../../etc", &m, &err), FB_EINVAL);
    fb_manifest_fini(&m);

    int fd = -1;
    REQUIRE(fb_store_open_archive(f.sfd, f.ids[1], &fd, &err) == 0);
    char buf[16];
    CHECK(read(fd, buf, sizeof buf) == 10);
    close(fd);
    CHECK_EQ_INT(fb_store_open_archive(f.sfd, f.ids[3], &fd, &err), FB_ENOTFOUND);
    session_teardown(&f);
}

/* Index file content, parsed. */
static int disk_index(const session_fixture *f, fb_index *idx)
{
    char *json = NULL;
    size_t len = 0;
    fb_error err;
    fb_index_init(idx, "S");
    int rc = fb_read_file_at(f->sfd, "S", "index.json", 1 << 20, &json, &len, &err);
    if (rc == 0) {
        fb_index_fini(idx);
        rc = fb_index_parse(json, len, "index.json", idx, &err);
    }
    free(json);
    return rc;
}

static void test_load_index_consistent(void)
{
    session_fixture f;
    REQUIRE(session_setup(&f, true) == 0);
    fb_index idx;
    bool rebuilt = true;
    warnings w = {0};
    fb_error err;
    REQUIRE(fb_store_load_index(f.st, "S", 0, &idx, &rebuilt, collect, &w, &err) == 0);
    CHECK(!rebuilt);
    CHECK_EQ_INT(w.count, 0);
    CHECK_EQ_INT(idx.n, 3);
    CHECK(idx.n == 3 && strcmp(idx.records[2].id, f.ids[2]) == 0);
    fb_index_fini(&idx);

    /* a session without a backups dir: empty, no error */
    REQUIRE(fb_store_load_index(f.st, "nobackups", FB_INDEX_LOAD_LOCKED, &idx, &rebuilt, collect,
                                &w, &err) == 0);
    CHECK(!rebuilt);
    CHECK_EQ_INT(idx.n, 0);
    fb_index_fini(&idx);
    char path[4300];
    snprintf(path, sizeof path, "%s/.flowloom/backups/nobackups", f.dir);
    CHECK(access(path, F_OK) != 0);
    CHECK_EQ_INT(fb_store_load_index(f.st, "../S", 0, &idx, &rebuilt, collect, &w, &err),
                 FB_EINVAL);
    fb_index_fini(&idx);
    session_teardown(&f);
}

static void test_load_index_missing(void)
{
    session_fixture f;
    REQUIRE(session_setup(&f, false) == 0);
    fb_index idx, disk;
    bool rebuilt = false;
    warnings w = {0};
    fb_error err;
    /* flags 0: rebuilt in memory only */
    REQUIRE(fb_store_load_index(f.st, "S", 0, &idx, &rebuilt, collect, &w, &err) == 0);
    CHECK(rebuilt);
    CHECK_EQ_INT(idx.n, 3);
    CHECK(strstr(w.text, "index rebuilt: S/index.json is missing") != NULL);
    CHECK_EQ_INT(faccessat(f.sfd, "index.json", F_OK, AT_SYMLINK_NOFOLLOW), -1);
    fb_index_fini(&idx);

    /* LOCKED: written back, and the next load trusts it */
    REQUIRE(fb_store_load_index(f.st, "S", FB_INDEX_LOAD_LOCKED, &idx, &rebuilt, collect, &w,
                                &err) == 0);
    CHECK(rebuilt);
    fb_index_fini(&idx);
    REQUIRE(disk_index(&f, &disk) == 0);
    CHECK_EQ_INT(disk.n, 3);
    for (size_t k = 0; k < disk.n && k < 3; k++) {
        CHECK(strcmp(disk.records[k].id, f.ids[k]) == 0);
        CHECK_EQ_INT(disk.records[k].seq, k + 1);
    }
    CHECK(disk.n == 3 && disk.records[1].note && strcmp(disk.records[1].note, "a note") == 0);
    fb_index_fini(&disk);
    w.count = 0;
    REQUIRE(fb_store_load_index(f.st, "S", 0, &idx, &rebuilt, collect, &w, &err) == 0);
    CHECK(!rebuilt);
    CHECK_EQ_INT(w.count, 0);
    fb_index_fini(&idx);
    session_teardown(&f);
}

static void test_load_index_unparseable(void)
{
    session_fixture f;
    REQUIRE(session_setup(&f, true) == 0);
    write_text_at(f.sfd, "index.json", "{");
    fb_index idx, disk;
    bool rebuilt = false;
    warnings w = {0};
    fb_error err;

    /* the lock is held elsewhere: rebuilt in memory, file left alone */
    fb_lock lk;
    REQUIRE(fb_lock_try(f.sfd, "S", &lk, &err) == 0);
    REQUIRE(fb_store_load_index(f.st, "S", FB_INDEX_LOAD_WRITE_BACK_IF_UNLOCKED, &idx, &rebuilt,
                                collect, &w, &err) == 0);
    CHECK(rebuilt);
    CHECK_EQ_INT(idx.n, 3);
    CHECK(strstr(w.text, "index rebuilt: ") != NULL);
    fb_index_fini(&idx);
    char *json = NULL;
    size_t len = 0;
    REQUIRE(fb_read_file_at(f.sfd, "S", "index.json", 100, &json, &len, &err) == 0);
    CHECK(len == 1 && json[0] == '{');
    free(json);
    fb_lock_release(&lk);

    /* the lock is free: written back */
    REQUIRE(fb_store_load_index(f.st, "S", FB_INDEX_LOAD_WRITE_BACK_IF_UNLOCKED, &idx, &rebuilt,
                                collect, &w, &err) == 0);
    CHECK(rebuilt);
    fb_index_fini(&idx);
    REQUIRE(disk_index(&f, &disk) == 0);
    CHECK_EQ_INT(disk.n, 3);
    fb_index_fini(&disk);
    /* and the lock was given back */
    REQUIRE(fb_lock_try(f.sfd, "S", &lk, &err) == 0);
    fb_lock_release(&lk);
    session_teardown(&f);
}

static void test_load_index_ids_differ(void)
{
    session_fixture f;
    REQUIRE(session_setup(&f, true) == 0);
    fb_index idx, disk;
    bool rebuilt = false;
    warnings w = {0};
    fb_error err;

    /* a backup directory deleted by hand */
    REQUIRE(fb_remove_tree_at(f.sfd, "S", f.ids[1], &err) == 0);
    REQUIRE(fb_store_load_index(f.st, "S", FB_INDEX_LOAD_LOCKED, &idx, &rebuilt, collect, &w,
                                &err) == 0);
    CHECK(rebuilt);
    CHECK_EQ_INT(idx.n, 2);
    CHECK(strstr(w.text, f.ids[1]) != NULL && strstr(w.text, "not on disk") != NULL);
    fb_index_fini(&idx);
    REQUIRE(disk_index(&f, &disk) == 0);
    CHECK_EQ_INT(disk.n, 2);
    CHECK(fb_index_find(&disk, f.ids[1]) < 0);
    fb_index_fini(&disk);

    /* an orphan directory not in the index */
    REQUIRE(make_backup(&f, 3, 4, NULL) == 0);
    w.text[0] = '\0';
    REQUIRE(fb_store_load_index(f.st, "S", FB_INDEX_LOAD_LOCKED, &idx, &rebuilt, collect, &w,
                                &err) == 0);
    CHECK(rebuilt);
    CHECK_EQ_INT(idx.n, 3);
    CHECK(fb_index_find(&idx, f.ids[3]) == 2);
    CHECK(strstr(w.text, f.ids[3]) != NULL && strstr(w.text, "not in") != NULL);
    fb_index_fini(&idx);
    REQUIRE(disk_index(&f, &disk) == 0);
    CHECK_EQ_INT(disk.n, 3);
    fb_index_fini(&disk);

    /* an unreadable manifest: left out with a warning, never fatal */
    REQUIRE(unlinkat(f.sfd, "index.json", 0) == 0);
    char path[4300];
    snprintf(path, sizeof path, "%s/manifest.json", f.ids[0]);
    write_text_at(f.sfd, path, "[]");
    w.text[0] = '\0';
    REQUIRE(fb_store_load_index(f.st, "S", 0, &idx, &rebuilt, collect, &w, &err) == 0);
    CHECK(rebuilt);
    CHECK_EQ_INT(idx.n, 2);
    CHECK(strstr(w.text, "left out of the index") != NULL);
    fb_index_fini(&idx);
    session_teardown(&f);
}

static void test_load_index_symlink(void)
{
    session_fixture f;
    REQUIRE(session_setup(&f, true) == 0);
    /* move the real index away and point index.json at it */
    char outside[4300];
    snprintf(outside, sizeof outside, "%s/outside-index.json", f.dir);
    char cur[4300];
    snprintf(cur, sizeof cur, "%s/.flowloom/backups/S/index.json", f.dir);
    REQUIRE(rename(cur, outside) == 0);
    REQUIRE(symlink(outside, cur) == 0);
    struct stat before;
    REQUIRE(stat(outside, &before) == 0);

    fb_index idx;
    bool rebuilt = false;
    warnings w = {0};
    fb_error err;
    REQUIRE(fb_store_load_index(f.st, "S", FB_INDEX_LOAD_LOCKED, &idx, &rebuilt, collect, &w,
                                &err) == 0);
    CHECK(rebuilt);
    CHECK_EQ_INT(idx.n, 3);
    CHECK(strstr(w.text, "symlink") != NULL);
    fb_index_fini(&idx);
    struct stat sb, after;
    REQUIRE(lstat(cur, &sb) == 0);
    CHECK(S_ISREG(sb.st_mode));
    CHECK_EQ_INT(sb.st_mode & 07777, 0600);
    REQUIRE(stat(outside, &after) == 0);
    CHECK(after.st_ino == before.st_ino && after.st_mtime == before.st_mtime &&
          after.st_size == before.st_size);
    session_teardown(&f);
}

static void test_clear_leftovers(void)
{
    session_fixture f;
    REQUIRE(session_setup(&f, true) == 0);
    char path[4400];
    REQUIRE(mkdirat(f.sfd, ".tmp-0123456789abcdef", 0700) == 0);
    write_text_at(f.sfd, ".tmp-0123456789abcdef/manifest.json", "{");
    REQUIRE(mkdirat(f.sfd, ".tmp-0123456789abcdef/sub", 0700) == 0);
    write_text_at(f.sfd, ".tmp-0123456789abcdef/sub/x", "x");
    snprintf(path, sizeof path, ".trash-%s-0badc0de", f.ids[0]);
    REQUIRE(mkdirat(f.sfd, path, 0700) == 0);
    write_text_at(f.sfd, ".tmp-index.json-00ff00ff00ff00ff", "partial");
    /* a leftover that is a symlink to a dir outside: only the link goes */
    char outside[4200];
    snprintf(outside, sizeof outside, "%s/outside", f.dir);
    REQUIRE(mkdir(outside, 0700) == 0);
    snprintf(path, sizeof path, "%s/keep", outside);
    write_text(path, "keep");
    REQUIRE(symlinkat(outside, f.sfd, ".tmp-link") == 0);
    write_text_at(f.sfd, "junk", "not ours to remove");

    warnings w = {0};
    fb_error err;
    REQUIRE(fb_store_clear_leftovers(f.st, f.sfd, "S", collect, &w, &err) == 0);
    CHECK_EQ_INT(w.count, 4);
    CHECK(strstr(w.text, "S/.tmp-0123456789abcdef") != NULL);
    CHECK(faccessat(f.sfd, ".tmp-0123456789abcdef", F_OK, AT_SYMLINK_NOFOLLOW) != 0);
    CHECK(faccessat(f.sfd, ".tmp-link", F_OK, AT_SYMLINK_NOFOLLOW) != 0);
    CHECK(faccessat(f.sfd, ".tmp-index.json-00ff00ff00ff00ff", F_OK, 0) != 0);
    CHECK(access(path, F_OK) == 0);
    CHECK(faccessat(f.sfd, "junk", F_OK, 0) == 0);
    CHECK(faccessat(f.sfd, "index.json", F_OK, 0) == 0);
    for (int k = 0; k < 3; k++)
        CHECK(faccessat(f.sfd, f.ids[k], F_OK, 0) == 0);
    /* nothing left: nothing reported */
    w.count = 0;
    REQUIRE(fb_store_clear_leftovers(f.st, f.sfd, "S", collect, &w, &err) == 0);
    CHECK_EQ_INT(w.count, 0);
    session_teardown(&f);
}

/* A staging dir of .flowloom/sessions as a recover names it, holding a
 * file and a read-only subdirectory (as a restored tree may). */
static void make_staging(const char *sessions, const char *name)
{
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", sessions, name);
    REQUIRE(mkdir(p, 0700) == 0);
    snprintf(p, sizeof p, "%s/%s/sub", sessions, name);
    REQUIRE(mkdir(p, 0700) == 0);
    snprintf(p, sizeof p, "%s/%s/sub/data", sessions, name);
    write_text(p, "restored bytes");
    snprintf(p, sizeof p, "%s/%s/sub", sessions, name);
    REQUIRE(chmod(p, 0555) == 0);
}

static bool exists_in(const char *dir, const char *name)
{
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* Leftovers of interrupted recovers: the session's staging dirs in
 * .flowloom/sessions are listed (dry run) and removed, except one a running
 * recover holds (its flock); other sessions' and other names stay. */
static void test_clear_restore_staging(void)
{
    session_fixture f;
    REQUIRE(session_setup(&f, true) == 0);
    char sessions[4200];
    snprintf(sessions, sizeof sessions, "%s/.flowloom/sessions", f.dir);
    const char *mine = ".restore-S-0123456789abcdef";
    const char *busy = ".restore-S-fedcba9876543210";
    const char *keep[] = {".restore-Sx-0123456789abcdef", ".restore-S-notmine",
                          ".restore-S-0123456789ABCDEF", ".restore-0123456789abcdef"};
    make_staging(sessions, mine);
    make_staging(sessions, busy);
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        make_staging(sessions, keep[i]);
    CHECK(fb_store_is_restore_staging(mine, "S"));
    CHECK(!fb_store_is_restore_staging(keep[0], "S"));
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", sessions, busy);
    int held = open(p, O_RDONLY | O_DIRECTORY);
    REQUIRE(held >= 0);
    REQUIRE(flock(held, LOCK_EX | LOCK_NB) == 0);

    char **names = NULL;
    size_t n = 0;
    fb_error err;
    REQUIRE(fb_store_list_leftovers(f.st, f.sfd, "S", &names, &n, &err) == 0);
    REQUIRE(n == 1);
    CHECK(strcmp(names[0], ".flowloom/sessions/.restore-S-0123456789abcdef") == 0);
    fb_string_list_free(names, n);
    CHECK(exists_in(sessions, mine)); /* listing changes nothing */

    warnings w = {0};
    REQUIRE(fb_store_clear_leftovers(f.st, f.sfd, "S", collect, &w, &err) == 0);
    CHECK_EQ_INT(w.count, 1);
    CHECK(strstr(w.text, "left by an interrupted recover") != NULL);
    CHECK(!exists_in(sessions, mine));
    CHECK(exists_in(sessions, busy));
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        CHECK(exists_in(sessions, keep[i]));

    /* once its recover is gone (the kernel drops the flock), it goes too */
    close(held);
    REQUIRE(fb_store_list_leftovers(f.st, f.sfd, "S", &names, &n, &err) == 0);
    CHECK(n == 1);
    fb_string_list_free(names, n);
    REQUIRE(fb_store_clear_leftovers(f.st, f.sfd, "S", collect, &w, &err) == 0);
    CHECK(!exists_in(sessions, busy));
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        snprintf(p, sizeof p, "%s/%s/sub", sessions, keep[i]);
        chmod(p, 0700);
    }
    session_teardown(&f);
}

static void test_resolve_backup(void)
{
    session_fixture f;
    REQUIRE(session_setup(&f, true) == 0);
    fb_index idx;
    fb_error err;
    REQUIRE(fb_store_load_index(f.st, "S", 0, &idx, NULL, NULL, NULL, &err) == 0);
    char out[FB_BACKUP_ID_LEN + 1];
    REQUIRE(fb_store_resolve_backup(&idx, "latest", out, &err) == 0);
    CHECK(strcmp(out, f.ids[2]) == 0);
    REQUIRE(fb_store_resolve_backup(&idx, f.ids[0], out, &err) == 0);
    CHECK(strcmp(out, f.ids[0]) == 0);
    CHECK_EQ_INT(fb_store_resolve_backup(&idx, f.ids[3], out, &err), FB_ENOTFOUND);
    char expect[128];
    snprintf(expect, sizeof expect, "backup %s not found in session S", f.ids[3]);
    CHECK(strcmp(err.message, expect) == 0);
    CHECK_EQ_INT(fb_store_resolve_backup(&idx, "../x", out, &err), FB_EINVAL);
    CHECK(out[0] == '\0');
    CHECK_EQ_INT(fb_store_resolve_backup(&idx, "", out, &err), FB_EINVAL);


    /* A prefix of the id, and a prefix of its 6-hex suffix, name one backup. */
    char prefix[FB_BACKUP_ID_LEN + 1];
    memcpy(prefix, f.ids[1], FB_BACKUP_ID_LEN - 2);
    prefix[FB_BACKUP_ID_LEN - 2] = '\0';
    REQUIRE(fb_store_resolve_backup(&idx, prefix, out, &err) == 0);
    CHECK(strcmp(out, f.ids[1]) == 0);
    const char *suffix = f.ids[1] + FB_BACKUP_ID_LEN - 6;
    REQUIRE(fb_store_resolve_backup(&idx, suffix, out, &err) == 0);
    CHECK(strcmp(out, f.ids[1]) == 0);

    /* The date part common to every backup is ambiguous: exit-2 class, and
     * the message names the candidates, newest first. */
    char day[9];
    memcpy(day, f.ids[0], 8);
    day[8] = '\0';
    CHECK_EQ_INT(fb_store_resolve_backup(&idx, day, out, &err), FB_EINVAL);
    CHECK(out[0] == '\0');
    CHECK(strstr(err.message, "is ambiguous in session S: it could be ") != NULL);
    CHECK(strstr(err.message, f.ids[0]) != NULL && strstr(err.message, f.ids[2]) != NULL);
    CHECK(strstr(err.message, f.ids[2]) < strstr(err.message, f.ids[0]));

    /* In the id alphabet but matching nothing: not found (exit-3 class). */
    CHECK_EQ_INT(fb_store_resolve_backup(&idx, "1999", out, &err), FB_ENOTFOUND);
    CHECK(strcmp(err.message, "backup '1999' not found in session S: no backup id, nor the "
                              "6-hex suffix of one, starts with it") == 0);

    /* latest-full: the newest full backup, even when an incremental is
     * newer (without ids[2], the incremental ids[1] is the newest). */
    REQUIRE(fb_index_remove(&idx, f.ids[2], &err) == 0);
    REQUIRE(fb_store_resolve_backup(&idx, "latest", out, &err) == 0);
    CHECK(strcmp(out, f.ids[1]) == 0);
    REQUIRE(fb_store_resolve_backup(&idx, "latest-full", out, &err) == 0);
    CHECK(strcmp(out, f.ids[0]) == 0);
    fb_index_fini(&idx);
    fb_index_init(&idx, "S");
    CHECK_EQ_INT(fb_store_resolve_backup(&idx, "latest", out, &err), FB_ENOTFOUND);
    CHECK(strstr(err.message, "session S has no backups") != NULL);
    CHECK_EQ_INT(fb_store_resolve_backup(&idx, "latest-full", out, &err), FB_ENOTFOUND);
    CHECK(strstr(err.message, "session S has no full backups") != NULL);
    fb_index_fini(&idx);
    session_teardown(&f);
}

int main(void)
{
    RUN_TEST(test_session_id_rules);
    RUN_TEST(test_backup_id_rules);
    RUN_TEST(test_root_find);
    RUN_TEST(test_current_session);
    RUN_TEST(test_store_open);
    RUN_TEST(test_open_source);
    RUN_TEST(test_list_sessions);
    RUN_TEST(test_list_backup_dirs);
    RUN_TEST(test_read_manifest);
    RUN_TEST(test_load_index_consistent);
    RUN_TEST(test_load_index_missing);
    RUN_TEST(test_load_index_unparseable);
    RUN_TEST(test_load_index_ids_differ);
    RUN_TEST(test_load_index_symlink);
    RUN_TEST(test_clear_leftovers);
    RUN_TEST(test_clear_restore_staging);
    RUN_TEST(test_resolve_backup);
    FBTEST_EXIT();
}
