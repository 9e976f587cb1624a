/* The walk of a session source directory: decides what a backup holds and in
 * which order, from directory fds only (openat/fstatat with O_NOFOLLOW and
 * AT_SYMLINK_NOFOLLOW), so no symlink is ever followed and nothing outside
 * the session directory is touched. Special files are never opened (a FIFO
 * would block). Names are sorted bytewise so equal trees give equal archives.
 * The same walk lists the live tree that diff and restore compare with a
 * backup (live.c), so all three see one tree the same way.
 *
 * One file system only, like tar --one-file-system: an entry on another
 * mount than the session directory (a tmpfs, a bind mount of the same file
 * system, the tool's own FUSE mount) is neither entered nor listed, and is
 * named once in a warning. Its contents are not the session's: a backup
 * that entered a mount of the backups would store every earlier backup
 * again, and a restore that listed them would delete them. The mount id
 * (statx STATX_MNT_ID) sees a bind mount, whose st_dev is the session's;
 * st_dev still decides where the kernel has no mount id. */
#include "scan_i.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "fb_fsutil.h"
#include "fb_text.h"

void fb_scan_result_init(fb_scan_result *r)
{
    memset(r, 0, sizeof *r);
}

void fb_scan_result_fini(fb_scan_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->entries[i].path);
        free(r->entries[i].target);
    }
    free(r->entries);
    fb_string_list_free(r->mounts, r->n_mounts);
    memset(r, 0, sizeof *r);
}

/* ---- the inode map that turns later links of a file into hardlink entries ---- */

typedef struct inode_slot {
    dev_t dev;
    ino_t ino;
    size_t index; /* entry index + 1; 0 = empty slot */
} inode_slot;

typedef struct inode_map {
    inode_slot *slots;
    size_t cap; /* power of two */
    size_t used;
} inode_map;

static size_t inode_hash(dev_t dev, ino_t ino)
{
    uint64_t x = (uint64_t)ino * 0x9E3779B97F4A7C15ULL ^ (uint64_t)dev * 0xC2B2AE3D27D4EB4FULL;
    x ^= x >> 31;
    return (size_t)x;
}

/* Finds (dev, ino); returns its entry index + 1, or 0 when absent. */
static size_t inode_map_find(const inode_map *m, dev_t dev, ino_t ino)
{
    if (!m->cap)
        return 0;
    for (size_t i = inode_hash(dev, ino) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        const inode_slot *s = &m->slots[i];
        if (!s->index)
            return 0;
        if (s->dev == dev && s->ino == ino)
            return s->index;
    }
}

