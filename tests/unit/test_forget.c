/* Tests of fb_forget_run on synthetic backups on disk: removal by id, by
 * prefix of the id and of the suffix, several at once; every name resolved
 * before anything goes (unknown and ambiguous names remove nothing); the
 * rule for bases (refused, named too, with_incrementals); dry run; the
 * lock; leftovers; a session without backups. */
#include <dirent.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "fb_forget.h"
#include "fb_lock.h"
#include "fbtest.h"
#include "store_fixture.h"

#define NOW 1796094900LL /* 2026-12-01T03:15:00Z */
#define HOUR 3600LL
#define N_BACKUPS 5

/* F0 I1 I2 F3 I4, an hour apart: I1 and I2 are based on F0, I4 on F3. */
static const char kinds[N_BACKUPS] = {'F', 'I', 'I', 'F', 'I'};

typedef struct world {
    char *dir;
    fb_store *st;
    int sfd;
    char ids[N_BACKUPS][FB_BACKUP_ID_LEN + 1];
} world;

static bool world_make(world *w, bool write_index)
{
    memset(w, 0, sizeof *w);
    w->sfd = -1;
    w->dir = fbtest_tempdir();
    w->st = fixture_store(w->dir);
    fb_error err;
    if (!w->st || fb_store_open_session(w->st, "S", true, &w->sfd, &err) != 0)
        return false;
    fb_index idx;
    fb_index_init(&idx, "S");
    const char *base = NULL;
    for (int i = 0; i < N_BACKUPS; i++) {
        int64_t t = NOW + i * HOUR;
        bool full = kinds[i] == 'F';
        /* suffixes 0a1b00.. and the full ones' differ in their first digit
         * only from each other's: "0a1b" is ambiguous, "0a1b03" is not */
        fixture_id(t, full ? FB_BACKUP_FULL : FB_BACKUP_INCREMENTAL, 0x0a1b00 + (unsigned)i,
                   w->ids[i]);
        fb_manifest m;
        int rc = fixture_manifest(&m, "S", w->ids[i], (uint64_t)i + 1, t, full ? NULL : base,
                                  NULL);
        if (rc == 0)
            rc = fixture_write_backup(w->sfd, &m);
        if (rc == 0)
            rc = fb_index_add_from_manifest(&idx, &m, &err);
        fb_manifest_fini(&m);
        if (rc)
            return false;
        if (full)
            base = w->ids[i];
    }
    bool ok = !write_index || fb_store_save_index(w->sfd, "S", &idx, &err) == 0;
    fb_index_fini(&idx);
    return ok;
}

static void world_free(world *w)
{
    if (w->sfd >= 0)
        close(w->sfd);
    fb_store_free(w->st);
    fbtest_rmtree(w->dir);
}

