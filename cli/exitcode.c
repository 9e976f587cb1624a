/* The one place where core error codes become exit statuses (SPEC "Exit
 * codes") and where error messages are printed, so every command reports
 * failures the same way: "flowloom-backup: <thing>: <reason>" on stderr.
 * Messages quote names from the user or the disk, so they are printed
 * escaped: a name with a newline cannot forge a second line. */
#include "cli_i.h"

#include <stdarg.h>
#include <stdio.h>

int cli_exit_code(int fb_code)
{
    return fb_error_exit_status(fb_code);
}

static void print_line(const char *command, const char *message)
{
    fprintf(stderr, "%s: ", CLI_PROG);
    if (command)
        fprintf(stderr, "%s: ", command);
    cli_print_message(stderr, message);
    fputc('\n', stderr);
}

int cli_fail(const fb_error *err)
{
    int code = err->code ? err->code : FB_EIO;
    print_line(NULL, err->message[0] ? err->message : fb_error_code_name(code));
    return cli_exit_code(code);
}

int cli_failf(int status, const char *fmt, ...)
{
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    print_line(NULL, msg);
    return status;
}

int cli_usage_error(const cli_command *cmd, const char *fmt, ...)
{
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    print_line(cmd ? cmd->name : NULL, msg);
    if (cmd)
        fprintf(stderr, "Try '%s %s --help'.\n", CLI_PROG, cmd->name);
    else
        fprintf(stderr, "Try '%s --help'.\n", CLI_PROG);
    return CLI_EXIT_USAGE;
}
