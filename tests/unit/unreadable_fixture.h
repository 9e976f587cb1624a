/* Shared by the unit tests of diff and restore: a live file that really
 * cannot be opened (EACCES), also when the tests run as root. Its mode is
 * made 000, and a root process drops CAP_DAC_OVERRIDE and
 * CAP_DAC_READ_SEARCH from its effective set (they stay permitted, so
 * unreadable_end raises them again): the kernel then checks permission
 * bits for root as for anyone. */
#ifndef UNREADABLE_FIXTURE_H
#define UNREADABLE_FIXTURE_H

#include <fcntl.h>
#include <linux/capability.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct unreadable {
    bool dropped;
    struct __user_cap_header_struct hdr;
    struct __user_cap_data_struct saved[2];
} unreadable;

/* Gives the capabilities back (the file's mode is the caller's to restore). */
static inline void unreadable_end(unreadable *u)
{
    if (u->dropped)
        syscall(SYS_capset, &u->hdr, u->saved);
    u->dropped = false;
}

/* Makes dfd/rel (mode 000) unreadable for this thread. Returns false when
 * it cannot be made so here, with the capabilities as they were. Either
 * way the caller restores the file's mode. */
static inline bool unreadable_begin(unreadable *u, int dfd, const char *rel)
{
    u->dropped = false;
    if (fchmodat(dfd, rel, 0, 0) != 0)
        return false;
    if (geteuid() == 0) {
        u->hdr.version = _LINUX_CAPABILITY_VERSION_3;
        u->hdr.pid = 0;
        if (syscall(SYS_capget, &u->hdr, u->saved) != 0)
            return false;
        struct __user_cap_data_struct dropped[2] = {u->saved[0], u->saved[1]};
        dropped[0].effective &= ~((1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH));
        if (syscall(SYS_capset, &u->hdr, dropped) != 0)
            return false;
        u->dropped = true;
    }
    int fd = openat(dfd, rel, O_RDONLY | O_NOFOLLOW);
    if (fd >= 0) {
        close(fd);
        unreadable_end(u);
        return false;
    }
    return true;
}

#endif
