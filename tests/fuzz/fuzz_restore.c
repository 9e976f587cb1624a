/* Fuzz target: restoring a hostile backup into a target directory
 * (fb_restore_run with target_dir, what `recover --target DIR` does).
 *
 * Input: 1 byte of flags, a 16-bit little-endian manifest length, the
 * manifest.json bytes, and the rest is archive.tar.zst. A manifest the
 * strict parser refuses ends the run (fuzz_manifest covers that); otherwise
 * the backup is laid out in a fresh store under a scratch directory
 *     <base>/root/.flowloom/backups/<sid>/<id>/{manifest.json,archive.tar.zst}
 * and restored into <base>/out/t. The flags can make the manifest agree with
 * the archive the way an attacker who rewrites both would (size and SHA-256,
 * frame count), so the fuzzer reaches the tar checks and the extraction
 * instead of stopping at the archive hash.
 *
 * Properties: no crash (the extraction runs in a child process: its death is
 * a finding too), only documented errors; nothing written anywhere but the
 * target: the store is byte for byte as it was, <base> holds nothing else,
 * no staging directory is left behind, and the places symlinks of the
 * manifest point to outside <base> are as they were; after a failure the
 * target is as it was; after a success the target holds exactly the
 * manifest's entries, each of its type, files with the manifest's size and
 * SHA-256, symlinks with its target, hardlinks sharing the inode. The
 * scratch directory is removed every run. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fb_hash.h"
#include "fb_manifest.h"
#include "fb_restore.h"
#include "fb_seek_table.h"
#include "fb_store.h"
#include "fuzz_util.h"

enum {
    RS_FIX_HASH = 1,   /* manifest archive size and SHA-256 made to match */
    RS_FIX_FRAMES = 2, /* manifest frame count made to match the seek table */
    RS_TARGET_EMPTY = 4, /* the target exists as an empty directory */
};

#define RS_WATCH_MAX 16

/* A place outside <base> that a symlink of the manifest points to, and
 * whether something was there before the restore. */
typedef struct rs_watch {
    char path[PATH_MAX];
    bool existed;
    struct stat st;
} rs_watch;

typedef struct rs_ctx {
    char *base;
    char root[PATH_MAX];
    char store_dir[PATH_MAX]; /* .../backups/<sid>/<id> */
    char out[PATH_MAX];
    char target[PATH_MAX];
    rs_watch watch[RS_WATCH_MAX];
    size_t n_watch;
} rs_ctx;

static void rs_warn(void *ctx, const char *msg)
{
    (void)ctx;
    if (strlen(msg) == 0)
        fz_fail("restore: empty warning");
}

static void rs_mkdir(const char *path)
{
    if (mkdir(path, 0700) != 0)
        fz_harness(path);
}

static void rs_join(char *out, const char *a, const char *b)
{
    if ((size_t)snprintf(out, PATH_MAX, "%s/%s", a, b) >= PATH_MAX)
        fz_harness("path too long");
}

/* The names in dir (without . and ..), sorted, as one "a,b,c" string; NULL
 * if dir cannot be opened. */
static char *rs_listing(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    char *names[64];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n == 64)
            fz_fail("restore: more than 64 names appeared in %s", dir);
        names[n++] = strdup(de->d_name);
    }
    closedir(d);
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(names[i]) + 1;
    char *s = calloc(1, len);
    if (!s)
        fz_harness("calloc");
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(s, ",");
        strcat(s, names[i]);
        free(names[i]);
    }
    return s;
}

static void rs_expect_listing(const char *dir, const char *want)
{
    char *got = rs_listing(dir);
    if (!got || strcmp(got, want) != 0)
        fz_fail("restore: %s holds [%s], expected [%s]", dir, got ? got : "(cannot open)", want);
    free(got);
}

static void rs_expect_file(const char *path, const uint8_t *data, size_t len)
{
    size_t got_len;
    uint8_t *got = fz_read_file(path, &got_len);
    if (!got || got_len != len || memcmp(got, data, len) != 0)
        fz_fail("restore: %s was changed", path);
    free(got);
}

