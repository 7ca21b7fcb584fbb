/*
 * Guarded model mappings: a read of a mapped model page whose file bytes are gone (the file
 * was truncated or replaced by `cp`/a download while a run used it) raises SIGBUS. Every
 * mmap-based runner dies of it. The core does not:
 *
 *   - q_init_memory_ex registers each file mapping here (q_guard_register); the SIGBUS
 *     handler is installed with the first registered mapping and the previous disposition
 *     is restored when the last one is released (q_guard_unregister), if nobody installed
 *     another handler over ours in between.
 *   - The handler looks up si_addr in a fixed table of mappings read with atomics (no lock,
 *     no allocation: async-signal-safe). Inside a mapping: it maps anonymous zero pages
 *     (MAP_FIXED, raw mmap system call, so no sanitizer interceptor runs in the handler)
 *     over the faulting page and the rest of the mapping, so the faulting load completes
 *     and reads zeros, marks the mapping damaged and returns. Outside every mapping (or
 *     if the replacement fails): the previous handler is called as if it had been
 *     installed alone, or, if there was none, the default action is restored and the
 *     fault re-executed / the signal re-raised, so the process dies of its usual signal.
 *   - q_mapping_status(ctx) turns the damaged flag into Q_ERR_MODEL_CHANGED: the forward
 *     pass calls it once per token on the calling thread, q_model_load after parsing. It
 *     also fstat()s the file (whose descriptor the guard keeps open) and reports a change
 *     of size or mtime: a truncation inside a page, or a rewrite in place, raises no
 *     SIGBUS but changes what the mapping shows.
 *
 * The handler runs on whichever thread faulted (workers included): the flag is global per
 * mapping. No alternate signal stack is needed: a SIGBUS on a mapped-file read is raised
 * on a thread whose stack is fine (SA_ONSTACK is still set so that an application's
 * sigaltstack, if it has one, is honoured).
 *
 * A truncation that happens while the pages are resident faults too: truncating a file
 * removes its pages beyond the new end from every mapping, private ones included (only
 * copy-on-write pages would survive, and model mappings are never written), so the next
 * read of them raises SIGBUS like a first read. The tail of the page that holds the new end
 * of file reads as zeros without a signal; that, and a rewrite in place, is what the
 * size/mtime check of q_mapping_status catches (at most one token later than a SIGBUS).
 *
 * Limits: Q_GUARD_SLOTS mappings at a time are guarded; more still work, unguarded.
 */
#include "qorus_core.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/syscall.h>
#endif

#include "core/guard.h"
#include "core/os.h"
#include "qorus_testing.h"

#define Q_GUARD_SLOTS 64

typedef struct guard_slot {
    _Atomic uintptr_t start; /* 0: free */
    _Atomic uintptr_t end;   /* page-rounded end */
    atomic_int damaged;
    /* not used by the handler: */
    int fd;                  /* the mapped file, kept open to notice changes */
    off_t size;              /* its size and modification time when mapped */
    struct timespec mtime;
} guard_slot;

static guard_slot slots[Q_GUARD_SLOTS];
static atomic_int n_damaged; /* fast path of q_mapping_status: 0 almost always */
static atomic_flag table_lock = ATOMIC_FLAG_INIT; /* register/unregister only */
static int n_registered;                         /* under table_lock */
static struct sigaction previous;                /* under table_lock; read by the handler */
static atomic_int installed;

static void lock_table(void)
{
    while (atomic_flag_test_and_set_explicit(&table_lock, memory_order_acquire)) {
    }
}

static void unlock_table(void)
{
    atomic_flag_clear_explicit(&table_lock, memory_order_release);
}

/* mmap without any interposed wrapper (sanitizer interceptors are not signal-safe). */
static void *raw_mmap(void *addr, size_t len, int prot, int flags)
{
#if defined(__linux__) && defined(SYS_mmap)
    return (void *)syscall(SYS_mmap, addr, len, prot, flags, -1, (off_t)0);
#else
    return mmap(addr, len, prot, flags, -1, 0);
#endif
}

