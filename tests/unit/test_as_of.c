/* Unit tests of fb_as_of_build (include/fb_as_of.h) on synthetic stores
 * (real manifests, placeholder archives: the tree is built from the index
 * and the manifests alone): a full alone, a full with incrementals laid
 * over it (a file changed twice, a file an incremental does not hold kept),
 * the sources of another base never mixed in, a base that is gone (refused,
 * or the incrementals alone), --only, a directory replaced by a file, an
 * entry without a parent, hardlinks whose file a later backup
 * replaced, and the selection of recover --path (fb_as_of_select). */
#include "fbtest.h"
#include "store_fixture.h"

#include <stdbool.h>

#include "fb_as_of.h"

#define SID "asof"
#define T0 1790000000

typedef struct fx {
    char *root;
    fb_store *store;
    int sfd; /* .flowloom/backups/SID */
} fx;

static bool fx_setup(fx *f)
{
    memset(f, 0, sizeof *f);
    f->root = fbtest_tempdir();
    f->store = fixture_store(f->root);
    fb_error err;
    return f->store && fb_store_open_session(f->store, SID, true, &f->sfd, &err) == 0;
}

static void fx_teardown(fx *f)
{
    close(f->sfd);
    fb_store_free(f->store);
    fbtest_rmtree(f->root);
}

/* A manifest being written: entries added in walk order, data offsets
 * increasing as in a real tar stream. */
typedef struct mf {
    fb_manifest m;
    uint64_t cursor;
} mf;

static void mf_begin(mf *b, fb_backup_type type, unsigned n, uint64_t seq, const char *base,
                     char id[FB_BACKUP_ID_LEN + 1])
{
    fixture_id(T0 + (int64_t)seq * 60, type, n, id);
    fb_manifest *m = &b->m;
    fb_error err;
    fb_manifest_init(m);
    m->format = FB_MANIFEST_FORMAT;
    fixture_copy(m->backup_id, sizeof m->backup_id, id);
    fixture_copy(m->session_id, sizeof m->session_id, SID);
    m->seq = seq;
    m->type = type;
    m->created_at = T0 + (int64_t)seq * 60;
    fixture_copy(m->base, sizeof m->base, base);
    if (fb_manifest_set_tool_version(m, "0.1.0-test", &err) != 0)
        fbtest_die("tool_version");
    m->archive.size = 10;
    memset(m->archive.sha256, (int)seq, FB_SHA256_LEN);
    m->archive.frame_size = 1048576;
    m->archive.frames = 1;
    m->archive.level = 3;
    b->cursor = 0;
}

static void mf_add(mf *b, const char *path, fb_entry_type type, uint64_t size, int tag,
                   const char *target)
{
    fb_entry_meta meta = {.type = type, .mode = type == FB_ENTRY_DIR ? 0755 : 0644, .uid = 1,
                          .gid = 1, .mtime = T0, .mtime_nsec = (uint32_t)tag, .size = size};
    uint8_t sha[FB_SHA256_LEN];
    memset(sha, tag, sizeof sha);
    uint64_t offset = 0;
    if (type == FB_ENTRY_FILE) {
        offset = b->cursor + 512;
        b->cursor = offset + (size + 511) / 512 * 512;
    } else if (type == FB_ENTRY_SYMLINK) {
        meta.size = strlen(target);
    } else if (type == FB_ENTRY_DIR) {
        meta.size = 0;
    }
    fb_error err;
    if (fb_manifest_add_entry(&b->m, path, &meta, type == FB_ENTRY_FILE ? sha : NULL, offset,
                              target, &err) != 0)
        fbtest_die(err.message);
}

static void mf_file(mf *b, const char *path, int tag)
{
    mf_add(b, path, FB_ENTRY_FILE, 100 + (uint64_t)tag, tag, NULL);
}

static void mf_dir(mf *b, const char *path)
{
    mf_add(b, path, FB_ENTRY_DIR, 0, 0, NULL);
}

