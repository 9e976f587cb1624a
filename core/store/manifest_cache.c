/* The local manifest cache (fb_manifest_cache.h): a manifest already read
 * and checked, kept in a binary form keyed by its manifest.json's
 * identity, so that the mount's first touch of a backup reads one small
 * file instead of parsing the JSON. The layout is in docs/mount.md ("The
 * manifest cache"); every field read is bounds-checked and the result
 * goes through fb_manifest_check, as hostile as any file on disk. */
#include "fb_manifest_cache.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fb_fsutil.h"
#include "fb_hash.h"
#include "fb_store.h"
#include "store_i.h"

#define CACHE_MAGIC "FBMCACHE"
/* 2: strings stored with their NUL (decoded in place), an XXH64 trailer. */
#define CACHE_VERSION 2u
#define CACHE_DIGEST_LEN 8
#define CACHE_SUBDIR "manifests"
/* An entry is at most about the size of its JSON (names and digests in
 * binary, no keys): this bounds what is read before the digest says more. */
#define CACHE_ENTRY_MAX ((size_t)FB_MANIFEST_SIZE_MAX + 4096)
/* A temporary entry older than this is a writer that died. */
#define CACHE_TEMP_STALE_SECONDS 600

struct fb_manifest_cache {
    int dfd;
    char *path; /* the manifests directory, for messages */
    uint64_t bytes_max;
    atomic_uint_fast64_t hits, misses, refused, stored, store_failures, pruned, temp_seq;
};

/* The identity of one manifest.json (fb_manifest_cache.h). */
typedef struct cache_key {
    uint64_t dev, ino, size;
    int64_t mtime_s, ctime_s;
    uint64_t mtime_ns, ctime_ns;
} cache_key;

static cache_key key_of(const struct stat *st)
{
    return (cache_key){.dev = (uint64_t)st->st_dev, .ino = (uint64_t)st->st_ino,
                       .size = (uint64_t)st->st_size, .mtime_s = st->st_mtim.tv_sec,
                       .mtime_ns = (uint64_t)st->st_mtim.tv_nsec, .ctime_s = st->st_ctim.tv_sec,
                       .ctime_ns = (uint64_t)st->st_ctim.tv_nsec};
}

static void entry_name(const cache_key *k, char out[64])
{
    snprintf(out, 64, "m-%016llx-%016llx", (unsigned long long)k->dev,
             (unsigned long long)k->ino);
}

/* ------------------------------------------------------------ the dir */

char *fb_manifest_cache_default_dir(void)
{
    const char *xdg = getenv("XDG_CACHE_HOME");
    char *out = NULL;
    if (xdg && xdg[0] == '/') {
        if (asprintf(&out, "%s/flowloom-backup", xdg) < 0)
            out = NULL;
        return out;
    }
    const char *home = getenv("HOME");
    if (home && home[0] == '/' && asprintf(&out, "%s/.cache/flowloom-backup", home) < 0)
        out = NULL;
    return out;
}

/* mkdir -p of an absolute or relative path, new parts mode 0700. */
static int make_dirs(const char *path, fb_error *err)
{
    char *p = strdup(path);
    if (!p)
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    int rc = 0;
    for (char *s = p + 1;; s++) {
        bool end = *s == '\0';
        if (*s != '/' && !end)
            continue;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            rc = fb_error_set_errno(err, errno, "cannot create the manifest cache directory %s",
                                    p);
            break;
        }
        if (end)
            break;
        *s = '/';
    }
    free(p);
    return rc;
}

