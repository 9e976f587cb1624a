/* Where the first read of a file in a fresh mount spends its time, without
 * FUSE: the steps the daemon takes for `cat MNT/SESSION/BACKUP/PATH` (the
 * tree made, the session, the backup and each directory looked up, the
 * file opened and read), each timed, in a fresh tree per run. What FUSE
 * adds on top (a round trip per step) is the same for every file system;
 * this is the part that is ours.
 *
 * usage: first_read BACKUPS_DIR SESSION BACKUP PATH [RUNS]
 * env FB_MANIFEST_CACHE=DIR: the mount's local manifest cache (none when unset)
 * prints one line per step: the best time over RUNS (default 5), in ms. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fb_mount_tree.h"

enum { MAX_STEPS = 64 };

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void fail(const char *what, const fb_error *err)
{
    fprintf(stderr, "first_read: %s: %s\n", what, err->message);
    exit(1);
}

/* One fresh tree, every step timed into ms[]; returns the number of steps
 * and names them in names[]. */
static size_t run_once(const char *backups, const char *const *parts, size_t n_parts, double *ms,
                       char names[][80])
{
    size_t k = 0;
    fb_error err;
    fb_error_clear(&err);
    fb_mount_options o = {.cache_bytes = 64u << 20, .meta_cache_bytes = 32u << 20,
                          .live_seconds = 1, .manifest_cache_dir = getenv("FB_MANIFEST_CACHE")};
    fb_mount_tree *t;
    double s = now_ms();
    if (fb_mount_tree_new(backups, &o, &t, &err) != 0)
        fail("tree", &err);
    ms[k] = now_ms() - s;
    snprintf(names[k++], 80, "make the tree");
    uint64_t ino = FB_MOUNT_ROOT_INO;
    for (size_t i = 0; i < n_parts; i++) {
        fb_mount_attr a;
        s = now_ms();
        if (fb_mount_tree_lookup(t, ino, parts[i], &a, &err) != 0)
            fail(parts[i], &err);
        ms[k] = now_ms() - s;
        snprintf(names[k++], 80, "lookup %.60s", parts[i]);
        ino = a.st.st_ino;
    }
    fb_mount_file *f;
    s = now_ms();
    if (fb_mount_tree_open(t, ino, &f, &err) != 0)
        fail("open", &err);
    ms[k] = now_ms() - s;
    snprintf(names[k++], 80, "open");
    char buf[128 * 1024];
    size_t got;
    s = now_ms();
    if (fb_mount_file_read(f, buf, sizeof buf, 0, &got, &err) != 0)
        fail("read", &err);
    ms[k] = now_ms() - s;
    snprintf(names[k++], 80, "read (%zu bytes)", got);
    fb_mount_file_close(t, f);
    /* The second read of the same file: what a reopen costs. */
    s = now_ms();
    if (fb_mount_tree_open(t, ino, &f, &err) != 0)
        fail("open again", &err);
    ms[k] = now_ms() - s;
    snprintf(names[k++], 80, "open again");
    fb_mount_file_close(t, f);
    fb_mount_tree_free(t);
    return k;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: first_read BACKUPS_DIR SESSION BACKUP PATH [RUNS]\n");
        return 2;
    }
    int runs = argc > 5 ? atoi(argv[5]) : 5;
    const char *parts[MAX_STEPS];
    size_t n = 0;
    parts[n++] = argv[2];
    parts[n++] = argv[3];
    char *path = strdup(argv[4]);
    for (char *p = strtok(path, "/"); p && n < MAX_STEPS - 4; p = strtok(NULL, "/"))
        parts[n++] = p;
    double best[MAX_STEPS], ms[MAX_STEPS], total_best = 1e99;
    char names[MAX_STEPS][80];
    size_t k = 0;
    for (int r = 0; r < runs; r++) {
        k = run_once(argv[1], parts, n, ms, names);
        double total = 0;
        for (size_t i = 0; i < k; i++) {
            if (r == 0 || ms[i] < best[i])
                best[i] = ms[i];
            total += ms[i];
        }
        if (total < total_best)
            total_best = total;
    }
    printf("%-40s %10s\n", "step (best of runs)", "ms");
    for (size_t i = 0; i < k; i++)
        printf("%-40s %10.3f\n", names[i], best[i]);
    printf("%-40s %10.3f\n", "total (best run)", total_best);
    free(path);
    return 0;
}