static void mf_write(fx *f, mf *b)
{
    if (fixture_write_backup(f->sfd, &b->m) != 0)
        fbtest_die("write backup");
    fb_manifest_fini(&b->m);
}

/* The tree of id through a freshly rebuilt index. */
static int build(fx *f, const char *id, unsigned flags, fb_as_of **out, fb_error *err)
{
    fb_index idx;
    if (fb_store_load_index(f->store, SID, 0, &idx, NULL, NULL, NULL, err) != 0)
        fbtest_die(err->message);
    fb_error_clear(err);
    int rc = fb_as_of_build(f->store, SID, &idx, id, flags, out, err);
    fb_index_fini(&idx);
    if (rc)
        fprintf(stderr, "  as-of %s -> %d %s\n", id, rc, err->message);
    return rc;
}

static const fb_as_of_entry *at(const fb_as_of *t, const char *path)
{
    long i = fb_as_of_find(t, path, strlen(path));
    return i >= 0 ? &t->entries[i] : NULL;
}

/* The entry at path holds the file of tag `tag` from source `src`. */
static bool holds(const fb_as_of *t, const char *path, size_t src, int tag)
{
    const fb_as_of_entry *x = at(t, path);
    bool ok = x && x->source == src && x->e.meta.type == FB_ENTRY_FILE &&
              x->e.sha256[0] == (uint8_t)tag && x->e.meta.size == 100 + (uint64_t)tag;
    if (!ok)
        fprintf(stderr, "  %s: expected tag %d from source %zu, got %s\n", path, tag, src,
                x ? "another" : "nothing");
    return ok;
}

static bool sources_are(const fb_as_of *t, const char *const *ids, size_t n)
{
    bool ok = t->n_sources == n;
    for (size_t i = 0; ok && i < n; i++)
        ok = !strcmp(t->sources[i].id, ids[i]);
    if (!ok) {
        fprintf(stderr, "  sources:");
        for (size_t i = 0; i < t->n_sources; i++)
            fprintf(stderr, " %s", t->sources[i].id);
        fprintf(stderr, "\n");
    }
    return ok;
}

static bool sorted_tree(const fb_as_of *t)
{
    for (size_t i = 1; i < t->n_entries; i++)
        if (strcmp(t->entries[i - 1].e.path, t->entries[i].e.path) >= 0)
            return false;
    return true;
}

/* F: the session; I1 changes metadata.json, state.json and state/a.json;
 * I2 changes state.json again and adds state/b.json, and does not hold
 * state/a.json (an incremental deletes nothing). */
static void three_backups(fx *f, char *full, char *i1, char *i2)
{
    mf b;
    mf_begin(&b, FB_BACKUP_FULL, 1, 1, NULL, full);
    mf_dir(&b, "logs");
    mf_file(&b, "logs/run.log", 1);
    mf_file(&b, "metadata.json", 2);
    mf_dir(&b, "state");
    mf_file(&b, "state/a.json", 3);
    mf_file(&b, "state.json", 4);
    mf_write(f, &b);
    mf_begin(&b, FB_BACKUP_INCREMENTAL, 2, 2, full, i1);
    mf_file(&b, "metadata.json", 12);
    mf_dir(&b, "state");
    mf_file(&b, "state/a.json", 13);
    mf_file(&b, "state.json", 14);
    mf_write(f, &b);
    mf_begin(&b, FB_BACKUP_INCREMENTAL, 3, 3, full, i2);
    mf_dir(&b, "state");
    mf_file(&b, "state/b.json", 25);
    mf_file(&b, "state.json", 24);
    mf_write(f, &b);
}

