/* Tests of retention: the SPEC rules on a 12 full + 20 incremental history
 * with exact survivors, the protections (newest, newest full, min_keep)
 * when everything is old, clock anomalies (order is by seq, never by
 * time), the describe texts, and the crash-safe apply on disk. */
#include <dirent.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "fb_retention.h"
#include "fbtest.h"
#include "fb_cleanup.h"
#include "fb_lock.h"
#include "store_fixture.h"

#define NOW 1796094900LL /* 2026-12-01T03:15:00Z */
#define DAY 86400LL

typedef struct spec_row {
    char type; /* 'F' or 'I' */
    int64_t created_at;
} spec_row;

/* Builds an index "S" with one record per row, seq 1..n in row order. */
static int build_index(fb_index *idx, const spec_row *rows, size_t n)
{
    fb_index_init(idx, "S");
    char last_full[FB_BACKUP_ID_LEN + 1] = "";
    for (size_t i = 0; i < n; i++) {
        fb_backup_type type = rows[i].type == 'F' ? FB_BACKUP_FULL : FB_BACKUP_INCREMENTAL;
        char id[FB_BACKUP_ID_LEN + 1];
        fixture_id(rows[i].created_at, type, (unsigned)(i + 1), id);
        fb_manifest m;
        fb_error err;
        int rc = fixture_manifest(&m, "S", id, i + 1, rows[i].created_at,
                                  type == FB_BACKUP_FULL ? NULL : (last_full[0] ? last_full : NULL),
                                  NULL);
        if (rc == 0)
            rc = fb_index_add_from_manifest(idx, &m, &err);
        fb_manifest_fini(&m);
        if (rc)
            return rc;
        if (type == FB_BACKUP_FULL)
            memcpy(last_full, id, sizeof last_full);
    }
    return 0;
}

static fb_retention_policy policy(uint32_t keep_full, uint32_t max_age_days, uint32_t min_keep)
{
    fb_retention_policy p = {.keep_full = keep_full, .max_age_days = max_age_days,
                             .min_keep = min_keep};
    return p;
}

/* Checks decision i (seq i+1) against the expected remove flag and rule. */
static void expect_decision(const fb_retention_decision *d, size_t i, bool remove,
                            fb_retention_rule rule)
{
    if (d[i].remove != remove || d[i].rule != rule)
        fprintf(stderr, "  seq %zu: got remove=%d rule=%d, want remove=%d rule=%d\n", i + 1,
                d[i].remove, d[i].rule, remove, rule);
    CHECK(d[i].remove == remove);
    CHECK(d[i].rule == rule);
}

/* 12 full + 20 incremental backups over two months; defaults keep_full 10,
 * max_age_days 30, min_keep 1. Ages in days (plus one minute). */
