/* Shared pieces of the flowloom-backup command line program: the per-run
 * context, the option parser, exit-code mapping and output helpers. The CLI
 * is a thin layer: every decision about the store lives in core/. */
#ifndef FB_CLI_I_H
#define FB_CLI_I_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "fb_config.h"
#include "fb_error.h"
#include "fb_index.h"
#include "fb_lock.h"
#include "fb_retention.h"
#include "fb_store.h"
#include "fb_types.h"

#define CLI_PROG "flowloom-backup"

/* Exit statuses (SPEC "Exit codes"): core's, shared with flowloom-backupfs. */
enum {
    CLI_EXIT_OK = FB_EXIT_OK,
    CLI_EXIT_CORRUPT = FB_EXIT_CORRUPT,
    CLI_EXIT_USAGE = FB_EXIT_USAGE,
    CLI_EXIT_NOTFOUND = FB_EXIT_NOTFOUND,
    CLI_EXIT_BUSY = FB_EXIT_BUSY,
    CLI_EXIT_RUNTIME = FB_EXIT_RUNTIME,
};

/* ---- options ---- */

/* Ids of the global options, accepted before or after the command name.
 * Command options use ids >= CLI_OPT_COMMAND. */
enum {
    CLI_OPT_ROOT = 1,
    CLI_OPT_SESSION,
    CLI_OPT_JSON,
    CLI_OPT_QUIET,
    CLI_OPT_VERBOSE,
    CLI_OPT_HELP,
    CLI_OPT_VERSION,
    CLI_OPT_COMMAND = 100,
};

typedef struct cli_option {
    const char *long_name; /* without the leading "--"; NULL ends a table */
    char short_name;       /* 0 when there is none */
    bool has_arg;
    int id;
} cli_option;

typedef struct cli_optval {
    int id;
    const char *name;  /* long name without "--", for messages */
    const char *value; /* NULL for flags */
} cli_optval;

typedef struct cli_command cli_command;

/* Everything a command needs that is common to all commands. */
typedef struct cli_ctx {
    const cli_command *command;
    /* global options */
    const char *root_opt;
    const char *session_opt;
    bool json;
    bool quiet;
    int verbose;
    bool help;
    bool version;
    /* command options in the order given, and positionals */
    cli_optval *opts;
    size_t n_opts;
    const char **pos;
    size_t n_pos;
    /* resolved lazily */
    char *root;
    int64_t now;
    /* set while a progress line is on stderr, so warnings clear it first */
    bool progress_line_active;
    /* where the resolved session id came from (set by cli_resolve_session) */
    fb_session_origin session_origin;
} cli_ctx;

struct cli_command {
    const char *name;
    const char *alias;         /* NULL when none */
    const char *summary;       /* one line for the global help */
    const char *usage;         /* full --help text */
    const cli_option *options; /* command options, NULL-terminated table (may be NULL) */
    bool pass_unknown;         /* unknown options become positionals (mount's FUSE options) */
    int (*run)(cli_ctx *ctx);
};

extern const cli_option cli_global_options[];

/* Parses argv[start..argc) with the global table and the command's table.
 * Global options go into ctx; command options into ctx->opts; the rest into
 * ctx->pos. When stop_at_positional is true, stops at the first positional
 * and stores its index in *next (used to find the command name).
 * Returns 0 or CLI_EXIT_USAGE after printing the problem. */
int cli_parse_args(cli_ctx *ctx, int argc, char **argv, int start, const cli_command *cmd,
                   bool stop_at_positional, int *next);

/* Strict number parsers for option values; print the problem and return
 * CLI_EXIT_USAGE on failure. */
int cli_parse_seconds(const char *opt, const char *value, double *out);
int cli_parse_uint32(const char *opt, const char *value, uint32_t *out);

/* Splits "[session_id] [backup]" (show, verify, recover): with --session a
 * positional is the backup; a lone positional is the backup when it is
 * `latest`, `latest-full` or shaped like a backup id, or when no session of
 * that name exists and there is a current session to look it up in (SPEC
 * "Positionals"); else the session. Missing parts are NULL. Returns 0 or an
 * exit status (message printed). */
int cli_split_session_backup(cli_ctx *ctx, const char **session_arg, const char **backup_arg);

/* "latest", "latest-full" or something shaped like a backup id (date not
 * checked); a prefix of an id is a backup spec too, but only the index can
 * tell, so this says "certainly a backup", not "certainly not". */
bool cli_is_backup_spec(const char *s);
/* "full"/"incremental" (and "incr") */
bool cli_parse_backup_type(const char *s, fb_backup_type *out);
/* The word of the NULL-terminated list within one edit of s (two when s
 * has 5 or more bytes), the closest first; NULL when none is. For "did you
 * mean" hints. */