static void test_full_alone(void)
{
    fx f;
    REQUIRE(fx_setup(&f));
    char full[32], i1[32], i2[32];
    three_backups(&f, full, i1, i2);
    fb_as_of *t;
    fb_error err;
    REQUIRE(build(&f, full, 0, &t, &err) == 0);
    const char *want[] = {full};
    CHECK(sources_are(t, want, 1));
    CHECK(!strcmp(t->backup_id, full) && t->type == FB_BACKUP_FULL && !t->base_missing);
    CHECK_EQ_INT(t->n_entries, 6);
    CHECK(sorted_tree(t));
    CHECK(holds(t, "logs/run.log", 0, 1));
    CHECK(holds(t, "state.json", 0, 4));
    CHECK(at(t, "state/b.json") == NULL);
    CHECK_EQ_INT(t->totals.files, 4);
    CHECK_EQ_INT(t->totals.dirs, 2);
    CHECK_EQ_INT(t->totals.bytes, 101 + 102 + 103 + 104);
    CHECK_EQ_INT(t->sources[0].held, 6);
    CHECK_EQ_INT(t->sources[0].manifest_entries, 6);
    CHECK_EQ_INT(t->sources[0].archive_sha256[0], 1);
    CHECK(t->entries[0].data_path == NULL);
    fb_as_of_free(t);
    fx_teardown(&f);
}

static void test_full_and_incrementals(void)
{
    fx f;
    REQUIRE(fx_setup(&f));
    char full[32], i1[32], i2[32];
    three_backups(&f, full, i1, i2);
    fb_as_of *t;
    fb_error err;

    REQUIRE(build(&f, i2, 0, &t, &err) == 0);
    const char *want2[] = {full, i1, i2};
    CHECK(sources_are(t, want2, 3));
    CHECK(t->type == FB_BACKUP_INCREMENTAL && !strcmp(t->base, full));
    CHECK(sorted_tree(t));
    CHECK_EQ_INT(t->n_entries, 7);
    CHECK(holds(t, "logs/run.log", 0, 1));  /* only the full has it */
    CHECK(holds(t, "metadata.json", 1, 12)); /* I1 over F; I2 lacks it */
    CHECK(holds(t, "state.json", 2, 24));   /* changed twice: I2's */
    CHECK(holds(t, "state/a.json", 1, 13)); /* not in I2: not deleted */
    CHECK(holds(t, "state/b.json", 2, 25));
    const fb_as_of_entry *d = at(t, "state");
    CHECK(d && d->source == 2 && d->e.meta.type == FB_ENTRY_DIR);
    CHECK_EQ_INT(t->sources[0].held, 2); /* logs, logs/run.log */
    CHECK_EQ_INT(t->sources[1].held, 2);
    CHECK_EQ_INT(t->sources[2].held, 3);
    CHECK_EQ_INT(t->totals.files, 5);
    fb_as_of_free(t);

    /* As of the first incremental: I2 is not there yet. */
    REQUIRE(build(&f, i1, 0, &t, &err) == 0);
    const char *want1[] = {full, i1};
    CHECK(sources_are(t, want1, 2));
    CHECK(holds(t, "state.json", 1, 14));
    CHECK(at(t, "state/b.json") == NULL);
    fb_as_of_free(t);

    /* --only: the incremental's own entries. */
    REQUIRE(build(&f, i2, FB_AS_OF_ONLY, &t, &err) == 0);
    const char *want_only[] = {i2};
    CHECK(sources_are(t, want_only, 1));
    CHECK_EQ_INT(t->n_entries, 3);
    CHECK(holds(t, "state.json", 0, 24));
    CHECK(at(t, "logs/run.log") == NULL);
    fb_as_of_free(t);

    /* Not in the index. */
    char ghost[32];
    fixture_id(T0, FB_BACKUP_FULL, 0xdead, ghost);
    CHECK_EQ_INT(build(&f, ghost, 0, &t, &err), FB_ENOTFOUND);
    CHECK(strstr(err.message, ghost) && strstr(err.message, SID));
    CHECK(t == NULL);
    fx_teardown(&f);
}

/* F1, I1 (of F1), F2, Ix (of F1, taken after F2: another writer's, or a
 * clock that went back), I2 (of F2). Each tree has its own base only. */