static int inode_map_put(inode_map *m, dev_t dev, ino_t ino, size_t index)
{
    if ((m->used + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 64;
        inode_slot *ns = calloc(ncap, sizeof *ns);
        if (!ns)
            return -1;
        for (size_t i = 0; i < m->cap; i++) {
            inode_slot *s = &m->slots[i];
            if (!s->index)
                continue;
            size_t j = inode_hash(s->dev, s->ino) & (ncap - 1);
            while (ns[j].index)
                j = (j + 1) & (ncap - 1);
            ns[j] = *s;
        }
        free(m->slots);
        m->slots = ns;
        m->cap = ncap;
    }
    size_t j = inode_hash(dev, ino) & (m->cap - 1);
    while (m->slots[j].index)
        j = (j + 1) & (m->cap - 1);
    m->slots[j].dev = dev;
    m->slots[j].ino = ino;
    m->slots[j].index = index + 1;
    m->used++;
    return 0;
}

/* ---- the walk ---- */

typedef struct walker {
    const fb_scan_options *opts;
    const char *source_name;
    fb_scan_result *res;
    dev_t root_dev;
    uint64_t root_mnt_id;
    bool have_mnt_id; /* the kernel gives mount ids (Linux >= 5.8) */
    size_t mounts_cap;
    char path[FB_PATH_MAX + 256 + 2]; /* current relative path */
    size_t len;
    inode_map inodes;
    fb_error *err;
} walker;

static int oom(fb_error *err)
{
    return fb_error_set(err, FB_ENOMEM, "out of memory while scanning the session directory");
}

static void warn_path(walker *w, const char *what)
{
    char esc[600];
    fb_path_escape(w->path, esc, sizeof esc);
    w->res->skipped++;
    fb_warnf(w->opts->warn, w->opts->warn_ctx, "%s: %s", what, esc);
}

static int fail_path(walker *w, int errnum, const char *what)
{
    char esc[600];
    fb_path_escape(w->len ? w->path : ".", esc, sizeof esc);
    return fb_error_set_errno(w->err, errnum, "%s: %s %s", w->source_name, what, esc);
}

void fb_scan_stat_set(fb_scan_stat *o, const struct stat *st)
{
    o->dev = st->st_dev;
    o->ino = st->st_ino;
    o->mode = st->st_mode;
    o->uid = st->st_uid;
    o->gid = st->st_gid;
    o->size = st->st_size > 0 ? (uint64_t)st->st_size : 0;
    o->mtime = (int64_t)st->st_mtim.tv_sec;
    o->mtime_nsec = (uint32_t)st->st_mtim.tv_nsec;
    o->nlink = st->st_nlink;
}

static int push_entry(walker *w, fb_entry_type type, const struct stat *st, char *target,
                      size_t link_index)
{
    fb_scan_result *r = w->res;
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 256;
        fb_scan_entry *ne = realloc(r->entries, ncap * sizeof *ne);
        if (!ne)
            return -1;
        r->entries = ne;
        r->cap = ncap;
    }
    fb_scan_entry *e = &r->entries[r->n];
    e->path = strdup(w->path);
    if (!e->path)
        return -1;
    e->type = type;
    fb_scan_stat_set(&e->st, st);
    e->target = target;
    e->link_index = link_index;
    e->special = false;
    r->n++;
    return 0;
}

static void pop_entry(fb_scan_result *r)
{
    r->n--;
    free(r->entries[r->n].path);
    free(r->entries[r->n].target);
}

static bool has_magic_we_do_not_split(const char *p)
{
    /* A backslash or bracket could hide a '/' inside one component; for such
     * patterns we do not prune and simply descend. */
    return strchr(p, '\\') || strchr(p, '[');
}

/* Could any path below directory `dir` match one of the include patterns?
 * Conservative: true whenever unsure. Splits pattern and path on '/' and
 * matches component by component, which is what FNM_PATHNAME amounts to. */
static bool dir_may_contain_match(const fb_config *cfg, const char *dir)
{
    size_t dir_depth = 1;
    for (const char *c = dir; *c; c++)
        dir_depth += *c == '/';
    for (size_t p = 0; p < cfg->n_include; p++) {
        const char *pat = cfg->include[p];
        if (has_magic_we_do_not_split(pat))
            return true;
        size_t plen = strlen(pat);
        bool dir_pattern = plen > 0 && pat[plen - 1] == '/';
        if (dir_pattern)
            plen--;
        size_t pat_depth = 1;
        for (size_t i = 0; i < plen; i++)
            pat_depth += pat[i] == '/';
        /* Compare the first min(dir_depth, pat_depth) components. */
        const char *pc = pat, *dc = dir;
        size_t pat_left = plen;
        bool prefix_ok = true;
        size_t k;
        for (k = 0; k < dir_depth && k < pat_depth; k++) {
            const char *pe = memchr(pc, '/', pat_left);
            size_t pn = pe ? (size_t)(pe - pc) : pat_left;
            const char *de = strchr(dc, '/');
            size_t dn = de ? (size_t)(de - dc) : strlen(dc);
            char pbuf[FB_PATH_MAX + 1], dbuf[FB_PATH_MAX + 1];
            if (pn > FB_PATH_MAX || dn > FB_PATH_MAX)
                return true;
            memcpy(pbuf, pc, pn);
            pbuf[pn] = '\0';
            memcpy(dbuf, dc, dn);
            dbuf[dn] = '\0';
            if (pn == 0)
                return true; /* "//" or a leading '/': unusual, do not prune */
            if (fnmatch(pbuf, dbuf, 0) != 0) {
                prefix_ok = false;
                break;
            }
            pc += pn + (pe ? 1 : 0);
            pat_left -= pn + (pe ? 1 : 0);
            dc += dn + (de ? 1 : 0);
        }
        if (!prefix_ok)
            continue;
        if (pat_depth > dir_depth)
            return true; /* the pattern goes deeper than dir */
        if (dir_pattern)
            return true; /* dir is the pattern's directory or inside it */
    }
    return false;
}

