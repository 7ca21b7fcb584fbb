/* Unit tests of the memory core: every error code, alignment, the exhaustion boundary,
 * sizes near SIZE_MAX, size 0, reset and base, the guard page, the KV cache, model
 * mapping on every kind of bad path, and the countdown failure hook. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef __has_feature
#define __has_feature(x) 0
#endif

#include "../check.h"
#include "qorus_core.h"
#include "qorus_testing.h"

static char tmp_dir[] = "/tmp/qorus-test-memory-XXXXXX";

static void tmp_path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmp_dir, name);
}

/* Writes `size` bytes (byte i = i * 7) to tmp_dir/name. */
static void write_file(const char *path, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    for (size_t i = 0; i < size; i++)
        fputc((int)((i * 7) & 0xff), f);
    fclose(f);
}

static int is_aligned(const void *p)
{
    return ((uintptr_t)p & (Q_ALIGN - 1)) == 0;
}

/* Resident set size in bytes, from /proc/self/statm. */
static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long total = 0, resident = 0;
    if (f == NULL)
        return 0;
    if (fscanf(f, "%lu %lu", &total, &resident) != 2)
        resident = 0;
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static void test_error_messages(void)
{
    /* Every code from Q_OK down to the last one has a name and its own message. */
    for (int i = 0; i >= (int)Q_ERR_MODEL_CHANGED; i--) {
        q_error_code code = (q_error_code)i;
        CHECK(q_strerror(code)[0] != '\0' && strcmp(q_strerror(code), "unknown error") != 0);
        CHECK(strncmp(q_error_name(code), i == 0 ? "Q_OK" : "Q_ERR_", i == 0 ? 4 : 6) == 0);
        for (int j = 0; j > i; j--)
            CHECK(strcmp(q_strerror(code), q_strerror((q_error_code)j)) != 0);
    }
    /* Released values are fixed. */
    CHECK(Q_OK == 0 && Q_ERR_INVALID_ARG == -1 && Q_ERR_INVALID_STATE == -16 && Q_ERR_IO == -22 &&
          Q_ERR_THREAD == -23 && Q_ERR_MODEL_CHANGED == -24);
    CHECK(strcmp(q_error_name(Q_ERR_TRUNCATED), "Q_ERR_TRUNCATED") == 0);
    CHECK(strcmp(q_error_name(Q_ERR_IO), "Q_ERR_IO") == 0);
    CHECK(strcmp(q_error_name(Q_ERR_THREAD), "Q_ERR_THREAD") == 0);
    CHECK(strcmp(q_strerror(Q_ERR_ARENA_OOM), "scratch arena exhausted") == 0);
    CHECK(strcmp(q_strerror((q_error_code)12345), "unknown error") == 0);
    CHECK(strcmp(q_strerror((q_error_code)1), "unknown error") == 0);
    CHECK(strcmp(q_error_name((q_error_code)(Q_ERR_MODEL_CHANGED - 1)), "Q_ERR_UNKNOWN") == 0);
    CHECK(strcmp(q_error_name((q_error_code)-999), "Q_ERR_UNKNOWN") == 0);
}

static void test_zeroed_context(void)
{
    q_context ctx = {0};
    CHECK(q_arena_alloc(&ctx, 64) == NULL);
    CHECK(q_arena_alloc(&ctx, 1) == NULL);
    CHECK(q_arena_alloc(&ctx, 0) == NULL);
    CHECK(q_arena_alloc(&ctx, SIZE_MAX) == NULL);
    CHECK(q_arena_alloc(NULL, 64) == NULL);
    CHECK(q_arena_alloc_slow(NULL, 64) == NULL);
    q_arena_reset(&ctx);
    CHECK(ctx.scratch_head == 0);
    CHECK_EQ_ERR(q_arena_set_base(&ctx), Q_ERR_INVALID_STATE);
    CHECK_EQ_ERR(q_arena_set_base(NULL), Q_ERR_INVALID_ARG);
    CHECK(q_arena_used(&ctx) == 0 && q_arena_used(NULL) == 0);
    CHECK_EQ_ERR(q_kv_cache_clear(&ctx), Q_ERR_INVALID_STATE);
    CHECK_EQ_ERR(q_kv_cache_clear(NULL), Q_ERR_INVALID_ARG);
    CHECK_EQ_ERR(q_free_kv_cache(&ctx), Q_OK);
    CHECK_EQ_ERR(q_free_arena(&ctx), Q_OK);
    CHECK_EQ_ERR(q_free_kv_cache(NULL), Q_ERR_INVALID_ARG);
    CHECK_EQ_ERR(q_free_arena(NULL), Q_ERR_INVALID_ARG);
    q_free_memory(&ctx);
    q_free_memory(&ctx);
    q_free_memory(NULL);
}

