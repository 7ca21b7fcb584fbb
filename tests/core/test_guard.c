/*
 * The SIGBUS guard of model mappings (src/core/guard.c) and the Q_MMAP_READ strategy.
 *
 *  - a file mapped lazily or eagerly, truncated, then read past the new end (on the main
 *    thread and on another thread): no signal, zeros, q_mapping_status ==
 *    Q_ERR_MODEL_CHANGED; the bytes still in the file read as before;
 *  - Q_MMAP_READ: the copy is unaffected by truncation, status stays Q_OK;
 *  - the handler exists only while a guarded mapping exists, and the previous disposition
 *    (default, or an application's handler) comes back after the last q_free_memory;
 *  - the handler hides nothing: in child processes, a SIGBUS outside the registered
 *    mappings (another file's mapping), a SIGBUS sent with kill(), and a SIGSEGV end the
 *    child exactly as they do without any guarded mapping (in a plain build: killed by
 *    SIGBUS / SIGSEGV; under a sanitizer: the sanitizer's own report and exit), and an
 *    application's own SIGBUS handler installed before still receives foreign faults.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"
#include "qorus_core.h"
#include "qorus_testing.h"

#ifndef __has_feature
#define __has_feature(x) 0
#endif
/* Sanitizers install their own handlers for deadly signals: a fault they see ends the
 * process with their report and an exit status (ASan/MSan 1, TSan 66), not with the
 * signal. The guard must change nothing there either (same outcome with and without it). */
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) || \
    __has_feature(thread_sanitizer) || defined(__SANITIZE_ADDRESS__) ||     \
    defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

static char dir[4096];
static size_t page;

/* Writes `size` bytes of 0x5A to dir/name and returns the path (static buffer per call
 * site is enough: callers copy). */
static void make_file(char *path, size_t cap, const char *name, size_t size)
{
    snprintf(path, cap, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        perror(path);
        exit(2);
    }
    unsigned char buf[4096];
    memset(buf, 0x5A, sizeof buf);
    for (size_t done = 0; done < size;) {
        size_t n = size - done < sizeof buf ? size - done : sizeof buf;
        if (write(fd, buf, n) != (ssize_t)n) {
            perror("write");
            exit(2);
        }
        done += n;
    }
    close(fd);
}

static void truncate_to(const char *path, off_t size)
{
    if (truncate(path, size) != 0) {
        perror("truncate");
        exit(2);
    }
}

typedef struct reader {
    const volatile unsigned char *p;
    size_t off;
    unsigned char got;
} reader;

static void *read_on_thread(void *arg)
{
    reader *r = arg;
    r->got = r->p[r->off];
    return NULL;
}

static int same_disposition(const struct sigaction *a, const struct sigaction *b)
{
    if ((a->sa_flags & SA_SIGINFO) != (b->sa_flags & SA_SIGINFO))
        return 0;
    return (a->sa_flags & SA_SIGINFO) ? a->sa_sigaction == b->sa_sigaction
                                      : a->sa_handler == b->sa_handler;
}

static void test_truncated_mapping(q_mmap_strategy strategy, int on_thread)
{
    char path[4200];
    make_file(path, sizeof path, "model.bin", 4 * page + 100);
    struct sigaction before, after;
    sigaction(SIGBUS, NULL, &before);

    q_context ctx = {0};
    CHECK_EQ_ERR(q_init_memory_ex(&ctx, path, strategy), Q_OK);
    CHECK_EQ_INT(q_guard_handler_installed(), strategy != Q_MMAP_READ);
    CHECK_EQ_ERR(q_mapping_status(&ctx), Q_OK);
    const volatile unsigned char *p = ctx.weights_mmap;
    CHECK_EQ_INT(p[0], 0x5A);
    CHECK_EQ_INT(p[3 * page + 5], 0x5A);

    truncate_to(path, (off_t)page + 10); /* pages 2..4 lose their bytes */
    unsigned char beyond;
    if (on_thread) {
        reader r = {p, 3 * page + 5, 0xEE};
        pthread_t t;
        CHECK(pthread_create(&t, NULL, read_on_thread, &r) == 0);
        pthread_join(t, NULL);
        beyond = r.got;
    } else {
        beyond = p[3 * page + 5]; /* SIGBUS without the guard */
    }
    if (strategy == Q_MMAP_READ) {
        CHECK_EQ_INT(beyond, 0x5A); /* a private copy: the file no longer matters */
        CHECK_EQ_ERR(q_mapping_status(&ctx), Q_OK);
    } else {
        CHECK_EQ_INT(beyond, 0);
        CHECK_EQ_ERR(q_mapping_status(&ctx), Q_ERR_MODEL_CHANGED);
        CHECK_EQ_INT(p[4 * page + 99], 0); /* the rest of the mapping: zeros, no new fault */
    }
    CHECK_EQ_INT(p[5], 0x5A); /* still in the file */
    q_free_memory(&ctx);
    CHECK_EQ_INT(q_guard_handler_installed(), 0);
    CHECK_EQ_ERR(q_mapping_status(&ctx), Q_OK);
    sigaction(SIGBUS, NULL, &after);
    CHECK(same_disposition(&before, &after));
    unlink(path);
}

