/* Unit tests of the diff module: manifests built in memory covering every
 * kind of difference, the incremental scope rules, malformed manifests, and
 * --live against a real backup (taken with fb_backup_run and read back from
 * the store) of a generated tree that the test then mutates: added, deleted,
 * same-size-same-mtime rewrite (found only with checksum), grown, chmod,
 * chown, touch, retargeted symlink, hardlinks, a dir replaced by a file, a
 * FIFO, names with a newline and non-UTF-8 bytes, and a file that cannot be
 * read (modified with a warning, as in recover's change list). */
#include "fbtest.h"
#include "unreadable_fixture.h"
#include "warns_fixture.h"

#include <cJSON.h>
#include <stdbool.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "fb_backup.h"
#include "fb_config.h"
#include "fb_diff.h"
#include "fb_manifest.h"
#include "fb_store.h"

#define SID "sess-diff"
#define NOW 1790000000

#define ANY_EXTRA 0x80000000u /* expectation flag: other change bits may be set too */

typedef struct want {
    const char *path;
    fb_change_kind kind;
    unsigned changes; /* exact, unless ANY_EXTRA is set */
} want;

static int cmp_want(const void *x, const void *y)
{
    return strcmp(((const want *)x)->path, ((const want *)y)->path);
}

/* Asserts d holds exactly the wanted items, in bytewise path order. */
static void check_items(const fb_diff *d, const want *w_in, size_t n, const char *label)
{
    want w[64];
    REQUIRE(n <= 64);
    if (n)
        memcpy(w, w_in, n * sizeof *w);
    qsort(w, n, sizeof *w, cmp_want);
    if (d->n != n) {
        fprintf(stderr, "%s: got %zu items, want %zu:\n", label, d->n, n);
        for (size_t i = 0; i < d->n; i++) {
            char ch[128];
            fb_differs_format(d->items[i].changes, ch, sizeof ch);
            fprintf(stderr, "  %s '%s' (%s)\n", fb_change_kind_name(d->items[i].kind),
                    d->items[i].path, ch);
        }
        fbtest_failures++;
        return;
    }
    size_t counts[4] = {0};
    for (size_t i = 0; i < n; i++) {
        const fb_diff_item *it = &d->items[i];
        counts[it->kind]++;
        unsigned want_bits = w[i].changes & ~ANY_EXTRA;
        bool bits_ok = (w[i].changes & ANY_EXTRA) ? (it->changes & want_bits) == want_bits
                                                  : it->changes == want_bits;
        if (strcmp(it->path, w[i].path) != 0 || it->kind != w[i].kind || !bits_ok) {
            char got[128], exp[128];
            fb_differs_format(it->changes, got, sizeof got);
            fb_differs_format(want_bits, exp, sizeof exp);
            fprintf(stderr, "%s: item %zu: got %s '%s' (%s), want %s '%s' (%s)\n", label, i,
                    fb_change_kind_name(it->kind), it->path, got, fb_change_kind_name(w[i].kind),
                    w[i].path, exp);
            fbtest_failures++;
        }
        if (i > 0)
            CHECK(strcmp(d->items[i - 1].path, it->path) < 0);
        CHECK(it->a.present == (it->kind != FB_CHANGE_ADDED));
        CHECK(it->b.present == (it->kind != FB_CHANGE_REMOVED));
        CHECK((it->kind == FB_CHANGE_ADDED || it->kind == FB_CHANGE_REMOVED) == (it->changes == 0));
    }
    CHECK_EQ_INT(d->n_added, counts[FB_CHANGE_ADDED]);
    CHECK_EQ_INT(d->n_removed, counts[FB_CHANGE_REMOVED]);
    CHECK_EQ_INT(d->n_modified, counts[FB_CHANGE_MODIFIED]);
    CHECK_EQ_INT(d->n_changed, counts[FB_CHANGE_CHANGED]);
}

static const fb_diff_item *find_item(const fb_diff *d, const char *path)
{
    for (size_t i = 0; i < d->n; i++)
        if (!strcmp(d->items[i].path, path))
            return &d->items[i];
    return NULL;
}

/* ---- manifests in memory ---- */

static void mk_manifest(fb_manifest *m, const char *id, fb_backup_type type)
{
    fb_manifest_init(m);
    snprintf(m->backup_id, sizeof m->backup_id, "%s", id);
    snprintf(m->session_id, sizeof m->session_id, "%s", SID);
    m->type = type;
    m->seq = 1;
    m->created_at = NOW;
}

typedef struct ent {
    fb_entry_type type;
    uint32_t mode, uid, gid;
    int64_t mtime;
    uint32_t nsec;
    uint64_t size;
    int sha;            /* fill byte of the digest (files) */
    const char *target; /* symlink target / hardlink link */
} ent;

static void add(fb_manifest *m, const char *path, ent e)
{
    fb_entry_meta meta = {.type = e.type,
                          .mode = e.mode ? e.mode : 0644,
                          .uid = e.uid ? e.uid : 1000,
                          .gid = e.gid ? e.gid : 1000,
                          .mtime = e.mtime ? e.mtime : NOW - 100,
                          .mtime_nsec = e.nsec,
                          .size = e.size};
    uint8_t sha[FB_SHA256_LEN];
    memset(sha, e.sha, sizeof sha);
    fb_error err;
    int rc = fb_manifest_add_entry(m, path, &meta, e.type == FB_ENTRY_FILE ? sha : NULL,
                                   m->n_entries * 1024, e.target, &err);
    if (rc)
        fprintf(stderr, "add %s: %s\n", path, err.message);
    CHECK_EQ_INT(rc, 0);
}

#define F(...) ((ent){.type = FB_ENTRY_FILE, __VA_ARGS__})
#define D(...) ((ent){.type = FB_ENTRY_DIR, __VA_ARGS__})
#define L(...) ((ent){.type = FB_ENTRY_SYMLINK, __VA_ARGS__})
#define H(...) ((ent){.type = FB_ENTRY_HARDLINK, __VA_ARGS__})

/* Two manifests that differ in every way the module knows, entries added
 * in an order that is not bytewise ("a" dir, then "a/b", then "a-b"). */
