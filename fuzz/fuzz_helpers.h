/*
 * Shared helpers of the qorus fuzz targets.
 *
 *   FUZZ_ASSERT(cond)            always on (release builds too): prints file:line and the
 *                                condition, then aborts, so every engine and the replay
 *                                main see a crash.
 *   FUZZ_ASSERT_MSG(cond, ...)   the same with a printf-style explanation.
 *   fuzz_producer                draws parameters from the TAIL of the input, leaving the
 *                                head as payload (a model file, a token stream...). Once the
 *                                input is exhausted every draw returns the range minimum, so
 *                                a target never reads past the input.
 *   fuzz_asan_*                  poison-state queries that compile to "nothing to check"
 *                                outside AddressSanitizer builds.
 *
 * Targets are single-threaded and stateless between inputs: all state lives in locals.
 */
#ifndef QORUS_FUZZ_HELPERS_H
#define QORUS_FUZZ_HELPERS_H

#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUZZ_HAVE_ASAN 1
#endif
#if __has_feature(memory_sanitizer)
#define FUZZ_HAVE_MSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(FUZZ_HAVE_ASAN)
#define FUZZ_HAVE_ASAN 1
#endif

/* The library's arena annotations exist only when it was built instrumented
 * (Q_ARENA_INSTRUMENTED in qorus_config.h): an ASan build of the targets over a plain
 * library (e.g. an OSS-Fuzz build without QORUS_SANITIZER) checks no poison state. */
#include "qorus_config.h"
#if defined(FUZZ_HAVE_ASAN) && Q_ARENA_INSTRUMENTED
#define FUZZ_CHECK_POISON 1
#endif
#if defined(FUZZ_HAVE_MSAN) && Q_ARENA_INSTRUMENTED
#define FUZZ_CHECK_MSAN_ARENA 1
#endif

#ifdef FUZZ_HAVE_ASAN
#include <sanitizer/asan_interface.h>
#endif
#ifdef FUZZ_HAVE_MSAN
#include <sanitizer/msan_interface.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The entry point every target defines (libFuzzer's signature). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                                  \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: FUZZ_ASSERT failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

#define FUZZ_ASSERT_MSG(cond, ...)                                                         \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: FUZZ_ASSERT failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* ---- data producer: parameters from the tail ---- */

typedef struct fuzz_producer {
    const uint8_t *data;
    size_t size; /* bytes not yet consumed; the payload is data[0 .. size) */
} fuzz_producer;

static inline fuzz_producer fuzz_producer_make(const uint8_t *data, size_t size)
{
    fuzz_producer p = {data, size};
    return p;
}

static inline size_t fuzz_producer_remaining(const fuzz_producer *p)
{
    return p->size;
}

/* Takes up to `n` (<= 8) bytes from the tail, little-endian from the end backwards. */
static inline uint64_t fuzz_producer_bits(fuzz_producer *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n && p->size > 0; i++) {
        p->size--;
        v |= (uint64_t)p->data[p->size] << (8 * i);
    }
    return v;
}

/* A value in [min, max] (inclusive), using as few tail bytes as the range needs. */
static inline uint64_t fuzz_producer_range(fuzz_producer *p, uint64_t min, uint64_t max)
{
    if (max <= min)
        return min;
    uint64_t span = max - min;
    unsigned bytes = 0;
    for (uint64_t s = span; s != 0; s >>= 8)
        bytes++;
    uint64_t v = fuzz_producer_bits(p, bytes);
    if (span == UINT64_MAX)
        return v;
    return min + v % (span + 1);
}

static inline uint32_t fuzz_producer_u32(fuzz_producer *p, uint32_t min, uint32_t max)
{
    return (uint32_t)fuzz_producer_range(p, min, max);
}

static inline size_t fuzz_producer_size(fuzz_producer *p, size_t min, size_t max)
{
    return (size_t)fuzz_producer_range(p, min, max);
}

static inline int fuzz_producer_bool(fuzz_producer *p)
{
    return (int)(fuzz_producer_bits(p, 1) & 1);
}

/* Takes the whole remaining head as payload; the producer is empty afterwards. */
static inline const uint8_t *fuzz_producer_payload(fuzz_producer *p, size_t *len)
{
    *len = p->size;
    p->size = 0;
    return p->data;
}

/* ---- sanitizer queries ---- */

/* 1 if the ASan shadow says every byte of [p, p+n) is addressable (always 1 without
 * FUZZ_CHECK_POISON). */
static inline int fuzz_asan_all_addressable(const void *p, size_t n)
{
#ifdef FUZZ_CHECK_POISON
    return n == 0 || __asan_region_is_poisoned((void *)(uintptr_t)p, n) == NULL;
#else
    (void)p;
    (void)n;
    return 1;
#endif
}

/* 1 if every byte of [p, p+n) is poisoned (always 1 without FUZZ_CHECK_POISON). Exact: ASan shadow
 * granules (8 bytes) are addressable as a prefix, so checking each byte up to the next
 * granule start and then the first byte of each granule sees every byte. */
static inline int fuzz_asan_all_poisoned(const void *p, size_t n)
{
#ifdef FUZZ_CHECK_POISON
    const unsigned char *b = p;
    size_t i = 0;
    while (i < n && ((uintptr_t)(b + i) & 7u) != 0) {
        if (!__asan_address_is_poisoned(b + i))
            return 0;
        i++;
    }
    for (; i < n; i += 8)
        if (!__asan_address_is_poisoned(b + i))
            return 0;
    return 1;
#else
    (void)p;
    (void)n;
    return 1;
#endif
}

static inline int fuzz_have_asan(void)
{
#ifdef FUZZ_HAVE_ASAN
    return 1;
#else
    return 0;
#endif
}

/* Reads every byte of a buffer into a sink, so MSan reports uninitialized bytes here
 * (branching on each value makes the read observable). */
static inline void fuzz_touch_bytes(const void *p, size_t n)
{
    const unsigned char *b = p;
    volatile unsigned sink = 0;
    for (size_t i = 0; i < n; i++)
        if (b[i] == 0x5a)
            sink++;
    (void)sink;
}

/* Writes the input to a per-process temporary file, returns its path (or NULL if the file
 * system refuses: the file-path check is then skipped). */
static inline const char *fuzz_temp_file(const uint8_t *data, size_t size)
{
    static char path[64];
    if (path[0] == '\0') {
        const char *dir = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/qorus-fuzz-%ld", dir && strlen(dir) < 32 ? dir : "/tmp",
                 (long)getpid());
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return NULL;
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w <= 0) {
            close(fd);
            return NULL;
        }
        done += (size_t)w;
    }
    close(fd);
    return path;
}

static inline void fuzz_remove_temp_file(const char *path)
{
    if (path != NULL)
        (void)unlink(path);
}

#ifdef __cplusplus
}
#endif

#endif