static void test_two_mappings(void)
{
    char a[4200], b[4200];
    make_file(a, sizeof a, "a.bin", 2 * page);
    make_file(b, sizeof b, "b.bin", 2 * page);
    q_context ca = {0}, cb = {0};
    CHECK_EQ_ERR(q_init_memory_ex(&ca, a, Q_MMAP_LAZY), Q_OK);
    CHECK_EQ_ERR(q_init_memory_ex(&cb, b, Q_MMAP_EAGER), Q_OK);
    truncate_to(b, 0);
    CHECK_EQ_INT(((const volatile unsigned char *)cb.weights_mmap)[page], 0);
    CHECK_EQ_ERR(q_mapping_status(&ca), Q_OK); /* damage is per mapping */
    CHECK_EQ_ERR(q_mapping_status(&cb), Q_ERR_MODEL_CHANGED);
    q_free_memory(&cb);
    CHECK_EQ_INT(q_guard_handler_installed(), 1); /* a still needs it */
    CHECK_EQ_INT(((const volatile unsigned char *)ca.weights_mmap)[page], 0x5A);
    q_free_memory(&ca);
    CHECK_EQ_INT(q_guard_handler_installed(), 0);
    CHECK_EQ_ERR(q_mapping_status(NULL), Q_ERR_INVALID_ARG);
    unlink(a);
    unlink(b);
}

/* Changes that raise no SIGBUS: a truncation inside the last page read, a rewrite in
 * place. Both are reported (size / mtime). */
static void test_silent_changes(void)
{
    char path[4200];
    make_file(path, sizeof path, "silent.bin", 2 * page);
    q_context ctx = {0};
    CHECK_EQ_ERR(q_init_memory_ex(&ctx, path, Q_MMAP_EAGER), Q_OK);
    truncate_to(path, (off_t)(2 * page - 100)); /* same pages, tail of the last one gone */
    CHECK_EQ_INT(((const volatile unsigned char *)ctx.weights_mmap)[2 * page - 50], 0);
    CHECK_EQ_ERR(q_mapping_status(&ctx), Q_ERR_MODEL_CHANGED);
    CHECK_EQ_ERR(q_mapping_status(&ctx), Q_ERR_MODEL_CHANGED); /* sticks */
    q_free_memory(&ctx);

    make_file(path, sizeof path, "silent.bin", 2 * page);
    CHECK_EQ_ERR(q_init_memory_ex(&ctx, path, Q_MMAP_LAZY), Q_OK);
    CHECK_EQ_ERR(q_mapping_status(&ctx), Q_OK);
    struct timespec pause = {0, 20 * 1000 * 1000}; /* mtime granularity of some filesystems */
    nanosleep(&pause, NULL);
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, "x", 1, 7) == 1);
    close(fd);
    CHECK_EQ_ERR(q_mapping_status(&ctx), Q_ERR_MODEL_CHANGED);
    q_free_memory(&ctx);
    unlink(path);
}

static void test_error_code(void)
{
    CHECK(Q_ERR_MODEL_CHANGED == -24);
    CHECK(strcmp(q_error_name(Q_ERR_MODEL_CHANGED), "Q_ERR_MODEL_CHANGED") == 0);
    CHECK(strcmp(q_strerror(Q_ERR_MODEL_CHANGED), "model file changed while in use") == 0);
    CHECK_EQ_ERR(q_init_memory_ex(&(q_context){0}, "x", (q_mmap_strategy)3), Q_ERR_INVALID_ARG);
}