static void build_pair(fb_manifest *a, fb_manifest *b)
{
    mk_manifest(a, "20260101T000000Z-full-000001", FB_BACKUP_FULL);
    mk_manifest(b, "20260102T000000Z-full-000002", FB_BACKUP_FULL);

    add(a, "z-last", F(.size = 7, .sha = 9));
    add(b, "z-last", F(.size = 7, .sha = 9));
    add(a, "same-dir", D(.mode = 0755));
    add(b, "same-dir", D(.mode = 0755));
    add(a, "a", D(.mode = 0755));
    add(b, "a", D(.mode = 0755));
    add(a, "a/b", F(.size = 3, .sha = 1));
    add(b, "a/b", F(.size = 3, .sha = 2));
    add(b, "a-b", F(.size = 3, .sha = 1));
    add(a, "gone.txt", F(.size = 1, .sha = 1));
    add(a, "content", F(.size = 10, .sha = 1));
    add(b, "content", F(.size = 10, .sha = 2));
    add(a, "grown", F(.size = 10, .sha = 1));
    add(b, "grown", F(.size = 11, .sha = 1));
    add(a, "mode", F(.size = 1, .sha = 1));
    add(b, "mode", F(.size = 1, .sha = 1, .mode = 0600));
    add(a, "owner", F(.size = 1, .sha = 1));
    add(b, "owner", F(.size = 1, .sha = 1, .uid = 1001));
    add(a, "group", F(.size = 1, .sha = 1));
    add(b, "group", F(.size = 1, .sha = 1, .gid = 1001));
    add(a, "nsec", F(.size = 1, .sha = 1, .nsec = 5));
    add(b, "nsec", F(.size = 1, .sha = 1, .nsec = 6));
    add(a, "link", L(.mode = 0777, .size = 1, .target = "x"));
    add(b, "link", L(.mode = 0777, .size = 1, .target = "y"));
    add(a, "typechg", F(.size = 1, .sha = 1));
    add(b, "typechg", D(.mode = 0755));
    add(a, "multi", F(.size = 4, .sha = 1));
    add(b, "multi", F(.size = 4, .sha = 2, .mode = 0640));
    add(a, "d", D(.mode = 0755, .mtime = NOW - 50));
    add(b, "d", D(.mode = 0755, .mtime = NOW - 40));
    /* hardlinks compare as the file they link to */
    add(a, "hl", H(.size = 10, .target = "content"));
    add(b, "hl", H(.size = 10, .target = "content"));
    add(a, "hl2", H(.size = 7, .target = "z-last"));
    add(b, "hl2", F(.size = 7, .sha = 9));
    add(a, "hl3", H(.size = 7, .target = "z-last"));
    add(b, "hl3", H(.size = 7, .target = "z-last"));
    add(b, "new\nline", F(.size = 2, .sha = 5));
    add(a, "\xff\xfe.bin", F(.size = 2, .sha = 3));
    add(b, "\xff\xfe.bin", F(.size = 2, .sha = 4));
}

static const want pair_items[] = {
    {"a/b", FB_CHANGE_MODIFIED, FB_DIFFERS_CONTENT},
    {"a-b", FB_CHANGE_ADDED, 0},
    {"gone.txt", FB_CHANGE_REMOVED, 0},
    {"content", FB_CHANGE_MODIFIED, FB_DIFFERS_CONTENT},
    {"grown", FB_CHANGE_MODIFIED, FB_DIFFERS_CONTENT},
    {"mode", FB_CHANGE_CHANGED, FB_DIFFERS_MODE},
    {"owner", FB_CHANGE_CHANGED, FB_DIFFERS_OWNER},
    {"group", FB_CHANGE_CHANGED, FB_DIFFERS_OWNER},
    {"nsec", FB_CHANGE_CHANGED, FB_DIFFERS_MTIME},
    {"link", FB_CHANGE_MODIFIED, FB_DIFFERS_TARGET},
    {"typechg", FB_CHANGE_MODIFIED, FB_DIFFERS_TYPE | FB_DIFFERS_MODE},
    {"multi", FB_CHANGE_MODIFIED, FB_DIFFERS_CONTENT | FB_DIFFERS_MODE},
    {"d", FB_CHANGE_CHANGED, FB_DIFFERS_MTIME},
    {"hl", FB_CHANGE_MODIFIED, FB_DIFFERS_CONTENT},
    {"hl2", FB_CHANGE_CHANGED, FB_DIFFERS_LINK},
    {"new\nline", FB_CHANGE_ADDED, 0},
    {"\xff\xfe.bin", FB_CHANGE_MODIFIED, FB_DIFFERS_CONTENT},
};
#define N_PAIR (sizeof pair_items / sizeof pair_items[0])

static void test_manifests_every_kind(void)
{
    fb_manifest a, b;
    build_pair(&a, &b);
    fb_diff d;
    fb_diff_init(&d);
    fb_error err;
    int rc = fb_diff_manifests(&a, &b, NULL, &d, &err);
    if (rc)
        fprintf(stderr, "diff: %s\n", err.message);
    REQUIRE(rc == 0);
    check_items(&d, pair_items, N_PAIR, "a->b");
    CHECK(!d.scoped);
    CHECK_EQ_INT(d.files_hashed, 0);
    /* "a-b" sorts before "a/b" ('-' < '/'), whatever the archive order */
    CHECK(d.n > 1 && !strcmp(d.items[0].path, "a-b") && !strcmp(d.items[1].path, "a/b"));

    /* the sides carry what each manifest says; a hardlink's content is its file's */
    const fb_diff_item *it = find_item(&d, "hl");
    REQUIRE(it);
    CHECK(it->a.meta.type == FB_ENTRY_HARDLINK && it->a.target && !strcmp(it->a.target, "content"));
    CHECK(it->a.has_sha256 && it->a.sha256[0] == 1 && it->b.has_sha256 && it->b.sha256[0] == 2);
    it = find_item(&d, "grown");
    REQUIRE(it);
    CHECK_EQ_INT(it->a.meta.size, 10);
    CHECK_EQ_INT(it->b.meta.size, 11);
    it = find_item(&d, "link");
    REQUIRE(it);
    CHECK(!strcmp(it->a.target, "x") && !strcmp(it->b.target, "y"));
    CHECK(!it->a.has_sha256);
    it = find_item(&d, "typechg");
    REQUIRE(it);
    CHECK(it->a.meta.type == FB_ENTRY_FILE && it->b.meta.type == FB_ENTRY_DIR);

    /* the other way round: added <-> removed */
    fb_diff r;
    fb_diff_init(&r);
    REQUIRE(fb_diff_manifests(&b, &a, NULL, &r, &err) == 0);
    CHECK_EQ_INT(r.n, d.n);
    CHECK_EQ_INT(r.n_added, d.n_removed);
    CHECK_EQ_INT(r.n_removed, d.n_added);
    CHECK_EQ_INT(r.n_modified, d.n_modified);
    CHECK_EQ_INT(r.n_changed, d.n_changed);
    it = find_item(&r, "gone.txt");
    CHECK(it && it->kind == FB_CHANGE_ADDED);

    /* identical manifests: nothing, and a reused result is emptied first */
    REQUIRE(fb_diff_manifests(&a, &a, NULL, &r, &err) == 0);
    CHECK_EQ_INT(r.n, 0);
    CHECK_EQ_INT(r.n_added + r.n_removed + r.n_modified + r.n_changed, 0);

    fb_diff_fini(&r);
    fb_diff_fini(&d);
    fb_manifest_fini(&a);
    fb_manifest_fini(&b);
}

