/* flowloom-backupfs: mounts a store's .flowloom/backups read-only as a tree
 * of sessions -> backups -> files (SPEC "The mount").
 *
 * Option handling is libfuse's (fuse_parse_cmdline: -f, -d, -s, -o ...) plus
 * our own -o cache_size=MiB, -o meta_cache_size=MiB and the local manifest
 * cache's -o manifest_cache=DIR / -o no_manifest_cache. The mount is always
 * ro,nosuid,nodev, and allow_other always brings default_permissions so the
 * kernel enforces the stored modes. Without -f the daemon forks after the
 * mount is live (fuse_daemonize after fuse_session_mount), so the parent
 * returns only when a script can use the mount; with -f it says on stdout
 * that it serves and how to stop it, since nothing else shows that the
 * terminal is taken. */
#include "fs_i.h"

#include <errno.h>
#include <limits.h>
#ifdef __GLIBC__ /* defined by the libc headers above */
#include <malloc.h>
#endif
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <syslog.h>

#include "fb_manifest_cache.h"
#include "fb_mount_paths.h"
#include "fb_text.h"

struct fs_options {
    unsigned cache_mib;
    unsigned meta_cache_mib;
    int allow_other;
    int open_round_trips;
    char *manifest_cache; /* -o manifest_cache=DIR */
    int no_manifest_cache;
    char refused[32]; /* an option we never accept (rw, suid, dev) */
    int info;         /* --help or --version: no mount wanted */
    char *backups_dir;
    char *mountpoint; /* as given; libfuse keeps its own resolved copy */
};

enum { KEY_ALLOW_OTHER, KEY_REFUSED, KEY_DEFAULT };

static const struct fuse_opt option_spec[] = {
    {"cache_size=%u", offsetof(struct fs_options, cache_mib), 0},
    {"meta_cache_size=%u", offsetof(struct fs_options, meta_cache_mib), 0},
    {"open_round_trips", offsetof(struct fs_options, open_round_trips), 1},
    {"manifest_cache=%s", offsetof(struct fs_options, manifest_cache), 0},
    {"no_manifest_cache", offsetof(struct fs_options, no_manifest_cache), 1},
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
            "<session>/latest-full symlinks, <session>/as-of/<backup>/ (the session as it\n"
            "stood at that backup) and <session>/history/<path>/ (every version of a file).\n"
            "\n"
            "Options:\n"
            "    -o cache_size=MiB      bound of the decompressed-frame cache (default %u)\n"
            "    -o meta_cache_size=MiB bound of the backups' metadata kept loaded; the least\n"
            "                           recently used are dropped and reloaded when needed\n"
            "                           (default %u, 0: no bound)\n"
            "    -o allow_other         let other users in (implies default_permissions)\n"
            "    -o open_round_trips    have the kernel ask at every open and close of a file\n"
            "                           (default: where it can go without, it does, and a\n"
            "                           file is proven at its first read instead)\n"
            "    -o manifest_cache=DIR  keep checked manifests in binary form under DIR, so\n"
            "                           that a backup's first touch parses no JSON (default\n"
            "                           $XDG_CACHE_HOME/flowloom-backup, else\n"
            "                           ~/.cache/flowloom-backup)\n"
            "    -o no_manifest_cache   read every manifest from its JSON\n",
            prog, FB_MOUNT_CACHE_DEFAULT_MIB, FB_MOUNT_META_CACHE_DEFAULT_MIB);
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

