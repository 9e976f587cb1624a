/* flowloom-backupfs: mounts a store's .flowloom/backups read-only as a tree
 * of sessions -> backups -> files (SPEC "The mount").
 *
 * Option handling is libfuse's (fuse_parse_cmdline: -f, -d, -s, -o ...) plus
 * our own -o cache_size=MiB. The mount is always ro,nosuid,nodev, and
 * allow_other always brings default_permissions so the kernel enforces the
 * stored modes. Without -f the daemon forks after the mount is live
 * (fuse_daemonize after fuse_session_mount), so the parent returns only
 * when a script can use the mount; with -f it says on stdout that it serves
 * and how to stop it, since nothing else shows that the terminal is taken. */
#include "fs_i.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <syslog.h>

#include "fb_mount_paths.h"
#include "fb_text.h"

struct fs_options {
    unsigned cache_mib;
    int allow_other;
    char refused[32]; /* an option we never accept (rw, suid, dev) */
    int info;         /* --help or --version: no mount wanted */
    char *backups_dir;
    char *mountpoint; /* as given; libfuse keeps its own resolved copy */
};

enum { KEY_ALLOW_OTHER, KEY_REFUSED, KEY_DEFAULT };

static const struct fuse_opt option_spec[] = {
    {"cache_size=%u", offsetof(struct fs_options, cache_mib), 0},
    FUSE_OPT_KEY("allow_other", KEY_ALLOW_OTHER),
    FUSE_OPT_KEY("rw", KEY_REFUSED),
    FUSE_OPT_KEY("suid", KEY_REFUSED),
    FUSE_OPT_KEY("dev", KEY_REFUSED),
    FUSE_OPT_END,
};

static int option_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
    (void)outargs;
    struct fs_options *o = data;
    switch (key) {
    case KEY_ALLOW_OTHER:
        o->allow_other = 1;
        return 1; /* keep: libfuse passes it to the kernel */
    case KEY_REFUSED:
        /* arg is only valid during the call */
        snprintf(o->refused, sizeof o->refused, "%s", arg);
        return 0;
    case FUSE_OPT_KEY_NONOPT:
        /* The first positional is ours; the second is libfuse's mountpoint,
         * which we look at first (see main). */
        if (!o->backups_dir) {
            o->backups_dir = strdup(arg);
            return o->backups_dir ? 0 : -1;
        }
        if (!o->mountpoint && !(o->mountpoint = strdup(arg)))
            return -1;
        return 1;
    case FUSE_OPT_KEY_OPT:
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0 || strcmp(arg, "-V") == 0 ||
            strcmp(arg, "--version") == 0)
            o->info = 1;
        return 1;
    default:
        return 1;
    }
}

static void usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [options] <backups_dir> <mountpoint>\n"
            "\n"
            "Mounts a flowloom-backup store (<root>/.flowloom/backups) read-only as\n"
            "<mountpoint>/<session>/<backup>/<files>, with <session>/latest and\n"
            "<session>/latest-full symlinks.\n"
            "\n"
            "Options:\n"
            "    -o cache_size=MiB      bound of the decompressed-frame cache (default %u)\n"
            "    -o allow_other         let other users in (implies default_permissions)\n",
            prog, FB_MOUNT_CACHE_DEFAULT_MIB);
}

static void syslog_logger(enum fuse_log_level level, const char *fmt, va_list ap)
{
    vsyslog((int)level, fmt, ap);
}

/* Commas and backslashes separate and escape -o values. */
static char *escape_option_value(const char *s)
{
    size_t n = 0;
    for (const char *p = s; *p; p++)
        n += (*p == ',' || *p == '\\') ? 2 : 1;
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    char *q = out;
    for (const char *p = s; *p; p++) {
        if (*p == ',' || *p == '\\')
            *q++ = '\\';
        *q++ = *p;
    }
    *q = '\0';
    return out;
}

/* Both paths absolute (mountpoint is libfuse's resolved copy). Flushed at
 * once: a script or test reading our stdout waits for this line. */
static void print_serving(const char *prog, const char *store_path, const char *mountpoint)
{
    char store[2 * PATH_MAX], mnt[2 * PATH_MAX];
    fb_path_escape(store_path, store, sizeof store);
    fb_path_escape(mountpoint, mnt, sizeof mnt);
    printf("%s: serving %s read-only at %s; stop with Ctrl-C, "
           "'flowloom-backup umount %s' or 'fusermount3 -u %s'\n",
           prog, store, mnt, mnt, mnt);
    fflush(stdout);
}