static void test_other_base_not_mixed_in(void)
{
    fx f;
    REQUIRE(fx_setup(&f));
    char f1[32], i1[32], f2[32], ix[32], i2[32];
    mf b;
    mf_begin(&b, FB_BACKUP_FULL, 1, 1, NULL, f1);
    mf_file(&b, "old-only.txt", 1);
    mf_file(&b, "state.json", 2);
    mf_write(&f, &b);
    mf_begin(&b, FB_BACKUP_INCREMENTAL, 2, 2, f1, i1);
    mf_file(&b, "i1.json", 3);
    mf_file(&b, "state.json", 4);
    mf_write(&f, &b);
    mf_begin(&b, FB_BACKUP_FULL, 3, 3, NULL, f2);
    mf_file(&b, "state.json", 5);
    mf_write(&f, &b);
    mf_begin(&b, FB_BACKUP_INCREMENTAL, 4, 4, f1, ix);
    mf_file(&b, "ix.json", 6);
    mf_write(&f, &b);
    mf_begin(&b, FB_BACKUP_INCREMENTAL, 5, 5, f2, i2);
    mf_file(&b, "state.json", 7);
    mf_write(&f, &b);

    fb_as_of *t;
    fb_error err;
    REQUIRE(build(&f, i2, 0, &t, &err) == 0);
    const char *want[] = {f2, i2};
    CHECK(sources_are(t, want, 2));
    CHECK_EQ_INT(t->n_entries, 1);
    CHECK(holds(t, "state.json", 1, 7));
    CHECK(!at(t, "i1.json") && !at(t, "ix.json") && !at(t, "old-only.txt"));
    fb_as_of_free(t);

    REQUIRE(build(&f, ix, 0, &t, &err) == 0);
    const char *wantx[] = {f1, i1, ix};
    CHECK(sources_are(t, wantx, 3));
    CHECK(holds(t, "state.json", 1, 4));
    CHECK(holds(t, "old-only.txt", 0, 1));
    CHECK(at(t, "ix.json") && at(t, "i1.json"));
    fb_as_of_free(t);
    fx_teardown(&f);
}

static void remove_backup(fx *f, const char *id)
{
    fb_error err;
    if (fb_remove_tree_at(f->sfd, SID, id, &err) != 0)
        fbtest_die(err.message);
}

static void test_missing_base(void)
{
    fx f;
    REQUIRE(fx_setup(&f));
    char full[32], i1[32], i2[32];
    three_backups(&f, full, i1, i2);
    remove_backup(&f, full);
    fb_as_of *t = NULL;
    fb_error err;
    CHECK_EQ_INT(build(&f, i2, 0, &t, &err), FB_ENOTFOUND);
    CHECK(t == NULL);
    char want[512];
    snprintf(want, sizeof want,
             "session %s: backup %s is an incremental whose base full backup %s is gone "
             "(removed or never taken)",
             SID, i2, full);
    CHECK(!strcmp(err.message, want));

    /* The mount's way: the incrementals of that base alone. */
    REQUIRE(build(&f, i2, FB_AS_OF_WITHOUT_BASE, &t, &err) == 0);
    const char *inc[] = {i1, i2};
    CHECK(sources_are(t, inc, 2));
    CHECK(t->base_missing);
    CHECK(holds(t, "state.json", 1, 24));
    CHECK(holds(t, "state/a.json", 0, 13));
    CHECK(!at(t, "logs/run.log"));
    fb_as_of_free(t);

    /* --only needs no base. */
    REQUIRE(build(&f, i1, FB_AS_OF_ONLY, &t, &err) == 0);
    CHECK_EQ_INT(t->n_sources, 1);
    fb_as_of_free(t);

    /* No full backup was ever taken before it: base null. */
    char lone[32];
    mf b;
    mf_begin(&b, FB_BACKUP_INCREMENTAL, 9, 9, NULL, lone);
    mf_file(&b, "state.json", 9);
    mf_write(&f, &b);
    CHECK_EQ_INT(build(&f, lone, 0, &t, &err), FB_ENOTFOUND);
    CHECK(strstr(err.message, lone) && strstr(err.message, "no base full backup"));
    fx_teardown(&f);
}

