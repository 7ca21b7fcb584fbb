/*
 * gen_bench: generation speed of the real `qorus` command, in one run.
 *
 * For every model (the real stories260K files, and random-weight models of the TinyStories
 * 15M / 42M / 110M shapes in llama2.c v0 F32, ak42 v2 Q8, GGUF F32 / F16 / Q8_0 (and BF16,
 * Q4_0, Q4_K, Q5_K, Q6_K and the Q4_K_M mix at 110M), written by `qorus-model random` and
 * cached), every thread count and both kernel choices (auto, and the scalar reference forced
 * with QORUS_KERNELS=scalar),
 * gen_bench runs `qorus run` as a child process twice:
 *
 *   decode   qorus run MODEL [-z TOK] -t 0 -n 256 -i "Once upon a time" [-j N]
 *   prefill  qorus run MODEL [-z TOK] -t 0 -n 129 -i PROMPT128 [-j N]
 *
 * and reads the stats line the driver prints on stderr (key=value pairs; missing keys are
 * tolerated) and the child's peak RSS from wait4(). PROMPT128 is text that the model's
 * tokenizer encodes to exactly 128 tokens (BOS included, as the stats line's prompt=
 * counts): gen_bench builds it by probing `qorus run -n 1` (see build_prompt).
 *
 * It also measures the machine's read bandwidth itself (a STREAM-like sum over a 1 GiB
 * prefaulted buffer with 1..N threads, best of 5 passes) and reports, per row, the share of
 * that bandwidth the decode speed implies: weight bytes read per token x tok/s / bandwidth.
 * Weight bytes per token come from the tensor table of `qorus inspect MODEL`, tensor by
 * tensor, so a file that mixes types (Q4_K_M) counts each at its own size.
 *
 * The result is a markdown report on stdout; progress goes to stderr. A child that fails
 * stops the run with one line naming its command and a non-zero exit.
 *
 * Options: see usage() below.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* The models folder when neither --models nor $QORUS_MODELS says: set by CMake to the
 * project's QORUS_MODELS_DIR (by default ../shared/models next to the source tree). */
#ifndef GEN_BENCH_MODELS_DIR
#define GEN_BENCH_MODELS_DIR "../shared/models"
#endif

#define PROMPT_TOKENS 128       /* the prefill prompt, BOS included */
#define DECODE_PROMPT "Once upon a time"
#define MAX_THREADS 64
#define MAX_MODELS 32
#define BW_BYTES ((size_t)1 << 30)
#define BW_PASSES 5
#define SEED 1

static void die(const char *what)
{
    fprintf(stderr, "gen_bench: %s\n", what);
    exit(1);
}

static void die_errno(const char *what, const char *arg)
{
    fprintf(stderr, "gen_bench: %s %s: %s\n", what, arg, strerror(errno));
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        die("out of memory");
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- a growable string ---- */

typedef struct str {
    char *p;
    size_t n, cap;
} str;

static void str_add(str *s, const char *t, size_t n)
{
    if (s->n + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->n + n + 1)
            cap *= 2;
        char *p = realloc(s->p, cap);
        if (p == NULL)
            die("out of memory");
        s->p = p;
        s->cap = cap;
    }
    memcpy(s->p + s->n, t, n);
    s->n += n;
    s->p[s->n] = '\0';
}

static void str_cat(str *s, const char *t)
{
    str_add(s, t, strlen(t));
}

/* Appends `a` quoted for a POSIX shell when it needs it, so printed commands can be pasted. */
static void str_shell_word(str *s, const char *a)
{
    if (a[0] == '$') { /* a placeholder ($QORUS, "$CACHE/x.bin"): let the shell expand it */
        str_cat(s, "\"");
        str_cat(s, a);
        str_cat(s, "\"");
        return;
    }
    int plain = a[0] != '\0';
    for (const char *c = a; *c; c++)
        if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+%@",
                   *c) == NULL)
            plain = 0;
    if (plain) {
        str_cat(s, a);
        return;
    }
    str_cat(s, "'");
    for (const char *c = a; *c; c++) {
        if (*c == '\'')
            str_cat(s, "'\\''");
        else
            str_add(s, c, 1);
    }
    str_cat(s, "'");
}

/* ---- running a child ---- */

/* argv of a child, at most ARGS_MAX entries, NULL-terminated. */
#define ARGS_MAX 24
typedef struct args {
    const char *v[ARGS_MAX + 1];
    size_t n;
} args;

static void args_add(args *a, const char *s)
{
    if (a->n >= ARGS_MAX)
        die("internal error: too many child arguments");
    a->v[a->n++] = s;
    a->v[a->n] = NULL;
}

/* Which kernels a row asks for: the driver's own choice, or a table named by QORUS_KERNELS. */
enum { KERN_AUTO, KERN_SCALAR, KERN_AVX2 };
static const char *const kern_names[] = {"auto", "scalar", "avx2"};

/* The command as a shell line (with QORUS_KERNELS=... in front for a named table). */
static char *command_line(const args *a, int kern)
{
    str s = {0};
    if (kern == KERN_SCALAR)
        str_cat(&s, "QORUS_KERNELS=scalar ");
    else if (kern == KERN_AVX2)
        str_cat(&s, "QORUS_KERNELS=avx2 ");
    for (size_t i = 0; i < a->n; i++) {
        if (i > 0)
            str_cat(&s, " ");
        str_shell_word(&s, a->v[i]);
    }
    return s.p;
}

/* Three environments: ours without QORUS_KERNELS (auto rows), and that plus
 * QORUS_KERNELS=scalar (scalar-reference rows) or QORUS_KERNELS=avx2 (--avx2 rows). */
static char **env_auto, **env_scalar, **env_avx2;

static void build_envs(void)
{
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    env_auto = xmalloc((n + 1) * sizeof *env_auto);
    env_scalar = xmalloc((n + 2) * sizeof *env_scalar);
    env_avx2 = xmalloc((n + 2) * sizeof *env_avx2);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], "QORUS_KERNELS=", 14) == 0)
            continue;
        env_auto[k] = environ[i];
        env_scalar[k] = environ[i];
        env_avx2[k] = environ[i];
        k++;
    }
    env_auto[k] = NULL;
    env_scalar[k] = (char *)"QORUS_KERNELS=scalar";
    env_scalar[k + 1] = NULL;
    env_avx2[k] = (char *)"QORUS_KERNELS=avx2";
    env_avx2[k + 1] = NULL;
}

typedef struct child {
    char *out;         /* stderr (and stdout when captured), NUL-terminated */
    int status;        /* from wait4 */
    long maxrss_kib;   /* ru_maxrss: peak resident set of the child */
} child;

/* Runs argv with stdin from /dev/null, stderr into c->out, and stdout into c->out too when
 * capture_stdout, else to /dev/null (the generated text is not needed). Returns 0 when the
 * child ran (whatever its status), -1 if it could not be started. */
