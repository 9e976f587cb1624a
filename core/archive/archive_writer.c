/* archive_writer: produces archive.tar.zst in the seekable layout that
 * docs/archive-format.md describes. libarchive formats the pax tar stream
 * into a callback with no blocking of its own (the plainest small files get
 * their headers from tar_plain.c instead); the stream goes into the frame
 * ring (frame_ring_i.h), which cuts it into frames of frame_size bytes,
 * compresses them on worker threads and writes them in order. The seek
 * table goes last. A small file starts a frame of its own once the frame
 * being filled holds SMALL_FRAME bytes (small_file_frame).
 *
 * The calling thread reads the source files straight into the frame being
 * filled and hashes each file there (the bytes are still in cache). */
#include "fb_archive_writer.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fb_hash.h"
#include "file_digest_i.h"
#include "frame_ring_i.h"
#include "hash_lane_i.h"
#include "tar_plain_i.h"

/* Source reads are capped so the bytes are still in cache when hashed. */
#define READ_CHUNK (256u * 1024)
/* A file smaller than this starts a new frame when the frame being filled
 * already holds this much: a small file is then read through the mount by
 * decoding at most about twice this, not a whole frame_size frame (the
 * first read of a 3 KB file decoded 1 MiB, 1.3-2.5 ms, most of its cost;
 * with 128 KiB here, its frame of up to 256 KiB still cost 0.1-0.2 ms of
 * a 1.6 ms first read). Compression loses little: 4% on small JSON files
 * (zstd -b3, 32 KiB against 1 MiB blocks; frames here hold 32-64 KiB),
 * nothing on large files, which keep full frames. */
#define SMALL_FRAME (32u * 1024)
/* Files larger than this are hashed on the hash lane while the next chunk
 * is read; a smaller one is not worth a hand-off. */
#define LANE_MIN_SIZE (1024u * 1024)

struct fb_archive_writer {
    char *name;
    const fb_cancel *cancel; /* borrowed; polled per chunk of a file */

    struct archive *ar;
    struct archive_entry *entry;
    /* libarchive converts names from the current locale's charset. Under
     * the "C" locale that conversion fails for every non-ASCII byte, and
     * libarchive then stores that entry's names raw with hdrcharset=BINARY;
     * ASCII names are stored plainly. So the bytes stored never depend on
     * the caller's locale and are never transcoded. */
    locale_t c_locale;

    fb_frame_ring ring;
    bool ring_ready;
    /* The calling thread's digests of each file, reset per file: a context
     * allocated per file cost ~0.04 s per 100,000 small files. */
    fb_file_digest file_digest;
    bool file_hash_ready;
    /* Hashes large files beside the reads (hash_lane_i.h); NULL: the
     * calling thread hashes them. */
    fb_hash_lane *lane;

    int failed;     /* first error code, 0 while healthy */
    fb_error error; /* its message */
    bool finished;
    bool discarding; /* _free: swallow whatever libarchive still emits */
};

/* Records the first error; the writer is unusable from then on. */
static int fail(fb_archive_writer *w, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(fb_archive_writer *w, int code, const char *fmt, ...)
{
    if (w->failed)
        return w->failed;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->error.message, sizeof w->error.message, fmt, ap);
    va_end(ap);
    w->error.code = code;
    w->error.sys_errno = 0;
    w->failed = code;
    return code;
}

/* Hands the writer's error to the caller. */
static int report(fb_archive_writer *w, fb_error *err)
{
    if (err)
        *err = w->error;
    return w->failed;
}

static int check_usable(fb_archive_writer *w, fb_error *err)
{
    if (!w)
        return fb_error_set(err, FB_EMISUSE, "archive writer: NULL writer");
    if (w->failed)
        return fb_error_set(err, FB_EMISUSE, "%s: writer unusable after an earlier error: %s",
                            w->name, w->error.message);
    if (w->finished)
        return fb_error_set(err, FB_EMISUSE, "%s: writer already finished", w->name);
    return 0;
}

