/* Unit tests of fb_verify_backup_dir and fb_verify_index_record: a real
 * backup passes; copies of it with a flipped byte, a truncated, missing or
 * symlinked archive, and manifests that disagree with the archive in one
 * field each fail with FB_ECORRUPT and a message naming the problem. Also
 * the validation that follows the writer (verify_live_i.h), replayed on a
 * finished archive. */
#include "fbtest.h"

#include <stdbool.h>
#include <sys/stat.h>

#include "fb_backup.h"
#include "fb_config.h"
#include "fb_fsutil.h"
#include "fb_hash.h"
#include "fb_index.h"
#include "fb_seek_table.h"
#include "fb_store.h"
#include "fb_verify.h"
#include "verify_live_i.h"

#define SID "vsess"
#define NOW 1790000000

static void ignore_warn(void *ctx, const char *msg)
{
    (void)ctx;
    (void)msg;
}

typedef struct fixture {
    char *root;
    int sfd;      /* session source dir */
    fb_store *store;
    int sess;     /* store session dir */
    fb_config cfg;
    char full[FB_BACKUP_ID_LEN + 1];
    char *copies; /* temp dir for corrupted copies */
} fixture;

static void put(int dfd, const char *rel, const void *data, size_t len)
{
    int fd = openat(dfd, rel, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || fb_write_all(fd, data, len) != 0 || close(fd) != 0) {
        fprintf(stderr, "cannot write %s\n", rel);
        exit(2);
    }
}

static int run_backup(fixture *f, fb_backup_type type, int64_t now, bool verify, char *id_out,
                      fb_error *err)
{
    fb_backup_request req;
    memset(&req, 0, sizeof req);
    req.session_id = SID;
    req.type = type;
    req.now = now;
    req.config = &f->cfg;
    req.verify = verify;
    req.warn = ignore_warn;
    fb_backup_result res;
    fb_backup_result_init(&res);
    int rc = fb_backup_run(f->store, &req, &res, err);
    if (rc == 0)
        strcpy(id_out, res.manifest.backup_id);
    fb_backup_result_fini(&res);
    return rc;
}

static bool setup(fixture *f)
{
    memset(f, 0, sizeof *f);
    f->root = fbtest_tempdir();
    f->copies = fbtest_tempdir();
    int rfd = open(f->root, O_RDONLY | O_DIRECTORY);
    mkdirat(rfd, ".flowloom", 0755);
    mkdirat(rfd, ".flowloom/sessions", 0755);
    mkdirat(rfd, ".flowloom/sessions/" SID, 0755);
    f->sfd = openat(rfd, ".flowloom/sessions/" SID, O_RDONLY | O_DIRECTORY);
    close(rfd);
    put(f->sfd, "metadata.json", "{\"id\": 1}", 9);
    put(f->sfd, "state.json", "{\"s\": 2}", 8);
    mkdirat(f->sfd, "state", 0755);
    put(f->sfd, "state/x.json", "[1, 2]", 6);
    mkdirat(f->sfd, "logs", 0755);
    size_t llen = 200 * 1024;
    uint8_t *buf = malloc(llen);
    fbtest_fill(buf, llen, 3, 1);
    put(f->sfd, "logs/run.log", buf, llen);
    fbtest_fill(buf, 100 * 1024, 4, 0);
    put(f->sfd, "blob.bin", buf, 100 * 1024);
    free(buf);
    symlinkat("state/x.json", f->sfd, "link");
    linkat(f->sfd, "blob.bin", f->sfd, "blob2.bin", 0);

    fb_error err;
    if (fb_config_init_defaults(&f->cfg, &err) != 0)
        return false;
    f->cfg.frame_size = 65536;
    f->cfg.threads = 1;
    if (fb_store_open(f->root, true, &f->store, &err) != 0)
        return false;
    if (run_backup(f, FB_BACKUP_FULL, NOW, true, f->full, &err) != 0) {
        fprintf(stderr, "backup: %s\n", err.message);
        return false;
    }
    return fb_store_open_session(f->store, SID, false, &f->sess, &err) == 0;
}

