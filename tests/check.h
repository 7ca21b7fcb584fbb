/* Minimal test harness shared by every unit test: CHECK keeps going and counts failures, so
 * one run reports every broken expectation; main returns non-zero if any failed. Exit status
 * 77 (SKIP_RETURN_CODE) tells ctest a test was skipped (e.g. no real models here). */
#ifndef QORUS_TEST_CHECK_H
#define QORUS_TEST_CHECK_H

#include <stdio.h>

#define SKIP_RETURN_CODE 77

static int check_failures;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            check_failures++;                                                    \
        }                                                                        \
    } while (0)

/* Needs qorus_core.h (q_error_name) where it is used. */
#define CHECK_EQ_ERR(got, want)                                                   \
    do {                                                                          \
        q_error_code got_ = (got), want_ = (want);                                \
        if (got_ != want_) {                                                      \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s\n", __FILE__, __LINE__, \
                    #got, q_error_name(got_), q_error_name(want_));               \
            check_failures++;                                                     \
        }                                                                         \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                             \
    do {                                                                               \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                \
        if (check_a_ != check_b_) {                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", __FILE__, \
                    __LINE__, #a, #b, check_a_, check_b_);                             \
            check_failures++;                                                          \
        }                                                                              \
    } while (0)

/* What main returns: 0 when every check passed. */
static inline int check_result(const char *name)
{
    if (check_failures != 0) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, check_failures);
        return 1;
    }
    printf("%s: ok\n", name);
    return 0;
}

#define RUN_TEST(fn)                                  \
    do {                                              \
        int before_ = check_failures;                 \
        fn();                                         \
        fprintf(stderr, "%s %s\n", check_failures == before_ ? "ok  " : "FAIL", #fn); \
    } while (0)

#endif