static void test_spec_scenario(void)
{
    static const struct {
        char type;
        int age_days;
    } hist[32] = {
        {'F', 58}, {'I', 57}, {'I', 56}, {'F', 52}, {'I', 51}, {'I', 50}, {'F', 46}, {'I', 45},
        {'F', 40}, {'I', 39}, {'F', 34}, {'I', 33}, {'I', 32}, {'F', 29}, {'I', 28}, {'F', 24},
        {'I', 23}, {'I', 22}, {'F', 18}, {'I', 17}, {'F', 14}, {'I', 13}, {'I', 12}, {'F', 9},
        {'I', 8},  {'I', 7},  {'F', 5},  {'I', 4},  {'I', 3},  {'F', 2},  {'I', 1},  {'I', 0},
    };
    spec_row rows[32];
    int fulls = 0;
    for (int i = 0; i < 32; i++) {
        rows[i].type = hist[i].type;
        rows[i].created_at = NOW - hist[i].age_days * DAY - 60;
        fulls += hist[i].type == 'F';
    }
    REQUIRE(fulls == 12);
    fb_index idx;
    REQUIRE(build_index(&idx, rows, 32) == 0);
    fb_retention_policy p = policy(10, 30, 1);
    fb_retention_decision *d = NULL;
    size_t n = 0;
    fb_error err;
    REQUIRE(fb_retention_plan(&idx, &p, NOW, &d, &n, &err) == 0);
    REQUIRE(n == 32);
    for (size_t i = 0; i < n; i++)
        CHECK(strcmp(d[i].id, idx.records[i].id) == 0);

    /* seq 1 and 4: the two oldest of 12 fulls; 2..13 otherwise: over 30 days */
    expect_decision(d, 0, true, FB_REMOVE_EXCESS_FULL);
    expect_decision(d, 3, true, FB_REMOVE_EXCESS_FULL);
    const size_t too_old[] = {1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    for (size_t k = 0; k < sizeof too_old / sizeof too_old[0]; k++)
        expect_decision(d, too_old[k], true, FB_REMOVE_TOO_OLD);
    for (size_t i = 13; i < 29; i++)
        expect_decision(d, i, false, FB_KEEP_POLICY);
    expect_decision(d, 29, false, FB_KEEP_NEWEST_FULL);
    expect_decision(d, 30, false, FB_KEEP_POLICY);
    expect_decision(d, 31, false, FB_KEEP_NEWEST);
    size_t survivors = 0;
    for (size_t i = 0; i < n; i++)
        survivors += !d[i].remove;
    CHECK_EQ_INT(survivors, 19);

    char text[128];
    fb_retention_describe(&d[0], &p, text, sizeof text);
    CHECK(strcmp(text, "removed: not among the 10 newest full backups") == 0);
    fb_retention_describe(&d[1], &p, text, sizeof text);
    CHECK(strcmp(text, "removed: older than 30 days") == 0);
    fb_retention_describe(&d[20], &p, text, sizeof text);
    CHECK(strcmp(text, "kept: within policy") == 0);
    fb_retention_describe(&d[29], &p, text, sizeof text);
    CHECK(strcmp(text, "kept: newest full") == 0);
    fb_retention_describe(&d[31], &p, text, sizeof text);
    CHECK(strcmp(text, "kept: newest backup") == 0);
    free(d);

    /* max_age_days 0 disables the age rule: only the excess fulls go */
    p = policy(10, 0, 1);
    REQUIRE(fb_retention_plan(&idx, &p, NOW, &d, &n, &err) == 0);
    survivors = 0;
    for (size_t i = 0; i < n; i++)
        survivors += !d[i].remove;
    CHECK_EQ_INT(survivors, 30);
    CHECK(d[0].remove && d[3].remove);
    free(d);
    fb_index_fini(&idx);
}

/* The age boundary: exactly max_age is kept, one second more is not. */
static void test_age_boundary(void)
{
    spec_row rows[] = {{'F', NOW - 30 * DAY - 1}, {'F', NOW - 30 * DAY}, {'F', NOW}};
    fb_index idx;
    REQUIRE(build_index(&idx, rows, 3) == 0);
    fb_retention_policy p = policy(10, 30, 1);
    fb_retention_decision *d = NULL;
    size_t n = 0;
    fb_error err;
    REQUIRE(fb_retention_plan(&idx, &p, NOW, &d, &n, &err) == 0);
    REQUIRE(n == 3);
    expect_decision(d, 0, true, FB_REMOVE_TOO_OLD);
    expect_decision(d, 1, false, FB_KEEP_POLICY);
    expect_decision(d, 2, false, FB_KEEP_NEWEST);
    free(d);
    fb_index_fini(&idx);
}

static void test_all_old(void)
{
    spec_row rows[] = {{'F', NOW - 200 * DAY}, {'I', NOW - 190 * DAY}, {'F', NOW - 180 * DAY},
                       {'I', NOW - 170 * DAY}, {'I', NOW - 160 * DAY}};
    fb_index idx;
    REQUIRE(build_index(&idx, rows, 5) == 0);
    fb_retention_policy p = policy(10, 30, 1);
    fb_retention_decision *d = NULL;
    size_t n = 0;
    fb_error err;
    REQUIRE(fb_retention_plan(&idx, &p, NOW, &d, &n, &err) == 0);
    REQUIRE(n == 5);
    expect_decision(d, 0, true, FB_REMOVE_TOO_OLD);
    expect_decision(d, 1, true, FB_REMOVE_TOO_OLD);
    expect_decision(d, 2, false, FB_KEEP_NEWEST_FULL);
    expect_decision(d, 3, true, FB_REMOVE_TOO_OLD);
    expect_decision(d, 4, false, FB_KEEP_NEWEST);
    free(d);

    /* min_keep 3 gives back the newest removable one */
    p = policy(10, 30, 3);
    REQUIRE(fb_retention_plan(&idx, &p, NOW, &d, &n, &err) == 0);
    expect_decision(d, 0, true, FB_REMOVE_TOO_OLD);
    expect_decision(d, 1, true, FB_REMOVE_TOO_OLD);
    expect_decision(d, 2, false, FB_KEEP_NEWEST_FULL);
    expect_decision(d, 3, false, FB_KEEP_MIN_KEEP);
    expect_decision(d, 4, false, FB_KEEP_NEWEST);
    char text[64];
    fb_retention_describe(&d[3], &p, text, sizeof text);
    CHECK(strcmp(text, "kept: min_keep 3") == 0);
    free(d);

    /* min_keep larger than the history keeps everything */
    p = policy(10, 30, 50);
    REQUIRE(fb_retention_plan(&idx, &p, NOW, &d, &n, &err) == 0);
    for (size_t i = 0; i < n; i++)
        CHECK(!d[i].remove);
    CHECK(d[0].rule == FB_KEEP_MIN_KEEP && d[1].rule == FB_KEEP_MIN_KEEP);
    free(d);
    fb_index_fini(&idx);

    /* only incrementals, all old: the newest survives */
    spec_row incr[] = {{'I', NOW - 100 * DAY}, {'I', NOW - 90 * DAY}};
    REQUIRE(build_index(&idx, incr, 2) == 0);
    p = policy(10, 30, 1);
    REQUIRE(fb_retention_plan(&idx, &p, NOW, &d, &n, &err) == 0);
    expect_decision(d, 0, true, FB_REMOVE_TOO_OLD);
    expect_decision(d, 1, false, FB_KEEP_NEWEST);
    free(d);
    fb_index_fini(&idx);

    /* empty index: empty plan */
    fb_index_init(&idx, "S");
    REQUIRE(fb_retention_plan(&idx, &p, NOW, &d, &n, &err) == 0);
    CHECK_EQ_INT(n, 0);
    free(d);
    fb_index_fini(&idx);
}

static void test_keep_full(void)
{
    spec_row rows[] = {{'F', NOW - 4 * DAY}, {'I', NOW - 3 * DAY}, {'F', NOW - 2 * DAY},
                       {'F', NOW - 1 * DAY}, {'I', NOW}};
    fb_index idx;
    REQUIRE(build_index(&idx, rows, 5) == 0);
    fb_retention_policy p = policy(1, 30, 1);
    fb_retention_decision *d = NULL;
    size_t n = 0;
    fb_error err;
    REQUIRE(fb_retention_plan(&idx, &p, NOW, &d, &n, &err) == 0);
    expect_decision(d, 0, true, FB_REMOVE_EXCESS_FULL);
    expect_decision(d, 1, false, FB_KEEP_POLICY);
    expect_decision(d, 2, true, FB_REMOVE_EXCESS_FULL);
    expect_decision(d, 3, false, FB_KEEP_NEWEST_FULL);
    expect_decision(d, 4, false, FB_KEEP_NEWEST);
    char text[64];
    fb_retention_describe(&d[0], &p, text, sizeof text);
    CHECK(strcmp(text, "removed: not the newest full backup") == 0);
    free(d);
    /* keep_full 0 still keeps the newest full */
    p = policy(0, 0, 1);
    REQUIRE(fb_retention_plan(&idx, &p, NOW, &d, &n, &err) == 0);
    expect_decision(d, 0, true, FB_REMOVE_EXCESS_FULL);
    expect_decision(d, 2, true, FB_REMOVE_EXCESS_FULL);
    expect_decision(d, 3, false, FB_KEEP_NEWEST_FULL);
    free(d);
    fb_index_fini(&idx);
}

/* F27: a clock that jumped never makes the newest backup (by seq) go. */
static void test_clock_anomalies(void)
{
    const int64_t ten_years = 3653 * DAY;
    fb_retention_policy p = policy(10, 30, 1);
    fb_retention_decision *d = NULL;
    size_t n = 0;
    fb_error err;
    fb_index idx;

    /* t, t - 1 day (clock went back), then a backup dated 10 years ahead */
    spec_row future[] = {{'F', NOW}, {'I', NOW - DAY}, {'F', NOW + ten_years}};
    REQUIRE(build_index(&idx, future, 3) == 0);
    REQUIRE(fb_retention_plan(&idx, &p, NOW, &d, &n, &err) == 0);
    expect_decision(d, 0, false, FB_KEEP_POLICY);
    expect_decision(d, 1, false, FB_KEEP_POLICY);
    expect_decision(d, 2, false, FB_KEEP_NEWEST);
    free(d);
    /* ten years later the future-dated one is still the newest and stays */
    REQUIRE(fb_retention_plan(&idx, &p, NOW + ten_years + 40 * DAY, &d, &n, &err) == 0);
    expect_decision(d, 0, true, FB_REMOVE_TOO_OLD);
    expect_decision(d, 1, true, FB_REMOVE_TOO_OLD);
    expect_decision(d, 2, false, FB_KEEP_NEWEST);
    free(d);
    fb_index_fini(&idx);

    /* the newest backup dated 10 years in the past (clock reset) */
    spec_row past[] = {{'F', NOW - DAY}, {'I', NOW}, {'F', NOW - ten_years},
                       {'I', NOW - ten_years}};
    REQUIRE(build_index(&idx, past, 4) == 0);
    REQUIRE(fb_retention_plan(&idx, &p, NOW, &d, &n, &err) == 0);
    expect_decision(d, 0, false, FB_KEEP_POLICY);
    expect_decision(d, 1, false, FB_KEEP_POLICY);
    expect_decision(d, 2, false, FB_KEEP_NEWEST_FULL);
    expect_decision(d, 3, false, FB_KEEP_NEWEST);
    free(d);
    fb_index_fini(&idx);

    /* extreme timestamps do not overflow the age arithmetic */
    spec_row extreme[] = {{'F', -62135596800LL /* year 1 */}, {'F', NOW}};
    if (build_index(&idx, extreme, 2) == 0) {
        REQUIRE(fb_retention_plan(&idx, &p, INT64_MAX, &d, &n, &err) == 0);
        expect_decision(d, 0, true, FB_REMOVE_TOO_OLD);
        expect_decision(d, 1, false, FB_KEEP_NEWEST);
        free(d);
    }
    fb_index_fini(&idx);
}

static int count_entries(int dfd, const char *prefix)
{
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY);
    DIR *dir = fdopendir(fd);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL)
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(dir);
    return n;
}