/* ---- foreign faults, in children ---- */

static volatile int *volatile segv_target; /* NULL: a write through it is a SIGSEGV */
static volatile sig_atomic_t app_handler_ran;
static void app_handler(int sig)
{
    (void)sig;
    app_handler_ran = 1;
    _exit(42);
}

/* In the child: with_guard 1 registers a guarded mapping first. */
static void child_fault(const char *kind, int with_guard)
{
    char guarded[4200], foreign[4200];
    char name[64];
    snprintf(name, sizeof name, "g-%d.bin", (int)getpid());
    make_file(guarded, sizeof guarded, name, 2 * page);
    snprintf(name, sizeof name, "f-%d.bin", (int)getpid());
    make_file(foreign, sizeof foreign, name, 2 * page);
    if (strcmp(kind, "app-handler") == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = app_handler;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGBUS, &sa, NULL);
    }
    q_context ctx = {0};
    if (with_guard && q_init_memory_ex(&ctx, guarded, Q_MMAP_LAZY) != Q_OK)
        _exit(3);
    int fd = open(foreign, O_RDONLY);
    const volatile unsigned char *f = mmap(NULL, 2 * page, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f == MAP_FAILED)
        _exit(4);
    close(fd);
    if (truncate(foreign, 0) != 0)
        _exit(5);
    unlink(guarded);
    unlink(foreign);
    if (strcmp(kind, "foreign-bus") == 0 || strcmp(kind, "app-handler") == 0) {
        (void)f[page]; /* SIGBUS outside every registered mapping */
    } else if (strcmp(kind, "kill-bus") == 0) {
        kill(getpid(), SIGBUS);
    } else if (strcmp(kind, "segv") == 0) {
        *segv_target = 1;
    }
    _exit(0); /* survived: the test fails */
}

typedef struct outcome {
    int signaled, sig, exit_status;
} outcome;

static outcome run_child(const char *kind, int with_guard)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* silence sanitizer reports of the expected crash in the test log */
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, 2);
        child_fault(kind, with_guard);
    }
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    outcome o = {WIFSIGNALED(ws), WIFSIGNALED(ws) ? WTERMSIG(ws) : 0,
                 WIFEXITED(ws) ? WEXITSTATUS(ws) : -1};
    return o;
}

static void test_foreign_faults(void)
{
    const char *kinds[4] = {"foreign-bus", "kill-bus", "segv", "app-handler"};
    for (int k = 0; k < 4; k++) {
        outcome plain = run_child(kinds[k], 0);
        outcome guarded = run_child(kinds[k], 1);
        printf("%-12s without guard: %s %d; with guard: %s %d\n", kinds[k],
               plain.signaled ? "signal" : "exit", plain.signaled ? plain.sig : plain.exit_status,
               guarded.signaled ? "signal" : "exit",
               guarded.signaled ? guarded.sig : guarded.exit_status);
        CHECK(plain.signaled == guarded.signaled && plain.sig == guarded.sig &&
              plain.exit_status == guarded.exit_status);
        CHECK(!(guarded.exit_status == 0 && !guarded.signaled)); /* nobody survived */
        if (strcmp(kinds[k], "app-handler") == 0) {
            CHECK_EQ_INT(guarded.exit_status, 42);
        } else if (!SANITIZED) {
            CHECK(guarded.signaled);
            CHECK_EQ_INT(guarded.sig, strcmp(kinds[k], "segv") == 0 ? SIGSEGV : SIGBUS);
        }
    }
}

int main(void)
{
    page = (size_t)sysconf(_SC_PAGESIZE);
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/qorus-test-guard-XXXXXX", tmp != NULL && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    RUN_TEST(test_error_code);
    for (int s = 0; s < 3; s++)
        for (int t = 0; t < 2; t++) {
            test_truncated_mapping((q_mmap_strategy)s, t);
            fprintf(stderr, "strategy %d thread %d: %d failure(s) so far\n", s, t, check_failures);
        }
    RUN_TEST(test_two_mappings);
    RUN_TEST(test_silent_changes);
    RUN_TEST(test_foreign_faults);
    rmdir(dir);
    return check_result("core.guard");
}