static bool included(const walker *w)
{
    return !w->opts->include || fb_config_include_matches(w->opts->include, w->path);
}

/* Reads every name of d (but . and ..), sorted bytewise. */
static int list_names(walker *w, DIR *d, char ***out, size_t *n_out)
{
    int rc = fb_read_dir_names(d, NULL, NULL, out, n_out);
    if (rc == ENOMEM)
        return oom(w->err);
    if (rc)
        return fail_path(w, rc, "cannot list directory");
    return 0;
}

int fb_scan_read_link(int dirfd, const char *name, uint64_t size_hint, char **out)
{
    size_t cap = size_hint > 0 && size_hint < FB_PATH_MAX ? (size_t)size_hint + 1 : 256;
    for (;;) {
        char *buf = malloc(cap);
        if (!buf)
            return ENOMEM;
        ssize_t n = readlinkat(dirfd, name, buf, cap);
        if (n < 0) {
            int e = errno;
            free(buf);
            return e;
        }
        if ((size_t)n < cap) {
            buf[n] = '\0';
            *out = buf;
            return 0;
        }
        free(buf);
        if (cap > 65536)
            return ENAMETOOLONG;
        cap *= 2;
    }
}

static int read_symlink(walker *w, int dirfd, const char *name, const struct stat *st,
                        char **out)
{
    int e = fb_scan_read_link(dirfd, name, st->st_size > 0 ? (uint64_t)st->st_size : 0, out);
    if (e == 0)
        return 0;
    if (e == ENOENT || e == EINVAL)
        return 1; /* gone or no longer a symlink */
    if (e == ENOMEM)
        return oom(w->err);
    if (e == ENAMETOOLONG)
        return fb_error_set(w->err, FB_EIO, "%s: symlink target too long", w->source_name);
    return fail_path(w, e, "cannot read symlink");
}

static int walk_dir(walker *w, int fd);

/* A FIFO, socket or device: never opened (a FIFO would block). A backup
 * skips it with a warning; a restore lists it, since it removes it. */
static int visit_special(walker *w, const struct stat *st)
{
    if (w->opts->keep_special) {
        if (push_entry(w, FB_ENTRY_FILE, st, NULL, 0))
            return oom(w->err);
        w->res->entries[w->res->n - 1].special = true;
        return 0;
    }
    const char *kind = S_ISFIFO(st->st_mode)   ? "FIFO"
                       : S_ISSOCK(st->st_mode) ? "socket"
                       : S_ISCHR(st->st_mode)  ? "character device"
                       : S_ISBLK(st->st_mode)  ? "block device"
                                               : "special file";
    char what[64];
    snprintf(what, sizeof what, "skipped %s", kind);
    warn_path(w, what);
    return 0;
}

/* Directory name in dirfd (lstat st): entered by fd, and checked to be
 * the directory the lstat saw. */
static int visit_dir(walker *w, int dirfd, const char *name, const struct stat *st)
{
    bool matched = included(w);
    if (!matched && !dir_may_contain_match(w->opts->include, w->path))
        return 0;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) {
            warn_path(w, "vanished or replaced while scanning");
            return 0;
        }
        return fail_path(w, errno, "cannot open directory");
    }
    struct stat fst;
    if (fstat(fd, &fst) != 0) {
        int e = errno;
        close(fd);
        return fail_path(w, e, "cannot stat");
    }
    if (fst.st_dev != st->st_dev || fst.st_ino != st->st_ino) {
        close(fd);
        warn_path(w, "replaced while scanning");
        return 0;
    }
    size_t slot = w->res->n;
    if (push_entry(w, FB_ENTRY_DIR, &fst, NULL, 0)) {
        close(fd);
        return oom(w->err);
    }
    int rc = walk_dir(w, fd);
    if (rc < 0)
        return rc;
    /* A directory that is not itself included stays only as the parent
     * of something included, so the archive never lacks a parent. */
    if (!matched && w->res->n == slot + 1)
        pop_entry(w->res);
    return 0;
}

