/* Unit tests of the mount's views (core/mount/mount_asof.c,
 * core/mount/mount_history.c): `<session>/as-of/<backup_id>/` and
 * `<session>/history/`, on real stores (mount_fixture.h). */
#include <pthread.h>
#include <sys/stat.h>

#include "mount_fixture.h"

static const char F1[] = "20270115T080000Z-full-aaaaaa";
static const char I1[] = "20270115T090000Z-incr-bbbbbb";
static const char I2[] = "20270115T100000Z-incr-cccccc";
static const char I3[] = "20270115T110000Z-incr-dddddd";

static const spec_entry f1_entries[] = {
    {"d", FB_ENTRY_DIR, 0750, 0, 0, NULL},
    {"d/a.txt", FB_ENTRY_FILE, 0640, 100, 1, NULL},
    {"d/h", FB_ENTRY_HARDLINK, 0640, 0, 0, "d/a.txt"},
    {"link", FB_ENTRY_SYMLINK, 0777, 0, 0, "d/a.txt"},
    {"s.json", FB_ENTRY_FILE, 0600, 50, 2, NULL},
    {"state.json", FB_ENTRY_FILE, 0644, 40, 3, NULL},
    {"x", FB_ENTRY_DIR, 0755, 0, 0, NULL},
    {"x/y.txt", FB_ENTRY_FILE, 0644, 20, 9, NULL},
    {"z", FB_ENTRY_DIR, 0755, 0, 0, NULL},
};
static const spec_entry i1_entries[] = {
    {"new", FB_ENTRY_DIR, 0755, 0, 0, NULL},
    {"new/n.txt", FB_ENTRY_FILE, 0644, 30, 5, NULL},
    {"s.json", FB_ENTRY_FILE, 0604, 60, 4, NULL},
};
static const spec_entry i2_entries[] = {
    {"s.json", FB_ENTRY_FILE, 0600, 70, 6, NULL},
    {"state.json", FB_ENTRY_FILE, 0600, 40, 3, NULL}, /* same content: no version */
    {"x", FB_ENTRY_FILE, 0644, 10, 10, NULL},         /* a dir before, a file now */
};
static const spec_entry i3_entries[] = {
    {"s.json", FB_ENTRY_FILE, 0600, 80, 7, NULL},
};

#define N(a) (sizeof a / sizeof a[0])

static char *setup_views(void)
{
    char *tmp = fbtest_tempdir();
    make_root(tmp);
    if (write_backup(tmp, "sv", F1, 1, T0, f1_entries, N(f1_entries)) != 0 ||
        write_backup_based(tmp, "sv", I1, 2, T0 + 3600, F1, i1_entries, N(i1_entries)) != 0 ||
        write_backup_based(tmp, "sv", I2, 3, T0 + 7200, F1, i2_entries, N(i2_entries)) != 0) {
        fbtest_rmtree(tmp);
        return NULL;
    }
    return tmp;
}

/* The bytes of the file at path are those of spec e. */
static bool reads_as(fb_mount_tree *t, const char *path, const spec_entry *e)
{
    fb_mount_attr a;
    if (lookup_path(t, path, &a) != 0 || !S_ISREG(a.st.st_mode) ||
        (size_t)a.st.st_size != e->size) {
        fprintf(stderr, "reads_as %s: lookup or size\n", path);
        return false;
    }
    uint8_t *got = NULL, *want = malloc(e->size + 1);
    size_t len = 0;
    bool ok = read_all(t, a.st.st_ino, &got, &len) == 0 && len == e->size;
    content_of(e, want);
    ok = ok && memcmp(got, want, len) == 0;
    free(got);
    free(want);
    if (!ok)
        fprintf(stderr, "reads_as %s: bytes differ\n", path);
    return ok;
}

static bool link_is(fb_mount_tree *t, const char *path, const char *want)
{
    fb_mount_attr a;
    fb_error err;
    char *target = NULL;
    bool ok = lookup_path(t, path, &a) == 0 && S_ISLNK(a.st.st_mode) &&
              fb_mount_tree_readlink(t, a.st.st_ino, &target, &err) == 0 && target &&
              strcmp(target, want) == 0 && (size_t)a.st.st_size == strlen(want);
    if (!ok)
        fprintf(stderr, "link %s: '%s', want '%s'\n", path, target ? target : "?", want);
    free(target);
    return ok;
}

static bool lists(fb_mount_tree *t, const char *path, const char *want)
{
    fb_mount_attr a;
    char names[4096];
    if (lookup_path(t, path, &a) != 0) {
        fprintf(stderr, "lists %s: no such dir\n", path);
        return false;
    }
    listing(t, a.st.st_ino, names, sizeof names);
    if (strcmp(names, want) != 0)
        fprintf(stderr, "lists %s: '%s', want '%s'\n", path, names, want);
    return strcmp(names, want) == 0;
}