/* Lexically resolves a symlink target found at <dir>/<link> (no file system
 * access: good enough to name where a write through it would land). */
static bool rs_resolve(const char *dir, const char *target, char out[PATH_MAX])
{
    char buf[2 * PATH_MAX];
    if (target[0] == '/')
        snprintf(buf, sizeof buf, "%s", target);
    else
        snprintf(buf, sizeof buf, "%s/%s", dir, target);
    size_t n = 0;
    out[0] = '\0';
    for (char *save = NULL, *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0)
            continue;
        if (strcmp(c, "..") == 0) {
            char *slash = strrchr(out, '/');
            n = slash ? (size_t)(slash - out) : 0;
            out[n] = '\0';
            continue;
        }
        size_t cl = strlen(c);
        if (n + 1 + cl + 1 > PATH_MAX)
            return false;
        out[n++] = '/';
        memcpy(out + n, c, cl + 1);
        n += cl;
    }
    if (n == 0)
        strcpy(out, "/");
    return true;
}

static bool rs_under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

static void rs_watch_symlinks(rs_ctx *c, const fb_manifest *m)
{
    for (size_t i = 0; i < m->n_entries && c->n_watch < RS_WATCH_MAX; i++) {
        const fb_manifest_entry *e = &m->entries[i];
        if (e->meta.type != FB_ENTRY_SYMLINK || !e->target)
            continue;
        char link_dir[PATH_MAX];
        const char *slash = strrchr(e->path, '/');
        if ((size_t)snprintf(link_dir, sizeof link_dir, "%s/%.*s", c->target,
                             slash ? (int)(slash - e->path) : 0, e->path) >= sizeof link_dir)
            continue;
        rs_watch *w = &c->watch[c->n_watch];
        if (!rs_resolve(link_dir, e->target, w->path) || rs_under(w->path, c->base))
            continue;
        w->existed = lstat(w->path, &w->st) == 0;
        c->n_watch++;
    }
}

static void rs_check_watch(const rs_ctx *c)
{
    for (size_t i = 0; i < c->n_watch; i++) {
        const rs_watch *w = &c->watch[i];
        struct stat st;
        bool exists = lstat(w->path, &st) == 0;
        /* A directory's mtime is not compared: other processes (/tmp) change
         * it; a file's size and mtime are. */
        bool same = exists == w->existed &&
                    (!exists || (st.st_ino == w->st.st_ino &&
                                 (S_ISDIR(st.st_mode) ||
                                  (st.st_size == w->st.st_size &&
                                   st.st_mtim.tv_sec == w->st.st_mtim.tv_sec &&
                                   st.st_mtim.tv_nsec == w->st.st_mtim.tv_nsec))));
        if (!same)
            fz_fail("restore: %s, outside the target, changed", w->path);
    }
}

/* Counts the entries below dir (recursively), checking each is a manifest
 * entry. */
static size_t rs_count_tree(const char *dir, const char *rel, const fb_manifest *m,
                            const size_t *by_path)
{
    DIR *d = opendir(dir);
    if (!d)
        fz_fail("restore: cannot open restored directory %s: %s", dir, strerror(errno));
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char sub[PATH_MAX], subrel[PATH_MAX];
        rs_join(sub, dir, de->d_name);
        if (*rel)
            rs_join(subrel, rel, de->d_name);
        else
            snprintf(subrel, sizeof subrel, "%s", de->d_name);
        if (fb_manifest_find_path(m, by_path, subrel, strlen(subrel)) < 0)
            fz_fail("restore: %s was restored but is not in the manifest", sub);
        n++;
        struct stat st;
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
            n += rs_count_tree(sub, subrel, m, by_path);
    }
    closedir(d);
    return n;
}