/* Takes the ring's error as the writer's. */
static int ring_failed(fb_archive_writer *w)
{
    if (!w->failed) {
        w->error = w->ring.error;
        w->failed = w->ring.failed;
    }
    return w->failed;
}

/* libarchive's write callback: every byte of the tar stream passes here.
 *
 * It never reports a failure to libarchive: it records it in the writer
 * (w->failed, via fail()) and swallows the rest, and every caller checks
 * w->failed after each libarchive call. A failed write callback puts
 * libarchive in ARCHIVE_STATE_FATAL, and then archive_write_free() skips
 * archive_write_close(), the only place where libarchive before 3.8.2 frees
 * the client filter's state: 33 bytes allocated by archive_write_open2()
 * leaked by every backup whose write failed (EFBIG, ENOSPC, EIO) while
 * libarchive was writing a tar header. As our failures never make it
 * FATAL, archive_write_free() runs libarchive's own close, which releases
 * everything; what that close still emits is discarded. */
static la_ssize_t on_tar_bytes(struct archive *a, void *ctx, const void *buf, size_t len)
{
    (void)a;
    fb_archive_writer *w = ctx;
    if (w->discarding || w->failed)
        return (la_ssize_t)len;
    const uint8_t *p = buf;
    size_t left = len;
    while (left) {
        uint8_t *dst;
        size_t room;
        if (fb_frame_ring_room(&w->ring, &dst, &room)) {
            ring_failed(w);
            break;
        }
        size_t n = left < room ? left : room;
        /* File data is read straight into the frame and libarchive passes
         * our pointer through, so it needs no copy. */
        if (dst != p)
            memmove(dst, p, n);
        p += n;
        left -= n;
        if (fb_frame_ring_commit(&w->ring, n)) {
            ring_failed(w);
            break;
        }
    }
    return (la_ssize_t)len;
}

/* The ring's before_reuse: a frame is refilled only once the lane has
 * hashed whatever it was given of it. */
static void lane_before_reuse(void *ctx, uint64_t d_end)
{
    fb_archive_writer *w = ctx;
    fb_hash_lane_wait_before(w->lane, d_end);
}

/* ---- lifecycle ---- */

int fb_archive_writer_new(int fd, const fb_archive_writer_options *opts, fb_archive_writer **out,
                          fb_error *err)
{
    *out = NULL;
    if (!opts)
        return fb_error_set(err, FB_EMISUSE, "archive writer: no options");
    const char *name = opts->name ? opts->name : "archive";
    if (opts->level < FB_LEVEL_MIN || opts->level > FB_LEVEL_MAX)
        return fb_error_set(err, FB_EINVAL, "%s: compression level %d out of range %d..%d", name,
                            opts->level, FB_LEVEL_MIN, FB_LEVEL_MAX);
    if (opts->frame_size < FB_FRAME_SIZE_MIN || opts->frame_size > FB_FRAME_SIZE_MAX)
        return fb_error_set(err, FB_EINVAL, "%s: frame size %llu out of range %u..%u", name,
                            (unsigned long long)opts->frame_size, FB_FRAME_SIZE_MIN,
                            FB_FRAME_SIZE_MAX);
    if (opts->threads > FB_THREADS_MAX)
        return fb_error_set(err, FB_EINVAL, "%s: %u compression threads, at most %u allowed",
                            name, opts->threads, FB_THREADS_MAX);
    if (fd < 0)
        return fb_error_set(err, FB_EMISUSE, "%s: invalid file descriptor", name);

    fb_archive_writer *w = calloc(1, sizeof *w);
    if (!w)
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", name);
    w->cancel = opts->cancel;
    w->name = strdup(name);
    w->c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (!w->name || !w->c_locale)
        goto nomem;
    w->ring_ready = true;
    if (fb_frame_ring_init(&w->ring, fd, w->name, opts, err)) {
        fb_archive_writer_free(w);
        return FB_ENOMEM;
    }
    if (fb_sha256_init(&w->file_digest.sha, err)) {
        fb_archive_writer_free(w);
        return FB_ENOMEM;
    }
    w->file_hash_ready = true;
    if (opts->file_fingerprints && fb_xxh128_init(&w->file_digest.fp, err)) {
        fb_archive_writer_free(w);
        return FB_ENOMEM;
    }
    /* Only a speed-up, and only with a second core to run on. */
    fb_error lane_err;
    if (w->ring.n_threads >= 2 && fb_hash_lane_start(&w->lane, &lane_err) == 0) {
        w->ring.before_reuse = lane_before_reuse;
        w->ring.reuse_ctx = w;
    }

    w->entry = archive_entry_new();
    w->ar = archive_write_new();
    if (!w->entry || !w->ar)
        goto nomem;
    locale_t prev = uselocale(w->c_locale);
    /* Full pax, not pax-restricted: restricted drops sub-second mtimes
     * unless another attribute already forced an extended header. Zero
     * bytes per block hands every byte to on_tar_bytes at once, and one
     * byte in the last block stops libarchive padding the end to 10 KiB. */
    int r = archive_write_set_format_pax(w->ar);
    if (r == ARCHIVE_OK)
        r = archive_write_set_bytes_per_block(w->ar, 0);
    if (r == ARCHIVE_OK)
        r = archive_write_set_bytes_in_last_block(w->ar, 1);
    if (r == ARCHIVE_OK)
        r = archive_write_open(w->ar, w, NULL, on_tar_bytes, NULL);
    uselocale(prev);
    if (r != ARCHIVE_OK) {
        fb_error_set(err, FB_EIO, "%s: libarchive setup failed: %s", name,
                     archive_error_string(w->ar) ? archive_error_string(w->ar) : "unknown error");
        fb_archive_writer_free(w);
        return FB_EIO;
    }
    *out = w;
    return 0;

nomem:
    fb_archive_writer_free(w);
    return fb_error_set(err, FB_ENOMEM, "%s: out of memory", name);
}