static int run_child(const args *a, int kern, int capture_stdout, child *c)
{
    memset(c, 0, sizeof *c);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        die_errno("pipe", "");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (capture_stdout)
        posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    else
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2); /* the copies lose O_CLOEXEC */
    pid_t pid;
    int rc = posix_spawn(&pid, a->v[0], &fa, NULL, (char *const *)a->v,
                         kern == KERN_SCALAR ? env_scalar
                         : kern == KERN_AVX2 ? env_avx2
                                             : env_auto);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        errno = rc;
        return -1;
    }
    str s = {0};
    str_add(&s, "", 0);
    char buf[4096];
    for (;;) {
        ssize_t got = read(fds[0], buf, sizeof buf);
        if (got > 0)
            str_add(&s, buf, (size_t)got);
        else if (got == 0 || errno != EINTR)
            break;
    }
    close(fds[0]);
    struct rusage ru;
    while (wait4(pid, &c->status, 0, &ru) < 0)
        if (errno != EINTR)
            die_errno("wait4", a->v[0]);
    c->out = s.p;
    c->maxrss_kib = ru.ru_maxrss;
    return 0;
}

/* The last non-empty line of a child's output (for error messages), in place. */
static const char *last_line(char *out)
{
    size_t n = strlen(out);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = '\0';
    char *nl = strrchr(out, '\n');
    if (n == 0)
        return "(no output)";
    return nl ? nl + 1 : out;
}

/* Runs a child that must succeed; on failure prints one line naming the command, exits 1. */
static void run_checked(const args *a, int kern, int capture_stdout, child *c)
{
    char *cmd = command_line(a, kern);
    if (run_child(a, kern, capture_stdout, c) != 0) {
        fprintf(stderr, "gen_bench: cannot start `%s`: %s\n", cmd, strerror(errno));
        exit(1);
    }
    if (WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0) {
        free(cmd);
        return;
    }
    if (WIFSIGNALED(c->status))
        fprintf(stderr, "gen_bench: `%s` killed by signal %d: %s\n", cmd, WTERMSIG(c->status),
                last_line(c->out));
    else
        fprintf(stderr, "gen_bench: `%s` failed (exit %d): %s\n", cmd, WEXITSTATUS(c->status),
                last_line(c->out));
    exit(1);
}

/* ---- the stats line ---- */

/* Finds `key=` in the last "stats: " line of `out` and parses its number. Returns 1 if found. */
static int stat_get(const char *out, const char *key, double *v)
{
    const char *line = NULL;
    for (const char *p = out; (p = strstr(p, "stats: ")) != NULL; p++)
        if (p == out || p[-1] == '\n')
            line = p;
    if (line == NULL)
        return 0;
    size_t klen = strlen(key);
    const char *end = strchr(line, '\n');
    if (end == NULL)
        end = line + strlen(line);
    for (const char *p = line + 7; p < end;) {
        while (p < end && *p == ' ')
            p++;
        const char *w = p;
        while (p < end && *p != ' ')
            p++;
        if ((size_t)(p - w) > klen && strncmp(w, key, klen) == 0 && w[klen] == '=') {
            char *e;
            double d = strtod(w + klen + 1, &e);
            if (e == w + klen + 1)
                return 0;
            *v = d;
            return 1;
        }
    }
    return 0;
}

/* A word value (kernels=avx2) of the stats line, into buf; 1 if found. */
static int stat_word(const char *out, const char *key, char *buf, size_t cap)
{
    const char *line = NULL;
    for (const char *p = out; (p = strstr(p, "stats: ")) != NULL; p++)
        if (p == out || p[-1] == '\n')
            line = p;
    if (line == NULL)
        return 0;
    size_t klen = strlen(key);
    for (const char *p = line + 7; *p && *p != '\n'; p++) {
        if (p[-1] == ' ' && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            const char *v = p + klen + 1;
            size_t n = strcspn(v, " \n");
            if (n >= cap)
                n = cap - 1;
            memcpy(buf, v, n);
            buf[n] = '\0';
            return 1;
        }
    }
    return 0;
}

/* ---- read bandwidth ---- */

typedef struct bw_job {
    const uint64_t *p;
    size_t n;       /* words */
    uint64_t sum;
} bw_job;

/* Sums n 64-bit words with eight independent accumulators: the adds are far cheaper than
 * the loads, so the loop runs at the speed memory delivers the buffer. */
static uint64_t sum_scalar(const uint64_t *p, size_t n)
{
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 += p[i];
        s1 += p[i + 1];
        s2 += p[i + 2];
        s3 += p[i + 3];
        s4 += p[i + 4];
        s5 += p[i + 5];
        s6 += p[i + 6];
        s7 += p[i + 7];
    }
    for (; i < n; i++)
        s0 += p[i];
    return s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_AVX2_SUM 1
/* The same sum with 32-byte loads (four 256-bit accumulators), compiled for AVX2 whatever
 * the build flags and used only when the CPU has it: wide loads reach more of the memory
 * bandwidth than 8-byte ones (~30% more on one core here), and the optimized kernels read
 * their weights with them, so this is the fair ceiling. p must be 32-byte aligned. */
__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint64_t *p, size_t n)
{
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a = _mm256_add_epi64(a, _mm256_load_si256((const __m256i *)(const void *)(p + i)));
        b = _mm256_add_epi64(b, _mm256_load_si256((const __m256i *)(const void *)(p + i + 4)));
        c = _mm256_add_epi64(c, _mm256_load_si256((const __m256i *)(const void *)(p + i + 8)));
        d = _mm256_add_epi64(d, _mm256_load_si256((const __m256i *)(const void *)(p + i + 12)));
    }
    a = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
    uint64_t lanes[4];
    memcpy(lanes, &a, sizeof lanes);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3] + sum_scalar(p + i, n - i);
}
#endif

static int use_avx2; /* set once from the CPU's features */

static void *bw_worker(void *arg)
{
    bw_job *j = arg;
#ifdef HAVE_AVX2_SUM
    if (use_avx2) {
        j->sum = sum_avx2(j->p, j->n);
        return NULL;
    }
#endif
    j->sum = sum_scalar(j->p, j->n);
    return NULL;
}

static volatile uint64_t bw_sink; /* the sums land here, so no pass can be optimized away */

/* Best of BW_PASSES passes over the buffer split in `threads` equal slices, in GB/s. */
static double bw_measure(const uint64_t *buf, size_t words, size_t threads)
{
    double best = 0.0;
    for (int pass = 0; pass < BW_PASSES; pass++) {
        pthread_t tid[MAX_THREADS];
        bw_job job[MAX_THREADS];
        size_t per = words / threads / 4 * 4; /* slices stay 32-byte aligned */
        double t0 = now_s();
        for (size_t t = 0; t < threads; t++) {
            job[t].p = buf + t * per;
            job[t].n = t + 1 == threads ? words - t * per : per;
            if (pthread_create(&tid[t], NULL, bw_worker, &job[t]) != 0)
                die("pthread_create failed");
        }
        uint64_t sum = 0;
        for (size_t t = 0; t < threads; t++) {
            pthread_join(tid[t], NULL);
            sum += job[t].sum;
        }
        double dt = now_s() - t0;
        bw_sink += sum;
        double gbs = (double)(words * sizeof *buf) / dt / 1e9;
        if (gbs > best)
            best = gbs;
    }
    return best;
}