static void teardown(fixture *f)
{
    close(f->sess);
    close(f->sfd);
    fb_store_free(f->store);
    fb_config_fini(&f->cfg);
    fbtest_rmtree(f->root);
    fbtest_rmtree(f->copies);
}

static void read_manifest(fixture *f, const char *id, fb_manifest *m)
{
    fb_error err;
    fb_manifest_init(m);
    if (fb_store_read_manifest(f->sess, SID, id, m, &err) != 0) {
        fprintf(stderr, "read manifest: %s\n", err.message);
        exit(2);
    }
}

/* A fresh copy of backup id under f->copies/<tag>; returns its dir fd. */
static int copy_backup(fixture *f, const char *id, const char *tag)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cp -a '%s/.flowloom/backups/%s/%s' '%s/%s'", f->root, SID, id,
             f->copies, tag);
    if (system(cmd) != 0)
        exit(2);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", f->copies, tag);
    return open(path, O_RDONLY | O_DIRECTORY);
}

static int verify_dir(int dfd, const fb_manifest *m, fb_error *err)
{
    fb_error_clear(err);
    int rc = fb_verify_backup_dir(dfd, m, SID "/backup", err);
    fprintf(stderr, "  verify -> %d %s\n", rc, err->message);
    return rc;
}

static bool msg_has(const fb_error *err, const char *needle)
{
    return strstr(err->message, needle) != NULL;
}

static size_t entry_index(const fb_manifest *m, const char *path)
{
    for (size_t i = 0; i < m->n_entries; i++)
        if (!strcmp(m->entries[i].path, path))
            return i;
    fprintf(stderr, "no entry %s\n", path);
    exit(2);
}

static void test_good_backup_passes(void)
{
    fixture f;
    REQUIRE(setup(&f));
    fb_manifest m;
    read_manifest(&f, f.full, &m);
    fb_error err;
    int bfd = openat(f.sess, f.full, O_RDONLY | O_DIRECTORY);
    CHECK_EQ_INT(verify_dir(bfd, &m, &err), 0);
    /* verify never modifies: the archive's mtime and content stay */
    struct stat before, after;
    fstatat(bfd, "archive.tar.zst", &before, 0);
    CHECK_EQ_INT(verify_dir(bfd, &m, &err), 0);
    fstatat(bfd, "archive.tar.zst", &after, 0);
    CHECK(before.st_mtim.tv_nsec == after.st_mtim.tv_nsec && before.st_size == after.st_size);
    close(bfd);
    fb_manifest_fini(&m);
    teardown(&f);
}

static void test_damaged_archive(void)
{
    fixture f;
    REQUIRE(setup(&f));
    fb_manifest m;
    read_manifest(&f, f.full, &m);
    fb_error err;

    /* a flipped byte in the middle */
    int d = copy_backup(&f, f.full, "flip");
    int fd = openat(d, "archive.tar.zst", O_RDWR);
    uint8_t b;
    off_t mid = (off_t)(m.archive.size / 2);
    CHECK(pread(fd, &b, 1, mid) == 1);
    b ^= 0x5a;
    CHECK(pwrite(fd, &b, 1, mid) == 1);
    close(fd);
    CHECK_EQ_INT(verify_dir(d, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, SID "/backup"));
    close(d);

    /* a flipped byte in the first frame's header area */
    d = copy_backup(&f, f.full, "flip-start");
    fd = openat(d, "archive.tar.zst", O_RDWR);
    CHECK(pread(fd, &b, 1, 20) == 1);
    b ^= 0xff;
    CHECK(pwrite(fd, &b, 1, 20) == 1);
    close(fd);
    CHECK_EQ_INT(verify_dir(d, &m, &err), FB_ECORRUPT);
    close(d);

    /* truncated */
    d = copy_backup(&f, f.full, "trunc");
    fd = openat(d, "archive.tar.zst", O_RDWR);
    CHECK(ftruncate(fd, (off_t)m.archive.size - 100) == 0);
    close(fd);
    CHECK_EQ_INT(verify_dir(d, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "archive.tar.zst") && msg_has(&err, "size"));
    close(d);

    /* deleted */
    d = copy_backup(&f, f.full, "deleted");
    CHECK(unlinkat(d, "archive.tar.zst", 0) == 0);
    CHECK_EQ_INT(verify_dir(d, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "archive.tar.zst") && msg_has(&err, "missing"));

    /* replaced by a symlink to a good archive: not followed */
    char target[4096];
    snprintf(target, sizeof target, "%s/.flowloom/backups/%s/%s/archive.tar.zst", f.root, SID,
             f.full);
    CHECK(symlinkat(target, d, "archive.tar.zst") == 0);
    CHECK_EQ_INT(verify_dir(d, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "symlink"));
    close(d);

    /* same size but one byte of the seek table changed */
    d = copy_backup(&f, f.full, "seek");
    fd = openat(d, "archive.tar.zst", O_RDWR);
    off_t at = (off_t)m.archive.size - 12;
    CHECK(pread(fd, &b, 1, at) == 1);
    b ^= 0x01;
    CHECK(pwrite(fd, &b, 1, at) == 1);
    close(fd);
    CHECK_EQ_INT(verify_dir(d, &m, &err), FB_ECORRUPT);
    close(d);

    fb_manifest_fini(&m);
    teardown(&f);
}

