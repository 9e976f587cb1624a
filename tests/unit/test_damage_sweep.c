/* Damage sweep (issue 7): a real backup of several frames is damaged one
 * way at a time (every bit of its seek table, each number of each manifest
 * entry moved by +-1, +-512 or doubled), "repaired" the way a careless user
 * would (the manifest's archive SHA-256 rewritten to match), and then every
 * file is read back through the mount model (core/mount/mount_tree.c, what the
 * daemon serves) and, for a sample, restored with the core restore
 * (`recover --target`). Each read must give the genuine bytes or an error,
 * never other bytes; a second, untouched backup must keep reading. */
#include <dirent.h>
#include <sys/stat.h>

#include "fbtest.h"
#include "fb_backup.h"
#include "fb_config.h"
#include "fb_hash.h"
#include "fb_manifest.h"
#include "fb_mount_tree.h"
#include "fb_restore.h"
#include "fb_seek_table.h"
#include "fb_store.h"

#define SID "sweep"
#define NOW 1800000000

typedef struct sweep {
    char *tmp;
    char root[512];
    char backups[600];
    char bid[2][FB_BACKUP_ID_LEN + 1]; /* [0] is damaged, [1] stays intact */
    char manifest_path[800];
    char archive_path[800];
    char *manifest_json;  /* the genuine manifest */
    size_t manifest_len;
    uint8_t *archive;     /* the genuine archive */
    size_t archive_len;
    fb_manifest m;        /* the genuine manifest, parsed */
    /* outcomes over the sweep */
    unsigned reads_ok, reads_refused, wrong, restores_ok, restores_refused;
} sweep;

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0)
        fbtest_die(path);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n)
        fbtest_die(path);
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

static void mkdirs(const char *base, const char *rel)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", base, rel);
    for (char *s = p + strlen(base) + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0700);
            *s = '/';
        }
    mkdir(p, 0700);
}

/* A session of several 64 KiB frames: small JSON files, a text log and a
 * random blob spanning frames, a long name and a non-ASCII name (both in
 * pax records), an empty file and a hardlink. */
static void make_session(sweep *s)
{
    char src[600], p[4096];
    snprintf(src, sizeof src, "%s/.flowloom/sessions/" SID, s->root);
    mkdirs(s->root, ".flowloom/sessions/" SID "/logs");
    mkdirs(src, "artifacts/"
                "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
                "dddddddddddddddddddddddddddddddddddddddd");
    mkdirs(s->root, ".flowloom/backups");
    snprintf(p, sizeof p, "%s/metadata.json", src);
    write_file(p, "{\"session\":\"sweep\",\"n\":1}\n", 26);
    snprintf(p, sizeof p, "%s/state.json", src);
    write_file(p, "{\"step\":42}\n", 12);
    size_t log_len = 150000;
    char *log = malloc(log_len);
    for (size_t i = 0, line = 0; i < log_len; line++) {
        int n = snprintf(log + i, log_len - i, "line %zu: the agent did step %zu\n", line,
                         line * 7);
        i += (size_t)n < log_len - i ? (size_t)n : log_len - i;
    }
    snprintf(p, sizeof p, "%s/logs/run.log", src);
    write_file(p, log, log_len);
    free(log);
    uint8_t *blob = malloc(200000);
    fbtest_fill(blob, 200000, 7, 0);
    snprintf(p, sizeof p, "%s/artifacts/blob.bin", src);
    write_file(p, blob, 200000);
    char q[4096];
    snprintf(q, sizeof q, "%s/artifacts/blob-link.bin", src);
    if (link(p, q) != 0)
        fbtest_die(q);
    fbtest_fill(blob, 3000, 9, 1);
    snprintf(p, sizeof p,
             "%s/artifacts/"
             "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
             "dddddddddddddddddddddddddddddddddddddddd/"
             "a-very-long-file-name-that-does-not-fit-the-ustar-name-field-at-all-"
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.txt",
             src);
    write_file(p, blob, 3000);
    snprintf(p, sizeof p, "%s/artifacts/caf\xc3\xa9-notes.md", src);
    write_file(p, "# caf\xc3\xa9\n", 9);
    snprintf(p, sizeof p, "%s/empty.txt", src);
    write_file(p, "", 0);
    free(blob);
}