void fb_archive_writer_free(fb_archive_writer *w)
{
    if (!w)
        return;
    /* The lane lets go of the frames, the workers stop; what libarchive
     * still emits is swallowed. */
    fb_hash_lane_free(w->lane);
    w->lane = NULL;
    if (w->ring_ready)
        fb_frame_ring_fini(&w->ring);
    w->discarding = true;
    if (w->ar) {
        locale_t prev = w->c_locale ? uselocale(w->c_locale) : (locale_t)0;
        archive_write_free(w->ar); /* may emit the tar end: swallowed */
        if (w->c_locale)
            uselocale(prev);
    }
    archive_entry_free(w->entry);
    if (w->file_hash_ready)
        fb_sha256_fini(&w->file_digest.sha);
    fb_xxh128_fini(&w->file_digest.fp);
    if (w->c_locale)
        freelocale(w->c_locale);
    free(w->name);
    free(w);
}


/* ---- entries ---- */

/* Paths are relative, with no empty, "." or ".." component: the manifest
 * maps them to the tar stream one to one and a restore must never be led
 * outside its target. */
static int check_rel_path(fb_archive_writer *w, const char *what, const char *path,
                          fb_error *err)
{
    if (!path || !*path)
        return fb_error_set(err, FB_EINVAL, "%s: empty %s", w->name, what);
    size_t len = strlen(path);
    if (len > FB_PATH_MAX)
        return fb_error_set(err, FB_EINVAL, "%s: %s longer than %d bytes: %.64s...", w->name,
                            what, FB_PATH_MAX, path);
    const char *c = path;
    for (;;) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return fb_error_set(err, FB_EINVAL,
                                "%s: %s %s: must be relative without empty, '.' or '..' parts",
                                w->name, what, path);
        if (!slash)
            break;
        c = slash + 1;
    }
    return 0;
}

/* fb_entry_type_name lives in another module; messages need only this. */
static const char *type_word(fb_entry_type t)
{
    switch (t) {
    case FB_ENTRY_FILE: return "file";
    case FB_ENTRY_DIR: return "dir";
    case FB_ENTRY_SYMLINK: return "symlink";
    case FB_ENTRY_HARDLINK: return "hardlink";
    }
    return "unknown";
}