static void test_manifest_disagrees(void)
{
    fixture f;
    REQUIRE(setup(&f));
    fb_error err;
    int bfd = openat(f.sess, f.full, O_RDONLY | O_DIRECTORY);
    fb_manifest m;

    /* a wrong file sha256 */
    read_manifest(&f, f.full, &m);
    m.entries[entry_index(&m, "logs/run.log")].sha256[5] ^= 1;
    CHECK_EQ_INT(verify_dir(bfd, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, SID "/backup: logs/run.log: content sha256 mismatch"));
    fb_manifest_fini(&m);

    /* a wrong archive sha256 */
    read_manifest(&f, f.full, &m);
    m.archive.sha256[0] ^= 1;
    CHECK_EQ_INT(verify_dir(bfd, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, SID "/backup: archive.tar.zst: sha256 mismatch"));
    fb_manifest_fini(&m);

    /* a wrong frame count */
    read_manifest(&f, f.full, &m);
    m.archive.frames++;
    CHECK_EQ_INT(verify_dir(bfd, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "frames"));
    fb_manifest_fini(&m);

    /* a wrong archive size */
    read_manifest(&f, f.full, &m);
    m.archive.size++;
    CHECK_EQ_INT(verify_dir(bfd, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "size"));
    fb_manifest_fini(&m);

    /* one entry fewer in the manifest than in the archive */
    read_manifest(&f, f.full, &m);
    size_t n = m.n_entries;
    m.n_entries--;
    CHECK_EQ_INT(verify_dir(bfd, &m, &err), FB_ECORRUPT);
    char want[256];
    snprintf(want, sizeof want, "archive has %zu entries, manifest %zu", n, n - 1);
    CHECK(msg_has(&err, want));
    m.n_entries++;
    fb_manifest_fini(&m);

    /* one entry more in the manifest */
    read_manifest(&f, f.full, &m);
    fb_entry_meta dm = {FB_ENTRY_DIR, 0755, 0, 0, NOW, 0, 0};
    CHECK_EQ_INT(fb_manifest_add_entry(&m, "zzz", &dm, NULL, 0, NULL, &err), 0);
    CHECK_EQ_INT(verify_dir(bfd, &m, &err), FB_ECORRUPT);
    snprintf(want, sizeof want, "archive has %zu entries, manifest %zu", n, n + 1);
    CHECK(msg_has(&err, want));
    fb_manifest_fini(&m);

    /* a wrong data offset: the mount would read the wrong bytes */
    read_manifest(&f, f.full, &m);
    m.entries[entry_index(&m, "logs/run.log")].offset += 512;
    CHECK_EQ_INT(verify_dir(bfd, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "logs/run.log") && msg_has(&err, "offset"));
    fb_manifest_fini(&m);

    /* each header field */
    read_manifest(&f, f.full, &m);
    m.entries[entry_index(&m, "state.json")].meta.mode ^= 0100;
    CHECK_EQ_INT(verify_dir(bfd, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "state.json: mode"));
    fb_manifest_fini(&m);

    read_manifest(&f, f.full, &m);
    m.entries[entry_index(&m, "state.json")].meta.mtime_nsec ^= 1;
    CHECK_EQ_INT(verify_dir(bfd, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "state.json: mtime_nsec"));
    fb_manifest_fini(&m);

    read_manifest(&f, f.full, &m);
    m.entries[entry_index(&m, "state")].meta.mtime++;
    CHECK_EQ_INT(verify_dir(bfd, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "state: mtime"));
    fb_manifest_fini(&m);

    read_manifest(&f, f.full, &m);
    m.entries[entry_index(&m, "metadata.json")].meta.uid = 4242;
    CHECK_EQ_INT(verify_dir(bfd, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "metadata.json: uid"));
    fb_manifest_fini(&m);

    read_manifest(&f, f.full, &m);
    m.entries[entry_index(&m, "metadata.json")].meta.size = 8;
    CHECK_EQ_INT(verify_dir(bfd, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "metadata.json: size"));
    fb_manifest_fini(&m);

    read_manifest(&f, f.full, &m);
    size_t li = entry_index(&m, "link");
    free(m.entries[li].target);
    m.entries[li].target = strdup("state/y.json");
    CHECK_EQ_INT(verify_dir(bfd, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "link: symlink target differs"));
    fb_manifest_fini(&m);

    read_manifest(&f, f.full, &m);
    size_t hi = entry_index(&m, "blob2.bin");
    CHECK_EQ_INT(m.entries[hi].meta.type, FB_ENTRY_HARDLINK);
    m.entries[hi].meta.type = FB_ENTRY_FILE;
    CHECK_EQ_INT(verify_dir(bfd, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "blob2.bin: type differs"));
    fb_manifest_fini(&m);

    read_manifest(&f, f.full, &m);
    size_t pi = entry_index(&m, "state/x.json");
    m.entries[pi].path[6] = 'y';
    CHECK_EQ_INT(verify_dir(bfd, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "state/y.json") && msg_has(&err, "state/x.json"));
    fb_manifest_fini(&m);

    close(bfd);
    teardown(&f);
}