/* A later backup holds a file where there was a directory: what was below
 * it goes. One holds a directory where there was a file: it is one. An
 * entry whose parent is in no backup is left out. */
static void test_type_changes_keep_a_tree(void)
{
    fx f;
    REQUIRE(fx_setup(&f));
    char full[32], incr[32];
    mf b;
    mf_begin(&b, FB_BACKUP_FULL, 1, 1, NULL, full);
    mf_dir(&b, "cache");
    mf_dir(&b, "cache/deep");
    mf_file(&b, "cache/deep/x", 1);
    mf_file(&b, "cache/y", 2);
    mf_file(&b, "cache-list", 3);
    mf_file(&b, "out", 4);
    mf_write(&f, &b);
    mf_begin(&b, FB_BACKUP_INCREMENTAL, 2, 2, full, incr);
    mf_file(&b, "cache", 5);
    mf_dir(&b, "out");
    mf_file(&b, "out/z", 6);
    mf_file(&b, "nodir/x.json", 7);
    mf_write(&f, &b);
    fb_as_of *t;
    fb_error err;
    REQUIRE(build(&f, incr, 0, &t, &err) == 0);
    CHECK(sorted_tree(t));
    CHECK(holds(t, "cache", 1, 5));
    CHECK(!at(t, "cache/deep") && !at(t, "cache/deep/x") && !at(t, "cache/y"));
    CHECK(holds(t, "cache-list", 0, 3));
    const fb_as_of_entry *o = at(t, "out");
    CHECK(o && o->e.meta.type == FB_ENTRY_DIR && o->source == 1);
    CHECK(holds(t, "out/z", 1, 6));
    CHECK(!at(t, "nodir/x.json"));
    CHECK_EQ_INT(t->n_entries, 4);
    CHECK_EQ_INT(t->totals.dirs, 1);
    fb_as_of_free(t);
    fx_teardown(&f);
}

/* F holds file a with hardlinks b and c, and file k with hardlink l; I
 * replaces a and holds hardlink m to its own file n. As of I: a is I's; b
 * keeps F's content (a file whose bytes are F's a), c links to b; l still
 * links to k; m to n. */
static void test_hardlinks_keep_their_content(void)
{
    fx f;
    REQUIRE(fx_setup(&f));
    char full[32], incr[32];
    mf b;
    mf_begin(&b, FB_BACKUP_FULL, 1, 1, NULL, full);
    mf_file(&b, "a", 1);
    mf_add(&b, "b", FB_ENTRY_HARDLINK, 101, 0, "a");
    mf_add(&b, "c", FB_ENTRY_HARDLINK, 101, 0, "a");
    mf_file(&b, "k", 2);
    mf_add(&b, "l", FB_ENTRY_HARDLINK, 102, 0, "k");
    mf_write(&f, &b);
    mf_begin(&b, FB_BACKUP_INCREMENTAL, 2, 2, full, incr);
    mf_file(&b, "a", 3);
    mf_file(&b, "n", 4);
    mf_add(&b, "m", FB_ENTRY_HARDLINK, 104, 0, "n");
    mf_write(&f, &b);
    fb_as_of *t;
    fb_error err;
    REQUIRE(build(&f, incr, 0, &t, &err) == 0);
    CHECK(holds(t, "a", 1, 3));
    const fb_as_of_entry *eb = at(t, "b"), *ec = at(t, "c"), *el = at(t, "l"), *em = at(t, "m");
    REQUIRE(eb && ec && el && em);
    CHECK(holds(t, "b", 0, 1));
    CHECK(eb->data_path && !strcmp(eb->data_path, "a"));
    CHECK(eb->e.target == NULL);
    CHECK(ec->e.meta.type == FB_ENTRY_HARDLINK && !strcmp(ec->e.target, "b") && ec->source == 0);
    CHECK(el->e.meta.type == FB_ENTRY_HARDLINK && !strcmp(el->e.target, "k"));
    CHECK(em->e.meta.type == FB_ENTRY_HARDLINK && !strcmp(em->e.target, "n") && em->source == 1);
    CHECK_EQ_INT(t->totals.files, 7);
    CHECK_EQ_INT(t->totals.bytes, 103 + 101 + 102 + 104);
    fb_as_of_free(t);

    /* Replaced again by a second incremental: b is replaced, c keeps F's a
     * through b's data. */
    char incr2[32];
    mf_begin(&b, FB_BACKUP_INCREMENTAL, 3, 3, full, incr2);
    mf_file(&b, "b", 5);
    mf_write(&f, &b);
    REQUIRE(build(&f, incr2, 0, &t, &err) == 0);
    CHECK(holds(t, "b", 2, 5));
    CHECK(holds(t, "c", 0, 1));
    ec = at(t, "c");
    CHECK(ec && ec->data_path && !strcmp(ec->data_path, "a"));
    fb_as_of_free(t);
    fx_teardown(&f);
}