static void rs_check_restored(const rs_ctx *c, const fb_manifest *m)
{
    size_t *by_path = fb_manifest_sort_by_path(m);
    if (!by_path)
        fz_harness("fb_manifest_sort_by_path");
    size_t n = rs_count_tree(c->target, "", m, by_path);
    if (n != m->n_entries)
        fz_fail("restore: %zu entries restored, the manifest has %zu", n, m->n_entries);
    for (size_t i = 0; i < m->n_entries; i++) {
        const fb_manifest_entry *e = &m->entries[i];
        char p[PATH_MAX];
        rs_join(p, c->target, e->path);
        struct stat st;
        if (lstat(p, &st) != 0)
            fz_fail("restore: %s is missing after a successful restore", p);
        switch (e->meta.type) {
        case FB_ENTRY_DIR:
            if (!S_ISDIR(st.st_mode))
                fz_fail("restore: %s should be a directory", p);
            break;
        case FB_ENTRY_SYMLINK: {
            char buf[PATH_MAX + 1];
            ssize_t len = readlink(p, buf, PATH_MAX);
            if (!S_ISLNK(st.st_mode) || len < 0 || (size_t)len != strlen(e->target) ||
                memcmp(buf, e->target, (size_t)len) != 0)
                fz_fail("restore: %s should be a symlink to the manifest's target", p);
            break;
        }
        case FB_ENTRY_HARDLINK: {
            char q[PATH_MAX];
            struct stat qs;
            rs_join(q, c->target, e->target);
            if (!S_ISREG(st.st_mode) || lstat(q, &qs) != 0 || qs.st_ino != st.st_ino)
                fz_fail("restore: %s should be a hardlink of %s", p, q);
            break;
        }
        case FB_ENTRY_FILE: {
            if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != e->meta.size)
                fz_fail("restore: %s should be a file of %llu bytes", p,
                        (unsigned long long)e->meta.size);
            size_t len;
            uint8_t *data = fz_read_file(p, &len);
            if (!data)
                break; /* mode 0 and not root: the size check is what we have */
            uint8_t sha[FB_SHA256_LEN];
            fb_error err;
            if (fb_sha256_buffer(data, len, sha, &err) != 0)
                fz_harness("sha256");
            free(data);
            if (memcmp(sha, e->sha256, sizeof sha) != 0)
                fz_fail("restore: %s holds bytes whose SHA-256 is not the manifest's", p);
            break;
        }
        }
    }
    free(by_path);
}

/* Rewrites what an attacker who edits both files would: the manifest's
 * archive size, SHA-256 and frame count made to match the archive. */
static char *rs_fix_manifest(fb_manifest *m, uint8_t flags, const uint8_t *arch, size_t arch_len,
                             size_t *json_len)
{
    fb_error err;
    if (flags & RS_FIX_HASH) {
        m->archive.size = arch_len;
        if (fb_sha256_buffer(arch, arch_len, m->archive.sha256, &err) != 0)
            fz_harness("sha256");
    }
    if (flags & RS_FIX_FRAMES) {
        fb_seek_table t;
        fb_seek_table_init(&t);
        if (fb_seek_table_parse(arch, arch_len, "archive", &t, &err) == 0)
            m->archive.frames = t.n_frames;
        fb_seek_table_fini(&t);
    }
    char *json = NULL;
    if (fb_manifest_to_json(m, &json, json_len, &err) != 0)
        fz_fail("restore: an accepted manifest cannot be written back: %s", err.message);
    return json;
}