static void test_asof(void)
{
    char *tmp = setup_views();
    REQUIRE(tmp);
    fb_mount_tree *t = open_tree(tmp, 10.0, 1 << 20);
    REQUIRE(t);
    char p[512], q[512], want[512];
    fb_mount_attr a, b;
    fb_error err;

    snprintf(want, sizeof want, "%s|%s|%s|latest|latest-full|as-of|history", F1, I1, I2);
    CHECK(lists(t, "sv", want));
    snprintf(want, sizeof want, "%s|%s|%s|latest", F1, I1, I2);
    CHECK(lists(t, "sv/as-of", want));
    fb_mount_stats st;
    fb_mount_tree_get_stats(t, &st);
    CHECK_EQ_INT(st.loaded_manifests, 0); /* listing as-of/ reads no manifest */
    CHECK(link_is(t, "sv/as-of/latest", I2));

    /* A full backup as itself. */
    snprintf(p, sizeof p, "sv/as-of/%s", F1);
    CHECK(lists(t, p, "d|link|s.json|state.json|x|z"));
    REQUIRE(lookup_path(t, p, &a) == 0);
    CHECK(S_ISDIR(a.st.st_mode) && !a.immutable);
    CHECK_EQ_INT(a.st.st_mtim.tv_sec, T0);

    /* An incremental: its base with the incrementals up to it laid over. */
    snprintf(p, sizeof p, "sv/as-of/%s", I1);
    CHECK(lists(t, p, "d|link|new|s.json|state.json|x|z"));
    snprintf(p, sizeof p, "sv/as-of/%s/s.json", I1);
    CHECK(reads_as(t, p, &i1_entries[2]));
    REQUIRE(lookup_path(t, p, &a) == 0);
    CHECK_EQ_INT(a.st.st_mode, S_IFREG | 0604);
    CHECK_EQ_INT(a.st.st_uid, 1002); /* I1's entry 2 */
    CHECK_EQ_INT(a.st.st_mtim.tv_sec, T0 - 1000 + 2);
    CHECK_EQ_INT(a.st.st_mtim.tv_nsec, 123456789 + 2);
    CHECK(a.immutable);
    REQUIRE(lookup_path(t, p, &b) == 0);
    CHECK_EQ_INT(b.st.st_ino, a.st.st_ino);
    CHECK_EQ_INT(fb_mount_tree_getattr(t, a.st.st_ino, &b, &err), 0);
    CHECK_EQ_INT(b.st.st_ino, a.st.st_ino);
    snprintf(q, sizeof q, "sv/%s/s.json", I1);
    REQUIRE(lookup_path(t, q, &b) == 0);
    CHECK(b.st.st_ino != a.st.st_ino); /* the view's own numbers */
    snprintf(p, sizeof p, "sv/as-of/%s/d/a.txt", I1);
    CHECK(reads_as(t, p, &f1_entries[1]));
    REQUIRE(lookup_path(t, p, &a) == 0);
    CHECK_EQ_INT(a.st.st_nlink, 2);
    snprintf(p, sizeof p, "sv/as-of/%s/d/h", I1);
    REQUIRE(lookup_path(t, p, &b) == 0);
    CHECK_EQ_INT(b.st.st_ino, a.st.st_ino);
    snprintf(p, sizeof p, "sv/as-of/%s/d", I1);
    REQUIRE(lookup_path(t, p, &a) == 0);
    CHECK_EQ_INT(a.st.st_mode, S_IFDIR | 0750);
    snprintf(p, sizeof p, "sv/as-of/%s/link", I1);
    CHECK(link_is(t, p, "d/a.txt"));
    snprintf(p, sizeof p, "sv/as-of/%s/new/n.txt", I1);
    CHECK(reads_as(t, p, &i1_entries[1]));

    /* A later file over a directory takes it and what was below. */
    snprintf(p, sizeof p, "sv/as-of/%s", I2);
    CHECK(lists(t, p, "d|link|new|s.json|state.json|x|z"));
    snprintf(p, sizeof p, "sv/as-of/%s/x", I2);
    CHECK(reads_as(t, p, &i2_entries[2]));
    snprintf(p, sizeof p, "sv/as-of/%s/s.json", I2);
    CHECK(reads_as(t, p, &i2_entries[0]));
    snprintf(p, sizeof p, "sv/as-of/%s/nope", I2);
    CHECK_EQ_INT(lookup_path(t, p, &a), FB_ENOTFOUND);
    CHECK_EQ_INT(lookup_path(t, "sv/as-of/20270115T120000Z-full-eeeeee", &a), FB_ENOTFOUND);
    fb_mount_tree_free(t);
    fbtest_rmtree(tmp);
}

