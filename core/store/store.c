/* The store on disk (SPEC "Finding things", "Storage layout"): the
 * root and current-session discovery, opening the session dirs and the
 * backups in them, loading the derived index (rebuilding it from manifests
 * when it cannot be trusted), clearing leftovers of interrupted runs.
 * Every path below the store is opened relative to a directory fd with
 * O_NOFOLLOW so a planted symlink never redirects us out of the store. */
#include "fb_store.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fb_fsutil.h"
#include "fb_hash.h"
#include "fb_lock.h"
#include "fb_text.h"
#include "store_i.h"

/* ---- finding the root and the current session ---- */

/* True when dir/.flowloom is a directory. The root itself and .flowloom may
 * be symlinks the user set up; only what is below is held to O_NOFOLLOW. */
static bool has_flowloom_dir(const char *dir)
{
    char *p = fb_path_join(dir, FB_FLOWLOOM_DIR);
    if (!p)
        return false;
    struct stat st;
    bool ok = stat(p, &st) == 0 && S_ISDIR(st.st_mode);
    free(p);
    return ok;
}

static int root_from_setting(const char *dir, const char *how, char **out, fb_error *err)
{
    if (!has_flowloom_dir(dir))
        return fb_error_set(err, FB_ENOTFOUND, "no .flowloom directory in %s (%s)", dir, how);
    *out = strdup(dir);
    if (!*out)
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    return 0;
}

int fb_root_find(const char *explicit_root, const char *env_root, const char *cwd, char **out,
                 fb_error *err)
{
    *out = NULL;
    if (explicit_root) {
        if (!*explicit_root)
            return fb_error_set(err, FB_EINVAL, "--root: empty directory name");
        return root_from_setting(explicit_root, "given by --root", out, err);
    }
    if (env_root && *env_root)
        return root_from_setting(env_root, "from FLOWLOOM_ROOT", out, err);

    char here[PATH_MAX];
    if (!getcwd(here, sizeof here))
        return fb_error_set_errno(err, errno, "cannot get the working directory");
    char *dir;
    if (cwd && cwd[0] == '/')
        dir = strdup(cwd);
    else if (cwd && *cwd && strcmp(cwd, ".") != 0 && strcmp(cwd, "./") != 0)
        dir = fb_path_join(here, cwd);
    else
        dir = strdup(here);
    if (!dir)
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    /* ".." components would make the textual walk below visit directories
     * that are not ancestors: resolve them when the directory exists. */
    char *real = realpath(dir, NULL);
    if (real) {
        free(dir);
        dir = real;
    }
    /* Strip trailing "/" and "/." (but keep "/") so the walk below and the
     * message see plain components. */
    size_t len = strlen(dir);
    for (;;) {
        if (len > 1 && dir[len - 1] == '/')
            dir[--len] = '\0';
        else if (len > 2 && dir[len - 1] == '.' && dir[len - 2] == '/')
            dir[len -= 2] = '\0';
        else
            break;
    }
    char *start = strdup(dir);
    if (!start) {
        free(dir);
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    }
    for (;;) {
        if (has_flowloom_dir(dir)) {
            free(start);
            *out = dir;
            return 0;
        }
        char *slash = strrchr(dir, '/');
        if (!slash || (slash == dir && dir[1] == '\0'))
            break;
        if (slash == dir)
            slash[1] = '\0';
        else
            *slash = '\0';
    }
    free(dir);
    int rc = fb_error_set(err, FB_ENOTFOUND,
                          "no .flowloom directory found at or above %s; use --root DIR or set "
                          "FLOWLOOM_ROOT",
                          start);
    free(start);
    return rc;
}

#define CURRENT_SESSION_MAX 4096