static int start_entry(fb_archive_writer *w, const char *path, const fb_entry_meta *meta,
                       fb_entry_type type, fb_error *err)
{
    int rc = check_usable(w, err);
    if (rc)
        return rc;
    rc = check_rel_path(w, "path", path, err);
    if (rc)
        return rc;
    if (!meta)
        return fb_error_set(err, FB_EMISUSE, "%s: %s: no metadata", w->name, path);
    if (meta->type != type)
        return fb_error_set(err, FB_EMISUSE, "%s: %s: entry type %s given to the %s writer",
                            w->name, path, type_word(meta->type), type_word(type));
    if (meta->mtime_nsec > 999999999u)
        return fb_error_set(err, FB_EINVAL, "%s: %s: mtime nanoseconds %u out of range",
                            w->name, path, meta->mtime_nsec);

    int64_t sec = meta->mtime;
    long nsec = (long)meta->mtime_nsec;
    /* libarchive prints a pax time as sec.nsec with the sign of sec applied
     * to the whole: a negative time with a fraction has to be handed to it
     * as the next second up with the complementary fraction. */
    if (sec < 0 && nsec) {
        if (sec == -1)
            return fb_error_set(err, FB_EUNSUPPORTED,
                                "%s: %s: mtime between -1 and 0 seconds cannot be stored in pax",
                                w->name, path);
        sec += 1;
        nsec = 1000000000L - nsec;
    }

    struct archive_entry *e = w->entry;
    archive_entry_clear(e);
    archive_entry_copy_pathname(e, path);
    archive_entry_set_perm(e, (mode_t)(meta->mode & 07777));
    archive_entry_set_uid(e, (la_int64_t)meta->uid);
    archive_entry_set_gid(e, (la_int64_t)meta->gid);
    archive_entry_set_mtime(e, (time_t)sec, nsec);
    switch (type) {
    case FB_ENTRY_FILE:
        if (meta->size > INT64_MAX)
            return fb_error_set(err, FB_EINVAL, "%s: %s: size too large", w->name, path);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_size(e, (la_int64_t)meta->size);
        break;
    case FB_ENTRY_DIR:
        archive_entry_set_filetype(e, AE_IFDIR);
        archive_entry_set_size(e, 0);
        break;
    case FB_ENTRY_SYMLINK:
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_size(e, 0);
        break;
    case FB_ENTRY_HARDLINK:
        /* A tar hardlink carries no data of its own. */
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_size(e, 0);
        break;
    }
    return 0;
}

/* Converts a libarchive failure into the writer's error. */
static int archive_failed(fb_archive_writer *w, const char *path, const char *what)
{
    if (w->failed)
        return w->failed; /* our callback failed: its error says why */
    const char *msg = archive_error_string(w->ar);
    return fail(w, FB_EIO, "%s: %s: %s: %s", w->name, path, what, msg ? msg : "libarchive error");
}

static int write_header(fb_archive_writer *w, const char *path, fb_error *err)
{
    locale_t prev = uselocale(w->c_locale);
    int r = archive_write_header(w->ar, w->entry);
    uselocale(prev);
    /* ARCHIVE_WARN here means a name could not be put into the locale's
     * charset and was stored as raw bytes instead: exactly what we want. */
    if (w->failed || r < ARCHIVE_WARN) {
        archive_failed(w, path, "writing tar header");
        return report(w, err);
    }
    return 0;
}

static int end_entry(fb_archive_writer *w, const char *path, fb_error *err)
{
    if (archive_write_finish_entry(w->ar) != ARCHIVE_OK || w->failed) {
        archive_failed(w, path, "finishing tar entry");
        return report(w, err);
    }
    return 0;
}

int fb_archive_writer_add_dir(fb_archive_writer *w, const char *path, const fb_entry_meta *meta,
                              fb_error *err)
{
    int rc = start_entry(w, path, meta, FB_ENTRY_DIR, err);
    if (!rc)
        rc = write_header(w, path, err);
    if (!rc)
        rc = end_entry(w, path, err);
    return rc;
}