static void test_arena_errors(void)
{
    q_context ctx = {0};
    CHECK_EQ_ERR(q_alloc_arena(NULL, 4096), Q_ERR_INVALID_ARG);
    CHECK_EQ_ERR(q_alloc_arena(&ctx, 0), Q_ERR_INVALID_ARG);
    CHECK_EQ_ERR(q_alloc_arena(&ctx, SIZE_MAX), Q_ERR_OVERFLOW);
    CHECK_EQ_ERR(q_alloc_arena(&ctx, SIZE_MAX - 63), Q_ERR_OVERFLOW);
    CHECK_EQ_ERR(q_alloc_arena(&ctx, Q_MAX_REGION_BYTES + 1), Q_ERR_OVERFLOW);
    CHECK(ctx.scratch_buffer == NULL);
    CHECK_EQ_ERR(q_alloc_arena(&ctx, 1000), Q_OK);
    CHECK(ctx.scratch_size == 1024);
    CHECK(is_aligned(ctx.scratch_buffer));
    unsigned char *first = ctx.scratch_buffer;
    CHECK_EQ_ERR(q_alloc_arena(&ctx, 4096), Q_ERR_INVALID_STATE);
    CHECK(ctx.scratch_buffer == first && ctx.scratch_size == 1024);
    q_free_memory(&ctx);
    CHECK(ctx.scratch_buffer == NULL);
}

static void test_alignment_and_disjointness(void)
{
    q_context ctx = {0};
    CHECK_EQ_ERR(q_alloc_arena(&ctx, 1 << 20), Q_OK);
    unsigned char *prev_end = NULL;
    for (size_t size = 1; size <= 700; size++) {
        unsigned char *p = q_arena_alloc(&ctx, size);
        CHECK(p != NULL);
        if (p == NULL)
            break;
        CHECK(is_aligned(p));
        CHECK(prev_end == NULL || p >= prev_end);
        CHECK(p >= ctx.scratch_buffer && p + size <= ctx.scratch_buffer + ctx.scratch_size);
        memset(p, (int)(size & 0xff), size);
        prev_end = p + size;
        CHECK(ctx.scratch_head % Q_ALIGN == 0);
    }
    q_free_memory(&ctx);
}

static void test_exhaustion_boundary(void)
{
    q_context ctx = {0};
    CHECK_EQ_ERR(q_alloc_arena(&ctx, 1000), Q_OK); /* 1024 usable */

    /* Aligned sizes: fill to the last byte, then one byte more fails. */
    CHECK(q_arena_alloc(&ctx, 1024) == ctx.scratch_buffer);
    CHECK(ctx.scratch_head == 1024);
    CHECK(q_arena_alloc(&ctx, 1) == NULL);
    CHECK(q_arena_alloc(&ctx, 64) == NULL);
    CHECK(ctx.scratch_head == 1024);
    q_arena_reset(&ctx);

    /* One byte more than the arena fails and leaves the head unchanged. */
    CHECK(q_arena_alloc(&ctx, 1025) == NULL);
    CHECK(ctx.scratch_head == 0);

    /* Unaligned sizes: 960 rounds to 960, then exactly 64 remain. */
    unsigned char *a = q_arena_alloc(&ctx, 950);
    CHECK(a == ctx.scratch_buffer && ctx.scratch_head == 960);
    CHECK(q_arena_alloc(&ctx, 65) == NULL);
    CHECK(ctx.scratch_head == 960);
    unsigned char *b = q_arena_alloc(&ctx, 63);
    CHECK(b == ctx.scratch_buffer + 960);
    CHECK(ctx.scratch_head == 1024);
    memset(b, 0x5a, 63);
    CHECK(q_arena_alloc(&ctx, 1) == NULL);
    CHECK(ctx.scratch_head == 1024);
    q_free_memory(&ctx);
}

