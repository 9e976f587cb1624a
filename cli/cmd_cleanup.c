/* `flowloom-backup cleanup`: applies the retention policy (SPEC "Retention")
 * to one session or to every session and reports every backup with the rule
 * that kept or removed it. The sequence (lock, leftovers, index, plan,
 * crash-safe removal) is core's fb_cleanup_run; this file picks the policy
 * (config, then flags) and the sessions, and prints.
 *
 * A dry run is a reader: it takes no lock, clears no leftovers and never
 * writes a rebuilt index back, so it changes nothing on disk. */
#include "cli_i.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "fb_cleanup.h"
#include "fb_retention.h"
#include "fb_store.h"
#include "fb_text.h"

#define DEFAULT_WAIT_SECONDS 10.0

enum {
    OPT_ALL = CLI_OPT_COMMAND,
    OPT_DRY_RUN,
    OPT_KEEP_FULL,
    OPT_MAX_AGE,
    OPT_MIN_KEEP,
    OPT_WAIT,
};

static const cli_option cleanup_options[] = {
    {"all", 0, false, OPT_ALL},
    {"dry-run", 'n', false, OPT_DRY_RUN},
    {"keep-full", 0, true, OPT_KEEP_FULL},
    {"max-age", 0, true, OPT_MAX_AGE},
    {"min-keep", 0, true, OPT_MIN_KEEP},
    {"wait", 0, true, OPT_WAIT},
    {NULL, 0, false, 0},
};

static const char cleanup_usage[] =
    "Usage: " CLI_PROG " cleanup [session_id|--all] [--dry-run] [--keep-full N]\n"
    "           [--max-age DAYS] [--min-keep N] [--wait SECONDS] [--json]\n"
    "\n"
    "Applies the retention policy to the session's backups (default: the current\n"
    "session; --all: every session that has backups). A backup is removed when it is a\n"
    "full backup not among the keep_full newest full backups, or older than max_age_days;\n"
    "the newest backup and the newest full backup are always kept, and the newest\n"
    "removable ones are kept until min_keep remain. The policy comes from\n"
    ".flowloom/backup.json (defaults: keep_full 10, max_age_days 30, min_keep 1); the\n"
    "options below override it. Every backup is listed with the rule that decided it.\n"
    "Leftovers of interrupted runs are cleared: .tmp-* and .trash-* in the store, and\n"
    "the staging dirs of killed recovers (.flowloom/sessions/.restore-<session_id>-*)\n"
    "that no running recover holds.\n"
    "\n"
    "Options:\n"
    "      --all             every session\n"
    "  -n, --dry-run         show what would be removed; change nothing (takes no lock)\n"
    "      --keep-full N     keep the N newest full backups (N >= 1)\n"
    "      --max-age DAYS    remove backups older than DAYS days (0: no age limit)\n"
    "      --min-keep N      keep at least N backups (N >= 1)\n"
    "      --wait SECONDS    wait this long for the session lock (default 10)\n"
    "      --json            one JSON object ({session_id, policy, dry_run, kept, removed});\n"
    "                        an array of them with --all\n"
    "  -q, --quiet           print only errors and warnings\n";

typedef struct cleanup_args {
    bool all;
    bool dry_run;
    double wait;
    const char *session_arg;
} cleanup_args;

static void print_decisions(const fb_cleanup_result *r, const fb_retention_policy *policy)
{
    for (size_t i = 0; i < r->n_items; i++) {
        const fb_cleanup_item *it = &r->items[i];
        char desc[256], when[64];
        fb_retention_describe(&it->decision, policy, desc, sizeof desc);
        cli_format_local_time(it->created_at, false, when);
        printf("  %-28s  %-11s  %-19s  %s\n", it->decision.id, fb_backup_type_name(it->type),
               when, desc);
    }
}

/* Cleans one session (core's fb_cleanup_run) and reports it. json_out: the
 * array to append this session's object to (NULL for human output).
 * Returns 0 or an exit status. */
