/* Unit tests of the backup module (scan + backup + validate), on generated
 * session trees in fresh temp dirs: what the manifest holds against what the
 * test itself wrote (hashed with OpenSSL directly), byte-identical extraction
 * with the real `tar --zstd`, incrementals, and the failure paths (unreadable
 * file, lock held, EFBIG) leaving the store exactly as it was. */
#include "fbtest.h"
#include "warns_fixture.h"

#include <dirent.h>
#include <ftw.h>
#include <grp.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "fb_archive_writer.h"
#include "fb_backup.h"
#include "fb_config.h"
#include "fb_fsutil.h"
#include "fb_index.h"
#include "fb_lock.h"
#include "fb_store.h"
#include "fb_verify.h"

#define SID "sess-1"
#define NOW 1790000000

/* ---- warnings and progress ---- */

typedef struct prog {
    size_t calls;
    uint64_t last_done, last_total;
    bool saw_scan, saw_write, saw_validate, saw_publish;
} prog;

static void on_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    prog *p = ctx;
    p->calls++;
    if (!strcmp(phase, "scan"))
        p->saw_scan = true;
    if (!strcmp(phase, "write")) {
        p->saw_write = true;
        p->last_done = done;
        p->last_total = total;
    }
    if (!strcmp(phase, "validate"))
        p->saw_validate = true;
    if (!strcmp(phase, "publish"))
        p->saw_publish = true;
}

/* ---- building trees ---- */

typedef struct expect {
    char *path;
    fb_entry_type type;
    uint8_t *data; /* files */
    size_t len;
    char *target;  /* symlink target, or hardlink link */
} expect;

typedef struct tree {
    expect e[600];
    size_t n;
} tree;

static void add_expect(tree *t, const char *path, fb_entry_type type, const void *data, size_t len,
                       const char *target)
{
    expect *x = &t->e[t->n++];
    x->path = strdup(path);
    x->type = type;
    x->data = NULL;
    x->len = len;
    if (data) {
        x->data = malloc(len ? len : 1);
        memcpy(x->data, data, len);
    }
    x->target = target ? strdup(target) : NULL;
}

static void tree_free(tree *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->e[i].path);
        free(t->e[i].data);
        free(t->e[i].target);
    }
    t->n = 0;
}

static const expect *find_expect(const tree *t, const char *path)
{
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->e[i].path, path))
            return &t->e[i];
    return NULL;
}

static int mkdir_at(int dfd, const char *rel, mode_t mode)
{
    if (mkdirat(dfd, rel, mode) != 0 && errno != EEXIST)
        return -1;
    return fchmodat(dfd, rel, mode, 0);
}

static int write_at(int dfd, const char *rel, const void *data, size_t len, mode_t mode)
{
    int fd = openat(dfd, rel, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    if (fb_write_all(fd, data, len) != 0) {
        close(fd);
        return -1;
    }
    fchmod(fd, mode);
    return close(fd);
}

static void put_file(tree *t, int sfd, const char *rel, const void *data, size_t len, mode_t mode)
{
    if (write_at(sfd, rel, data, len, mode) != 0) {
        fprintf(stderr, "cannot create %s: %s\n", rel, strerror(errno));
        exit(2);
    }
    if (t)
        add_expect(t, rel, FB_ENTRY_FILE, data, len, NULL);
}

static void put_dir(tree *t, int sfd, const char *rel, mode_t mode)
{
    if (mkdir_at(sfd, rel, mode) != 0) {
        fprintf(stderr, "cannot mkdir %s: %s\n", rel, strerror(errno));
        exit(2);
    }
    if (t)
        add_expect(t, rel, FB_ENTRY_DIR, NULL, 0, NULL);
}

static char *root_with_session(const char *sid, int *sfd_out)
{
    char *root = fbtest_tempdir();
    int rfd = open(root, O_RDONLY | O_DIRECTORY);
    mkdirat(rfd, ".flowloom", 0755);
    mkdirat(rfd, ".flowloom/sessions", 0755);
    char rel[256];
    snprintf(rel, sizeof rel, ".flowloom/sessions/%s", sid);
    mkdirat(rfd, rel, 0755);
    *sfd_out = openat(rfd, rel, O_RDONLY | O_DIRECTORY);
    close(rfd);
    return root;
}

/* The test tree of the brief: json files, state/, artifacts with binary data,
 * a symlink to /etc/shadow, hardlinks, a FIFO, ~1 MiB of logs, odd names,
 * depth 200 and a path of about 4000 bytes. */
static void build_session(tree *t, int sfd)
{
    const char *meta = "{\"id\": \"" SID "\", \"title\": \"demo\"}\n";
    put_file(t, sfd, "metadata.json", meta, strlen(meta), 0644);
    const char *state = "{\"step\": 3, \"ok\": true}\n";
    put_file(t, sfd, "state.json", state, strlen(state), 0600);
    put_dir(t, sfd, "state", 0750);
    const char *x = "{\"x\": [1, 2, 3]}";
    put_file(t, sfd, "state/x.json", x, strlen(x), 0640);
    put_file(t, sfd, "state/notes.txt", "notes\n", 6, 0644);

    put_dir(t, sfd, "artifacts", 0755);
    size_t blen = 300 * 1024 + 17;
    uint8_t *bin = malloc(blen);
    fbtest_fill(bin, blen, 42, 0);
    put_file(t, sfd, "artifacts/bin.dat", bin, blen, 0644);
    free(bin);
    put_file(t, sfd, "artifacts/empty", "", 0, 0644);
    if (symlinkat("/etc/shadow", sfd, "artifacts/shadow-link") != 0)
        exit(2);
    add_expect(t, "artifacts/shadow-link", FB_ENTRY_SYMLINK, NULL, 0, "/etc/shadow");
    put_file(t, sfd, "artifacts/hard1", "hardlinked\n", 11, 0644);
    if (linkat(sfd, "artifacts/hard1", sfd, "artifacts/hard2", 0) != 0 ||
        linkat(sfd, "artifacts/hard1", sfd, "hard-top", 0) != 0)
        exit(2);
    add_expect(t, "artifacts/hard2", FB_ENTRY_HARDLINK, "hardlinked\n", 11, "artifacts/hard1");
    add_expect(t, "hard-top", FB_ENTRY_HARDLINK, "hardlinked\n", 11, "artifacts/hard1");
    if (mkfifoat(sfd, "artifacts/fifo", 0644) != 0)
        exit(2);

    put_dir(t, sfd, "logs", 0755);
    size_t llen = 1024 * 1024 + 3;
    uint8_t *log = malloc(llen);
    fbtest_fill(log, llen, 7, 1);
    put_file(t, sfd, "logs/run.log", log, llen, 0644);
    free(log);

    put_file(t, sfd, "with space.txt", "space", 5, 0644);
    put_file(t, sfd, "new\nline.txt", "newline", 7, 0644);
    put_file(t, sfd, "bad\xff\xfe.bin", "\xff\xfe", 2, 0644);
    if (linkat(sfd, "bad\xff\xfe.bin", sfd, "link-to-bad\n\xff", 0) != 0 ||
        symlinkat("tgt\xff\n\xc3\xa9", sfd, "odd-link") != 0)
        exit(2);
    add_expect(t, "link-to-bad\n\xff", FB_ENTRY_HARDLINK, "\xff\xfe", 2, "bad\xff\xfe.bin");
    add_expect(t, "odd-link", FB_ENTRY_SYMLINK, NULL, 0, "tgt\xff\n\xc3\xa9");
    char n255[256];
    memset(n255, 'n', 255);
    n255[255] = '\0';
    put_file(t, sfd, n255, "255", 3, 0644);

    /* depth 200: deep + 199 x "d" */
    char *p = malloc(2048);
    strcpy(p, "deep");
    put_dir(t, sfd, p, 0755);
    for (int i = 0; i < 199; i++) {
        strcat(p, "/d");
        put_dir(t, sfd, p, 0755);
    }
    strcat(p, "/leaf.txt");
    put_file(t, sfd, p, "leaf", 4, 0644);
    free(p);

    /* about 4000 bytes: long/ + 15 x (255 chars) + a 200-byte file name */
    char *lp = malloc(4200);
    strcpy(lp, "long");
    put_dir(t, sfd, lp, 0755);
    for (int i = 0; i < 15; i++) {
        size_t l = strlen(lp);
        lp[l] = '/';
        memset(lp + l + 1, 'a' + i, 255);
        lp[l + 256] = '\0';
        put_dir(t, sfd, lp, 0755);
    }
    size_t l = strlen(lp);
    lp[l] = '/';
    memset(lp + l + 1, 'z', 200);
    lp[l + 201] = '\0';
    put_file(t, sfd, lp, "long path", 9, 0644);
    free(lp);

    /* a nanosecond mtime that must survive */
    struct timespec ts[2] = {{1700000000, 123456789}, {1700000000, 123456789}};
    utimensat(sfd, "state.json", ts, 0);
}

/* ---- helpers around the store ---- */

static fb_config make_config(void)
{
    fb_config cfg;
    fb_error err;
    if (fb_config_init_defaults(&cfg, &err) != 0) {
        fprintf(stderr, "config: %s\n", err.message);
        exit(2);
    }
    cfg.frame_size = 65536; /* several frames even for small trees */
    cfg.threads = 2;
    return cfg;
}

static fb_backup_request make_req(const fb_config *cfg, fb_backup_type type, int64_t now,
                                  warns *w)
{
    fb_backup_request req;
    memset(&req, 0, sizeof req);
    req.session_id = SID;
    req.type = type;
    req.now = now;
    req.config = cfg;
    req.lock_wait_seconds = 0;
    req.verify = true;
    req.cleanup = false;
    req.warn = collect_warn;
    req.warn_ctx = w;
    return req;
}

static int session_fd_of(fb_store *store)
{
    int fd = -1;
    fb_error err;
    if (fb_store_open_session(store, SID, false, &fd, &err) != 0)
        return -1;
    return fd;
}

static void sha256_of(const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 32;
    EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

/* Component-wise bytewise order = the walk's order (parents first, then
 * siblings sorted). */
static int walk_order(const char *a, const char *b)
{
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    for (;; x++, y++) {
        int cx = *x == '\0' ? -1 : *x == '/' ? 0 : *x;
        int cy = *y == '\0' ? -1 : *y == '/' ? 0 : *y;
        if (cx != cy)
            return cx < cy ? -1 : 1;
        if (cx == -1)
            return 0;
    }
}

/* Names in a directory other than . and .., sorted, joined with '|'. */
static void dir_listing(int dfd, char *out, size_t size)
{
    char *names[64];
    size_t n = 0;
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY);
    DIR *d = fdopendir(fd);
    struct dirent *de;
    while (d && (de = readdir(d)) && n < 64) {
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            names[n++] = strdup(de->d_name);
    }
    if (d)
        closedir(d);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(names[i], names[j]) > 0) {
                char *tmp = names[i];
                names[i] = names[j];
                names[j] = tmp;
            }
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        strncat(out, names[i], size - strlen(out) - 2);
        strcat(out, "|");
        free(names[i]);
    }
}