static void test_sizes_near_size_max(void)
{
    q_context ctx = {0};
    CHECK_EQ_ERR(q_alloc_arena(&ctx, 4096), Q_OK);
    CHECK(q_arena_alloc(&ctx, 128) != NULL);
    const size_t huge[] = {SIZE_MAX,      SIZE_MAX - 1,      SIZE_MAX - 62, SIZE_MAX - 63,
                           SIZE_MAX - 64, SIZE_MAX - 127,    SIZE_MAX / 2,  SIZE_MAX / 2 + 1,
                           (size_t)1 << 63, Q_MAX_REGION_BYTES, 4096 - 127, 4096};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        CHECK(q_arena_alloc(&ctx, huge[i]) == NULL);
        CHECK(q_arena_alloc_slow(&ctx, huge[i]) == NULL);
        CHECK(ctx.scratch_head == 128);
    }
    /* The remaining 3968 bytes are still there. */
    CHECK(q_arena_alloc(&ctx, 4096 - 128) != NULL);
    q_free_memory(&ctx);
}

/* Size 0: a valid aligned pointer to zero bytes, consuming nothing. */
static void test_size_zero(void)
{
    q_context ctx = {0};
    CHECK_EQ_ERR(q_alloc_arena(&ctx, 128), Q_OK);
    unsigned char *z = q_arena_alloc(&ctx, 0);
    CHECK(z == ctx.scratch_buffer && ctx.scratch_head == 0);
    unsigned char *a = q_arena_alloc(&ctx, 128);
    CHECK(a == z);
    z = q_arena_alloc(&ctx, 0);
    CHECK(z == ctx.scratch_buffer + 128 && is_aligned(z));
    CHECK(ctx.scratch_head == 128);
    q_free_memory(&ctx);
}

static void test_reset_and_base(void)
{
    q_context ctx = {0};
    CHECK_EQ_ERR(q_alloc_arena(&ctx, 8192), Q_OK);
    unsigned char *persistent = q_arena_alloc(&ctx, 100);
    CHECK(persistent != NULL);
    memset(persistent, 0x11, 100);
    CHECK_EQ_ERR(q_arena_set_base(&ctx), Q_OK);
    CHECK(ctx.scratch_base_offset == 128);

    unsigned char *first = NULL;
    for (int token = 0; token < 3; token++) {
        unsigned char *t = q_arena_alloc(&ctx, 1000);
        CHECK(t == ctx.scratch_buffer + 128);
        if (first == NULL)
            first = t;
        CHECK(t == first);
        memset(t, token, 1000);
        CHECK(q_arena_alloc(&ctx, 64) == ctx.scratch_buffer + 128 + 1024);
        CHECK(q_arena_used(&ctx) == 128 + 1024 + 64);
        q_arena_reset(&ctx);
        CHECK(ctx.scratch_head == 128);
    }
    q_arena_reset_extern(&ctx);
    CHECK(ctx.scratch_head == 128);
    for (int i = 0; i < 100; i++)
        CHECK(persistent[i] == 0x11);

    /* Setting the base again keeps more; a reset never goes below it. */
    CHECK(q_arena_alloc(&ctx, 64) != NULL);
    CHECK_EQ_ERR(q_arena_set_base(&ctx), Q_OK);
    q_arena_reset(&ctx);
    CHECK(ctx.scratch_head == 192 && ctx.scratch_base_offset == 192);
    q_free_memory(&ctx);
}