static void take_backups(sweep *s)
{
    fb_error err;
    fb_config cfg;
    if (fb_config_init_defaults(&cfg, &err) != 0)
        fbtest_die("config");
    cfg.frame_size = 65536;
    cfg.threads = 1;
    fb_store *store = NULL;
    if (fb_store_open(s->root, true, &store, &err) != 0)
        fbtest_die(err.message);
    for (int k = 0; k < 2; k++) {
        fb_backup_request req;
        memset(&req, 0, sizeof req);
        req.session_id = SID;
        req.type = FB_BACKUP_FULL;
        req.now = NOW + k;
        req.config = &cfg;
        req.verify = true;
        fb_backup_result res;
        fb_backup_result_init(&res);
        if (fb_backup_run(store, &req, &res, &err) != 0) {
            fprintf(stderr, "backup: %s\n", err.message);
            exit(2);
        }
        memcpy(s->bid[k], res.manifest.backup_id, sizeof s->bid[k]);
        fb_backup_result_fini(&res);
    }
    fb_store_free(store);
    fb_config_fini(&cfg);
}

static void setup(sweep *s)
{
    memset(s, 0, sizeof *s);
    s->tmp = fbtest_tempdir();
    snprintf(s->root, sizeof s->root, "%s/root", s->tmp);
    mkdir(s->root, 0700);
    snprintf(s->backups, sizeof s->backups, "%s/.flowloom/backups", s->root);
    make_session(s);
    take_backups(s);
    snprintf(s->manifest_path, sizeof s->manifest_path, "%s/" SID "/%s/manifest.json", s->backups,
             s->bid[0]);
    snprintf(s->archive_path, sizeof s->archive_path, "%s/" SID "/%s/archive.tar.zst",
             s->backups, s->bid[0]);
    s->manifest_json = (char *)slurp(s->manifest_path, &s->manifest_len);
    s->archive = slurp(s->archive_path, &s->archive_len);
    fb_error err;
    fb_manifest_init(&s->m);
    if (!s->manifest_json || !s->archive ||
        fb_manifest_parse(s->manifest_json, s->manifest_len, "manifest", &s->m, &err) != 0)
        fbtest_die("reading the backup back");
}

static void teardown(sweep *s)
{
    free(s->manifest_json);
    free(s->archive);
    fb_manifest_fini(&s->m);
    fbtest_rmtree(s->tmp);
}

/* The genuine bytes of a stored path: the session source, untouched since. */
static uint8_t *genuine(const sweep *s, const char *path, size_t *len)
{
    char p[8192];
    snprintf(p, sizeof p, "%s/.flowloom/sessions/" SID "/%s", s->root, path);
    return slurp(p, len);
}

/* Puts the damaged archive and a manifest (parsed form m) in place, with
 * the archive's size and SHA-256 made to match, as a "repair" would. */
static void install(sweep *s, const uint8_t *archive, fb_manifest *m)
{
    write_file(s->archive_path, archive, s->archive_len);
    m->archive.size = s->archive_len;
    fb_error err;
    if (fb_sha256_buffer(archive, s->archive_len, m->archive.sha256, &err) != 0)
        fbtest_die(err.message);
    char *json = NULL;
    size_t len = 0;
    if (fb_manifest_to_json(m, &json, &len, &err) != 0)
        fbtest_die(err.message);
    write_file(s->manifest_path, json, len);
    free(json);
    /* The index would disagree with the manifest: let it be rebuilt. */
    char p[4096];
    snprintf(p, sizeof p, "%s/" SID "/index.json", s->backups);
    unlink(p);
}