int fuzz_restore(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    uint8_t flags = fz_u8(&in);
    size_t mlen = fz_u16(&in), got;
    const uint8_t *mbytes = fz_bytes(&in, mlen, &got);
    mlen = got;
    const uint8_t *arch = in.p;
    size_t arch_len = in.n;

    fb_manifest m;
    fb_error err;
    fb_error_clear(&err);
    if (fb_manifest_parse((const char *)mbytes, mlen, "manifest.json", &m, &err) != 0) {
        fb_manifest_fini(&m);
        return 0;
    }
    size_t json_len = mlen;
    char *json = NULL;
    if (flags & (RS_FIX_HASH | RS_FIX_FRAMES)) {
        json = rs_fix_manifest(&m, flags, arch, arch_len, &json_len);
    } else {
        json = malloc(mlen ? mlen : 1);
        if (!json)
            fz_harness("malloc");
        memcpy(json, mbytes, mlen);
    }

    rs_ctx c;
    memset(&c, 0, sizeof c);
    c.base = fz_tempdir("restore");
    char p[PATH_MAX], backups[PATH_MAX], sess[PATH_MAX];
    rs_join(c.root, c.base, "root");
    rs_mkdir(c.root);
    rs_join(p, c.root, ".flowloom");
    rs_mkdir(p);
    rs_join(backups, p, "sessions");
    rs_mkdir(backups);
    rs_join(backups, p, "backups");
    rs_mkdir(backups);
    rs_join(sess, backups, m.session_id);
    rs_mkdir(sess);
    rs_join(c.store_dir, sess, m.backup_id);
    rs_mkdir(c.store_dir);
    char mpath[PATH_MAX], apath[PATH_MAX];
    rs_join(mpath, c.store_dir, "manifest.json");
    rs_join(apath, c.store_dir, "archive.tar.zst");
    fz_write_file(mpath, json, json_len);
    fz_write_file(apath, arch, arch_len);
    rs_join(c.out, c.base, "out");
    rs_mkdir(c.out);
    rs_join(c.target, c.out, "t");
    if (flags & RS_TARGET_EMPTY)
        rs_mkdir(c.target);
    rs_watch_symlinks(&c, &m);

    fb_store *store = NULL;
    if (fb_store_open(c.root, false, &store, &err) != 0)
        fz_harness(err.message);
    fb_restore_request req = {
        .session_id = m.session_id,
        .backup = m.backup_id,
        .target_dir = c.target,
        .now = 1790000000,
        .lock_wait_seconds = 0,
        .warn = rs_warn,
    };
    fb_restore_result res;
    fb_restore_result_init(&res);
    int rc = fb_restore_run(store, &req, &res, &err);
    fb_store_free(store);
    if (fz_verbose())
        fprintf(stderr, "restore %s/%s: rc %d %s\n", m.session_id, m.backup_id, rc,
                rc ? err.message : "");

    if (rc != 0) {
        static const int allowed[] = {FB_EINVAL, FB_ENOTFOUND, FB_EBUSY, FB_ECORRUPT,
                                      FB_EIO,    FB_ENOMEM,    0};
        fz_check_error("fb_restore_run", rc, &err, allowed);
        if (strstr(err.message, "extraction process"))
            fz_fail("restore: the extraction died: %s", err.message);
        /* A failed restore leaves the target as it was. */
        rs_expect_listing(c.out, (flags & RS_TARGET_EMPTY) ? "t" : "");
        if (flags & RS_TARGET_EMPTY)
            rs_expect_listing(c.target, "");
    } else {
        rs_expect_listing(c.out, "t");
        rs_check_restored(&c, &m);
    }

    /* Nothing written outside the target. */
    rs_expect_listing(c.base, "out,root");
    char sessions[PATH_MAX];
    rs_join(p, c.root, ".flowloom");
    rs_expect_listing(p, "backups,sessions");
    rs_join(sessions, p, "sessions");
    rs_expect_listing(sessions, "");
    rs_expect_listing(backups, m.session_id);
    char *names = rs_listing(sess);
    /* Besides the backup: the index the store rebuilt and its lock file. */
    bool ok = false;
    for (int k = 0; k < 4 && names; k++) {
        char want[FB_BACKUP_ID_LEN + 32];
        snprintf(want, sizeof want, "%s%s%s", (k & 1) ? ".lock," : "", m.backup_id,
                 (k & 2) ? ",index.json" : "");
        ok = ok || strcmp(names, want) == 0;
    }
    if (!ok)
        fz_fail("restore: the session's store dir holds [%s]", names ? names : "?");
    free(names);
    rs_expect_listing(c.store_dir, "archive.tar.zst,manifest.json");
    rs_expect_file(mpath, (const uint8_t *)json, json_len);
    rs_expect_file(apath, arch, arch_len);
    rs_check_watch(&c);

    fb_restore_result_fini(&res);
    fz_rmtree(c.base);
    free(c.base);
    free(json);
    fb_manifest_fini(&m);
    return 0;
}

FB_FUZZ_ENTRY(fuzz_restore)