/* Writing the byte after the arena hits the guard page, in every build. */
static void test_guard_page(void)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        q_context ctx = {0};
        if (q_alloc_arena(&ctx, 1000) != Q_OK)
            _exit(3);
        volatile unsigned char *end = ctx.scratch_buffer + ctx.scratch_size;
        /* Quiet the child: ASan would print a SEGV report. */
        if (freopen("/dev/null", "w", stderr) == NULL)
            _exit(4);
        end[0] = 1;
        _exit(0); /* reached only if the guard page is missing */
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    int crashed = WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0 &&
                                          WEXITSTATUS(status) != 3 && WEXITSTATUS(status) != 4);
    CHECK(crashed);
}

static void test_kv_cache(void)
{
    q_context ctx = {0};
    CHECK_EQ_ERR(q_alloc_kv_cache(NULL, 4096), Q_ERR_INVALID_ARG);
    CHECK_EQ_ERR(q_alloc_kv_cache(&ctx, 0), Q_ERR_INVALID_ARG);
    CHECK_EQ_ERR(q_alloc_kv_cache(&ctx, SIZE_MAX), Q_ERR_OVERFLOW);
    CHECK_EQ_ERR(q_alloc_kv_cache(&ctx, Q_MAX_REGION_BYTES + 1), Q_ERR_OVERFLOW);
    CHECK(ctx.kv_buffer == NULL);

    const size_t bytes = (size_t)1 << 30; /* 1 GiB */
    size_t rss_before = rss_bytes();
    CHECK_EQ_ERR(q_alloc_kv_cache(&ctx, bytes), Q_OK);
    CHECK(ctx.kv_buffer != NULL && is_aligned(ctx.kv_buffer) && ctx.kv_size == bytes);
    const volatile unsigned char *kv = ctx.kv_buffer;
    unsigned sum = 0;
    for (size_t off = 0; off < bytes; off += bytes / 64)
        sum += kv[off];
    sum += kv[bytes - 1];
    CHECK(sum == 0);
    size_t rss_after = rss_bytes();
#if !__has_feature(memory_sanitizer)
    /* MSan's mmap interceptor writes shadow for the whole mapping: RSS is its, not ours. */
    CHECK(rss_after < rss_before + ((size_t)1 << 20));
#endif
    (void)rss_before;
    (void)rss_after;

    void *first = ctx.kv_buffer;
    CHECK_EQ_ERR(q_alloc_kv_cache(&ctx, 4096), Q_ERR_INVALID_STATE);
    CHECK(ctx.kv_buffer == first && ctx.kv_size == bytes);

    /* Written data survives until q_kv_cache_clear, which zeroes it again. */
    unsigned char *w = ctx.kv_buffer;
    memset(w + 4096, 0x7f, 4096);
    CHECK(w[4096] == 0x7f && w[8191] == 0x7f);
    CHECK_EQ_ERR(q_kv_cache_clear(&ctx), Q_OK);
    CHECK(w[4096] == 0 && w[8191] == 0);

    CHECK_EQ_ERR(q_free_kv_cache(&ctx), Q_OK);
    CHECK(ctx.kv_buffer == NULL && ctx.kv_size == 0);
    CHECK_EQ_ERR(q_alloc_kv_cache(&ctx, 100), Q_OK); /* reallocation after a free */
    CHECK(ctx.kv_size == 100 && ctx.kv_mapped_size >= 100);
    q_free_memory(&ctx);
}