static int cleanup_session(cli_ctx *ctx, fb_store *store, const char *session_id,
                           const fb_retention_policy *policy, const cleanup_args *a,
                           bool heading, bool first, cJSON *json_out)
{
    fb_error err;
    fb_error_clear(&err);
    fb_cleanup_request req = {
        .session_id = session_id,
        .policy = *policy,
        .now = ctx->now,
        .dry_run = a->dry_run,
        .lock_wait_seconds = a->wait,
        .lock_waiting = cli_lock_waiting,
        .lock_waiting_ctx = ctx,
        .warn = cli_warn,
        .warn_ctx = ctx,
    };
    fb_cleanup_result r;
    fb_cleanup_result_init(&r);
    int status = 0;
    if (store && fb_cleanup_run(store, &req, &r, &err) != 0) {
        status = cli_fail(&err);
        goto out;
    }
    if (json_out) {
        fb_retention_decision *plan = r.n_items ? calloc(r.n_items, sizeof *plan) : NULL;
        for (size_t i = 0; plan && i < r.n_items; i++)
            plan[i] = r.items[i].decision;
        cJSON *o = cJSON_CreateObject();
        bool ok = (plan || r.n_items == 0) && cli_json_add(json_out, NULL, o) &&
                  cli_json_add(o, "session_id", cJSON_CreateString(session_id)) &&
                  cli_json_add(o, "dry_run", cJSON_CreateBool(a->dry_run)) &&
                  cli_json_add(o, "index_rebuilt", cJSON_CreateBool(r.index_rebuilt)) &&
                  cli_json_add_retention(o, policy, plan, r.n_items);
        free(plan);
        if (ok && a->dry_run) {
            cJSON *l = cJSON_CreateArray();
            ok = cli_json_add(o, "leftovers", l);
            for (size_t i = 0; ok && i < r.n_leftovers; i++)
                ok = cli_json_add(l, NULL, cli_json_string_or_null(r.leftovers[i]));
        }
        if (!ok)
            status = cli_failf(CLI_EXIT_RUNTIME, "out of memory while formatting JSON");
    } else if (!ctx->quiet) {
        if (heading)
            printf("%sSession %s\n", first ? "" : "\n", session_id);
        fputs("Policy: ", stdout);
        cli_print_policy(stdout, policy);
        fputc('\n', stdout);
        if (r.index_rebuilt)
            printf("Index: rebuilt from the manifests%s\n",
                   a->dry_run ? " (in memory only: dry run)" : " and written");
        for (size_t i = 0; i < r.n_leftovers; i++) {
            fputs("Would clear leftover: ", stdout);
            cli_print_escaped(stdout, r.leftovers[i]);
            fputc('\n', stdout);
        }
        if (r.n_items == 0) {
            printf("No backups of session %s.\n", session_id);
        } else {
            print_decisions(&r, policy);
            size_t kept = r.n_items - r.n_removed;
            if (a->dry_run)
                printf("Dry run: would remove %zu backup%s, keep %zu; nothing was changed.\n",
                       r.n_removed, r.n_removed == 1 ? "" : "s", kept);
            else
                printf("Removed %zu backup%s, kept %zu.\n", r.n_removed,
                       r.n_removed == 1 ? "" : "s", kept);
        }
    }
out:
    fb_cleanup_result_fini(&r);
    return status;
}

/* An option takes exactly the values backup.json's key takes
 * (fb_config_retention_check), so a policy that works on the command line
 * works in the config and the other way round. */
static int parse_retention_option(const cli_ctx *ctx, const char *option, const char *key,
                                  const char *text, uint32_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    bool integer = text[0] >= '0' && text[0] <= '9' && *end == '\0' && errno == 0;
    uint64_t value = v;
    char quoted[FB_TEXT_QUOTE_SIZE(FB_TEXT_QUOTE_CUT)], got[sizeof quoted + 2];
    if (integer)
        snprintf(got, sizeof got, "%s", text);
    else
        snprintf(got, sizeof got, "'%s'", fb_text_quote(text, quoted, sizeof quoted));
    fb_error err;
    fb_error_clear(&err);
    if (fb_config_retention_check(key, integer ? &value : NULL, option, got, &err) != 0)
        return cli_usage_error(ctx->command, "%s", err.message);
    *out = (uint32_t)v;
    return 0;
}

