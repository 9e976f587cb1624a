/* What stat shows for each kind of node, kept apart from the operations so
 * that getattr, lookup and readdir agree. Inside a backup the attributes are
 * the manifest's; the root, sessions and backup dirs take owner and mode from
 * the store's directories, and times from the backups they hold. */
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mount_tree_i.h"

static void stat_times(struct stat *st, int64_t sec, long nsec)
{
    st->st_mtim.tv_sec = (time_t)sec;
    st->st_mtim.tv_nsec = nsec;
    st->st_atim = st->st_mtim;
    st->st_ctim = st->st_mtim;
}

void fb_mount_attr_root(fb_mount_tree *t, fb_mount_attr *out)
{
    memset(out, 0, sizeof *out);
    struct stat st;
    if (fstat(t->backups_fd, &st) != 0) {
        memset(&st, 0, sizeof st);
        st.st_mode = S_IFDIR | 0700;
        st.st_uid = getuid();
        st.st_gid = getgid();
    }
    out->st.st_ino = FB_MOUNT_ROOT_INO;
    out->st.st_mode = S_IFDIR | (st.st_mode & 07777);
    out->st.st_nlink = 2 + t->n_present_sessions;
    out->st.st_uid = st.st_uid;
    out->st.st_gid = st.st_gid;
    out->st.st_blksize = MT_BLKSIZE;
    out->st.st_mtim = st.st_mtim;
    out->st.st_atim = st.st_atim;
    out->st.st_ctim = st.st_ctim;
}

static void attr_session_base(const mt_session *s, struct stat *st)
{
    st->st_uid = s->have_st ? s->st.st_uid : getuid();
    st->st_gid = s->have_st ? s->st.st_gid : getgid();
    st->st_blksize = MT_BLKSIZE;
    if (s->has_newest)
        stat_times(st, s->newest_time, 0);
    else if (s->have_st)
        stat_times(st, s->st.st_mtim.tv_sec, s->st.st_mtim.tv_nsec);
}

void fb_mount_attr_session(const mt_session *s, fb_mount_attr *out)
{
    memset(out, 0, sizeof *out);
    attr_session_base(s, &out->st);
    out->st.st_ino = s->ino;
    out->st.st_mode = S_IFDIR | (s->have_st ? (s->st.st_mode & 07777) : 0700);
    out->st.st_nlink = 2 + s->n_present + 2; /* + as-of/ and history/ */
}

int fb_mount_attr_latest(const mt_session *s, bool full, fb_mount_attr *out)
{
    const char *target = full ? s->latest_full : s->latest;
    if (!target[0])
        return FB_ENOTFOUND;
    memset(out, 0, sizeof *out);
    attr_session_base(s, &out->st);
    out->st.st_ino = s->ino + (full ? MT_SINO_LATEST_FULL : MT_SINO_LATEST);
    out->st.st_mode = S_IFLNK | 0777;
    out->st.st_nlink = 1;
    out->st.st_size = (off_t)strlen(target);
    return 0;
}

void fb_mount_attr_view_dir(const mt_session *s, int ref_kind, fb_mount_attr *out)
{
    memset(out, 0, sizeof *out);
    attr_session_base(s, &out->st);
    out->st.st_ino = s->ino + (ref_kind == REF_HISTORY ? MT_SINO_HISTORY : MT_SINO_ASOF);
    out->st.st_mode = S_IFDIR | (s->have_st ? (s->st.st_mode & 07777) : 0700);
    /* Not counted, like a backup dir: history/ would need its index. */
    out->st.st_nlink = ref_kind == REF_HISTORY ? 1 : 2 + s->n_present;
}

int fb_mount_attr_asof_latest(const mt_session *s, fb_mount_attr *out)
{
    int rc = fb_mount_attr_latest(s, false, out);
    if (rc == 0)
        out->st.st_ino = s->ino + MT_SINO_ASOF_LATEST;
    return rc;
}

void fb_mount_attr_backup(const mt_backup *b, fb_mount_attr *out)
{
    const mt_session *s = b->session;
    memset(out, 0, sizeof *out);
    attr_session_base(s, &out->st);
    stat_times(&out->st, b->created_at, 0);
    out->st.st_ino = b->ino;
    out->st.st_mode = S_IFDIR | (s->have_st ? (s->st.st_mode & 07777) : 0700);
    /* 1 means "not counted" to find/fts; counting needs the manifest, which
     * a listing of the session must not load. */
    out->st.st_nlink = 1;
}

uint32_t fb_mount_node_type_bits(const mt_contents *c, uint32_t n)
{
    uint32_t e = c->nodes[n].entry;
    if (e == MT_NONE)
        return S_IFDIR;
    switch (c->m.entries[e].meta.type) {
    case FB_ENTRY_DIR:
        return S_IFDIR;
    case FB_ENTRY_SYMLINK:
        return S_IFLNK;
    default:
        return S_IFREG;
    }
}

void fb_mount_attr_entry(const mt_backup *b, uint32_t node, fb_mount_attr *out)
{
    const mt_contents *c = b->contents;
    uint32_t tg = c->nodes[node].target;
    const mt_node *nd = &c->nodes[tg];
    memset(out, 0, sizeof *out);
    /* history/ changes when a backup is added (mount_history.c). */
    out->immutable = !c->live;
    struct stat *st = &out->st;
    st->st_ino = b->entries_base + tg;
    st->st_nlink = nd->nlink;
    st->st_blksize = MT_BLKSIZE;
    if (nd->entry == MT_NONE) {
        st->st_mode = S_IFDIR | 0755;
        st->st_uid = c->uid;
        st->st_gid = c->gid;
        stat_times(st, c->created_at, 0);
        return;
    }
    const fb_manifest_entry *e = &c->m.entries[nd->entry];
    st->st_mode = fb_mount_node_type_bits(c, tg) | (e->meta.mode & 07777);
    st->st_uid = e->meta.uid;
    st->st_gid = e->meta.gid;
    stat_times(st, e->meta.mtime, (long)(e->meta.mtime_nsec % 1000000000u));
    if (e->meta.type == FB_ENTRY_FILE) {
        st->st_size = e->meta.size > (uint64_t)INT64_MAX ? INT64_MAX : (off_t)e->meta.size;
        st->st_blocks = (blkcnt_t)((e->meta.size + 511) / 512);
    } else if (e->meta.type == FB_ENTRY_SYMLINK) {
        st->st_size = e->target ? (off_t)strlen(e->target) : 0;
    }
}