static const cJSON *json_item(const cJSON *items, const char *path)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(it, "path");
        if (cJSON_IsString(p) && !strcmp(p->valuestring, path))
            return it;
    }
    return NULL;
}

static void test_json(void)
{
    fb_manifest a, b;
    build_pair(&a, &b);
    fb_diff d;
    fb_diff_init(&d);
    fb_error err;
    REQUIRE(fb_diff_manifests(&a, &b, NULL, &d, &err) == 0);
    char *json = NULL;
    size_t len = 0;
    REQUIRE(fb_diff_to_json(&d, a.backup_id, b.backup_id, &json, &len, &err) == 0);
    CHECK(len == strlen(json) && len > 0 && json[len - 1] == '\n');
    cJSON *root = cJSON_Parse(json);
    REQUIRE(root);
    CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(root, "a")->valuestring, a.backup_id));
    CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(root, "b")->valuestring, b.backup_id));
    CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(root, "scoped")));
    const cJSON *sum = cJSON_GetObjectItemCaseSensitive(root, "summary");
    CHECK_EQ_INT(cJSON_GetObjectItemCaseSensitive(sum, "added")->valuedouble, d.n_added);
    CHECK_EQ_INT(cJSON_GetObjectItemCaseSensitive(sum, "removed")->valuedouble, d.n_removed);
    CHECK_EQ_INT(cJSON_GetObjectItemCaseSensitive(sum, "modified")->valuedouble, d.n_modified);
    CHECK_EQ_INT(cJSON_GetObjectItemCaseSensitive(sum, "changed")->valuedouble, d.n_changed);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(root, "items");
    CHECK_EQ_INT(cJSON_GetArraySize(items), N_PAIR);

    /* a newline survives as a JSON escape */
    const cJSON *nl = json_item(items, "new\nline");
    REQUIRE(nl);
    CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(nl, "kind")->valuestring, "added"));
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(nl, "a")));
    CHECK(!cJSON_GetObjectItemCaseSensitive(nl, "path_b64"));
    /* non-UTF-8 bytes: U+FFFD in path, the exact bytes in path_b64 ("//4uYmlu") */
    const cJSON *bin = json_item(items, "\xef\xbf\xbd\xef\xbf\xbd.bin");
    REQUIRE(bin);
    const cJSON *b64 = cJSON_GetObjectItemCaseSensitive(bin, "path_b64");
    CHECK(cJSON_IsString(b64) && !strcmp(b64->valuestring, "//4uYmlu"));
    /* changes in the documented order, sides with their fields */
    const cJSON *multi = json_item(items, "multi");
    REQUIRE(multi);
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(multi, "changes");
    CHECK_EQ_INT(cJSON_GetArraySize(ch), 2);
    CHECK(!strcmp(cJSON_GetArrayItem(ch, 0)->valuestring, "content"));
    CHECK(!strcmp(cJSON_GetArrayItem(ch, 1)->valuestring, "mode"));
    const cJSON *bs = cJSON_GetObjectItemCaseSensitive(multi, "b");
    CHECK_EQ_INT(cJSON_GetObjectItemCaseSensitive(bs, "mode")->valuedouble, 0640);
    CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(bs, "sha256")->valuestring,
                  "0202020202020202020202020202020202020202020202020202020202020202"));
    const cJSON *hl2 = json_item(items, "hl2");
    REQUIRE(hl2);
    const cJSON *ha = cJSON_GetObjectItemCaseSensitive(hl2, "a");
    CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(ha, "type")->valuestring, "hardlink"));
    CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(ha, "link")->valuestring, "z-last"));
    const cJSON *lk = json_item(items, "link");
    REQUIRE(lk);
    CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(lk, "b"),
                                                   "target")->valuestring, "y"));
    cJSON_Delete(root);
    free(json);

    char buf[64];
    fb_differs_format(FB_DIFFERS_MTIME | FB_DIFFERS_CONTENT | FB_DIFFERS_MODE, buf, sizeof buf);
    CHECK(!strcmp(buf, "content,mode,mtime"));
    fb_differs_format(0, buf, sizeof buf);
    CHECK(!strcmp(buf, ""));
    fb_differs_format(FB_DIFFERS_CONTENT | FB_DIFFERS_MODE, buf, 6);
    CHECK(strlen(buf) == 5);
    CHECK(!strcmp(fb_differs_name(FB_DIFFERS_LINK), "link"));
    CHECK(fb_differs_name(1u << 20) == NULL);
    CHECK(!strcmp(fb_change_kind_name(FB_CHANGE_CHANGED), "changed"));

    fb_diff_fini(&d);
    fb_manifest_fini(&a);
    fb_manifest_fini(&b);
}

static void test_malformed_manifests(void)
{
    fb_manifest a, b;
    fb_diff d;
    fb_diff_init(&d);
    fb_error err;
    mk_manifest(&a, "20260101T000000Z-full-000001", FB_BACKUP_FULL);
    mk_manifest(&b, "20260102T000000Z-full-000002", FB_BACKUP_FULL);
    add(&a, "x", F(.size = 1, .sha = 1));
    add(&b, "dup", F(.size = 1, .sha = 1));
    add(&b, "dup", F(.size = 1, .sha = 2));
    CHECK_EQ_INT(fb_diff_manifests(&a, &b, NULL, &d, &err), FB_ECORRUPT);
    CHECK(strstr(err.message, "duplicate path dup") != NULL);
    CHECK(strstr(err.message, "20260102T000000Z-full-000002") != NULL);
    CHECK_EQ_INT(d.n, 0);
    fb_manifest_fini(&b);

    mk_manifest(&b, "20260102T000000Z-full-000002", FB_BACKUP_FULL);
    add(&b, "dir", D(.mode = 0755));
    add(&b, "h", H(.size = 0, .target = "dir"));
    CHECK_EQ_INT(fb_diff_manifests(&a, &b, NULL, &d, &err), FB_ECORRUPT);
    CHECK(strstr(err.message, "hardlink h links to dir") != NULL);
    fb_manifest_fini(&b);

    mk_manifest(&b, "20260102T000000Z-full-000002", FB_BACKUP_FULL);
    add(&b, "h", H(.size = 0, .target = "nowhere"));
    CHECK_EQ_INT(fb_diff_manifests(&b, &a, NULL, &d, &err), FB_ECORRUPT);
    CHECK(strstr(err.message, "not a file entry") != NULL);

    CHECK_EQ_INT(fb_diff_manifests(NULL, &a, NULL, &d, &err), FB_EMISUSE);
    CHECK_EQ_INT(fb_diff_live(&a, -1, "x", NULL, &d, &err), FB_EMISUSE);
    fb_diff_fini(&d);
    fb_manifest_fini(&a);
    fb_manifest_fini(&b);
}