static void test_history(void)
{
    char *tmp = setup_views();
    REQUIRE(tmp);
    fb_mount_tree *t = open_tree(tmp, 10.0, 1 << 20);
    REQUIRE(t);
    char p[512], want[512];
    fb_mount_attr a;

    CHECK(lists(t, "sv/history", "d|link|new|s.json|state.json|x|z"));
    snprintf(want, sizeof want, "%s.json|%s.json|%s.json|latest", F1, I1, I2);
    CHECK(lists(t, "sv/history/s.json", want));
    snprintf(want, sizeof want, "%s.json", I2);
    CHECK(link_is(t, "sv/history/s.json/latest", want));
    snprintf(p, sizeof p, "sv/history/s.json/%s.json", F1);
    CHECK(reads_as(t, p, &f1_entries[4]));
    REQUIRE(lookup_path(t, p, &a) == 0);
    CHECK_EQ_INT(a.st.st_mode, S_IFREG | 0600);
    CHECK_EQ_INT(a.st.st_uid, 1004);
    CHECK(!a.immutable); /* history/ changes with every new backup */
    snprintf(p, sizeof p, "sv/history/s.json/%s.json", I1);
    CHECK(reads_as(t, p, &i1_entries[2]));
    REQUIRE(lookup_path(t, p, &a) == 0);
    CHECK_EQ_INT(a.st.st_mode, S_IFREG | 0604);

    /* Unchanged content in a later backup is no new version. */
    snprintf(want, sizeof want, "%s.json|latest", F1);
    CHECK(lists(t, "sv/history/state.json", want));
    /* No extension; a hardlink's version is its file's content. */
    snprintf(want, sizeof want, "%s|latest", F1);
    CHECK(lists(t, "sv/history/d/h", want));
    snprintf(p, sizeof p, "sv/history/d/h/%s", F1);
    CHECK(reads_as(t, p, &f1_entries[1]));
    CHECK(lists(t, "sv/history/link", want));
    snprintf(p, sizeof p, "sv/history/link/%s", F1);
    CHECK(link_is(t, p, "d/a.txt"));
    /* A directory in one backup and a file in another: both. */
    snprintf(want, sizeof want, "%s|latest|y.txt", I2);
    CHECK(lists(t, "sv/history/x", want));
    snprintf(p, sizeof p, "sv/history/x/%s", I2);
    CHECK(reads_as(t, p, &i2_entries[2]));
    snprintf(p, sizeof p, "sv/history/x/y.txt/%s.txt", F1);
    CHECK(reads_as(t, p, &f1_entries[7]));
    /* A directory in every backup stays a directory, even empty. */
    CHECK(lists(t, "sv/history/z", ""));
    REQUIRE(lookup_path(t, "sv/history/z", &a) == 0);
    CHECK(S_ISDIR(a.st.st_mode));
    CHECK(lists(t, "sv/history/d", "a.txt|h"));
    fb_mount_tree_free(t);
    fbtest_rmtree(tmp);
}

static void test_views_live(void)
{
    char *tmp = setup_views();
    REQUIRE(tmp);
    fb_mount_tree *t = open_tree(tmp, 0, 1 << 20);
    REQUIRE(t);
    char p[512], want[512];
    fb_mount_attr a, b;

    snprintf(p, sizeof p, "sv/as-of/%s/s.json", I2);
    REQUIRE(lookup_path(t, p, &a) == 0);
    REQUIRE(lookup_path(t, "sv/history/s.json/latest", &b) == 0);
    REQUIRE(write_backup_based(tmp, "sv", I3, 4, T0 + 10800, F1, i3_entries, 1) == 0);
    CHECK(link_is(t, "sv/as-of/latest", I3));
    snprintf(want, sizeof want, "%s.json|%s.json|%s.json|%s.json|latest", F1, I1, I2, I3);
    CHECK(lists(t, "sv/history/s.json", want));
    snprintf(want, sizeof want, "%s.json", I3);
    CHECK(link_is(t, "sv/history/s.json/latest", want));
    /* A new backup does not change an older one's as-of tree. */
    REQUIRE(lookup_path(t, p, &b) == 0);
    CHECK_EQ_INT(b.st.st_ino, a.st.st_ino);
    snprintf(p, sizeof p, "sv/as-of/%s/s.json", I3);
    CHECK(reads_as(t, p, &i3_entries[0]));

    /* The base full removed: the incrementals alone, under new numbers. */
    snprintf(p, sizeof p, "sv/as-of/%s", I1);
    REQUIRE(lookup_path(t, p, &a) == 0);
    REQUIRE(remove_backup(tmp, "sv", F1) == 0);
    REQUIRE(lookup_path(t, p, &b) == 0);
    CHECK(b.st.st_ino != a.st.st_ino);
    CHECK(lists(t, p, "new|s.json"));
    snprintf(p, sizeof p, "sv/as-of/%s", I2);
    CHECK(lists(t, p, "new|s.json|state.json|x"));
    snprintf(p, sizeof p, "sv/as-of/%s", F1);
    CHECK_EQ_INT(lookup_path(t, p, &a), FB_ENOTFOUND);
    snprintf(want, sizeof want, "%s.json|%s.json|%s.json|latest", I1, I2, I3);
    CHECK(lists(t, "sv/history/s.json", want));
    CHECK(lists(t, "sv/history", "new|s.json|state.json|x"));
    fb_mount_tree_free(t);
    fbtest_rmtree(tmp);
}

