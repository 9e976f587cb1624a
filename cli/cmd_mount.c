/* `flowloom-backup mount` / `umount`: thin wrappers that start
 * flowloom-backupfs on this root's .flowloom/backups and stop it with
 * fusermount3, after core's checks of the mountpoint (fb_mount_paths.h): the
 * daemon repeats mount's, and umount must never hand fusermount3 (which as
 * root unmounts anything) a mount that is not ours. Children are exec'd with
 * an argument vector (never a shell), and a path can never be taken for an
 * option: the daemon gets absolute paths (they start with '/'; libfuse
 * appends its own -o options after ours, so a "--" would turn those into stray
 * arguments), fusermount3 gets "--". */
#include "cli_i.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fb_fsutil.h"
#include "fb_mount_paths.h"
#include "fb_store.h"

#define DAEMON_NAME "flowloom-backupfs"

static const char mount_usage[] =
    "Usage: " CLI_PROG " mount <mountpoint> [FUSE options]\n"
    "\n"
    "Mounts this root's .flowloom/backups read-only at <mountpoint> with " DAEMON_NAME "\n"
    "(sessions -> backups -> files). Without -f the daemon detaches once the mount is\n"
    "live. <mountpoint> must be an existing directory that is not already a mount\n"
    "point. FUSE options are passed on: -f (foreground: serves until stopped),\n"
    "-d (debug), -s (single thread), -o allow_other, -o cache_size=MiB\n"
    "(decompressed-frame cache, default 64), -o meta_cache_size=MiB (backups'\n"
    "metadata kept loaded, least recently used dropped first; default 32),\n"
    "-o manifest_cache=DIR (checked manifests kept in binary form, so a backup's\n"
    "first touch parses no JSON; default $XDG_CACHE_HOME/flowloom-backup, else\n"
    "~/.cache/flowloom-backup), -o no_manifest_cache.\n"
    "Stop it with '" CLI_PROG " umount <mountpoint>' (or Ctrl-C with -f).\n";

static const char umount_usage[] =
    "Usage: " CLI_PROG " umount [--lazy] <mountpoint>\n"
    "\n"
    "Unmounts a " DAEMON_NAME " mount (fusermount3 -u); the daemon then exits.\n"
    "Anything else mounted at <mountpoint> is left alone (exit 2); nothing mounted\n"
    "there is exit 3.\n"
    "\n"
    "Options:\n"
    "      --lazy    detach now even if the mount is busy (fusermount3 -uz)\n";

enum { OPT_LAZY = CLI_OPT_COMMAND };

static const cli_option umount_options[] = {
    {"lazy", 0, false, OPT_LAZY},
    {NULL, 0, false, 0},
};

static char *absolute_path(const char *path)
{
    if (path[0] == '/')
        return strdup(path);
    char *cwd = getcwd(NULL, 0);
    if (!cwd)
        return NULL;
    char *out = fb_path_join(cwd, path);
    free(cwd);
    return out;
}

/* The daemon built beside us (build tree: cli/ and fs/; installed: one bin
 * dir), else NULL to search PATH. */
static char *find_daemon(void)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return NULL;
    self[n] = '\0';
    char *dir = dirname(self);
    static const char *const rel[] = {"../fs/" DAEMON_NAME, DAEMON_NAME};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        char *cand = fb_path_join(dir, rel[i]);
        if (cand && access(cand, X_OK) == 0)
            return cand;
        free(cand);
    }
    return NULL;
}

static void restore_signals(void)
{
    signal(SIGPIPE, SIG_DFL);
    signal(SIGXFSZ, SIG_DFL);
}

