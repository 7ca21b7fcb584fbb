/* OS wrappers with the countdown failure hook (see os.h and qorus_testing.h). */
#include "core/os.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "qorus_testing.h"

static unsigned long fail_at;   /* 0: no injection; else the call number that fails */
static unsigned long call_count;
static int failure_fired;

void q_test_fail_nth_os_call(unsigned long n)
{
    fail_at = n;
    call_count = 0;
    failure_fired = 0;
}

unsigned long q_test_os_call_count(void)
{
    return call_count;
}

int q_test_failure_fired(void)
{
    return failure_fired;
}

/* Counts one OS call; returns 1 if this one must fail. */
static int injected_failure(void)
{
    call_count++;
    if (fail_at != 0 && call_count == fail_at) {
        failure_fired = 1;
        errno = ENOMEM;
        return 1;
    }
    return 0;
}

int q_os_open_read(const char *path)
{
    if (injected_failure())
        return -1;
    return open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
}

void *q_os_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t offset)
{
    if (injected_failure())
        return MAP_FAILED;
    return mmap(addr, len, prot, flags, fd, offset);
}

int q_os_munmap(void *addr, size_t len)
{
    return munmap(addr, len);
}

int q_os_mprotect(void *addr, size_t len, int prot)
{
    if (injected_failure())
        return -1;
    return mprotect(addr, len, prot);
}

void *q_os_malloc(size_t size)
{
    if (injected_failure())
        return NULL;
    return malloc(size);
}

void *q_os_calloc(size_t n, size_t size)
{
    if (injected_failure())
        return NULL;
    return calloc(n, size);
}

void q_os_free(void *p)
{
    free(p);
}

size_t q_os_page_size(void)
{
    static size_t page;
    if (page == 0) {
        long v = sysconf(_SC_PAGESIZE);
        page = v > 0 ? (size_t)v : 4096u;
    }
    return page;
}

int q_os_thread_create(pthread_t *thread, void *(*start)(void *), void *arg)
{
    sigset_t all_signals, caller_signals;
    int rc;
    if (injected_failure())
        return EAGAIN;
    /* The new thread inherits the mask in force when it is created: block every
     * asynchronous signal for the call (so SIGINT, SIGTERM, SIGPIPE... go to the caller's
     * threads), then give the caller its own mask back: no window where the thread runs
     * with them open. Synchronous fault signals stay open: a SIGBUS or SIGSEGV raised
     * while blocked kills the process without running any handler, and the core's guard
     * of the model mapping (guard.c) must run on worker threads too. */
    sigfillset(&all_signals);
    sigdelset(&all_signals, SIGBUS);
    sigdelset(&all_signals, SIGSEGV);
    sigdelset(&all_signals, SIGFPE);
    sigdelset(&all_signals, SIGILL);
    sigdelset(&all_signals, SIGTRAP);
    sigdelset(&all_signals, SIGSYS);
    rc = pthread_sigmask(SIG_SETMASK, &all_signals, &caller_signals);
    if (rc != 0)
        return rc;
    rc = pthread_create(thread, NULL, start, arg);
    pthread_sigmask(SIG_SETMASK, &caller_signals, NULL);
    return rc;
}

int q_os_thread_join(pthread_t thread)
{
    return pthread_join(thread, NULL);
}

ssize_t q_os_pread(int fd, void *buf, size_t len, off_t offset)
{
    return pread(fd, buf, len, offset);
}