static fb_config scope_config(void)
{
    fb_config cfg;
    fb_error err;
    if (fb_config_init_defaults(&cfg, &err) != 0)
        exit(2);
    char **inc = realloc(cfg.include, (cfg.n_include + 1) * sizeof *inc);
    if (!inc)
        exit(2);
    cfg.include = inc;
    cfg.include[cfg.n_include++] = strdup("cfg/*.json");
    return cfg;
}

static void test_incremental_scope(void)
{
    fb_config cfg = scope_config();
    fb_manifest full, incr;
    mk_manifest(&full, "20260101T000000Z-full-000001", FB_BACKUP_FULL);
    mk_manifest(&incr, "20260102T000000Z-incr-000002", FB_BACKUP_INCREMENTAL);
    add(&full, "cfg", D(.mode = 0755));
    add(&full, "cfg/c.json", F(.size = 2, .sha = 1));
    add(&full, "logs", D(.mode = 0755));
    add(&full, "logs/run.log", F(.size = 5, .sha = 7));
    add(&full, "h.json", H(.size = 5, .target = "logs/run.log"));
    add(&full, "metadata.json", F(.size = 2, .sha = 1));
    add(&full, "notes.txt", F(.size = 2, .sha = 1));
    add(&full, "state", D(.mode = 0750));
    add(&full, "state/x", F(.size = 2, .sha = 1));
    add(&full, "sub", D(.mode = 0755));
    add(&full, "sub/a.json", F(.size = 2, .sha = 1)); /* "*.json" is top-level only */

    add(&incr, "h.json", F(.size = 5, .sha = 7)); /* its link is outside the scope */
    add(&incr, "metadata.json", F(.size = 2, .sha = 2));
    add(&incr, "state", D(.mode = 0750));
    add(&incr, "state/y", F(.size = 2, .sha = 1));

    fb_diff_options opts = {.include = &cfg};
    fb_diff d;
    fb_diff_init(&d);
    fb_error err;
    REQUIRE(fb_diff_manifests(&full, &incr, &opts, &d, &err) == 0);
    const want scoped[] = {
        {"cfg/c.json", FB_CHANGE_REMOVED, 0},
        {"metadata.json", FB_CHANGE_MODIFIED, FB_DIFFERS_CONTENT},
        {"state/x", FB_CHANGE_REMOVED, 0},
        {"state/y", FB_CHANGE_ADDED, 0},
    };
    check_items(&d, scoped, sizeof scoped / sizeof scoped[0], "full->incr scoped");
    CHECK(d.scoped);

    /* either order */
    REQUIRE(fb_diff_manifests(&incr, &full, &opts, &d, &err) == 0);
    CHECK(d.scoped);
    CHECK_EQ_INT(d.n, 4);
    CHECK_EQ_INT(d.n_added, 2);
    CHECK_EQ_INT(d.n_removed, 1);

    /* without a scope: exactly the entries each manifest holds */
    REQUIRE(fb_diff_manifests(&full, &incr, NULL, &d, &err) == 0);
    const want exact[] = {
        {"cfg", FB_CHANGE_REMOVED, 0},
        {"cfg/c.json", FB_CHANGE_REMOVED, 0},
        {"logs", FB_CHANGE_REMOVED, 0},
        {"logs/run.log", FB_CHANGE_REMOVED, 0},
        {"h.json", FB_CHANGE_CHANGED, FB_DIFFERS_LINK},
        {"metadata.json", FB_CHANGE_MODIFIED, FB_DIFFERS_CONTENT},
        {"notes.txt", FB_CHANGE_REMOVED, 0},
        {"state/x", FB_CHANGE_REMOVED, 0},
        {"state/y", FB_CHANGE_ADDED, 0},
        {"sub", FB_CHANGE_REMOVED, 0},
        {"sub/a.json", FB_CHANGE_REMOVED, 0},
    };
    check_items(&d, exact, sizeof exact / sizeof exact[0], "full->incr exact");
    CHECK(!d.scoped);

    /* two fulls: the scope does not apply */
    fb_manifest full2;
    mk_manifest(&full2, "20260103T000000Z-full-000003", FB_BACKUP_FULL);
    add(&full2, "metadata.json", F(.size = 2, .sha = 1));
    REQUIRE(fb_diff_manifests(&full, &full2, &opts, &d, &err) == 0);
    CHECK(!d.scoped);
    CHECK(find_item(&d, "logs/run.log") &&
          find_item(&d, "logs/run.log")->kind == FB_CHANGE_REMOVED);

    fb_manifest_fini(&full2);
    fb_diff_fini(&d);
    fb_manifest_fini(&full);
    fb_manifest_fini(&incr);
    fb_config_fini(&cfg);
}

/* ---- live ---- */

static int put(int dfd, const char *rel, const void *data, size_t len, mode_t mode)
{
    int fd = openat(dfd, rel, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, data, len);
    close(fd);
    if (n != (ssize_t)len)
        return -1;
    return fchmodat(dfd, rel, mode, 0);
}

#define PUT(dfd, rel, str, mode) REQUIRE(put(dfd, rel, str, strlen(str), mode) == 0)

/* Rewrites rel in place with other bytes of the same length, then puts its
 * mtime (seconds and nanoseconds) back: invisible to the quick check. */
