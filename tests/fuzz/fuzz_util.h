/* Shared by the libFuzzer targets in tests/fuzz/ and by the unit test that
 * replays their committed seeds and regression inputs with any compiler
 * (tests/unit/test_fuzz_regressions.c): reading parameters out of the fuzz
 * input, failing loudly, memfds and scratch directories.
 *
 * A target is a function `int fuzz_<name>(const uint8_t *, size_t)` that
 * returns 0 and calls fz_fail (abort) when a property does not hold, so
 * libFuzzer records the input as a crash and the replay test dies on it. */
#ifndef FB_FUZZ_UTIL_H
#define FB_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_error.h"

/* The targets, one per parser of untrusted input (see tests/fuzz/README.md). */
int fuzz_manifest(const uint8_t *data, size_t size);
int fuzz_index(const uint8_t *data, size_t size);
int fuzz_config(const uint8_t *data, size_t size);
int fuzz_seek_table(const uint8_t *data, size_t size);
int fuzz_archive_raw(const uint8_t *data, size_t size);
int fuzz_archive_structured(const uint8_t *data, size_t size);
int fuzz_tar_header(const uint8_t *data, size_t size);
int fuzz_restore(const uint8_t *data, size_t size);

/* Each target file ends with FB_FUZZ_ENTRY(fuzz_<name>): the libFuzzer entry
 * point, left out of the replay build, where all targets share one program. */
#ifdef FB_FUZZ_REPLAY
#define FB_FUZZ_ENTRY(fn)
#else
#define FB_FUZZ_ENTRY(fn)                                                  \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);          \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)           \
    {                                                                      \
        return fn(data, size);                                             \
    }
#endif

/* ---- reading parameters from the input ----
 * Past the end every read gives zeros, so any input is a valid parameter
 * list and libFuzzer's mutations stay meaningful. */
typedef struct fz_in {
    const uint8_t *p;
    size_t n;
} fz_in;

uint8_t fz_u8(fz_in *in);
uint16_t fz_u16(fz_in *in);
uint32_t fz_u32(fz_in *in);
uint64_t fz_u64(fz_in *in);
/* Up to want bytes (fewer at the end); *got says how many. */
const uint8_t *fz_bytes(fz_in *in, size_t want, size_t *got);

/* splitmix64: a deterministic generator seeded from the input, for data
 * that is too big to take from the input byte by byte. */
uint64_t fz_next(uint64_t *state);

/* Little-endian fields as the seek table and zstd frames store them. */
uint32_t fz_get_le32(const uint8_t *p);
void fz_put_le32(uint8_t *p, uint32_t v);

/* One zstd frame of src[0..len) made as the archive writer makes them
 * (content size and checksum in the header) at the given level: malloc'd,
 * *out_len bytes. */
uint8_t *fz_zstd_frame(const void *src, size_t len, int level, size_t *out_len);

/* A property failed: prints "fuzz: <message>" and aborts. */
_Noreturn void fz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The harness itself could not go on (out of fds, disk full): aborts too,
 * but says it is not a finding. */
_Noreturn void fz_harness(const char *what);

/* An error a core function returned must be one of its documented codes
 * and come with a message; allowed is a 0-terminated list of FB_E* codes. */
void fz_check_error(const char *what, int rc, const fb_error *err, const int *allowed);

/* FB_FUZZ_VERBOSE=1 in the environment: targets say on stderr what the
 * code under test answered (for looking at one input, never while fuzzing). */
bool fz_verbose(void);

/* A memfd holding data, positioned at 0. */
int fz_memfd(const void *data, size_t len);

/* A fresh directory under $FB_FUZZ_TMPDIR, else $TMPDIR, else /tmp:
 * malloc'd path. fz_rmtree removes it whatever the modes inside. */
char *fz_tempdir(const char *tag);
void fz_rmtree(const char *path);

/* Writes a whole file (O_EXCL), reads one back (malloc'd, NULL if absent). */
void fz_write_file(const char *path, const void *data, size_t len);
uint8_t *fz_read_file(const char *path, size_t *len);

#endif