int fb_archive_writer_add_symlink(fb_archive_writer *w, const char *path,
                                  const fb_entry_meta *meta, const char *target, fb_error *err)
{
    int rc = start_entry(w, path, meta, FB_ENTRY_SYMLINK, err);
    if (rc)
        return rc;
    if (!target || !*target)
        return fb_error_set(err, FB_EINVAL, "%s: %s: empty symlink target", w->name, path);
    if (strlen(target) > FB_PATH_MAX)
        return fb_error_set(err, FB_EINVAL, "%s: %s: symlink target longer than %d bytes",
                            w->name, path, FB_PATH_MAX);
    archive_entry_copy_symlink(w->entry, target);
    rc = write_header(w, path, err);
    if (!rc)
        rc = end_entry(w, path, err);
    return rc;
}

int fb_archive_writer_add_hardlink(fb_archive_writer *w, const char *path,
                                   const fb_entry_meta *meta, const char *link_path,
                                   fb_error *err)
{
    int rc = start_entry(w, path, meta, FB_ENTRY_HARDLINK, err);
    if (rc)
        return rc;
    rc = check_rel_path(w, "hardlink target", link_path, err);
    if (rc)
        return rc;
    archive_entry_copy_hardlink(w->entry, link_path);
    rc = write_header(w, path, err);
    if (!rc)
        rc = end_entry(w, path, err);
    return rc;
}

/* Before a small file's headers: ends the frame being filled when it
 * already holds SMALL_FRAME bytes (see SMALL_FRAME). */
static int small_file_frame(fb_archive_writer *w, const fb_entry_meta *meta, fb_error *err)
{
    if (meta->size >= SMALL_FRAME || fb_frame_ring_filled(&w->ring) < SMALL_FRAME)
        return 0;
    if (fb_frame_ring_end_frame(&w->ring)) {
        ring_failed(w);
        return report(w, err);
    }
    return 0;
}

/* Starts the digests of the next file. */
static int digest_reset(fb_archive_writer *w, fb_error *err)
{
    if (w->file_digest.fp.state)
        fb_xxh128_reset(&w->file_digest.fp);
    return fb_sha256_reset(&w->file_digest.sha, err);
}

static void digest_final(fb_archive_writer *w, fb_archive_file_result *res)
{
    fb_sha256_final(&w->file_digest.sha, res->sha256);
    if (w->file_digest.fp.state)
        fb_xxh128_digest(&w->file_digest.fp, res->fingerprint);
    else
        memset(res->fingerprint, 0, sizeof res->fingerprint);
}

int fb_archive_writer_add_file(fb_archive_writer *w, const char *path, const fb_entry_meta *meta,
                               int src_fd, fb_archive_file_result *res, fb_error *err)
{
    int rc = start_entry(w, path, meta, FB_ENTRY_FILE, err);
    if (rc == 0)
        rc = small_file_frame(w, meta, err);
    if (rc)
        return rc;
    fb_file_digest *h = &w->file_digest;
    fb_hash_lane *lane = NULL;
    rc = digest_reset(w, err);
    if (rc)
        return rc;
    rc = write_header(w, path, err);
    if (rc)
        goto out;
    /* Everything passed to the callback so far precedes the file's data. */
    uint64_t offset = w->ring.d_total;

    /* A large file is hashed on the lane, chunk by chunk behind the reads. */
    lane = w->lane && meta->size > LANE_MIN_SIZE ? w->lane : NULL;
    if (lane)
        fb_hash_lane_begin(lane, h);
    uint64_t left = meta->size;
    while (left) {
        /* Per chunk: one large file must not keep an interrupted backup
         * running for minutes. */
        if (fb_cancelled(w->cancel)) {
            fail(w, FB_EINTERRUPTED, "%s: interrupted while storing %s", w->name, path);
            rc = report(w, err);
            goto out;
        }
        uint8_t *dst;
        size_t room;
        if (fb_frame_ring_room(&w->ring, &dst, &room)) {
            ring_failed(w);
            rc = report(w, err);
            goto out;
        }
        size_t want = room < READ_CHUNK ? room : READ_CHUNK;
        if ((uint64_t)want > left)
            want = (size_t)left;
        ssize_t got = read(src_fd, dst, want);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            fail(w, FB_EIO, "%s: read: %s", path, strerror(e));
            w->error.sys_errno = e;
            rc = report(w, err);
            goto out;
        }
        if (got == 0) {
            fail(w, FB_ECHANGED, "%s: shrank while being read (%llu of %llu bytes)", path,
                 (unsigned long long)(meta->size - left), (unsigned long long)meta->size);
            rc = report(w, err);
            goto out;
        }
        if (lane)
            fb_hash_lane_push(lane, dst, (size_t)got, w->ring.d_total);
        else
            fb_file_digest_update(h, dst, (size_t)got);
        la_ssize_t n = archive_write_data(w->ar, dst, (size_t)got);
        if (n != got || w->failed) {
            archive_failed(w, path, "writing file data");
            rc = report(w, err);
            goto out;
        }
        left -= (uint64_t)got;
    }
    rc = end_entry(w, path, err);
    if (rc)
        goto out;
    if (lane) {
        fb_hash_lane_drain(lane);
        lane = NULL;
    }
    if (res) {
        res->offset = offset;
        digest_final(w, res);
    }