static int rewrite_keep_mtime(int dfd, const char *rel)
{
    struct stat st;
    if (fstatat(dfd, rel, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return -1;
    int fd = openat(dfd, rel, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    uint8_t buf[8192];
    size_t len = (size_t)st.st_size;
    if (len > sizeof buf || pread(fd, buf, len, 0) != (ssize_t)len) {
        close(fd);
        return -1;
    }
    for (size_t i = 0; i < len; i++)
        buf[i] ^= 0x5a;
    ssize_t n = pwrite(fd, buf, len, 0);
    close(fd);
    if (n != (ssize_t)len)
        return -1;
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    return utimensat(dfd, rel, ts, AT_SYMLINK_NOFOLLOW);
}

/* Puts rel's mtime well in the past, so a change made after the backup
 * gives another mtime whatever the timestamp granularity. */
static int age(int dfd, const char *rel)
{
    struct timespec ts[2] = {{1600000000, 111}, {1600000000, 111}};
    return utimensat(dfd, rel, ts, AT_SYMLINK_NOFOLLOW);
}

static char *root_with_session(int *sfd_out)
{
    char *root = fbtest_tempdir();
    int rfd = open(root, O_RDONLY | O_DIRECTORY);
    mkdirat(rfd, ".flowloom", 0755);
    mkdirat(rfd, ".flowloom/sessions", 0755);
    mkdirat(rfd, ".flowloom/sessions/" SID, 0755);
    *sfd_out = openat(rfd, ".flowloom/sessions/" SID, O_RDONLY | O_DIRECTORY);
    close(rfd);
    return root;
}

/* Takes a backup of the session and reads its manifest back from the store
 * (so names go through the JSON round trip the CLI will see). */
static int backup_and_read(const char *root, fb_backup_type type, fb_config *cfg, int64_t now,
                           fb_manifest *m, warns *w)
{
    fb_store *store = NULL;
    fb_error err;
    if (fb_store_open(root, true, &store, &err) != 0) {
        fprintf(stderr, "store: %s\n", err.message);
        return -1;
    }
    fb_backup_request req;
    memset(&req, 0, sizeof req);
    req.session_id = SID;
    req.type = type;
    req.now = now;
    req.config = cfg;
    req.verify = true;
    req.warn = collect_warn;
    req.warn_ctx = w;
    fb_backup_result res;
    fb_backup_result_init(&res);
    int rc = fb_backup_run(store, &req, &res, &err);
    if (rc)
        fprintf(stderr, "backup: %s\n", err.message);
    int sess = -1;
    if (rc == 0)
        rc = fb_store_open_session(store, SID, false, &sess, &err);
    if (rc == 0)
        rc = fb_store_read_manifest(sess, SID, res.manifest.backup_id, m, &err);
    if (rc)
        fprintf(stderr, "read back: %s\n", err.message);
    if (sess >= 0)
        close(sess);
    fb_backup_result_fini(&res);
    fb_store_free(store);
    return rc;
}

static size_t count_files(const fb_manifest *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n_entries; i++)
        n += m->entries[i].meta.type == FB_ENTRY_FILE;
    return n;
}

static void test_live_full(void)
{
    int sfd;
    char *root = root_with_session(&sfd);
    REQUIRE(sfd >= 0);
    bool is_root = geteuid() == 0;

    uint8_t blob[4096];
    fbtest_fill(blob, sizeof blob, 42, 0);
    PUT(sfd, "metadata.json", "{\"id\": 1}\n", 0644);
    REQUIRE(mkdirat(sfd, "data", 0755) == 0);
    REQUIRE(put(sfd, "data/same.bin", blob, sizeof blob, 0644) == 0);
    PUT(sfd, "data/grow.txt", "hello", 0644);
    PUT(sfd, "data/mode.txt", "mode", 0644);
    PUT(sfd, "data/touch.txt", "touch", 0644);
    PUT(sfd, "data/gone.txt", "gone", 0644);
    PUT(sfd, "data/owner.txt", "owner", 0644);
    PUT(sfd, "h1", "hardlinked\n", 0644);
    REQUIRE(linkat(sfd, "h1", sfd, "h2", 0) == 0);
    PUT(sfd, "\xff\xfe.bin", "binary name", 0644);
    PUT(sfd, "nl\nname.txt", "newline", 0644);
    REQUIRE(symlinkat("data/grow.txt", sfd, "link") == 0);
    REQUIRE(mkdirat(sfd, "swap", 0755) == 0);
    PUT(sfd, "swap/inner.txt", "inner", 0644);
    /* a symlink out of the session: compared by target, never followed */
    char outside[4200];
    snprintf(outside, sizeof outside, "%s/outside.txt", root);
    int rfd = open(root, O_RDONLY | O_DIRECTORY);
    REQUIRE(rfd >= 0);
    PUT(rfd, "outside.txt", "outside", 0644);
    REQUIRE(symlinkat(outside, sfd, "out") == 0);
    const char *aged[] = {"data", "data/grow.txt", "\xff\xfe.bin"};
    for (size_t i = 0; i < sizeof aged / sizeof aged[0]; i++)
        REQUIRE(age(sfd, aged[i]) == 0);

    fb_config cfg;
    fb_error err;
    REQUIRE(fb_config_init_defaults(&cfg, &err) == 0);
    warns w = {0};
    fb_manifest m;
    REQUIRE(backup_and_read(root, FB_BACKUP_FULL, &cfg, NOW, &m, &w) == 0);
    warns_free(&w);

    /* untouched: nothing differs and the quick check reads no file */
    fb_diff d;
    fb_diff_init(&d);
    fb_diff_options opts = {.include = &cfg, .warn = collect_warn, .warn_ctx = &w};
    int rc = fb_diff_live(&m, sfd, "session", &opts, &d, &err);
    if (rc)
        fprintf(stderr, "live: %s\n", err.message);
    REQUIRE(rc == 0);
    check_items(&d, NULL, 0, "untouched");
    CHECK_EQ_INT(d.files_hashed, 0);
    CHECK(!d.scoped);
    /* with checksum every inode is read once (h1 and h2 are one inode) */
    opts.checksum = true;
    REQUIRE(fb_diff_live(&m, sfd, "session", &opts, &d, &err) == 0);
    check_items(&d, NULL, 0, "untouched, checksum");
    CHECK_EQ_INT(d.files_hashed, count_files(&m));
    CHECK_EQ_INT(count_files(&m), 11);
    CHECK_EQ_INT(d.bytes_hashed, m.totals.bytes);
    opts.checksum = false;

    /* the changes */
    PUT(rfd, "outside.txt", "changed outside", 0644);
    PUT(sfd, "data/added.txt", "new", 0644);
    REQUIRE(unlinkat(sfd, "data/gone.txt", 0) == 0);
    REQUIRE(rewrite_keep_mtime(sfd, "data/same.bin") == 0);
    REQUIRE(rewrite_keep_mtime(sfd, "h2") == 0);
    {
        int fd = openat(sfd, "data/grow.txt", O_WRONLY | O_APPEND);
        REQUIRE(fd >= 0);
        CHECK(write(fd, " world", 6) == 6);
        close(fd);
    }
    REQUIRE(fchmodat(sfd, "data/mode.txt", 0600, 0) == 0);
    REQUIRE(fchmodat(sfd, "nl\nname.txt", 0600, 0) == 0);
    struct timespec when[2] = {{1700000000, 123456789}, {1700000000, 123456789}};
    REQUIRE(utimensat(sfd, "data/touch.txt", when, 0) == 0);
    if (is_root)
        REQUIRE(fchownat(sfd, "data/owner.txt", 4242, 4243, 0) == 0);
    PUT(sfd, "\xff\xfe.bin", "binary name, longer", 0644);
    {
        struct stat old;
        REQUIRE(fstatat(sfd, "link", &old, AT_SYMLINK_NOFOLLOW) == 0);
        REQUIRE(unlinkat(sfd, "link", 0) == 0);
        REQUIRE(symlinkat("data/touch.txt", sfd, "link") == 0);
        struct timespec ts[2] = {old.st_atim, old.st_mtim};
        REQUIRE(utimensat(sfd, "link", ts, AT_SYMLINK_NOFOLLOW) == 0);
    }
    REQUIRE(unlinkat(sfd, "swap/inner.txt", 0) == 0);
    REQUIRE(unlinkat(sfd, "swap", AT_REMOVEDIR) == 0);
    PUT(sfd, "swap", "now a file", 0644);
    PUT(sfd, "added\nnew.txt", "added", 0600);
    REQUIRE(mkfifoat(sfd, "pipe", 0600) == 0);

    want base[] = {
        {"added\nnew.txt", FB_CHANGE_ADDED, 0},
        {"data", FB_CHANGE_CHANGED, FB_DIFFERS_MTIME},
        {"data/added.txt", FB_CHANGE_ADDED, 0},
        {"data/gone.txt", FB_CHANGE_REMOVED, 0},
        {"data/grow.txt", FB_CHANGE_MODIFIED, FB_DIFFERS_CONTENT | FB_DIFFERS_MTIME},
        {"data/mode.txt", FB_CHANGE_CHANGED, FB_DIFFERS_MODE},
        {"data/touch.txt", FB_CHANGE_CHANGED, FB_DIFFERS_MTIME},
        {"link", FB_CHANGE_MODIFIED, FB_DIFFERS_TARGET},
        {"nl\nname.txt", FB_CHANGE_CHANGED, FB_DIFFERS_MODE},
        {"swap", FB_CHANGE_MODIFIED, FB_DIFFERS_TYPE | ANY_EXTRA},
        {"swap/inner.txt", FB_CHANGE_REMOVED, 0},
        {"\xff\xfe.bin", FB_CHANGE_MODIFIED, FB_DIFFERS_CONTENT | FB_DIFFERS_MTIME},
        {"data/owner.txt", FB_CHANGE_CHANGED, FB_DIFFERS_OWNER}, /* root only: keep last */
    };
    size_t n_base = sizeof base / sizeof base[0] - (is_root ? 0 : 1);

    rc = fb_diff_live(&m, sfd, "session", &opts, &d, &err);
    if (rc)
        fprintf(stderr, "live: %s\n", err.message);
    REQUIRE(rc == 0);
    check_items(&d, base, n_base, "live, quick check");
    /* only touch.txt failed the quick check with an unchanged size */
    CHECK_EQ_INT(d.files_hashed, 1);
    CHECK(warns_has(&w, "skipped FIFO: pipe"));
    const fb_diff_item *it = find_item(&d, "data/touch.txt");
    REQUIRE(it);
    CHECK(it->b.has_sha256 && !memcmp(it->a.sha256, it->b.sha256, FB_SHA256_LEN));
    CHECK_EQ_INT(it->b.meta.mtime, 1700000000);
    CHECK_EQ_INT(it->b.meta.mtime_nsec, 123456789);
    it = find_item(&d, "data/grow.txt");
    REQUIRE(it);
    CHECK(it->a.has_sha256 && !it->b.has_sha256); /* a size change needs no read */
    CHECK_EQ_INT(it->a.meta.size, 5);
    CHECK_EQ_INT(it->b.meta.size, 11);
    it = find_item(&d, "link");
    REQUIRE(it);
    CHECK(!strcmp(it->a.target, "data/grow.txt") && !strcmp(it->b.target, "data/touch.txt"));
    it = find_item(&d, "swap");
    REQUIRE(it);
    CHECK(it->a.meta.type == FB_ENTRY_DIR && it->b.meta.type == FB_ENTRY_FILE);
    if (is_root) {
        it = find_item(&d, "data/owner.txt");
        REQUIRE(it);
        CHECK_EQ_INT(it->b.meta.uid, 4242);
        CHECK_EQ_INT(it->b.meta.gid, 4243);
    }
    /* the JSON of a live diff names "live" and carries the odd names exactly */
    char *json = NULL;
    REQUIRE(fb_diff_to_json(&d, m.backup_id, "live", &json, NULL, &err) == 0);
    CHECK(strstr(json, "\"b\": \"live\"") != NULL);
    CHECK(strstr(json, "\"path\": \"added\\nnew.txt\"") != NULL);
    CHECK(strstr(json, "\"path_b64\": \"//4uYmlu\"") != NULL);
    CHECK(strstr(json, "\"files\": 1") != NULL);
    free(json);

    /* with checksum the same-size same-mtime rewrites show, hardlinks as one inode */
    want sum[sizeof base / sizeof base[0] + 3];
    memcpy(sum, base, sizeof base);
    size_t n_sum = n_base;
    sum[n_sum++] = (want){"data/same.bin", FB_CHANGE_MODIFIED, FB_DIFFERS_CONTENT};
    sum[n_sum++] = (want){"h1", FB_CHANGE_MODIFIED, FB_DIFFERS_CONTENT};
    sum[n_sum++] = (want){"h2", FB_CHANGE_MODIFIED, FB_DIFFERS_CONTENT};
    opts.checksum = true;
    REQUIRE(fb_diff_live(&m, sfd, "session", &opts, &d, &err) == 0);
    check_items(&d, sum, n_sum, "live, checksum");
    /* read: metadata.json, same.bin, mode, touch, owner, h1=h2, nl name; not the
     * files whose size changed, not the added ones, not the outside file */
    CHECK_EQ_INT(d.files_hashed, 7);
    it = find_item(&d, "h2");
    REQUIRE(it);
    CHECK(it->a.meta.type == FB_ENTRY_HARDLINK && it->b.meta.type == FB_ENTRY_HARDLINK);
    CHECK(!strcmp(it->a.target, "h1") && !strcmp(it->b.target, "h1"));
    CHECK(it->b.has_sha256 && memcmp(it->a.sha256, it->b.sha256, FB_SHA256_LEN) != 0);
    it = find_item(&d, "data/same.bin");
    REQUIRE(it);
    CHECK_EQ_INT(it->changes, FB_DIFFERS_CONTENT);

    warns_free(&w);
    fb_diff_fini(&d);
    fb_manifest_fini(&m);
    fb_config_fini(&cfg);
    close(rfd);
    close(sfd);
    fbtest_rmtree(root);
}

static void test_live_incremental(void)
{
    int sfd;
    char *root = root_with_session(&sfd);
    REQUIRE(sfd >= 0);
    PUT(sfd, "metadata.json", "{\"id\": 1}\n", 0644);
    REQUIRE(mkdirat(sfd, "state", 0755) == 0);
    PUT(sfd, "state/s.json", "{}", 0644);
    REQUIRE(mkdirat(sfd, "logs", 0755) == 0);
    PUT(sfd, "logs/run.log", "log line\n", 0644);
    REQUIRE(age(sfd, "state") == 0 && age(sfd, "metadata.json") == 0);

    fb_config cfg;
    fb_error err;
    REQUIRE(fb_config_init_defaults(&cfg, &err) == 0);
    warns w = {0};
    fb_manifest m;
    REQUIRE(backup_and_read(root, FB_BACKUP_INCREMENTAL, &cfg, NOW, &m, &w) == 0);
    REQUIRE(m.type == FB_BACKUP_INCREMENTAL);
    CHECK_EQ_INT(m.n_entries, 3); /* metadata.json, state, state/s.json */

    fb_diff d;
    fb_diff_init(&d);
    fb_diff_options opts = {.include = &cfg, .warn = collect_warn, .warn_ctx = &w};
    REQUIRE(fb_diff_live(&m, sfd, "session", &opts, &d, &err) == 0);
    check_items(&d, NULL, 0, "incremental untouched");
    CHECK(d.scoped);

    PUT(sfd, "logs/run.log", "log line\nanother\n", 0644);
    PUT(sfd, "logs/new.log", "x", 0644);
    REQUIRE(unlinkat(sfd, "state/s.json", 0) == 0);
    PUT(sfd, "state/t.json", "{}", 0644);
    PUT(sfd, "metadata.json", "{\"id\": 2}\n", 0644); /* same size, newer mtime */
    const want scoped[] = {
        {"metadata.json", FB_CHANGE_MODIFIED, FB_DIFFERS_CONTENT | FB_DIFFERS_MTIME},
        {"state", FB_CHANGE_CHANGED, FB_DIFFERS_MTIME},
        {"state/s.json", FB_CHANGE_REMOVED, 0},
        {"state/t.json", FB_CHANGE_ADDED, 0},
    };
    REQUIRE(fb_diff_live(&m, sfd, "session", &opts, &d, &err) == 0);
    check_items(&d, scoped, sizeof scoped / sizeof scoped[0], "incremental live");
    CHECK(d.scoped);

    /* without a scope the whole tree is compared with what the incremental holds */
    opts.include = NULL;
    REQUIRE(fb_diff_live(&m, sfd, "session", &opts, &d, &err) == 0);
    CHECK(!d.scoped);
    CHECK(find_item(&d, "logs") && find_item(&d, "logs")->kind == FB_CHANGE_ADDED);
    CHECK(find_item(&d, "logs/run.log") && find_item(&d, "logs/new.log"));
    CHECK_EQ_INT(d.n, 7);

    warns_free(&w);
    fb_diff_fini(&d);
    fb_manifest_fini(&m);
    fb_config_fini(&cfg);
    close(sfd);
    fbtest_rmtree(root);
}

/* Between the walk and the read (RELIABILITY F14): a file replaced by a
 * symlink to a file outside, a file replaced by a FIFO, a directory replaced
 * by a symlink to an outside directory holding a same-named file with the
 * stored content, a file deleted. Nothing outside is read, nothing blocks,
 * each is reported as modified with a warning. */
typedef struct swap_ctx {
    int sfd;
    const char *outside_file;
    const char *outside_dir;
    int failures;
} swap_ctx;

static void swap_after_scan(void *p)
{
    swap_ctx *c = p;
    if (unlinkat(c->sfd, "victim", 0) != 0 || symlinkat(c->outside_file, c->sfd, "victim") != 0)
        c->failures++;
    if (unlinkat(c->sfd, "fifo", 0) != 0 || mkfifoat(c->sfd, "fifo", 0600) != 0)
        c->failures++;
    if (unlinkat(c->sfd, "sub/f", 0) != 0 || unlinkat(c->sfd, "sub", AT_REMOVEDIR) != 0 ||
        symlinkat(c->outside_dir, c->sfd, "sub") != 0)
        c->failures++;
    if (unlinkat(c->sfd, "deleted", 0) != 0)
        c->failures++;
}

static void test_live_swapped_after_scan(void)
{
    int sfd;
    char *root = root_with_session(&sfd);
    REQUIRE(sfd >= 0);
    int rfd = open(root, O_RDONLY | O_DIRECTORY);
    REQUIRE(rfd >= 0);
    PUT(sfd, "victim", "secret", 0644);
    PUT(sfd, "fifo", "pipe!!", 0644);
    PUT(sfd, "deleted", "gone!!", 0644);
    REQUIRE(mkdirat(sfd, "sub", 0755) == 0);
    PUT(sfd, "sub/f", "same", 0644);
    /* outside: the same bytes the backup stored, so a followed read would
     * wrongly report "unmodified" */
    PUT(rfd, "outside.txt", "secret", 0644);
    REQUIRE(mkdirat(rfd, "odir", 0755) == 0);
    PUT(rfd, "odir/f", "same", 0644);

    fb_config cfg;
    fb_error err;
    REQUIRE(fb_config_init_defaults(&cfg, &err) == 0);
    warns w = {0};
    fb_manifest m;
    REQUIRE(backup_and_read(root, FB_BACKUP_FULL, &cfg, NOW, &m, &w) == 0);
    warns_free(&w);

    char outside_file[4200], outside_dir[4200];
    snprintf(outside_file, sizeof outside_file, "%s/outside.txt", root);
    snprintf(outside_dir, sizeof outside_dir, "%s/odir", root);
    swap_ctx c = {.sfd = sfd, .outside_file = outside_file, .outside_dir = outside_dir};
    fb_diff_options opts = {.checksum = true, .warn = collect_warn, .warn_ctx = &w,
                            .after_scan = swap_after_scan, .after_scan_ctx = &c};
    fb_diff d;
    fb_diff_init(&d);
    alarm(60); /* a blocking FIFO open must fail the test, not hang it */
    int rc = fb_diff_live(&m, sfd, "session", &opts, &d, &err);
    alarm(0);
    if (rc)
        fprintf(stderr, "live: %s\n", err.message);
    REQUIRE(rc == 0);
    CHECK_EQ_INT(c.failures, 0);
    const want items[] = {
        {"deleted", FB_CHANGE_MODIFIED, FB_DIFFERS_CONTENT},
        {"fifo", FB_CHANGE_MODIFIED, FB_DIFFERS_CONTENT},
        {"sub/f", FB_CHANGE_MODIFIED, FB_DIFFERS_CONTENT},
        {"victim", FB_CHANGE_MODIFIED, FB_DIFFERS_CONTENT},
    };
    check_items(&d, items, sizeof items / sizeof items[0], "swapped after scan");
    CHECK_EQ_INT(d.files_hashed, 0);
    CHECK(warns_has(&w, "vanished or replaced before it was compared (reported as modified): "
                        "victim"));
    CHECK(warns_has(&w, "compared (reported as modified): fifo"));
    CHECK(warns_has(&w, "compared (reported as modified): sub/f"));
    CHECK(warns_has(&w, "compared (reported as modified): deleted"));
    const fb_diff_item *it = find_item(&d, "victim");
    REQUIRE(it);
    CHECK(!it->b.has_sha256);

    /* the next diff sees the new tree as it is */
    opts.after_scan = NULL;
    REQUIRE(fb_diff_live(&m, sfd, "session", &opts, &d, &err) == 0);
    CHECK(find_item(&d, "victim") && find_item(&d, "victim")->changes & FB_DIFFERS_TYPE);
    CHECK(find_item(&d, "sub/f") && find_item(&d, "sub/f")->kind == FB_CHANGE_REMOVED);
    CHECK(find_item(&d, "deleted") && find_item(&d, "deleted")->kind == FB_CHANGE_REMOVED);
    CHECK(find_item(&d, "fifo") && find_item(&d, "fifo")->kind == FB_CHANGE_REMOVED);
    CHECK(warns_has(&w, "skipped FIFO: fifo"));

    warns_free(&w);
    fb_diff_fini(&d);
    fb_manifest_fini(&m);
    fb_config_fini(&cfg);
    close(rfd);
    close(sfd);
    fbtest_rmtree(root);
}

/* A live directory that cannot be listed is an error naming it (not a
 * silently shorter tree): the walk itself failed. (A file that cannot be
 * read is not: test_live_file_unreadable.) */
static void test_live_unreadable(void)
{
    int sfd;
    char *root = root_with_session(&sfd);
    REQUIRE(sfd >= 0);
    REQUIRE(mkdirat(sfd, "closed", 0755) == 0);
    PUT(sfd, "closed/f", "x", 0644);
    fb_manifest m;
    mk_manifest(&m, "20260101T000000Z-full-000001", FB_BACKUP_FULL);
    fb_diff d;
    fb_diff_init(&d);
    fb_error err;
    unreadable u;
    bool ok = unreadable_begin(&u, sfd, "closed");
    int rc = ok ? fb_diff_live(&m, sfd, "session", NULL, &d, &err) : 0;
    unreadable_end(&u);
    fchmodat(sfd, "closed", 0755, 0);
    if (!ok) {
        fprintf(stderr, "skip test_live_unreadable: cannot make a directory unreadable here\n");
    } else {
        CHECK_EQ_INT(rc, FB_EIO);
        CHECK(strstr(err.message, "closed") != NULL);
        CHECK_EQ_INT(d.n, 0);
    }
    fb_diff_fini(&d);
    fb_manifest_fini(&m);
    close(sfd);
    fbtest_rmtree(root);
}

/* A live file that cannot be opened (EACCES, also for root: see
 * unreadable_fixture.h) does not fail the diff: it counts as modified and a
 * warning names it and the reason, in the words recover uses for the same
 * file (test_restore.c). Its hardlink shares the verdict without a second
 * warning; the other files are still compared. */
static void test_live_file_unreadable(void)
{
    int sfd;
    char *root = root_with_session(&sfd);
    REQUIRE(sfd >= 0);
    PUT(sfd, "metadata.json", "{\"id\": 1}\n", 0644);
    REQUIRE(mkdirat(sfd, "artifacts", 0755) == 0);
    PUT(sfd, "artifacts/x.bin", "secret bytes", 0644);
    REQUIRE(linkat(sfd, "artifacts/x.bin", sfd, "artifacts/z-link.bin", 0) == 0);
    PUT(sfd, "artifacts/y.bin", "other bytes!", 0644);
    REQUIRE(age(sfd, "artifacts") == 0);
    fb_config cfg;
    fb_error err;
    REQUIRE(fb_config_init_defaults(&cfg, &err) == 0);
    warns w = {0};
    fb_manifest m;
    REQUIRE(backup_and_read(root, FB_BACKUP_FULL, &cfg, NOW, &m, &w) == 0);
    warns_free(&w);

    /* Same size, another mtime: only the bytes could tell. */
    struct timespec when[2] = {{1700000000, 5}, {1700000000, 5}};
    REQUIRE(utimensat(sfd, "artifacts/x.bin", when, 0) == 0);
    fb_diff d, dsum;
    fb_diff_init(&d);
    fb_diff_init(&dsum);
    fb_diff_options opts = {.warn = collect_warn, .warn_ctx = &w};
    unreadable u;
    bool ok = unreadable_begin(&u, sfd, "artifacts/x.bin");
    int rc = ok ? fb_diff_live(&m, sfd, "session", &opts, &d, &err) : -1;
    size_t n_warns = w.n;
    opts.checksum = true;
    int rc_sum = ok ? fb_diff_live(&m, sfd, "session", &opts, &dsum, &err) : -1;
    unreadable_end(&u);
    REQUIRE(fchmodat(sfd, "artifacts/x.bin", 0644, 0) == 0);
    if (!ok) {
        fprintf(stderr, "skip test_live_file_unreadable: cannot make a file unreadable here\n");
    } else {
        CHECK_EQ_INT(rc, 0);
        const unsigned bits = FB_DIFFERS_CONTENT | FB_DIFFERS_MODE | FB_DIFFERS_MTIME;
        const want items[] = {
            {"artifacts/x.bin", FB_CHANGE_MODIFIED, bits},
            {"artifacts/z-link.bin", FB_CHANGE_MODIFIED, bits},
        };
        check_items(&d, items, 2, "unreadable, quick check");
        CHECK(warns_has(&w, "cannot read artifacts/x.bin (Permission denied): counted as "
                            "modified"));
        CHECK_EQ_INT(n_warns, 1);
        const fb_diff_item *it = find_item(&d, "artifacts/x.bin");
        CHECK(it && !it->b.has_sha256);
        CHECK_EQ_INT(d.files_hashed, 0);
        /* with checksum: the same verdict, every other file read */
        CHECK_EQ_INT(rc_sum, 0);
        check_items(&dsum, items, 2, "unreadable, checksum");
        CHECK_EQ_INT(dsum.files_hashed, 2); /* metadata.json, y.bin */
        CHECK_EQ_INT(w.n, 2);
    }
    warns_free(&w);
    fb_diff_fini(&d);
    fb_diff_fini(&dsum);
    fb_manifest_fini(&m);
    fb_config_fini(&cfg);
    close(sfd);
    fbtest_rmtree(root);
}

int main(void)
{
    RUN_TEST(test_manifests_every_kind);
    RUN_TEST(test_json);
    RUN_TEST(test_malformed_manifests);
    RUN_TEST(test_incremental_scope);
    RUN_TEST(test_live_full);
    RUN_TEST(test_live_incremental);
    RUN_TEST(test_live_swapped_after_scan);
    RUN_TEST(test_live_unreadable);
    RUN_TEST(test_live_file_unreadable);
    FBTEST_EXIT();
}
