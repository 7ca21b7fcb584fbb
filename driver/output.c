/* Output errors, interrupts and closed pipes of the qorus command (see output.h). */
#include "output.h"

#include <errno.h>
#include <signal.h>
#include <string.h>

static volatile sig_atomic_t stop_signal;

static void on_interrupt(int sig)
{
    stop_signal = sig;
}

void q_out_catch_interrupts(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    /* SA_RESTART: a write interrupted by Ctrl-C must not fail with EINTR; SA_RESETHAND:
     * a second Ctrl-C kills at once. */
    sa.sa_flags = (int)(SA_RESTART | SA_RESETHAND);
    sigemptyset(&sa.sa_mask);
    (void)sigaction(SIGINT, &sa, NULL);
    (void)sigaction(SIGTERM, &sa, NULL);
}

int q_out_stop_signal(void)
{
    return (int)stop_signal;
}

int q_out_interrupt_status(void)
{
    return stop_signal != 0 ? 128 + (int)stop_signal : 0;
}

int q_out_emit(void *user, const char *bytes, size_t len)
{
    q_output *out = user;
    if (stop_signal != 0)
        return 1;
    errno = 0;
    if (fwrite(bytes, 1, len, out->f) != len || fflush(out->f) != 0) {
        out->error = errno != 0 ? errno : EIO;
        return 1;
    }
    return 0;
}

/* A reader that went away: end the way the default SIGPIPE action would. */
static int closed_pipe(void)
{
    signal(SIGPIPE, SIG_DFL);
    raise(SIGPIPE);
    return 128 + SIGPIPE;
}

int q_out_report(q_output *out)
{
    if (out->error == EPIPE)
        return closed_pipe();
    if (out->error != 0) {
        fprintf(stderr, "qorus: %s: %s\n", out->name, strerror(out->error));
        return 1;
    }
    if (stop_signal != 0) {
        clearerr(out->f);
        (void)fputc('\n', out->f); /* close the partial line; its failure changes nothing */
        (void)fflush(out->f);
    }
    return -1;
}

int q_out_close_stdout(int status)
{
    if (status != 0) { /* already reported (or a signal status): nothing more to say */
        (void)fflush(stdout);
        return status;
    }
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int e = errno != 0 ? errno : EIO;
        if (e == EPIPE)
            return closed_pipe();
        fprintf(stderr, "qorus: stdout: %s\n", strerror(e));
        return 1;
    }
    return status;
}