/* Each open file holds an archive fd: allow as many as the hard limit lets us. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char *argv[])
{
    const char *prog = "flowloom-backupfs";
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    struct fs_options o = {.cache_mib = FB_MOUNT_CACHE_DEFAULT_MIB};
    struct fuse_cmdline_opts opts;
    memset(&opts, 0, sizeof opts);
    int status = FB_EXIT_USAGE;
    fb_mount_tree *tree = NULL;
    struct fuse_session *se = NULL;
    char *mount_opts = NULL;
    char *store_real = NULL; /* resolved before libfuse changes to "/" */
    bool handlers = false, mounted = false;
    fb_error err;
    fb_error_clear(&err);
    int rc;

    if (fuse_opt_parse(&args, &o, option_spec, option_proc) != 0) {
        fprintf(stderr, "%s: bad options (see --help)\n", prog);
        goto out;
    }
    if (o.refused[0]) {
        fprintf(stderr, "%s: option '%s' refused: the mount is always read-only (ro,nosuid,nodev)\n", prog,
                o.refused);
        goto out;
    }
    /* Before fuse_parse_cmdline, which fails on a missing mountpoint with
     * only "bad mount point"; libfuse would mount on a regular file (a root
     * of the file's type, which then serves EIO) or over another mount. */
    if (!o.info && o.mountpoint) {
        rc = fb_mount_check_target(o.mountpoint, &err);
        if (rc) {
            fprintf(stderr, "%s: %s\n", prog, err.message);
            status = fb_error_exit_status(rc);
            goto out;
        }
    }
    /* The store's absolute path names the mount in mount(8) and df(1). */
    store_real = o.backups_dir ? realpath(o.backups_dir, NULL) : NULL;
    char *fsname =
        escape_option_value(store_real ? store_real : o.backups_dir ? o.backups_dir : prog);
    /* umount recognises our mounts by this subtype (FB_MOUNT_FSTYPE). */
    if (!fsname || asprintf(&mount_opts, "-oro,nosuid,nodev,fsname=%s,subtype=%s%s", fsname,
                            FB_MOUNT_SUBTYPE, o.allow_other ? ",default_permissions" : "") < 0) {
        free(fsname);
        mount_opts = NULL;
        fprintf(stderr, "%s: out of memory\n", prog);
        status = FB_EXIT_RUNTIME;
        goto out;
    }
    free(fsname);
    /* Right after argv[0]: everything after a "--" is a positional. */
    if (fuse_opt_insert_arg(&args, 1, mount_opts) != 0 || fuse_parse_cmdline(&args, &opts) != 0) {
        fprintf(stderr, "%s: bad options (see --help)\n", prog);
        goto out;
    }
    if (opts.show_help) {
        usage(stdout, prog);
        printf("\nlibfuse options:\n");
        fflush(stdout);
        fuse_cmdline_help();
        fuse_lowlevel_help();
        status = 0;
        goto out;
    }
    if (opts.show_version) {
        printf("%s %s\n", prog, FB_VERSION);
        printf("FUSE library version %s\n", fuse_pkgversion());
        fflush(stdout);
        fuse_lowlevel_version();
        status = 0;
        goto out;
    }
    if (!o.backups_dir || !opts.mountpoint) {
        usage(stderr, prog);
        goto out;
    }

    /* Refused before anything is mounted: a mount inside the store would make
     * the store contain itself (restic refuses the same). */
    rc = fb_mount_check_mountpoint(o.backups_dir, opts.mountpoint, &err);
    if (rc) {
        fprintf(stderr, "%s: %s\n", prog, err.message);
        status = fb_error_exit_status(rc);
        goto out;
    }
    fb_mount_options mo = {
        .cache_bytes = (uint64_t)o.cache_mib * 1024 * 1024,
        .live_seconds = FS_LIVE_REFRESH,
        .warn = fs_log_warning,
        .warn_ctx = NULL,
    };
    rc = fb_mount_tree_new(o.backups_dir, &mo, &tree, &err);
    if (rc) {
        fprintf(stderr, "%s: %s\n", prog, err.message);
        status = fb_error_exit_status(rc);
        goto out;
    }
    raise_fd_limit();

    se = fuse_session_new(&args, fs_ll_ops(), sizeof *fs_ll_ops(), tree);
    if (!se) {
        fprintf(stderr, "%s: cannot start the FUSE session (bad options?)\n", prog);
        goto out;
    }
    status = FB_EXIT_RUNTIME;
    if (fuse_set_signal_handlers(se) != 0) {
        fprintf(stderr, "%s: cannot install signal handlers\n", prog);
        goto out;
    }
    handlers = true;
    if (fuse_session_mount(se, opts.mountpoint) != 0) {
        fprintf(stderr, "%s: cannot mount on %s\n", prog, opts.mountpoint);
        goto out;
    }
    mounted = true;
    /* Forks here when not -f; the parent exits 0 once the child is set up,
     * and the mount already exists at that point. */
    if (fuse_daemonize(opts.foreground) != 0) {
        fprintf(stderr, "%s: cannot go to the background\n", prog);
        goto out;
    }
    if (!opts.foreground) {
        openlog(prog, LOG_PID, LOG_DAEMON);
        fuse_set_log_func(syslog_logger);
    } else {
        print_serving(prog, store_real ? store_real : o.backups_dir, opts.mountpoint);
    }

    int ret;
    if (opts.singlethread) {
        ret = fuse_session_loop(se);
    } else {
        struct fuse_loop_config *cfg = fuse_loop_cfg_create();
        if (!cfg) {
            fuse_log(FUSE_LOG_ERR, "%s: out of memory\n", prog);
            goto out;
        }
        fuse_loop_cfg_set_clone_fd(cfg, (unsigned)opts.clone_fd);
        if (opts.max_idle_threads != UINT_MAX)
            fuse_loop_cfg_set_idle_threads(cfg, opts.max_idle_threads);
        fuse_loop_cfg_set_max_threads(cfg, opts.max_threads);
        ret = fuse_session_loop_mt(se, cfg);
        fuse_loop_cfg_destroy(cfg);
    }
    /* The loop reports the signal that ended it; SIGTERM, SIGINT and SIGHUP
     * (and an unmount, which reports 0) are a clean end. */
    if (ret == 0 || ret == SIGTERM || ret == SIGINT || ret == SIGHUP) {
        status = 0;
    } else {
        fuse_log(FUSE_LOG_ERR, "%s: session ended with error %d\n", prog, ret);
        status = FB_EXIT_RUNTIME;
    }

out:
    if (mounted)
        fuse_session_unmount(se);
    if (handlers)
        fuse_remove_signal_handlers(se);
    if (se)
        fuse_session_destroy(se);
    fb_mount_tree_free(tree);
    free(opts.mountpoint);
    free(o.mountpoint);
    free(o.backups_dir);
    free(store_real);
    free(mount_opts);
    fuse_opt_free_args(&args);
    return status;
}
