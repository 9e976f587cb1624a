/* Minimal test harness for the C unit tests: CHECK macros that report file
 * and line, a fresh temporary directory per test, deterministic random data. */
#ifndef FBTEST_H
#define FBTEST_H

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fbtest_failures;

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            fbtest_failures++;                                                      \
        }                                                                           \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                           \
    do {                                                                             \
        long long fbt_a = (long long)(a), fbt_b = (long long)(b);                    \
        if (fbt_a != fbt_b) {                                                        \
            fprintf(stderr, "%s:%d: CHECK_EQ_INT failed: %s == %lld, %s == %lld\n",    \
                    __FILE__, __LINE__, #a, fbt_a, #b, fbt_b);                       \
            fbtest_failures++;                                                       \
        }                                                                            \
    } while (0)

/* Stops the current test function when cond is false. */
#define REQUIRE(cond)                                                                 \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); \
            fbtest_failures++;                                                        \
            return;                                                                   \
        }                                                                             \
    } while (0)

/* A fixture step failed (not the code under test): the test program cannot go
 * on. Declared noreturn so that compilers know nothing after a failed step
 * runs; otherwise clang -Werror flags values set only when the step succeeds
 * (-Wsometimes-uninitialized). */
static inline _Noreturn void fbtest_die(const char *what)
{
    fprintf(stderr, "fixture: %s: %s\n", what, strerror(errno));
    exit(2);
}

/* Removes name in dfd and everything beneath it, by directory descriptors:
 * nftw works with whole paths and gave up (ENAMETOOLONG) on the trees the
 * path-length tests make, leaving them in /tmp. A directory the test made
 * unreadable is opened up first. True when name is gone. */
static inline bool fbtest_rm_at(int dfd, const char *name)
{
    if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
        return true;
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == EACCES && fchmodat(dfd, name, 0700, 0) == 0)
        fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return false;
    fchmod(fd, 0700);
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return false;
    }
    /* Entries removed while the listing runs may or may not be listed:
     * list again until a pass finds nothing left to remove. */
    for (bool removed = true; removed;) {
        removed = false;
        rewinddir(d);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            removed |= fbtest_rm_at(dirfd(d), e->d_name);
        }
    }
    closedir(d);
    return unlinkat(dfd, name, AT_REMOVEDIR) == 0;
}

/* Creates a fresh directory under $TMPDIR (or /tmp); returns a static-lifetime
 * malloc'd path. */
static inline char *fbtest_tempdir(void)
{
    const char *base = getenv("TMPDIR");
    char *path = malloc(4096);
    snprintf(path, 4096, "%s/fbtest-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(path)) {
        perror("mkdtemp");
        exit(2);
    }
    return path;
}

static inline void fbtest_rmtree(char *path)
{
    if (path) {
        fbtest_rm_at(AT_FDCWD, path);
        free(path);
    }
}

/* xorshift64*: reproducible data for a given seed. */
static inline uint64_t fbtest_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Fills buf with bytes that compress somewhat (runs of words) or not at all. */
static inline void fbtest_fill(uint8_t *buf, size_t len, uint64_t seed, int compressible)
{
    uint64_t s = seed | 1;
    for (size_t i = 0; i < len; i++) {
        if (compressible)
            buf[i] = (uint8_t)("lorem ipsum dolor sit amet "[(fbtest_rand(&s) % 7) * 3 % 27]);
        else
            buf[i] = (uint8_t)fbtest_rand(&s);
    }
}

#define RUN_TEST(fn)                                    \
    do {                                                \
        int fbt_before = fbtest_failures;               \
        fn();                                           \
        fprintf(stderr, "%s %s\n",                      \
                fbtest_failures == fbt_before ? "ok  " : "FAIL", #fn); \
    } while (0)

#define FBTEST_EXIT() return fbtest_failures ? 1 : 0

#endif
