/*
 * Faults of a running `qorus run` (docs/driver.md, "Faults"): the qorus binary runs as a
 * child with its stdout on a pipe, so the test acts at a moment of the generation (after
 * the first output byte, or at a random time).
 *
 *   test_infer_faults QORUS MODELS_DIR WORK_DIR CASE [ARG...]
 *
 * CASE: truncate MODE        MODE = lazy|eager: a copy of stories260K.bin is truncated after
 *                            the first output byte: exit 1, exactly one stderr line
 *                            "qorus: COPY: model file changed while in use", stdout a prefix
 *                            of the untouched run's; MODE = read (--no-mmap): exit 0 and the
 *                            same text as the untouched run
 *       devfull              stdout is /dev/full: exit 1, one line "qorus: stdout: No space
 *                            left on device" (run and inspect)
 *       signal SIG           SIG = INT|TERM after the first output byte: the text stops, the
 *                            stats line is printed, exit 130 / 143
 *       pipe                 the reader closes the pipe: the child ends at once, silent, by
 *                            SIGPIPE (status 141, as `yes | head`)
 *       stress N SECONDS     N trials (at most SECONDS): a random mapping mode, truncation
 *                            size and moment (during loading or during generation); each
 *                            must end with exit 1 and one "qorus: COPY: ..." line, or exit 0
 *                            with the untouched text (truncation after the end or only
 *                            in bytes never read); never a signal
 *       valgrind VALGRIND    the lazy truncation case under memcheck
 * Exit 77 (skipped) when MODELS_DIR lacks the models.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"

extern char **environ;

static const char *qorus, *models, *work;
static char model_src[4096], tok_src[4096];

#define PROMPT "Once upon a time"

typedef struct result {
    int status; /* exit status, or 128 + signal */
    int signaled;
    char *out;
    size_t out_len;
    char *err;
    size_t err_len;
} result;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static char *read_path(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    *len = 0;
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0, got;
    char *buf = malloc(cap + 1);
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap)
            buf = realloc(buf, (cap *= 2) + 1);
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void copy_file(const char *from, const char *to)
{
    size_t n;
    char *data = read_path(from, &n);
    FILE *f = fopen(to, "wb");
    if (data == NULL || f == NULL || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot copy %s to %s\n", from, to);
        exit(1);
    }
    free(data);
}

/* A child with stdout on a pipe (or on `stdout_path` if not NULL) and stderr in a file. */
typedef struct child {
    pid_t pid;
    int out_fd; /* read end, -1 when stdout goes to a file */
    char err_path[4200];
    char *out;
    size_t out_len, out_cap;
} child;