int fb_current_session_find(const char *root, const char *env_session, char **out,
                            fb_session_origin *origin, fb_error *err)
{
    *out = NULL;
    char *id = NULL;
    bool from_env = env_session && *env_session;
    if (origin)
        *origin = from_env ? FB_SESSION_FROM_ENV : FB_SESSION_FROM_FILE;
    if (from_env) {
        int rc = fb_session_id_check(env_session, err);
        if (rc) {
            fb_error_prefix(err, "FLOWLOOM_SESSION");
            return rc;
        }
        id = strdup(env_session);
        if (!id)
            return fb_error_set(err, FB_ENOMEM, "out of memory");
        *out = id;
        return 0;
    }

    char *flowloom = fb_path_join(root, FB_FLOWLOOM_DIR);
    if (!flowloom)
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    int dfd = open(flowloom, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char *text = NULL;
    size_t len = 0;
    int rc;
    if (dfd < 0) {
        rc = FB_ENOTFOUND;
    } else {
        rc = fb_read_file_at(dfd, flowloom, "current_session", CURRENT_SESSION_MAX, &text, &len,
                             err);
        close(dfd);
    }
    free(flowloom);
    if (rc == FB_ENOTFOUND)
        return fb_error_set(err, FB_ENOTFOUND,
                            "no current session: set FLOWLOOM_SESSION or write the session id "
                            "into %s/.flowloom/current_session",
                            root);
    if (rc)
        return rc;
    /* First line, without the line ending or surrounding blanks an editor
     * may have left. A NUL inside it would silently cut the id short. */
    const char *nl = memchr(text, '\n', len);
    size_t first = nl ? (size_t)(nl - text) : len;
    if (memchr(text, '\0', first) != NULL) {
        free(text);
        return fb_error_set(err, FB_EINVAL,
                            "%s/.flowloom/current_session: the session id contains a NUL byte",
                            root);
    }
    char *line = text;
    line[first] = '\0';
    while (*line == ' ' || *line == '\t')
        line++;
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
        line[--n] = '\0';
    if (n == 0) {
        free(text);
        return fb_error_set(err, FB_ENOTFOUND,
                            "no current session: %s/.flowloom/current_session is empty; set "
                            "FLOWLOOM_SESSION or write the session id into it",
                            root);
    }
    rc = fb_session_id_check(line, err);
    if (rc) {
        fb_error_prefix(err, "%s/.flowloom/current_session", root);
        free(text);
        return rc;
    }
    id = strdup(line);
    free(text);
    if (!id)
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    *out = id;
    return 0;
}

/* ---- the store and its session directories ---- */

struct fb_store {
    char *root;
    char *backups_path;
    char *sessions_path;
    int flowloom_fd;
    int backups_fd;
};

static int store_oom(fb_error *err)
{
    return fb_error_set(err, FB_ENOMEM, "out of memory");
}

int fb_store_open(const char *root, bool create, fb_store **out, fb_error *err)
{
    *out = NULL;
    fb_store *st = calloc(1, sizeof *st);
    if (!st)
        return store_oom(err);
    st->flowloom_fd = -1;
    st->backups_fd = -1;
    int rc = 0;
    char *flowloom = fb_path_join(root, FB_FLOWLOOM_DIR);
    st->root = strdup(root);
    st->backups_path = flowloom ? fb_path_join(flowloom, FB_BACKUPS_SUBDIR) : NULL;
    st->sessions_path = flowloom ? fb_path_join(flowloom, FB_SESSIONS_SUBDIR) : NULL;
    if (!flowloom || !st->root || !st->backups_path || !st->sessions_path) {
        rc = store_oom(err);
        goto fail;
    }
    st->flowloom_fd = open(flowloom, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->flowloom_fd < 0) {
        rc = errno == ENOENT ? fb_error_set(err, FB_ENOTFOUND, "no .flowloom directory in %s", root)
                             : fb_error_set_errno(err, errno, "cannot open %s", flowloom);
        goto fail;
    }
    if (create) {
        if (mkdirat(st->flowloom_fd, FB_BACKUPS_SUBDIR, 0700) == 0) {
            /* The new directory entry must survive a crash like the data below it. */
            rc = fb_fsync_dir(st->flowloom_fd, flowloom, err);
            if (rc)
                goto fail;
        } else if (errno != EEXIST) {
            rc = fb_error_set_errno(err, errno, "cannot create %s", st->backups_path);
            goto fail;
        }
    }
    st->backups_fd = openat(st->flowloom_fd, FB_BACKUPS_SUBDIR,
                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (st->backups_fd < 0) {
        int e = errno;
        if (e == ENOENT)
            rc = fb_error_set(err, FB_ENOTFOUND, "no backups yet: %s does not exist",
                              st->backups_path);
        else if (e == ELOOP || e == ENOTDIR)
            rc = fb_error_set(err, FB_EIO, "%s is not a directory (a symlink is not followed)",
                              st->backups_path);
        else
            rc = fb_error_set_errno(err, e, "cannot open %s", st->backups_path);
        goto fail;
    }
    free(flowloom);
    *out = st;
    return 0;

fail:
    free(flowloom);
    fb_store_free(st);
    return rc;
}

void fb_store_free(fb_store *store)
{
    if (!store)
        return;
    if (store->flowloom_fd >= 0)
        close(store->flowloom_fd);
    if (store->backups_fd >= 0)
        close(store->backups_fd);
    free(store->root);
    free(store->backups_path);
    free(store->sessions_path);
    free(store);
}

const char *fb_store_root(const fb_store *store)
{
    return store->root;
}

const char *fb_store_backups_path(const fb_store *store)
{
    return store->backups_path;
}

int fb_store_backups_fd(const fb_store *store)
{
    return store->backups_fd;
}

int fb_store_open_source(const fb_store *store, const char *session_id, int *fd_out,
                         fb_error *err)
{
    *fd_out = -1;
    int rc = fb_session_id_check(session_id, err);
    if (rc)
        return rc;
    int sfd = openat(store->flowloom_fd, FB_SESSIONS_SUBDIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sfd < 0) {
        if (errno == ENOENT)
            return fb_error_set(err, FB_ENOTFOUND, "session %s not found: %s does not exist",
                                session_id, store->sessions_path);
        return fb_error_set_errno(err, errno, "cannot open %s", store->sessions_path);
    }
    int fd = openat(sfd, session_id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    if (fd < 0) {
        struct stat st;
        bool is_link = fstatat(sfd, session_id, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                       S_ISLNK(st.st_mode);
        close(sfd);
        if (e == ENOENT)
            return fb_error_set(err, FB_ENOTFOUND, "session %s not found: %s/%s does not exist",
                                session_id, store->sessions_path, session_id);
        if (is_link || e == ELOOP)
            return fb_error_set(err, FB_EINVAL,
                                "session directory %s/%s is a symlink; refusing to follow it "
                                "(back up the directory it points to by its own session id)",
                                store->sessions_path, session_id);
        if (e == ENOTDIR)
            return fb_error_set(err, FB_EINVAL, "%s/%s is not a directory",
                                store->sessions_path, session_id);
        return fb_error_set_errno(err, e, "cannot open session directory %s/%s",
                                  store->sessions_path, session_id);
    }
    close(sfd);
    *fd_out = fd;
    return 0;
}

int fb_store_open_session(const fb_store *store, const char *session_id, bool create,
                          int *fd_out, fb_error *err)
{
    *fd_out = -1;
    int rc = fb_session_id_check(session_id, err);
    if (rc)
        return rc;
    if (create) {
        if (mkdirat(store->backups_fd, session_id, 0700) == 0) {
            rc = fb_fsync_dir(store->backups_fd, store->backups_path, err);
            if (rc)
                return rc;
        } else if (errno != EEXIST) {
            return fb_error_set_errno(err, errno, "cannot create %s/%s", store->backups_path,
                                      session_id);
        }
    }
    int fd = openat(store->backups_fd, session_id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return fb_error_set(err, FB_ENOTFOUND, "session %s has no backups (%s/%s does not exist)",
                                session_id, store->backups_path, session_id);
        if (e == ELOOP || e == ENOTDIR)
            return fb_error_set(err, FB_EIO,
                                "%s/%s is not a directory (a symlink is not followed)",
                                store->backups_path, session_id);
        return fb_error_set_errno(err, e, "cannot open %s/%s", store->backups_path, session_id);
    }
    *fd_out = fd;
    return 0;
}

/* Sorted names in dirfd accepted by filter (fb_list_dir_names_at: a fresh
 * open file description, so concurrent readers of the same store do not
 * share an offset). */
static int list_names(int dirfd, const char *what, fb_name_filter_fn filter, char ***out,
                      size_t *n_out, fb_error *err)
{
    int rc = fb_list_dir_names_at(dirfd, filter, NULL, out, n_out);
    if (rc == ENOMEM)
        return store_oom(err);
    if (rc)
        return fb_error_set_errno(err, rc, "cannot list %s", what);
    return 0;
}

static bool is_real_dir(int dirfd, const char *name)
{
    struct stat st;
    return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

static bool session_dir_filter(int dirfd, const char *name, void *ctx)
{
    (void)ctx;
    return fb_session_id_check(name, NULL) == 0 && is_real_dir(dirfd, name);
}

int fb_store_list_sessions(const fb_store *store, char ***out, size_t *n_out, fb_error *err)
{
    return list_names(store->backups_fd, store->backups_path, session_dir_filter, out, n_out,
                      err);
}

/* A backup: a real directory (not a symlink) holding a regular
 * manifest.json. Two stats, no descriptor: a listing of 100 backups is
 * 200 system calls instead of 300. Were the directory swapped for a symlink
 * between the two, the listing would name it, and every later open of it
 * (O_NOFOLLOW) would refuse it. */
static bool backup_dir_filter(int dirfd, const char *name, void *ctx)
{
    (void)ctx;
    if (!fb_backup_id_is_valid(name) || !is_real_dir(dirfd, name))
        return false;
    char path[FB_BACKUP_ID_LEN + sizeof "/" FB_MANIFEST_NAME];
    int n = snprintf(path, sizeof path, "%s/%s", name, FB_MANIFEST_NAME);
    if (n < 0 || (size_t)n >= sizeof path)
        return false;
    struct stat st;
    return fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

int fb_store_list_backup_dirs(int session_fd, char ***out, size_t *n_out, fb_error *err)
{
    return list_names(session_fd, "the session's backup directory", backup_dir_filter, out,
                      n_out, err);
}

int fb_store_open_backup_dir(int session_fd, const char *session_id, const char *backup_id,
                           int *fd_out, fb_error *err)
{
    *fd_out = -1;
    if (!fb_backup_id_is_valid(backup_id)) {
        char shown[256];
        fb_text_quote(backup_id ? backup_id : "", shown, sizeof shown);
        return fb_error_set(err, FB_EINVAL, "invalid backup id '%s'", shown);
    }
    int fd = openat(session_fd, backup_id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT && session_id)
            return fb_error_set(err, FB_ENOTFOUND, "backup %s not found in session %s",
                                backup_id, session_id);
        if (e == ENOENT)
            return fb_error_set(err, FB_ENOTFOUND, "backup %s not found", backup_id);
        if (e == ELOOP || e == ENOTDIR)
            return fb_error_set(err, FB_ECORRUPT,
                                "backup directory %s is not a directory (a symlink is not "
                                "followed)",
                                backup_id);
        return fb_error_set_errno(err, e, "cannot open backup directory %s", backup_id);
    }
    *fd_out = fd;
    return 0;
}

int fb_store_read_manifest(int session_fd, const char *session_id, const char *backup_id,
                           fb_manifest *out, fb_error *err)
{
    fb_manifest_init(out);
    int dfd;
    int rc = fb_store_open_backup_dir(session_fd, session_id, backup_id, &dfd, err);
    if (rc)
        return rc;
    rc = fb_store_parse_manifest_at(dfd, session_id, backup_id, out, NULL, err);
    close(dfd);
    return rc;
}

int fb_store_parse_manifest_at(int backup_fd, const char *session_id, const char *backup_id,
                               fb_manifest *out, struct stat *st_out, fb_error *err)
{
    fb_manifest_init(out);
    char source[FB_SESSION_ID_MAX + FB_BACKUP_ID_LEN + 32];
    snprintf(source, sizeof source, "%s/%s/" FB_MANIFEST_NAME, session_id, backup_id);
    char dir_name[FB_SESSION_ID_MAX + FB_BACKUP_ID_LEN + 8];
    snprintf(dir_name, sizeof dir_name, "%s/%s", session_id, backup_id);
    char *json = NULL;
    size_t len = 0;
    int rc = fb_read_file_at_stat(backup_fd, dir_name, FB_MANIFEST_NAME, FB_MANIFEST_SIZE_MAX,
                                  &json, &len, st_out, err);
    if (rc)
        return rc;
    rc = fb_manifest_parse(json, len, source, out, err);
    free(json);
    if (rc)
        return rc;
    rc = fb_store_manifest_names(out, session_id, backup_id, source, err);
    if (rc) {
        fb_manifest_fini(out);
        fb_manifest_init(out);
    }
    return rc;
}

int fb_store_manifest_names(const fb_manifest *out, const char *session_id,
                            const char *backup_id, const char *source, fb_error *err)
{
    int rc = 0;
    /* The manifest is only trusted for the backup whose directory holds it:
     * a copied or swapped manifest must not pass as this backup. */
    if (strcmp(out->backup_id, backup_id) != 0) {
        rc = fb_error_set(err, FB_ECORRUPT, "%s: backup_id is '%s', expected '%s'", source,
                          out->backup_id, backup_id);
    } else if (strcmp(out->session_id, session_id) != 0) {
        rc = fb_error_set(err, FB_ECORRUPT, "%s: session_id is '%s', expected '%s'", source,
                          out->session_id, session_id);
    } else if (out->type != fb_backup_id_type(backup_id)) {
        rc = fb_error_set(err, FB_ECORRUPT, "%s: type is %s but the backup id says %s", source,
                          fb_backup_type_name(out->type),
                          fb_backup_type_name(fb_backup_id_type(backup_id)));
    }
    return rc;
}

int fb_store_open_archive(int session_fd, const char *backup_id, int *fd_out, fb_error *err)
{
    *fd_out = -1;
    int dfd;
    int rc = fb_store_open_backup_dir(session_fd, NULL, backup_id, &dfd, err);
    if (rc)
        return rc;
    int fd = openat(dfd, FB_ARCHIVE_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    int e = errno;
    close(dfd);
    if (fd < 0) {
        if (e == ENOENT)
            return fb_error_set(err, FB_ENOTFOUND, "%s/archive.tar.zst does not exist",
                                backup_id);
        if (e == ELOOP)
            return fb_error_set(err, FB_ECORRUPT,
                                "%s/archive.tar.zst is a symlink; refusing to follow it",
                                backup_id);
        return fb_error_from_errno(err, e, "cannot open %s/" FB_ARCHIVE_NAME, backup_id);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        e = errno;
        close(fd);
        return fb_error_set_errno(err, e, "cannot stat %s/" FB_ARCHIVE_NAME, backup_id);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fb_error_set(err, FB_ECORRUPT, "%s/archive.tar.zst is not a regular file",
                            backup_id);
    }
    /* O_NONBLOCK only guarded the open against a FIFO; regular reads ignore it,
     * but clear it so callers see ordinary semantics. */
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *fd_out = fd;
    return 0;
}

/* ---- the index ---- */


static int cmp_ids(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Loads index.json and decides whether it can be trusted against the
 * directories on disk. Returns 0 with *out filled, 1 with a reason when it
 * must be rebuilt (*out then empty), or a negative error. */
static int index_check(int session_fd, const char *session_id, char **dirs, size_t n_dirs,
                       fb_index *out, char *reason, size_t reason_size, fb_error *err)
{
    fb_index_init(out, session_id);
    char *json = NULL;
    size_t len = 0;
    fb_error sub;
    fb_error_clear(&sub);
    int rc = fb_read_file_at(session_fd, session_id, FB_INDEX_NAME, FB_MANIFEST_SIZE_MAX, &json, &len,
                             &sub);
    if (rc == FB_ENOTFOUND) {
        /* A session dir with no backups and no index is simply new. */
        if (n_dirs == 0)
            return 0;
        snprintf(reason, reason_size, "%s/" FB_INDEX_NAME " is missing", session_id);
        return 1;
    }
    if (rc == FB_ENOMEM)
        return fb_error_set(err, rc, "%s", sub.message);
    if (rc) {
        snprintf(reason, reason_size, "%s", sub.message);
        return 1;
    }
    char source[FB_SESSION_ID_MAX + 16];
    snprintf(source, sizeof source, "%s/" FB_INDEX_NAME, session_id);
    fb_index_fini(out);
    rc = fb_index_parse(json, len, source, out, &sub);
    free(json);
    if (rc == FB_ENOMEM) {
        fb_index_init(out, session_id);
        return fb_error_set(err, rc, "%s", sub.message);
    }
    if (rc) {
        fb_index_fini(out);
        fb_index_init(out, session_id);
        snprintf(reason, reason_size, "%s", sub.message);
        return 1;
    }
    if (strcmp(out->session_id, session_id) != 0) {
        snprintf(reason, reason_size, "%s names session '%s'", source, out->session_id);
        goto rebuild;
    }

    /* Compare the indexed ids with the directories, both sorted by name. */
    const char **ids = NULL;
    if (out->n > 0) {
        ids = malloc(out->n * sizeof *ids);
        if (!ids) {
            fb_index_fini(out);
            fb_index_init(out, session_id);
            return store_oom(err);
        }
        for (size_t i = 0; i < out->n; i++)
            ids[i] = out->records[i].id;
        qsort(ids, out->n, sizeof *ids, cmp_ids);
    }
    size_t i = 0, j = 0;
    bool differ = false;
    while ((i < out->n || j < n_dirs) && !differ) {
        int c = i >= out->n ? 1 : j >= n_dirs ? -1 : strcmp(ids[i], dirs[j]);
        if (c < 0) {
            snprintf(reason, reason_size, "%s lists %s but that backup is not on disk", source,
                     ids[i]);
            differ = true;
        } else if (c > 0) {
            snprintf(reason, reason_size, "backup %s is on disk but not in %s", dirs[j], source);
            differ = true;
        } else {
            i++;
            j++;
        }
    }
    free(ids);
    if (!differ)
        return 0;

rebuild:
    fb_index_fini(out);
    fb_index_init(out, session_id);
    return 1;
}

/* Rebuilds the index from the manifests of the given directories; a backup
 * whose manifest cannot be read is left out with a warning. */
static int index_rebuild(int session_fd, const char *session_id, char **dirs, size_t n_dirs,
                         fb_index *out, fb_warn_fn warn, void *warn_ctx, fb_error *err)
{
    fb_index_init(out, session_id);
    for (size_t i = 0; i < n_dirs; i++) {
        fb_manifest m;
        fb_error sub;
        fb_error_clear(&sub);
        int rc = fb_store_read_manifest(session_fd, session_id, dirs[i], &m, &sub);
        if (rc == 0)
            rc = fb_index_add_from_manifest(out, &m, &sub);
        fb_manifest_fini(&m);
        if (rc == FB_ENOMEM) {
            fb_index_fini(out);
            fb_index_init(out, session_id);
            return fb_error_set(err, rc, "%s", sub.message);
        }
        if (rc)
            fb_warnf(warn, warn_ctx, "backup %s/%s left out of the index: %s", session_id,
                     dirs[i], sub.message);
    }
    return 0;
}

int fb_store_load_index(const fb_store *store, const char *session_id, unsigned flags,
                        fb_index *out, bool *rebuilt, fb_warn_fn warn, void *warn_ctx,
                        fb_error *err)
{
    bool dummy;
    if (!rebuilt)
        rebuilt = &dummy;
    *rebuilt = false;
    fb_index_init(out, session_id ? session_id : "");
    int rc = fb_session_id_check(session_id, err);
    if (rc)
        return rc;
    int sfd;
    fb_error sub;
    fb_error_clear(&sub);
    rc = fb_store_open_session(store, session_id, false, &sfd, &sub);
    if (rc == FB_ENOTFOUND)
        return 0;
    if (rc) {
        if (err)
            *err = sub;
        return rc;
    }

    char **dirs = NULL;
    size_t n_dirs = 0;
    char reason[FB_ERROR_MESSAGE_MAX];
    fb_lock lock = {.fd = -1};
    rc = fb_store_list_backup_dirs(sfd, &dirs, &n_dirs, err);
    if (rc)
        goto out;
    rc = index_check(sfd, session_id, dirs, n_dirs, out, reason, sizeof reason, err);
    if (rc <= 0)
        goto out;

    bool write_back = (flags & FB_INDEX_LOAD_LOCKED) != 0;
    if (!write_back && (flags & FB_INDEX_LOAD_WRITE_BACK_IF_UNLOCKED)) {
        fb_error_clear(&sub);
        if (fb_lock_try(sfd, session_id, &lock, &sub) == 0) {
            /* A writer may have committed between our look and the lock:
             * look again under the lock before replacing anything. */
            write_back = true;
            fb_string_list_free(dirs, n_dirs);
            dirs = NULL;
            n_dirs = 0;
            fb_index_fini(out);
            rc = fb_store_list_backup_dirs(sfd, &dirs, &n_dirs, err);
            if (rc) {
                fb_index_init(out, session_id);
                goto out;
            }
            rc = index_check(sfd, session_id, dirs, n_dirs, out, reason, sizeof reason, err);
            if (rc <= 0)
                goto out;
        }
    }

    rc = index_rebuild(sfd, session_id, dirs, n_dirs, out, warn, warn_ctx, err);
    if (rc)
        goto out;
    *rebuilt = true;
    fb_warnf(warn, warn_ctx, "index rebuilt: %s", reason);
    if (write_back) {
        fb_error_clear(&sub);
        rc = fb_store_save_index(sfd, session_id, out, &sub);
        if (rc && (flags & FB_INDEX_LOAD_LOCKED)) {
            if (err)
                *err = sub;
            fb_index_fini(out);
            fb_index_init(out, session_id);
            *rebuilt = false;
            goto out;
        }
        /* A reader keeps working from the rebuilt index in memory. */
        if (rc)
            fb_warnf(warn, warn_ctx, "rebuilt index not written back: %s", sub.message);
        rc = 0;
    }

out:
    fb_lock_release(&lock);
    fb_string_list_free(dirs, n_dirs);
    close(sfd);
    return rc;
}

int fb_store_save_index(int session_fd, const char *session_id, const fb_index *idx,
                        fb_error *err)
{
    if (strcmp(idx->session_id, session_id) != 0)
        return fb_error_set(err, FB_EMISUSE, "index of session %s saved as session %s",
                            idx->session_id, session_id);
    char *json = NULL;
    size_t len = 0;
    int rc = fb_index_to_json(idx, &json, &len, err);
    if (rc)
        return rc;
    rc = fb_atomic_write_at(session_fd, session_id, FB_INDEX_NAME, json, len, err);
    free(json);
    return rc;
}

static bool leftover_filter(int dirfd, const char *name, void *ctx)
{
    (void)ctx;
    (void)dirfd;
    return strncmp(name, FB_WORK_PREFIX, strlen(FB_WORK_PREFIX)) == 0 ||
           strncmp(name, FB_TRASH_PREFIX, strlen(FB_TRASH_PREFIX)) == 0;
}

bool fb_store_is_restore_staging(const char *name, const char *session_id)
{
    size_t pl = strlen(FB_RESTORE_STAGING_PREFIX), sl = strlen(session_id);
    if (strncmp(name, FB_RESTORE_STAGING_PREFIX, pl) != 0 ||
        strncmp(name + pl, session_id, sl) != 0 || name[pl + sl] != '-')
        return false;
    const char *hex = name + pl + sl + 1;
    if (strlen(hex) != FB_RESTORE_STAGING_HEX)
        return false;
    for (const char *p = hex; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

static bool staging_filter(int dirfd, const char *name, void *ctx)
{
    (void)dirfd;
    return fb_store_is_restore_staging(name, ctx);
}

/* .flowloom/sessions, or -1 (errno ENOENT) when there is none. */
static int open_sessions_dir(const fb_store *store)
{
    return openat(store->flowloom_fd, FB_SESSIONS_SUBDIR,
                  O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* A running recover holds an flock on its staging dir from the moment it
 * makes it, before it takes the session lock (it extracts first), so the
 * session lock alone does not say a staging dir is abandoned. Returns the
 * dir's fd holding the flock (the caller keeps it while removing), -1 for
 * one that is not a directory we can open (a planted symlink: removing
 * just the name is safe), or -2 when it is in use. */
static int claim_staging(int sessions_fd, const char *name, int how)
{
    int fd = openat(sessions_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (flock(fd, how | LOCK_NB) != 0) {
        close(fd);
        return -2;
    }
    return fd;
}

/* The staging dirs that interrupted recovers of session_id left in
 * .flowloom/sessions; none when it does not exist. */
static int list_staging(const fb_store *store, const char *session_id, int *sessions_fd,
                        char ***names, size_t *n, fb_error *err)
{
    *names = NULL;
    *n = 0;
    *sessions_fd = open_sessions_dir(store);
    if (*sessions_fd < 0) {
        if (errno == ENOENT)
            return 0;
        return fb_error_set_errno(err, errno, "cannot open %s", store->sessions_path);
    }
    int rc = fb_list_dir_names_at(*sessions_fd, staging_filter, (void *)session_id, names, n);
    if (rc == ENOMEM)
        rc = store_oom(err);
    else if (rc)
        rc = fb_error_set_errno(err, rc, "cannot list %s", store->sessions_path);
    if (rc) {
        close(*sessions_fd);
        *sessions_fd = -1;
    }
    return rc;
}

/* Removes the recover staging dirs of session_id no recover is using. */
int fb_store_clear_restore_staging(const fb_store *store, const char *session_id,
                                   fb_warn_fn warn, void *warn_ctx, size_t *removed_out,
                                   fb_error *err)
{
    if (removed_out)
        *removed_out = 0;
    int sfd;
    char **names;
    size_t n;
    int first_rc = list_staging(store, session_id, &sfd, &names, &n, err);
    if (first_rc || sfd < 0)
        return first_rc;
    bool removed = false;
    for (size_t i = 0; i < n; i++) {
        int held = claim_staging(sfd, names[i], LOCK_EX);
        if (held == -2)
            continue;
        fb_error sub;
        fb_error_clear(&sub);
        int rc = fb_remove_tree_at(sfd, store->sessions_path, names[i], &sub);
        if (held >= 0)
            close(held);
        if (rc) {
            if (!first_rc) {
                first_rc = rc;
                if (err)
                    *err = sub;
            }
            continue;
        }
        removed = true;
        if (removed_out)
            (*removed_out)++;
        fb_warnf(warn, warn_ctx, "removed %s/%s left by an interrupted recover",
                 store->sessions_path, names[i]);
    }
    if (removed && !first_rc)
        first_rc = fb_fsync_dir(sfd, store->sessions_path, err);
    fb_string_list_free(names, n);
    close(sfd);
    return first_rc;
}

int fb_store_clear_leftovers(const fb_store *store, int session_fd, const char *session_id,
                             fb_warn_fn warn, void *warn_ctx, fb_error *err)
{
    char **names = NULL;
    size_t n = 0;
    int rc = list_names(session_fd, session_id, leftover_filter, &names, &n, err);
    if (rc)
        return rc;
    int first_rc = 0;
    for (size_t i = 0; i < n; i++) {
        fb_error sub;
        fb_error_clear(&sub);
        rc = fb_remove_tree_at(session_fd, session_id, names[i], &sub);
        if (rc) {
            /* Keep going: one stubborn leftover must not keep the others. */
            if (!first_rc) {
                first_rc = rc;
                if (err)
                    *err = sub;
            }
            continue;
        }
        fb_warnf(warn, warn_ctx, "removed %s/%s left by an interrupted run", session_id,
                 names[i]);
    }
    if (n > 0 && !first_rc)
        first_rc = fb_fsync_dir(session_fd, session_id, err);
    fb_string_list_free(names, n);
    fb_error sub;
    fb_error_clear(&sub);
    rc = fb_store_clear_restore_staging(store, session_id, warn, warn_ctx, NULL,
                                        first_rc ? &sub : err);
    return first_rc ? first_rc : rc;
}

/* Appends FB_SESSIONS_PATH "/<name>" for each name to *out. */
static int append_staging_paths(char ***out, size_t *n_out, char **names, size_t n)
{
    char **grown = realloc(*out, (*n_out + n + 1) * sizeof *grown);
    if (!grown)
        return -1;
    *out = grown;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(FB_SESSIONS_PATH) + 1 + strlen(names[i]) + 1;
        char *p = malloc(len);
        if (!p)
            return -1;
        snprintf(p, len, "%s/%s", FB_SESSIONS_PATH, names[i]);
        grown[(*n_out)++] = p;
    }
    return 0;
}

int fb_store_list_leftovers(const fb_store *store, int session_fd, const char *session_id,
                            char ***out, size_t *n_out, fb_error *err)
{
    *out = NULL;
    *n_out = 0;
    int rc = session_fd < 0 ? 0
                            : list_names(session_fd, session_id, leftover_filter, out, n_out, err);
    int sfd = -1;
    char **names = NULL;
    size_t n = 0;
    if (rc == 0)
        rc = list_staging(store, session_id, &sfd, &names, &n, err);
    /* A dry run only looks: a shared flock, dropped at once, tells which
     * staging dirs a running recover holds. */
    size_t k = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int held = claim_staging(sfd, names[i], LOCK_SH);
        if (held >= 0)
            close(held);
        if (held == -2)
            free(names[i]);
        else
            names[k++] = names[i];
    }
    if (rc == 0 && append_staging_paths(out, n_out, names, k) != 0)
        rc = store_oom(err);
    fb_string_list_free(names, k);
    if (sfd >= 0)
        close(sfd);
    if (rc) {
        fb_string_list_free(*out, *n_out);
        *out = NULL;
        *n_out = 0;
    }
    return rc;
}

/* A spec can only abbreviate an id if it uses the id's own characters
 * (digits, letters, '-'): anything else is a typo of a kind no prefix can
 * fix, refused as bad input rather than reported as "no such backup". */
static bool backup_spec_chars_ok(const char *spec)
{
    size_t n = strlen(spec);
    if (n == 0 || n > FB_BACKUP_ID_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)spec[i];
        if (!isalnum(c) && c != '-')
            return false;
    }
    return true;
}

/* The id's last 6 characters are its random suffix: users quote it alone
 * (as git users quote a short hash). */
static bool backup_id_matches_prefix(const char *id, const char *spec, size_t n)
{
    return strncmp(id, spec, n) == 0 ||
           (n <= 6 && strncmp(id + FB_BACKUP_ID_LEN - 6, spec, n) == 0);
}

static int ambiguous_spec(const fb_index *idx, const char *spec, size_t n, size_t matches,
                          fb_error *err)
{
    /* Up to five candidates are named; enough to pick one, short enough
     * to read. */
    char list[5 * (FB_BACKUP_ID_LEN + 2) + 32] = "";
    size_t used = 0, named = 0;
    for (size_t i = idx->n; i-- > 0 && named < 5;) {
        if (!backup_id_matches_prefix(idx->records[i].id, spec, n))
            continue;
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", named ? ", " : "",
                                 idx->records[i].id);
        named++;
    }
    if (matches > named)
        snprintf(list + used, sizeof list - used, " and %zu more", matches - named);
    return fb_error_set(err, FB_EINVAL,
                        "backup '%s' is ambiguous in session %s: it could be %s (type more of "
                        "the id)",
                        spec, idx->session_id, list);
}

int fb_store_resolve_backup(const fb_index *idx, const char *spec,
                            char out[FB_BACKUP_ID_LEN + 1], fb_error *err)
{
    out[0] = '\0';
    bool full_only = spec && strcmp(spec, FB_BACKUP_SPEC_LATEST_FULL) == 0;
    if (full_only || (spec && strcmp(spec, FB_BACKUP_SPEC_LATEST) == 0)) {
        const fb_index_record *r = full_only ? fb_index_newest_full(idx) : fb_index_newest(idx);
        if (!r)
            return fb_error_set(err, FB_ENOTFOUND, "session %s has no %sbackups",
                                idx->session_id, full_only ? "full " : "");
        memcpy(out, r->id, FB_BACKUP_ID_LEN + 1);
        return 0;
    }
    if (!spec || !backup_spec_chars_ok(spec)) {
        char shown[256];
        fb_text_quote(spec ? spec : "", shown, sizeof shown);
        return fb_error_set(err, FB_EINVAL,
                            "invalid backup id '%s': expected 'latest', 'latest-full', an id "
                            "like 20261201T031500Z-full-3fa9c2 or the start of one",
                            shown);
    }
    if (fb_backup_id_is_valid(spec)) {
        if (fb_index_find(idx, spec) < 0)
            return fb_error_set(err, FB_ENOTFOUND, "backup %s not found in session %s", spec,
                                idx->session_id);
        memcpy(out, spec, FB_BACKUP_ID_LEN + 1);
        return 0;
    }
    size_t n = strlen(spec), matches = 0;
    const fb_index_record *found = NULL;
    for (size_t i = 0; i < idx->n; i++) {
        if (backup_id_matches_prefix(idx->records[i].id, spec, n)) {
            found = &idx->records[i];
            matches++;
        }
    }
    if (matches == 0)
        return fb_error_set(err, FB_ENOTFOUND,
                            "backup '%s' not found in session %s: no backup id, nor the "
                            "6-hex suffix of one, starts with it",
                            spec, idx->session_id);
    if (matches > 1)
        return ambiguous_spec(idx, spec, n, matches, err);
    memcpy(out, found->id, FB_BACKUP_ID_LEN + 1);
    return 0;
}
