/* Small file-system helpers every writer of the store shares, so that the
 * crash-safe sequence (temp name, fsync, rename, fsync dir) and the
 * no-symlink-following rules live in one place. See docs/crash-safety.md. */
#ifndef FB_FSUTIL_H
#define FB_FSUTIL_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "fb_error.h"

/* Creates `name` in dirfd with content data atomically: writes a temp file
 * ".tmp-<name>-<random>" (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600), fsyncs it,
 * renames it over name, fsyncs dirfd. On error the temp file is removed and
 * name is untouched. dir_name is used in messages. */
int fb_atomic_write_at(int dirfd, const char *dir_name, const char *name, const void *data,
                       size_t len, fb_error *err);

/* fsync(dirfd); the error names dir_name. */
int fb_fsync_dir(int dirfd, const char *dir_name, fb_error *err);

/* Reads a whole regular file (O_NOFOLLOW; refuses non-regular files and files
 * over cap bytes as FB_ECORRUPT). *out is malloc'd and NUL-terminated.
 * Missing file is FB_ENOTFOUND. */
int fb_read_file_at(int dirfd, const char *dir_name, const char *name, size_t cap, char **out,
                    size_t *out_len, fb_error *err);
/* The same, and *st_out (may be NULL) is the fstat of the very file read:
 * its identity, for a cache keyed by it. */
int fb_read_file_at_stat(int dirfd, const char *dir_name, const char *name, size_t cap,
                         char **out, size_t *out_len, struct stat *st_out, fb_error *err);

/* write() all of buf, retrying on EINTR and short writes. Returns 0 or the
 * errno of the failure, a positive number: these raw helpers never return
 * FB_E* codes, and an errno can never be mistaken for one (FB_E* are
 * negative). */
int fb_write_all(int fd, const void *buf, size_t len);

/* Opens the directory that holds relative path `path` below root_fd, one
 * component at a time, never through a symlink (O_NOFOLLOW at every step;
 * O_PATH, so only search permission is needed on the way). With create,
 * missing components are made, mode 0700. On success returns 0 with *pfd
 * (owned by the caller) and *base, the last component (inside path).
 * Otherwise returns a positive errno and closes everything: ENOENT a
 * component is missing, ELOOP a component is a symlink, ENOTDIR it is
 * something else than a directory, EINVAL an empty or over-long component,
 * or the errno of openat/mkdirat; *failed_len is then the length of the
 * prefix of path up to and including the component that failed. The one
 * walk of the project: backup, restore and diff open beneath with it. */
int fb_open_parent_beneath(int root_fd, const char *path, bool create, int *pfd,
                           const char **base, size_t *failed_len);

/* Renames dirfd/from to dirfd/to unless `to` exists (RENAME_NOREPLACE;
 * where the file system lacks it, a check then a plain rename, which is
 * only safe under a lock that keeps others from creating `to`). Returns 0
 * or a positive errno: EEXIST when `to` exists. */
int fb_rename_noreplace_at(int dirfd, const char *from, const char *to);

/* Removes dirfd/name recursively without ever following a symlink or
 * entering another file system: a mount point inside (other st_dev or
 * mount id than dirfd's) fails the removal with FB_EIO naming it, and
 * nothing in the mount is touched. Missing is not an error. */
int fb_remove_tree_at(int dirfd, const char *dir_name, const char *name, fb_error *err);

/* Makes a directory dirfd/<prefix><random hex> with mode 0700 and returns its
 * name (in name_out, size >= strlen(prefix)+17) and an O_DIRECTORY fd. */
int fb_make_temp_dir_at(int dirfd, const char *dir_name, const char *prefix, char *name_out,
                        size_t name_out_size, int *fd_out, fb_error *err);

/* Random bytes from getrandom(). Returns 0 or FB_EIO. */
int fb_random_bytes(void *buf, size_t len, fb_error *err);

/* Joins a and b with '/' into a malloc'd string (NULL on ENOMEM). */
char *fb_path_join(const char *a, const char *b);

/* Selects names for the listings below; dirfd is the directory listed. */
typedef bool (*fb_name_filter_fn)(int dirfd, const char *name, void *ctx);

/* The names left to read in d, except "." and "..", that keep (NULL: all)
 * accepts, sorted bytewise. *names is a malloc'd array of malloc'd strings
 * (free with fb_string_list_free). d is not closed. Returns 0 or a positive
 * errno (ENOMEM when out of memory), as fb_write_all. */
int fb_read_dir_names(DIR *d, fb_name_filter_fn keep, void *ctx, char ***names, size_t *n);

/* The same for the directory open on dirfd, read through a fresh open file
 * description: dirfd's own offset is never moved, so concurrent readers of
 * one store (threads of the mount) cannot disturb each other. */
int fb_list_dir_names_at(int dirfd, fb_name_filter_fn keep, void *ctx, char ***names,
                         size_t *n);

/* Frees list and its n strings (NULL is accepted). Also declared in
 * fb_store.h, whose listings return such lists. */
void fb_string_list_free(char **list, size_t n);

/* One line of /proc/<pid>/mountinfo (proc(5)); strings unescaped ("\040" is
 * a space) and malloc'd. */
typedef struct fb_mount_entry {
    unsigned long mount_id;
    char *mount_point;
    char *fstype; /* "tmpfs", "ext4", "fuse.flowloom-backupfs", ... */
    char *source; /* the device or fsname: "none", "/dev/sda1", a store path */
} fb_mount_entry;

/* Parses one mountinfo line (a trailing '\n' is allowed) into *out.
 * FB_ECORRUPT when fields are missing, FB_ENOMEM. */
int fb_mountinfo_parse_line(const char *line, fb_mount_entry *out, fb_error *err);

/* Frees the strings of e and clears it (NULL is accepted). */
void fb_mount_entry_free(fb_mount_entry *e);

/* What is mounted at path, which must be absolute with no symlink, "." or ".."
 * (a realpath), according to mountinfo (NULL: /proc/self/mountinfo): the mount
 * path is the root of, found by the mount id statx reports for it, so that a
 * bind mount of the same file system (same st_dev) counts and a mount hidden
 * by a later mount above it does not. When statx cannot answer (a FUSE mount
 * whose daemon died answers ENOTCONN), the last line naming path as its mount
 * point, which is the topmost of mounts stacked there. Returns 0 with *out
 * filled, FB_ENOTFOUND when path is not a mount point, FB_EIO when mountinfo
 * cannot be read or parsed, FB_ENOMEM. */
int fb_mount_find(const char *path, const char *mountinfo, fb_mount_entry *out, fb_error *err);

/* The mount points at or below the directory open on dirfd, according to
 * mountinfo (NULL: /proc/self/mountinfo), as paths relative to it ("." for
 * the directory itself), in mountinfo order. Only mounts a walk from dirfd
 * reaches count (statx mount ids; one hidden by a later mount above it does
 * not). For what would be carried along, or refused, if the directory were
 * moved or replaced as a whole. dir_name is used in messages. Returns 0
 * with *out (free with fb_string_list_free; NULL when none), FB_EIO,
 * FB_ENOMEM. */
int fb_mounts_within(int dirfd, const char *dir_name, const char *mountinfo, char ***out,
                     size_t *n_out, fb_error *err);

#endif
