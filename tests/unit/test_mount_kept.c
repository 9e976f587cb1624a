/* Unit tests of the files the mount keeps for reads that come without an
 * open (fb_mount_tree_file_get/_put, core/mount/mount_files.c): one file
 * per inode shared by its reads, expired by the janitor after its last
 * read, bounded in number, and still reading once its backup is removed. */
#include <pthread.h>
#include <sys/stat.h>

#include "mount_fixture.h"

static uint64_t ino_of(fb_mount_tree *t, const char *sid, const char *bid, const char *rel)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s/%s", sid, bid, rel);
    fb_mount_attr a;
    if (lookup_path(t, path, &a) != 0)
        return 0;
    return a.st.st_ino;
}

/* Waits up to 3 s for the janitor to have closed every kept file and reader. */
static void wait_all_closed(fb_mount_tree *t, fb_mount_stats *st)
{
    for (int i = 0; i < 300; i++) {
        fb_mount_tree_get_stats(t, st);
        if (st->kept_files == 0 && st->open_archives == 0 && st->idle_archives == 0)
            return;
        usleep(10000);
    }
}

static void test_kept_file_shared_then_expired(void)
{
    char *tmp = setup_store();
    REQUIRE(tmp);
    fb_mount_tree *t = open_tree(tmp, 10.0, 1 << 20);
    REQUIRE(t);
    fb_error err;
    uint64_t ino = ino_of(t, "sess-a", ID_FULL, "logs/run.log");
    REQUIRE(ino != 0);
    fb_mount_file *f1 = NULL, *f2 = NULL;
    REQUIRE(fb_mount_tree_file_get(t, ino, &f1, &err) == 0);
    REQUIRE(fb_mount_tree_file_get(t, ino, &f2, &err) == 0);
    CHECK(f1 == f2); /* the first read's proof serves the next ones */
    fb_mount_stats st;
    fb_mount_tree_get_stats(t, &st);
    CHECK_EQ_INT(st.kept_files, 1);
    CHECK_EQ_INT(st.open_archives, 1);
    uint8_t *want = malloc(150000);
    content_of(&full_entries[7], want);
    uint8_t buf[4096];
    size_t got = 0;
    CHECK_EQ_INT(fb_mount_file_read(f1, buf, sizeof buf, 100000, &got, &err), 0);
    CHECK(got == sizeof buf && memcmp(buf, want + 100000, got) == 0);
    fb_mount_file_put(t, f1);
    fb_mount_file_put(t, f2);
    /* Unused now, but kept a moment for the next read. */
    fb_mount_tree_get_stats(t, &st);
    CHECK_EQ_INT(st.kept_files, 1);
    REQUIRE(fb_mount_tree_file_get(t, ino, &f1, &err) == 0);
    CHECK(f1 == f2);
    fb_mount_file_put(t, f1);
    wait_all_closed(t, &st);
    CHECK_EQ_INT(st.kept_files, 0);
    CHECK_EQ_INT(st.open_archives + st.idle_archives, 0);
    /* A file expired is opened and proved again by its next read. */
    REQUIRE(fb_mount_tree_file_get(t, ino, &f1, &err) == 0);
    CHECK_EQ_INT(fb_mount_file_read(f1, buf, sizeof buf, 0, &got, &err), 0);
    CHECK(got == sizeof buf && memcmp(buf, want, got) == 0);
    fb_mount_file_put(t, f1);
    /* Not a file: refused, nothing kept. */
    uint64_t dir = ino_of(t, "sess-a", ID_FULL, "logs");
    CHECK_EQ_INT(fb_mount_tree_file_get(t, dir, &f2, &err), FB_EMISUSE);
    CHECK(f2 == NULL);
    CHECK_EQ_INT(fb_mount_tree_file_get(t, 999999, &f2, &err), FB_ENOTFOUND);
    fb_mount_tree_get_stats(t, &st);
    CHECK_EQ_INT(st.kept_files, 1);
    free(want);
    /* Kept files still there when the daemon stops go with the tree. */
    fb_mount_tree_free(t);
    fbtest_rmtree(tmp);
}

/* A run of reads of one kept file wakes the janitor once, not once a read:
 * each read's put leaves the file idle with a later deadline, which the
 * janitor finds when it wakes for the first one. */