static void test_apply_on_disk(void)
{
    char *dir = fbtest_tempdir();
    fb_store *st = fixture_store(dir);
    REQUIRE(st != NULL);
    fb_error err;
    int sfd = -1;
    REQUIRE(fb_store_open_session(st, "S", true, &sfd, &err) == 0);
    /* F1 I2 F3 I4 F5, one a day */
    const char types[5] = {'F', 'I', 'F', 'I', 'F'};
    char ids[5][FB_BACKUP_ID_LEN + 1];
    fb_index idx;
    fb_index_init(&idx, "S");
    for (int i = 0; i < 5; i++) {
        int64_t t = NOW - (4 - i) * DAY;
        fixture_id(t, types[i] == 'F' ? FB_BACKUP_FULL : FB_BACKUP_INCREMENTAL, 0xa0 + i, ids[i]);
        fb_manifest m;
        REQUIRE(fixture_manifest(&m, "S", ids[i], (uint64_t)i + 1, t,
                                 types[i] == 'I' ? ids[i - 1] : NULL, NULL) == 0);
        REQUIRE(fixture_write_backup(sfd, &m) == 0);
        REQUIRE(fb_index_add_from_manifest(&idx, &m, &err) == 0);
        fb_manifest_fini(&m);
    }
    REQUIRE(fb_store_save_index(sfd, "S", &idx, &err) == 0);

    fb_retention_policy p = policy(1, 0, 1);
    fb_retention_decision *d = NULL;
    size_t n = 0;
    REQUIRE(fb_retention_plan(&idx, &p, NOW, &d, &n, &err) == 0);
    CHECK(d[0].remove && d[2].remove && !d[1].remove && !d[3].remove && !d[4].remove);

    /* one of the doomed dirs was already deleted by hand: still fine */
    REQUIRE(fb_remove_tree_at(sfd, "S", ids[2], &err) == 0);
    int rc = fb_retention_apply(sfd, "S", &idx, d, n, &err);
    CHECK_EQ_INT(rc, 0);
    if (rc)
        fprintf(stderr, "  %s\n", err.message);
    CHECK_EQ_INT(idx.n, 3);
    CHECK(fb_index_find(&idx, ids[0]) < 0 && fb_index_find(&idx, ids[2]) < 0);
    CHECK(faccessat(sfd, ids[0], F_OK, AT_SYMLINK_NOFOLLOW) != 0);
    CHECK(faccessat(sfd, ids[1], F_OK, 0) == 0);
    CHECK(faccessat(sfd, ids[4], F_OK, 0) == 0);
    CHECK_EQ_INT(count_entries(sfd, ".trash-"), 0);
    CHECK_EQ_INT(count_entries(sfd, ".tmp-"), 0);

    /* the index on disk matches, and loading it needs no rebuild */
    fb_index loaded;
    bool rebuilt = true;
    REQUIRE(fb_store_load_index(st, "S", 0, &loaded, &rebuilt, NULL, NULL, &err) == 0);
    CHECK(!rebuilt);
    CHECK_EQ_INT(loaded.n, 3);
    if (loaded.n == 3) {
        CHECK(strcmp(loaded.records[0].id, ids[1]) == 0);
        CHECK(strcmp(loaded.records[1].id, ids[3]) == 0);
        CHECK(strcmp(loaded.records[2].id, ids[4]) == 0);
    }
    fb_index_fini(&loaded);

    /* a plan naming a backup the index does not hold is a caller bug,
     * and nothing is touched */
    CHECK_EQ_INT(fb_retention_apply(sfd, "S", &idx, d, n, &err), FB_EMISUSE);
    CHECK_EQ_INT(idx.n, 3);
    free(d);

    /* a plan that removes nothing writes nothing */
    REQUIRE(fb_retention_plan(&idx, &p, NOW, &d, &n, &err) == 0);
    for (size_t i = 0; i < n; i++)
        CHECK(!d[i].remove);
    REQUIRE(unlinkat(sfd, "index.json", 0) == 0);
    CHECK_EQ_INT(fb_retention_apply(sfd, "S", &idx, d, n, &err), 0);
    CHECK(faccessat(sfd, "index.json", F_OK, 0) != 0);
    free(d);

    fb_index_fini(&idx);
    close(sfd);
    fb_store_free(st);
    fbtest_rmtree(dir);
}