static void test_init_memory_paths(void)
{
    char path[256];
    q_context ctx = {0};

    CHECK_EQ_ERR(q_init_memory_ex(NULL, "x", Q_MMAP_LAZY), Q_ERR_INVALID_ARG);
    CHECK_EQ_ERR(q_init_memory_ex(&ctx, NULL, Q_MMAP_LAZY), Q_ERR_INVALID_ARG);

    tmp_path(path, sizeof path, "missing.bin");
    CHECK_EQ_ERR(q_init_memory(&ctx, path), Q_ERR_FILE_OPEN);

    CHECK_EQ_ERR(q_init_memory(&ctx, tmp_dir), Q_ERR_NOT_REGULAR_FILE);

    tmp_path(path, sizeof path, "fifo");
    CHECK(mkfifo(path, 0600) == 0);
    CHECK_EQ_ERR(q_init_memory(&ctx, path), Q_ERR_NOT_REGULAR_FILE); /* must not block */
    CHECK_EQ_ERR(q_init_memory(&ctx, "/dev/null"), Q_ERR_NOT_REGULAR_FILE);

    tmp_path(path, sizeof path, "empty.bin");
    write_file(path, 0);
    CHECK_EQ_ERR(q_init_memory(&ctx, path), Q_ERR_FILE_TOO_SMALL);

    tmp_path(path, sizeof path, "small.bin");
    write_file(path, Q_MIN_MODEL_FILE_BYTES - 1);
    CHECK_EQ_ERR(q_init_memory(&ctx, path), Q_ERR_FILE_TOO_SMALL);
    CHECK(ctx.weights_mmap == NULL && ctx.weights_size == 0);

    tmp_path(path, sizeof path, "real.bin");
    const size_t size = 3 * 4096 + 17;
    write_file(path, size);
    CHECK_EQ_ERR(q_init_memory_ex(&ctx, path, (q_mmap_strategy)3), Q_ERR_INVALID_ARG);
    CHECK_EQ_ERR(q_init_memory_ex(&ctx, path, (q_mmap_strategy)-1), Q_ERR_INVALID_ARG);
    CHECK(ctx.weights_mmap == NULL);

    const q_mmap_strategy strategies[] = {Q_MMAP_LAZY, Q_MMAP_EAGER, Q_MMAP_READ};
    for (int s = 0; s < 3; s++) {
        CHECK_EQ_ERR(q_init_memory_ex(&ctx, path, strategies[s]), Q_OK);
        CHECK(ctx.weights_size == size && ctx.weights_mmap != NULL);
        const unsigned char *bytes = ctx.weights_mmap;
        int same = 1;
        for (size_t i = 0; i < size; i++)
            same &= bytes[i] == (unsigned char)((i * 7) & 0xff);
        CHECK(same);
        CHECK_EQ_ERR(q_init_memory_ex(&ctx, path, strategies[s]), Q_ERR_INVALID_STATE);
        q_free_memory(&ctx);
        CHECK(ctx.weights_mmap == NULL);
    }

    tmp_path(path, sizeof path, "minimum.bin");
    write_file(path, Q_MIN_MODEL_FILE_BYTES);
    CHECK_EQ_ERR(q_init_memory(&ctx, path), Q_OK);
    q_free_memory(&ctx);

    /* A file we may not read (skipped as root, which may read anything). */
    if (geteuid() != 0) {
        tmp_path(path, sizeof path, "unreadable.bin");
        write_file(path, 64);
        CHECK(chmod(path, 0) == 0);
        CHECK_EQ_ERR(q_init_memory(&ctx, path), Q_ERR_FILE_OPEN);
    }
}

/* Partly initialized contexts are freed completely, and twice. */
static void test_free_partial(void)
{
    q_context ctx = {0};
    CHECK_EQ_ERR(q_alloc_kv_cache(&ctx, 4096), Q_OK);
    q_free_memory(&ctx);
    q_free_memory(&ctx);
    CHECK(ctx.kv_buffer == NULL);

    CHECK_EQ_ERR(q_alloc_arena(&ctx, 4096), Q_OK);
    CHECK(q_arena_alloc(&ctx, 10) != NULL);
    q_free_memory(&ctx);
    CHECK(ctx.scratch_buffer == NULL && ctx.scratch_head == 0);
    CHECK(q_arena_alloc(&ctx, 10) == NULL);
    q_free_memory(&ctx);

    /* Arena freed alone, then recreated. */
    CHECK_EQ_ERR(q_alloc_arena(&ctx, 4096), Q_OK);
    CHECK_EQ_ERR(q_alloc_kv_cache(&ctx, 4096), Q_OK);
    CHECK_EQ_ERR(q_free_arena(&ctx), Q_OK);
    CHECK(ctx.kv_buffer != NULL);
    CHECK_EQ_ERR(q_alloc_arena(&ctx, 200), Q_OK);
    CHECK(q_arena_alloc(&ctx, 256) != NULL);
    q_free_memory(&ctx);
}