static void spawn(child *c, char *const *argv, const char *stdout_path)
{
    memset(c, 0, sizeof *c);
    snprintf(c->err_path, sizeof c->err_path, "%s/stderr.%d", work, (int)getpid());
    int fds[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (stdout_path != NULL) {
        posix_spawn_file_actions_addopen(&fa, 1, stdout_path, O_WRONLY, 0);
    } else {
        if (pipe2(fds, O_CLOEXEC) != 0) {
            perror("pipe");
            exit(1);
        }
        posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    }
    posix_spawn_file_actions_addopen(&fa, 2, c->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (posix_spawn(&c->pid, argv[0], &fa, NULL, argv, environ) != 0) {
        fprintf(stderr, "cannot run %s\n", argv[0]);
        exit(1);
    }
    posix_spawn_file_actions_destroy(&fa);
    c->out_fd = fds[0];
    if (fds[1] >= 0)
        close(fds[1]);
    c->out_cap = 1 << 16;
    c->out = malloc(c->out_cap + 1);
}

/* Reads what is available within `timeout_ms`; returns 0 at EOF, 1 otherwise. */
static int pump(child *c, int timeout_ms)
{
    if (c->out_fd < 0)
        return 0;
    struct pollfd p = {c->out_fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0)
        return 1;
    if (c->out_len == c->out_cap)
        c->out = realloc(c->out, (c->out_cap *= 2) + 1);
    ssize_t n = read(c->out_fd, c->out + c->out_len, c->out_cap - c->out_len);
    if (n < 0 && errno == EINTR)
        return 1;
    if (n <= 0) {
        close(c->out_fd);
        c->out_fd = -1;
        return 0;
    }
    c->out_len += (size_t)n;
    return 1;
}

/* Waits until the first output byte (or EOF); 0 if none came within 60 s. */
static int wait_first_byte(child *c)
{
    double t0 = now_s();
    while (c->out_len == 0 && c->out_fd >= 0 && now_s() - t0 < 60.0)
        pump(c, 100);
    return c->out_len > 0;
}

static result finish(child *c)
{
    double t0 = now_s();
    while (pump(c, 200) && now_s() - t0 < 300.0) {
    }
    if (c->out_fd >= 0) {
        fprintf(stderr, "child %d does not end: killed\n", (int)c->pid);
        kill(c->pid, SIGKILL);
        close(c->out_fd);
    }
    int ws = 0;
    while (waitpid(c->pid, &ws, 0) < 0 && errno == EINTR) {
    }
    result r;
    memset(&r, 0, sizeof r);
    r.signaled = WIFSIGNALED(ws);
    r.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    c->out[c->out_len] = '\0';
    r.out = c->out;
    r.out_len = c->out_len;
    r.err = read_path(c->err_path, &r.err_len);
    unlink(c->err_path);
    if (r.err == NULL) {
        r.err = calloc(1, 1);
        r.err_len = 0;
    }
    return r;
}

static void free_result(result *r)
{
    free(r->out);
    free(r->err);
}

static int count_lines(const char *s, size_t n)
{
    int lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += s[i] == '\n';
    return lines;
}

/* argv of `qorus run MODEL -z TOK -t 0 -n 0 -i PROMPT [mode flags]` */
static void run_argv(char **argv, const char *model, const char *mode)
{
    int n = 0;
    argv[n++] = (char *)qorus;
    argv[n++] = "run";
    argv[n++] = (char *)model;
    argv[n++] = "-z";
    argv[n++] = tok_src;
    argv[n++] = "-t";
    argv[n++] = "0";
    argv[n++] = "-n";
    argv[n++] = "0";
    argv[n++] = "-i";
    argv[n++] = PROMPT;
    argv[n++] = "-j"; /* a fault may land on a worker thread of the forward pass too */
    argv[n++] = "2";
    if (mode != NULL) {
        argv[n++] = "--mmap";
        argv[n++] = (char *)mode;
    }
    argv[n] = NULL;
}

static result reference_run(void)
{
    char *argv[24];
    run_argv(argv, model_src, NULL);
    child c;
    spawn(&c, argv, NULL);
    result r = finish(&c);
    if (r.status != 0 || r.out_len < 20) {
        fprintf(stderr, "the untouched run failed: status %d, %s", r.status, r.err);
        exit(1);
    }
    return r;
}

static int is_prefix(const result *r, const result *ref)
{
    return r->out_len <= ref->out_len && memcmp(r->out, ref->out, r->out_len) == 0;
}

/* exit 1, nothing but one "qorus: PATH: ..." line; `what` NULL accepts any reason */
static int one_error_line(const result *r, const char *path, const char *what)
{
    char want[4400];
    snprintf(want, sizeof want, "qorus: %s: %s", path, what != NULL ? what : "");
    return !r->signaled && r->status == 1 && count_lines(r->err, r->err_len) == 1 &&
           strncmp(r->err, want, strlen(want)) == 0;
}

static void show(const char *label, const result *r)
{
    fprintf(stderr, "%s: status %d%s, stdout %zu bytes, stderr: %s%s", label, r->status,
            r->signaled ? " (signal)" : "", r->out_len, r->err,
            r->err_len && r->err[r->err_len - 1] == '\n' ? "" : "\n");
}

/* ---- truncate ---- */

static int case_truncate(const char *mode, const char *valgrind)
{
    result ref = reference_run();
    char copy[4200];
    snprintf(copy, sizeof copy, "%s/truncate-%s-%d.bin", work, mode, (int)getpid());
    copy_file(model_src, copy);
    char *argv[32];
    char **a = argv;
    if (valgrind != NULL) {
        const char *vg[] = {valgrind, "-q", "--error-exitcode=99",
                            "--vex-iropt-register-updates=allregs-at-mem-access"};
        for (size_t i = 0; i < sizeof vg / sizeof vg[0]; i++)
            *a++ = (char *)vg[i];
    }
    run_argv(a, copy, mode);
    child c;
    spawn(&c, argv, NULL);
    CHECK(wait_first_byte(&c));
    CHECK(truncate(copy, 4096) == 0); /* everything after the header is gone */
    result r = finish(&c);
    if (strcmp(mode, "read") == 0) {
        CHECK(r.status == 0 && r.out_len == ref.out_len &&
              memcmp(r.out, ref.out, r.out_len) == 0);
        CHECK(count_lines(r.err, r.err_len) == 1 && strncmp(r.err, "stats: ", 7) == 0);
    } else {
        CHECK(one_error_line(&r, copy, "model file changed while in use\n"));
        CHECK(is_prefix(&r, &ref) && r.out_len < ref.out_len);
    }
    show(mode, &r);
    printf("--mmap %s, truncated after byte %s: status %d, %zu of %zu bytes, %s", mode,
           "1", r.status, r.out_len, ref.out_len, r.err);
    free_result(&r);
    free_result(&ref);
    unlink(copy);
    return check_result(valgrind != NULL ? "faults_valgrind" : "faults_truncate");
}

/* ---- /dev/full ---- */

static int case_devfull(void)
{
    if (access("/dev/full", W_OK) != 0) {
        printf("/dev/full not available: skipped\n");
        return SKIP_RETURN_CODE;
    }
    char *argv[24];
    run_argv(argv, model_src, NULL);
    child c;
    spawn(&c, argv, "/dev/full");
    result r = finish(&c);
    show("run > /dev/full", &r);
    CHECK(!r.signaled && r.status == 1 &&
          strcmp(r.err, "qorus: stdout: No space left on device\n") == 0);
    free_result(&r);

    char *inspect[] = {(char *)qorus, "inspect", model_src, NULL};
    spawn(&c, inspect, "/dev/full");
    r = finish(&c);
    show("inspect > /dev/full", &r);
    CHECK(!r.signaled && r.status == 1 &&
          strcmp(r.err, "qorus: stdout: No space left on device\n") == 0);
    free_result(&r);
    return check_result("faults_devfull");
}

/* ---- SIGINT / SIGTERM ---- */

static int case_signal(const char *name)
{
    int sig = strcmp(name, "TERM") == 0 ? SIGTERM : SIGINT;
    result ref = reference_run();
    char *argv[24];
    run_argv(argv, model_src, NULL);
    child c;
    spawn(&c, argv, NULL);
    CHECK(wait_first_byte(&c));
    kill(c.pid, sig);
    result r = finish(&c);
    show(name, &r);
    CHECK(!r.signaled && r.status == 128 + sig);
    CHECK(count_lines(r.err, r.err_len) == 1 && strncmp(r.err, "stats: tokens=", 14) == 0);
    size_t tokens = (size_t)strtoul(r.err + 14, NULL, 10);
    CHECK(tokens >= 1 && tokens < 512);
    /* the text so far, then "\n" */
    CHECK(r.out_len >= 2 && r.out_len < ref.out_len && r.out[r.out_len - 1] == '\n' &&
          memcmp(r.out, ref.out, r.out_len - 1) == 0);
    free_result(&r);
    free_result(&ref);
    return check_result("faults_signal");
}

/* ---- closed pipe ---- */

static int case_pipe(void)
{
    char *argv[24];
    run_argv(argv, model_src, NULL);
    child c;
    spawn(&c, argv, NULL);
    CHECK(wait_first_byte(&c));
    close(c.out_fd);
    c.out_fd = -1;
    double t0 = now_s();
    result r = finish(&c);
    double dt = now_s() - t0;
    show("closed pipe", &r);
    CHECK(r.signaled && r.status == 128 + SIGPIPE);
    CHECK(r.err_len == 0);
    CHECK(dt < 10.0);
    free_result(&r);
    return check_result("faults_pipe");
}

/* ---- stress ---- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_random(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1Dull;
}

static void sleep_us(uint64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int case_stress(unsigned long trials, double seconds)
{
    result ref = reference_run();
    struct stat sb;
    stat(model_src, &sb);
    size_t size = (size_t)sb.st_size;
    rng ^= ((uint64_t)time(NULL) * (uint64_t)0x100000001B3u) ^ (uint64_t)getpid();
    printf("stress: seed %llu\n", (unsigned long long)rng);
    const char *modes[2] = {"lazy", "eager"};
    unsigned long ran = 0, changed = 0, other_error = 0, finished = 0, bad = 0;
    double t_start = now_s();
    for (; ran < trials && now_s() - t_start < seconds; ran++) {
        char copy[4200];
        snprintf(copy, sizeof copy, "%s/stress-%d.bin", work, (int)getpid());
        copy_file(model_src, copy);
        const char *mode = modes[next_random() % 2];
        off_t to = (off_t)(next_random() % size);
        int during_load = next_random() % 5 == 0;
        uint64_t delay = during_load ? next_random() % 3000 : next_random() % 60000;
        char *argv[16];
        run_argv(argv, copy, mode);
        child c;
        spawn(&c, argv, NULL);
        if (!during_load)
            wait_first_byte(&c);
        sleep_us(delay);
        CHECK(truncate(copy, to) == 0);
        result r = finish(&c);
        int ok;
        if (r.status == 0 && !r.signaled) {
            ok = r.out_len == ref.out_len && memcmp(r.out, ref.out, r.out_len) == 0;
            finished++;
        } else if (one_error_line(&r, copy, "model file changed while in use\n")) {
            ok = is_prefix(&r, &ref);
            changed++;
        } else {
            ok = one_error_line(&r, copy, NULL); /* truncated before it was opened */
            other_error++;
        }
        if (!ok) {
            bad++;
            fprintf(stderr, "trial %lu (%s, truncate to %lld %s + %llu us): ", ran, mode,
                    (long long)to, during_load ? "at start" : "after the first byte",
                    (unsigned long long)delay);
            show("BAD", &r);
        }
        CHECK(ok);
        free_result(&r);
        unlink(copy);
    }
    printf("stress: %lu trials in %.1f s: %lu 'model file changed' (exit 1), %lu other "
           "one-line errors (exit 1), %lu finished unharmed (exit 0), %lu bad\n",
           ran, now_s() - t_start, changed, other_error, finished, bad);
    /* the moments must really race the generation */
    CHECK(changed * 2 >= ran);
    free_result(&ref);
    return check_result("faults_stress");
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: test_infer_faults QORUS MODELS_DIR WORK_DIR CASE [ARG...]\n");
        return 1;
    }
    qorus = argv[1];
    models = argv[2];
    (void)argv[3]; /* WORK_DIR: unused, copies go to a fresh folder under $TMPDIR */
    static char tmp[4096];
    const char *t = getenv("TMPDIR");
    snprintf(tmp, sizeof tmp, "%s/qorus-faults-XXXXXX", t != NULL && t[0] ? t : "/tmp");
    if (mkdtemp(tmp) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    work = tmp;
    const char *c = argv[4];
    snprintf(model_src, sizeof model_src, "%s/stories260K.bin", models);
    snprintf(tok_src, sizeof tok_src, "%s/tok512.bin", models);
    if (access(model_src, R_OK) != 0 || access(tok_src, R_OK) != 0) {
        printf("models not found in %s: skipped\n", models);
        return SKIP_RETURN_CODE;
    }
    mkdir(work, 0755);
    if (strcmp(c, "truncate") == 0 && argc > 5)
        return case_truncate(argv[5], NULL);
    if (strcmp(c, "valgrind") == 0 && argc > 5)
        return case_truncate("lazy", argv[5]);
    if (strcmp(c, "devfull") == 0)
        return case_devfull();
    if (strcmp(c, "signal") == 0 && argc > 5)
        return case_signal(argv[5]);
    if (strcmp(c, "pipe") == 0)
        return case_pipe();
    if (strcmp(c, "stress") == 0 && argc > 6)
        return case_stress(strtoul(argv[5], NULL, 10), strtod(argv[6], NULL));
    fprintf(stderr, "unknown case %s\n", c);
    return 1;
}