/* When the index cannot be written, nothing is removed and idx is intact. */
static void test_apply_index_failure_removes_nothing(void)
{
    char *dir = fbtest_tempdir();
    fb_store *st = fixture_store(dir);
    REQUIRE(st != NULL);
    fb_error err;
    int sfd = -1;
    REQUIRE(fb_store_open_session(st, "S", true, &sfd, &err) == 0);
    char ids[2][FB_BACKUP_ID_LEN + 1];
    fb_index idx;
    fb_index_init(&idx, "S");
    for (int i = 0; i < 2; i++) {
        fixture_id(NOW - (1 - i) * DAY, FB_BACKUP_FULL, 0xb0 + i, ids[i]);
        fb_manifest m;
        REQUIRE(fixture_manifest(&m, "S", ids[i], (uint64_t)i + 1, NOW - (1 - i) * DAY, NULL,
                                 NULL) == 0);
        REQUIRE(fixture_write_backup(sfd, &m) == 0);
        REQUIRE(fb_index_add_from_manifest(&idx, &m, &err) == 0);
        fb_manifest_fini(&m);
    }
    /* index.json is a non-empty directory: the atomic rename must fail */
    REQUIRE(mkdirat(sfd, "index.json", 0700) == 0);
    int fd = openat(sfd, "index.json/x", O_WRONLY | O_CREAT, 0600);
    close(fd);
    fb_retention_policy p = policy(1, 0, 1);
    fb_retention_decision *d = NULL;
    size_t n = 0;
    REQUIRE(fb_retention_plan(&idx, &p, NOW, &d, &n, &err) == 0);
    REQUIRE(n == 2 && d[0].remove);
    CHECK(fb_retention_apply(sfd, "S", &idx, d, n, &err) < 0);
    CHECK(strstr(err.message, "index.json") != NULL);
    CHECK_EQ_INT(idx.n, 2);
    CHECK(faccessat(sfd, ids[0], F_OK, 0) == 0);
    CHECK_EQ_INT(count_entries(sfd, ".trash-"), 0);
    free(d);
    fb_index_fini(&idx);
    close(sfd);
    fb_store_free(st);
    fbtest_rmtree(dir);
}