/* With a one-byte budget every view is evicted when another loads, and
 * comes back with the same numbers. */
static void test_views_budget(void)
{
    char *tmp = setup_views();
    REQUIRE(tmp);
    char root[4096];
    snprintf(root, sizeof root, "%s/root/.flowloom/backups", tmp);
    fb_mount_options o = {.cache_bytes = 1 << 20, .live_seconds = 10, .meta_cache_bytes = 1};
    fb_mount_tree *t = NULL;
    fb_error err;
    REQUIRE(fb_mount_tree_new(root, &o, &t, &err) == 0);
    char p[512], hp[512];
    fb_mount_attr a1, h1, x;
    snprintf(p, sizeof p, "sv/as-of/%s/s.json", I1);
    snprintf(hp, sizeof hp, "sv/history/s.json/%s.json", I2);
    REQUIRE(lookup_path(t, p, &a1) == 0);
    REQUIRE(lookup_path(t, hp, &h1) == 0);
    for (int round = 0; round < 3; round++) {
        REQUIRE(lookup_path(t, p, &x) == 0);
        CHECK_EQ_INT(x.st.st_ino, a1.st.st_ino);
        CHECK(reads_as(t, p, &i1_entries[2]));
        CHECK_EQ_INT(fb_mount_tree_getattr(t, h1.st.st_ino, &x, &err), 0);
        CHECK_EQ_INT(x.st.st_size, 70);
        CHECK(reads_as(t, hp, &i2_entries[0]));
        snprintf(hp, sizeof hp, "sv/history/s.json/%s.json", I2);
    }
    fb_mount_stats st;
    fb_mount_tree_get_stats(t, &st);
    CHECK(st.meta_evictions >= 4);
    CHECK(st.loaded_manifests <= 1);
    fb_mount_tree_free(t);
    fbtest_rmtree(tmp);
}

typedef struct views_worker {
    fb_mount_tree *t;
    int k;
    int failures;
} views_worker;

/* Reads and lists in both views of every backup, in an order of its own. */
static void *views_thread(void *arg)
{
    views_worker *w = arg;
    const char *ids[] = {F1, I1, I2};
    char p[512];
    for (int round = 0; round < 20; round++) {
        const char *id = ids[(round + w->k) % 3];
        snprintf(p, sizeof p, "sv/as-of/%s/d/a.txt", id);
        w->failures += !reads_as(w->t, p, &f1_entries[1]);
        snprintf(p, sizeof p, "sv/history/s.json/%s.json", id);
        const spec_entry *e = id == F1 ? &f1_entries[4] : id == I1 ? &i1_entries[2]
                                                                    : &i2_entries[0];
        w->failures += !reads_as(w->t, p, e);
        w->failures += !lists(w->t, "sv/history/d", "a.txt|h");
    }
    return NULL;
}

/* 6 threads in the views of a one-byte budget: each load evicts another. */
static void test_views_threads(void)
{
    char *tmp = setup_views();
    REQUIRE(tmp);
    char root[4096];
    snprintf(root, sizeof root, "%s/root/.flowloom/backups", tmp);
    fb_mount_options o = {.cache_bytes = 1 << 16, .live_seconds = 0, .meta_cache_bytes = 1};
    fb_mount_tree *t = NULL;
    fb_error err;
    REQUIRE(fb_mount_tree_new(root, &o, &t, &err) == 0);
    pthread_t th[6];
    views_worker w[6];
    for (int i = 0; i < 6; i++) {
        w[i] = (views_worker){t, i, 0};
        REQUIRE(pthread_create(&th[i], NULL, views_thread, &w[i]) == 0);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(w[i].failures, 0);
    }
    fb_mount_tree_free(t);
    fbtest_rmtree(tmp);
}

int main(void)
{
    RUN_TEST(test_asof);
    RUN_TEST(test_history);
    RUN_TEST(test_views_live);
    RUN_TEST(test_views_budget);
    RUN_TEST(test_views_threads);
    FBTEST_EXIT();
}