/* SQLite-style countdown: fail the 1st, 2nd, ... OS call of a full set-up until it
 * succeeds. Every failure must return a clean error and leak nothing (LeakSanitizer). */
static void test_failure_countdown(void)
{
    char path[256];
    tmp_path(path, sizeof path, "countdown.bin");
    write_file(path, 8192);

    unsigned long n;
    int succeeded = 0;
    for (n = 1; n < 100 && !succeeded; n++) {
        q_context ctx = {0};
        q_test_fail_nth_os_call(n);
        q_error_code err = q_init_memory_ex(&ctx, path, Q_MMAP_EAGER);
        if (err == Q_OK)
            err = q_alloc_kv_cache(&ctx, 1 << 20);
        if (err == Q_OK)
            err = q_alloc_arena(&ctx, 1 << 16);
        if (err == Q_OK) {
            succeeded = 1;
            CHECK(!q_test_failure_fired());
            CHECK(q_arena_alloc(&ctx, 64) != NULL);
        } else {
            CHECK(q_test_failure_fired());
            CHECK(err == Q_ERR_FILE_OPEN || err == Q_ERR_MMAP || err == Q_ERR_ALLOC);
        }
        q_free_memory(&ctx);
    }
    q_test_fail_nth_os_call(0);
    CHECK(succeeded);
    /* open, mmap (model), mmap (KV), mmap + mprotect (arena): success at the 6th. */
    CHECK(n - 1 == 6);

    /* Each failure point maps to its documented error and leaves the context empty. */
    q_context ctx = {0};
    q_test_fail_nth_os_call(1);
    CHECK_EQ_ERR(q_init_memory(&ctx, path), Q_ERR_FILE_OPEN);
    q_test_fail_nth_os_call(2);
    CHECK_EQ_ERR(q_init_memory(&ctx, path), Q_ERR_MMAP);
    CHECK(ctx.weights_mmap == NULL);
    q_test_fail_nth_os_call(1);
    CHECK_EQ_ERR(q_alloc_kv_cache(&ctx, 4096), Q_ERR_ALLOC);
    CHECK(ctx.kv_buffer == NULL);
    q_test_fail_nth_os_call(2);
    CHECK_EQ_ERR(q_alloc_arena(&ctx, 4096), Q_ERR_ALLOC); /* mprotect of the guard page */
    CHECK(ctx.scratch_buffer == NULL);
    q_test_fail_nth_os_call(0);
    CHECK_EQ_ERR(q_alloc_arena(&ctx, 4096), Q_OK);
    CHECK(q_test_os_call_count() == 2);
    q_free_memory(&ctx);
}

static void remove_tmp_dir(void)
{
    const char *names[] = {"fifo",        "empty.bin",      "small.bin",     "real.bin",
                           "minimum.bin", "unreadable.bin", "countdown.bin", NULL};
    char path[256];
    for (int i = 0; names[i] != NULL; i++) {
        tmp_path(path, sizeof path, names[i]);
        unlink(path);
    }
    rmdir(tmp_dir);
}

int main(void)
{
    if (mkdtemp(tmp_dir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    RUN_TEST(test_error_messages);
    RUN_TEST(test_zeroed_context);
    RUN_TEST(test_arena_errors);
    RUN_TEST(test_alignment_and_disjointness);
    RUN_TEST(test_exhaustion_boundary);
    RUN_TEST(test_sizes_near_size_max);
    RUN_TEST(test_size_zero);
    RUN_TEST(test_reset_and_base);
    RUN_TEST(test_guard_page);
    RUN_TEST(test_kv_cache);
    RUN_TEST(test_init_memory_paths);
    RUN_TEST(test_free_partial);
    RUN_TEST(test_failure_countdown);
    remove_tmp_dir();
    if (check_failures != 0) {
        fprintf(stderr, "%d check(s) failed\n", check_failures);
        return 1;
    }
    return 0;
}
