/* The hash lane: a helper thread that computes a file's digests
 * (file_digest_i.h: SHA-256, and the fingerprint when one is taken) over the
 * byte ranges the archive writer reads into its frames, in order, while the
 * writer reads the next ones. Without it the writing thread reads and
 * hashes one after the other, and where compression is cheap (zeros,
 * repeated or random bytes) it is the only busy thread: on the bench
 * session the binaries kept one of two cores idle (docs/archive-format.md,
 * "Against every peer").
 *
 * The ranges stay where they were read (in the frame ring's slots), so the
 * writer must not let a slot be refilled before the lane is past it:
 * fb_hash_lane_wait_before. One writer thread uses a lane. */
#ifndef FB_HASH_LANE_I_H
#define FB_HASH_LANE_I_H

#include <stddef.h>
#include <stdint.h>

#include "fb_error.h"
#include "file_digest_i.h"

typedef struct fb_hash_lane fb_hash_lane;

/* Starts the thread. Returns 0, FB_ENOMEM or FB_EIO; without a lane the
 * writer hashes on its own thread. */
int fb_hash_lane_start(fb_hash_lane **out, fb_error *err);

/* The ranges pushed from now on belong to the file digested in d, which
 * the lane owns until fb_hash_lane_drain returns. */
void fb_hash_lane_begin(fb_hash_lane *l, fb_file_digest *d);
/* Hashes len bytes at p (tar stream offsets [d_start, d_start + len)); p
 * must stay valid and unchanged until the lane is past it. Waits only when
 * the lane is far behind. */
void fb_hash_lane_push(fb_hash_lane *l, const uint8_t *p, size_t len, uint64_t d_start);
/* Returns once every range that starts before stream offset d_end is
 * hashed: the frame ending there may be refilled. */
void fb_hash_lane_wait_before(fb_hash_lane *l, uint64_t d_end);
/* Returns once everything pushed is hashed; h is the caller's again. */
void fb_hash_lane_drain(fb_hash_lane *l);

/* Accepts NULL; drains first. */
void fb_hash_lane_free(fb_hash_lane *l);

#endif
