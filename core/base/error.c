/* The error struct and its helpers: one place formats messages so every
 * module reports "thing: reason" the same way. */
#include "fb_error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void fb_error_clear(fb_error *err)
{
    if (!err)
        return;
    err->code = 0;
    err->sys_errno = 0;
    err->message[0] = '\0';
}

static void set_message(fb_error *err, const char *fmt, va_list ap)
{
    vsnprintf(err->message, sizeof err->message, fmt, ap);
}

int fb_error_set(fb_error *err, int code, const char *fmt, ...)
{
    if (!err)
        return code;
    va_list ap;
    va_start(ap, fmt);
    set_message(err, fmt, ap);
    va_end(ap);
    err->code = code;
    err->sys_errno = 0;
    return code;
}

/* "<message>: <strerror(errnum)>" with code and errnum recorded. */
static int set_errno_message(fb_error *err, int code, int errnum, const char *fmt, va_list ap)
{
    if (!err)
        return code;
    set_message(err, fmt, ap);
    size_t used = strlen(err->message);
    if (used < sizeof err->message)
        snprintf(err->message + used, sizeof err->message - used, ": %s", strerror(errnum));
    err->code = code;
    err->sys_errno = errnum;
    return code;
}

int fb_error_set_errno(fb_error *err, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int code = set_errno_message(err, FB_EIO, errnum, fmt, ap);
    va_end(ap);
    return code;
}

static int code_for_errno(int errnum)
{
    switch (errnum) {
    case ENOENT:
        return FB_ENOTFOUND;
    case ENOMEM:
        return FB_ENOMEM;
    case EEXIST:
    case ENOTEMPTY:
        return FB_EEXIST;
    default:
        return FB_EIO;
    }
}

int fb_error_from_errno(fb_error *err, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int code = set_errno_message(err, code_for_errno(errnum), errnum, fmt, ap);
    va_end(ap);
    return code;
}

void fb_error_prefix(fb_error *err, const char *fmt, ...)
{
    if (!err)
        return;
    char prefix[FB_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    /* Shift the old message right and put "prefix: " in front, truncating
     * the tail when the whole does not fit. */
    size_t plen = strlen(prefix);
    size_t cap = sizeof err->message - 1;
    size_t head = plen + 2 < cap ? plen + 2 : cap;
    size_t old_len = strlen(err->message);
    size_t keep = old_len < cap - head ? old_len : cap - head;
    memmove(err->message + head, err->message, keep);
    err->message[head + keep] = '\0';
    memcpy(err->message, prefix, head < plen ? head : plen);
    if (head >= plen + 2) {
        err->message[plen] = ':';
        err->message[plen + 1] = ' ';
    }
}

const char *fb_error_code_name(int code)
{
    switch (code) {
    case FB_OK: return "ok";
    case FB_ECORRUPT: return "corrupt";
    case FB_EIO: return "I/O error";
    case FB_ENOMEM: return "out of memory";
    case FB_ENOTFOUND: return "not found";
    case FB_EUNSUPPORTED: return "unsupported";
    case FB_EMISUSE: return "misuse";
    case FB_EINVAL: return "invalid input";
    case FB_EBUSY: return "busy";
    case FB_EEXIST: return "already exists";
    case FB_ECHANGED: return "changed during backup";
    case FB_EINTERRUPTED: return "interrupted";
    default: return "unknown error";
    }
}

int fb_error_exit_status(int code)
{
    switch (code) {
    case FB_OK:
        return FB_EXIT_OK;
    case FB_ECORRUPT:
        return FB_EXIT_CORRUPT;
    case FB_EINVAL:
        return FB_EXIT_USAGE;
    case FB_ENOTFOUND:
        return FB_EXIT_NOTFOUND;
    case FB_EBUSY:
        return FB_EXIT_BUSY;
    case FB_EINTERRUPTED:
        return FB_EXIT_INTERRUPTED;
    default:
        return FB_EXIT_RUNTIME;
    }
}

void fb_warnf(fb_warn_fn warn, void *ctx, const char *fmt, ...)
{
    if (!warn)
        return;
    char buf[FB_ERROR_MESSAGE_MAX * 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    warn(ctx, buf);
}
