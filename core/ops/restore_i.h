/* Private to restore (core/ops/restore.c, core/ops/restore_extract.c): the state
 * of one restore run, shared by the steps in the caller's process and the
 * extraction that runs in a child. */
#ifndef FB_RESTORE_I_H
#define FB_RESTORE_I_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_archive_reader.h"
#include "fb_lock.h"
#include "fb_manifest.h"
#include "fb_restore.h"
#include "fb_store.h"

typedef struct run {
    fb_store *store;
    const fb_restore_request *req;
    fb_restore_result *out;
    fb_error *err;
    char label[FB_SESSION_ID_MAX + FB_BACKUP_ID_LEN + 2]; /* "<sid>/<backup_id>" */
    fb_manifest m;
    size_t *by_path;      /* manifest indices sorted by path */
    int store_session_fd; /* .flowloom/backups/<sid> */
    fb_archive_reader *reader;
    /* The destination: dest_name inside parent_fd, which also holds the
     * staging dir. parent_fd is -1 in a dry run whose parent is absent. */
    bool into_session;
    int parent_fd;
    char *parent_shown;
    char *dest_name;
    char *dest_shown;
    /* The staging dir, while it exists under its own name. */
    char staging[NAME_MAX + 1];
    bool staging_made;
    int staging_fd;
    fb_lock lock;
    size_t changes_cap;
} run;

/* Setuid, setgid and sticky bits are never restored, nor write permission
 * for others: a restored tree must not hand privileges or write access to
 * other local users (RELIABILITY A7), and FlowLoom sessions never need it. */
static inline uint32_t restore_mode(uint32_t mode)
{
    return mode & 0777u & ~0002u;
}

static inline int restore_oom(fb_error *err)
{
    return fb_error_set(err, FB_ENOMEM, "out of memory");
}

/* Extracts r's backup into r's staging dir in a child process (see
 * restore_extract.c): every entry checked against the manifest as it is
 * written. Fills r->out's counts. Returns 0, FB_ECORRUPT (the backup is
 * damaged), FB_EIO, FB_ENOMEM. */
int restore_extract(run *r);

#endif