/* How the daemon's malloc is set up, unless the environment says otherwise.
 *
 * One arena for every thread (unless MALLOC_ARENA_MAX is set). With glibc's
 * arena per worker thread, a manifest loaded by one thread and evicted by
 * another leaves free pages in several arenas that malloc_trim does not
 * give back: walking 4 backups of 100k files under the default metadata
 * bound peaked at 97 MiB (68 MiB resident at the end) with them, 64 MiB
 * (27 MiB) with one, in the same time (docs/mount.md).
 *
 * A heap already in memory for the first requests (unless
 * MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ is set). A fresh
 * process meets every page of its heap with a page fault: the first read
 * of a small file in a 2,000-file backup took ~160 of them (the manifest
 * cache entry read into a new buffer, the entries array, the tree), each
 * charged to the memory cgroup, about a sixth of that read. A sequential
 * read meets the same: the frames it decodes (1 MiB by default), the ones
 * decoded ahead and their compressed bytes are ~12 MiB of buffers before
 * they are recycled, ~2,300 page faults in the first 120 MiB read, ~4 ms
 * of the daemon's ~47 ms of CPU for an 87 MB file. So buffers up to
 * HEAP_BUFFER_MAX (a default frame with malloc's header: glibc maps
 * anything at or over the threshold) come from the heap rather than from
 * mmap, freed heap is kept up to HEAP_KEEP, and HEAP_WARM bytes of it are
 * written once here, before the mount exists. Costs HEAP_WARM of resident
 * memory from the start, which the first large read would take anyway. */
#define HEAP_BUFFER_MAX (2 * 1024 * 1024)
#define HEAP_KEEP (16 * 1024 * 1024)
#define HEAP_WARM (12 * 1024 * 1024)
#define HEAP_WARM_PIECE (256 * 1024)

/* Sets up malloc as above; returns the free heap the mount tree must leave
 * untrimmed (fb_mount_options.heap_keep_bytes), 0 when malloc is left to
 * the C library. */
