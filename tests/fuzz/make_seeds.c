/* Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/)
 * from real backups: a small FlowLoom session (JSON files, a log spanning
 * several 64 KiB frames, a directory tree, an empty file, a symlink, a
 * hardlink, a name that is not UTF-8) is backed up full and incremental with
 * fb_backup_run, and its manifests, index and archives become the seeds,
 * wrapped in each target's input format. Seeds made by the code under test
 * start the fuzzer deep inside the valid input space, where mutations hit
 * the interesting checks.
 *
 * Usage: fuzz_make_seeds CORPUS_DIR   (the directory must exist; existing
 * files of the same name are replaced). Backup ids carry random hex, so the
 * seeds differ from run to run in those digits only. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fb_archive_reader.h"
#include "fb_backup.h"
#include "fb_config.h"
#include "fb_fsutil.h"
#include "fb_store.h"
#include "fuzz_util.h"

#define SID "s1"
#define NOW 1790000000

static const char *corpus;

static void die(const char *what, const fb_error *err)
{
    fprintf(stderr, "fuzz_make_seeds: %s: %s\n", what, err ? err->message : strerror(errno));
    exit(1);
}

static void put(const char *dir, const char *rel, const void *data, size_t len)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || fb_write_all(fd, data, len) != 0 || close(fd) != 0)
        die(p, NULL);
}

/* One seed file: corpus/<target>/<name>, from up to three parts. */
static void seed(const char *target, const char *name, const void *a, size_t alen, const void *b,
                 size_t blen, const void *c, size_t clen)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", corpus, target);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        die(dir, NULL);
    uint8_t *buf = malloc(alen + blen + clen + 1);
    if (!buf)
        die("malloc", NULL);
    memcpy(buf, a, alen);
    if (blen)
        memcpy(buf + alen, b, blen);
    if (clen)
        memcpy(buf + alen + blen, c, clen);
    put(dir, name, buf, alen + blen + clen);
    free(buf);
}

static void make_session(const char *sess)
{
    static const char meta[] = "{\"id\": \"s1\", \"name\": \"demo session\", \"tags\": [\"a\"]}\n";
    static const char state[] = "{\"step\": 3, \"done\": false}\n";
    put(sess, "metadata.json", meta, sizeof meta - 1);
    put(sess, "state.json", state, sizeof state - 1);
    char p[4096];
    const char *dirs[] = {"state", "logs", "artifacts", "artifacts/deep"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", sess, dirs[i]);
        if (mkdir(p, 0755) != 0)
            die(p, NULL);
    }
    put(sess, "state/x.json", "[1, 2, 3]\n", 10);
    /* About 150 KiB of log: three 64 KiB frames, a few KiB compressed. */
    size_t cap = 150 * 1024, len = 0;
    char *log = malloc(cap + 128);
    for (unsigned i = 0; len < cap; i++)
        len += (size_t)sprintf(log + len, "2026-12-01T03:%02u:%02uZ step %u: tool ok\n",
                               (i / 60) % 60, i % 60, i % 7);
    put(sess, "logs/run.log", log, len);
    free(log);
    uint8_t blob[700];
    uint64_t s = 42;
    for (size_t i = 0; i < sizeof blob; i++)
        blob[i] = (uint8_t)fz_next(&s);
    put(sess, "artifacts/deep/blob.bin", blob, sizeof blob);
    put(sess, "artifacts/empty.txt", "", 0);
    put(sess, "artifacts/odd-\xff-name.txt", "not UTF-8 name\n", 15);
    snprintf(p, sizeof p, "%s/link", sess);
    if (symlink("state.json", p) != 0)
        die(p, NULL);
    char from[4096];
    snprintf(from, sizeof from, "%s/metadata.json", sess);
    snprintf(p, sizeof p, "%s/artifacts/meta-copy.json", sess);
    if (link(from, p) != 0)
        die(p, NULL);
}