/* recover --path: the entries the patterns match, their parent
 * directories, each pattern's count, and the sources that no longer hold
 * anything dropped. */
static void test_select_by_patterns(void)
{
    fx f;
    REQUIRE(fx_setup(&f));
    char full[32], i1[32], i2[32];
    three_backups(&f, full, i1, i2);
    fb_as_of *t;
    fb_error err;

    /* A directory pattern takes the directory and everything below it. */
    REQUIRE(build(&f, i2, 0, &t, &err) == 0);
    const char *pats[] = {"logs/", "state/*.json"};
    size_t hits[2];
    REQUIRE(fb_as_of_select(t, pats, 2, hits, &err) == 0);
    CHECK_EQ_INT(hits[0], 2); /* logs, logs/run.log */
    CHECK_EQ_INT(hits[1], 2); /* state/a.json, state/b.json */
    CHECK_EQ_INT(t->n_entries, 5); /* and state, their parent */
    CHECK(sorted_tree(t));
    CHECK(at(t, "state") != NULL && at(t, "state.json") == NULL && at(t, "metadata.json") == NULL);
    const char *want[] = {full, i1, i2};
    CHECK(sources_are(t, want, 3));
    /* The sources are renumbered with the entries. */
    CHECK(holds(t, "logs/run.log", 0, 1));
    CHECK(holds(t, "state/a.json", 1, 13));
    CHECK(holds(t, "state/b.json", 2, 25));
    CHECK_EQ_INT(t->totals.files, 3);
    CHECK_EQ_INT(t->totals.dirs, 2);
    CHECK_EQ_INT(t->totals.bytes, 101 + 113 + 125);
    fb_as_of_free(t);

    /* A pattern without '/' at its end is the entry itself; '*' does not
     * cross a '/'. Sources that hold nothing selected are dropped. */
    REQUIRE(build(&f, i2, 0, &t, &err) == 0);
    const char *pats2[] = {"*.json", "nothing/", "state"};
    size_t hits2[3];
    REQUIRE(fb_as_of_select(t, pats2, 3, hits2, &err) == 0);
    CHECK_EQ_INT(hits2[0], 2); /* metadata.json, state.json */
    CHECK_EQ_INT(hits2[1], 0);
    CHECK_EQ_INT(hits2[2], 1); /* the directory alone */
    CHECK_EQ_INT(t->n_entries, 3);
    const char *want2[] = {i1, i2};
    CHECK(sources_are(t, want2, 2));
    CHECK(holds(t, "metadata.json", 0, 12));
    CHECK(holds(t, "state.json", 1, 24));
    CHECK(at(t, "state/a.json") == NULL);
    CHECK_EQ_INT(t->sources[0].held, 1);
    CHECK_EQ_INT(t->sources[1].held, 2);
    fb_as_of_free(t);

    /* Deep entries bring every directory above them. */
    mf b;
    char f2[32];
    mf_begin(&b, FB_BACKUP_FULL, 9, 4, NULL, f2);
    mf_dir(&b, "a");
    mf_dir(&b, "a/b");
    mf_dir(&b, "a/b/c");
    mf_file(&b, "a/b/c/x.txt", 1);
    mf_file(&b, "a/b/y.txt", 2);
    mf_file(&b, "a/z.txt", 3);
    mf_write(&f, &b);
    REQUIRE(build(&f, f2, 0, &t, &err) == 0);
    const char *pats3[] = {"a/*/c/*.txt"};
    size_t hits3[1];
    REQUIRE(fb_as_of_select(t, pats3, 1, hits3, &err) == 0);
    CHECK_EQ_INT(hits3[0], 1);
    CHECK_EQ_INT(t->n_entries, 4);
    CHECK(at(t, "a") && at(t, "a/b") && at(t, "a/b/c") && holds(t, "a/b/c/x.txt", 0, 1));
    fb_as_of_free(t);
    fx_teardown(&f);
}