static char *read_all_at(int dfd, const char *rel, size_t *len)
{
    char *buf = NULL;
    fb_error err;
    if (fb_read_file_at(dfd, "test", rel, 1 << 30, &buf, len, &err) != 0)
        return NULL;
    return buf;
}

/* Checks one published backup against the expected tree. */
static void check_manifest_against(const fb_manifest *m, const tree *t)
{
    CHECK_EQ_INT(m->n_entries, t->n);
    uint64_t files = 0, bytes = 0, dirs = 0, links = 0;
    for (size_t i = 0; i < m->n_entries; i++) {
        const fb_manifest_entry *e = &m->entries[i];
        if (i > 0 && walk_order(m->entries[i - 1].path, e->path) >= 0) {
            fprintf(stderr, "order: %s before %s\n", m->entries[i - 1].path, e->path);
            CHECK(!"entries in walk order");
        }
        const expect *x = find_expect(t, e->path);
        if (!x) {
            fprintf(stderr, "unexpected entry %s\n", e->path);
            CHECK(x != NULL);
            continue;
        }
        CHECK_EQ_INT(e->meta.type, x->type);
        if (x->type == FB_ENTRY_FILE) {
            uint8_t sum[32];
            sha256_of(x->data, x->len, sum);
            CHECK_EQ_INT(e->meta.size, x->len);
            CHECK(memcmp(sum, e->sha256, 32) == 0);
            files++;
            bytes += x->len;
        } else if (x->type == FB_ENTRY_HARDLINK) {
            CHECK(e->target && !strcmp(e->target, x->target));
            CHECK_EQ_INT(e->meta.size, x->len);
            files++;
        } else if (x->type == FB_ENTRY_SYMLINK) {
            CHECK(e->target && !strcmp(e->target, x->target));
            links++;
        } else {
            dirs++;
        }
    }
    CHECK_EQ_INT(m->totals.files, files);
    CHECK_EQ_INT(m->totals.bytes, bytes);
    CHECK_EQ_INT(m->totals.dirs, dirs);
    CHECK_EQ_INT(m->totals.symlinks, links);
}

