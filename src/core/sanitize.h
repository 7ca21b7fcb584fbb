/*
 * One small macro set over AddressSanitizer, MemorySanitizer and Valgrind memcheck (after
 * Mozilla's MemoryChecking.h), so the arena code reads the same in every build:
 *
 *   Q_MEM_NOACCESS(p, n)   p..p+n must not be touched (ASan poison, Valgrind NOACCESS)
 *   Q_MEM_UNDEFINED(p, n)  p..p+n is addressable but uninitialized (ASan unpoison, MSan
 *                          poison, Valgrind UNDEFINED)
 *   Q_MEM_FORGET(p, n)     p..p+n is about to be unmapped: clear the sanitizer's shadow so
 *                          a later mapping at the same address starts clean
 *   Q_MEM_WRITTEN(p, n)    p..p+n was written by a library built without MSan (PCRE2): MSan
 *                          did not see the stores, so mark the bytes initialized
 *
 * In a release build without sanitizers every macro expands to nothing.
 */
#ifndef QORUS_SANITIZE_H
#define QORUS_SANITIZE_H

#include <stddef.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define Q_HAVE_ASAN 1
#endif
#if __has_feature(memory_sanitizer)
#define Q_HAVE_MSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(Q_HAVE_ASAN)
#define Q_HAVE_ASAN 1
#endif

#if defined(Q_HAVE_ASAN)
#include <sanitizer/asan_interface.h>
#define Q_MEM_NOACCESS(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define Q_MEM_UNDEFINED(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#define Q_MEM_FORGET(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#elif defined(Q_HAVE_MSAN)
#include <sanitizer/msan_interface.h>
#define Q_MEM_NOACCESS(p, n) __msan_poison((p), (n))
#define Q_MEM_UNDEFINED(p, n) __msan_allocated_memory((p), (n))
#define Q_MEM_FORGET(p, n) __msan_unpoison((p), (n))
#define Q_MEM_WRITTEN(p, n) __msan_unpoison((p), (n))
#elif defined(Q_VALGRIND)
#include <valgrind/memcheck.h>
#define Q_MEM_NOACCESS(p, n) ((void)VALGRIND_MAKE_MEM_NOACCESS((p), (n)))
#define Q_MEM_UNDEFINED(p, n) ((void)VALGRIND_MAKE_MEM_UNDEFINED((p), (n)))
#define Q_MEM_FORGET(p, n) ((void)(p), (void)(n)) /* memcheck tracks munmap itself */
#else
#define Q_MEM_NOACCESS(p, n) ((void)(p), (void)(n))
#define Q_MEM_UNDEFINED(p, n) ((void)(p), (void)(n))
#define Q_MEM_FORGET(p, n) ((void)(p), (void)(n))
#endif
#ifndef Q_MEM_WRITTEN
#define Q_MEM_WRITTEN(p, n) ((void)(p), (void)(n))
#endif

#endif
