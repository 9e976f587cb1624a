/* Replays the fuzz targets' committed inputs without libFuzzer, so that they
 * run in every build (gcc included) as part of the unit suite: each file of
 * tests/fuzz/corpus/<target>/ (the seeds) and tests/fuzz/regressions/<target>/
 * (inputs that once crashed, hung or read wrong bytes, see
 * tests/fuzz/README.md) goes through the same target function the fuzzer
 * runs. A target aborts on a broken property, which fails this test and
 * names the input in the log just above.
 *
 * Usage: test_fuzz_regressions FUZZ_DIR [TARGET [FILE...]] */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

static const struct {
    const char *name;
    int (*fn)(const uint8_t *, size_t);
} targets[] = {
    {"manifest", fuzz_manifest},
    {"index", fuzz_index},
    {"config", fuzz_config},
    {"seek_table", fuzz_seek_table},
    {"archive_raw", fuzz_archive_raw},
    {"archive_structured", fuzz_archive_structured},
    {"tar_header", fuzz_tar_header},
    {"restore", fuzz_restore},
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static size_t replay_file(const char *path, int (*fn)(const uint8_t *, size_t))
{
    size_t len;
    uint8_t *data = fz_read_file(path, &len);
    if (!data) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(1);
    }
    /* Printed first: if the target aborts, the log names the input. */
    printf("replay %s (%zu bytes)\n", path, len);
    fflush(stdout);
    fn(data, len);
    free(data);
    return 1;
}

/* Every regular file of dir, in name order; a missing dir is no inputs. */
static size_t replay_dir(const char *dir, int (*fn)(const uint8_t *, size_t))
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            names = realloc(names, cap * sizeof *names);
            if (!names)
                exit(2);
        }
        names[n++] = strdup(de->d_name);
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    size_t done = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        done += replay_file(path, fn);
        free(names[i]);
    }
    free(names);
    return done;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FUZZ_DIR [TARGET [FILE...]]\n", argv[0]);
        return 2;
    }
    size_t total = 0, regressions = 0;
    for (size_t t = 0; t < sizeof targets / sizeof targets[0]; t++) {
        if (argc > 2 && strcmp(argv[2], targets[t].name) != 0)
            continue;
        if (argc > 3) {
            for (int i = 3; i < argc; i++)
                total += replay_file(argv[i], targets[t].fn);
            continue;
        }
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/corpus/%s", argv[1], targets[t].name);
        size_t seeds = replay_dir(dir, targets[t].fn);
        snprintf(dir, sizeof dir, "%s/regressions/%s", argv[1], targets[t].name);
        size_t regs = replay_dir(dir, targets[t].fn);
        printf("%s: %zu seeds, %zu regression inputs: ok\n", targets[t].name, seeds, regs);
        total += seeds + regs;
        regressions += regs;
    }
    if (total == 0) {
        fprintf(stderr, "no inputs found under %s\n", argv[1]);
        return 1;
    }
    printf("%zu inputs replayed (%zu regression inputs), no property broken\n", total,
           regressions);
    return 0;
}