/* Manifest metadata equals what lstat says of the source. */
static void check_meta_against_source(const fb_manifest *m, int sfd)
{
    for (size_t i = 0; i < m->n_entries; i++) {
        const fb_manifest_entry *e = &m->entries[i];
        struct stat st;
        if (fstatat(sfd, e->path, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            CHECK(!"source entry exists");
            continue;
        }
        CHECK_EQ_INT(e->meta.mode, st.st_mode & 07777);
        CHECK_EQ_INT(e->meta.uid, st.st_uid);
        CHECK_EQ_INT(e->meta.gid, st.st_gid);
        CHECK_EQ_INT(e->meta.mtime, st.st_mtim.tv_sec);
        CHECK_EQ_INT(e->meta.mtime_nsec, st.st_mtim.tv_nsec);
    }
}

/* Extracts with the real GNU tar and compares byte by byte. */
static void check_tar_extract(const char *root, const char *id, const tree *t)
{
    char *dest = fbtest_tempdir();
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cd '%s' && tar --zstd -xf '%s/.flowloom/backups/%s/%s/archive.tar.zst'",
             dest, root, SID, id);
    CHECK_EQ_INT(system(cmd), 0);
    int dfd = open(dest, O_RDONLY | O_DIRECTORY);
    for (size_t i = 0; i < t->n; i++) {
        const expect *x = &t->e[i];
        struct stat st;
        if (fstatat(dfd, x->path, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            fprintf(stderr, "extracted: missing %s\n", x->path);
            CHECK(!"extracted entry exists");
            continue;
        }
        if (x->type == FB_ENTRY_FILE || x->type == FB_ENTRY_HARDLINK) {
            size_t len = 0;
            char *got = read_all_at(dfd, x->path, &len);
            CHECK(got && len == x->len && memcmp(got, x->data, len) == 0);
            free(got);
        }
        if (x->type == FB_ENTRY_HARDLINK) {
            struct stat st2;
            CHECK(fstatat(dfd, x->target, &st2, AT_SYMLINK_NOFOLLOW) == 0 &&
                  st2.st_ino == st.st_ino);
        }
        if (x->type == FB_ENTRY_SYMLINK) {
            char buf[256];
            ssize_t n = readlinkat(dfd, x->path, buf, sizeof buf - 1);
            CHECK(S_ISLNK(st.st_mode) && n == (ssize_t)strlen(x->target) &&
                  memcmp(buf, x->target, (size_t)n) == 0);
        }
        if (x->type == FB_ENTRY_DIR)
            CHECK(S_ISDIR(st.st_mode));
    }
    struct stat st;
    CHECK(fstatat(dfd, "artifacts/fifo", &st, AT_SYMLINK_NOFOLLOW) != 0);
    close(dfd);
    fbtest_rmtree(dest);
}

static void verify_published(fb_store *store, const char *id, const fb_index_record *rec)
{
    int sess = session_fd_of(store);
    REQUIRE(sess >= 0);
    fb_manifest m;
    fb_manifest_init(&m);
    fb_error err;
    CHECK_EQ_INT(fb_store_read_manifest(sess, SID, id, &m, &err), 0);
    int bfd = openat(sess, id, O_RDONLY | O_DIRECTORY);
    char name[128];
    snprintf(name, sizeof name, "%s/%s", SID, id);
    int rc = fb_verify_backup_dir(bfd, &m, name, &err);
    if (rc)
        fprintf(stderr, "verify: %s\n", err.message);
    CHECK_EQ_INT(rc, 0);
    if (rec)
        CHECK_EQ_INT(fb_verify_index_record(rec, &m, &err), 0);
    close(bfd);
    close(sess);
    fb_manifest_fini(&m);
}

/* ---- tests ---- */

static void test_full_then_incremental(void)
{
    int sfd;
    char *root = root_with_session(SID, &sfd);
    static tree t;
    build_session(&t, sfd);
    fb_config cfg = make_config();
    fb_store *store = NULL;
    fb_error err;
    REQUIRE(fb_store_open(root, true, &store, &err) == 0);

    warns w = {0};
    prog p = {0};
    fb_backup_request req = make_req(&cfg, FB_BACKUP_FULL, NOW, &w);
    req.note = "first full";
    req.progress = on_progress;
    req.progress_ctx = &p;
    fb_backup_result res;
    fb_backup_result_init(&res);
    alarm(120); /* a FIFO that blocks the backup must fail the test, not hang it */
    int rc = fb_backup_run(store, &req, &res, &err);
    alarm(0);
    if (rc)
        fprintf(stderr, "backup: %s\n", err.message);
    REQUIRE(rc == 0);
    CHECK(res.verified);
    CHECK(warns_has(&w, "skipped FIFO: artifacts/fifo"));
    CHECK(p.saw_scan && p.saw_write && p.saw_validate && p.saw_publish);
    CHECK(p.last_total > 1300000 && p.last_done == p.last_total);
    const fb_manifest *m = &res.manifest;
    CHECK_EQ_INT(m->seq, 1);
    CHECK_EQ_INT(m->type, FB_BACKUP_FULL);
    CHECK(m->base[0] == '\0');
    CHECK(m->note && !strcmp(m->note, "first full"));
    CHECK_EQ_INT(m->created_at, NOW);
    CHECK(fb_backup_id_is_valid(m->backup_id));
    CHECK(!strncmp(m->backup_id, "20260921T", 9) && strstr(m->backup_id, "-full-"));
    CHECK(m->archive.frames > 10); /* 1.3 MiB in 64 KiB frames */
    check_manifest_against(m, &t);
    check_meta_against_source(m, sfd);
    char full_id[FB_BACKUP_ID_LEN + 1];
    strcpy(full_id, m->backup_id);
    check_tar_extract(root, full_id, &t);

    /* the published dir holds exactly the two files, private */
    int sess = session_fd_of(store);
    int bfd = openat(sess, full_id, O_RDONLY | O_DIRECTORY);
    char listing[1024];
    dir_listing(bfd, listing, sizeof listing);
    CHECK(!strcmp(listing, "archive.tar.zst|manifest.json|"));
    struct stat st;
    CHECK(fstat(bfd, &st) == 0 && (st.st_mode & 0777) == 0700);
    CHECK(fstatat(bfd, "archive.tar.zst", &st, 0) == 0 && (st.st_mode & 0777) == 0600 &&
          (uint64_t)st.st_size == m->archive.size);
    close(bfd);
    fb_backup_result_fini(&res);

    /* incremental: top-level *.json and state/ only, based on the full */
    warns_free(&w);
    fb_backup_request ireq = make_req(&cfg, FB_BACKUP_INCREMENTAL, NOW + 10, &w);
    fb_backup_result ires;
    fb_backup_result_init(&ires);
    rc = fb_backup_run(store, &ireq, &ires, &err);
    if (rc)
        fprintf(stderr, "incremental: %s\n", err.message);
    REQUIRE(rc == 0);
    const fb_manifest *im = &ires.manifest;
    CHECK_EQ_INT(im->seq, 2);
    CHECK_EQ_INT(im->type, FB_BACKUP_INCREMENTAL);
    CHECK(!strcmp(im->base, full_id));
    CHECK(im->note == NULL);
    CHECK(strstr(im->backup_id, "-incr-") != NULL);
    static tree ti;
    const char *want[] = {"metadata.json", "state", "state.json", "state/notes.txt",
                          "state/x.json"};
    for (size_t i = 0; i < 5; i++) {
        const expect *x = find_expect(&t, want[i]);
        add_expect(&ti, x->path, x->type, x->data, x->len, x->target);
    }
    check_manifest_against(im, &ti);
    CHECK(!warns_has(&w, "FIFO")); /* not in the incremental's scope */
    check_tar_extract(root, im->backup_id, &ti);
    char incr_id[FB_BACKUP_ID_LEN + 1];
    strcpy(incr_id, im->backup_id);
    fb_backup_result_fini(&ires);

    /* the index lists both, in order, agreeing with the manifests */
    fb_index idx;
    bool rebuilt = true;
    CHECK_EQ_INT(fb_store_load_index(store, SID, 0, &idx, &rebuilt, NULL, NULL, &err), 0);
    CHECK(!rebuilt);
    REQUIRE(idx.n == 2);
    CHECK(!strcmp(idx.records[0].id, full_id));
    CHECK(!strcmp(idx.records[1].id, incr_id));
    verify_published(store, full_id, &idx.records[0]);
    verify_published(store, incr_id, &idx.records[1]);
    fb_index_fini(&idx);

    /* nothing else left in the session store dir */
    dir_listing(sess, listing, sizeof listing);
    char want_listing[256];
    snprintf(want_listing, sizeof want_listing, ".lock|%s|%s|index.json|", full_id, incr_id);
    CHECK(!strcmp(listing, want_listing));
    close(sess);

    warns_free(&w);
    tree_free(&t);
    tree_free(&ti);
    fb_store_free(store);
    fb_config_fini(&cfg);
    close(sfd);
    fbtest_rmtree(root);
}

static void test_empty_session_and_empty_incremental(void)
{
    int sfd;
    char *root = root_with_session(SID, &sfd);
    fb_config cfg = make_config();
    fb_store *store = NULL;
    fb_error err;
    REQUIRE(fb_store_open(root, true, &store, &err) == 0);
    warns w = {0};
    fb_backup_request req = make_req(&cfg, FB_BACKUP_FULL, NOW, &w);
    fb_backup_result res;
    fb_backup_result_init(&res);
    int rc = fb_backup_run(store, &req, &res, &err);
    if (rc)
        fprintf(stderr, "empty: %s\n", err.message);
    REQUIRE(rc == 0);
    CHECK_EQ_INT(res.manifest.n_entries, 0);
    CHECK_EQ_INT(res.manifest.totals.files, 0);
    char id[FB_BACKUP_ID_LEN + 1];
    strcpy(id, res.manifest.backup_id);
    fb_backup_result_fini(&res);
    verify_published(store, id, NULL);

    /* tar sees a valid, empty archive */
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "test -z \"$(tar --zstd -tf '%s/.flowloom/backups/%s/%s/archive.tar.zst')\"",
             root, SID, id);
    CHECK_EQ_INT(system(cmd), 0);

    /* an incremental with nothing matching is valid too; base = the full */
    put_dir(NULL, sfd, "artifacts", 0755);
    put_file(NULL, sfd, "artifacts/a.bin", "abc", 3, 0644);
    put_file(NULL, sfd, "notes.txt", "abc", 3, 0644);
    fb_backup_request ireq = make_req(&cfg, FB_BACKUP_INCREMENTAL, NOW + 1, &w);
    fb_backup_result_init(&res);
    rc = fb_backup_run(store, &ireq, &res, &err);
    REQUIRE(rc == 0);
    CHECK_EQ_INT(res.manifest.n_entries, 0);
    CHECK(!strcmp(res.manifest.base, id));
    CHECK_EQ_INT(res.manifest.seq, 2);
    strcpy(id, res.manifest.backup_id);
    fb_backup_result_fini(&res);
    verify_published(store, id, NULL);

    warns_free(&w);
    fb_store_free(store);
    fb_config_fini(&cfg);
    close(sfd);
    fbtest_rmtree(root);
}

