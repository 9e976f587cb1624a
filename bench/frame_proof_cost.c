/* Frame proof cost: how long the archive reader takes to prove every frame
 * of an archive against its seek table (core/archive/frame_proof.c: one header
 * read plus one 3-byte read per block, per frame), next to what a first
 * random read costs anyway (open, seek table, one frame decoded). Prints a
 * table; a benchmark, never a test. Run by bench/frame_proof_cost.sh.
 *
 * usage: frame_proof_cost ARCHIVE [RUNS] */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "fb_archive_reader.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int open_reader(const char *path, fb_archive_reader **r)
{
    fb_error err;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        perror(path);
        return -1;
    }
    if (fb_archive_reader_open(fd, NULL, path, r, &err) != 0) {
        fprintf(stderr, "%s\n", err.message);
        close(fd);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: frame_proof_cost ARCHIVE [RUNS]\n");
        return 2;
    }
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    double best_open = 1e9, best_first = 1e9, best_last = 1e9;
    size_t frames = 0;
    uint64_t file_size = 0, stream = 0;
    for (int k = 0; k < runs; k++) {
        fb_archive_reader *r;
        char byte;
        size_t got;
        fb_error err;
        /* open + a read in frame 0: only frame 0 is proven */
        double t0 = now();
        if (open_reader(argv[1], &r))
            return 1;
        double t1 = now();
        if (fb_archive_reader_pread(r, &byte, 1, 0, &got, &err) != 0) {
            fprintf(stderr, "%s\n", err.message);
            return 1;
        }
        double t2 = now();
        fb_archive_reader_free(r);
        /* open + a read in the last frame: every frame is proven first */
        if (open_reader(argv[1], &r))
            return 1;
        frames = fb_archive_reader_seek_table(r)->n_frames;
        file_size = fb_archive_reader_file_size(r);
        stream = fb_archive_reader_uncompressed_size(r);
        double t3 = now();
        if (fb_archive_reader_pread(r, &byte, 1, stream - 1, &got, &err) != 0) {
            fprintf(stderr, "%s\n", err.message);
            return 1;
        }
        double t4 = now();
        fb_archive_reader_free(r);
        if (t1 - t0 < best_open)
            best_open = t1 - t0;
        if (t2 - t1 < best_first)
            best_first = t2 - t1;
        if (t4 - t3 < best_last)
            best_last = t4 - t3;
    }
    printf("| archive MiB | tar stream MiB | frames | open (seek table) ms | first read, frame 0 ms "
           "| first read, last frame ms (all frames proven) | proof per frame us |\n");
    printf("|---|---|---|---|---|---|---|\n");
    printf("| %.1f | %.1f | %zu | %.3f | %.3f | %.3f | %.2f |\n", (double)file_size / 1048576,
           (double)stream / 1048576, frames, best_open * 1e3, best_first * 1e3, best_last * 1e3,
           frames > 1 ? (best_last - best_first) * 1e6 / (double)(frames - 1) : 0.0);
    return 0;
}