/* Gives the signal to whoever had it before us: the previous handler, or the default. */
static void chain(int sig, siginfo_t *info, void *uctx)
{
    if (previous.sa_flags & SA_SIGINFO) {
        if (previous.sa_sigaction != NULL) {
            previous.sa_sigaction(sig, info, uctx);
            return;
        }
    } else if (previous.sa_handler == SIG_IGN) {
        /* A fault cannot be ignored (the kernel would kill us anyway); a kill() can. */
        if (info == NULL || info->si_code <= 0)
            return;
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != NULL) {
        previous.sa_handler(sig);
        return;
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    (void)sigaction(sig, &dfl, NULL);
    /* A hardware fault re-executes on return and now kills; a sent signal must be
     * raised again (it is blocked until we return, then delivered). */
    if (info == NULL || info->si_code <= 0)
        (void)raise(sig);
}

/* Marks slot i damaged (once). */
static void mark_damaged(int i)
{
    if (atomic_exchange(&slots[i].damaged, 1) == 0)
        atomic_fetch_add(&n_damaged, 1);
}

static void on_sigbus(int sig, siginfo_t *info, void *uctx)
{
    int saved_errno = errno;
    uintptr_t addr = info != NULL && info->si_code > 0 ? (uintptr_t)info->si_addr : 0;
    if (addr != 0) {
        for (int i = 0; i < Q_GUARD_SLOTS; i++) {
            uintptr_t start = atomic_load(&slots[i].start);
            uintptr_t end = atomic_load(&slots[i].end);
            if (start == 0 || addr < start || addr >= end)
                continue;
            uintptr_t page = addr & ~(uintptr_t)(q_os_page_size() /* set before the first registration */ - 1);
            void *p = raw_mmap((void *)page, (size_t)(end - page), PROT_READ,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED);
            if (p == (void *)page) {
                mark_damaged(i);
                errno = saved_errno;
                return;
            }
            break; /* cannot repair: die as without us */
        }
    }
    errno = saved_errno;
    chain(sig, info, uctx);
}

int q_guard_register(const void *start, size_t size, int fd, const struct stat *st)
{
    size_t page = q_os_page_size();
    uintptr_t s = (uintptr_t)start;
    uintptr_t e = s + ((size + page - 1) & ~(page - 1));
    lock_table();
    int slot = -1;
    for (int i = 0; i < Q_GUARD_SLOTS && slot < 0; i++)
        if (atomic_load(&slots[i].start) == 0)
            slot = i;
    if (slot >= 0) {
        if (n_registered == 0 && !atomic_load(&installed)) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_sigaction = on_sigbus;
            sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
            sigemptyset(&sa.sa_mask);
            if (sigaction(SIGBUS, &sa, &previous) == 0)
                atomic_store(&installed, 1);
        }
        /* end and flag first, start last: the handler matches a slot only by start */
        atomic_store(&slots[slot].damaged, 0);
        slots[slot].fd = fd;
        slots[slot].size = st->st_size;
        slots[slot].mtime = st->st_mtim;
        atomic_store(&slots[slot].end, e);
        atomic_store(&slots[slot].start, s);
        n_registered++;
    }
    unlock_table();
    return slot >= 0;
}

void q_guard_unregister(const void *start)
{
    uintptr_t s = (uintptr_t)start;
    lock_table();
    for (int i = 0; i < Q_GUARD_SLOTS; i++) {
        if (atomic_load(&slots[i].start) != s)
            continue;
        atomic_store(&slots[i].start, 0);
        (void)close(slots[i].fd);
        slots[i].fd = -1;
        if (atomic_exchange(&slots[i].damaged, 0) != 0)
            atomic_fetch_sub(&n_damaged, 1);
        n_registered--;
        break;
    }
    if (n_registered == 0 && atomic_load(&installed)) {
        struct sigaction cur;
        /* Restore what was there, unless someone replaced our handler since. */
        if (sigaction(SIGBUS, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
            cur.sa_sigaction == on_sigbus)
            (void)sigaction(SIGBUS, &previous, NULL);
        atomic_store(&installed, 0);
    }
    unlock_table();
}

int q_guard_damaged(const void *start)
{
    if (start == NULL)
        return 0;
    uintptr_t s = (uintptr_t)start;
    for (int i = 0; i < Q_GUARD_SLOTS; i++) {
        if (atomic_load(&slots[i].start) != s)
            continue;
        if (atomic_load(&slots[i].damaged))
            return 1;
        /* A truncation inside the last page read, or a rewrite in place, raises no SIGBUS
         * (the page still has file behind it); the file's size and mtime tell. */
        struct stat st;
        if (fstat(slots[i].fd, &st) != 0 || st.st_size != slots[i].size ||
            st.st_mtim.tv_sec != slots[i].mtime.tv_sec ||
            st.st_mtim.tv_nsec != slots[i].mtime.tv_nsec) {
            mark_damaged(i);
            return 1;
        }
        return 0;
    }
    return 0;
}

int q_guard_handler_installed(void)
{
    return atomic_load(&installed);
}

q_error_code q_mapping_status(const q_context *ctx)
{
    if (ctx == NULL)
        return Q_ERR_INVALID_ARG;
    return q_guard_damaged(ctx->weights_mmap) ? Q_ERR_MODEL_CHANGED : Q_OK;
}