const char *cli_closest_word(const char *s, const char *const *words);

/* ---- resolution of root, session, clock (main.c) ---- */

/* Validates an explicitly given session id (not "current") before anything
 * touches the file system. Returns 0 or an exit status (message printed). */
int cli_check_session_arg(const char *session_arg);
/* Finds the root into ctx->root. Returns 0 or an exit status. */
int cli_resolve_root(cli_ctx *ctx);
/* The same without a message: 0, or -1 when no root is found (a caller that
 * only probes leaves the report to the command's own cli_resolve_root). */
int cli_resolve_root_quietly(cli_ctx *ctx);
/* session_arg NULL or "current" means the current session. *out malloc'd.
 * Needs ctx->root. Returns 0 or an exit status. */
int cli_resolve_session(cli_ctx *ctx, const char *session_arg, char **out);
/* 0 when <root>/.flowloom/sessions/<sid> is a directory (not a symlink),
 * else the errno of opening it (ENOENT when absent). */
int cli_session_source_errno(const cli_ctx *ctx, const char *session_id);
/* 0 when <root>/.flowloom/backups/<sid> is a directory, else the errno. */
int cli_session_store_errno(const cli_ctx *ctx, const char *session_id);
/* Prints that the session does not exist, saying where its id came from;
 * returns CLI_EXIT_NOTFOUND. */
int cli_session_not_found(const cli_ctx *ctx, const char *session_id);
/* Where ctx's session id came from, for messages: "the command line",
 * "--session", "$FLOWLOOM_SESSION" or ".flowloom/current_session". */
const char *cli_session_origin_text(const cli_ctx *ctx);
/* cli_fail for an error about a backup of the session (not found,
 * ambiguous): when the session was not named on the command line, the
 * message says where it came from. */
int cli_fail_in_session(const cli_ctx *ctx, const fb_error *err);
/* Opens the store without creating anything; a root without backups yet
 * gives 0 and *out NULL. Returns 0 or an exit status. */
int cli_open_store_readonly(cli_ctx *ctx, struct fb_store **out);
/* Loads the session's index (store may be NULL: empty index). A rebuilt
 * index is announced on stderr by the store's warning and written back only
 * if the session lock is free. idx is initialised in every case. Returns 0
 * or an exit status. */
int cli_load_index(cli_ctx *ctx, struct fb_store *store, const char *session_id,
                   struct fb_index *idx);
/* --all: calls fn for every session of the store (none when store is
 * NULL), in name order, first == true for the first; says "No backups
 * under ..." when there are none (not with --json or -q). Stops at the
 * first non-zero status unless keep_going (then every session is tried and
 * the first failure's status returned). */
typedef int (*cli_session_fn)(cli_ctx *ctx, struct fb_store *store, const char *session_id,
                              bool first, void *arg);
int cli_for_each_session(cli_ctx *ctx, struct fb_store *store, bool keep_going, cli_session_fn fn,
                         void *arg);
/* Resolves session_arg, then requires that the session exists (source or
 * backups directory). Returns 0 or an exit status. */
int cli_resolve_existing_session(cli_ctx *ctx, const char *session_arg, char **out);
/* Warning sink for core (ctx is the cli_ctx). */
void cli_warn(void *ctx, const char *message);

/* ---- interruption (signals.c) ---- */

/* The signal that asked the running command to stop, 0 until one came: pass
 * &cli_interrupt_signal as the fb_cancel of a core request. */
extern volatile sig_atomic_t cli_interrupt_signal;
/* Catches SIGINT, SIGTERM and SIGHUP for a command that cleans up after
 * itself (backup, recover); a second signal kills as usual. */
void cli_signals_install(void);
/* 128 + the signal received (130 for SIGINT, 143 for SIGTERM). */
int cli_interrupted_status(void);

/* ---- exit codes and errors (exitcode.c) ---- */