static void backup(fb_store *store, const fb_config *cfg, fb_backup_type type, int64_t now,
                   const char *note)
{
    fb_backup_request req = {
        .session_id = SID,
        .type = type,
        .note = note,
        .now = now,
        .config = cfg,
        .lock_wait_seconds = 5,
        .verify = true,
    };
    fb_backup_result res;
    fb_backup_result_init(&res);
    fb_error err;
    if (fb_backup_run(store, &req, &res, &err) != 0)
        die("fb_backup_run", &err);
    fb_backup_result_fini(&res);
}

static uint8_t *slurp(const char *dir, const char *name, size_t *len)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    uint8_t *b = fz_read_file(p, len);
    if (!b)
        die(p, NULL);
    return b;
}

/* A recipe of the structured target (fuzz_archive_structured.c), built
 * field by field. */
typedef struct recipe {
    uint8_t b[256];
    size_t n;
} recipe;

static void r8(recipe *r, unsigned v)
{
    r->b[r->n++] = (uint8_t)v;
}

static void r16(recipe *r, unsigned v)
{
    r8(r, v & 0xFF);
    r8(r, v >> 8);
}

static void r32(recipe *r, uint32_t v)
{
    r16(r, v & 0xFFFF);
    r16(r, v >> 16);
}

/* flags; frame count - 1; level - 1; seed; one word per frame (bits 0-11
 * its length, 12-13 the kind of content). */
static void recipe_start(recipe *r, unsigned flags, unsigned n_frames, uint32_t seed,
                         const unsigned *lens)
{
    r->n = 0;
    r8(r, flags);
    r8(r, n_frames - 1);
    r8(r, 2);
    r32(r, seed);
    for (unsigned i = 0; i < n_frames; i++)
        r16(r, lens[i]);
}

/* One damage op: kind, frame, value (see st_damage). */
static void op(recipe *r, unsigned kind, unsigned frame, uint32_t value)
{
    r8(r, kind);
    r8(r, frame);
    r32(r, value);
}

static void structured_seeds(void)
{
    /* Flags: 1 table checksums, 2 frame cache, 4 also stream; then the
     * number of damage ops and the ops. */
    static const unsigned lens4[] = {306, 3000 | 0x1000, 2000 | 0x2000, 1500 | 0x3000};
    static const unsigned lens2[] = {3000, 700 | 0x1000};
    recipe r;
    recipe_start(&r, 0x05, 4, 7, lens4);
    r8(&r, 0); /* no damage: must read back whole */
    seed("archive_structured", "intact", r.b, r.n, NULL, 0, NULL, 0);

    recipe_start(&r, 0x01, 4, 9, lens4);
    r8(&r, 1);
    op(&r, 2, 2, 0x101); /* a checksum of the table changed */
    seed("archive_structured", "checksum", r.b, r.n, NULL, 0, NULL, 0);

    recipe_start(&r, 0x03, 4, 11, lens4);
    r8(&r, 2);
    op(&r, 1, 1, 2); /* c_size of frame 1: +512 */
    op(&r, 2, 1, 0); /* its checksum "repaired" */
    seed("archive_structured", "csize-repaired", r.b, r.n, NULL, 0, NULL, 0);

    recipe_start(&r, 0x07, 2, 13, lens2);
    r8(&r, 2);
    op(&r, 3, 0, 0x41); /* a bit of the seek table */
    op(&r, 4, 1, 0x13); /* a bit of frame 1's header */
    r16(&r, 100); /* one read: offset, length */
    r16(&r, 3000);
    seed("archive_structured", "flips", r.b, r.n, NULL, 0, NULL, 0);

    recipe_start(&r, 0x01, 2, 17, lens2);
    r8(&r, 1);
    op(&r, 6, 0, 0x23); /* 4 bytes cut out of frame 0 */
    seed("archive_structured", "cut", r.b, r.n, NULL, 0, NULL, 0);
}

/* Recipes of the tar-header target (fuzz_tar_header.c): entries, damage,
 * frame sizes, queries. */
