/* Always-on assertions for the inference tests: report file:line and the condition, count
 * failures, and let main() return non-zero. Exit status 77 means "skipped" to ctest. */
#ifndef CHECK_INFER_H
#define CHECK_INFER_H

#include <stdio.h>

#define SKIP_RETURN_CODE 77

static int check_failures;

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            check_failures++;                                                       \
        }                                                                           \
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

static inline int check_result(const char *name)
{
    if (check_failures != 0) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, check_failures);
        return 1;
    }
    printf("%s: ok\n", name);
    return 0;
}

#endif
