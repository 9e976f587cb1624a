/* Tests of the local manifest cache (fb_manifest_cache.h) on disk: a miss
 * stores, a hit returns the very manifest the JSON gives; a replaced or
 * rewritten manifest.json is never answered from an old entry; damaged,
 * truncated, misplaced and forged entries are refused (a forged entry
 * with a good digest still meets every rule of fb_manifest_parse); a file
 * changed within the settle time is not stored; the directory must be
 * private; the bound removes the entries used longest ago. Also the
 * in-memory rules of fb_manifest_check, one broken at a time. */
#include <fcntl.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fb_hash.h"
#include "fb_manifest_cache.h"
#include "fbtest.h"
#include "store_fixture.h"

#define T0 1796094900 /* 2026-12-01T03:15:00Z */
/* REQUIRE for helpers that return a value: a fixture step failed. */
#define NEED(cond)                      \
    do {                                \
        if (!(cond))                    \
            fbtest_die(#cond);          \
    } while (0)
#define SID "sess-1"

typedef struct fixture {
    char *dir;
    fb_store *store;
    int sfd;
    char cache_dir[4200];
    char ids[3][FB_BACKUP_ID_LEN + 1];
} fixture;

/* A manifest with one entry of every type, a name that is not UTF-8 and
 * a note. */
static void rich_manifest(fb_manifest *m, const char *id, uint64_t seq)
{
    REQUIRE(fixture_manifest(m, SID, id, seq, T0 + (int64_t)seq, NULL, "a note") == 0);
    fb_error err;
    fb_entry_meta dir = {.type = FB_ENTRY_DIR, .mode = 0755, .mtime = T0};
    fb_entry_meta file = {.type = FB_ENTRY_FILE, .mode = 0600, .uid = 7, .gid = 8,
                          .mtime = -5, .mtime_nsec = 999999999, .size = 3000};
    fb_entry_meta link = {.type = FB_ENTRY_SYMLINK, .mode = 0777, .mtime = T0};
    fb_entry_meta hard = {.type = FB_ENTRY_HARDLINK, .mode = 0600, .mtime = T0, .size = 3000};
    uint8_t sha[FB_SHA256_LEN];
    memset(sha, 0xab, sizeof sha);
    REQUIRE(fb_manifest_add_entry(m, "zdir", &dir, NULL, 0, NULL, &err) == 0);
    REQUIRE(fb_manifest_add_entry(m, "zdir/caf\xe9.bin", &file, sha, 1536, NULL, &err) == 0);
    REQUIRE(fb_manifest_add_entry(m, "zdir/link", &link, NULL, 0, "../anywhere", &err) == 0);
    REQUIRE(fb_manifest_add_entry(m, "zdir/same", &hard, NULL, 0, "zdir/caf\xe9.bin", &err) == 0);
}

static char *json_of(const fb_manifest *m)
{
    char *json = NULL;
    size_t len;
    fb_error err;
    NEED(fb_manifest_to_json(m, &json, &len, &err) == 0);
    return json;
}

/* Three backups written, then old enough to be kept (the settle time). */
static void fixture_init(fixture *f)
{
    f->dir = fbtest_tempdir();
    f->store = fixture_store(f->dir);
    REQUIRE(f->store);
    fb_error err;
    REQUIRE(fb_store_open_session(f->store, SID, true, &f->sfd, &err) == 0);
    for (unsigned i = 0; i < 3; i++) {
        fixture_id(T0 + i, FB_BACKUP_FULL, 0x100 + i, f->ids[i]);
        fb_manifest m;
        rich_manifest(&m, f->ids[i], i + 1);
        REQUIRE(fixture_write_backup(f->sfd, &m) == 0);
        fb_manifest_fini(&m);
    }
    snprintf(f->cache_dir, sizeof f->cache_dir, "%s/cache", f->dir);
    sleep(FB_MANIFEST_CACHE_SETTLE_SECONDS);
    usleep(200 * 1000);
}

static void fixture_fini(fixture *f)
{
    close(f->sfd);
    fb_store_free(f->store);
    fbtest_rmtree(f->dir);
}

/* The manifest of backup id through c, which must say hit or miss. */
static char *read_via(fb_manifest_cache *c, fixture *f, const char *id, bool want_hit)
{
    fb_manifest m;
    fb_error err;
    fb_error_clear(&err);
    bool hit = !want_hit;
    int rc = fb_manifest_cache_read(c, f->sfd, SID, id, &m, &hit, &err);
    if (rc)
        fprintf(stderr, "read_via: %s\n", err.message);
    NEED(rc == 0);
    CHECK(hit == want_hit);
    char *json = json_of(&m);
    fb_manifest_fini(&m);
    return json;
}

static char *read_json(fixture *f, const char *id)
{
    return read_via(NULL, f, id, false);
}

static char entry_path[8400];

/* The cache file of backup id's manifest (by its inode). */
static const char *entry_of(fixture *f, const char *id)
{
    char p[4400];
    snprintf(p, sizeof p, "%s/.flowloom/backups/" SID "/%s/manifest.json", f->dir, id);
    struct stat st;
    NEED(stat(p, &st) == 0);
    snprintf(entry_path, sizeof entry_path, "%s/manifests/m-%016llx-%016llx", f->cache_dir,
             (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
    return entry_path;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    NEED(fd >= 0);
    struct stat st;
    NEED(fstat(fd, &st) == 0);
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    NEED(buf && read(fd, buf, (size_t)st.st_size) == st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return buf;
}

static void spit(const char *path, const uint8_t *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_TRUNC | O_CREAT, 0600);
    REQUIRE(fd >= 0 && write(fd, buf, len) == (ssize_t)len);
    close(fd);
}

/* The entry's trailer: XXH64 of everything before it, little-endian. */
#define DIGEST_LEN 8

/* Rewrites the entry's trailing checksum after an edit, as a forger would. */
static void reseal(uint8_t *buf, size_t len)
{
    uint64_t d = htole64(fb_xxh64_buffer(buf, len - DIGEST_LEN));
    memcpy(buf + len - DIGEST_LEN, &d, DIGEST_LEN);
}

static uint8_t *find_bytes(uint8_t *buf, size_t len, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(buf + i, s, n) == 0)
            return buf + i;
    return NULL;
}

static fb_manifest_cache *open_cache(fixture *f)
{
    fb_manifest_cache *c = NULL;
    fb_error err;
    int rc = fb_manifest_cache_open(f->cache_dir, &c, &err);
    if (rc)
        fprintf(stderr, "open_cache: %s\n", err.message);
    NEED(rc == 0);
    return c;
}

/* The entry a first read stores for backup 0: its bytes, *path its file. */
static uint8_t *stored_entry(fixture *f, fb_manifest_cache *c, const char **path, size_t *len)
{
    free(read_via(c, f, f->ids[0], false));
    *path = entry_of(f, f->ids[0]);
    return slurp(*path, len);
}

static void test_miss_then_hit(void)
{
    fixture f;
    fixture_init(&f);
    fb_manifest_cache *c = open_cache(&f);
    char *want = read_json(&f, f.ids[0]);
    char *first = read_via(c, &f, f.ids[0], false);
    char *second = read_via(c, &f, f.ids[0], true);
    CHECK(strcmp(first, want) == 0);
    CHECK(strcmp(second, want) == 0);
    struct stat st;
    CHECK(stat(entry_of(&f, f.ids[0]), &st) == 0 && (st.st_mode & 0777) == 0600);
    /* Another cache object on the same directory (another mount) hits. */
    fb_manifest_cache *c2 = open_cache(&f);
    char *third = read_via(c2, &f, f.ids[0], true);
    CHECK(strcmp(third, want) == 0);

    /* A hit leaves every string where the entry holds it (one block, no
     * copy); the strings stay the manifest's to replace and free. */
    fb_manifest m;
    fb_error err;
    bool hit = false;
    REQUIRE(fb_manifest_cache_read(c2, f.sfd, SID, f.ids[0], &m, &hit, &err) == 0 && hit);
    REQUIRE(m.strings && m.n_entries == 5);
    for (size_t i = 0; i < m.n_entries; i++) {
        CHECK(fb_manifest_in_strings(&m, m.entries[i].path));
        CHECK(!m.entries[i].target || fb_manifest_in_strings(&m, m.entries[i].target));
    }
    CHECK(fb_manifest_in_strings(&m, m.note) && strcmp(m.note, "a note") == 0);
    CHECK(fb_manifest_in_strings(&m, m.tool_version));
    REQUIRE(fb_manifest_set_note(&m, "another note", &err) == 0);
    CHECK(!fb_manifest_in_strings(&m, m.note) && strcmp(m.note, "another note") == 0);
    fb_manifest_fini(&m);
    /* The JSON reading keeps no block. */
    REQUIRE(fb_manifest_cache_read(NULL, f.sfd, SID, f.ids[0], &m, &hit, &err) == 0);
    CHECK(!m.strings && !fb_manifest_in_strings(&m, m.entries[0].path));
    fb_manifest_fini(&m);
    fb_manifest_cache_stats s;
    fb_manifest_cache_get_stats(c, &s);
    CHECK(s.hits == 1 && s.misses == 1 && s.stored == 1 && s.refused == 0);
    free(want);
    free(first);
    free(second);
    free(third);
    fb_manifest_cache_free(c2);
    fb_manifest_cache_free(c);
    fixture_fini(&f);
}

/* A hit is what the entry says, not a reparse: an entry forged with a good
 * digest and a changed symlink target is believed (it breaks no rule),
 * which shows the JSON was not read; forgeries that break a rule, and
 * damage the digest catches, are refused. */
static void test_forged_entries(void)
{
    fixture f;
    fixture_init(&f);
    fb_manifest_cache *c = open_cache(&f);
    const char *path;
    size_t len;
    uint8_t *orig = stored_entry(&f, c, &path, &len);

    /* The symlink target "../anywhere" becomes "../elsewher": a rule-abiding
     * change, served from the entry. */
    uint8_t *buf = malloc(len);
    memcpy(buf, orig, len);
    uint8_t *t = find_bytes(buf, len, "../anywhere");
    REQUIRE(t);
    memcpy(t, "../elsewher", 11);
    reseal(buf, len);
    spit(path, buf, len);
    char *got = read_via(c, &f, f.ids[0], true);
    CHECK(strstr(got, "../elsewher") != NULL);
    free(got);

    /* "zdir/same" (a hardlink) renamed "zdir/link": a duplicate path. */
    memcpy(buf, orig, len);
    t = find_bytes(buf, len, "zdir/same");
    REQUIRE(t);
    memcpy(t, "zdir/link", 9);
    reseal(buf, len);
    spit(path, buf, len);
    char *want = read_json(&f, f.ids[0]);
    got = read_via(c, &f, f.ids[0], false);
    CHECK(strcmp(got, want) == 0);
    free(got);

    /* The hardlink's target made absolute. */
    memcpy(buf, orig, len);
    uint8_t *same = find_bytes(buf, len, "zdir/same");
    REQUIRE(same);
    t = find_bytes(same + 9, len - (size_t)(same + 9 - buf), "zdir/caf");
    REQUIRE(t);
    t[0] = '/';
    reseal(buf, len);
    spit(path, buf, len);
    got = read_via(c, &f, f.ids[0], false);
    CHECK(strcmp(got, want) == 0);
    free(got);

    /* One byte flipped, digest left alone; then a truncated entry. */
    memcpy(buf, orig, len);
    buf[len / 2] ^= 0x40;
    spit(path, buf, len);
    got = read_via(c, &f, f.ids[0], false);
    CHECK(strcmp(got, want) == 0);
    free(got);
    spit(path, orig, len / 3);
    got = read_via(c, &f, f.ids[0], false);
    CHECK(strcmp(got, want) == 0);
    free(got);
    /* Each refused entry was replaced by a good one on the miss. */
    got = read_via(c, &f, f.ids[0], true);
    CHECK(strcmp(got, want) == 0);
    free(got);

    fb_manifest_cache_stats s;
    fb_manifest_cache_get_stats(c, &s);
    CHECK(s.refused == 4);
    free(want);
    free(buf);
    free(orig);
    fb_manifest_cache_free(c);
    fixture_fini(&f);
}

/* Another backup's entry put in this one's place (its key, its ids) is a
 * miss; a manifest replaced by a new file, or rewritten in place, is read
 * from its JSON and never from the old entry. */
static void test_stale_and_misplaced(void)
{
    fixture f;
    fixture_init(&f);
    fb_manifest_cache *c = open_cache(&f);
    free(read_via(c, &f, f.ids[0], false));
    free(read_via(c, &f, f.ids[1], false));
    char e0[8400], e1[8400];
    snprintf(e0, sizeof e0, "%s", entry_of(&f, f.ids[0]));
    snprintf(e1, sizeof e1, "%s", entry_of(&f, f.ids[1]));
    REQUIRE(rename(e1, e0) == 0);
    char *want0 = read_json(&f, f.ids[0]);
    char *got = read_via(c, &f, f.ids[0], false);
    CHECK(strcmp(got, want0) == 0);
    free(got);

    /* Replaced: a manifest with another note, through a new inode. */
    fb_manifest m;
    rich_manifest(&m, f.ids[0], 1);
    fb_error err;
    REQUIRE(fb_manifest_set_note(&m, "replaced", &err) == 0);
    char *json = json_of(&m);
    char dir[4400];
    snprintf(dir, sizeof dir, "%s/.flowloom/backups/" SID "/%s", f.dir, f.ids[0]);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    REQUIRE(dfd >= 0);
    REQUIRE(fb_atomic_write_at(dfd, dir, "manifest.json", json, strlen(json), &err) == 0);
    got = read_via(c, &f, f.ids[0], false);
    CHECK(strstr(got, "\"replaced\"") != NULL);
    free(got);

    /* Rewritten in place (same inode, same size): the ctime moves. */
    char *same = strstr(json, "\"replaced\"");
    REQUIRE(same);
    memcpy(same, "\"REPLACED\"", 10);
    int fd = openat(dfd, "manifest.json", O_WRONLY);
    REQUIRE(fd >= 0 && pwrite(fd, json, strlen(json), 0) == (ssize_t)strlen(json));
    close(fd);
    /* Changed just now: read from the JSON and not stored (settle time). */
    fb_manifest_cache_stats before, after;
    fb_manifest_cache_get_stats(c, &before);
    got = read_via(c, &f, f.ids[0], false);
    CHECK(strstr(got, "\"REPLACED\"") != NULL);
    free(got);
    fb_manifest_cache_get_stats(c, &after);
    CHECK(after.stored == before.stored);
    close(dfd);
    free(json);
    free(want0);
    fb_manifest_fini(&m);
    fb_manifest_cache_free(c);
    fixture_fini(&f);
}

/* A manifest that fails its checks fails the same way with a cache, and
 * nothing is stored for it. */
static void test_errors_pass_through(void)
{
    fixture f;
    fixture_init(&f);
    fb_manifest_cache *c = open_cache(&f);
    fb_manifest m;
    fb_error e1, e2;
    CHECK(fb_manifest_cache_read(c, f.sfd, SID, "20261201T031500Z-full-ffffff", &m, NULL, &e1) ==
          FB_ENOTFOUND);
    CHECK(fb_manifest_cache_read(c, f.sfd, SID, "../x", &m, NULL, &e1) == FB_EINVAL);
    /* A manifest copied into another backup's directory. */
    char from[4400], to[4400];
    snprintf(from, sizeof from, "%s/.flowloom/backups/" SID "/%s/manifest.json", f.dir,
             f.ids[1]);
    snprintf(to, sizeof to, "%s/.flowloom/backups/" SID "/%s/manifest.json", f.dir, f.ids[2]);
    REQUIRE(rename(from, to) == 0);
    sleep(FB_MANIFEST_CACHE_SETTLE_SECONDS); /* a rename moves the ctime */
    usleep(200 * 1000);
    int rc1 = fb_store_read_manifest(f.sfd, SID, f.ids[2], &m, &e1);
    int rc2 = fb_manifest_cache_read(c, f.sfd, SID, f.ids[2], &m, NULL, &e2);
    CHECK(rc1 == FB_ECORRUPT && rc2 == FB_ECORRUPT);
    CHECK(strcmp(e1.message, e2.message) == 0);
    fb_manifest_cache_stats s;
    fb_manifest_cache_get_stats(c, &s);
    CHECK(s.stored == 0);
    fb_manifest_cache_free(c);
    fixture_fini(&f);
}

static void test_directory_must_be_private(void)
{
    fixture f;
    fixture_init(&f);
    fb_manifest_cache *c = NULL;
    fb_error err;
    char sub[4400];
    snprintf(sub, sizeof sub, "%s/manifests", f.cache_dir);
    REQUIRE(mkdir(f.cache_dir, 0700) == 0 && mkdir(sub, 0700) == 0);
    REQUIRE(chmod(sub, 0777) == 0);
    CHECK(fb_manifest_cache_open(f.cache_dir, &c, &err) == FB_EINVAL && !c);
    CHECK(strstr(err.message, "not private") != NULL);
    REQUIRE(rmdir(sub) == 0);
    char target[4400];
    snprintf(target, sizeof target, "%s/elsewhere", f.dir);
    REQUIRE(mkdir(target, 0700) == 0 && symlink(target, sub) == 0);
    CHECK(fb_manifest_cache_open(f.cache_dir, &c, &err) == FB_EINVAL && !c);
    CHECK(strstr(err.message, "symlink") != NULL);
    CHECK(fb_manifest_cache_open("", &c, &err) == FB_EINVAL);
    fixture_fini(&f);
}

/* Past the bound, the entry used longest ago goes; a dead writer's old
 * temporary file goes too. */
static void test_bound(void)
{
    fixture f;
    fixture_init(&f);
    fb_manifest_cache *c = open_cache(&f);
    free(read_via(c, &f, f.ids[0], false));
    size_t one;
    free(slurp(entry_of(&f, f.ids[0]), &one));
    /* Room for 2.9 entries: the third goes over, and removing the oldest
     * brings it under three quarters of the bound. */
    fb_manifest_cache_set_bytes_max(c, one * 29 / 10);
    char stale[4400];
    snprintf(stale, sizeof stale, "%s/manifests/.tmp-1-1", f.cache_dir);
    spit(stale, (const uint8_t *)"x", 1);
    struct timespec old[2] = {{.tv_sec = 1000}, {.tv_sec = 1000}};
    REQUIRE(utimensat(AT_FDCWD, stale, old, 0) == 0);
    struct timespec past[2] = {{.tv_sec = time(NULL) - 100}, {.tv_sec = time(NULL) - 100}};
    REQUIRE(utimensat(AT_FDCWD, entry_of(&f, f.ids[0]), past, 0) == 0);
    free(read_via(c, &f, f.ids[1], false));
    /* Using entry 1 makes 0 the oldest even though 1 was stored later. */
    free(read_via(c, &f, f.ids[1], true));
    free(read_via(c, &f, f.ids[2], false)); /* over the bound: 0 goes */
    struct stat st;
    CHECK(stat(entry_of(&f, f.ids[0]), &st) != 0);
    CHECK(stat(entry_of(&f, f.ids[1]), &st) == 0);
    CHECK(stat(entry_of(&f, f.ids[2]), &st) == 0);
    CHECK(stat(stale, &st) != 0);
    fb_manifest_cache_stats s;
    fb_manifest_cache_get_stats(c, &s);
    CHECK(s.pruned == 1);
    fb_manifest_cache_free(c);
    fixture_fini(&f);
}

/* fb_manifest_check: a parsed manifest passes; each rule broken alone
 * fails as FB_ECORRUPT. */
static void test_check_rules(void)
{
    char id[FB_BACKUP_ID_LEN + 1], incr[FB_BACKUP_ID_LEN + 1];
    fixture_id(T0, FB_BACKUP_FULL, 0x42, id);
    fixture_id(T0, FB_BACKUP_INCREMENTAL, 0x43, incr);
    fb_manifest good;
    rich_manifest(&good, id, 1);
    char *json = json_of(&good);
    fb_manifest m;
    fb_error err;
    REQUIRE(fb_manifest_parse(json, strlen(json), "t", &m, &err) == 0);
    CHECK(fb_manifest_check(&m, "t", &err) == 0);
    for (int rule = 0; rule < 21; rule++) {
        fb_manifest_fini(&m);
        REQUIRE(fb_manifest_parse(json, strlen(json), "t", &m, &err) == 0);
        fb_manifest_entry *e = m.entries;
        switch (rule) {
        case 0: m.format = 2; break;
        case 1: m.backup_id[3] = 'x'; break;
        case 2: m.seq = 0; break;
        case 3: strcpy(m.session_id, "../up"); break;
        case 4: memcpy(m.backup_id, incr, sizeof incr); break; /* type disagrees */
        case 5: strcpy(m.base, id); break;                     /* a full with a base */
        case 6: m.archive.frame_size = 0; break;
        case 7: m.archive.level = 99; break;
        case 8: m.created_at = INT64_MAX; break;
        case 9: m.totals.files++; break;
        case 10: e[1].path[0] = '/'; break;
        case 11: e[1].meta.mode = 010000; break;
        case 12: e[1].meta.mtime_nsec = 1000000000u; break;
        case 13: e[2].offset = UINT64_MAX - 10; break; /* the file */
        case 14: e[3].target[0] = '\0'; break;         /* symlink */
        case 15: strcpy(e[4].target, "zdir/link"); break; /* hardlink to a symlink */
        case 16: e[1].meta.type = (fb_entry_type)9; break;
        case 17: strcpy(e[3].path, "zdir/same"); break; /* duplicate */
        case 18: e[2].meta.size = 1ull << 54; m.totals.bytes = e[2].meta.size + 10 + 1; break;
        case 19: free(m.tool_version); m.tool_version = NULL; break;
        case 20: /* zdir made a file: the entries below it lie below a file */
            e[1].meta.type = FB_ENTRY_FILE;
            e[1].offset = 1024;
            m.totals.files++;
            m.totals.dirs--;
            break;
        }
        int rc = fb_manifest_check(&m, "t", &err);
        if (rc != FB_ECORRUPT)
            fprintf(stderr, "rule %d: rc %d\n", rule, rc);
        CHECK(rc == FB_ECORRUPT);
    }
    fb_manifest_fini(&m);
    fb_manifest_fini(&good);
    free(json);
}

/* Random damage to an entry, resealed so that its digest holds: whatever
 * the cache still accepts, manifest.json could have said (its JSON form
 * parses, strictly, to the same manifest). */
static void test_forgeries_are_manifests(void)
{
    fixture f;
    fixture_init(&f);
    fb_manifest_cache *c = open_cache(&f);
    const char *path;
    size_t len;
    uint8_t *orig = stored_entry(&f, c, &path, &len);
    uint8_t *buf = malloc(len);
    REQUIRE(buf);
    uint64_t rng = 99;
    int accepted = 0, refused = 0;
    /* Past the magic, version and key (8 + 8 + 56 bytes), before the digest. */
    size_t lo = 72, span = len - DIGEST_LEN - lo;
    for (int round = 0; round < 3000; round++) {
        memcpy(buf, orig, len);
        int edits = 1 + (int)(fbtest_rand(&rng) % 3);
        for (int k = 0; k < edits; k++) {
            size_t at = lo + (size_t)(fbtest_rand(&rng) % span);
            uint64_t how = fbtest_rand(&rng);
            buf[at] = how & 1 ? (uint8_t)(how >> 8) : (uint8_t)(buf[at] ^ (1u << (how >> 8 & 7)));
        }
        reseal(buf, len);
        spit(path, buf, len);
        fb_manifest m;
        fb_error err;
        bool hit = false;
        REQUIRE(fb_manifest_cache_read(c, f.sfd, SID, f.ids[0], &m, &hit, &err) == 0);
        if (hit) {
            accepted++;
            char *json = NULL;
            size_t jlen;
            if (fb_manifest_to_json(&m, &json, &jlen, &err) != 0) {
                fprintf(stderr, "round %d: accepted from the cache, cannot be written: %s\n",
                        round, err.message);
                fbtest_failures++;
                fb_manifest_fini(&m);
                continue;
            }
            fb_manifest back;
            int rc = fb_manifest_parse(json, strlen(json), "forged", &back, &err);
            if (rc != 0)
                fprintf(stderr, "round %d: accepted from the cache, refused as JSON: %s\n",
                        round, err.message);
            CHECK(rc == 0);
            if (rc == 0) {
                char *again = json_of(&back);
                CHECK(strcmp(again, json) == 0);
                free(again);
                fb_manifest_fini(&back);
            }
            free(json);
        } else {
            refused++;
        }
        fb_manifest_fini(&m);
    }
    /* Both kinds happened: the damage reached fields that matter. */
    CHECK(accepted > 100 && refused > 100);
    free(buf);
    free(orig);
    fb_manifest_cache_free(c);
    fixture_fini(&f);
}

int main(void)
{
    RUN_TEST(test_check_rules);
    RUN_TEST(test_miss_then_hit);
    RUN_TEST(test_forged_entries);
    RUN_TEST(test_stale_and_misplaced);
    RUN_TEST(test_errors_pass_through);
    RUN_TEST(test_directory_must_be_private);
    RUN_TEST(test_bound);
    RUN_TEST(test_forgeries_are_manifests);
    FBTEST_EXIT();
}