static void test_kept_file_reads_do_not_wake_the_janitor(void)
{
    char *tmp = setup_store();
    REQUIRE(tmp);
    fb_mount_tree *t = open_tree(tmp, 10.0, 1 << 20);
    REQUIRE(t);
    fb_error err;
    uint64_t ino = ino_of(t, "sess-a", ID_FULL, "logs/run.log");
    REQUIRE(ino != 0);
    uint8_t *want = malloc(150000);
    content_of(&full_entries[7], want);
    uint8_t buf[1000];
    fb_mount_stats st;
    uint64_t woke_before = 0;
    for (int i = 0; i < 150; i++) {
        fb_mount_file *f = NULL;
        REQUIRE(fb_mount_tree_file_get(t, ino, &f, &err) == 0);
        size_t got = 0;
        CHECK_EQ_INT(fb_mount_file_read(f, buf, sizeof buf, (uint64_t)i * 1000, &got, &err), 0);
        CHECK(got == sizeof buf && memcmp(buf, want + i * 1000, got) == 0);
        fb_mount_file_put(t, f);
        /* Time for a woken janitor to run, as between a reader's reads
         * (150 reads in about 0.3 s, well inside the 1 s deadline). */
        usleep(i == 0 ? 20000 : 2000);
        if (i == 0) {
            fb_mount_tree_get_stats(t, &st);
            woke_before = st.janitor_wakeups;
        }
    }
    fb_mount_tree_get_stats(t, &st);
    CHECK_EQ_INT(st.kept_files, 1);
    /* 149 reads within a second of the first: no wakeup for any of them. */
    CHECK_EQ_INT(st.janitor_wakeups - woke_before, 0);
    /* And the file still expires. */
    wait_all_closed(t, &st);
    CHECK_EQ_INT(st.kept_files, 0);
    free(want);
    fb_mount_tree_free(t);
    fbtest_rmtree(tmp);
}

static void test_kept_file_reads_after_its_backup_is_removed(void)
{
    char *tmp = setup_store();
    REQUIRE(tmp);
    fb_mount_tree *t = open_tree(tmp, 0.0, 1 << 20);
    REQUIRE(t);
    fb_error err;
    uint64_t ino = ino_of(t, "sess-a", ID_FULL, "artifacts/big.bin");
    REQUIRE(ino != 0);
    fb_mount_file *f = NULL;
    REQUIRE(fb_mount_tree_file_get(t, ino, &f, &err) == 0);
    fb_mount_file_put(t, f);
    REQUIRE(remove_backup(tmp, "sess-a", ID_FULL) == 0);
    fb_mount_attr a;
    char path[512];
    snprintf(path, sizeof path, "sess-a/%s/artifacts/big.bin", ID_FULL);
    CHECK_EQ_INT(lookup_path(t, path, &a), FB_ENOTFOUND);
    /* The reads going on keep finding the kept file and its archive. */
    uint8_t *want = malloc(200000);
    content_of(&full_entries[1], want);
    uint8_t buf[8192];
    for (uint64_t off = 0; off < 200000; off += sizeof buf) {
        REQUIRE(fb_mount_tree_file_get(t, ino, &f, &err) == 0);
        size_t got = 0;
        CHECK_EQ_INT(fb_mount_file_read(f, buf, sizeof buf, off, &got, &err), 0);
        size_t n = 200000 - off < sizeof buf ? (size_t)(200000 - off) : sizeof buf;
        CHECK(got == n && memcmp(buf, want + off, n) == 0);
        fb_mount_file_put(t, f);
    }
    free(want);
    fb_mount_stats st;
    wait_all_closed(t, &st);
    CHECK_EQ_INT(st.kept_files + st.open_archives + st.idle_archives, 0);
    /* Expired, the file of a removed backup is gone. */
    CHECK(fb_mount_tree_file_get(t, ino, &f, &err) != 0);
    fb_mount_tree_free(t);
    fbtest_rmtree(tmp);
}

/* More files read than FB_MOUNT_KEPT_MAX: the least recently read go at
 * once, so a walk of many files holds a bounded number. */