static bool exists_at(int dfd, const char *name)
{
    return faccessat(dfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

static int count_prefixed(int dfd, const char *prefix)
{
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY);
    DIR *dir = fdopendir(fd);
    int n = 0;
    struct dirent *de;
    while (dir && (de = readdir(dir)) != NULL)
        n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
    if (dir)
        closedir(dir);
    return n;
}

/* index.json's bytes (malloc'd, NULL when absent). */
static char *index_text(int sfd)
{
    int fd = openat(sfd, "index.json", O_RDONLY);
    if (fd < 0)
        return NULL;
    char *buf = calloc(1, 1 << 20);
    ssize_t n = buf ? read(fd, buf, (1 << 20) - 1) : -1;
    close(fd);
    if (n < 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* The ids in index.json, loaded strictly (no rebuild allowed), as a mask. */
static unsigned indexed_mask(world *w)
{
    fb_index idx;
    bool rebuilt = true;
    fb_error err;
    if (fb_store_load_index(w->st, "S", 0, &idx, &rebuilt, NULL, NULL, &err) != 0 || rebuilt) {
        fprintf(stderr, "  index needed a rebuild or failed to load\n");
        return 0xffffu;
    }
    unsigned mask = 0;
    for (int i = 0; i < N_BACKUPS; i++)
        if (fb_index_find(&idx, w->ids[i]) >= 0)
            mask |= 1u << i;
    fb_index_fini(&idx);
    return mask;
}

static unsigned on_disk_mask(world *w)
{
    unsigned mask = 0;
    for (int i = 0; i < N_BACKUPS; i++)
        if (exists_at(w->sfd, w->ids[i]))
            mask |= 1u << i;
    return mask;
}

static int forget(world *w, const char *const *names, size_t n, bool with_incrementals,
                  bool dry_run, fb_forget_result *r, fb_error *err)
{
    fb_forget_request req = {.session_id = "S", .names = names, .n_names = n,
                             .with_incrementals = with_incrementals, .dry_run = dry_run};
    return fb_forget_run(w->st, &req, r, err);
}

/* One backup by full id, then one by a prefix of its suffix, then two at
 * once by an id prefix and "latest" (the same backup named twice counts
 * once). The index on disk matches the directories after each. */
static void test_remove_by_names(void)
{
    world w;
    REQUIRE(world_make(&w, true));
    fb_error err;
    fb_forget_result r;

    const char *one[] = {w.ids[2]};
    REQUIRE(forget(&w, one, 1, false, false, &r, &err) == 0);
    CHECK_EQ_INT(r.n_items, 1);
    CHECK(r.n_items == 1 && strcmp(r.items[0].id, w.ids[2]) == 0 &&
          r.items[0].type == FB_BACKUP_INCREMENTAL && r.items[0].created_at == NOW + 2 * HOUR &&
          r.items[0].named_as && strcmp(r.items[0].named_as, w.ids[2]) == 0 && !r.items[0].base[0]);
    CHECK_EQ_INT(r.n_remaining, 4);
    CHECK(!r.index_rebuilt);
    fb_forget_result_fini(&r);
    CHECK_EQ_INT(on_disk_mask(&w), 0x1b);
    CHECK_EQ_INT(indexed_mask(&w), 0x1b);
    CHECK_EQ_INT(count_prefixed(w.sfd, ".trash-"), 0);

    /* "0a1b01": the suffix of I1 */
    const char *suffix[] = {"0a1b01"};
    REQUIRE(forget(&w, suffix, 1, false, false, &r, &err) == 0);
    CHECK(r.n_items == 1 && strcmp(r.items[0].id, w.ids[1]) == 0 &&
          strcmp(r.items[0].named_as, "0a1b01") == 0);
    fb_forget_result_fini(&r);
    CHECK_EQ_INT(on_disk_mask(&w), 0x19);
    CHECK_EQ_INT(indexed_mask(&w), 0x19);

    /* I4 by an id prefix and by "latest"; F0 by id (no incremental is
     * based on it any more) */
    char prefix[20];
    memcpy(prefix, w.ids[4], 15);
    prefix[15] = '\0';
    const char *two[] = {prefix, "latest", w.ids[0]};
    REQUIRE(forget(&w, two, 3, false, false, &r, &err) == 0);
    CHECK_EQ_INT(r.n_items, 2);
    CHECK(r.n_items == 2 && strcmp(r.items[0].id, w.ids[0]) == 0 &&
          strcmp(r.items[1].id, w.ids[4]) == 0 && strcmp(r.items[1].named_as, prefix) == 0);
    CHECK_EQ_INT(r.n_remaining, 1);
    fb_forget_result_fini(&r);
    CHECK_EQ_INT(on_disk_mask(&w), 0x08);
    CHECK_EQ_INT(indexed_mask(&w), 0x08);

    /* the last one: an empty index remains, not a missing one */
    const char *last[] = {"latest-full"};
    REQUIRE(forget(&w, last, 1, false, false, &r, &err) == 0);
    CHECK(r.n_items == 1 && strcmp(r.items[0].id, w.ids[3]) == 0 && r.n_remaining == 0);
    fb_forget_result_fini(&r);
    CHECK_EQ_INT(on_disk_mask(&w), 0);
    CHECK_EQ_INT(indexed_mask(&w), 0);
    world_free(&w);
}

/* A name that names nothing or several backups, anywhere in the list:
 * nothing is removed and index.json is byte for byte what it was. */
static void test_bad_names_remove_nothing(void)
{
    world w;
    REQUIRE(world_make(&w, true));
    char *before = index_text(w.sfd);
    REQUIRE(before != NULL);
    fb_error err;
    fb_forget_result r;

    const char *unknown[] = {w.ids[4], "ffffff"};
    CHECK_EQ_INT(forget(&w, unknown, 2, false, false, &r, &err), FB_ENOTFOUND);
    CHECK(strstr(err.message, "ffffff") && strstr(err.message, "nothing was removed"));
    CHECK_EQ_INT(r.n_items, 0);
    fb_forget_result_fini(&r);

    const char *ambiguous[] = {"0a1b", w.ids[4]};
    CHECK_EQ_INT(forget(&w, ambiguous, 2, false, false, &r, &err), FB_EINVAL);
    CHECK(strstr(err.message, "ambiguous") && strstr(err.message, w.ids[0]) &&
          strstr(err.message, "nothing was removed"));
    fb_forget_result_fini(&r);

    /* both: the first failure decides the code, the count of the others
     * is given */
    const char *both[] = {"nope", "0a1b", w.ids[4]};
    CHECK_EQ_INT(forget(&w, both, 3, false, false, &r, &err), FB_ENOTFOUND);
    CHECK(strstr(err.message, "and 1 more of the 3 names") != NULL);
    fb_forget_result_fini(&r);

    const char *bad_chars[] = {"../x"};
    CHECK_EQ_INT(forget(&w, bad_chars, 1, false, false, &r, &err), FB_EINVAL);
    fb_forget_result_fini(&r);
    CHECK_EQ_INT(forget(&w, NULL, 0, false, false, &r, &err), FB_EINVAL);
    fb_forget_result_fini(&r);

    char *after = index_text(w.sfd);
    CHECK(after && strcmp(before, after) == 0);
    CHECK_EQ_INT(on_disk_mask(&w), 0x1f);
    free(before);
    free(after);
    world_free(&w);
}

/* A full backup with incrementals based on it: refused alone (naming
 * them), accepted with them named, or with with_incrementals. */
static void test_base_rule(void)
{
    world w;
    REQUIRE(world_make(&w, true));
    char *before = index_text(w.sfd);
    fb_error err;
    fb_forget_result r;

    const char *base_only[] = {w.ids[0]};
    CHECK_EQ_INT(forget(&w, base_only, 1, false, false, &r, &err), FB_EINVAL);
    CHECK(strstr(err.message, w.ids[0]) && strstr(err.message, w.ids[1]) &&
          strstr(err.message, w.ids[2]) && !strstr(err.message, w.ids[4]) &&
          strstr(err.message, "--with-incrementals") &&
          strstr(err.message, "nothing was removed"));
    fb_forget_result_fini(&r);
    /* one of the two named is not enough */
    const char *half[] = {w.ids[0], w.ids[1]};
    CHECK_EQ_INT(forget(&w, half, 2, false, false, &r, &err), FB_EINVAL);
    CHECK(strstr(err.message, w.ids[2]) && !strstr(err.message, "incremental backups"));
    fb_forget_result_fini(&r);
    /* nor is a dry run allowed what the real run is not */
    CHECK_EQ_INT(forget(&w, base_only, 1, false, true, &r, &err), FB_EINVAL);
    fb_forget_result_fini(&r);
    char *after = index_text(w.sfd);
    CHECK(before && after && strcmp(before, after) == 0);
    free(after);
    CHECK_EQ_INT(on_disk_mask(&w), 0x1f);

    /* an incremental alone needs nothing: nothing depends on it */
    const char *incr[] = {w.ids[4]};
    REQUIRE(forget(&w, incr, 1, false, true, &r, &err) == 0);
    CHECK_EQ_INT(r.n_items, 1);
    fb_forget_result_fini(&r);

    /* with_incrementals: F3 takes I4 along, and says so */
    const char *f3[] = {w.ids[3]};
    REQUIRE(forget(&w, f3, 1, true, false, &r, &err) == 0);
    CHECK_EQ_INT(r.n_items, 2);
    CHECK(r.n_items == 2 && strcmp(r.items[0].id, w.ids[3]) == 0 && r.items[0].named_as &&
          strcmp(r.items[1].id, w.ids[4]) == 0 && !r.items[1].named_as &&
          strcmp(r.items[1].base, w.ids[3]) == 0);
    fb_forget_result_fini(&r);
    CHECK_EQ_INT(on_disk_mask(&w), 0x07);
    CHECK_EQ_INT(indexed_mask(&w), 0x07);

    /* all named: allowed without the option */
    const char *all[] = {w.ids[2], w.ids[0], w.ids[1]};
    REQUIRE(forget(&w, all, 3, false, false, &r, &err) == 0);
    CHECK_EQ_INT(r.n_items, 3);
    fb_forget_result_fini(&r);
    CHECK_EQ_INT(on_disk_mask(&w), 0);
    CHECK_EQ_INT(indexed_mask(&w), 0);
    free(before);
    world_free(&w);
}

/* A dry run reports what would go and changes nothing: no index written
 * (here there is none: it is rebuilt in memory only), no leftovers
 * cleared, nothing renamed; it takes no lock. */
static void test_dry_run(void)
{
    world w;
    REQUIRE(world_make(&w, false));
    REQUIRE(mkdirat(w.sfd, ".trash-x", 0700) == 0);
    fb_lock held;
    fb_error err;
    REQUIRE(fb_lock_try(w.sfd, "S", &held, &err) == 0);
    fb_forget_result r;
    const char *names[] = {"0a1b03"};
    REQUIRE(forget(&w, names, 1, true, true, &r, &err) == 0);
    CHECK(r.index_rebuilt);
    CHECK_EQ_INT(r.n_items, 2);
    CHECK_EQ_INT(r.n_remaining, 3);
    fb_forget_result_fini(&r);
    fb_lock_release(&held);
    CHECK(!exists_at(w.sfd, "index.json"));
    CHECK(exists_at(w.sfd, ".trash-x"));
    CHECK_EQ_INT(on_disk_mask(&w), 0x1f);
    world_free(&w);
}

/* Under the lock: busy when held; a real run clears leftovers first and
 * writes a rebuilt index before it removes anything. */
static void test_lock_and_leftovers(void)
{
    world w;
    REQUIRE(world_make(&w, false));
    REQUIRE(mkdirat(w.sfd, ".trash-x", 0700) == 0);
    REQUIRE(mkdirat(w.sfd, ".tmp-0123456789abcdef", 0700) == 0);
    fb_lock held;
    fb_error err;
    REQUIRE(fb_lock_try(w.sfd, "S", &held, &err) == 0);
    fb_forget_result r;
    const char *names[] = {w.ids[4]};
    fb_forget_request req = {.session_id = "S", .names = names, .n_names = 1,
                             .lock_wait_seconds = 0};
    CHECK_EQ_INT(fb_forget_run(w.st, &req, &r, &err), FB_EBUSY);
    CHECK(strstr(err.message, "S") != NULL);
    fb_forget_result_fini(&r);
    fb_lock_release(&held);
    CHECK_EQ_INT(on_disk_mask(&w), 0x1f);
    CHECK(exists_at(w.sfd, ".trash-x"));

    REQUIRE(fb_forget_run(w.st, &req, &r, &err) == 0);
    CHECK(r.index_rebuilt);
    CHECK_EQ_INT(r.n_items, 1);
    fb_forget_result_fini(&r);
    CHECK_EQ_INT(count_prefixed(w.sfd, ".trash-"), 0);
    CHECK_EQ_INT(count_prefixed(w.sfd, ".tmp-"), 0);
    CHECK_EQ_INT(on_disk_mask(&w), 0x0f);
    CHECK_EQ_INT(indexed_mask(&w), 0x0f);
    world_free(&w);
}

/* A session with no store directory has no backup to name. */
static void test_session_without_backups(void)
{
    world w;
    REQUIRE(world_make(&w, true));
    fb_forget_result r;
    fb_error err;
    const char *names[] = {"latest"};
    fb_forget_request req = {.session_id = "none-yet", .names = names, .n_names = 1};
    CHECK_EQ_INT(fb_forget_run(w.st, &req, &r, &err), FB_ENOTFOUND);
    CHECK(strstr(err.message, "none-yet") != NULL);
    fb_forget_result_fini(&r);
    int fd = openat(fb_store_backups_fd(w.st), "none-yet", O_RDONLY);
    CHECK(fd < 0);
    if (fd >= 0)
        close(fd);
    world_free(&w);
}

int main(void)
{
    RUN_TEST(test_remove_by_names);
    RUN_TEST(test_bad_names_remove_nothing);
    RUN_TEST(test_base_rule);
    RUN_TEST(test_dry_run);
    RUN_TEST(test_lock_and_leftovers);
    RUN_TEST(test_session_without_backups);
    FBTEST_EXIT();
}