static void test_manifest_file_problems(void)
{
    fixture f;
    REQUIRE(setup(&f));
    fb_error err;
    fb_manifest m;
    fb_manifest_init(&m);
    /* invalid JSON, through the store's strict reader */
    int bfd = openat(f.sess, f.full, O_RDONLY | O_DIRECTORY);
    put(bfd, "manifest.json", "{\"format\": 1,", 13);
    CHECK_EQ_INT(fb_store_read_manifest(f.sess, SID, f.full, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "manifest.json"));
    fprintf(stderr, "  read_manifest -> %s\n", err.message);
    CHECK(unlinkat(bfd, "manifest.json", 0) == 0);
    CHECK_EQ_INT(fb_store_read_manifest(f.sess, SID, f.full, &m, &err), FB_ENOTFOUND);
    close(bfd);
    fb_manifest_fini(&m);
    teardown(&f);
}

static void test_incremental_json_members(void)
{
    fixture f;
    REQUIRE(setup(&f));
    fb_error err;
    put(f.sfd, "state/bad.json", "{\"a\": }", 7);
    put(f.sfd, "state/trailing.json", "{} x", 4);
    /* a full backup does not judge contents */
    char id[FB_BACKUP_ID_LEN + 1];
    REQUIRE(run_backup(&f, FB_BACKUP_FULL, NOW + 1, true, id, &err) == 0);
    fb_manifest m;
    read_manifest(&f, id, &m);
    int bfd = openat(f.sess, id, O_RDONLY | O_DIRECTORY);
    CHECK_EQ_INT(verify_dir(bfd, &m, &err), 0);
    close(bfd);
    fb_manifest_fini(&m);

    /* an incremental written without validation is caught by verify */
    REQUIRE(run_backup(&f, FB_BACKUP_INCREMENTAL, NOW + 2, false, id, &err) == 0);
    read_manifest(&f, id, &m);
    bfd = openat(f.sess, id, O_RDONLY | O_DIRECTORY);
    CHECK_EQ_INT(verify_dir(bfd, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "state/bad.json: member does not parse as JSON"));
    close(bfd);
    fb_manifest_fini(&m);

    /* trailing data after the value is refused too */
    unlinkat(f.sfd, "state/bad.json", 0);
    REQUIRE(run_backup(&f, FB_BACKUP_INCREMENTAL, NOW + 3, false, id, &err) == 0);
    read_manifest(&f, id, &m);
    bfd = openat(f.sess, id, O_RDONLY | O_DIRECTORY);
    CHECK_EQ_INT(verify_dir(bfd, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "state/trailing.json: member does not parse as JSON"));
    close(bfd);
    fb_manifest_fini(&m);

    /* valid again: passes, and json with surrounding blanks is fine */
    put(f.sfd, "state/trailing.json", " \n{\"k\": [true, null]}\r\n\t ", 25);
    REQUIRE(run_backup(&f, FB_BACKUP_INCREMENTAL, NOW + 4, true, id, &err) == 0);
    teardown(&f);
}