/* ---- models ---- */

typedef struct shape {
    const char *name;
    unsigned dim, hidden, layers, heads, vocab, seq;
} shape;

/* The TinyStories shapes (llama2.c's stories15M / 42M / 110M), all with seq_len 256: the
 * prefill row needs 129 positions and the KV cache stays small. */
static const shape shapes[] = {
    {"15M", 288, 768, 6, 6, 32000, 256},
    {"42M", 512, 1376, 8, 8, 32000, 256},
    {"110M", 768, 2048, 12, 12, 32000, 256},
};

typedef struct format {
    const char *tag;   /* file-name part and model-name suffix */
    const char *type;  /* the table's type column */
    const char *opt[3];/* qorus-model random options */
    int gguf;
    const char *shape; /* only this shape (NULL: every shape) */
} format;

static const format formats[] = {
    {"v0", "F32 (llama2.c v0)", {"--version", "0", NULL}, 0, NULL},
    {"v2", "Q8 (ak42 v2)", {"--version", "2", NULL}, 0, NULL},
    {"gguf-f32", "GGUF F32", {"--gguf", "--type", "f32"}, 1, NULL},
    {"gguf-f16", "GGUF F16", {"--gguf", "--type", "f16"}, 1, NULL},
    {"gguf-bf16", "GGUF BF16", {"--gguf", "--type", "bf16"}, 1, "110M"},
    {"gguf-q8_0", "GGUF Q8_0", {"--gguf", "--type", "q8_0"}, 1, NULL},
    {"gguf-q4_0", "GGUF Q4_0", {"--gguf", "--type", "q4_0"}, 1, "110M"},
    {"gguf-q4_k", "GGUF Q4_K", {"--gguf", "--type", "q4_k"}, 1, "110M"},
    {"gguf-q5_k", "GGUF Q5_K", {"--gguf", "--type", "q5_k"}, 1, "110M"},
    {"gguf-q6_k", "GGUF Q6_K", {"--gguf", "--type", "q6_k"}, 1, "110M"},
    {"gguf-q4_k_m", "GGUF Q4_K_M", {"--gguf", "--type", "q4_k_m"}, 1, "110M"},
};

enum { GROUP_STORIES, GROUP_RANDOM, N_GROUPS };

typedef struct model {
    char *name;        /* 15M.v2, stories260K.bin, ... */
    const char *type;
    char *path;
    char *tok;         /* -z TOKENIZER, or NULL (GGUF metadata) */
    int group;         /* which vocabulary: picks the 128-token prompt */
    char *dpath;       /* path and tokenizer as the report shows them: $MODELS/..., $CACHE/... */
    char *dtok;
    char *gen_cmd;     /* the qorus-model command that wrote it (shown form), or NULL */
    double wbytes;     /* weight bytes read per token, 0 if unknown */
} model;

/* ---- options ---- */

typedef struct opts {
    const char *models_dir;
    const char *qorus;
    const char *qorus_model;
    const char *only;
    size_t threads[MAX_THREADS];
    size_t n_threads;
    int quick;
    int no_scalar;
    int avx2; /* also rows with QORUS_KERNELS=avx2 (the AVX2 table on an AVX-512 CPU) */
} opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: gen_bench [options]\n"
            "  Runs `qorus run` on the real 260K models and on random-weight 15M / 42M / 110M\n"
            "  models (llama2.c v0, ak42 v2, GGUF F32/F16/Q8_0; BF16, Q4_0, Q4_K, Q5_K, Q6_K,\n"
            "  Q4_K_M at 110M), 1 and 2 threads, auto and scalar kernels, and prints a markdown\n"
            "  table: decode and prefill tok/s, time to first token of a 128-token prompt, peak\n"
            "  RSS, and efficiency against the read bandwidth measured in the same run.\n"
            "  --quick          15M and 260K models only, fewer decode steps\n"
            "  --only PATTERN   only models whose name contains PATTERN (15M, 110M.v2, gguf, ...)\n"
            "  --threads LIST   thread counts, comma-separated (default 1,2)\n"
            "  --no-scalar      skip the QORUS_KERNELS=scalar rows\n"
            "  --avx2           also rows with QORUS_KERNELS=avx2 (the AVX2 table where auto\n"
            "                   picks AVX-512), same steps as auto\n"
            "  --models DIR     real models folder (default $QORUS_MODELS, else the build's\n"
            "                   QORUS_MODELS_DIR)\n"
            "  --qorus PATH     the qorus command (default: next to gen_bench's build dir)\n"
            "  --qorus-model PATH  the qorus-model tool (same default)\n"
            "  Random models are cached in $TMPDIR/qorus-gen-bench/ (default /tmp).\n");
}

static int parse_threads(const char *s, opts *o)
{
    o->n_threads = 0;
    while (*s) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || errno != 0 || v == 0 || v > MAX_THREADS || o->n_threads >= MAX_THREADS)
            return 0;
        o->threads[o->n_threads++] = (size_t)v;
        if (*end == ',')
            end++;
        else if (*end != '\0')
            return 0;
        s = end;
    }
    return o->n_threads > 0;
}

/* This program's own file (for re-running itself), from /proc/self/exe, else argv[0]. */
static void self_path(const char *argv0, char *self, size_t cap)
{
    ssize_t n = readlink("/proc/self/exe", self, cap - 1);
    if (n > 0)
        self[n] = '\0';
    else
        snprintf(self, cap, "%s", argv0);
}

/* An absolute, normalized form of a path that exists (for the report), else a copy. */
static char *canonical(const char *p)
{
    char *r = realpath(p, NULL);
    return r != NULL ? r : xstrdup(p);
}

/* The build directory of this binary: gen_bench lives in build/<preset>/bench/, the qorus
 * and qorus-model binaries in build/<preset>/. */
static char *sibling_binary(const char *argv0, const char *name)
{
    char self[PATH_MAX];
    self_path(argv0, self, sizeof self);
    char *slash = strrchr(self, '/');
    if (slash == NULL)
        snprintf(self, sizeof self, ".");
    else
        *slash = '\0';
    str s = {0};
    str_cat(&s, self);
    str_cat(&s, "/../");
    str_cat(&s, name);
    if (access(s.p, X_OK) != 0) { /* gen_bench copied or built elsewhere: try its own dir */
        s.n = 0;
        str_cat(&s, self);
        str_cat(&s, "/");
        str_cat(&s, name);
    }
    char *r = canonical(s.p);
    free(s.p);
    return r;
}

/* ---- the models: real ones, and random ones generated once and cached ---- */

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static char *path_join(const char *dir, const char *name)
{
    str s = {0};
    str_cat(&s, dir);
    str_cat(&s, "/");
    str_cat(&s, name);
    return s.p;
}

/* Writes shape x format with qorus-model into the cache unless it is there already. The
 * file name holds every parameter (shape, format, seed), so a cached file is the same model.
 * The tool writes to temporary names that are renamed at the end: an interrupted run never
 * leaves a truncated model behind. */