static void test_incremental_include_patterns(void)
{
    int sfd;
    char *root = root_with_session(SID, &sfd);
    fb_config cfg = make_config();
    /* a deeper pattern: its parent dirs come along so the archive never lacks a parent */
    for (size_t i = 0; i < cfg.n_include; i++)
        free(cfg.include[i]);
    free(cfg.include);
    cfg.include = malloc(2 * sizeof *cfg.include);
    cfg.include[0] = strdup("a/*/keep.json");
    cfg.include[1] = strdup("whole/");
    cfg.n_include = 2;
    put_dir(NULL, sfd, "a", 0755);
    put_dir(NULL, sfd, "a/b", 0755);
    put_dir(NULL, sfd, "a/b/c", 0755);
    put_file(NULL, sfd, "a/b/keep.json", "{}", 2, 0644);
    put_file(NULL, sfd, "a/b/drop.json", "{}", 2, 0644);
    put_file(NULL, sfd, "a/b/c/keep.json", "{}", 2, 0644);
    put_dir(NULL, sfd, "other", 0755);
    put_file(NULL, sfd, "other/keep.json", "{}", 2, 0644);
    put_dir(NULL, sfd, "whole", 0755);
    put_dir(NULL, sfd, "whole/sub", 0755);
    put_file(NULL, sfd, "whole/sub/x.bin", "x", 1, 0644);
    fb_store *store = NULL;
    fb_error err;
    REQUIRE(fb_store_open(root, true, &store, &err) == 0);
    warns w = {0};
    fb_backup_request req = make_req(&cfg, FB_BACKUP_INCREMENTAL, NOW, &w);
    fb_backup_result res;
    fb_backup_result_init(&res);
    int rc = fb_backup_run(store, &req, &res, &err);
    if (rc)
        fprintf(stderr, "incr: %s\n", err.message);
    REQUIRE(rc == 0);
    const char *want[] = {"a", "a/b", "a/b/keep.json", "whole", "whole/sub", "whole/sub/x.bin"};
    CHECK_EQ_INT(res.manifest.n_entries, 6);
    for (size_t i = 0; i < 6 && i < res.manifest.n_entries; i++)
        CHECK(!strcmp(res.manifest.entries[i].path, want[i]));
    CHECK(res.manifest.base[0] == '\0'); /* no full backup yet */
    fb_backup_result_fini(&res);
    warns_free(&w);
    fb_store_free(store);
    fb_config_fini(&cfg);
    close(sfd);
    fbtest_rmtree(root);
}

/* Snapshot of the session store dir: listing + index bytes. */
typedef struct store_snapshot {
    char listing[2048];
    char *index;
    size_t index_len;
} store_snapshot;

static void snapshot(fb_store *store, store_snapshot *s)
{
    int sess = session_fd_of(store);
    dir_listing(sess, s->listing, sizeof s->listing);
    s->index = read_all_at(sess, "index.json", &s->index_len);
    close(sess);
}

static void check_unchanged(fb_store *store, const store_snapshot *before)
{
    store_snapshot after;
    snapshot(store, &after);
    if (strcmp(before->listing, after.listing))
        fprintf(stderr, "store listing changed:\n  %s\n  %s\n", before->listing, after.listing);
    CHECK(!strcmp(before->listing, after.listing));
    CHECK(!strstr(after.listing, ".tmp-"));
    CHECK(before->index && after.index && before->index_len == after.index_len &&
          memcmp(before->index, after.index, before->index_len) == 0);
    free(after.index);
}

/* Runs a backup in a child (optionally as nobody, optionally with a file
 * size limit) and reports rc and message through a pipe. */
typedef struct child_out {
    int rc;
    char message[FB_ERROR_MESSAGE_MAX];
} child_out;

static child_out backup_in_child(const char *root, const fb_config *cfg, bool as_nobody,
                                 rlim_t fsize_limit)
{
    child_out out;
    memset(&out, 0, sizeof out);
    int fds[2];
    if (pipe(fds) != 0)
        exit(2);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        child_out co;
        memset(&co, 0, sizeof co);
        if (as_nobody && (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0))
            _exit(3);
        if (fsize_limit) {
            signal(SIGXFSZ, SIG_IGN);
            struct rlimit rl = {fsize_limit, fsize_limit};
            setrlimit(RLIMIT_FSIZE, &rl);
        }
        fb_store *store = NULL;
        fb_error err;
        fb_error_clear(&err);
        co.rc = fb_store_open(root, false, &store, &err);
        if (co.rc == 0) {
            warns w = {0};
            fb_backup_request req = make_req(cfg, FB_BACKUP_FULL, NOW + 100, &w);
            fb_backup_result res;
            fb_backup_result_init(&res);
            co.rc = fb_backup_run(store, &req, &res, &err);
            fb_backup_result_fini(&res);
            fb_store_free(store);
        }
        snprintf(co.message, sizeof co.message, "%s", err.message);
        if (write(fds[1], &co, sizeof co) != (ssize_t)sizeof co)
            _exit(4);
        _exit(0);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], &out, sizeof out);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (n != (ssize_t)sizeof out || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "child failed: status %d\n", status);
        out.rc = 999;
    }
    return out;
}

static int chown_tree_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return lchown(path, 65534, 65534);
}

static void test_unreadable_file_fails_cleanly(void)
{
    int sfd;
    char *root = root_with_session(SID, &sfd);
    put_file(NULL, sfd, "metadata.json", "{}", 2, 0644);
    put_dir(NULL, sfd, "artifacts", 0755);
    put_file(NULL, sfd, "artifacts/a.bin", "aaaa", 4, 0644);
    put_file(NULL, sfd, "artifacts/secret.bin", "secret", 6, 0644);
    fb_config cfg = make_config();
    fb_store *store = NULL;
    fb_error err;
    REQUIRE(fb_store_open(root, true, &store, &err) == 0);
    warns w = {0};
    fb_backup_request req = make_req(&cfg, FB_BACKUP_FULL, NOW, &w);
    fb_backup_result res;
    fb_backup_result_init(&res);
    REQUIRE(fb_backup_run(store, &req, &res, &err) == 0);
    fb_backup_result_fini(&res);
    store_snapshot before;
    snapshot(store, &before);

    bool root_user = geteuid() == 0;
    if (root_user)
        nftw(root, chown_tree_cb, 16, FTW_PHYS);
    fchmodat(sfd, "artifacts/secret.bin", 0, 0);
    child_out co = backup_in_child(root, &cfg, root_user, 0);
    CHECK_EQ_INT(co.rc, FB_EIO);
    CHECK(strstr(co.message, "artifacts/secret.bin") != NULL);
    CHECK(strstr(co.message, "Permission denied") != NULL);
    fprintf(stderr, "  (message: %s)\n", co.message);
    check_unchanged(store, &before);

    free(before.index);
    warns_free(&w);
    fb_store_free(store);
    fb_config_fini(&cfg);
    close(sfd);
    fbtest_rmtree(root);
}

static void test_efbig_fails_cleanly(void)
{
    int sfd;
    char *root = root_with_session(SID, &sfd);
    put_file(NULL, sfd, "metadata.json", "{}", 2, 0644);
    size_t len = 1024 * 1024;
    uint8_t *data = malloc(len);
    fbtest_fill(data, len, 9, 0);
    put_file(NULL, sfd, "random.bin", data, len, 0644);
    free(data);
    fb_config cfg = make_config();
    fb_store *store = NULL;
    fb_error err;
    REQUIRE(fb_store_open(root, true, &store, &err) == 0);
    warns w = {0};
    fb_backup_request req = make_req(&cfg, FB_BACKUP_FULL, NOW, &w);
    fb_backup_result res;
    fb_backup_result_init(&res);
    REQUIRE(fb_backup_run(store, &req, &res, &err) == 0);
    fb_backup_result_fini(&res);
    store_snapshot before;
    snapshot(store, &before);

    /* 256 KiB limit: the archive of 1 MiB of random data cannot be written */
    child_out co = backup_in_child(root, &cfg, false, 256 * 1024);
    CHECK(co.rc < 0);
    CHECK(strstr(co.message, "File too large") != NULL);
    fprintf(stderr, "  (message: %s)\n", co.message);
    check_unchanged(store, &before);

    free(before.index);
    warns_free(&w);
    fb_store_free(store);
    fb_config_fini(&cfg);
    close(sfd);
    fbtest_rmtree(root);
}

