/* The live session directory held against a backup's manifest: the walk
 * (the backup's own, scan.c), the comparison of one live entry with one
 * stored entry, and the reading of live files. `diff --live` and the change
 * list of `recover` both go through here so that they agree on what is
 * modified and on what a file that cannot be read means (modified, with a
 * warning, never a failed command). */
#include "live_i.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fb_fsutil.h"
#include "fb_hash.h"
#include "fb_text.h"

/* Large reads: a session's artifacts can be hundreds of megabytes. */
#define HASH_BUF_SIZE (256 * 1024)

/* ------------------------------------------------------ the vocabulary */

fb_change_kind fb_change_kind_of(unsigned differs)
{
    return (differs & FB_DIFFERS_CONTENT_BITS) ? FB_CHANGE_MODIFIED : FB_CHANGE_CHANGED;
}

const char *fb_change_kind_name(fb_change_kind kind)
{
    switch (kind) {
    case FB_CHANGE_ADDED: return "added";
    case FB_CHANGE_REMOVED: return "removed";
    case FB_CHANGE_MODIFIED: return "modified";
    case FB_CHANGE_CHANGED: return "changed";
    }
    return "unknown";
}

static const struct {
    unsigned bit;
    const char *name;
} differs_names[] = {
    {FB_DIFFERS_TYPE, "type"},   {FB_DIFFERS_CONTENT, "content"}, {FB_DIFFERS_TARGET, "target"},
    {FB_DIFFERS_LINK, "link"},   {FB_DIFFERS_MODE, "mode"},       {FB_DIFFERS_OWNER, "owner"},
    {FB_DIFFERS_MTIME, "mtime"},
};
#define N_DIFFERS_NAMES (sizeof differs_names / sizeof differs_names[0])

const char *fb_differs_name(unsigned bit)
{
    for (size_t i = 0; i < N_DIFFERS_NAMES; i++)
        if (differs_names[i].bit == bit)
            return differs_names[i].name;
    return NULL;
}

void fb_differs_format(unsigned differs, char *buf, size_t size)
{
    if (size == 0)
        return;
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < N_DIFFERS_NAMES; i++) {
        if (!(differs & differs_names[i].bit))
            continue;
        int n = snprintf(buf + o, size - o, "%s%s", o ? "," : "", differs_names[i].name);
        if (n < 0 || (size_t)n >= size - o) {
            buf[size - 1] = '\0';
            return;
        }
        o += (size_t)n;
    }
}

/* ------------------------------------------------------- the live tree */

/* fb_live.state: what became of an inode's content. */
enum { LIVE_UNREAD = 0, LIVE_HASHED, LIVE_GONE, LIVE_UNREADABLE };

static int oom(fb_error *err)
{
    return fb_error_set(err, FB_ENOMEM, "out of memory while comparing the session directory");
}

static void drop_walk(fb_live *lv)
{
    fb_scan_result_fini(&lv->tree);
    free(lv->by_path);
    free(lv->state);
    free(lv->sha256);
    lv->by_path = NULL;
    lv->state = NULL;
    lv->sha256 = NULL;
}

int fb_live_init(fb_live *lv, int root_fd, const char *root_name, fb_warn_fn warn,
                 void *warn_ctx, fb_error *err)
{
    memset(lv, 0, sizeof *lv);
    lv->root_fd = root_fd;
    lv->root_name = root_name ? root_name : "session directory";
    lv->warn = warn;
    lv->warn_ctx = warn_ctx;
    fb_scan_result_init(&lv->tree);
    lv->buf = malloc(HASH_BUF_SIZE);
    return lv->buf ? 0 : oom(err);
}

void fb_live_fini(fb_live *lv)
{
    if (!lv)
        return;
    drop_walk(lv);
    free(lv->buf);
    lv->buf = NULL;
}

static int cmp_tree_path(const void *x, const void *y, void *ctx)
{
    const fb_scan_result *t = ctx;
    return strcmp(t->entries[*(const size_t *)x].path, t->entries[*(const size_t *)y].path);
}

