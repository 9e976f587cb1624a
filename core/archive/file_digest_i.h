/* The digests the archive writer takes of each file's bytes as it stores
 * them: the SHA-256 the manifest records and, when the backup's validation
 * follows the writer, an XXH3-128 fingerprint that validation holds the
 * bytes it reads back against (docs/archive-format.md, "Validation follows
 * the writer"). Both are taken of the same bytes while they are in cache.
 * Used by one thread at a time: the writer's, or the hash lane's while it
 * owns the file. */
#ifndef FB_FILE_DIGEST_I_H
#define FB_FILE_DIGEST_I_H

#include <stdbool.h>
#include <stddef.h>

#include "fb_hash.h"

typedef struct fb_file_digest {
    fb_sha256 sha;
    fb_xxh128 fp; /* state NULL: no fingerprint is taken */
} fb_file_digest;

static inline void fb_file_digest_update(fb_file_digest *d, const void *p, size_t n)
{
    fb_sha256_update(&d->sha, p, n);
    if (d->fp.state)
        fb_xxh128_update(&d->fp, p, n);
}

#endif