static int parse_cleanup_args(cli_ctx *ctx, cleanup_args *a, fb_retention_policy *over,
                              bool set[3])
{
    a->all = false;
    a->dry_run = false;
    a->wait = DEFAULT_WAIT_SECONDS;
    set[0] = set[1] = set[2] = false;
    for (size_t i = 0; i < ctx->n_opts; i++) {
        const cli_optval *o = &ctx->opts[i];
        int rc = 0;
        switch (o->id) {
        case OPT_ALL:
            a->all = true;
            break;
        case OPT_DRY_RUN:
            a->dry_run = true;
            break;
        case OPT_KEEP_FULL:
            rc = parse_retention_option(ctx, "--keep-full", "keep_full", o->value,
                                        &over->keep_full);
            set[0] = true;
            break;
        case OPT_MAX_AGE:
            rc = parse_retention_option(ctx, "--max-age", "max_age_days", o->value,
                                        &over->max_age_days);
            set[1] = true;
            break;
        case OPT_MIN_KEEP:
            rc = parse_retention_option(ctx, "--min-keep", "min_keep", o->value,
                                        &over->min_keep);
            set[2] = true;
            break;
        case OPT_WAIT:
            rc = cli_parse_seconds("--wait", o->value, &a->wait);
            break;
        default:
            break;
        }
        if (rc)
            return rc;
    }
    a->session_arg = ctx->session_opt;
    if (ctx->n_pos > 0) {
        if (a->session_arg || ctx->n_pos > 1)
            return cli_usage_error(ctx->command, "unexpected argument '%s'",
                                   ctx->pos[a->session_arg ? 0 : 1]);
        a->session_arg = ctx->pos[0];
    }
    if (a->all && a->session_arg)
        return cli_usage_error(ctx->command, "give a session or --all, not both");
    return 0;
}

typedef struct cleanup_each {
    const fb_retention_policy *policy;
    const cleanup_args *args;
    cJSON *json_out;
} cleanup_each;

static int cleanup_each_session(cli_ctx *ctx, fb_store *store, const char *session_id,
                                bool first, void *arg)
{
    const cleanup_each *each = arg;
    return cleanup_session(ctx, store, session_id, each->policy, each->args, true, first,
                           each->json_out);
}

static int run_cleanup(cli_ctx *ctx)
{
    cleanup_args a;
    fb_retention_policy over = {0, 0, 0};
    bool set[3];
    int status = parse_cleanup_args(ctx, &a, &over, set);
    if (status)
        return status;

    char *session_id = NULL;
    fb_store *store = NULL;
    cJSON *arr = NULL;
    bool config_ready = false;
    fb_config config;
    fb_error err;
    fb_error_clear(&err);

    if (!a.all) {
        status = cli_resolve_existing_session(ctx, a.session_arg, &session_id);
        if (status)
            goto out;
    } else if ((status = cli_resolve_root(ctx)) != 0) {
        goto out;
    }
    if (fb_config_load(ctx->root, &config, cli_warn, ctx, &err) != 0) {
        status = cli_fail(&err);
        goto out;
    }
    config_ready = true;
    fb_retention_policy policy = config.retention;
    if (set[0])
        policy.keep_full = over.keep_full;
    if (set[1])
        policy.max_age_days = over.max_age_days;
    if (set[2])
        policy.min_keep = over.min_keep;

    status = cli_open_store_readonly(ctx, &store);
    if (status)
        goto out;
    if (ctx->json && !(arr = cJSON_CreateArray())) {
        status = cli_failf(CLI_EXIT_RUNTIME, "out of memory");
        goto out;
    }
    if (!a.all) {
        status = cleanup_session(ctx, store, session_id, &policy, &a, false, true, arr);
        if (status == 0 && arr) {
            /* One session: the object itself, not an array of one. */
            cJSON *o = cJSON_DetachItemFromArray(arr, 0);
            status = cli_json_emit(o);
        }
        goto out;
    }
    /* A busy or failing session does not stop the others; the exit status is
     * the first failure's. */
    cleanup_each each = {.policy = &policy, .args = &a, .json_out = arr};
    status = cli_for_each_session(ctx, store, true, cleanup_each_session, &each);
    if (arr) {
        int st = cli_json_emit(arr);
        arr = NULL;
        if (st && !status)
            status = st;
    }

out:
    cJSON_Delete(arr);
    fb_store_free(store);
    if (config_ready)
        fb_config_fini(&config);
    free(session_id);
    return status;
}

const cli_command cli_cmd_cleanup = {
    .name = "cleanup",
    .alias = NULL,
    .summary = "apply the retention policy (remove old backups)",
    .usage = cleanup_usage,
    .options = cleanup_options,
    .pass_unknown = false,
    .run = run_cleanup,
};