static void test_lock_held_is_busy(void)
{
    int sfd;
    char *root = root_with_session(SID, &sfd);
    put_file(NULL, sfd, "metadata.json", "{}", 2, 0644);
    fb_config cfg = make_config();
    fb_store *store = NULL;
    fb_error err;
    REQUIRE(fb_store_open(root, true, &store, &err) == 0);
    int sess = -1;
    REQUIRE(fb_store_open_session(store, SID, true, &sess, &err) == 0);
    int to_parent[2], to_child[2];
    REQUIRE(pipe(to_parent) == 0 && pipe(to_child) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        fb_lock lock = {.fd = -1};
        char c = fb_lock_acquire(sess, SID, 0, NULL, NULL, &lock, NULL) == 0 ? 'L' : 'E';
        if (write(to_parent[1], &c, 1) != 1)
            _exit(1);
        if (read(to_child[0], &c, 1) < 0)
            _exit(1);
        fb_lock_release(&lock);
        _exit(0);
    }
    char c = 0;
    CHECK(read(to_parent[0], &c, 1) == 1 && c == 'L');
    warns w = {0};
    fb_backup_request req = make_req(&cfg, FB_BACKUP_FULL, NOW, &w);
    req.lock_wait_seconds = 0.3;
    fb_backup_result res;
    fb_backup_result_init(&res);
    int rc = fb_backup_run(store, &req, &res, &err);
    CHECK_EQ_INT(rc, FB_EBUSY);
    fb_backup_result_fini(&res);
    char listing[512];
    dir_listing(sess, listing, sizeof listing);
    CHECK(!strcmp(listing, ".lock|"));
    CHECK(write(to_child[1], "x", 1) == 1);
    waitpid(pid, NULL, 0);

    /* once released the same request succeeds, and clears what an
     * interrupted run left */
    CHECK(mkdirat(sess, ".tmp-interrupted", 0700) == 0);
    put_file(NULL, sess, ".tmp-interrupted/archive.tar.zst", "partial", 7, 0600);
    CHECK(mkdirat(sess, ".trash-old", 0700) == 0);
    fb_backup_result_init(&res);
    CHECK_EQ_INT(fb_backup_run(store, &req, &res, &err), 0);
    char want[256];
    snprintf(want, sizeof want, ".lock|%s|index.json|", res.manifest.backup_id);
    dir_listing(sess, listing, sizeof listing);
    CHECK(!strcmp(listing, want));
    CHECK(warns_has(&w, ".tmp-interrupted"));
    fb_backup_result_fini(&res);

    close(to_parent[0]);
    close(to_parent[1]);
    close(to_child[0]);
    close(to_child[1]);
    close(sess);
    warns_free(&w);
    fb_store_free(store);
    fb_config_fini(&cfg);
    close(sfd);
    fbtest_rmtree(root);
}

static void test_bad_session_and_missing_session(void)
{
    int sfd;
    char *root = root_with_session(SID, &sfd);
    fb_config cfg = make_config();
    fb_store *store = NULL;
    fb_error err;
    REQUIRE(fb_store_open(root, true, &store, &err) == 0);
    warns w = {0};
    fb_backup_request req = make_req(&cfg, FB_BACKUP_FULL, NOW, &w);
    fb_backup_result res;
    fb_backup_result_init(&res);
    req.session_id = "../x";
    CHECK_EQ_INT(fb_backup_run(store, &req, &res, &err), FB_EINVAL);
    req.session_id = "nosuch";
    CHECK_EQ_INT(fb_backup_run(store, &req, &res, &err), FB_ENOTFOUND);
    CHECK(strstr(err.message, "session nosuch not found") != NULL);
    CHECK(strstr(err.message, ".flowloom/sessions/nosuch") != NULL);
    /* nothing was created for them */
    char listing[512];
    int bfd = fb_store_backups_fd(store);
    dir_listing(bfd, listing, sizeof listing);
    CHECK(!strcmp(listing, ""));
    fb_backup_result_fini(&res);
    warns_free(&w);
    fb_store_free(store);
    fb_config_fini(&cfg);
    close(sfd);
    fbtest_rmtree(root);
}

static void test_retention_after_backup(void)
{
    int sfd;
    char *root = root_with_session(SID, &sfd);
    put_file(NULL, sfd, "metadata.json", "{}", 2, 0644);
    fb_config cfg = make_config();
    cfg.retention.keep_full = 1;
    cfg.retention.max_age_days = 3650;
    cfg.retention.min_keep = 1;
    fb_store *store = NULL;
    fb_error err;
    REQUIRE(fb_store_open(root, true, &store, &err) == 0);
    warns w = {0};
    fb_backup_request req = make_req(&cfg, FB_BACKUP_FULL, NOW, &w);
    req.cleanup = true;
    fb_backup_result res;
    fb_backup_result_init(&res);
    REQUIRE(fb_backup_run(store, &req, &res, &err) == 0);
    char first[FB_BACKUP_ID_LEN + 1];
    strcpy(first, res.manifest.backup_id);
    CHECK_EQ_INT(res.n_retention, 1);
    CHECK(res.retention && !res.retention[0].remove);
    fb_backup_result_fini(&res);

    req.now = NOW + 60;
    fb_backup_result_init(&res);
    REQUIRE(fb_backup_run(store, &req, &res, &err) == 0);
    char second[FB_BACKUP_ID_LEN + 1];
    strcpy(second, res.manifest.backup_id);
    CHECK_EQ_INT(res.retention_error.code, 0);
    REQUIRE(res.n_retention == 2);
    CHECK(!strcmp(res.retention[0].id, first) && res.retention[0].remove);
    CHECK(!strcmp(res.retention[1].id, second) && !res.retention[1].remove);
    fb_backup_result_fini(&res);

    int sess = session_fd_of(store);
    char listing[512], want[512];
    dir_listing(sess, listing, sizeof listing);
    snprintf(want, sizeof want, ".lock|%s|index.json|", second);
    CHECK(!strcmp(listing, want));
    close(sess);
    fb_index idx;
    CHECK_EQ_INT(fb_store_load_index(store, SID, 0, &idx, NULL, NULL, NULL, &err), 0);
    CHECK(idx.n == 1 && !strcmp(idx.records[0].id, second));
    fb_index_fini(&idx);

    /* no cleanup: both kept */
    req.cleanup = false;
    req.now = NOW + 120;
    fb_backup_result_init(&res);
    REQUIRE(fb_backup_run(store, &req, &res, &err) == 0);
    CHECK(res.retention == NULL && res.n_retention == 0);
    fb_backup_result_fini(&res);
    CHECK_EQ_INT(fb_store_load_index(store, SID, 0, &idx, NULL, NULL, NULL, &err), 0);
    CHECK_EQ_INT(idx.n, 2);
    fb_index_fini(&idx);

    warns_free(&w);
    fb_store_free(store);
    fb_config_fini(&cfg);
    close(sfd);
    fbtest_rmtree(root);
}

static void test_incremental_with_bad_json_is_not_published(void)
{
    int sfd;
    char *root = root_with_session(SID, &sfd);
    put_file(NULL, sfd, "metadata.json", "{}", 2, 0644);
    put_file(NULL, sfd, "state.json", "{\"a\": 1} trailing", 17, 0644);
    fb_config cfg = make_config();
    fb_store *store = NULL;
    fb_error err;
    REQUIRE(fb_store_open(root, true, &store, &err) == 0);
    warns w = {0};
    fb_backup_request req = make_req(&cfg, FB_BACKUP_FULL, NOW, &w);
    fb_backup_result res;
    fb_backup_result_init(&res);
    /* a full backup does not judge the contents */
    REQUIRE(fb_backup_run(store, &req, &res, &err) == 0);
    fb_backup_result_fini(&res);
    store_snapshot before;
    snapshot(store, &before);

    req.type = FB_BACKUP_INCREMENTAL;
    req.now = NOW + 5;
    fb_backup_result_init(&res);
    int rc = fb_backup_run(store, &req, &res, &err);
    CHECK_EQ_INT(rc, FB_ECORRUPT);
    CHECK(strstr(err.message, "state.json") && strstr(err.message, "JSON"));
    fprintf(stderr, "  (message: %s)\n", err.message);
    fb_backup_result_fini(&res);
    check_unchanged(store, &before);
    free(before.index);

    warns_free(&w);
    fb_store_free(store);
    fb_config_fini(&cfg);
    close(sfd);
    fbtest_rmtree(root);
}

/* ---- F14: the tree changes between the scan and the reads ---- */

typedef struct swap_ctx {
    int sfd;
} swap_ctx;

static void swap_things(void *ctx)
{
    int sfd = ((swap_ctx *)ctx)->sfd;
    unlinkat(sfd, "gone.txt", 0);
    unlinkat(sfd, "to-symlink.txt", 0);
    symlinkat("/etc/passwd", sfd, "to-symlink.txt");
    unlinkat(sfd, "to-dir.txt", 0);
    mkdirat(sfd, "to-dir.txt", 0755);
    unlinkat(sfd, "to-fifo.txt", 0);
    mkfifoat(sfd, "to-fifo.txt", 0644);
    /* Written beside it, then renamed over it: both inodes exist at once,
     * so the new one cannot get the old one's number (unlink, then create,
     * may reuse it, and then nothing was swapped as far as anyone can
     * tell). */
    write_at(sfd, "swapped.txt.new", "another inode", 13, 0644);
    renameat(sfd, "swapped.txt.new", sfd, "swapped.txt");
    /* same inode, new content: stored as it is when read */
    int fd = openat(sfd, "changed.txt", O_WRONLY | O_TRUNC);
    if (fd >= 0) {
        (void)!write(fd, "rewritten before the read", 25);
        close(fd);
    }
    unlinkat(sfd, "hl-a", 0);
    /* a directory turned into a symlink to /etc: nothing below is read */
    renameat(sfd, "sub", sfd, "sub.old");
    symlinkat("/etc", sfd, "sub");
}