static void random_model(const opts *o, const char *cache, const shape *sh, const format *f,
                         model *m)
{
    char base[160];
    snprintf(base, sizeof base, "d%u-h%u-l%u-n%u-v%u-s%u-%s-seed%d", sh->dim, sh->hidden,
             sh->layers, sh->heads, sh->vocab, sh->seq, f->tag, SEED);
    char file[192], tokfile[192];
    snprintf(file, sizeof file, "%s.%s", base, f->gguf ? "gguf" : "bin");
    snprintf(tokfile, sizeof tokfile, "%s.tok.bin", base);
    m->path = path_join(cache, file);
    m->tok = f->gguf ? NULL : path_join(cache, tokfile);
    m->dpath = path_join("$CACHE", file);
    m->dtok = f->gguf ? NULL : path_join("$CACHE", tokfile);
    m->group = GROUP_RANDOM;

    char num[6][16];
    unsigned vals[6] = {sh->dim, sh->hidden, sh->layers, sh->heads, sh->vocab, sh->seq};
    static const char *const flags[6] = {"--dim", "--hidden", "--layers", "--heads", "--vocab",
                                         "--seq"};
    char seed[16];
    snprintf(seed, sizeof seed, "%d", SEED);
    args a = {0};
    args_add(&a, o->qorus_model);
    args_add(&a, "random");
    args_add(&a, "-o");
    size_t out_arg = a.n;
    args_add(&a, m->path);
    size_t tok_arg = 0;
    if (m->tok != NULL) {
        args_add(&a, "-z");
        tok_arg = a.n;
        args_add(&a, m->tok);
    }
    for (int i = 0; i < 6; i++) {
        snprintf(num[i], sizeof num[i], "%u", vals[i]);
        args_add(&a, flags[i]);
        args_add(&a, num[i]);
    }
    for (int i = 0; i < 3 && f->opt[i] != NULL; i++)
        args_add(&a, f->opt[i]);
    args_add(&a, "--seed");
    args_add(&a, seed);
    /* the shown form: the same arguments with placeholders for the folders */
    a.v[0] = "$QORUS_MODEL";
    a.v[out_arg] = m->dpath;
    if (m->tok != NULL)
        a.v[tok_arg] = m->dtok;
    m->gen_cmd = command_line(&a, 0);
    a.v[0] = o->qorus_model;
    a.v[out_arg] = m->path;
    if (m->tok != NULL)
        a.v[tok_arg] = m->tok;

    if (file_exists(m->path) && (m->tok == NULL || file_exists(m->tok)))
        return;
    fprintf(stderr, "gen_bench: writing %s (cached for later runs)\n", m->path);
    char *tmp = xmalloc(strlen(m->path) + 32), *tmptok = NULL;
    sprintf(tmp, "%s.tmp%ld", m->path, (long)getpid());
    a.v[out_arg] = tmp;
    if (m->tok != NULL) {
        tmptok = xmalloc(strlen(m->tok) + 32);
        sprintf(tmptok, "%s.tmp%ld", m->tok, (long)getpid());
        a.v[tok_arg] = tmptok;
    }
    child c;
    run_checked(&a, 0, 0, &c);
    free(c.out);
    if ((tmptok != NULL && rename(tmptok, m->tok) != 0) || rename(tmp, m->path) != 0)
        die_errno("rename into", cache);
    free(tmp);
    free(tmptok);
}

/* Weight bytes the forward pass reads per token, from `qorus inspect`'s tensor table:
 * every tensor but the token embedding (one row of it per token: negligible), plus the
 * embedding when the classifier shares it (then all of it is read, as the classifier).
 * Table lines: "  NAME TYPE (ROWS, COLS) offset N[, scales at M (group G)]". */
static double weight_bytes(const opts *o, const model *m)
{
    args a = {0};
    args_add(&a, o->qorus);
    args_add(&a, "inspect");
    args_add(&a, m->path);
    child c;
    run_checked(&a, 0, 1, &c);
    int shared = strstr(c.out, "classifier=shared") != NULL;
    double total = 0.0;
    int first = 1, any = 0;
    for (char *line = c.out, *next; line != NULL && *line != '\0'; line = next) {
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        char name[128], type[16];
        unsigned long long rows, cols;
        if (sscanf(line, " %127s %15s (%llu, %llu)", name, type, &rows, &cols) != 4 ||
            strncmp(line, "  ", 2) != 0)
            continue;
        double n = (double)rows * (double)cols, b;
        if (strcmp(type, "F32") == 0) {
            b = 4.0 * n;
        } else if (strcmp(type, "F16") == 0 || strcmp(type, "BF16") == 0) {
            b = 2.0 * n;
        } else if (strcmp(type, "Q8_0") == 0) {
            b = n / 32.0 * 34.0; /* 32 int8 + one f16 scale per block */
        } else if (strcmp(type, "Q4_0") == 0) {
            b = n / 32.0 * 18.0; /* 32 4-bit codes + one f16 scale per block */
        } else if (strcmp(type, "Q4_K") == 0) {
            b = n / 256.0 * 144.0; /* 256 4-bit codes, 6-bit scales and mins, d, dmin */
        } else if (strcmp(type, "Q5_K") == 0) {
            b = n / 256.0 * 176.0; /* Q4_K's block plus 32 bytes of fifth code bits */
        } else if (strcmp(type, "Q6_K") == 0) {
            b = n / 256.0 * 210.0; /* 256 6-bit codes, 16 int8 scales, one f16 d */
        } else if (strcmp(type, "Q8_SPLIT") == 0) {
            const char *g = strstr(line, "(group ");
            unsigned long group = g ? strtoul(g + 7, NULL, 10) : 0;
            if (group == 0) {
                free(c.out);
                return 0.0;
            }
            b = n + 4.0 * n / (double)group; /* int8 values + one f32 scale per group */
        } else {
            free(c.out);
            return 0.0; /* a type this benchmark does not know: say n/a */
        }
        if (!first || shared)
            total += b;
        first = 0;
        any = 1;
    }
    free(c.out);
    return any ? total : 0.0;
}

/* Reads a model file once so that the first timed run does not wait for the disk. The
 * buffer is small on purpose: see "peak RSS" in main. */
static void warm_page_cache(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die_errno("cannot open", path);
    static char buf[64 * 1024];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    close(fd);
}

/* ---- the 128-token prompt ---- */

/* Words the prompt is cut from, repeated as needed: plain TinyStories-like prose. */
static const char story[] =
    "Once upon a time, there was a little girl named Lily. She loved to play in the park "
    "with her red ball. One day, the sun was warm and the sky was blue, so Lily ran to the "
    "big tree near the pond. A small bird sat on a branch and sang a happy song. Lily "
    "smiled and said, \"Hello, little bird! Do you want to play with me?\" The bird flew "
    "down and landed next to her ball. They played together until the sun went down, and "
    "then Lily went home to tell her mom about her new friend.";

/* The first n words of the story (cycling), then `pad` k times. */
static char *prompt_text(size_t n, const char *pad, size_t k)
{
    str s = {0};
    str_add(&s, "", 0);
    const char *p = story;
    for (size_t i = 0; i < n; i++) {
        if (*p == '\0')
            p = story;
        size_t len = strcspn(p, " ");
        if (i > 0)
            str_cat(&s, " ");
        str_add(&s, p, len);
        p += len;
        while (*p == ' ')
            p++;
    }
    for (size_t i = 0; i < k; i++)
        str_cat(&s, pad);
    return s.p;
}