int fb_live_walk(fb_live *lv, const fb_config *include, bool keep_special, fb_error *err)
{
    drop_walk(lv);
    fb_scan_options so = {
        .include = include,
        .keep_special = keep_special,
        .warn = lv->warn,
        .warn_ctx = lv->warn_ctx,
    };
    int rc = fb_scan_dir(lv->root_fd, lv->root_name, &so, &lv->tree, err);
    if (rc < 0)
        return rc;
    size_t n = lv->tree.n ? lv->tree.n : 1;
    lv->by_path = malloc(n * sizeof *lv->by_path);
    lv->state = calloc(n, 1);
    lv->sha256 = calloc(n, sizeof *lv->sha256);
    if (!lv->by_path || !lv->state || !lv->sha256) {
        drop_walk(lv);
        return oom(err);
    }
    for (size_t i = 0; i < lv->tree.n; i++)
        lv->by_path[i] = i;
    qsort_r(lv->by_path, lv->tree.n, sizeof *lv->by_path, cmp_tree_path, &lv->tree);
    return 0;
}

int fb_live_lstat(int dirfd, const char *name, const char *path, fb_scan_entry *out)
{
    memset(out, 0, sizeof *out);
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno;
    fb_scan_stat_set(&out->st, &st);
    out->type = S_ISDIR(st.st_mode)   ? FB_ENTRY_DIR
                : S_ISLNK(st.st_mode) ? FB_ENTRY_SYMLINK
                                      : FB_ENTRY_FILE;
    out->special = !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode);
    /* A symlink whose target cannot be read compares as one with no
     * target: it differs from any stored one. */
    if (S_ISLNK(st.st_mode) && fb_scan_read_link(dirfd, name, out->st.size, &out->target) ==
                                   ENOMEM)
        return ENOMEM;
    out->path = strdup(path);
    if (!out->path) {
        fb_live_entry_fini(out);
        return ENOMEM;
    }
    return 0;
}

void fb_live_entry_fini(fb_scan_entry *e)
{
    free(e->path);
    free(e->target);
    e->path = e->target = NULL;
}

void fb_live_meta(const fb_scan_entry *e, fb_entry_meta *out)
{
    out->type = e->type;
    out->mode = (uint32_t)(e->st.mode & 07777);
    out->uid = (uint32_t)e->st.uid;
    out->gid = (uint32_t)e->st.gid;
    out->mtime = e->st.mtime;
    out->mtime_nsec = e->st.mtime_nsec;
    switch (e->type) {
    case FB_ENTRY_FILE:
    case FB_ENTRY_HARDLINK:
        out->size = e->st.size;
        break;
    case FB_ENTRY_SYMLINK:
        out->size = e->target ? strlen(e->target) : 0;
        break;
    case FB_ENTRY_DIR:
        out->size = 0;
        break;
    }
}

bool fb_live_stat_changed(const struct stat *before, const struct stat *after)
{
    return before->st_size != after->st_size ||
           before->st_mtim.tv_sec != after->st_mtim.tv_sec ||
           before->st_mtim.tv_nsec != after->st_mtim.tv_nsec ||
           before->st_ctim.tv_sec != after->st_ctim.tv_sec ||
           before->st_ctim.tv_nsec != after->st_ctim.tv_nsec;
}

/* ------------------------------------------------------ the comparison */

static fb_entry_type content_type(fb_entry_type t)
{
    return t == FB_ENTRY_HARDLINK ? FB_ENTRY_FILE : t;
}

static bool str_differs(const char *x, const char *y)
{
    if (!x || !y)
        return x != y;
    return strcmp(x, y) != 0;
}