static void test_index_record(void)
{
    fixture f;
    REQUIRE(setup(&f));
    fb_error err;
    fb_index idx;
    CHECK_EQ_INT(fb_store_load_index(f.store, SID, 0, &idx, NULL, NULL, NULL, &err), 0);
    REQUIRE(idx.n == 1);
    fb_manifest m;
    read_manifest(&f, f.full, &m);
    CHECK_EQ_INT(fb_verify_index_record(&idx.records[0], &m, &err), 0);

    fb_index_record r = idx.records[0];
    r.seq = 7;
    CHECK_EQ_INT(fb_verify_index_record(&r, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "'seq'") && msg_has(&err, f.full));
    r = idx.records[0];
    r.stored_bytes++;
    CHECK_EQ_INT(fb_verify_index_record(&r, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "'stored_bytes'"));
    r = idx.records[0];
    r.archive_sha256[3] ^= 1;
    CHECK_EQ_INT(fb_verify_index_record(&r, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "'archive_sha256'"));
    r = idx.records[0];
    r.note = "a note";
    CHECK_EQ_INT(fb_verify_index_record(&r, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "'note'"));
    r = idx.records[0];
    r.files++;
    CHECK_EQ_INT(fb_verify_index_record(&r, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "'files'"));
    r = idx.records[0];
    r.type = FB_BACKUP_INCREMENTAL;
    CHECK_EQ_INT(fb_verify_index_record(&r, &m, &err), FB_ECORRUPT);
    CHECK(msg_has(&err, "'type'"));

    fb_manifest_fini(&m);
    fb_index_fini(&idx);
    teardown(&f);
}

/* fb_verify_session: every backup and the index, results in order. */
typedef struct results {
    char lines[16][300];
    size_t n;
} results;

static void collect(void *ctx, const char *backup_id, fb_verify_outcome outcome,
                    const char *problem)
{
    results *r = ctx;
    if (r->n < 16)
        snprintf(r->lines[r->n++], sizeof r->lines[0], "%s %d %s", backup_id ? backup_id : "index",
                 (int)outcome, problem ? problem : "-");
}

/* What a progress sink saw. */
typedef struct progress_seen {
    size_t calls;
    uint64_t last_done, total;
    bool went_back, total_changed, other_phase;
} progress_seen;

static void on_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    progress_seen *p = ctx;
    if (p->calls && done < p->last_done)
        p->went_back = true;
    if (p->calls && total != p->total)
        p->total_changed = true;
    if (strcmp(phase, "verify") != 0)
        p->other_phase = true;
    p->calls++;
    p->last_done = done;
    p->total = total;
}

static int verify_session(fixture *f, const char *sid, const char *backup_id, results *r,
                          progress_seen *p, bool *stale, fb_error *err)
{
    fb_verify_request req = {.session_id = sid,
                             .backup_id = backup_id,
                             .sink = collect,
                             .sink_ctx = r,
                             .progress = p ? on_progress : NULL,
                             .progress_ctx = p};
    return fb_verify_session(f->store, &req, stale, err);
}