static void test_changes_between_scan_and_read(void)
{
    int sfd;
    char *root = root_with_session(SID, &sfd);
    put_file(NULL, sfd, "gone.txt", "gone", 4, 0644);
    put_file(NULL, sfd, "to-symlink.txt", "x", 1, 0644);
    put_file(NULL, sfd, "to-dir.txt", "x", 1, 0644);
    put_file(NULL, sfd, "to-fifo.txt", "x", 1, 0644);
    put_file(NULL, sfd, "swapped.txt", "original", 8, 0644);
    put_file(NULL, sfd, "changed.txt", "original", 8, 0644);
    put_file(NULL, sfd, "hl-a", "linked", 6, 0644);
    linkat(sfd, "hl-a", sfd, "hl-b", 0);
    linkat(sfd, "hl-a", sfd, "hl-c", 0);
    put_dir(NULL, sfd, "sub", 0755);
    put_file(NULL, sfd, "sub/passwd", "mine", 4, 0644);
    fb_config cfg = make_config();
    fb_store *store = NULL;
    fb_error err;
    REQUIRE(fb_store_open(root, true, &store, &err) == 0);
    warns w = {0};
    fb_backup_request req = make_req(&cfg, FB_BACKUP_FULL, NOW, &w);
    swap_ctx sc = {sfd};
    req.after_scan = swap_things;
    req.after_scan_ctx = &sc;
    fb_backup_result res;
    fb_backup_result_init(&res);
    alarm(120);
    int rc = fb_backup_run(store, &req, &res, &err);
    alarm(0);
    if (rc)
        fprintf(stderr, "backup: %s\n", err.message);
    REQUIRE(rc == 0);
    for (size_t i = 0; i < w.n; i++)
        fprintf(stderr, "  (warning: %s)\n", w.msgs[i]);
    CHECK(warns_has(&w, "vanished before it was read: gone.txt"));
    CHECK(warns_has(&w, ": to-symlink.txt"));
    CHECK(warns_has(&w, ": to-dir.txt"));
    CHECK(warns_has(&w, ": to-fifo.txt"));
    CHECK(warns_has(&w, ": swapped.txt"));
    CHECK(warns_has(&w, "directory vanished or was replaced before it was read: sub/passwd"));
    CHECK(res.skipped_entries >= 6);
    const fb_manifest *m = &res.manifest;
    /* what is left: changed.txt (new content), hl-b promoted to the file,
     * hl-c a hardlink to it, and the dir sub as it was scanned */
    const char *want[] = {"changed.txt", "hl-b", "hl-c", "sub"};
    CHECK_EQ_INT(m->n_entries, 4);
    for (size_t i = 0; i < 4 && i < m->n_entries; i++)
        CHECK(!strcmp(m->entries[i].path, want[i]));
    if (m->n_entries == 4) {
        uint8_t sum[32];
        sha256_of("rewritten before the read", 25, sum);
        CHECK(memcmp(m->entries[0].sha256, sum, 32) == 0);
        CHECK_EQ_INT(m->entries[1].meta.type, FB_ENTRY_FILE);
        sha256_of("linked", 6, sum);
        CHECK(memcmp(m->entries[1].sha256, sum, 32) == 0);
        CHECK_EQ_INT(m->entries[2].meta.type, FB_ENTRY_HARDLINK);
        CHECK(m->entries[2].target && !strcmp(m->entries[2].target, "hl-b"));
        CHECK_EQ_INT(m->entries[3].meta.type, FB_ENTRY_DIR);
    }
    CHECK(res.verified);
    fb_backup_result_fini(&res);
    warns_free(&w);
    fb_store_free(store);
    fb_config_fini(&cfg);
    close(sfd);
    fbtest_rmtree(root);
}

/* Paths up to 4095 bytes are stored; longer ones are skipped with a warning. */
static void test_path_length_limit(void)
{
    int sfd;
    char *root = root_with_session(SID, &sfd);
    static tree t;
    char *p = malloc(8192);
    p[0] = '\0';
    for (int i = 0; i < 15; i++) {
        size_t l = strlen(p);
        if (l)
            p[l++] = '/';
        memset(p + l, 'A' + i, 255);
        p[l + 255] = '\0';
        put_dir(&t, sfd, p, 0755);
    }
    size_t base = strlen(p);
    strcat(p, "/");
    memset(p + base + 1, 'f', 255);
    p[base + 256] = '\0';
    CHECK_EQ_INT(strlen(p), 4095);
    put_file(&t, sfd, p, "at the limit", 12, 0644);
    memset(p + base + 1, 'g', 255);
    put_dir(&t, sfd, p, 0755);
    /* 4097 bytes: only reachable from the parent's fd */
    int pfd = openat(sfd, p, O_RDONLY | O_DIRECTORY);
    REQUIRE(pfd >= 0);
    put_file(NULL, pfd, "x", "too long", 8, 0644);
    close(pfd);
    free(p);

    fb_config cfg = make_config();
    fb_store *store = NULL;
    fb_error err;
    REQUIRE(fb_store_open(root, true, &store, &err) == 0);
    warns w = {0};
    fb_backup_request req = make_req(&cfg, FB_BACKUP_FULL, NOW, &w);
    fb_backup_result res;
    fb_backup_result_init(&res);
    int rc = fb_backup_run(store, &req, &res, &err);
    if (rc)
        fprintf(stderr, "backup: %s\n", err.message);
    REQUIRE(rc == 0);
    CHECK(warns_has(&w, "path too long"));
    check_manifest_against(&res.manifest, &t);
    check_tar_extract(root, res.manifest.backup_id, &t);
    fb_backup_result_fini(&res);
    tree_free(&t);
    warns_free(&w);
    fb_store_free(store);
    fb_config_fini(&cfg);
    close(sfd);
    fbtest_rmtree(root);
}

/* The index cannot be written after the rename: the new backup is taken back
 * out of view and the error reported; the store stays loadable. */
typedef struct index_break_ctx {
    fb_store *store;
} index_break_ctx;

static void break_index(void *ctx)
{
    int sess = session_fd_of(((index_break_ctx *)ctx)->store);
    unlinkat(sess, "index.json", 0);
    mkdirat(sess, "index.json", 0700);
    close(sess);
}

static void test_index_write_failure_unpublishes(void)
{
    int sfd;
    char *root = root_with_session(SID, &sfd);
    put_file(NULL, sfd, "metadata.json", "{}", 2, 0644);
    fb_config cfg = make_config();
    fb_store *store = NULL;
    fb_error err;
    REQUIRE(fb_store_open(root, true, &store, &err) == 0);
    warns w = {0};
    fb_backup_request req = make_req(&cfg, FB_BACKUP_FULL, NOW, &w);
    fb_backup_result res;
    fb_backup_result_init(&res);
    REQUIRE(fb_backup_run(store, &req, &res, &err) == 0);
    char first[FB_BACKUP_ID_LEN + 1];
    strcpy(first, res.manifest.backup_id);
    fb_backup_result_fini(&res);

    index_break_ctx ic = {store};
    req.after_scan = break_index;
    req.after_scan_ctx = &ic;
    req.now = NOW + 10;
    fb_backup_result_init(&res);
    int rc = fb_backup_run(store, &req, &res, &err);
    CHECK(rc < 0);
    fprintf(stderr, "  (message: %s)\n", err.message);
    CHECK(strstr(err.message, "not recorded in the index") != NULL);
    fb_backup_result_fini(&res);
    int sess = session_fd_of(store);
    char listing[512], want[512];
    dir_listing(sess, listing, sizeof listing);
    snprintf(want, sizeof want, ".lock|%s|index.json|", first);
    CHECK(!strcmp(listing, want));
    CHECK(unlinkat(sess, "index.json", AT_REMOVEDIR) == 0);
    close(sess);
    fb_index idx;
    CHECK_EQ_INT(fb_store_load_index(store, SID, 0, &idx, NULL, NULL, NULL, &err), 0);
    CHECK(idx.n == 1 && !strcmp(idx.records[0].id, first));
    fb_index_fini(&idx);

    warns_free(&w);
    fb_store_free(store);
    fb_config_fini(&cfg);
    close(sfd);
    fbtest_rmtree(root);
}