/* fb_cleanup_run: the whole sequence. A dry run lists the leftovers and
 * changes nothing; a real run clears them and removes what the plan says;
 * a held lock is FB_EBUSY; a session without backups is empty. */
static void test_cleanup_run(void)
{
    char *dir = fbtest_tempdir();
    fb_store *st = fixture_store(dir);
    REQUIRE(st != NULL);
    fb_error err;
    int sfd = -1;
    REQUIRE(fb_store_open_session(st, "S", true, &sfd, &err) == 0);
    char ids[3][FB_BACKUP_ID_LEN + 1];
    for (int i = 0; i < 3; i++) {
        int64_t t = NOW - (2 - i) * DAY;
        fixture_id(t, FB_BACKUP_FULL, 0xb0 + i, ids[i]);
        fb_manifest m;
        REQUIRE(fixture_manifest(&m, "S", ids[i], (uint64_t)i + 1, t, NULL, NULL) == 0);
        REQUIRE(fixture_write_backup(sfd, &m) == 0);
        fb_manifest_fini(&m);
    }
    REQUIRE(mkdirat(sfd, ".tmp-0123456789abcdef", 0700) == 0);
    fb_cleanup_request req = {.session_id = "S", .policy = policy(1, 0, 1), .now = NOW,
                              .dry_run = true};
    fb_cleanup_result r;
    REQUIRE(fb_cleanup_run(st, &req, &r, &err) == 0);
    CHECK_EQ_INT(r.n_items, 3);
    CHECK_EQ_INT(r.n_removed, 2);
    CHECK(r.index_rebuilt); /* no index.json yet: rebuilt in memory */
    CHECK(r.n_leftovers == 1 && strcmp(r.leftovers[0], ".tmp-0123456789abcdef") == 0);
    CHECK(r.n_items == 3 && r.items[2].type == FB_BACKUP_FULL && !r.items[2].decision.remove &&
          r.items[0].created_at == NOW - 2 * DAY);
    fb_cleanup_result_fini(&r);
    CHECK(faccessat(sfd, ids[0], F_OK, 0) == 0);
    CHECK(faccessat(sfd, "index.json", F_OK, 0) != 0); /* a dry run writes nothing */
    CHECK_EQ_INT(count_entries(sfd, ".tmp-"), 1);

    /* Held lock: busy, nothing done. */
    fb_lock held;
    REQUIRE(fb_lock_try(sfd, "S", &held, &err) == 0);
    req.dry_run = false;
    req.lock_wait_seconds = 0;
    CHECK_EQ_INT(fb_cleanup_run(st, &req, &r, &err), FB_EBUSY);
    fb_cleanup_result_fini(&r);
    fb_lock_release(&held);
    CHECK(faccessat(sfd, ids[0], F_OK, 0) == 0);

    REQUIRE(fb_cleanup_run(st, &req, &r, &err) == 0);
    CHECK_EQ_INT(r.n_removed, 2);
    CHECK(r.n_leftovers == 0);
    fb_cleanup_result_fini(&r);
    CHECK(faccessat(sfd, ids[0], F_OK, AT_SYMLINK_NOFOLLOW) != 0);
    CHECK(faccessat(sfd, ids[1], F_OK, AT_SYMLINK_NOFOLLOW) != 0);
    CHECK(faccessat(sfd, ids[2], F_OK, 0) == 0);
    CHECK_EQ_INT(count_entries(sfd, ".tmp-"), 0);
    CHECK_EQ_INT(count_entries(sfd, ".trash-"), 0);

    req.session_id = "none-yet";
    REQUIRE(fb_cleanup_run(st, &req, &r, &err) == 0);
    CHECK(r.n_items == 0 && r.n_removed == 0);
    fb_cleanup_result_fini(&r);
    close(sfd);
    fb_store_free(st);
    fbtest_rmtree(dir);
}

int main(void)
{
    RUN_TEST(test_spec_scenario);
    RUN_TEST(test_age_boundary);
    RUN_TEST(test_all_old);
    RUN_TEST(test_keep_full);
    RUN_TEST(test_clock_anomalies);
    RUN_TEST(test_apply_on_disk);
    RUN_TEST(test_apply_index_failure_removes_nothing);
    RUN_TEST(test_cleanup_run);
    FBTEST_EXIT();
}