unsigned fb_meta_differs(const fb_entry_meta *stored, const char *stored_target,
                         const fb_entry_meta *now, const char *now_target,
                         const fb_live_rules *rules)
{
    unsigned d = 0;
    fb_entry_type type = content_type(stored->type);
    if (type != content_type(now->type))
        d |= FB_DIFFERS_TYPE;
    else if (type == FB_ENTRY_FILE && stored->size != now->size)
        d |= FB_DIFFERS_CONTENT;
    else if (type == FB_ENTRY_SYMLINK && str_differs(stored_target, now_target))
        d |= FB_DIFFERS_TARGET;
    if (!rules->written_mode) {
        if (stored->mode != now->mode)
            d |= FB_DIFFERS_MODE;
    } else if (stored->type != FB_ENTRY_SYMLINK && rules->written_mode(stored->mode) != now->mode) {
        d |= FB_DIFFERS_MODE;
    }
    if (rules->owner && (stored->uid != now->uid || stored->gid != now->gid))
        d |= FB_DIFFERS_OWNER;
    if (stored->mtime != now->mtime || stored->mtime_nsec != now->mtime_nsec)
        d |= FB_DIFFERS_MTIME;
    return d;
}

static bool is_gone_errno(int e)
{
    return e == ENOENT || e == ENOTDIR || e == ELOOP || e == ENXIO || e == EISDIR;
}

/* Opens live file e beneath the root, never through a symlink, and checks
 * it is still the inode the walk (or lstat) saw. Returns 0 with *fd_out and
 * *st, LIVE_GONE, or LIVE_UNREADABLE with the reason in *why. */
static int open_live_file(const fb_live *lv, const fb_scan_entry *e, int *fd_out,
                          struct stat *st, int *why)
{
    int dirfd;
    const char *base;
    size_t failed_len;
    int er = fb_open_parent_beneath(lv->root_fd, e->path, false, &dirfd, &base, &failed_len);
    if (er) {
        *why = er;
        return is_gone_errno(er) || er == EINVAL ? LIVE_GONE : LIVE_UNREADABLE;
    }
    /* O_NONBLOCK: a FIFO swapped in since the walk must not block the open. */
    int fd = openat(dirfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    er = errno;
    close(dirfd);
    if (fd < 0) {
        *why = er;
        return is_gone_errno(er) ? LIVE_GONE : LIVE_UNREADABLE;
    }
    if (fstat(fd, st) != 0) {
        *why = errno;
        close(fd);
        return LIVE_UNREADABLE;
    }
    if (!S_ISREG(st->st_mode) || st->st_dev != e->st.dev || st->st_ino != e->st.ino) {
        close(fd);
        return LIVE_GONE;
    }
    *fd_out = fd;
    return 0;
}

/* Reads fd to the end into sha. Returns LIVE_HASHED or LIVE_UNREADABLE
 * (*why set), or an FB error. */
static int hash_fd(fb_live *lv, int fd, uint8_t sha[FB_SHA256_LEN], int *why, fb_error *err)
{
    fb_sha256 h;
    int rc = fb_sha256_init(&h, err);
    if (rc < 0)
        return rc;
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(fd, lv->buf, HASH_BUF_SIZE);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *why = errno;
            fb_sha256_fini(&h);
            return LIVE_UNREADABLE;
        }
        if (n == 0)
            break;
        fb_sha256_update(&h, lv->buf, (size_t)n);
        total += (uint64_t)n;
    }
    fb_sha256_final(&h, sha);
    fb_sha256_fini(&h);
    lv->files_hashed++;
    lv->bytes_hashed += total;
    return LIVE_HASHED;
}

/* The SHA-256 of live file e into sha: LIVE_HASHED, or LIVE_GONE /
 * LIVE_UNREADABLE with a warning naming it (it then counts as modified), or
 * an FB error. */