/* lstat of name in dirfd ("": dirfd itself) by statx, which gives the
 * mount id in the same call (*mnt_id 0 when the kernel gives none).
 * Returns 0 or an errno. */
static int stat_entry(int dirfd, const char *name, struct stat *st, uint64_t *mnt_id)
{
    struct statx sx;
    int flags = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | (*name ? 0 : AT_EMPTY_PATH);
    if (statx(dirfd, name, flags, STATX_BASIC_STATS | STATX_MNT_ID, &sx) != 0)
        return errno;
    memset(st, 0, sizeof *st);
    st->st_dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
    st->st_ino = (ino_t)sx.stx_ino;
    st->st_mode = sx.stx_mode;
    st->st_nlink = sx.stx_nlink;
    st->st_uid = sx.stx_uid;
    st->st_gid = sx.stx_gid;
    st->st_rdev = makedev(sx.stx_rdev_major, sx.stx_rdev_minor);
    st->st_size = (off_t)sx.stx_size;
    st->st_blksize = (blksize_t)sx.stx_blksize;
    st->st_blocks = (blkcnt_t)sx.stx_blocks;
    st->st_atim = (struct timespec){.tv_sec = sx.stx_atime.tv_sec, .tv_nsec = sx.stx_atime.tv_nsec};
    st->st_mtim = (struct timespec){.tv_sec = sx.stx_mtime.tv_sec, .tv_nsec = sx.stx_mtime.tv_nsec};
    st->st_ctim = (struct timespec){.tv_sec = sx.stx_ctime.tv_sec, .tv_nsec = sx.stx_ctime.tv_nsec};
    *mnt_id = (sx.stx_mask & STATX_MNT_ID) ? sx.stx_mnt_id : 0;
    return 0;
}

/* Is the entry on another mount than the session directory? Any entry
 * whose mount id differs (a bind-mounted file too); a directory also when
 * its st_dev does, as tar --one-file-system decides. */
static bool on_other_mount(const walker *w, const struct stat *st, uint64_t mnt_id)
{
    if (w->have_mnt_id && mnt_id && mnt_id != w->root_mnt_id)
        return true;
    return S_ISDIR(st->st_mode) && st->st_dev != w->root_dev;
}

/* A mount point: left out, recorded and warned about, unless the include
 * patterns would not have looked at it anyway (then silently, as any
 * other entry they leave out). */
static int skip_mount(walker *w, bool dir)
{
    if (!included(w) && !(dir && dir_may_contain_match(w->opts->include, w->path)))
        return 0;
    if (w->res->n_mounts == w->mounts_cap) {
        size_t ncap = w->mounts_cap ? w->mounts_cap * 2 : 4;
        char **nm = realloc(w->res->mounts, ncap * sizeof *nm);
        if (!nm)
            return oom(w->err);
        w->res->mounts = nm;
        w->mounts_cap = ncap;
    }
    if (!(w->res->mounts[w->res->n_mounts] = strdup(w->path)))
        return oom(w->err);
    w->res->n_mounts++;
    w->res->skipped++;
    char esc[600];
    fb_path_escape(w->path, esc, sizeof esc);
    fb_warnf(w->opts->warn, w->opts->warn_ctx, "skipped %s: another filesystem is mounted there",
             esc);
    return 0;
}