static uint64_t archive_bytes(fixture *f, const char *id)
{
    int fd = openat(f->sess, id, O_RDONLY | O_DIRECTORY);
    struct stat st;
    int rc = fstatat(fd, FB_ARCHIVE_NAME, &st, 0);
    close(fd);
    return rc == 0 ? (uint64_t)st.st_size : 0;
}

/* Progress counts the archive bytes of every backup checked, never goes
 * back, and ends at the total. */
static void test_session_progress(void)
{
    fixture f;
    REQUIRE(setup(&f));
    fb_error err;
    char second[FB_BACKUP_ID_LEN + 1];
    REQUIRE(run_backup(&f, FB_BACKUP_FULL, NOW + 60, true, second, &err) == 0);
    results r = {0};
    progress_seen p;
    memset(&p, 0, sizeof p);
    bool stale = true;
    CHECK_EQ_INT(verify_session(&f, SID, NULL, &r, &p, &stale, &err), 0);
    CHECK(r.n == 2);
    uint64_t want = archive_bytes(&f, f.full) + archive_bytes(&f, second);
    CHECK(want > 0);
    CHECK(p.calls >= 2);
    CHECK(!p.went_back && !p.total_changed && !p.other_phase);
    CHECK(p.total == want && p.last_done == want);

    memset(&p, 0, sizeof p);
    memset(&r, 0, sizeof r);
    CHECK_EQ_INT(verify_session(&f, SID, second, &r, &p, &stale, &err), 0);
    CHECK(p.total == archive_bytes(&f, second) && p.last_done == p.total && !p.went_back);
    teardown(&f);
}

static void test_session(void)
{
    fixture f;
    REQUIRE(setup(&f));
    fb_error err;
    char second[FB_BACKUP_ID_LEN + 1];
    REQUIRE(run_backup(&f, FB_BACKUP_FULL, NOW + 60, true, second, &err) == 0);
    results r = {0};
    bool stale = true;
    CHECK_EQ_INT(verify_session(&f, SID, NULL, &r, NULL, &stale, &err), 0);
    CHECK(!stale && r.n == 2);
    char want[300];
    snprintf(want, sizeof want, "%s 0 -", f.full);
    CHECK(strcmp(r.lines[0], want) == 0);

    /* Damage the first archive, drop the second from the index by hand. */
    int fd = openat(f.sess, f.full, O_RDONLY | O_DIRECTORY);
    int afd = openat(fd, FB_ARCHIVE_NAME, O_WRONLY);
    CHECK(pwrite(afd, "X", 1, 100) == 1);
    close(afd);
    close(fd);
    fb_index idx;
    bool rebuilt;
    REQUIRE(fb_store_load_index(f.store, SID, 0, &idx, &rebuilt, NULL, NULL, &err) == 0);
    idx.n = 1; /* the first only; the record of the second is left in place, unused */
    REQUIRE(fb_store_save_index(f.sess, SID, &idx, &err) == 0);
    idx.n = 2;
    fb_index_fini(&idx);
    memset(&r, 0, sizeof r);
    CHECK_EQ_INT(verify_session(&f, SID, NULL, &r, NULL, &stale, &err), 0);
    CHECK(stale && r.n == 3);
    /* The reason comes without the session and backup names. */
    snprintf(want, sizeof want, "%s 1 " FB_ARCHIVE_NAME ": ", f.full);
    CHECK(strncmp(r.lines[0], want, strlen(want)) == 0);
    snprintf(want, sizeof want, "%s 0 -", second);
    CHECK(strcmp(r.lines[1], want) == 0);
    snprintf(want, sizeof want, "index 1 does not list backup %s", second);
    CHECK(strcmp(r.lines[2], want) == 0);

    /* One backup; unknown ones and sessions are FB_ENOTFOUND. */
    memset(&r, 0, sizeof r);
    CHECK_EQ_INT(verify_session(&f, SID, second, &r, NULL, &stale, &err), 0);
    CHECK(r.n == 1 && strstr(r.lines[0], " 0 -") != NULL);
    CHECK_EQ_INT(verify_session(&f, SID, "20270115T080000Z-full-abcdef", &r, NULL, &stale,
                                &err),
                 FB_ENOTFOUND);
    CHECK(strstr(err.message, "not found in session") != NULL);
    CHECK_EQ_INT(verify_session(&f, "nosuch", NULL, &r, NULL, &stale, &err),
                 FB_ENOTFOUND);
    teardown(&f);
}

