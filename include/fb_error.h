/* Error codes and the error struct every core function fills.
 *
 * Core functions return 0 on success or one of the negative FB_E* codes, and
 * when given a non-NULL fb_error they write a message that names the thing
 * (path, key, backup id) and the reason, in the spirit of libarchive's
 * archive_error_string(). The CLI maps codes to exit statuses in one place
 * (cli/exitcode.c), the mount maps them to errno in one place. */
#ifndef FB_ERROR_H
#define FB_ERROR_H

#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

enum {
    FB_OK = 0,
    FB_ECORRUPT = -1,     /* stored data fails a check: checksum, format, strict JSON */
    FB_EIO = -2,          /* a system call failed (sys_errno says which errno) */
    FB_ENOMEM = -3,       /* allocation failed */
    FB_ENOTFOUND = -4,    /* root, session, backup or file does not exist */
    FB_EUNSUPPORTED = -5, /* valid but not something we handle (format version, file type) */
    FB_EMISUSE = -6,      /* API used wrongly (a bug in the caller) */
    FB_EINVAL = -7,       /* bad user input: ids, config values, arguments */
    FB_EBUSY = -8,        /* the session lock is held by someone else */
    FB_EEXIST = -9,       /* something already exists where we must create it */
    FB_ECHANGED = -10,    /* a source file changed under us in a way we cannot store */
    FB_EINTERRUPTED = -11, /* the caller asked to stop (fb_cancel): a signal, usually */
};

/* How a caller asks a long operation to stop (SIGINT in the CLI): a flag the
 * caller's signal handler sets to the signal number, that core reads between
 * steps and within long copies. Core then undoes its unpublished work and
 * returns FB_EINTERRUPTED. NULL (or a flag of 0) means "never asked". The
 * pointer is borrowed for the whole call. */
typedef volatile sig_atomic_t fb_cancel;

/* True when *cancel has been set (cancel may be NULL). */
static inline int fb_cancelled(const fb_cancel *cancel)
{
    return cancel && *cancel != 0;
}

#define FB_ERROR_MESSAGE_MAX 1024

typedef struct fb_error {
    int code;       /* one of FB_E*, 0 when clear */
    int sys_errno;  /* errno behind an FB_EIO (or 0) */
    char message[FB_ERROR_MESSAGE_MAX];
} fb_error;

/* Warning sink: core never prints, it hands warnings to the caller.
 * message is only valid during the call. */
typedef void (*fb_warn_fn)(void *ctx, const char *message);

/* Progress sink of the long operations (backup, verify, restore): phase
 * names the step ("write", "verify", "extract", ...); done and total are
 * bytes of that step (total 0 when not known yet). Called at a bounded rate
 * from the operation's threads, one call at a time. */
typedef void (*fb_progress_fn)(void *ctx, const char *phase, uint64_t done_bytes,
                               uint64_t total_bytes);

/* Clears err (NULL is accepted). */
void fb_error_clear(fb_error *err);

/* Sets code and a printf-style message; returns code so callers can
 * `return fb_error_set(err, FB_ECORRUPT, "...")`. err may be NULL. */
int fb_error_set(fb_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like fb_error_set for FB_EIO; appends ": strerror(errnum)" and records errnum. */
int fb_error_set_errno(fb_error *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Maps an errno to the closest FB_E* code (ENOENT -> FB_ENOTFOUND, ENOMEM ->
 * FB_ENOMEM, EEXIST -> FB_EEXIST, else FB_EIO) and sets the message as
 * fb_error_set_errno does. */
int fb_error_from_errno(fb_error *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the existing message with "context: " (keeps code and errno). */
void fb_error_prefix(fb_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Short stable name of a code ("corrupt", "I/O error", ...). */
const char *fb_error_code_name(int code);

/* Exit statuses of both programs (SPEC "Exit codes"). */
enum {
    FB_EXIT_OK = 0,
    FB_EXIT_CORRUPT = 1,  /* verification found corruption */
    FB_EXIT_USAGE = 2,    /* bad usage or bad input */
    FB_EXIT_NOTFOUND = 3, /* root, session, backup */
    FB_EXIT_BUSY = 4,     /* the session lock is held */
    FB_EXIT_RUNTIME = 5,  /* I/O or other runtime failure */
    FB_EXIT_INTERRUPTED = 130, /* 128 + SIGINT; the CLI gives 128 + the signal it got */
};

/* The exit status for an FB_E* code: the one mapping flowloom-backup and
 * flowloom-backupfs share. */
int fb_error_exit_status(int code);

/* Calls warn(ctx, formatted) when warn is not NULL. */
void fb_warnf(fb_warn_fn warn, void *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