/* How many tokens (BOS included) the model's tokenizer makes of `text`: one position of
 * `qorus run` reports the whole prompt's count in its stats line. */
static size_t count_tokens(const opts *o, const model *m, const char *text)
{
    args a = {0};
    args_add(&a, o->qorus);
    args_add(&a, "run");
    args_add(&a, m->path);
    if (m->tok != NULL) {
        args_add(&a, "-z");
        args_add(&a, m->tok);
    }
    args_add(&a, "-t");
    args_add(&a, "0");
    args_add(&a, "-n");
    args_add(&a, "1");
    args_add(&a, "-i");
    args_add(&a, text);
    child c;
    run_checked(&a, 0, 0, &c);
    double v = 0.0;
    int ok = stat_get(c.out, "prompt", &v);
    free(c.out);
    if (!ok) {
        char *cmd = command_line(&a, 0);
        fprintf(stderr, "gen_bench: `%s` printed no stats line with prompt=\n", cmd);
        exit(1);
    }
    return (size_t)v;
}

/* Text that encodes to exactly PROMPT_TOKENS tokens with m's tokenizer. The token count
 * grows with the number of words, so a binary search finds the longest word prefix of the
 * story that stays <= PROMPT_TOKENS; the rest is filled with a short padding piece (" a",
 * then other candidates) repeated, corrected from the measured count a few times. If no
 * padding lands exactly, a shorter prefix is tried. */
static char *build_prompt(const opts *o, const model *m)
{
    size_t lo = 1, hi = 512; /* count(lo) <= PROMPT_TOKENS < count(hi) */
    char *one = prompt_text(lo, "", 0);
    if (count_tokens(o, m, one) > PROMPT_TOKENS)
        die("the tokenizer makes more than 128 tokens of one word");
    free(one);
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        char *t = prompt_text(mid, "", 0);
        if (count_tokens(o, m, t) <= PROMPT_TOKENS)
            lo = mid;
        else
            hi = mid;
        free(t);
    }
    static const char *const pads[] = {" a", " I", ".", " the", "a"};
    for (size_t words = lo; words > 0 && words + 8 > lo; words--) {
        char *t = prompt_text(words, "", 0);
        size_t base = count_tokens(o, m, t);
        if (base == PROMPT_TOKENS)
            return t;
        free(t);
        for (size_t p = 0; p < sizeof pads / sizeof pads[0]; p++) {
            size_t k = PROMPT_TOKENS - base;
            for (int attempt = 0; attempt < 4 && k > 0; attempt++) {
                t = prompt_text(words, pads[p], k);
                size_t got = count_tokens(o, m, t);
                if (got == PROMPT_TOKENS)
                    return t;
                free(t);
                if (got > PROMPT_TOKENS && got - PROMPT_TOKENS < k)
                    k -= got - PROMPT_TOKENS;
                else if (got < PROMPT_TOKENS)
                    k += PROMPT_TOKENS - got;
                else
                    break;
            }
        }
    }
    fprintf(stderr, "gen_bench: cannot build a %d-token prompt for %s\n", PROMPT_TOKENS,
            m->path);
    exit(1);
}

/* ---- rows ---- */

typedef struct row {
    const model *m;
    size_t threads;
    int kern; /* KERN_* */
    int have_decode, decode_fallback; /* fallback: tok_per_s (no decode_tok_per_s key) */
    double decode;
    int have_prefill, prefill_fallback; /* fallback: prompt / ttft */
    double prefill;
    int have_ttft;
    double ttft_ms;
    double prompt;   /* prompt= of the prefill run, -1 if absent */
    double positions;/* tokens= of the decode run, -1 if absent */
    double rss_mib;
    char kernels[32];/* kernels= of the stats line, "" if absent */
    double threads_reported; /* threads= of the stats line, 0 if absent */
} row;

/* The arguments of a `qorus run`; shown = the report's form, with $QORUS, $MODELS, $CACHE. */
static void add_run_args(args *a, const opts *o, const model *m, const char *steps,
                         const char *prompt, const char *jn, int have_j, int shown)
{
    args_add(a, shown ? "$QORUS" : o->qorus);
    args_add(a, "run");
    args_add(a, shown ? m->dpath : m->path);
    if (m->tok != NULL) {
        args_add(a, "-z");
        args_add(a, shown ? m->dtok : m->tok);
    }
    args_add(a, "-t");
    args_add(a, "0");
    args_add(a, "-n");
    args_add(a, steps);
    args_add(a, "-i");
    args_add(a, prompt);
    if (have_j) {
        args_add(a, "-j");
        args_add(a, jn);
    }
}

/* Short runs are the noisiest (a 260K model decodes 256 positions in a few tens of ms on a
 * shared machine): a command whose first run took less than SHORT_RUN_S runs REPEATS times
 * and the row keeps its fastest run. Long runs (the big models) run once. */
#define SHORT_RUN_S 1.0
#define REPEATS 3

static void run_row(const opts *o, row *r, const char *prompt128, size_t decode_steps,
                    int have_j)
{
    char steps[24], psteps[24], jn[24];
    snprintf(steps, sizeof steps, "%zu", decode_steps);
    snprintf(psteps, sizeof psteps, "%d", PROMPT_TOKENS + 1);
    snprintf(jn, sizeof jn, "%zu", r->threads);
    args a = {0};
    child c;
    double v;

    /* decode */
    add_run_args(&a, o, r->m, steps, DECODE_PROMPT, jn, have_j, 0);
    for (int rep = 0; rep < REPEATS; rep++) {
        double t0 = now_s();
        run_checked(&a, r->kern, 0, &c);
        double wall = now_s() - t0;
        int fallback = 0, have = 1;
        if (!stat_get(c.out, "decode_tok_per_s", &v))
            have = fallback = stat_get(c.out, "tok_per_s", &v);
        if (have && (!r->have_decode || v > r->decode)) {
            r->have_decode = 1;
            r->decode_fallback = fallback;
            r->decode = v;
        }
        r->positions = stat_get(c.out, "tokens", &v) ? v : -1.0;
        if (!stat_word(c.out, "kernels", r->kernels, sizeof r->kernels))
            r->kernels[0] = '\0';
        r->threads_reported = stat_get(c.out, "threads", &v) ? v : 0.0;
        if ((double)c.maxrss_kib / 1024.0 > r->rss_mib)
            r->rss_mib = (double)c.maxrss_kib / 1024.0;
        free(c.out);
        if (rep == 0 && wall >= SHORT_RUN_S)
            break;
    }

    /* prefill: the 128-token prompt and one sampled token; TTFT of the fastest run */
    a.n = 0;
    add_run_args(&a, o, r->m, psteps, prompt128, jn, have_j, 0);
    for (int rep = 0; rep < REPEATS; rep++) {
        double t0 = now_s();
        run_checked(&a, r->kern, 0, &c);
        double wall = now_s() - t0;
        double prompt = stat_get(c.out, "prompt", &v) ? v : -1.0, ttft = 0.0, pre = 0.0;
        int have_ttft = stat_get(c.out, "ttft_ms", &ttft), have = 1, fallback = 0;
        if (!stat_get(c.out, "prefill_tok_per_s", &pre)) {
            have = fallback = have_ttft && prompt > 0 && ttft > 0;
            if (have)
                pre = prompt / (ttft / 1000.0);
        }
        if (rep == 0 || (have && (!r->have_prefill || pre > r->prefill))) {
            r->prompt = prompt;
            r->have_ttft = have_ttft;
            r->ttft_ms = ttft;
            r->have_prefill = have;
            r->prefill_fallback = fallback;
            r->prefill = pre;
        }
        if ((double)c.maxrss_kib / 1024.0 > r->rss_mib)
            r->rss_mib = (double)c.maxrss_kib / 1024.0;
        free(c.out);
        if (rep == 0 && wall >= SHORT_RUN_S)
            break;
    }
}