/* Handles one name of the directory open on dirfd; w->path is its path. */
static int visit(walker *w, int dirfd, const char *name)
{
    struct stat st;
    uint64_t mnt_id;
    if (w->len >= FB_PATH_MAX) {
        warn_path(w, "skipped, path too long");
        return 0;
    }
    int e = stat_entry(dirfd, name, &st, &mnt_id);
    /* Only a FUSE mount whose daemon is gone answers ENOTCONN here. */
    if (e == ENOTCONN)
        return skip_mount(w, true);
    if (e == ENOENT) {
        warn_path(w, "vanished while scanning");
        return 0;
    }
    if (e)
        return fail_path(w, e, "cannot stat");
    if (on_other_mount(w, &st, mnt_id))
        return skip_mount(w, S_ISDIR(st.st_mode));
    if (S_ISREG(st.st_mode)) {
        if (!included(w))
            return 0;
        size_t link = 0;
        if (st.st_nlink > 1)
            link = inode_map_find(&w->inodes, st.st_dev, st.st_ino);
        if (link) {
            if (push_entry(w, FB_ENTRY_HARDLINK, &st, NULL, link - 1))
                return oom(w->err);
            return 0;
        }
        if (push_entry(w, FB_ENTRY_FILE, &st, NULL, 0))
            return oom(w->err);
        if (st.st_nlink > 1 &&
            inode_map_put(&w->inodes, st.st_dev, st.st_ino, w->res->n - 1) != 0)
            return oom(w->err);
        w->res->file_bytes += (uint64_t)st.st_size;
        return 0;
    }
    if (S_ISLNK(st.st_mode)) {
        if (!included(w))
            return 0;
        char *target = NULL;
        int rc = read_symlink(w, dirfd, name, &st, &target);
        if (rc < 0)
            return rc;
        if (rc > 0) {
            warn_path(w, "vanished while scanning");
            return 0;
        }
        if (push_entry(w, FB_ENTRY_SYMLINK, &st, target, 0)) {
            free(target);
            return oom(w->err);
        }
        return 0;
    }
    if (S_ISDIR(st.st_mode))
        return visit_dir(w, dirfd, name, &st);
    if (!included(w))
        return 0;
    return visit_special(w, &st);
}

/* Takes ownership of fd. */
static int walk_dir(walker *w, int fd)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return fail_path(w, e, "cannot list directory");
    }
    char **names = NULL;
    size_t n = 0;
    int rc = list_names(w, d, &names, &n);
    if (rc < 0) {
        closedir(d);
        return rc;
    }
    size_t base_len = w->len;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (fb_cancelled(w->opts->cancel)) {
            rc = fb_error_set(w->err, FB_EINTERRUPTED, "%s: interrupted while scanning",
                              w->source_name);
            break;
        }
        size_t nl = strlen(names[i]);
        size_t sep = base_len ? 1 : 0;
        if (base_len + sep + nl >= sizeof w->path - 1) {
            /* Too long to even name fully: name the directory instead. */
            w->path[base_len] = '\0';
            warn_path(w, "skipped an entry whose path is too long, in");
            continue;
        }
        if (sep)
            w->path[base_len] = '/';
        memcpy(w->path + base_len + sep, names[i], nl + 1);
        w->len = base_len + sep + nl;
        rc = visit(w, dirfd(d), names[i]);
        w->len = base_len;
        w->path[base_len] = '\0';
    }
    fb_string_list_free(names, n);
    closedir(d);
    return rc;
}

int fb_scan_dir(int source_fd, const char *source_name, const fb_scan_options *opts,
                fb_scan_result *out, fb_error *err)
{
    fb_scan_result_init(out);
    walker *w = calloc(1, sizeof *w);
    if (!w)
        return oom(err);
    w->opts = opts;
    w->source_name = source_name;
    w->res = out;
    w->err = err;
    int rc;
    int fd = openat(source_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    int e = fd < 0 ? errno : stat_entry(fd, "", &st, &w->root_mnt_id);
    if (fd < 0 || e) {
        rc = fb_error_set_errno(err, e, "%s: cannot open", source_name);
        if (fd >= 0)
            close(fd);
    } else {
        w->root_dev = st.st_dev;
        w->have_mnt_id = w->root_mnt_id != 0;
        rc = walk_dir(w, fd);
    }
    free(w->inodes.slots);
    free(w);
    if (rc < 0)
        fb_scan_result_fini(out);
    return rc;
}
