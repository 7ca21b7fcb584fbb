/* Minimal test harness for the unit tests: CHECK keeps going and counts failures, so one
 * run reports every broken expectation; main returns non-zero if any failed. */
#ifndef QORUS_TEST_CHECK_H
#define QORUS_TEST_CHECK_H

#include <stdio.h>

static int check_failures;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            check_failures++;                                                    \
        }                                                                        \
    } while (0)

#define CHECK_EQ_ERR(got, want)                                                   \
    do {                                                                          \
        q_error_code got_ = (got), want_ = (want);                                \
        if (got_ != want_) {                                                      \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s\n", __FILE__, __LINE__, \
                    #got, q_error_name(got_), q_error_name(want_));               \
            check_failures++;                                                     \
        }                                                                         \
    } while (0)

#define RUN_TEST(fn)                                  \
    do {                                              \
        int before_ = check_failures;                 \
        fn();                                         \
        fprintf(stderr, "%s %s\n", check_failures == before_ ? "ok  " : "FAIL", #fn); \
    } while (0)

#endif