/* ---- report ---- */

static void cpu_model(char *buf, size_t cap, int *avx2, int *fma, int *f16c, int *avx512vnni)
{
    snprintf(buf, cap, "unknown CPU");
    *avx2 = *fma = *f16c = *avx512vnni = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f == NULL)
        return;
    char line[4096];
    int got_name = 0, got_flags = 0;
    while (fgets(line, sizeof line, f) != NULL && !(got_name && got_flags)) {
        char *colon = strchr(line, ':');
        if (colon == NULL)
            continue;
        char *v = colon + 1;
        while (*v == ' ')
            v++;
        v[strcspn(v, "\n")] = '\0';
        if (!got_name && strncmp(line, "model name", 10) == 0) {
            snprintf(buf, cap, "%s", v);
            got_name = 1;
        } else if (!got_flags && strncmp(line, "flags", 5) == 0) {
            *avx2 = strstr(v, " avx2") != NULL;
            *fma = strstr(v, " fma") != NULL;
            *f16c = strstr(v, " f16c") != NULL;
            /* what the avx512 kernel table needs (the space keeps avx512_vnni whole) */
            *avx512vnni = strstr(v, " avx512f ") != NULL && strstr(v, " avx512bw ") != NULL &&
                          strstr(v, " avx512vl ") != NULL && strstr(v, " avx512_vnni") != NULL;
            got_flags = 1;
        }
    }
    fclose(f);
}

static void cell(char *buf, size_t cap, int have, double v, int decimals, const char *mark)
{
    if (!have)
        snprintf(buf, cap, "n/a");
    else if (decimals == 0)
        snprintf(buf, cap, "%.0f%s", v, mark);
    else if (decimals == 1)
        snprintf(buf, cap, "%.1f%s", v, mark);
    else
        snprintf(buf, cap, "%.2f%s", v, mark);
}

/* `gen_bench --measure-bandwidth LIST`: the bandwidth part, run by gen_bench as a child of
 * its own. Linux reports in a child's ru_maxrss at least the RSS its parent had when it
 * spawned it (exec records the old address space's high-water mark), so gen_bench itself
 * must never grow: the 1 GiB buffer lives in this separate process. Prints "loads NAME"
 * then one "THREADS GB/S" line per thread count. */