static int hash_live_file(fb_live *lv, const fb_scan_entry *e, uint8_t sha[FB_SHA256_LEN],
                          fb_error *err)
{
    char esc[600];
    int fd = -1, why = 0;
    struct stat before, after;
    int rc = open_live_file(lv, e, &fd, &before, &why);
    if (rc == 0) {
        rc = hash_fd(lv, fd, sha, &why, err);
        if (rc == LIVE_HASHED && fstat(fd, &after) == 0 && fb_live_stat_changed(&before, &after)) {
            fb_path_escape(e->path, esc, sizeof esc);
            fb_warnf(lv->warn, lv->warn_ctx, "file changed while being compared: %s", esc);
        }
        close(fd);
    }
    if (rc == LIVE_GONE || rc == LIVE_UNREADABLE)
        fb_path_escape(e->path, esc, sizeof esc);
    if (rc == LIVE_GONE)
        fb_warnf(lv->warn, lv->warn_ctx,
                 "vanished or replaced before it was compared (reported as modified): %s", esc);
    else if (rc == LIVE_UNREADABLE)
        fb_warnf(lv->warn, lv->warn_ctx, "cannot read %s (%s): counted as modified", esc,
                 strerror(why));
    return rc;
}

/* The tree index whose slot caches the content of entry index: a hardlink
 * shares its file's. */
static size_t content_slot(const fb_live *lv, size_t index)
{
    const fb_scan_entry *e = &lv->tree.entries[index];
    return e->type == FB_ENTRY_HARDLINK ? e->link_index : index;
}

/* Compares live entry e; slot caches its content (SIZE_MAX: not walked). */
static int compare_live(fb_live *lv, const fb_scan_entry *e, size_t slot,
                        const fb_manifest_entry *stored, const uint8_t *stored_sha256,
                        const fb_live_rules *rules, unsigned *differs, fb_error *err)
{
    /* A manifest cannot hold a FIFO, socket or device. */
    if (e->special) {
        *differs = FB_DIFFERS_TYPE;
        return 0;
    }
    fb_entry_meta now;
    fb_live_meta(e, &now);
    unsigned d = fb_meta_differs(&stored->meta, stored->target, &now, e->target, rules);
    /* Same size and mtime is taken as same content, as rsync does;
     * otherwise the bytes decide. */
    bool read = content_type(now.type) == FB_ENTRY_FILE && !(d & FB_DIFFERS_CONTENT_BITS) &&
                (rules->checksum || (d & FB_DIFFERS_MTIME));
    if (read) {
        uint8_t local[FB_SHA256_LEN];
        uint8_t *sha = slot == SIZE_MAX ? local : lv->sha256[slot];
        int rc = slot == SIZE_MAX ? LIVE_UNREAD : lv->state[slot];
        if (rc == LIVE_UNREAD)
            rc = hash_live_file(lv, slot == SIZE_MAX ? e : &lv->tree.entries[slot], sha, err);
        if (rc < 0)
            return rc;
        if (slot != SIZE_MAX)
            lv->state[slot] = (unsigned char)rc;
        if (rc != LIVE_HASHED || !stored_sha256 || memcmp(sha, stored_sha256, FB_SHA256_LEN))
            d |= FB_DIFFERS_CONTENT;
    }
    *differs = d;
    return 0;
}

int fb_live_compare(fb_live *lv, size_t index, const fb_manifest_entry *stored,
                    const uint8_t *stored_sha256, const fb_live_rules *rules, unsigned *differs,
                    fb_error *err)
{
    return compare_live(lv, &lv->tree.entries[index], content_slot(lv, index), stored,
                        stored_sha256, rules, differs, err);
}

int fb_live_compare_entry(fb_live *lv, const fb_scan_entry *live, const fb_manifest_entry *stored,
                          const uint8_t *stored_sha256, const fb_live_rules *rules,
                          unsigned *differs, fb_error *err)
{
    return compare_live(lv, live, SIZE_MAX, stored, stored_sha256, rules, differs, err);
}

const uint8_t *fb_live_sha256(const fb_live *lv, size_t index)
{
    size_t slot = content_slot(lv, index);
    return lv->state[slot] == LIVE_HASHED ? lv->sha256[slot] : NULL;
}