static void tar_header_seeds(void)
{
    recipe r;
    /* Every kind of entry and name, no damage, every kind of query. */
    r.n = 0;
    r8(&r, 0);
    r8(&r, 5); /* 6 entries */
    r32(&r, 21);
    r8(&r, 0x80); r8(&r, 0); r16(&r, 40);          /* text file, short name */
    r8(&r, 0x00); r8(&r, 1); r8(&r, 110); r16(&r, 1500); /* long name (310 bytes) */
    r8(&r, 5); r8(&r, 0);                           /* directory */
    r8(&r, 0x81); r8(&r, 3); r16(&r, 700);          /* exactly 100 bytes */
    r8(&r, 0x02); r8(&r, 2); r16(&r, 9);            /* not UTF-8 */
    r8(&r, 7); r8(&r, 5);                           /* hardlink, extended name */
    r8(&r, 0);                                      /* no damage */
    r16(&r, 600);                                   /* frame sizes */
    r8(&r, 7);                                      /* 8 queries */
    for (unsigned q = 0; q < 8; q++) {
        r8(&r, q);
        r8(&r, q + 1);
        r8(&r, q * 37);
        r8(&r, q * 5);
    }
    seed("tar_header", "kinds", r.b, r.n, NULL, 0, NULL, 0);

    /* Prefix-sharing names; a header copied into the next file's data. */
    r.n = 0;
    r8(&r, 0);
    r8(&r, 2);
    r32(&r, 23);
    r8(&r, 0x00); r8(&r, 0); r16(&r, 1100);
    r8(&r, 0x00); r8(&r, 5); r16(&r, 1600);
    r8(&r, 0x80); r8(&r, 5); r16(&r, 300);
    r8(&r, 2);
    op(&r, 5, 1, 0x0100);  /* member 1's header into a file's data */
    op(&r, 2, 2, 0x30002); /* member 2's ustar name, checksum repaired */
    r16(&r, 3000);
    r8(&r, 3);
    r8(&r, 1); r8(&r, 2); r8(&r, 4); r8(&r, 0);
    r8(&r, 2); r8(&r, 0); r8(&r, 6); r8(&r, 0);
    r8(&r, 0); r8(&r, 0); r8(&r, 18); r8(&r, 0);
    r8(&r, 1); r8(&r, 1); r8(&r, 1); r8(&r, 0);
    seed("tar_header", "copied-header", r.b, r.n, NULL, 0, NULL, 0);
}

/* The pure-parser mode of the tar-header target: a real pax header block
 * and its records, from the full backup's tar stream. */
static void tar_header_pure_seed(const uint8_t *arch, size_t alen)
{
    fb_error err;
    int fd = fz_memfd(arch, alen);
    fb_archive_reader *r;
    if (fb_archive_reader_open(fd, NULL, "seed", &r, &err) != 0)
        die("seed archive", &err);
    uint8_t tar[2048];
    size_t got;
    if (fb_archive_reader_pread(r, tar, sizeof tar, 0, &got, &err) != 0)
        die("seed archive", &err);
    fb_archive_reader_free(r);
    uint8_t mode = 0x80;
    seed("tar_header", "pure-pax", &mode, 1, tar, got, NULL, 0);
    mode = 0x81;
    seed("tar_header", "pure-pax-fixed", &mode, 1, tar, got, NULL, 0);
}