static int bandwidth_main(const char *list)
{
    opts o;
    memset(&o, 0, sizeof o);
    if (!parse_threads(list, &o))
        die("--measure-bandwidth needs a thread list");
    uint64_t *buf = mmap(NULL, BW_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                         -1, 0);
    if (buf == MAP_FAILED)
        die_errno("mmap", "1 GiB");
    size_t words = BW_BYTES / sizeof *buf;
    for (size_t i = 0; i < words; i++) /* prefault every page, with data that is not zero */
        buf[i] = i * 0x9E3779B97F4A7C15u;
#ifdef HAVE_AVX2_SUM
    __builtin_cpu_init();
    use_avx2 = __builtin_cpu_supports("avx2");
#endif
    printf("loads %s\n", use_avx2 ? "AVX2 32-byte" : "64-bit");
    for (size_t t = 0; t < o.n_threads; t++)
        printf("%zu %.2f\n", o.threads[t], bw_measure(buf, words, o.threads[t]));
    munmap(buf, BW_BYTES);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--measure-bandwidth") == 0)
        return bandwidth_main(argv[2]);
    opts o;
    memset(&o, 0, sizeof o);
    o.threads[0] = 1;
    o.threads[1] = 2;
    o.n_threads = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--quick") == 0) {
            o.quick = 1;
        } else if (strcmp(a, "--no-scalar") == 0) {
            o.no_scalar = 1;
        } else if (strcmp(a, "--avx2") == 0) {
            o.avx2 = 1;
        } else if (v != NULL && strcmp(a, "--only") == 0) {
            o.only = argv[++i];
        } else if (v != NULL && strcmp(a, "--models") == 0) {
            o.models_dir = argv[++i];
        } else if (v != NULL && strcmp(a, "--qorus") == 0) {
            o.qorus = argv[++i];
        } else if (v != NULL && strcmp(a, "--qorus-model") == 0) {
            o.qorus_model = argv[++i];
        } else if (v != NULL && strcmp(a, "--threads") == 0) {
            if (!parse_threads(argv[++i], &o)) {
                fprintf(stderr, "gen_bench: --threads needs a list like 1,2 (each 1..%d)\n",
                        MAX_THREADS);
                return 2;
            }
        } else {
            fprintf(stderr, "gen_bench: bad argument '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (o.models_dir == NULL)
        o.models_dir = getenv("QORUS_MODELS");
    if (o.models_dir == NULL || *o.models_dir == '\0')
        o.models_dir = GEN_BENCH_MODELS_DIR;
    char *qorus_alloc = NULL, *qorus_model_alloc = NULL;
    if (o.qorus == NULL)
        o.qorus = qorus_alloc = sibling_binary(argv[0], "qorus");
    if (o.qorus_model == NULL)
        o.qorus_model = qorus_model_alloc = sibling_binary(argv[0], "qorus-model");
    if (access(o.qorus, X_OK) != 0)
        die_errno("no qorus command at", o.qorus);
    build_envs();

    /* Does this driver take -j? Today's may not: then every row runs its default (one
     * thread) and the thread list is cut to 1, since more would only repeat the rows. */
    int have_j;
    {
        args a = {0};
        args_add(&a, o.qorus);
        args_add(&a, "run");
        args_add(&a, "--help");
        child c;
        run_checked(&a, 0, 1, &c);
        have_j = strstr(c.out, "-j ") != NULL || strstr(c.out, "--threads") != NULL;
        free(c.out);
    }
    size_t bw_threads[MAX_THREADS], n_bw = o.n_threads;
    memcpy(bw_threads, o.threads, sizeof bw_threads);
    if (!have_j) {
        o.threads[0] = 1;
        o.n_threads = 1;
    }

    /* Bandwidth first, before any child has filled the page cache with models; in a child
     * process of its own (see bandwidth_main). */
    double bw[MAX_THREADS + 1] = {0};
    char bw_loads[32] = "?";
    {
        fprintf(stderr, "gen_bench: measuring read bandwidth (1 GiB, best of %d)\n",
                BW_PASSES);
        char self[PATH_MAX];
        self_path(argv[0], self, sizeof self);
        str list = {0};
        for (size_t t = 0; t < n_bw; t++) {
            char num[24];
            snprintf(num, sizeof num, "%s%zu", t ? "," : "", bw_threads[t]);
            str_cat(&list, num);
        }
        args a = {0};
        args_add(&a, self);
        args_add(&a, "--measure-bandwidth");
        args_add(&a, list.p);
        child c;
        run_checked(&a, 0, 1, &c);
        for (char *line = c.out, *next; line != NULL && *line != '\0'; line = next) {
            next = strchr(line, '\n');
            if (next != NULL)
                *next++ = '\0';
            unsigned long t;
            double g;
            if (strncmp(line, "loads ", 6) == 0)
                snprintf(bw_loads, sizeof bw_loads, "%s", line + 6);
            else if (sscanf(line, "%lu %lf", &t, &g) == 2 && t >= 1 && t <= MAX_THREADS)
                bw[t] = g;
        }
        free(c.out);
        free(list.p);
    }

    /* The models. */
    model models[MAX_MODELS];
    size_t n_models = 0;
    int missing_real = 0;
    {
        char *bin = path_join(o.models_dir, "stories260K.bin");
        char *tok = path_join(o.models_dir, "tok512.bin");
        char *gguf = path_join(o.models_dir, "stories260K.gguf");
        if (file_exists(bin) && file_exists(tok))
            models[n_models++] = (model){xstrdup("stories260K.bin"), "F32 (llama2.c v0)", bin,
                                         tok, GROUP_STORIES, "$MODELS/stories260K.bin",
                                         "$MODELS/tok512.bin", NULL, 0.0};
        else
            missing_real = 1;
        if (file_exists(gguf))
            models[n_models++] = (model){xstrdup("stories260K.gguf"), "GGUF F32", gguf, NULL,
                                         GROUP_STORIES, "$MODELS/stories260K.gguf", NULL,
                                         NULL, 0.0};
        else
            missing_real = 1;
    }
    const char *tmpdir = getenv("TMPDIR");
    str cache_s = {0};
    str_cat(&cache_s, tmpdir != NULL && *tmpdir != '\0' ? tmpdir : "/tmp");
    str_cat(&cache_s, "/qorus-gen-bench");
    const char *cache = cache_s.p;
    size_t n_shapes = o.quick ? 1 : sizeof shapes / sizeof shapes[0];
    for (size_t s = 0; s < n_shapes; s++)
        for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++) {
            char name[64];
            snprintf(name, sizeof name, "%s.%s", shapes[s].name, formats[f].tag);
            if (o.only != NULL && strstr(name, o.only) == NULL)
                continue;
            if (formats[f].shape != NULL && strcmp(formats[f].shape, shapes[s].name) != 0)
                continue;
            if (mkdir(cache, 0777) != 0 && errno != EEXIST)
                die_errno("cannot create", cache);
            model *m = &models[n_models++];
            memset(m, 0, sizeof *m);
            m->name = xstrdup(name);
            m->type = formats[f].type;
            random_model(&o, cache, &shapes[s], &formats[f], m);
        }
    /* --only applies to the real models too */
    size_t kept = 0;
    for (size_t i = 0; i < n_models; i++)
        if (o.only == NULL || strstr(models[i].name, o.only) != NULL) {
            models[kept++] = models[i];
        } else { /* only the real models get here: their shown paths are literals */
            free(models[i].name);
            free(models[i].path);
            free(models[i].tok);
        }
    n_models = kept;
    if (n_models == 0)
        die("no model matches (see --only, --models)");

    /* Weight bytes, and one prompt per vocabulary (built with its first model). */
    char *prompts[N_GROUPS] = {NULL};
    for (size_t i = 0; i < n_models; i++) {
        model *m = &models[i];
        m->wbytes = weight_bytes(&o, m);
        if (prompts[m->group] == NULL) {
            fprintf(stderr, "gen_bench: building the %d-token prompt with %s\n",
                    PROMPT_TOKENS, m->name);
            prompts[m->group] = build_prompt(&o, m);
        }
    }

    size_t steps_auto = o.quick ? 64 : 256, steps_scalar = o.quick ? 16 : 32;
    int kinds[3], n_kinds = 0; /* the kernel choices of each model and thread count */
    kinds[n_kinds++] = KERN_AUTO;
    if (o.avx2)
        kinds[n_kinds++] = KERN_AVX2;
    if (!o.no_scalar)
        kinds[n_kinds++] = KERN_SCALAR;
    size_t n_rows = n_models * o.n_threads * (size_t)n_kinds, k = 0;
    row *rows = xmalloc(n_rows * sizeof *rows);
    memset(rows, 0, n_rows * sizeof *rows);
    double t_start = now_s();
    for (size_t i = 0; i < n_models; i++) {
        warm_page_cache(models[i].path);
        for (size_t t = 0; t < o.n_threads; t++)
            for (int kk = 0; kk < n_kinds; kk++) {
                row *r = &rows[k++];
                r->m = &models[i];
                r->threads = o.threads[t];
                r->kern = kinds[kk];
                fprintf(stderr, "gen_bench: [%zu/%zu] %s, %zu thread%s, %s\n", k, n_rows,
                        r->m->name, r->threads, r->threads == 1 ? "" : "s",
                        kern_names[r->kern]);
                run_row(&o, r, prompts[r->m->group],
                        r->kern == KERN_SCALAR ? steps_scalar : steps_auto, have_j);
            }
    }
    double t_rows = now_s() - t_start;

    /* ---- the report ---- */
    char cpu[256];
    int avx2, fma, f16c, avx512vnni;
    cpu_model(cpu, sizeof cpu, &avx2, &fma, &f16c, &avx512vnni);
    struct utsname un;
    if (uname(&un) != 0)
        snprintf(un.release, sizeof un.release, "?");
    char date[64];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    char *models_dir = canonical(o.models_dir), *cache_dir = canonical(cache);

    printf("# qorus generation benchmark\n\n");
    printf("- machine: %s, %ld online cores (AVX2 %s, FMA %s, F16C %s, AVX-512 F/BW/VL+VNNI %s), "
           "Linux %s, %s\n",
           cpu, sysconf(_SC_NPROCESSORS_ONLN), avx2 ? "yes" : "no", fma ? "yes" : "no",
           f16c ? "yes" : "no", avx512vnni ? "yes" : "no", un.release, date);
    printf("- read bandwidth (STREAM-like sum over 1 GiB, prefaulted, %s loads, best of %d):",
           bw_loads, BW_PASSES);
    for (size_t t = 0; t < n_bw; t++)
        printf("%s %zu thread%s %.1f GB/s", t ? "," : "", bw_threads[t],
               bw_threads[t] == 1 ? "" : "s", bw[bw_threads[t]]);
    printf("\n");
    if (!have_j)
        printf("- this `qorus run` has no `-j`: every row ran with the driver's default, and "
               "only 1-thread rows are listed\n");
    printf("- decode: `-n %zu` (positions, the prompt \"%s\" included) for auto rows, `-n %zu` "
           "for scalar rows (the reference path is slow; fewer steps keep the run short)%s\n",
           steps_auto, DECODE_PROMPT, steps_scalar, o.quick ? " [--quick]" : "");
    printf("- prefill: a %d-token prompt (BOS included), `-n %d`; TTFT is that run's "
           "time to first token\n",
           PROMPT_TOKENS, PROMPT_TOKENS + 1);
    printf("- a command whose first run takes under %.0f s runs %d times and its fastest run "
           "counts (TTFT from the fastest prefill run)\n",
           SHORT_RUN_S, REPEATS);
    printf("- peak RSS: the largest ru_maxrss (wait4) of the row's runs\n");
    printf("- efficiency: weight bytes read per token (from `qorus inspect`: every tensor but "
           "the token embedding, which counts when it is also the classifier) x decode tok/s "
           "/ read bandwidth at the row's thread count\n");
    printf("- the rows took %.0f s\n\n", t_rows);

    printf("| model | type | threads | kernels | decode tok/s | prefill tok/s | TTFT ms | "
           "peak RSS MiB | weight MB/token | efficiency %% | decode positions |\n");
    printf("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
    int any_fallback_decode = 0, any_fallback_prefill = 0, any_prompt_off = 0;
    for (size_t i = 0; i < k; i++) {
        const row *r = &rows[i];
        char dec[32], pre[32], ttft[32], rss[32], wmb[32], eff[32], pos[32], thr[48], ker[48];
        int prompt_off = r->prompt >= 0 && r->prompt != PROMPT_TOKENS;
        cell(dec, sizeof dec, r->have_decode, r->decode, 1, r->decode_fallback ? "~" : "");
        cell(pre, sizeof pre, r->have_prefill, r->prefill, 1,
             prompt_off ? "!" : r->prefill_fallback ? "~" : "");
        cell(ttft, sizeof ttft, r->have_ttft, r->ttft_ms, 1, prompt_off ? "!" : "");
        cell(rss, sizeof rss, 1, r->rss_mib, 1, "");
        cell(wmb, sizeof wmb, r->m->wbytes > 0, r->m->wbytes / 1e6, 2, "");
        double b = bw[r->threads];
        cell(eff, sizeof eff, r->m->wbytes > 0 && r->have_decode && b > 0,
             r->m->wbytes * r->decode / (b * 1e9) * 100.0, 0, "");
        cell(pos, sizeof pos, r->positions >= 0, r->positions, 0, "");
        if (r->threads_reported > 0 && r->threads_reported != (double)r->threads)
            snprintf(thr, sizeof thr, "%zu (ran %.0f)", r->threads, r->threads_reported);
        else
            snprintf(thr, sizeof thr, "%zu", r->threads);
        snprintf(ker, sizeof ker, "%s%s%s%s", kern_names[r->kern],
                 r->kernels[0] ? " (" : "", r->kernels, r->kernels[0] ? ")" : "");
        printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r->m->name,
               r->m->type, thr, ker, dec, pre, ttft, rss, wmb, eff, pos);
        any_fallback_decode |= r->decode_fallback;
        any_fallback_prefill |= r->prefill_fallback;
        any_prompt_off |= prompt_off;
    }
    printf("\n");
    if (any_fallback_decode)
        printf("~ decode: the driver prints no `decode_tok_per_s`; its `tok_per_s` (all "
               "positions, prompt included) is shown.  \n");
    if (any_fallback_prefill)
        printf("~ prefill: the driver prints no `prefill_tok_per_s`; shown is prompt / TTFT "
               "(prompt encoding and the first sample included).  \n");
    if (any_prompt_off)
        printf("! the prefill prompt did not encode to %d tokens with this model.  \n",
               PROMPT_TOKENS);
    if (missing_real)
        printf("The real models (stories260K.bin + tok512.bin, stories260K.gguf) are not in "
               "`%s`: their rows are missing.  \n",
               models_dir);
    printf("n/a: the driver's stats line has no such key (or the tensor table has a type "
           "gen_bench does not size).\n\n");

    printf("## Commands\n\n");
    printf("```sh\nQORUS=%s\nQORUS_MODEL=%s\nMODELS=%s\nCACHE=%s\n", o.qorus, o.qorus_model,
           models_dir, cache_dir);
    for (int g = 0; g < N_GROUPS; g++) {
        if (prompts[g] == NULL)
            continue;
        str s = {0};
        str_shell_word(&s, prompts[g]);
        printf("PROMPT_%s=%s\n", g == GROUP_STORIES ? "STORIES" : "RANDOM", s.p);
        free(s.p);
    }
    printf("```\n\n");
    printf("Every row runs the two commands of its model with THREADS = its thread count%s, "
           "and `QORUS_KERNELS=scalar` in the environment for scalar rows (unset for auto "
           "rows; `QORUS_KERNELS=avx2` for avx2 rows), whose decode runs `-n %zu`. The %d-token prompts are the longest word prefix "
           "of a fixed story that encodes to at most %d tokens, padded to exactly %d (gen_bench "
           "counts with `qorus run -n 1`).\n\n",
           have_j ? "" : " (no `-j`: this driver lacks it)", steps_scalar, PROMPT_TOKENS,
           PROMPT_TOKENS, PROMPT_TOKENS);
    for (size_t i = 0; i < n_models; i++) {
        const model *m = &models[i];
        char steps[24], psteps[24];
        snprintf(steps, sizeof steps, "%zu", steps_auto);
        snprintf(psteps, sizeof psteps, "%d", PROMPT_TOKENS + 1);
        args a = {0};
        add_run_args(&a, &o, m, steps, DECODE_PROMPT, "$THREADS", have_j, 1);
        char *dec = command_line(&a, 0);
        a.n = 0;
        add_run_args(&a, &o, m, psteps,
                     m->group == GROUP_STORIES ? "$PROMPT_STORIES" : "$PROMPT_RANDOM",
                     "$THREADS", have_j, 1);
        char *pre = command_line(&a, 0);
        printf("- %s\n  - decode: `%s`\n  - prefill: `%s`\n", m->name, dec, pre);
        if (m->gen_cmd != NULL)
            printf("  - model: `%s`\n", m->gen_cmd);
        free(dec);
        free(pre);
    }

    /* everything above lives until here; freed so that sanitizer builds report no leaks */
    for (size_t i = 0; i < n_models; i++) {
        model *m = &models[i];
        free(m->name);
        free(m->path);
        free(m->tok);
        if (m->gen_cmd != NULL) { /* a generated model: the shown paths are ours too */
            free(m->dpath);
            free(m->dtok);
            free(m->gen_cmd);
        }
    }
    for (int g = 0; g < N_GROUPS; g++)
        free(prompts[g]);
    free(rows);
    free(models_dir);
    free(cache_dir);
    free(cache_s.p);
    free(qorus_alloc);
    free(qorus_model_alloc);
    free(env_auto);
    free(env_scalar);
    free(env_avx2);
    return 0;
}
