/* The digests the archive writer takes of each file's bytes as it stores
 * them: the SHA-256 the manifest records and, when the backup's validation
 * follows the writer, an XXH3-128 fingerprint that validation holds the
 * bytes it reads back against (docs/archive-format.md, "Validation follows
 * the writer").
 *
 * Both are always updated together, by one call on one range: the
 * fingerprint vouches for exactly the bytes the SHA-256 took in, so equal
 * fingerprints on read-back prove the manifest's SHA-256 is of the stored
 * bytes. Taken apart (the SHA-256 on the hash lane, the fingerprint on the
 * reading thread) a lane that hashed the wrong bytes would pass validation
 * and publish a wrong SHA-256; that split won ~1.5% of a backup's time.
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