static void restore_genuine(sweep *s)
{
    fb_manifest copy;
    fb_error err;
    fb_manifest_init(&copy);
    if (fb_manifest_parse(s->manifest_json, s->manifest_len, "manifest", &copy, &err) != 0)
        fbtest_die(err.message);
    install(s, s->archive, &copy);
    fb_manifest_fini(&copy);
}

/* Reads one file in odd-sized pieces that cross frame boundaries. */
static int read_through(fb_mount_tree *t, uint64_t ino, uint8_t **out, size_t *len)
{
    fb_mount_file *f = NULL;
    fb_error err;
    int rc = fb_mount_tree_open(t, ino, &f, &err);
    if (rc)
        return rc;
    size_t size = (size_t)fb_mount_file_size(f);
    uint8_t *buf = malloc(size + 1);
    size_t done = 0;
    while (rc == 0 && done < size) {
        size_t got = 0;
        rc = fb_mount_file_read(f, buf + done, 7001, done, &got, &err);
        if (rc == 0 && got == 0)
            break;
        done += got;
    }
    fb_mount_file_close(t, f);
    *out = buf;
    *len = done;
    if (rc)
        free(buf);
    return rc;
}

static int lookup(fb_mount_tree *t, const char *bid, const char *path, uint64_t *ino)
{
    char buf[8192];
    snprintf(buf, sizeof buf, SID "/%s/%s", bid, path);
    fb_mount_attr a;
    fb_error err;
    uint64_t cur = FB_MOUNT_ROOT_INO;
    int rc = 0;
    for (char *save = NULL, *c = strtok_r(buf, "/", &save); c && rc == 0;
         c = strtok_r(NULL, "/", &save)) {
        rc = fb_mount_tree_lookup(t, cur, c, &a, &err);
        if (rc == 0)
            cur = a.st.st_ino;
    }
    *ino = cur;
    return rc;
}

/* Every file of backup k through a fresh mount model; returns how many
 * read genuine and counts refusals and wrong bytes in s. */
static unsigned read_backup(sweep *s, int k, const char *what)
{
    fb_mount_options opts = {.cache_bytes = 1u << 20, .live_seconds = 0};
    fb_mount_tree *t = NULL;
    fb_error err;
    if (fb_mount_tree_new(s->backups, &opts, &t, &err) != 0)
        fbtest_die(err.message);
    unsigned good = 0;
    for (size_t i = 0; i < s->m.n_entries; i++) {
        const fb_manifest_entry *e = &s->m.entries[i];
        if (e->meta.type != FB_ENTRY_FILE && e->meta.type != FB_ENTRY_HARDLINK)
            continue;
        uint64_t ino;
        uint8_t *got = NULL;
        size_t got_len = 0;
        int rc = lookup(t, s->bid[k], e->path, &ino);
        if (rc == 0)
            rc = read_through(t, ino, &got, &got_len);
        if (rc != 0) {
            s->reads_refused++;
            continue;
        }
        size_t want_len;
        uint8_t *want = genuine(s, e->path, &want_len);
        if (!want || want_len != got_len || memcmp(want, got, got_len) != 0) {
            fprintf(stderr, "%s: WRONG BYTES from %s (%zu bytes served, %zu genuine)\n", what,
                    e->path, got_len, want_len);
            s->wrong++;
        } else {
            s->reads_ok++;
            good++;
        }
        free(want);
        free(got);
    }
    fb_mount_tree_free(t);
    return good;
}

static bool dir_is_empty_or_absent(const char *p)
{
    DIR *d = opendir(p);
    if (!d)
        return errno == ENOENT;
    struct dirent *de;
    bool empty = true;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            empty = false;
    closedir(d);
    return empty;
}

