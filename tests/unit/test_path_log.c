/* Unit tests of fb_path_log_build (include/fb_path_log.h) on synthetic
 * stores (real manifests, placeholder archives: the history is read from
 * the index and the manifests alone): versions across full backups and
 * incrementals in seq order, unchanged versions skipped (and kept, marked,
 * with `all`), a symlink whose target changes, a file that becomes a
 * symlink and a directory, a path missing from some backups, hardlinks
 * (their content is their file's), a path held by no backup, bad paths,
 * and a manifest removed while the log reads. */
#include "fbtest.h"
#include "store_fixture.h"

#include <stdbool.h>

#include "fb_path_log.h"

#define SID "plog"
#define T0 1790000000

typedef struct fx {
    char *root;
    fb_store *store;
    int sfd;
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

/* A manifest being written, entries in walk order (as test_as_of.c). */
typedef struct mf {
    fb_manifest m;
    uint64_t cursor;
    char id[FB_BACKUP_ID_LEN + 1];
} mf;

static char last_full[FB_BACKUP_ID_LEN + 1];

static void mf_begin(mf *b, fb_backup_type type, uint64_t seq)
{
    fixture_id(T0 + (int64_t)seq * 60, type, (unsigned)seq, b->id);
    fb_manifest *m = &b->m;
    fb_error err;
    fb_manifest_init(m);
    m->format = FB_MANIFEST_FORMAT;
    fixture_copy(m->backup_id, sizeof m->backup_id, b->id);
    fixture_copy(m->session_id, sizeof m->session_id, SID);
    m->seq = seq;
    m->type = type;
    m->created_at = T0 + (int64_t)seq * 60;
    if (type == FB_BACKUP_INCREMENTAL)
        fixture_copy(m->base, sizeof m->base, last_full);
    else
        fixture_copy(last_full, sizeof last_full, b->id);
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
                          .gid = 1, .mtime = T0 + tag, .size = size};
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

/* A file of content `tag`: its size and SHA-256 follow from it. */
static void mf_file(mf *b, const char *path, int tag)
{
    mf_add(b, path, FB_ENTRY_FILE, 100 + (uint64_t)tag, tag, NULL);
}

static void mf_write(fx *f, mf *b, char *id_out)
{
    if (fixture_write_backup(f->sfd, &b->m) != 0)
        fbtest_die("write backup");
    if (id_out)
        memcpy(id_out, b->id, FB_BACKUP_ID_LEN + 1);
    fb_manifest_fini(&b->m);
}

static int run_log(fx *f, const char *path, bool all, fb_path_log **out, fb_error *err)
{
    fb_index idx;
    if (fb_store_load_index(f->store, SID, 0, &idx, NULL, NULL, NULL, err) != 0)
        fbtest_die(err->message);
    fb_error_clear(err);
    fb_path_log_request req = {.session_id = SID, .path = path, .all = all};
    int rc = fb_path_log_build(f->store, &idx, &req, out, err);
    fb_index_fini(&idx);
    return rc;
}

/* Version i is backup id with content tag (a file of that tag). */
static bool is_file_version(const fb_path_log *log, size_t i, const char *id, int tag,
                            bool changed)
{
    if (i >= log->n_versions)
        return false;
    const fb_path_version *v = &log->versions[i];
    bool ok = !strcmp(v->id, id) && v->entry_type == FB_ENTRY_FILE && v->has_sha256 &&
              v->sha256[0] == (uint8_t)tag && v->size == 100 + (uint64_t)tag &&
              v->changed == changed && v->target == NULL;
    if (!ok)
        fprintf(stderr, "  version %zu: %s type %d sha %02x size %llu changed %d\n", i, v->id,
                (int)v->entry_type, v->sha256[0], (unsigned long long)v->size, v->changed);
    return ok;
}

/* F1 (state.json v1), I2 (v1 again), I3 (v2), F4 (v2 again; no
 * notes.txt), I5 (lacks state.json), F6 (v3). notes.txt only in F1 and F6,
 * the same both times. */
static void six_backups(fx *f, char ids[6][FB_BACKUP_ID_LEN + 1])
{
    mf b;
    mf_begin(&b, FB_BACKUP_FULL, 1);
    mf_file(&b, "notes.txt", 50);
    mf_file(&b, "state.json", 1);
    mf_write(f, &b, ids[0]);
    mf_begin(&b, FB_BACKUP_INCREMENTAL, 2);
    mf_file(&b, "state.json", 1);
    mf_write(f, &b, ids[1]);
    mf_begin(&b, FB_BACKUP_INCREMENTAL, 3);
    mf_file(&b, "state.json", 2);
    mf_write(f, &b, ids[2]);
    mf_begin(&b, FB_BACKUP_FULL, 4);
    mf_file(&b, "state.json", 2);
    mf_write(f, &b, ids[3]);
    mf_begin(&b, FB_BACKUP_INCREMENTAL, 5);
    mf_file(&b, "metadata.json", 9);
    mf_write(f, &b, ids[4]);
    mf_begin(&b, FB_BACKUP_FULL, 6);
    mf_file(&b, "notes.txt", 50);
    mf_file(&b, "state.json", 3);
    mf_write(f, &b, ids[5]);
}

static void test_versions_across_backups(void)
{
    fx f;
    REQUIRE(fx_setup(&f));
    char ids[6][FB_BACKUP_ID_LEN + 1];
    six_backups(&f, ids);
    fb_path_log *log = NULL;
    fb_error err;
    REQUIRE(run_log(&f, "state.json", false, &log, &err) == 0);
    CHECK(!strcmp(log->path, "state.json") && !strcmp(log->session_id, SID));
    CHECK_EQ_INT(log->n_backups, 6);
    CHECK_EQ_INT(log->n_holding, 5);
    CHECK_EQ_INT(log->n_changes, 3);
    CHECK_EQ_INT(log->n_versions, 3);
    CHECK(is_file_version(log, 0, ids[0], 1, true));
    CHECK(is_file_version(log, 1, ids[2], 2, true));
    CHECK(is_file_version(log, 2, ids[5], 3, true));
    CHECK(log->versions[0].backup_type == FB_BACKUP_FULL);
    CHECK(log->versions[1].backup_type == FB_BACKUP_INCREMENTAL);
    CHECK_EQ_INT(log->versions[1].seq, 3);
    CHECK_EQ_INT(log->versions[1].created_at, T0 + 3 * 60);
    fb_path_log_free(log);

    /* all: every backup holding it, the unchanged ones marked. */
    REQUIRE(run_log(&f, "state.json", true, &log, &err) == 0);
    CHECK_EQ_INT(log->n_versions, 5);
    CHECK(is_file_version(log, 0, ids[0], 1, true));
    CHECK(is_file_version(log, 1, ids[1], 1, false));
    CHECK(is_file_version(log, 2, ids[2], 2, true));
    CHECK(is_file_version(log, 3, ids[3], 2, false));
    CHECK(is_file_version(log, 4, ids[5], 3, true));
    fb_path_log_free(log);

    /* Missing from the backups between: compared with the last that held
     * it, so the same content after a gap is no change. */
    REQUIRE(run_log(&f, "notes.txt", true, &log, &err) == 0);
    CHECK_EQ_INT(log->n_holding, 2);
    CHECK_EQ_INT(log->n_versions, 2);
    CHECK(is_file_version(log, 0, ids[0], 50, true));
    CHECK(is_file_version(log, 1, ids[5], 50, false));
    fb_path_log_free(log);
    REQUIRE(run_log(&f, "notes.txt", false, &log, &err) == 0);
    CHECK_EQ_INT(log->n_versions, 1);
    fb_path_log_free(log);
    fx_teardown(&f);
}

/* A symlink whose target changes; a file that becomes a symlink, then a
 * directory, then a file again. */
static void test_symlinks_and_type_changes(void)
{
    fx f;
    REQUIRE(fx_setup(&f));
    char ids[5][FB_BACKUP_ID_LEN + 1];
    mf b;
    mf_begin(&b, FB_BACKUP_FULL, 1);
    mf_add(&b, "cur", FB_ENTRY_SYMLINK, 0, 0, "a.bin");
    mf_file(&b, "x", 1);
    mf_write(&f, &b, ids[0]);
    mf_begin(&b, FB_BACKUP_FULL, 2);
    mf_add(&b, "cur", FB_ENTRY_SYMLINK, 0, 0, "a.bin");
    mf_add(&b, "x", FB_ENTRY_SYMLINK, 0, 0, "y");
    mf_write(&f, &b, ids[1]);
    mf_begin(&b, FB_BACKUP_FULL, 3);
    mf_add(&b, "cur", FB_ENTRY_SYMLINK, 0, 0, "b.bin");
    mf_add(&b, "x", FB_ENTRY_DIR, 0, 0, NULL);
    mf_write(&f, &b, ids[2]);
    mf_begin(&b, FB_BACKUP_FULL, 4);
    mf_add(&b, "cur", FB_ENTRY_SYMLINK, 0, 0, "b.bin");
    mf_add(&b, "x", FB_ENTRY_DIR, 0, 7, NULL); /* another mtime: no content change */
    mf_write(&f, &b, ids[3]);
    mf_begin(&b, FB_BACKUP_FULL, 5);
    mf_file(&b, "x", 1);
    mf_write(&f, &b, ids[4]);

    fb_path_log *log = NULL;
    fb_error err;
    REQUIRE(run_log(&f, "cur", false, &log, &err) == 0);
    REQUIRE(log->n_versions == 2);
    CHECK(!strcmp(log->versions[0].id, ids[0]) && !strcmp(log->versions[0].target, "a.bin"));
    CHECK(!strcmp(log->versions[1].id, ids[2]) && !strcmp(log->versions[1].target, "b.bin"));
    CHECK(log->versions[1].entry_type == FB_ENTRY_SYMLINK && !log->versions[1].has_sha256);
    CHECK_EQ_INT(log->versions[1].size, 5);
    fb_path_log_free(log);

    REQUIRE(run_log(&f, "x", false, &log, &err) == 0);
    REQUIRE(log->n_versions == 4);
    CHECK(is_file_version(log, 0, ids[0], 1, true));
    CHECK(log->versions[1].entry_type == FB_ENTRY_SYMLINK && !strcmp(log->versions[1].id, ids[1]));
    CHECK(log->versions[2].entry_type == FB_ENTRY_DIR && !strcmp(log->versions[2].id, ids[2]));
    CHECK(log->versions[2].size == 0 && !log->versions[2].has_sha256);
    CHECK(is_file_version(log, 3, ids[4], 1, true));
    fb_path_log_free(log);
    fx_teardown(&f);
}

/* A hardlink's content is its file's: becoming a hardlink is a change of
 * type, linking to another path with the same bytes is not a change. */
static void test_hardlinks(void)
{
    fx f;
    REQUIRE(fx_setup(&f));
    char ids[3][FB_BACKUP_ID_LEN + 1];
    mf b;
    mf_begin(&b, FB_BACKUP_FULL, 1);
    mf_file(&b, "a", 4);
    mf_file(&b, "h", 4);
    mf_write(&f, &b, ids[0]);
    mf_begin(&b, FB_BACKUP_FULL, 2);
    mf_file(&b, "a", 4);
    mf_add(&b, "h", FB_ENTRY_HARDLINK, 104, 0, "a");
    mf_write(&f, &b, ids[1]);
    mf_begin(&b, FB_BACKUP_FULL, 3);
    mf_file(&b, "0", 4);
    mf_file(&b, "a", 5);
    mf_add(&b, "h", FB_ENTRY_HARDLINK, 104, 0, "0");
    mf_write(&f, &b, ids[2]);
    fb_path_log *log = NULL;
    fb_error err;
    REQUIRE(run_log(&f, "h", true, &log, &err) == 0);
    REQUIRE(log->n_versions == 3);
    CHECK(is_file_version(log, 0, ids[0], 4, true));
    const fb_path_version *v = &log->versions[1];
    CHECK(v->entry_type == FB_ENTRY_HARDLINK && v->changed && v->has_sha256 &&
          v->sha256[0] == 4 && v->size == 104 && !strcmp(v->target, "a"));
    v = &log->versions[2];
    CHECK(v->entry_type == FB_ENTRY_HARDLINK && !v->changed && !strcmp(v->target, "0"));
    fb_path_log_free(log);
    fx_teardown(&f);
}

static void test_not_found_and_bad_paths(void)
{
    fx f;
    REQUIRE(fx_setup(&f));
    fb_path_log *log = NULL;
    fb_error err;
    /* No backups at all. */
    CHECK_EQ_INT(run_log(&f, "state.json", false, &log, &err), FB_ENOTFOUND);
    CHECK(log == NULL);
    char ids[6][FB_BACKUP_ID_LEN + 1];
    six_backups(&f, ids);
    CHECK_EQ_INT(run_log(&f, "missing.json", false, &log, &err), FB_ENOTFOUND);
    CHECK(log == NULL);
    CHECK(strstr(err.message, "missing.json") && strstr(err.message, SID) &&
          strstr(err.message, "6 backups"));
    /* A prefix of a path, or a path below a file, is not the path. */
    CHECK_EQ_INT(run_log(&f, "state", false, &log, &err), FB_ENOTFOUND);
    CHECK_EQ_INT(run_log(&f, "state.json/x", false, &log, &err), FB_ENOTFOUND);

    const char *bad[] = {"", "/state.json", "../x", "a/../b", "a//b", ".", "a/./b", "/"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        fb_error_clear(&err);
        CHECK_EQ_INT(run_log(&f, bad[i], false, &log, &err), FB_EINVAL);
        CHECK(log == NULL);
    }
    /* What a shell adds is accepted. */
    REQUIRE(run_log(&f, "./state.json", false, &log, &err) == 0);
    CHECK(!strcmp(log->path, "state.json"));
    fb_path_log_free(log);
    char *norm = NULL;
    CHECK(fb_path_log_check_path("././logs//", &norm, &err) == 0 && !strcmp(norm, "logs"));
    free(norm);
    CHECK_EQ_INT(fb_path_log_check_path("/etc/passwd", &norm, &err), FB_EINVAL);
    CHECK(strstr(err.message, "absolute") != NULL && norm == NULL);
    fx_teardown(&f);
}

static int warnings;
static void count_warning(void *ctx, const char *message)
{
    (void)ctx;
    (void)message;
    warnings++;
}

/* A backup removed after the index was read (a reader takes no lock) is
 * skipped with a warning; the others still give the history. */
static void test_manifest_gone_meanwhile(void)
{
    fx f;
    REQUIRE(fx_setup(&f));
    char ids[6][FB_BACKUP_ID_LEN + 1];
    six_backups(&f, ids);
    fb_index idx;
    fb_error err;
    REQUIRE(fb_store_load_index(f.store, SID, 0, &idx, NULL, NULL, NULL, &err) == 0);
    char path[128];
    snprintf(path, sizeof path, "%s/manifest.json", ids[2]);
    REQUIRE(unlinkat(f.sfd, path, 0) == 0);
    fb_path_log_request req = {.session_id = SID, .path = "state.json", .warn = count_warning};
    fb_path_log *log = NULL;
    warnings = 0;
    REQUIRE(fb_path_log_build(f.store, &idx, &req, &log, &err) == 0);
    CHECK_EQ_INT(warnings, 1);
    CHECK_EQ_INT(log->n_backups, 5);
    CHECK_EQ_INT(log->n_versions, 3);
    CHECK(is_file_version(log, 1, ids[3], 2, true));
    fb_path_log_free(log);
    fb_index_fini(&idx);
    fx_teardown(&f);
}

int main(void)
{
    RUN_TEST(test_versions_across_backups);
    RUN_TEST(test_symlinks_and_type_changes);
    RUN_TEST(test_hardlinks);
    RUN_TEST(test_not_found_and_bad_paths);
    RUN_TEST(test_manifest_gone_meanwhile);
    FBTEST_EXIT();
}
