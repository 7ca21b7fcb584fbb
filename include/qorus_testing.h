/*
 * Test-only hooks of the memory core. Not for production code: the state is global and not
 * thread-safe. Used by the unit tests and the fuzz targets to drive out-of-memory paths
 * reproducibly (SQLite's countdown, libxml2's injected failure position).
 */
#ifndef QORUS_TESTING_H
#define QORUS_TESTING_H

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Makes the `n`-th OS allocation/mapping call from now fail (1 = the next one), counting
 * open, mmap, mprotect, the library's heap allocations and thread creations. Only that one call fails; later
 * calls succeed. `n == 0` disables injection.
 */
void q_test_fail_nth_os_call(unsigned long n);

/** Number of OS allocation/mapping/thread-creation calls made since the last q_test_fail_nth_os_call. */
unsigned long q_test_os_call_count(void);

/** 1 if an injected failure has been delivered since the last q_test_fail_nth_os_call. */
int q_test_failure_fired(void);

/** 1 while the core's SIGBUS handler is installed (a guarded model mapping exists). */
int q_guard_handler_installed(void);

#ifdef __cplusplus
}
#endif

#endif
