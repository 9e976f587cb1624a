/* Interruption of long commands (SPEC "Backup": SIGINT, SIGTERM, SIGHUP):
 * the first signal only sets a flag that core polls (fb_cancel), so the
 * command can remove its unpublished work and say so; a second one of the
 * same kind ends the process at once, for a user who insists. */
#include "cli_i.h"

#include <signal.h>
#include <string.h>

volatile sig_atomic_t cli_interrupt_signal = 0;

static void on_interrupt(int sig)
{
    if (cli_interrupt_signal) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    cli_interrupt_signal = sig;
}

void cli_signals_install(void)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    /* Restarted system calls: core notices the flag at its next check, and
     * no read or write has to tell EINTR apart from a failure. */
    sa.sa_flags = SA_RESTART;
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
}

int cli_interrupted_status(void)
{
    return 128 + (cli_interrupt_signal ? (int)cli_interrupt_signal : SIGINT);
}