static uint64_t set_up_malloc(void)
{
#ifdef __GLIBC__
    if (!getenv("MALLOC_ARENA_MAX"))
        mallopt(M_ARENA_MAX, 1);
    if (getenv("MALLOC_MMAP_THRESHOLD_") || getenv("MALLOC_TRIM_THRESHOLD_"))
        return 0;
    mallopt(M_MMAP_THRESHOLD, HEAP_BUFFER_MAX);
    mallopt(M_TRIM_THRESHOLD, HEAP_KEEP);
    /* In pieces below the mmap threshold, so that they come from the heap,
     * and written through a volatile pointer: a memset of memory freed
     * right after is a dead store the compiler may drop (and malloc +
     * memset(0) may become a calloc, which skips fresh pages). */
    char *piece[HEAP_WARM / HEAP_WARM_PIECE];
    size_t n = sizeof piece / sizeof piece[0];
    for (size_t i = 0; i < n; i++) {
        piece[i] = malloc(HEAP_WARM_PIECE);
        volatile char *v = piece[i];
        for (size_t off = 0; v && off < HEAP_WARM_PIECE; off += 4096)
            v[off] = 1;
    }
    for (size_t i = n; i-- > 0;)
        free(piece[i]);
    return HEAP_KEEP;
#else
    return 0;
#endif
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

/* What main gathers before it serves: the options, libfuse's view of the
 * command line, and the strings handed to libfuse (freed by
 * startup_fini). */
typedef struct fs_startup {
    const char *prog;
    struct fuse_args args;
    struct fs_options o;
    struct fuse_cmdline_opts opts;
    char *mount_opts;
    char *store_real; /* resolved before libfuse changes to "/" */
} fs_startup;

static void startup_fini(fs_startup *s)
{
    free(s->opts.mountpoint);
    free(s->o.mountpoint);
    free(s->o.backups_dir);
    free(s->o.manifest_cache);
    free(s->store_real);
    free(s->mount_opts);
    fuse_opt_free_args(&s->args);
}

/* The fixed mount options: read-only, and the store's absolute path as
 * fsname (it names the mount in mount(8) and df(1)) with our subtype, by
 * which umount recognises our mounts (FB_MOUNT_FSTYPE). */
static int add_mount_options(fs_startup *s)
{
    const struct fs_options *o = &s->o;
    s->store_real = o->backups_dir ? realpath(o->backups_dir, NULL) : NULL;
    const char *named = s->store_real ? s->store_real : o->backups_dir ? o->backups_dir : s->prog;
    char *fsname = escape_option_value(named);
    if (!fsname || asprintf(&s->mount_opts, "-oro,nosuid,nodev,fsname=%s,subtype=%s%s", fsname,
                            FB_MOUNT_SUBTYPE, o->allow_other ? ",default_permissions" : "") < 0) {
        free(fsname);
        s->mount_opts = NULL;
        fprintf(stderr, "%s: out of memory\n", s->prog);
        return FB_EXIT_RUNTIME;
    }
    free(fsname);
    /* Right after argv[0]: everything after a "--" is a positional. */
    if (fuse_opt_insert_arg(&s->args, 1, s->mount_opts) != 0 ||
        fuse_parse_cmdline(&s->args, &s->opts) != 0) {
        fprintf(stderr, "%s: bad options (see --help)\n", s->prog);
        return FB_EXIT_USAGE;
    }
    return 0;
}

/* --help and --version: printed, and *done set. */
static void print_info(const fs_startup *s, bool *done)
{
    if (s->opts.show_help) {
        usage(stdout, s->prog);
        printf("\nlibfuse options:\n");
        fflush(stdout);
        fuse_cmdline_help();
        fuse_lowlevel_help();
        *done = true;
    } else if (s->opts.show_version) {
        printf("%s %s\n", s->prog, FB_VERSION);
        printf("FUSE library version %s\n", fuse_pkgversion());
        fflush(stdout);
        fuse_lowlevel_version();
        *done = true;
    }
}

/* Parses and checks the command line. Returns 0 to go on and mount, or the
 * exit status with *done set (a refusal, or --help/--version: 0). */
static int read_command_line(fs_startup *s, bool *done)
{
    *done = true;
    if (fuse_opt_parse(&s->args, &s->o, option_spec, option_proc) != 0) {
        fprintf(stderr, "%s: bad options (see --help)\n", s->prog);
        return FB_EXIT_USAGE;
    }
    if (s->o.refused[0]) {
        fprintf(stderr,
                "%s: option '%s' refused: the mount is always read-only (ro,nosuid,nodev)\n",
                s->prog, s->o.refused);
        return FB_EXIT_USAGE;
    }
    /* Before fuse_parse_cmdline, which fails on a missing mountpoint with
     * only "bad mount point"; libfuse would mount on a regular file (a root
     * of the file's type, which then serves EIO) or over another mount. */
    fb_error err;
    fb_error_clear(&err);
    int rc;
    if (!s->o.info && s->o.mountpoint && (rc = fb_mount_check_target(s->o.mountpoint, &err))) {
        fprintf(stderr, "%s: %s\n", s->prog, err.message);
        return fb_error_exit_status(rc);
    }
    int status = add_mount_options(s);
    if (status)
        return status;
    bool info = false;
    print_info(s, &info);
    if (info)
        return 0;
    if (!s->o.backups_dir || !s->opts.mountpoint) {
        usage(stderr, s->prog);
        return FB_EXIT_USAGE;
    }
    /* Refused before anything is mounted: a mount inside the store would make
     * the store contain itself (restic refuses the same). */
    if ((rc = fb_mount_check_mountpoint(s->o.backups_dir, s->opts.mountpoint, &err))) {
        fprintf(stderr, "%s: %s\n", s->prog, err.message);
        return fb_error_exit_status(rc);
    }
    *done = false;
    return 0;
}

/* Runs the request loop until an unmount or a signal; returns the exit
 * status. */
static int run_loop(struct fuse_session *se, const struct fuse_cmdline_opts *opts,
                    const char *prog)
{
    /* -s: libfuse's loop, one thread; else ours (fs/loop.c), which keeps a
     * sequence of requests on one thread and spreads requests that queue. */
    int ret = opts->singlethread ? fuse_session_loop(se) : fs_loop_run(se, opts->max_threads);
    /* libfuse's loop reports the signal that ended it, ours 0; SIGTERM,
     * SIGINT and SIGHUP (and an unmount, which reports 0) are a clean end. */
    if (ret == 0 || ret == SIGTERM || ret == SIGINT || ret == SIGHUP)
        return 0;
    fuse_log(FUSE_LOG_ERR, "%s: session ended with error %d\n", prog, ret);
    return FB_EXIT_RUNTIME;
}

/* Mounts the tree and serves it: returns the exit status. */
static int serve(fs_startup *s, fb_mount_tree *tree)
{
    const char *prog = s->prog;
    fs_daemon daemon = {.tree = tree, .want_opens = s->o.open_round_trips != 0};
    struct fuse_session *se =
        fuse_session_new(&s->args, fs_ll_ops(), sizeof *fs_ll_ops(), &daemon);
    if (!se) {
        fprintf(stderr, "%s: cannot start the FUSE session (bad options?)\n", prog);
        return FB_EXIT_USAGE;
    }
    int status = FB_EXIT_RUNTIME;
    bool handlers = false, mounted = false;
    if (fuse_set_signal_handlers(se) != 0) {
        fprintf(stderr, "%s: cannot install signal handlers\n", prog);
        goto out;
    }
    handlers = true;
    if (fuse_session_mount(se, s->opts.mountpoint) != 0) {
        fprintf(stderr, "%s: cannot mount on %s\n", prog, s->opts.mountpoint);
        goto out;
    }
    mounted = true;
    /* Forks here when not -f; the parent exits 0 once the child is set up,
     * and the mount already exists at that point. */
    if (fuse_daemonize(s->opts.foreground) != 0) {
        fprintf(stderr, "%s: cannot go to the background\n", prog);
        goto out;
    }
    if (!s->opts.foreground) {
        openlog(prog, LOG_PID, LOG_DAEMON);
        fuse_set_log_func(syslog_logger);
    } else {
        print_serving(prog, s->store_real ? s->store_real : s->o.backups_dir, s->opts.mountpoint);
    }
    status = run_loop(se, &s->opts, prog);

out:
    if (mounted)
        fuse_session_unmount(se);
    if (handlers)
        fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return status;
}

int main(int argc, char *argv[])
{
    uint64_t heap_keep = set_up_malloc();
    fs_startup s = {
        .prog = "flowloom-backupfs",
        .args = FUSE_ARGS_INIT(argc, argv),
        .o = {.cache_mib = FB_MOUNT_CACHE_DEFAULT_MIB,
              .meta_cache_mib = FB_MOUNT_META_CACHE_DEFAULT_MIB},
    };
    bool done = false;
    int status = read_command_line(&s, &done);
    if (!done) {
        char *cache_dir = NULL;
        if (!s.o.no_manifest_cache)
            cache_dir = s.o.manifest_cache ? strdup(s.o.manifest_cache)
                                           : fb_manifest_cache_default_dir();
        fb_mount_options mo = {
            .manifest_cache_dir = cache_dir,
            .cache_bytes = (uint64_t)s.o.cache_mib * 1024 * 1024,
            .meta_cache_bytes = (uint64_t)s.o.meta_cache_mib * 1024 * 1024,
            .live_seconds = FS_LIVE_REFRESH,
            .heap_keep_bytes = heap_keep,
            .warn = fs_log_warning,
            .warn_ctx = NULL,
        };
        fb_mount_tree *tree = NULL;
        fb_error err;
        fb_error_clear(&err);
        int rc = fb_mount_tree_new(s.o.backups_dir, &mo, &tree, &err);
        free(cache_dir);
        if (rc) {
            fprintf(stderr, "%s: %s\n", s.prog, err.message);
            status = fb_error_exit_status(rc);
        } else {
            raise_fd_limit();
            status = serve(&s, tree);
        }
        fb_mount_tree_free(tree);
    }
    startup_fini(&s);
    return status;
}