int cli_exit_code(int fb_code);
/* Prints "flowloom-backup: <message>" and returns the exit status. */
int cli_fail(const fb_error *err);
/* Prints "flowloom-backup: <message>" and returns status. */
int cli_failf(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the usage problem and a hint; returns CLI_EXIT_USAGE. */
int cli_usage_error(const cli_command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- output (output.c) ---- */

/* "0 B", "999 B", "1.5 KiB", "4.2 MiB". */
void cli_format_size(uint64_t bytes, char out[32]);
/* Local time "2026-12-01 04:15:00" (with_zone adds " CET"). */
void cli_format_local_time(int64_t t, bool with_zone, char out[64]);
/* Writes a raw name (or other raw text) for a terminal by core's rule for
 * names (fb_path_escape): control characters, backslashes and bytes that
 * are not UTF-8 are shown as C escapes, so a name cannot forge output lines. */
void cli_print_escaped(FILE *f, const char *s);
/* Writes a message from core (fb_error, warnings) for a terminal: core
 * escaped the names and values in it already, so its backslashes are kept
 * as they are; any raw control character or non-UTF-8 byte left is still
 * escaped by the same rule. */
void cli_print_message(FILE *f, const char *message);
/* s with invalid UTF-8 replaced by U+FFFD, malloc'd (NULL on ENOMEM). */
char *cli_utf8_sanitize(const char *s);

/* JSON values: integers are emitted as raw digits so values above 2^31
 * print exactly (cJSON's number printer would use %g). */
cJSON *cli_json_uint(uint64_t v);
cJSON *cli_json_int(int64_t v);
/* A string (sanitised to UTF-8) or null when s is NULL. */
cJSON *cli_json_string_or_null(const char *s);
/* Adds a name (raw bytes) under key; when it is not valid UTF-8 also its
 * exact bytes in base64 under "<key>_b64", as manifests do. */
bool cli_json_add_name(cJSON *obj, const char *key, const char *name);
/* RFC 3339 UTC string of t. */
cJSON *cli_json_time(int64_t t);
/* Adds item to obj under key; returns false on ENOMEM (item freed). */
bool cli_json_add(cJSON *obj, const char *key, cJSON *item);
/* Prints formatted JSON and a newline on stdout, frees root. Returns 0 or
 * an exit status. */
int cli_json_emit(cJSON *root);

/* Retention, as backup and cleanup report it. */
/* "keep_full 10, max_age_days 30, min_keep 1" */
void cli_print_policy(FILE *f, const fb_retention_policy *policy);
/* "kept: newest full" -> "newest full", for JSON where kept/removed is the key. */
const char *cli_retention_rule_text(const char *desc);
/* Adds "policy", "kept": [{id, rule}] and "removed": [{id, rule}] to obj.
 * Returns false on ENOMEM. */
bool cli_json_add_retention(cJSON *obj, const fb_retention_policy *policy,
                            const fb_retention_decision *plan, size_t n);

/* ---- commands ---- */

extern const cli_command cli_cmd_backup;
extern const cli_command cli_cmd_list;
extern const cli_command cli_cmd_show;
extern const cli_command cli_cmd_verify;
extern const cli_command cli_cmd_mount;
extern const cli_command cli_cmd_umount;
extern const cli_command cli_cmd_cleanup;
extern const cli_command cli_cmd_forget;
extern const cli_command cli_cmd_recover;
extern const cli_command cli_cmd_diff;
extern const cli_command cli_cmd_log;

/* ---- progress bar and waiting notices (progress.c) ---- */

/* --progress, --no-progress, or neither (a bar on a terminal, after a
 * second, not with --quiet or --json). */
typedef enum cli_progress_mode {
    CLI_PROGRESS_AUTO,
    CLI_PROGRESS_ON,
    CLI_PROGRESS_OFF,
} cli_progress_mode;

/* One progress bar on stderr: "phase [####....] 42%  done / total  rate  ETA".
 * On a terminal it is one line redrawn in place (ctx->progress_line_active
 * set meanwhile, so warnings clear it first); otherwise (--progress into a
 * file or pipe) a line per second at most, each ending with a newline. */
typedef struct cli_progress {
    cli_ctx *ctx;
    bool on;       /* drawing at all */
    bool in_place; /* stderr is a terminal */
    bool delayed;  /* no explicit --progress: nothing during the first second */
    bool started;  /* an update came */
    bool drawn;    /* the latest state is shown */
    double start, last_draw, phase_start; /* monotonic seconds */
    char phase[32];
    uint64_t phase_done0; /* done at the phase's first update, for the rate */
    uint64_t done, total;
} cli_progress;

void cli_progress_init(cli_progress *p, cli_ctx *ctx, cli_progress_mode mode);
/* cli_progress_update when the bar is on, else NULL: the value for a core
 * request's progress field (its ctx is p). */
fb_progress_fn cli_progress_fn(const cli_progress *p);
/* An fb_progress_fn (vp is a cli_progress). */
void cli_progress_update(void *vp, const char *phase, uint64_t done, uint64_t total);
/* Ends the bar before the report: a log gets its last state, a terminal
 * line is cleared. */
void cli_progress_end(cli_progress *p);
/* Clears the terminal line if a bar is on it (before any other message). */
void cli_progress_clear(cli_ctx *ctx);
/* An fb_lock_wait_fn (ctx is the cli_ctx): says at once on stderr that the
 * command waits for a session lock, and who holds it; not with --quiet. */
void cli_lock_waiting(void *ctx, const fb_lock_waiting *waiting);

#endif