/* A selected hardlink whose file is not selected keeps the file's content:
 * the first of them becomes a file (data_path: the file), the others link
 * to it; a hardlink selected with its file stays a hardlink. */
static void test_select_keeps_hardlink_content(void)
{
    fx f;
    REQUIRE(fx_setup(&f));
    mf b;
    char full[32];
    mf_begin(&b, FB_BACKUP_FULL, 1, 1, NULL, full);
    mf_file(&b, "f", 7);
    mf_add(&b, "l1", FB_ENTRY_HARDLINK, 107, 0, "f");
    mf_add(&b, "l2", FB_ENTRY_HARDLINK, 107, 0, "f");
    mf_file(&b, "g", 8);
    mf_add(&b, "m", FB_ENTRY_HARDLINK, 108, 0, "g");
    mf_write(&f, &b);
    fb_as_of *t;
    fb_error err;
    REQUIRE(build(&f, full, 0, &t, &err) == 0);
    const char *pats[] = {"l?", "g", "m"};
    size_t hits[3];
    REQUIRE(fb_as_of_select(t, pats, 3, hits, &err) == 0);
    CHECK_EQ_INT(hits[0], 2);
    CHECK_EQ_INT(t->n_entries, 4);
    CHECK(at(t, "f") == NULL);
    const fb_as_of_entry *l1 = at(t, "l1"), *l2 = at(t, "l2"), *m = at(t, "m");
    REQUIRE(l1 && l2 && m);
    CHECK(l1->e.meta.type == FB_ENTRY_FILE && l1->data_path && !strcmp(l1->data_path, "f"));
    CHECK(l1->e.sha256[0] == 7 && l1->e.meta.size == 107 && l1->e.target == NULL);
    CHECK(l2->e.meta.type == FB_ENTRY_HARDLINK && !strcmp(l2->e.target, "l1"));
    CHECK(m->e.meta.type == FB_ENTRY_HARDLINK && !strcmp(m->e.target, "g") && !m->data_path);
    CHECK_EQ_INT(t->totals.files, 4);
    CHECK_EQ_INT(t->totals.bytes, 107 + 108);
    fb_as_of_free(t);
    fx_teardown(&f);
}

int main(void)
{
    RUN_TEST(test_full_alone);
    RUN_TEST(test_full_and_incrementals);
    RUN_TEST(test_other_base_not_mixed_in);
    RUN_TEST(test_missing_base);
    RUN_TEST(test_type_changes_keep_a_tree);
    RUN_TEST(test_hardlinks_keep_their_content);
    RUN_TEST(test_select_by_patterns);
    RUN_TEST(test_select_keeps_hardlink_content);
    FBTEST_EXIT();
}