/* recover --target: refused leaving nothing, or every file genuine. */
static void restore_backup(sweep *s, const char *what)
{
    char target[4096];
    snprintf(target, sizeof target, "%s/restored", s->tmp);
    fb_store *store = NULL;
    fb_error err;
    if (fb_store_open(s->root, false, &store, &err) != 0)
        fbtest_die(err.message);
    fb_config cfg;
    fb_config_init_defaults(&cfg, &err);
    fb_restore_request req;
    memset(&req, 0, sizeof req);
    req.session_id = SID;
    req.backup = s->bid[0];
    req.target_dir = target;
    req.now = NOW + 100;
    req.config = &cfg;
    fb_restore_result res;
    fb_restore_result_init(&res);
    int rc = fb_restore_run(store, &req, &res, &err);
    fb_restore_result_fini(&res);
    fb_config_fini(&cfg);
    fb_store_free(store);
    if (rc != 0) {
        s->restores_refused++;
        if (!dir_is_empty_or_absent(target)) {
            fprintf(stderr, "%s: a refused restore left files in the target\n", what);
            s->wrong++;
        }
    } else {
        s->restores_ok++;
        for (size_t i = 0; i < s->m.n_entries; i++) {
            const fb_manifest_entry *e = &s->m.entries[i];
            if (e->meta.type != FB_ENTRY_FILE && e->meta.type != FB_ENTRY_HARDLINK)
                continue;
            char p[8192];
            snprintf(p, sizeof p, "%s/%s", target, e->path);
            size_t a_len, b_len;
            uint8_t *a = slurp(p, &a_len), *b = genuine(s, e->path, &b_len);
            if (!a || !b || a_len != b_len || memcmp(a, b, a_len) != 0) {
                fprintf(stderr, "%s: restore wrote WRONG BYTES to %s\n", what, e->path);
                s->wrong++;
            }
            free(a);
            free(b);
        }
    }
    char *t = strdup(target);
    fbtest_rmtree(t);
}

static size_t count_files(const fb_manifest *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n_entries; i++)
        n += m->entries[i].meta.type == FB_ENTRY_FILE ||
             m->entries[i].meta.type == FB_ENTRY_HARDLINK;
    return n;
}

/* Every bit of the seek table (the skippable frame at the end), flipped. */
static void test_seek_table_bits(void)
{
    sweep s;
    setup(&s);
    size_t files = count_files(&s.m);
    CHECK(s.m.archive.frames >= 6); /* several frames, or the sweep proves little */
    REQUIRE(read_backup(&s, 0, "intact") == files);

    fb_seek_table t;
    fb_seek_table_init(&t);
    fb_error err;
    REQUIRE(fb_seek_table_parse(s.archive, s.archive_len, "archive", &t, &err) == 0);
    size_t table_start = (size_t)t.c_frames_size;
    fb_seek_table_fini(&t);
    uint8_t *bad = malloc(s.archive_len);
    fb_manifest m;
    unsigned cases = 0;
    for (size_t byte = table_start; byte < s.archive_len; byte++) {
        for (int bit = 0; bit < 8; bit++) {
            char what[64];
            snprintf(what, sizeof what, "table byte %zu bit %d", byte - table_start, bit);
            memcpy(bad, s.archive, s.archive_len);
            bad[byte] ^= (uint8_t)(1u << bit);
            fb_manifest_init(&m);
            REQUIRE(fb_manifest_parse(s.manifest_json, s.manifest_len, "m", &m, &err) == 0);
            install(&s, bad, &m);
            fb_manifest_fini(&m);
            read_backup(&s, 0, what);
            if (cases % 16 == 0) {
                restore_backup(&s, what);
                CHECK(read_backup(&s, 1, what) == files); /* the other backup */
            }
            cases++;
        }
    }
    free(bad);
    fprintf(stderr, "seek table: %u cases, %u reads genuine, %u refused, %u restores ok, "
            "%u refused\n", cases, s.reads_ok, s.reads_refused, s.restores_ok,
            s.restores_refused);
    CHECK_EQ_INT(s.wrong, 0);
    CHECK(s.reads_refused > 0); /* the damage was seen */
    restore_genuine(&s);
    CHECK(read_backup(&s, 0, "repaired") == files);
    teardown(&s);
}