/* The validation that follows the writer, replayed on the fixture's
 * archive frame by frame as the writer would report it: with the XXH3-128
 * of each file's bytes it passes and gives the archive's SHA-256; with one
 * file's fingerprint off by a bit (as if a byte had changed between the
 * writer's read and the compression) it fails naming that file, although
 * every frame, header and SHA-256 in the manifest is right. */
static void test_live_check_holds_files_to_fingerprints(void)
{
    fixture f;
    REQUIRE(setup(&f));
    fb_manifest m;
    read_manifest(&f, f.full, &m);
    uint8_t(*fps)[FB_XXH128_LEN] = calloc(m.n_entries, FB_XXH128_LEN);
    REQUIRE(fps);
    size_t files = 0;
    for (size_t i = 0; i < m.n_entries; i++) {
        if (m.entries[i].meta.type != FB_ENTRY_FILE)
            continue;
        size_t len = (size_t)m.entries[i].meta.size;
        uint8_t *data = malloc(len ? len : 1);
        int fd = openat(f.sfd, m.entries[i].path, O_RDONLY);
        REQUIRE(data && fd >= 0 && read(fd, data, len) == (ssize_t)len);
        close(fd);
        fb_xxh128_buffer(data, len, fps[i]);
        free(data);
        files++;
    }
    CHECK(files >= 5);
    size_t bad = entry_index(&m, "logs/run.log");
    char path[128];
    snprintf(path, sizeof path, "%s/" FB_ARCHIVE_NAME, f.full);
    for (int turn = 0; turn < 2; turn++) {
        if (turn == 1)
            fps[bad][7] ^= 0x10;
        int afd = openat(f.sess, path, O_RDONLY);
        REQUIRE(afd >= 0);
        struct stat st;
        REQUIRE(fstat(afd, &st) == 0);
        fb_error err;
        fb_seek_table t;
        fb_seek_table_init(&t);
        REQUIRE(fb_seek_table_read_fd(afd, (uint64_t)st.st_size, "archive", &t, &err) == 0);
        CHECK(t.n_frames >= 4); /* 64 KiB frames: the 200 KiB log spans several */
        fb_live_check *v = NULL;
        REQUIRE(fb_live_check_start(afd, SID "/backup", false, &v, &err) == 0);
        fb_live_check_entries(v, m.entries, fps, m.n_entries / 2);
        for (size_t k = 0; k < t.n_frames; k++)
            fb_live_check_written(v, k, t.frames[k].c_size, t.frames[k].d_size,
                                  t.frames[k].checksum);
        uint8_t sha[FB_SHA256_LEN];
        uint64_t frames = 0;
        int rc = fb_live_check_end(v, m.entries, fps, m.n_entries, (uint64_t)st.st_size, NULL,
                                   sha, &frames, &err);
        if (turn == 0) {
            CHECK_EQ_INT(rc, 0);
            CHECK(frames == t.n_frames);
            CHECK(memcmp(sha, m.archive.sha256, FB_SHA256_LEN) == 0);
        } else {
            CHECK_EQ_INT(rc, FB_ECORRUPT);
            CHECK(msg_has(&err, "logs/run.log") &&
                  msg_has(&err, "content differs from the bytes read"));
            fprintf(stderr, "  (%s)\n", err.message);
        }
        fb_live_check_free(v);
        fb_seek_table_fini(&t);
        close(afd);
    }
    free(fps);
    fb_manifest_fini(&m);
    teardown(&f);
}

int main(void)
{
    RUN_TEST(test_good_backup_passes);
    RUN_TEST(test_damaged_archive);
    RUN_TEST(test_manifest_disagrees);
    RUN_TEST(test_manifest_file_problems);
    RUN_TEST(test_incremental_json_members);
    RUN_TEST(test_index_record);
    RUN_TEST(test_session);
    RUN_TEST(test_session_progress);
    RUN_TEST(test_live_check_holds_files_to_fingerprints);
    FBTEST_EXIT();
}