out:
    if (lane) /* nothing may point into the frames once we return */
        fb_hash_lane_drain(lane);
    return rc;
}

/* Header, data and padding of a plain file, straight into the frames. */
static int add_plain_data(fb_archive_writer *w, const char *path, size_t len,
                          const fb_entry_meta *meta, const void *data, uint64_t *offset)
{
    static const uint8_t zeros[FB_TAR_BLOCK];
    uint8_t hdr[3 * FB_TAR_BLOCK];
    size_t n = fb_tar_plain_headers(hdr, path, len, meta);
    on_tar_bytes(w->ar, w, hdr, n);
    *offset = w->ring.d_total;
    size_t size = (size_t)meta->size;
    if (size)
        on_tar_bytes(w->ar, w, data, size);
    if (size % FB_TAR_BLOCK)
        on_tar_bytes(w->ar, w, zeros, FB_TAR_BLOCK - size % FB_TAR_BLOCK);
    return w->failed;
}

int fb_archive_writer_add_data(fb_archive_writer *w, const char *path, const fb_entry_meta *meta,
                               const void *data, fb_archive_file_result *res, fb_error *err)
{
    int rc = start_entry(w, path, meta, FB_ENTRY_FILE, err);
    if (rc == 0)
        rc = small_file_frame(w, meta, err);
    if (rc)
        return rc;
    if (meta->size && !data)
        return fb_error_set(err, FB_EMISUSE, "%s: %s: no data", w->name, path);
    if ((rc = digest_reset(w, err)))
        return rc;
    size_t len = (size_t)meta->size, plen = strlen(path);
    uint64_t offset;
    if (fb_tar_plain_file(path, plen, meta)) {
        if (add_plain_data(w, path, plen, meta, data, &offset))
            return report(w, err);
    } else {
        if ((rc = write_header(w, path, err)))
            return rc;
        offset = w->ring.d_total;
        la_ssize_t n = len ? archive_write_data(w->ar, data, len) : 0;
        if (n != (la_ssize_t)len || w->failed) {
            archive_failed(w, path, "writing file data");
            return report(w, err);
        }
        if ((rc = end_entry(w, path, err)))
            return rc;
    }
    fb_file_digest_update(&w->file_digest, data, len);
    if (res) {
        res->offset = offset;
        digest_final(w, res);
    }
    return 0;
}

/* ---- the end ---- */

int fb_archive_writer_finish(fb_archive_writer *w, fb_archive_summary *out, fb_error *err)
{
    int rc = check_usable(w, err);
    if (rc)
        return rc;
    locale_t prev = uselocale(w->c_locale);
    int r = archive_write_close(w->ar); /* the two zero blocks that end a tar */
    uselocale(prev);
    if (r != ARCHIVE_OK || w->failed) {
        archive_failed(w, "(end)", "closing tar stream");
        return report(w, err);
    }
    if (fb_frame_ring_finish(&w->ring, out)) {
        ring_failed(w);
        return report(w, err);
    }
    w->finished = true;
    return 0;
}
