/* Helpers of the fuzz targets (see fuzz_util.h). Kept free of anything
 * libFuzzer-specific so the replay unit test links them with gcc too. */
#include "fuzz_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

uint8_t fz_u8(fz_in *in)
{
    if (in->n == 0)
        return 0;
    uint8_t v = in->p[0];
    in->p++;
    in->n--;
    return v;
}

uint16_t fz_u16(fz_in *in)
{
    uint16_t lo = fz_u8(in);
    return (uint16_t)(lo | (uint16_t)fz_u8(in) << 8);
}

uint32_t fz_u32(fz_in *in)
{
    uint32_t lo = fz_u16(in);
    return lo | (uint32_t)fz_u16(in) << 16;
}

uint64_t fz_u64(fz_in *in)
{
    uint64_t lo = fz_u32(in);
    return lo | (uint64_t)fz_u32(in) << 32;
}

const uint8_t *fz_bytes(fz_in *in, size_t want, size_t *got)
{
    const uint8_t *p = in->p;
    *got = want < in->n ? want : in->n;
    in->p += *got;
    in->n -= *got;
    return p;
}

uint64_t fz_next(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

uint32_t fz_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void fz_put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

uint8_t *fz_zstd_frame(const void *src, size_t len, int level, size_t *out_len)
{
    static ZSTD_CCtx *cctx; /* kept across runs: creating one is costly */
    if (!cctx && !(cctx = ZSTD_createCCtx()))
        fz_harness("ZSTD_createCCtx");
    ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
    if (ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1)))
        fz_harness("ZSTD_CCtx_setParameter");
    size_t cap = ZSTD_compressBound(len);
    uint8_t *out = malloc(cap);
    if (!out)
        fz_harness("malloc");
    size_t c = ZSTD_compress2(cctx, out, cap, src, len);
    if (ZSTD_isError(c))
        fz_harness("ZSTD_compress2");
    *out_len = c;
    return out;
}

void fz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

void fz_harness(const char *what)
{
    fprintf(stderr, "fuzz harness (not a finding): %s: %s\n", what, strerror(errno));
    abort();
}

void fz_check_error(const char *what, int rc, const fb_error *err, const int *allowed)
{
    bool ok = false;
    for (const int *a = allowed; *a; a++)
        ok = ok || rc == *a;
    if (!ok)
        fz_fail("%s: returned %d, not one of its documented errors (message: %.200s)", what, rc,
                err->message);
    if (err->code != rc)
        fz_fail("%s: returned %d but the error says code %d", what, rc, err->code);
    if (memchr(err->message, '\0', sizeof err->message) == NULL || err->message[0] == '\0')
        fz_fail("%s: error %d without a message", what, rc);
}

bool fz_verbose(void)
{
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("FB_FUZZ_VERBOSE");
        v = e && *e && strcmp(e, "0") != 0;
    }
    return v;
}

int fz_memfd(const void *data, size_t len)
{
    int fd = memfd_create("fuzz-input", MFD_CLOEXEC);
    if (fd < 0)
        fz_harness("memfd_create");
    const uint8_t *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, p + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fz_harness("write to memfd");
        done += (size_t)n;
    }
    if (lseek(fd, 0, SEEK_SET) != 0)
        fz_harness("lseek memfd");
    return fd;
}

char *fz_tempdir(const char *tag)
{
    const char *base = getenv("FB_FUZZ_TMPDIR");
    if (!base || !*base)
        base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    size_t n = strlen(base) + strlen(tag) + 32;
    char *path = malloc(n);
    if (!path)
        fz_harness("malloc");
    snprintf(path, n, "%s/fbfuzz-%s-XXXXXX", base, tag);
    if (!mkdtemp(path))
        fz_harness("mkdtemp");
    return path;
}

/* Removes everything inside dfd. Directories are made searchable first:
 * a restored tree may hold a directory of mode 0 and the harness does not
 * always run as root. */
static void rm_inside(int dfd)
{
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            fchmodat(dirfd(d), de->d_name, 0700, 0);
            int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0)
                rm_inside(sub);
            unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
        } else {
            unlinkat(dirfd(d), de->d_name, 0);
        }
    }
    closedir(d);
}

void fz_rmtree(const char *path)
{
    chmod(path, 0700);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0)
        rm_inside(fd);
    if (rmdir(path) != 0 && errno != ENOENT)
        fz_harness(path);
}

void fz_write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        fz_harness(path);
    const uint8_t *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, p + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fz_harness(path);
        done += (size_t)n;
    }
    if (close(fd) != 0)
        fz_harness(path);
}

uint8_t *fz_read_file(const char *path, size_t *len)
{
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        fz_harness("malloc");
    size_t done = 0;
    while (done < size) {
        ssize_t n = read(fd, buf + done, size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    close(fd);
    *len = done;
    return buf;
}