static int run_mount(cli_ctx *ctx)
{
    /* Our parser hands unknown options through as positionals; split them
     * into FUSE options and the one mountpoint. */
    const char *mountpoint = NULL;
    const char **fuse_args = calloc(ctx->n_pos + 1, sizeof *fuse_args);
    if (!fuse_args)
        return cli_failf(CLI_EXIT_RUNTIME, "out of memory");
    size_t n_fuse = 0;
    int status = 0;
    for (size_t i = 0; i < ctx->n_pos; i++) {
        const char *a = ctx->pos[i];
        if (strcmp(a, "-o") == 0) {
            if (i + 1 >= ctx->n_pos) {
                status = cli_usage_error(ctx->command, "option '-o' needs a value");
                goto out_args;
            }
            fuse_args[n_fuse++] = a;
            fuse_args[n_fuse++] = ctx->pos[++i];
        } else if (a[0] == '-' && a[1] != '\0') {
            fuse_args[n_fuse++] = a;
        } else if (!mountpoint) {
            mountpoint = a;
        } else {
            status = cli_usage_error(ctx->command, "unexpected argument '%s'", a);
            goto out_args;
        }
    }
    if (!mountpoint) {
        status = cli_usage_error(ctx->command, "missing <mountpoint>");
        goto out_args;
    }

    status = cli_resolve_root(ctx);
    if (status)
        goto out_args;
    fb_store *store = NULL;
    fb_error err;
    fb_error_clear(&err);
    /* Checked here too, not only by the daemon (libfuse rejects a missing
     * mountpoint while parsing options, with a message about options), and
     * before the store is opened, which creates it: a refused mount changes
     * nothing. */
    if (fb_mount_check_target(mountpoint, &err) != 0) {
        status = cli_fail(&err);
        goto out_args;
    }
    /* An empty store is mountable: backups made later appear in the mount. */
    if (fb_store_open(ctx->root, true, &store, &err) != 0) {
        status = cli_fail(&err);
        goto out_args;
    }
    char *backups = absolute_path(fb_store_backups_path(store));
    fb_store_free(store);
    char *mp = absolute_path(mountpoint);
    char *daemon = find_daemon();
    size_t argc = n_fuse + 4;
    char **argv = calloc(argc, sizeof *argv);
    if (!backups || !mp || !argv) {
        status = cli_failf(CLI_EXIT_RUNTIME, "out of memory");
        goto out;
    }
    size_t k = 0;
    argv[k++] = daemon ? daemon : DAEMON_NAME;
    for (size_t i = 0; i < n_fuse; i++)
        argv[k++] = (char *)fuse_args[i];
    argv[k++] = backups;
    argv[k++] = mp;
    argv[k] = NULL;

    fflush(stdout);
    fflush(stderr);
    restore_signals();
    if (daemon)
        execv(daemon, argv);
    else
        execvp(DAEMON_NAME, argv);
    int e = errno;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
    status = cli_failf(CLI_EXIT_RUNTIME, "cannot run %s: %s (looked beside %s and on PATH)",
                       daemon ? daemon : DAEMON_NAME, strerror(e), CLI_PROG);
out:
    free(argv);
    free(daemon);
    free(mp);
    free(backups);
out_args:
    free(fuse_args);
    return status;
}

static int run_umount(cli_ctx *ctx)
{
    bool lazy = false;
    for (size_t i = 0; i < ctx->n_opts; i++)
        if (ctx->opts[i].id == OPT_LAZY)
            lazy = true;
    if (ctx->n_pos == 0)
        return cli_usage_error(ctx->command, "missing <mountpoint>");
    if (ctx->n_pos > 1)
        return cli_usage_error(ctx->command, "unexpected argument '%s'", ctx->pos[1]);
    char *mp = NULL;
    fb_error err;
    fb_error_clear(&err);
    if (fb_mount_check_unmount(ctx->pos[0], &mp, &err) != 0)
        return cli_fail(&err);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        free(mp);
        return cli_failf(CLI_EXIT_RUNTIME, "fork: %s", strerror(e));
    }
    if (pid == 0) {
        restore_signals();
        char *argv[] = {"fusermount3", lazy ? "-uz" : "-u", "--", mp, NULL};
        execvp("fusermount3", argv);
        fprintf(stderr, "%s: cannot run fusermount3: %s\n", CLI_PROG, strerror(errno));
        _exit(127);
    }
    int wstatus = 0;
    while (waitpid(pid, &wstatus, 0) < 0) {
        if (errno != EINTR) {
            int e = errno;
            free(mp);
            return cli_failf(CLI_EXIT_RUNTIME, "waitpid: %s", strerror(e));
        }
    }
    int status = 0;
    if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
        /* fusermount3 said why on stderr; we add which mount and our code. */
        fprintf(stderr, "%s: could not unmount ", CLI_PROG);
        cli_print_escaped(stderr, mp);
        fputc('\n', stderr);
        status = CLI_EXIT_RUNTIME;
    }
    free(mp);
    return status;
}

const cli_command cli_cmd_mount = {
    .name = "mount",
    .alias = NULL,
    .summary = "mount the backups read-only (FUSE)",
    .usage = mount_usage,
    .options = NULL,
    .pass_unknown = true,
    .run = run_mount,
};

const cli_command cli_cmd_umount = {
    .name = "umount",
    .alias = NULL,
    .summary = "unmount a mount made with 'mount'",
    .usage = umount_usage,
    .options = umount_options,
    .pass_unknown = false,
    .run = run_umount,
};
