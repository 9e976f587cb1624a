/* The extraction of a restore's whole tree (fb_as_of.h): its backups, the
 * base full first, each one's archive read in full and checked against its
 * own manifest (every header, every file's SHA-256, the archive's SHA-256),
 * while only the entries the tree takes from that backup are written into
 * the one staging dir. An entry a later backup replaces is verified and
 * skipped, so each path of the staging dir is written once, by the backup
 * that holds it.
 *
 * A directory of a tree of several backups may be made by the extraction
 * of an earlier backup (for a file in it that only that backup holds)
 * before the backup holding the directory itself is extracted: so all
 * directories stay 0700 until every backup is in, then get their stored
 * modes and mtimes, deepest first. */
#include "restore_i.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fb_text.h"
#include "tar_check_i.h"

int fb_restore_check_cancel(run *r)
{
    if (!fb_cancelled(r->req->cancel))
        return 0;
    return fb_error_set(r->err, FB_EINTERRUPTED, "interrupted");
}

/* The parser already refuses duplicates, entries below a non-directory and
 * hardlinks to anything but an earlier file. Restore also needs every
 * entry's parent to be an earlier directory entry, so each directory it
 * creates is one whose mode and mtime the backup holds (a backup's walk
 * always lists a directory before what it contains). */
static int check_tree_order(run *r)
{
    size_t n = r->m.n_entries;
    if (!(r->by_path = fb_manifest_sort_by_path(&r->m)))
        return restore_oom(r->err);
    for (size_t i = 0; i < n; i++) {
        const fb_manifest_entry *e = &r->m.entries[i];
        const char *slash = strrchr(e->path, '/');
        if (!slash)
            continue;
        long j = fb_manifest_find_path(&r->m, r->by_path, e->path,
                                      (size_t)(slash - e->path));
        if (j < 0 || (size_t)j >= i || r->m.entries[j].meta.type != FB_ENTRY_DIR) {
            char esc[600];
            fb_path_escape(e->path, esc, sizeof esc);
            return fb_error_set(r->err, FB_ECORRUPT,
                                "%s: manifest.json: %s: its parent is not an earlier directory "
                                "entry",
                                r->label, esc);
        }
    }
    return 0;
}

/* Opens the archive and checks what can be checked before reading it: its
 * size, seek table and frame count against the manifest. */
static int open_archive(run *r)
{
    int fd;
    const char *id = r->tree->sources[r->layer].id;
    int rc = fb_store_open_archive(r->store_session_fd, id, &fd, r->err);
    if (rc == FB_ENOTFOUND)
        return fb_error_set(r->err, FB_ECORRUPT, "%s: archive.tar.zst is missing", r->label);
    if (rc < 0)
        return rc;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fb_error_set_errno(r->err, e, "%s: " FB_ARCHIVE_NAME, r->label);
    }
    if ((uint64_t)st.st_size != r->m.archive.size) {
        close(fd);
        return fb_error_set(r->err, FB_ECORRUPT,
                            "%s: archive.tar.zst: size is %lld bytes, the manifest says %llu",
                            r->label, (long long)st.st_size,
                            (unsigned long long)r->m.archive.size);
    }
    char name[sizeof r->label + 32];
    snprintf(name, sizeof name, "%s: " FB_ARCHIVE_NAME, r->label);
    rc = fb_archive_reader_open(fd, NULL, name, &r->reader, r->err);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fb_tar_frames_check(fb_archive_reader_seek_table(r->reader), &r->m, r->label, r->err);
}

/* Whether manifest entry me can be where tree entry x is written from: the
 * same entry, or for a hardlink made a file, the file holding its bytes. */
static bool same_content(const fb_as_of_entry *x, const fb_manifest_entry *me)
{
    if (x->data_path ? me->meta.type != FB_ENTRY_FILE : me->meta.type != x->e.meta.type)
        return false;
    if (me->meta.type != FB_ENTRY_FILE)
        return true;
    return me->meta.size == x->e.meta.size &&
           memcmp(me->sha256, x->e.sha256, FB_SHA256_LEN) == 0;
}

static int changed_since(run *r)
{
    return fb_error_set(r->err, FB_ECORRUPT,
                        "%s: manifest.json changed while the restore read it", r->label);
}

/* r->plan for the current source: which of its manifest's entries are
 * written, as which tree entry. */
static int make_plan(run *r)
{
    const fb_as_of *t = r->tree;
    size_t n = r->m.n_entries;
    free(r->plan);
    if (!(r->plan = malloc((n ? n : 1) * sizeof *r->plan)))
        return restore_oom(r->err);
    for (size_t i = 0; i < n; i++)
        r->plan[i] = -1;
    for (size_t i = 0; i < t->n_entries; i++) {
        const fb_as_of_entry *x = &t->entries[i];
        if (x->source != r->layer)
            continue;
        const char *from = x->data_path ? x->data_path : x->e.path;
        long j = fb_manifest_find_path(&r->m, r->by_path, from, strlen(from));
        if (j < 0 || r->plan[j] >= 0 || !same_content(x, &r->m.entries[j]))
            return changed_since(r);
        r->plan[j] = (long)i;
    }
    return 0;
}

/* The manifest of the current source, read again: it must be the one the
 * tree was built from (the archive it names, its entry count). */
static int load_layer(run *r)
{
    const fb_as_of_source *s = &r->tree->sources[r->layer];
    snprintf(r->label, sizeof r->label, "%s/%s", r->req->session_id, s->id);
    fb_manifest_fini(&r->m);
    free(r->by_path);
    r->by_path = NULL;
    int rc = fb_store_read_manifest(r->store_session_fd, r->req->session_id, s->id, &r->m,
                                    r->err);
    if (rc < 0)
        return rc;
    if (r->m.n_entries != s->manifest_entries || r->m.archive.size != s->archive_size ||
        memcmp(r->m.archive.sha256, s->archive_sha256, FB_SHA256_LEN) != 0)
        return changed_since(r);
    if ((rc = check_tree_order(r)) < 0)
        return rc;
    return make_plan(r);
}

int fb_restore_extract_tree(run *r)
{
    int rc = 0;
    r->bytes_before = 0;
    for (r->layer = 0; rc == 0 && r->layer < r->tree->n_sources; r->layer++) {
        if ((rc = fb_restore_check_cancel(r)) < 0 || (rc = load_layer(r)) < 0 ||
            (rc = open_archive(r)) < 0)
            break;
        rc = fb_restore_extract(r);
        fb_archive_reader_free(r->reader);
        r->reader = NULL;
        r->bytes_before = r->out->bytes;
    }
    /* Only the tree is needed from here on. */
    fb_manifest_fini(&r->m);
    free(r->by_path);
    free(r->plan);
    r->by_path = NULL;
    r->plan = NULL;
    /* Messages after this name the backup restored. */
    snprintf(r->label, sizeof r->label, "%s/%s", r->req->session_id, r->out->backup_id);
    if (rc == 0 && r->tree->n_sources > 1 && !r->merge) {
        char staged_shown[PATH_MAX];
        snprintf(staged_shown, sizeof staged_shown, "%s/%s", r->parent_shown, r->staging);
        rc = fb_restore_apply_dir_attrs(r, r->staging_fd, staged_shown);
    }
    return rc;
}