/* ---- interruption (fb_backup_request.cancel) ---- */

/* Sets a real flag, as the CLI's signal handler does, when the backup
 * reaches `phase` (after `files` write updates for "write"). */
typedef struct cancel_at {
    fb_cancel flag;
    const char *phase;
    unsigned files;
    unsigned seen;
} cancel_at;

static void cancel_on_phase(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    (void)done;
    (void)total;
    cancel_at *c = ctx;
    if (strcmp(phase, c->phase) == 0 && c->seen++ >= c->files)
        c->flag = SIGINT;
}

/* Interrupted before the publish rename (during the scan, between files,
 * during validation): FB_EINTERRUPTED, the temp dir gone, the store and the
 * index byte for byte as before. From the rename on: the backup is finished
 * and indexed, reported as interrupted, retention skipped. */
static void test_cancel(void)
{
    int sfd;
    char *root = root_with_session(SID, &sfd);
    put_file(NULL, sfd, "metadata.json", "{}", 2, 0644);
    size_t len = 2 * 1024 * 1024;
    uint8_t *data = malloc(len);
    fbtest_fill(data, len, 5, 0);
    put_file(NULL, sfd, "a.bin", data, len, 0644);
    put_file(NULL, sfd, "b.bin", data, len / 2, 0644);
    free(data);
    fb_config cfg = make_config();
    fb_store *store = NULL;
    fb_error err;
    REQUIRE(fb_store_open(root, true, &store, &err) == 0);
    warns w = {0};
    fb_backup_request req = make_req(&cfg, FB_BACKUP_FULL, NOW, &w);
    fb_backup_result res;
    fb_backup_result_init(&res);
    REQUIRE(fb_backup_run(store, &req, &res, &err) == 0);
    fb_backup_result_fini(&res);
    store_snapshot before;
    snapshot(store, &before);

    static const struct {
        const char *phase;
        unsigned files;
    } before_publish[] = {{"scan", 0}, {"write", 0}, {"write", 1}, {"validate", 0}};
    for (size_t i = 0; i < sizeof before_publish / sizeof before_publish[0]; i++) {
        cancel_at c = {.phase = before_publish[i].phase, .files = before_publish[i].files};
        req.cancel = &c.flag;
        req.progress = cancel_on_phase;
        req.progress_ctx = &c;
        req.now = NOW + 10 + (int64_t)i;
        fb_backup_result_init(&res);
        int rc = fb_backup_run(store, &req, &res, &err);
        fprintf(stderr, "  (at %s/%u: %s)\n", c.phase, c.files, err.message);
        CHECK_EQ_INT(rc, FB_EINTERRUPTED);
        CHECK(c.flag == SIGINT);
        fb_backup_result_fini(&res);
        check_unchanged(store, &before);
    }

    /* a flag set before the run: nothing is even scanned */
    fb_cancel early = SIGTERM;
    req.cancel = &early;
    req.progress = NULL;
    fb_backup_result_init(&res);
    CHECK_EQ_INT(fb_backup_run(store, &req, &res, &err), FB_EINTERRUPTED);
    CHECK(strstr(err.message, "nothing was published") != NULL);
    fb_backup_result_fini(&res);
    check_unchanged(store, &before);

    /* once the publish step began, the backup is finished */
    cancel_at c = {.phase = "publish"};
    req.cancel = &c.flag;
    req.progress = cancel_on_phase;
    req.progress_ctx = &c;
    req.cleanup = true;
    req.now = NOW + 100;
    fb_backup_result_init(&res);
    CHECK_EQ_INT(fb_backup_run(store, &req, &res, &err), 0);
    CHECK(c.flag == SIGINT);
    CHECK(res.interrupted);
    CHECK(res.retention == NULL);
    fb_index idx;
    REQUIRE(fb_store_load_index(store, SID, 0, &idx, NULL, NULL, NULL, &err) == 0);
    CHECK(idx.n == 2 && !strcmp(idx.records[1].id, res.manifest.backup_id));
    fb_index_fini(&idx);
    int sess = session_fd_of(store);
    char listing[2048];
    dir_listing(sess, listing, sizeof listing);
    CHECK(!strstr(listing, ".tmp-"));
    int bfd = openat(sess, res.manifest.backup_id, O_RDONLY | O_DIRECTORY);
    CHECK(bfd >= 0 && fb_verify_backup_dir(bfd, &res.manifest, "published", &err) == 0);
    /* the validation pass itself stops on the flag */
    fb_cancel stop = SIGINT;
    fb_verify_dir_options vo = {.cancel = &stop};
    CHECK_EQ_INT(fb_verify_backup_dir_with(bfd, &res.manifest, "published", &vo, &err),
                 FB_EINTERRUPTED);
    if (bfd >= 0)
        close(bfd);
    close(sess);
    fb_backup_result_fini(&res);

    /* and so does the copy of one file, chunk by chunk */
    fb_cancel late = 0;
    int afd = open("/dev/null", O_WRONLY);
    int src = openat(sfd, "a.bin", O_RDONLY);
    fb_archive_writer_options wo = {.level = 1, .frame_size = 65536, .threads = 1,
                                    .cancel = &late};
    fb_archive_writer *aw = NULL;
    REQUIRE(fb_archive_writer_new(afd, &wo, &aw, &err) == 0);
    fb_entry_meta meta = {.type = FB_ENTRY_FILE, .mode = 0644, .size = len};
    late = SIGTERM;
    CHECK_EQ_INT(fb_archive_writer_add_file(aw, "a.bin", &meta, src, NULL, &err),
                 FB_EINTERRUPTED);
    fb_archive_writer_free(aw);
    close(src);
    close(afd);

    free(before.index);
    warns_free(&w);
    fb_store_free(store);
    fb_config_fini(&cfg);
    close(sfd);
    fbtest_rmtree(root);
}

/* Small files are read ahead by helper threads (backup.c): many more of
 * them than the rings hold, with larger files between them that the writer
 * reads itself, come back in order with the right bytes; an interruption
 * in the middle of them stops the helpers and publishes nothing. */
static void test_many_small_files_read_ahead(void)
{
    int sfd;
    char *root = root_with_session(SID, &sfd);
    enum { FILES = 1500 };
    static uint8_t data[40000];
    fbtest_fill(data, sizeof data, 21, 1);
    put_dir(NULL, sfd, "d", 0755);
    for (unsigned i = 0; i < FILES; i++) {
        char rel[32];
        snprintf(rel, sizeof rel, "d/f%04u", i);
        size_t len = i % 97 == 0 ? 20000 + i : i % 200; /* some over 16 KiB, some empty */
        put_file(NULL, sfd, rel, data + i, len, 0644);
    }
    fb_config cfg = make_config();
    fb_store *store = NULL;
    fb_error err;
    REQUIRE(fb_store_open(root, true, &store, &err) == 0);
    warns w = {0};
    fb_backup_request req = make_req(&cfg, FB_BACKUP_FULL, NOW, &w);
    fb_backup_result res;
    fb_backup_result_init(&res);
    REQUIRE(fb_backup_run(store, &req, &res, &err) == 0);
    CHECK(res.verified);
    CHECK_EQ_INT(w.n, 0);
    const fb_manifest *m = &res.manifest;
    REQUIRE(m->n_entries == FILES + 1);
    for (unsigned i = 0; i < FILES; i++) {
        const fb_manifest_entry *e = &m->entries[i + 1];
        char rel[32];
        snprintf(rel, sizeof rel, "d/f%04u", i);
        size_t len = i % 97 == 0 ? 20000 + i : i % 200;
        uint8_t sum[32];
        sha256_of(data + i, len, sum);
        CHECK(!strcmp(e->path, rel));
        CHECK_EQ_INT(e->meta.size, len);
        CHECK(memcmp(e->sha256, sum, 32) == 0);
    }
    fb_backup_result_fini(&res);
    store_snapshot before;
    snapshot(store, &before);

    cancel_at c = {.phase = "write", .files = FILES / 2};
    req.cancel = &c.flag;
    req.progress = cancel_on_phase;
    req.progress_ctx = &c;
    req.now = NOW + 10;
    fb_backup_result_init(&res);
    CHECK_EQ_INT(fb_backup_run(store, &req, &res, &err), FB_EINTERRUPTED);
    fb_backup_result_fini(&res);
    check_unchanged(store, &before);
    free(before.index);
    warns_free(&w);
    fb_store_free(store);
    fb_config_fini(&cfg);
    close(sfd);
    fbtest_rmtree(root);
}