static void config_seeds(void)
{
    static const char *const configs[][2] = {
        {"full.json",
         "{\n  \"retention\": {\"keep_full\": 10, \"max_age_days\": 30, \"min_keep\": 1},\n"
         "  \"incremental\": {\"include\": [\"*.json\", \"state/\", \"logs/*.log\"]},\n"
         "  \"compression\": {\"level\": 3, \"frame_size\": 1048576, \"threads\": 0}\n}\n"},
        {"empty.json", "{}\n"},
        {"retention.json", "{\"retention\": {\"keep_full\": 1, \"max_age_days\": 0, \"min_keep\": 100000}}"},
        {"compression.json",
         "{\"compression\": {\"level\": 19, \"frame_size\": 67108864, \"threads\": 256}, "
         "\"future\": {\"x\": [1.5, null, true]}}"},
        {"include.json", "{\"incremental\": {\"include\": [\"[a-z]*/**\", \"\\u00e9t\\u00e9/\", \"?\"]}}"},
    };
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++)
        seed("config", configs[i][0], configs[i][1], strlen(configs[i][1]), NULL, 0, NULL, 0);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    corpus = argv[1];
    char *root = fz_tempdir("seeds");
    char p[4096], sess[4096];
    snprintf(p, sizeof p, "%s/.flowloom", root);
    if (mkdir(p, 0700) != 0)
        die(p, NULL);
    snprintf(p, sizeof p, "%s/.flowloom/sessions", root);
    if (mkdir(p, 0700) != 0)
        die(p, NULL);
    snprintf(sess, sizeof sess, "%s/" SID, p);
    if (mkdir(sess, 0755) != 0)
        die(sess, NULL);
    make_session(sess);

    fb_error err;
    fb_store *store;
    if (fb_store_open(root, true, &store, &err) != 0)
        die("fb_store_open", &err);
    fb_config cfg;
    if (fb_config_init_defaults(&cfg, &err) != 0)
        die("config", &err);
    cfg.frame_size = 65536;
    cfg.threads = 1;
    backup(store, &cfg, FB_BACKUP_FULL, NOW, "seed \xc3\xa9t\xc3\xa9 full");
    put(sess, "state.json", "{\"step\": 4, \"done\": true}\n", 26);
    backup(store, &cfg, FB_BACKUP_INCREMENTAL, NOW + 60, NULL);

    int sfd;
    if (fb_store_open_session(store, SID, false, &sfd, &err) != 0)
        die("session", &err);
    char **ids;
    size_t n_ids;
    if (fb_store_list_backup_dirs(sfd, &ids, &n_ids, &err) != 0 || n_ids != 2)
        die("backup dirs", &err);
    close(sfd);
    char sdir[4096];
    snprintf(sdir, sizeof sdir, "%s/.flowloom/backups/" SID, root);
    size_t ilen;
    uint8_t *index = slurp(sdir, "index.json", &ilen);
    seed("index", "index.json", index, ilen, NULL, 0, NULL, 0);
    free(index);

    for (size_t i = 0; i < n_ids; i++) {
        const char *kind = strstr(ids[i], "-full-") ? "full" : "incremental";
        char bdir[4200], name[64];
        snprintf(bdir, sizeof bdir, "%s/%s", sdir, ids[i]);
        size_t mlen, alen;
        uint8_t *man = slurp(bdir, "manifest.json", &mlen);
        uint8_t *arch = slurp(bdir, "archive.tar.zst", &alen);
        snprintf(name, sizeof name, "%s.json", kind);
        seed("manifest", name, man, mlen, NULL, 0, NULL, 0);
        snprintf(name, sizeof name, "%s.tar.zst", kind);
        seed("seek_table", name, arch, alen, NULL, 0, NULL, 0);
        /* archive_raw: seed, flags (cache, stream), read count, padding. */
        uint8_t raw[8] = {(uint8_t)(7 + i), 0, 0, 0, (uint8_t)(i ? 3 : 2), 12, 0, 0};
        snprintf(name, sizeof name, "%s.bin", kind);
        seed("archive_raw", name, raw, sizeof raw, arch, alen, NULL, 0);
        /* restore: flags, manifest length, manifest, archive. */
        uint8_t hdr[3] = {0, (uint8_t)mlen, (uint8_t)(mlen >> 8)};
        if (mlen > 0xFFFF)
            die("manifest too large for a restore seed", NULL);
        seed("restore", name, hdr, sizeof hdr, man, mlen, arch, alen);
        hdr[0] = 4; /* into an existing empty target */
        snprintf(name, sizeof name, "%s-empty-target.bin", kind);
        seed("restore", name, hdr, sizeof hdr, man, mlen, arch, alen);
        if (strcmp(kind, "full") == 0)
            tar_header_pure_seed(arch, alen);
        free(man);
        free(arch);
    }
    fb_string_list_free(ids, n_ids);
    structured_seeds();
    tar_header_seeds();
    config_seeds();

    fb_config_fini(&cfg);
    fb_store_free(store);
    fz_rmtree(root);
    free(root);
    return 0;
}