int fb_manifest_cache_open(const char *dir, fb_manifest_cache **out, fb_error *err)
{
    *out = NULL;
    if (!dir || !dir[0])
        return fb_error_set(err, FB_EINVAL, "empty manifest cache directory");
    char *path = NULL;
    if (asprintf(&path, "%s/" CACHE_SUBDIR, dir) < 0)
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    int rc = make_dirs(path, err);
    int dfd = -1;
    struct stat st;
    if (rc == 0) {
        dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
            rc = errno == ELOOP || errno == ENOTDIR
                     ? fb_error_set(err, FB_EINVAL,
                                    "manifest cache %s is not a directory (a symlink is not "
                                    "followed)",
                                    path)
                     : fb_error_set_errno(err, errno, "cannot open the manifest cache %s", path);
    }
    if (rc == 0 && fstat(dfd, &st) != 0)
        rc = fb_error_set_errno(err, errno, "cannot stat the manifest cache %s", path);
    /* Entries are trusted as far as the rules go: only our own. */
    if (rc == 0 && (st.st_uid != geteuid() || (st.st_mode & 022)))
        rc = fb_error_set(err, FB_EINVAL,
                          "manifest cache %s is not private (owner %u, mode %04o): not used",
                          path, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
    fb_manifest_cache *c = rc == 0 ? calloc(1, sizeof *c) : NULL;
    if (rc == 0 && !c)
        rc = fb_error_set(err, FB_ENOMEM, "out of memory");
    if (rc) {
        if (dfd >= 0)
            close(dfd);
        free(path);
        return rc;
    }
    c->dfd = dfd;
    c->path = path;
    c->bytes_max = FB_MANIFEST_CACHE_BYTES_MAX;
    *out = c;
    return 0;
}

void fb_manifest_cache_free(fb_manifest_cache *c)
{
    if (!c)
        return;
    close(c->dfd);
    free(c->path);
    free(c);
}

void fb_manifest_cache_set_bytes_max(fb_manifest_cache *c, uint64_t bytes)
{
    c->bytes_max = bytes;
}

void fb_manifest_cache_get_stats(const fb_manifest_cache *c, fb_manifest_cache_stats *out)
{
    *out = (fb_manifest_cache_stats){
        .hits = atomic_load(&c->hits), .misses = atomic_load(&c->misses),
        .refused = atomic_load(&c->refused), .stored = atomic_load(&c->stored),
        .store_failures = atomic_load(&c->store_failures), .pruned = atomic_load(&c->pruned)};
}

/* ------------------------------------------------------------ encoding */

/* The entry as it is written: through a fixed buffer to fd, checksummed on
 * the way, so that storing a manifest of 100,000 entries (10 MB) costs the
 * daemon 64 KiB, not a copy of it. */
#define OUT_CHUNK (64u * 1024)

typedef struct out_buf {
    int fd;
    fb_xxh64 hash;
    unsigned char p[OUT_CHUNK];
    size_t len;
    uint64_t total;
    bool failed;
} out_buf;

static void flush(out_buf *b)
{
    if (b->failed || b->len == 0)
        return;
    fb_xxh64_update(&b->hash, b->p, b->len);
    if (fb_write_all(b->fd, b->p, b->len) != 0)
        b->failed = true;
    b->len = 0;
}

static void put(out_buf *b, const void *data, size_t n)
{
    const unsigned char *d = data;
    while (n && !b->failed) {
        if (b->len == OUT_CHUNK)
            flush(b);
        size_t k = OUT_CHUNK - b->len < n ? OUT_CHUNK - b->len : n;
        memcpy(b->p + b->len, d, k);
        b->len += k;
        b->total += k;
        d += k;
        n -= k;
    }
    if (b->total > CACHE_ENTRY_MAX)
        b->failed = true;
}

static void put_u8(out_buf *b, uint8_t v)
{
    put(b, &v, 1);
}

static void put_u32(out_buf *b, uint32_t v)
{
    v = htole32(v);
    put(b, &v, 4);
}

static void put_u64(out_buf *b, uint64_t v)
{
    v = htole64(v);
    put(b, &v, 8);
}

/* Its length, then its bytes and the NUL, so that the decoder can leave
 * it where it lies. */
static void put_str(out_buf *b, const char *s)
{
    size_t n = strlen(s);
    if (n >= UINT32_MAX) {
        b->failed = true;
        return;
    }
    put_u32(b, (uint32_t)n);
    put(b, s, n + 1);
}

static void put_key(out_buf *b, const cache_key *k)
{
    put_u64(b, k->dev);
    put_u64(b, k->ino);
    put_u64(b, k->size);
    put_u64(b, (uint64_t)k->mtime_s);
    put_u64(b, k->mtime_ns);
    put_u64(b, (uint64_t)k->ctime_s);
    put_u64(b, k->ctime_ns);
}

static void encode(out_buf *b, const cache_key *k, const fb_manifest *m)
{
    put(b, CACHE_MAGIC, 8);
    put_u32(b, CACHE_VERSION);
    put_u32(b, 0);
    put_key(b, k);
    put_str(b, m->session_id);
    put_str(b, m->backup_id);
    put_u32(b, (uint32_t)m->format);
    put_u64(b, m->seq);
    put_u32(b, (uint32_t)m->type);
    put_u64(b, (uint64_t)m->created_at);
    put_u8(b, m->note != NULL);
    if (m->note)
        put_str(b, m->note);
    put_str(b, m->base);
    put_str(b, m->tool_version ? m->tool_version : "");
    put_u64(b, m->archive.size);
    put(b, m->archive.sha256, FB_SHA256_LEN);
    put_u64(b, m->archive.frame_size);
    put_u64(b, m->archive.frames);
    put_u32(b, (uint32_t)m->archive.level);
    put_u64(b, m->totals.files);
    put_u64(b, m->totals.dirs);
    put_u64(b, m->totals.symlinks);
    put_u64(b, m->totals.bytes);
    put_u64(b, m->n_entries);
    for (size_t i = 0; i < m->n_entries; i++) {
        const fb_manifest_entry *e = &m->entries[i];
        put_str(b, e->path);
        put_u8(b, (uint8_t)e->meta.type);
        put_u32(b, e->meta.mode);
        put_u32(b, e->meta.uid);
        put_u32(b, e->meta.gid);
        put_u64(b, (uint64_t)e->meta.mtime);
        put_u32(b, e->meta.mtime_nsec);
        put_u64(b, e->meta.size);
        if (e->meta.type == FB_ENTRY_FILE) {
            put(b, e->sha256, FB_SHA256_LEN);
            put_u64(b, e->offset);
        }
        put_u8(b, e->target != NULL);
        if (e->target)
            put_str(b, e->target);
    }
    flush(b);
    uint64_t digest = htole64(fb_xxh64_digest(&b->hash));
    if (!b->failed && fb_write_all(b->fd, &digest, sizeof digest) != 0)
        b->failed = true;
}

/* ------------------------------------------------------------ decoding */

typedef struct in_buf {
    unsigned char *p;
    size_t len, at;
    bool bad;
} in_buf;

static unsigned char *take(in_buf *b, size_t n)
{
    if (b->bad || n > b->len - b->at) {
        b->bad = true;
        return NULL;
    }
    unsigned char *p = b->p + b->at;
    b->at += n;
    return p;
}

static uint8_t get_u8(in_buf *b)
{
    const unsigned char *p = take(b, 1);
    return p ? p[0] : 0;
}

static uint32_t get_u32(in_buf *b)
{
    uint32_t v = 0;
    const unsigned char *p = take(b, 4);
    if (p)
        memcpy(&v, p, 4);
    return le32toh(v);
}

static uint64_t get_u64(in_buf *b)
{
    uint64_t v = 0;
    const unsigned char *p = take(b, 8);
    if (p)
        memcpy(&v, p, 8);
    return le64toh(v);
}

/* A string of at most max bytes, where it lies in the buffer: its length,
 * its bytes (no NUL among them) and a NUL. NULL (b->bad set) otherwise. */
static char *get_str(in_buf *b, size_t max)
{
    uint32_t n = get_u32(b);
    if (n > max) {
        b->bad = true;
        return NULL;
    }
    unsigned char *p = take(b, (size_t)n + 1);
    if (!p || p[n] != '\0' || strlen((const char *)p) != n) {
        b->bad = true;
        return NULL;
    }
    return (char *)p;
}

/* A string into a fixed array of cap bytes (NUL included). */
static void get_str_into(in_buf *b, char *dst, size_t cap)
{
    const char *s = get_str(b, cap - 1);
    dst[0] = '\0';
    if (s)
        memcpy(dst, s, strlen(s) + 1);
}

static void get_key(in_buf *b, cache_key *k)
{
    k->dev = get_u64(b);
    k->ino = get_u64(b);
    k->size = get_u64(b);
    k->mtime_s = (int64_t)get_u64(b);
    k->mtime_ns = get_u64(b);
    k->ctime_s = (int64_t)get_u64(b);
    k->ctime_ns = get_u64(b);
}

/* The smallest encoded entry: a one-byte path, no target, not a file. */
#define ENTRY_ENCODED_MIN (4 + 2 + 1 + 12 + 8 + 4 + 8 + 1)

static bool decode_entry(in_buf *b, fb_manifest_entry *e)
{
    e->path = get_str(b, FB_PATH_MAX);
    uint8_t type = get_u8(b);
    if (type > FB_ENTRY_HARDLINK)
        b->bad = true;
    e->meta.type = (fb_entry_type)type;
    e->meta.mode = get_u32(b);
    e->meta.uid = get_u32(b);
    e->meta.gid = get_u32(b);
    e->meta.mtime = (int64_t)get_u64(b);
    e->meta.mtime_nsec = get_u32(b);
    e->meta.size = get_u64(b);
    if (type == FB_ENTRY_FILE) {
        const unsigned char *sha = take(b, FB_SHA256_LEN);
        if (sha)
            memcpy(e->sha256, sha, FB_SHA256_LEN);
        e->offset = get_u64(b);
    }
    if (get_u8(b))
        e->target = get_str(b, FB_PATH_MAX);
    return !b->bad && e->path;
}

/* 1: the entry for key, decoded into m (not yet checked by the rules);
 * 0: another file's or damaged (a miss); FB_ENOMEM. Once its checksum
 * holds, m takes buf over as its strings block (m->strings == buf), the
 * strings left where they lie; before, buf stays the caller's. */
static int decode(unsigned char *buf, size_t len, const cache_key *want, fb_manifest *m,
                  fb_error *err)
{
    if (len < 8 + 8 + CACHE_DIGEST_LEN || memcmp(buf, CACHE_MAGIC, 8) != 0)
        return 0;
    uint64_t digest;
    memcpy(&digest, buf + len - CACHE_DIGEST_LEN, sizeof digest);
    if (fb_xxh64_buffer(buf, len - CACHE_DIGEST_LEN) != le64toh(digest))
        return 0;
    m->strings = (char *)buf;
    m->strings_len = len;
    in_buf b = {.p = buf, .len = len - CACHE_DIGEST_LEN, .at = 8};
    if (get_u32(&b) != CACHE_VERSION)
        return 0;
    (void)get_u32(&b);
    cache_key k;
    get_key(&b, &k);
    if (b.bad || memcmp(&k, want, sizeof k) != 0)
        return 0;
    get_str_into(&b, m->session_id, sizeof m->session_id);
    get_str_into(&b, m->backup_id, sizeof m->backup_id);
    m->format = (int)get_u32(&b);
    m->seq = get_u64(&b);
    uint32_t type = get_u32(&b);
    if (type > FB_BACKUP_INCREMENTAL)
        b.bad = true;
    m->type = (fb_backup_type)type;
    m->created_at = (int64_t)get_u64(&b);
    if (get_u8(&b))
        m->note = get_str(&b, FB_MANIFEST_SIZE_MAX);
    get_str_into(&b, m->base, sizeof m->base);
    m->tool_version = get_str(&b, 4096);
    m->archive.size = get_u64(&b);
    const unsigned char *sha = take(&b, FB_SHA256_LEN);
    if (sha)
        memcpy(m->archive.sha256, sha, FB_SHA256_LEN);
    m->archive.frame_size = get_u64(&b);
    m->archive.frames = get_u64(&b);
    m->archive.level = (int32_t)get_u32(&b);
    m->totals.files = get_u64(&b);
    m->totals.dirs = get_u64(&b);
    m->totals.symlinks = get_u64(&b);
    m->totals.bytes = get_u64(&b);
    uint64_t n = get_u64(&b);
    if (b.bad || n > (b.len - b.at) / ENTRY_ENCODED_MIN)
        return 0;
    if (n) {
        m->entries = calloc((size_t)n, sizeof *m->entries);
        if (!m->entries)
            return fb_error_set(err, FB_ENOMEM, "out of memory");
        m->cap_entries = (size_t)n;
    }
    m->n_entries = (size_t)n;
    for (size_t i = 0; i < n && !b.bad; i++)
        decode_entry(&b, &m->entries[i]);
    return b.bad || b.at != b.len ? 0 : 1;
}

/* ------------------------------------------------------------- lookups */

/* 1: m is c's entry for key, checked; 0: a miss. Never an error: a cache
 * that cannot answer leaves the answer to manifest.json. */
static int cache_load(fb_manifest_cache *c, const cache_key *key, const char *sid,
                      const char *bid, const char *source, fb_manifest *m)
{
    char name[64];
    entry_name(key, name);
    /* Read as any file of ours is (no symlink, a regular file, capped). */
    char *buf = NULL;
    size_t len = 0;
    fb_error sub;
    fb_error_clear(&sub);
    if (fb_read_file_at(c->dfd, c->path, name, CACHE_ENTRY_MAX, &buf, &len, &sub) != 0)
        return 0;
    int rc = decode((unsigned char *)buf, len, key, m, &sub);
    if (m->strings != buf)
        free(buf); /* not taken over: m owns it otherwise */
    int ok = rc == 1 && fb_manifest_check(m, source, &sub) == 0 &&
             fb_store_manifest_names(m, sid, bid, source, &sub) == 0;
    if (!ok) {
        atomic_fetch_add(&c->refused, 1);
        fb_manifest_fini(m);
        fb_manifest_init(m);
    } else {
        /* Its mtime says when it was last used: the bound removes the oldest. */
        (void)utimensat(c->dfd, name, NULL, AT_SYMLINK_NOFOLLOW);
    }
    return ok;
}

typedef struct cached_file {
    char *name;
    off_t size;
    struct timespec used;
} cached_file;

static int cmp_used(const void *a, const void *b)
{
    const cached_file *x = a, *y = b;
    if (x->used.tv_sec != y->used.tv_sec)
        return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
    return (x->used.tv_nsec > y->used.tv_nsec) - (x->used.tv_nsec < y->used.tv_nsec);
}

/* Keeps the directory under c->bytes_max: past it, the
 * entries used longest ago go until it is under three quarters, so that
 * not every store scans the directory again. Dead writers' temporaries go
 * too. */
static void cache_prune(fb_manifest_cache *c)
{
    /* Its own open of the directory: a dup would share c->dfd's offset
     * with another thread's prune. */
    int fd = openat(c->dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    cached_file *files = NULL;
    size_t n = 0, cap = 0;
    uint64_t total = 0;
    time_t now = time(NULL);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        bool entry = strncmp(de->d_name, "m-", 2) == 0;
        bool temp = strncmp(de->d_name, ".tmp-", 5) == 0;
        if ((!entry && !temp) || fstatat(c->dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (temp) {
            if (now - st.st_mtim.tv_sec > CACHE_TEMP_STALE_SECONDS)
                (void)unlinkat(c->dfd, de->d_name, 0);
            continue;
        }
        total += (uint64_t)st.st_size;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            cached_file *nf = realloc(files, ncap * sizeof *nf);
            if (!nf)
                break;
            files = nf;
            cap = ncap;
        }
        files[n] = (cached_file){strdup(de->d_name), st.st_size, st.st_mtim};
        if (files[n].name)
            n++;
    }
    closedir(d);
    if (total > c->bytes_max) {
        qsort(files, n, sizeof *files, cmp_used);
        for (size_t i = 0; i < n && total > c->bytes_max / 4 * 3; i++) {
            if (unlinkat(c->dfd, files[i].name, 0) == 0) {
                total -= (uint64_t)files[i].size;
                atomic_fetch_add(&c->pruned, 1);
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        free(files[i].name);
    free(files);
}

/* Writes m as the entry for key: a temporary name, then a rename over any
 * older entry of that inode. */
static void cache_store(fb_manifest_cache *c, const cache_key *key, const fb_manifest *m)
{
    char name[64], temp[96];
    entry_name(key, name);
    snprintf(temp, sizeof temp, ".tmp-%ld-%llu", (long)getpid(),
             (unsigned long long)atomic_fetch_add(&c->temp_seq, 1));
    out_buf *b = malloc(sizeof *b);
    bool ok = b && fb_xxh64_init(&b->hash, NULL) == 0;
    if (!ok) {
        free(b);
        atomic_fetch_add(&c->store_failures, 1);
        return;
    }
    b->len = 0;
    b->total = 0;
    b->failed = false;
    b->fd = openat(c->dfd, temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (b->fd >= 0) {
        encode(b, key, m);
        ok = !b->failed;
        if (close(b->fd) != 0)
            ok = false;
        if (ok && renameat(c->dfd, temp, c->dfd, name) != 0)
            ok = false;
        if (!ok)
            (void)unlinkat(c->dfd, temp, 0);
    } else {
        ok = false;
    }
    fb_xxh64_fini(&b->hash);
    free(b);
    atomic_fetch_add(ok ? &c->stored : &c->store_failures, 1);
    if (ok)
        cache_prune(c);
}

int fb_manifest_cache_read(fb_manifest_cache *c, int session_fd, const char *session_id,
                           const char *backup_id, fb_manifest *out, bool *hit, fb_error *err)
{
    if (hit)
        *hit = false;
    if (!c)
        return fb_store_read_manifest(session_fd, session_id, backup_id, out, err);
    fb_manifest_init(out);
    int dfd;
    int rc = fb_store_open_backup_dir(session_fd, session_id, backup_id, &dfd, err);
    if (rc)
        return rc;
    char source[FB_SESSION_ID_MAX + FB_BACKUP_ID_LEN + 32];
    snprintf(source, sizeof source, "%s/%s/" FB_MANIFEST_NAME, session_id, backup_id);
    struct stat st;
    if (fstatat(dfd, FB_MANIFEST_NAME, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
        cache_key key = key_of(&st);
        if (cache_load(c, &key, session_id, backup_id, source, out)) {
            close(dfd);
            atomic_fetch_add(&c->hits, 1);
            if (hit)
                *hit = true;
            return 0;
        }
    }
    atomic_fetch_add(&c->misses, 1);

    /* A miss: manifest.json as fb_store_read_manifest reads it, keyed by
     * the identity of the very file read. */
    rc = fb_store_parse_manifest_at(dfd, session_id, backup_id, out, &st, err);
    close(dfd);
    if (rc)
        return rc;
    /* A file written within the clock's tick of this read could change
     * again without changing its key: only settled files are kept. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    time_t changed = st.st_ctim.tv_sec > st.st_mtim.tv_sec ? st.st_ctim.tv_sec
                                                            : st.st_mtim.tv_sec;
    if (now.tv_sec - changed >= FB_MANIFEST_CACHE_SETTLE_SECONDS) {
        cache_key key = key_of(&st);
        cache_store(c, &key, out);
    }
    return 0;
}