/* F13: a file rewritten over and over while backups run. Each backup either
 * succeeds (and then its validation proved manifest == stored bytes) or
 * fails with FB_ECHANGED naming the file, leaving nothing behind. */
static void test_file_rewritten_during_backup(void)
{
    int sfd;
    char *root = root_with_session(SID, &sfd);
    put_file(NULL, sfd, "metadata.json", "{}", 2, 0644);
    uint8_t *buf = malloc(1 << 20);
    fbtest_fill(buf, 1 << 20, 11, 0);
    put_file(NULL, sfd, "big", buf, 1 << 20, 0644);
    fb_config cfg = make_config();
    fb_store *store = NULL;
    fb_error err;
    REQUIRE(fb_store_open(root, true, &store, &err) == 0);

    pid_t pid = fork();
    if (pid == 0) {
        uint64_t s = 99;
        for (;;) {
            size_t n = (size_t)(fbtest_rand(&s) % (1 << 20));
            int fd = openat(sfd, "big", O_WRONLY | O_TRUNC);
            if (fd < 0)
                _exit(1);
            for (size_t off = 0; off < n; off += 65536)
                (void)!write(fd, buf + off, n - off < 65536 ? n - off : 65536);
            close(fd);
        }
    }
    int ok = 0, changed = 0, warned = 0;
    for (int i = 0; i < 6; i++) {
        warns w = {0};
        fb_backup_request req = make_req(&cfg, FB_BACKUP_FULL, NOW + i, &w);
        fb_backup_result res;
        fb_backup_result_init(&res);
        int rc = fb_backup_run(store, &req, &res, &err);
        if (rc == 0) {
            ok++;
            CHECK(res.verified);
            if (res.changed_files) {
                warned++;
                CHECK(warns_has(&w, "file changed while being read: big"));
            }
        } else {
            CHECK_EQ_INT(rc, FB_ECHANGED);
            CHECK(strstr(err.message, "big") != NULL);
            changed++;
        }
        fb_backup_result_fini(&res);
        warns_free(&w);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fprintf(stderr, "  (%d committed, %d of them warned, %d failed as changed)\n", ok, warned,
            changed);
    /* every committed backup verifies; no leftovers */
    int sess = session_fd_of(store);
    char listing[2048];
    dir_listing(sess, listing, sizeof listing);
    CHECK(!strstr(listing, ".tmp-"));
    close(sess);
    fb_index idx;
    CHECK_EQ_INT(fb_store_load_index(store, SID, 0, &idx, NULL, NULL, NULL, &err), 0);
    CHECK_EQ_INT(idx.n, ok);
    for (size_t i = 0; i < idx.n; i++)
        verify_published(store, idx.records[i].id, &idx.records[i]);
    fb_index_fini(&idx);
    free(buf);
    fb_store_free(store);
    fb_config_fini(&cfg);
    close(sfd);
    fbtest_rmtree(root);
}

/* ---- the validation that follows the writer ---- */

typedef struct damage_ctx {
    uint64_t frame;    /* the frame to damage */
    uint64_t at;       /* how far into it */
    bool damaged;
    uint64_t frames_seen;
} damage_ctx;

/* Flips one byte of frame d->frame in the file once it is written, before
 * the live validation reads it back: what a bad page or a stray write
 * between write() and the read-back would do. */
static void damage_frame(void *ctx, int archive_fd, uint64_t index, uint64_t c_offset,
                         uint32_t c_size)
{
    damage_ctx *d = ctx;
    d->frames_seen++;
    if (index != d->frame)
        return;
    uint64_t at = c_offset + (d->at < c_size ? d->at : c_size / 2);
    uint8_t b;
    /* archive_fd is write-only: the byte is read through a second open. */
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", archive_fd);
    int fd = open(path, O_RDWR);
    if (fd < 0)
        return;
    if (pread(fd, &b, 1, (off_t)at) == 1) {
        b ^= 0x5a;
        d->damaged = pwrite(fd, &b, 1, (off_t)at) == 1;
    }
    close(fd);
}

/* A frame damaged in the file after it was written is caught by the
 * validation that reads the archive back beside the writer: the backup
 * fails with FB_ECORRUPT naming the frame, and nothing is published. The
 * same damage with --no-verify is published (nothing reads it back), which
 * shows the damage was real. Damage at the first frame, in the middle, and
 * in the last data frame (found from a first, undamaged run). */
static void test_live_validation_catches_damage(void)
{
    int sfd;
    char *root = root_with_session(SID, &sfd);
    put_file(NULL, sfd, "metadata.json", "{}", 2, 0644);
    size_t len = 600 * 1024;
    uint8_t *data = malloc(len);
    fbtest_fill(data, len, 7, 0);
    put_file(NULL, sfd, "big.bin", data, len, 0644);
    free(data);
    fb_config cfg = make_config();
    fb_store *store = NULL;
    fb_error err;
    REQUIRE(fb_store_open(root, true, &store, &err) == 0);
    warns w = {0};
    fb_backup_request req = make_req(&cfg, FB_BACKUP_FULL, NOW, &w);
    damage_ctx count = {.frame = UINT64_MAX};
    req.frame_written = damage_frame;
    req.frame_written_ctx = &count;
    fb_backup_result res;
    fb_backup_result_init(&res);
    REQUIRE(fb_backup_run(store, &req, &res, &err) == 0);
    CHECK(res.verified);
    CHECK(count.frames_seen == res.manifest.archive.frames && count.frames_seen >= 3);
    fb_backup_result_fini(&res);
    store_snapshot before;
    snapshot(store, &before);

    uint64_t targets[] = {0, count.frames_seen / 2, count.frames_seen - 1};
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        damage_ctx d = {.frame = targets[i], .at = 100};
        req.frame_written_ctx = &d;
        req.now = NOW + 10 + (int64_t)i;
        fb_backup_result_init(&res);
        int rc = fb_backup_run(store, &req, &res, &err);
        CHECK(d.damaged);
        CHECK_EQ_INT(rc, FB_ECORRUPT);
        char frame_word[32];
        snprintf(frame_word, sizeof frame_word, "frame %llu", (unsigned long long)targets[i]);
        CHECK(strstr(err.message, "validation failed") && strstr(err.message, frame_word));
        fprintf(stderr, "  (frame %llu: %s)\n", (unsigned long long)targets[i], err.message);
        fb_backup_result_fini(&res);
        check_unchanged(store, &before);
    }

    /* without validation the damaged archive is published: the damage is real */
    damage_ctx d = {.frame = 1, .at = 100};
    req.frame_written_ctx = &d;
    req.verify = false;
    req.now = NOW + 50;
    fb_backup_result_init(&res);
    REQUIRE(fb_backup_run(store, &req, &res, &err) == 0);
    CHECK(d.damaged && !res.verified);
    int sess = session_fd_of(store);
    int bfd = openat(sess, res.manifest.backup_id, O_RDONLY | O_DIRECTORY);
    CHECK(bfd >= 0 && fb_verify_backup_dir(bfd, &res.manifest, "damaged", &err) == FB_ECORRUPT);
    if (bfd >= 0)
        close(bfd);
    close(sess);
    fb_backup_result_fini(&res);

    free(before.index);
    warns_free(&w);
    fb_store_free(store);
    fb_config_fini(&cfg);
    close(sfd);
    fbtest_rmtree(root);
}

int main(void)
{
    RUN_TEST(test_full_then_incremental);
    RUN_TEST(test_empty_session_and_empty_incremental);
    RUN_TEST(test_incremental_include_patterns);
    RUN_TEST(test_unreadable_file_fails_cleanly);
    RUN_TEST(test_efbig_fails_cleanly);
    RUN_TEST(test_lock_held_is_busy);
    RUN_TEST(test_bad_session_and_missing_session);
    RUN_TEST(test_retention_after_backup);
    RUN_TEST(test_incremental_with_bad_json_is_not_published);
    RUN_TEST(test_changes_between_scan_and_read);
    RUN_TEST(test_path_length_limit);
    RUN_TEST(test_index_write_failure_unpublishes);
    RUN_TEST(test_file_rewritten_during_backup);
    RUN_TEST(test_cancel);
    RUN_TEST(test_many_small_files_read_ahead);
    RUN_TEST(test_live_validation_catches_damage);
    FBTEST_EXIT();
}