static void test_kept_files_bounded(void)
{
    enum { N = FB_MOUNT_KEPT_MAX + 40 };
    static spec_entry many[N];
    static char names[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "f%04d.json", i);
        many[i] = (spec_entry){names[i], FB_ENTRY_FILE, 0644, 40, (uint8_t)(i + 1), NULL};
    }
    char *tmp = fbtest_tempdir();
    make_root(tmp);
    REQUIRE(write_backup(tmp, "sess-m", ID_FULL, 1, T0, many, N) == 0);
    fb_mount_tree *t = open_tree(tmp, 10.0, 1 << 20);
    REQUIRE(t);
    fb_error err;
    fb_mount_stats st;
    uint8_t want[40], buf[64];
    for (int i = 0; i < N; i++) {
        uint64_t ino = ino_of(t, "sess-m", ID_FULL, names[i]);
        REQUIRE(ino != 0);
        fb_mount_file *f = NULL;
        REQUIRE(fb_mount_tree_file_get(t, ino, &f, &err) == 0);
        size_t got = 0;
        CHECK_EQ_INT(fb_mount_file_read(f, buf, sizeof buf, 0, &got, &err), 0);
        content_of(&many[i], want);
        CHECK(got == 40 && memcmp(buf, want, 40) == 0);
        fb_mount_file_put(t, f);
        fb_mount_tree_get_stats(t, &st);
        CHECK(st.kept_files <= FB_MOUNT_KEPT_MAX);
    }
    fb_mount_tree_get_stats(t, &st);
    CHECK_EQ_INT(st.kept_files, FB_MOUNT_KEPT_MAX);
    CHECK_EQ_INT(st.open_archives, 1); /* all of them share one reader */
    wait_all_closed(t, &st);
    CHECK_EQ_INT(st.kept_files, 0);
    fb_mount_tree_free(t);
    fbtest_rmtree(tmp);
}

typedef struct racer {
    fb_mount_tree *t;
    uint64_t ino;
    const uint8_t *want;
    int failures;
} racer;

static void *race_main(void *arg)
{
    racer *r = arg;
    fb_error err;
    for (int i = 0; i < 200; i++) {
        fb_mount_file *f = NULL;
        if (fb_mount_tree_file_get(r->t, r->ino, &f, &err) != 0) {
            r->failures++;
            continue;
        }
        uint8_t buf[1000];
        size_t got = 0;
        uint64_t off = (uint64_t)(i * 733) % 149000;
        if (fb_mount_file_read(f, buf, sizeof buf, off, &got, &err) != 0 || got != sizeof buf ||
            memcmp(buf, r->want + off, got) != 0)
            r->failures++;
        fb_mount_file_put(r->t, f);
    }
    return NULL;
}

/* First reads of one inode from many threads at once share one kept file. */
static void test_kept_file_concurrent_first_reads(void)
{
    char *tmp = setup_store();
    REQUIRE(tmp);
    fb_mount_tree *t = open_tree(tmp, 10.0, 1 << 20);
    REQUIRE(t);
    uint8_t *want = malloc(150000);
    content_of(&full_entries[7], want);
    racer r[6];
    pthread_t th[6];
    uint64_t ino = ino_of(t, "sess-a", ID_FULL, "logs/run.log");
    REQUIRE(ino != 0);
    for (int i = 0; i < 6; i++) {
        r[i] = (racer){.t = t, .ino = ino, .want = want};
        pthread_create(&th[i], NULL, race_main, &r[i]);
    }
    int failures = 0;
    for (int i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        failures += r[i].failures;
    }
    CHECK_EQ_INT(failures, 0);
    fb_mount_stats st;
    fb_mount_tree_get_stats(t, &st);
    CHECK_EQ_INT(st.kept_files, 1);
    free(want);
    fb_mount_tree_free(t);
    fbtest_rmtree(tmp);
}

int main(void)
{
    RUN_TEST(test_kept_file_shared_then_expired);
    RUN_TEST(test_kept_file_reads_do_not_wake_the_janitor);
    RUN_TEST(test_kept_file_reads_after_its_backup_is_removed);
    RUN_TEST(test_kept_files_bounded);
    RUN_TEST(test_kept_file_concurrent_first_reads);
    FBTEST_EXIT();
}