/* Each file entry's offset and size, moved one way at a time. */
static void test_manifest_numbers(void)
{
    sweep s;
    setup(&s);
    size_t files = count_files(&s.m);
    fb_error err;
    unsigned cases = 0, parsed = 0;
    for (size_t i = 0; i < s.m.n_entries; i++) {
        if (s.m.entries[i].meta.type != FB_ENTRY_FILE)
            continue;
        for (int field = 0; field < 2; field++) {
            for (int how = 0; how < 5; how++) {
                fb_manifest m;
                fb_manifest_init(&m);
                REQUIRE(fb_manifest_parse(s.manifest_json, s.manifest_len, "m", &m, &err) == 0);
                uint64_t *v = field == 0 ? &m.entries[i].offset : &m.entries[i].meta.size;
                uint64_t old = *v;
                switch (how) {
                case 0: *v = old + 1; break;
                case 1: *v = old - 1; break;
                case 2: *v = old + 512; break;
                case 3: *v = old - 512; break;
                default: *v = old * 2; break;
                }
                if (*v == old || (how == 1 && old == 0) || (how == 3 && old < 512)) {
                    fb_manifest_fini(&m);
                    continue;
                }
                if (field == 1) /* totals follow the sizes, as a careful edit would */
                    m.totals.bytes = m.totals.bytes - old + *v;
                char what[512];
                snprintf(what, sizeof what, "%s %s %d", m.entries[i].path,
                         field ? "size" : "offset", how);
                install(&s, s.archive, &m);
                fb_manifest_fini(&m);
                unsigned before_refused = s.reads_refused;
                unsigned good = read_backup(&s, 0, what);
                /* If the manifest still parsed, only the moved file (and a
                 * hardlink to it) may be refused. */
                if (good > 0) {
                    parsed++;
                    CHECK(s.reads_refused - before_refused >= 1);
                    CHECK(good >= files - 2);
                }
                restore_backup(&s, what);
                CHECK(read_backup(&s, 1, what) == files);
                cases++;
            }
        }
    }
    fprintf(stderr, "manifest numbers: %u cases (%u parsed), %u reads genuine, %u refused, "
            "%u restores ok, %u refused\n", cases, parsed, s.reads_ok, s.reads_refused,
            s.restores_ok, s.restores_refused);
    CHECK_EQ_INT(s.wrong, 0);
    CHECK(parsed > 0);
    CHECK_EQ_INT(s.restores_ok, 0); /* restore checks every entry against the stream */
    teardown(&s);
}

/* A small file's SHA-256 changed in the manifest (its bytes are intact):
 * the mount hashes small files when they are opened, so it refuses that
 * file rather than serve bytes the manifest does not vouch for; the rest
 * reads. (A header proof alone passes here: offset and size are right.) */
static void test_small_file_content_is_proven(void)
{
    sweep s;
    setup(&s);
    size_t files = count_files(&s.m);
    fb_error err;
    fb_manifest m;
    fb_manifest_init(&m);
    REQUIRE(fb_manifest_parse(s.manifest_json, s.manifest_len, "m", &m, &err) == 0);
    size_t victim = SIZE_MAX;
    for (size_t i = 0; i < m.n_entries; i++)
        if (strcmp(m.entries[i].path, "state.json") == 0)
            victim = i;
    REQUIRE(victim != SIZE_MAX);
    m.entries[victim].sha256[0] ^= 1;
    install(&s, s.archive, &m);
    fb_manifest_fini(&m);
    CHECK_EQ_INT(read_backup(&s, 0, "sha256 of state.json"), files - 1);
    CHECK_EQ_INT(s.reads_refused, 1);
    CHECK_EQ_INT(s.wrong, 0);
    teardown(&s);
}

int main(void)
{
    test_seek_table_bits();
    test_manifest_numbers();
    test_small_file_content_is_proven();
    return fbtest_failures ? 1 : 0;
}
