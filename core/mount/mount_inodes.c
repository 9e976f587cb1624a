/* The mount's inode numbers: one counter that only grows hands out ranges
 * (a session's three numbers, a backup dir's one, a backup's entries), and a
 * table of those ranges, sorted by base, tells which node a number names.
 * Numbers are never reused, so a number the kernel still holds can only
 * name its node or nothing (include/fb_mount_tree.h). */
#include <stdlib.h>
#include <string.h>

#include "mount_tree_i.h"

struct mt_range {
    uint64_t base;
    uint64_t count;
    int kind;
    void *owner;
};

static uint64_t inos_alloc(fb_mount_tree *t, uint64_t count)
{
    uint64_t base = t->next_ino;
    /* 2^64 numbers cannot run out in a daemon's life; saturate rather than wrap. */
    if (__builtin_add_overflow(t->next_ino, count, &t->next_ino))
        t->next_ino = UINT64_MAX;
    return base;
}

static int range_add(fb_mount_tree *t, uint64_t base, uint64_t count, int kind, void *owner)
{
    if (t->n_ranges == t->cap_ranges) {
        size_t cap = t->cap_ranges ? t->cap_ranges * 2 : 64;
        mt_range *r = realloc(t->ranges, cap * sizeof *r);
        if (!r)
            return FB_ENOMEM;
        t->ranges = r;
        t->cap_ranges = cap;
    }
    t->ranges[t->n_ranges++] = (mt_range){base, count, kind, owner};
    return 0;
}

int fb_mount_inode_range_new(fb_mount_tree *t, uint64_t count, int kind, void *owner,
                             uint64_t *base)
{
    *base = inos_alloc(t, count);
    return range_add(t, *base, count, kind, owner);
}

static mt_range *range_find(fb_mount_tree *t, uint64_t ino)
{
    size_t lo = 0, hi = t->n_ranges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->ranges[mid].base <= ino)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    mt_range *r = &t->ranges[lo - 1];
    return ino - r->base < r->count ? r : NULL;
}

void fb_mount_inode_range_remove(fb_mount_tree *t, uint64_t base)
{
    mt_range *r = range_find(t, base);
    if (!r || r->base != base)
        return;
    size_t i = (size_t)(r - t->ranges);
    memmove(&t->ranges[i], &t->ranges[i + 1], (t->n_ranges - i - 1) * sizeof *r);
    t->n_ranges--;
}

int fb_mount_inode_resolve(fb_mount_tree *t, uint64_t ino, mt_ref *out)
{
    memset(out, 0, sizeof *out);
    if (ino == FB_MOUNT_ROOT_INO) {
        out->kind = REF_ROOT;
        return 0;
    }
    mt_range *r = range_find(t, ino);
    if (!r)
        return FB_ENOTFOUND;
    switch (r->kind) {
    case RANGE_SESSION: {
        static const int kinds[MT_SINO_COUNT] = {
            [MT_SINO_DIR] = REF_SESSION,       [MT_SINO_LATEST] = REF_LATEST,
            [MT_SINO_LATEST_FULL] = REF_LATEST_FULL, [MT_SINO_ASOF] = REF_ASOF_DIR,
            [MT_SINO_ASOF_LATEST] = REF_ASOF_LATEST, [MT_SINO_HISTORY] = REF_HISTORY};
        out->s = r->owner;
        out->kind = kinds[ino - r->base];
        return 0;
    }
    case RANGE_BACKUP_DIR:
        out->b = r->owner;
        out->s = out->b->session;
        out->kind = REF_BACKUP;
        return 0;
    default:
        out->b = r->owner;
        out->s = out->b->session;
        out->kind = REF_ENTRY;
        out->node = (uint32_t)(ino - r->base);
        return 0;
    }
}
