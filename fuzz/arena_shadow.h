/*
 * Shadow model of the scratch arena, shared by fuzz_arena_alloc and fuzz_arena_reset.
 *
 * The shadow knows what the core promises (qorus_core.h): the arena holds
 * round_up(requested, Q_ALIGN) bytes, the head advances by round_up(size, Q_ALIGN) on
 * success and not at all on failure, a request fails exactly when its rounded size
 * overflows or exceeds size - head, size 0 succeeds without consuming anything, reset
 * rewinds to the base. It records every live block with a fill tag; blocks are verified
 * before they die (reset) and the checks below run after every step.
 *
 * Differential check, fast path against slow path: every arena operation a target makes on
 * its context goes through q_arena_alloc / q_arena_reset (with Q_ARENA_INSTRUMENTED = 0,
 * e.g. the fuzz-fast and afl-fast presets, these are the inline bump pointer and the bare
 * store of qorus_core.h) and is repeated on `twin`, a second context with an arena of the
 * same size that is driven only through the library's out-of-line entry points
 * (q_arena_alloc_slow, q_arena_reset_instrumented, the reference). Both must give the same
 * offsets (pointer - buffer), the same NULLs, and the same size, head and base after every
 * operation. In instrumented builds both sides run the slow path and the check still holds.
 * The twin owns an arena mapping: shadow_forget() releases it.
 */
#ifndef QORUS_FUZZ_ARENA_SHADOW_H
#define QORUS_FUZZ_ARENA_SHADOW_H

#include <errno.h>
#include <unistd.h>

#include "fuzz_helpers.h"
#include "qorus_core.h"

#define SHADOW_MAX_BLOCKS 256
#define SHADOW_FILL_EDGE 4096      /* large blocks: fill/verify this much at each end */
#define SHADOW_POISON_WINDOW 512   /* bytes past the head checked after every step */

typedef struct shadow_block {
    size_t off;     /* offset in the arena */
    size_t size;    /* requested bytes (> 0) */
    uint8_t tag;    /* fill byte */
} shadow_block;

typedef struct arena_shadow {
    int exists;
    size_t size, head, base;
    shadow_block blocks[SHADOW_MAX_BLOCKS];
    size_t n_blocks;
    unsigned tag_counter;
    q_context twin; /* the same operations through the out-of-line slow path */
} arena_shadow;

static inline size_t shadow_round(size_t n, int *ok)
{
    if (n > SIZE_MAX - (Q_ALIGN - 1)) {
        *ok = 0;
        return 0;
    }
    *ok = 1;
    return (n + (Q_ALIGN - 1)) & ~(size_t)(Q_ALIGN - 1);
}

/* Fills (or checks) a block: whole when small, both ends when large. */
static inline void shadow_fill(unsigned char *p, size_t n, uint8_t tag)
{
    if (n <= 2 * SHADOW_FILL_EDGE) {
        memset(p, tag, n);
    } else {
        memset(p, tag, SHADOW_FILL_EDGE);
        memset(p + n - SHADOW_FILL_EDGE, tag, SHADOW_FILL_EDGE);
    }
}

static inline int shadow_range_is(const unsigned char *p, size_t n, uint8_t tag)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != tag)
            return 0;
    return 1;
}

static inline void shadow_verify_block(const q_context *ctx, const shadow_block *b)
{
    const unsigned char *p = ctx->scratch_buffer + b->off;
    int ok;
    if (b->size <= 2 * SHADOW_FILL_EDGE)
        ok = shadow_range_is(p, b->size, b->tag);
    else
        ok = shadow_range_is(p, SHADOW_FILL_EDGE, b->tag) &&
             shadow_range_is(p + b->size - SHADOW_FILL_EDGE, SHADOW_FILL_EDGE, b->tag);
    FUZZ_ASSERT_MSG(ok, "block at offset %zu (%zu bytes, tag 0x%02x) was overwritten",
                    b->off, b->size, b->tag);
}

static inline void shadow_verify_all(const q_context *ctx, const arena_shadow *s)
{
    for (size_t i = 0; i < s->n_blocks; i++)
        shadow_verify_block(ctx, &s->blocks[i]);
}

/* The twin's arena fields against the context's: the slow path and the fast path agree. */
static inline void shadow_check_twin(const q_context *ctx, const arena_shadow *s)
{
    const q_context *t = &s->twin;
    FUZZ_ASSERT_MSG((t->scratch_buffer != NULL) == (ctx->scratch_buffer != NULL),
                    "arena exists: %d (fast path context), %d (slow path twin)",
                    ctx->scratch_buffer != NULL, t->scratch_buffer != NULL);
    FUZZ_ASSERT_MSG(t->scratch_size == ctx->scratch_size, "size %zu (fast), %zu (slow)",
                    ctx->scratch_size, t->scratch_size);
    FUZZ_ASSERT_MSG(t->scratch_head == ctx->scratch_head, "head %zu (fast), %zu (slow)",
                    ctx->scratch_head, t->scratch_head);
    FUZZ_ASSERT_MSG(t->scratch_base_offset == ctx->scratch_base_offset,
                    "base %zu (fast), %zu (slow)", ctx->scratch_base_offset,
                    t->scratch_base_offset);
}

/* The context's arena fields against the shadow, and the invariants of qorus_core.h. */
static inline void shadow_check_ctx(const q_context *ctx, const arena_shadow *s)
{
    shadow_check_twin(ctx, s);
    if (!s->exists) {
        FUZZ_ASSERT(ctx->scratch_buffer == NULL);
        FUZZ_ASSERT(ctx->scratch_size == 0 && ctx->scratch_head == 0);
        FUZZ_ASSERT(ctx->scratch_base_offset == 0 && ctx->scratch_mapped_size == 0);
        FUZZ_ASSERT(q_arena_used(ctx) == 0);
        return;
    }
    FUZZ_ASSERT(ctx->scratch_buffer != NULL);
    FUZZ_ASSERT(((uintptr_t)ctx->scratch_buffer & (Q_ALIGN - 1)) == 0);
    FUZZ_ASSERT_MSG(ctx->scratch_size == s->size, "size %zu, shadow %zu", ctx->scratch_size,
                    s->size);
    FUZZ_ASSERT_MSG(ctx->scratch_head == s->head, "head %zu, shadow %zu", ctx->scratch_head,
                    s->head);
    FUZZ_ASSERT_MSG(ctx->scratch_base_offset == s->base, "base %zu, shadow %zu",
                    ctx->scratch_base_offset, s->base);
    FUZZ_ASSERT(ctx->scratch_size % Q_ALIGN == 0);
    FUZZ_ASSERT(ctx->scratch_head % Q_ALIGN == 0 && ctx->scratch_base_offset % Q_ALIGN == 0);
    FUZZ_ASSERT(ctx->scratch_base_offset <= ctx->scratch_head);
    FUZZ_ASSERT(ctx->scratch_head <= ctx->scratch_size);
    FUZZ_ASSERT(ctx->scratch_mapped_size > ctx->scratch_size);
    FUZZ_ASSERT(q_arena_used(ctx) == s->head);
    /* The guard page starts exactly at the arena's end. */
    long page = sysconf(_SC_PAGESIZE);
    FUZZ_ASSERT(page > 0);
    FUZZ_ASSERT(((uintptr_t)(ctx->scratch_buffer + ctx->scratch_size) & ((uintptr_t)page - 1)) == 0);
    /* Everything at or above the head is poisoned (ASan); a window is checked each step. */
    size_t free_bytes = s->size - s->head;
    size_t window = free_bytes < SHADOW_POISON_WINDOW ? free_bytes : SHADOW_POISON_WINDOW;
    FUZZ_ASSERT(fuzz_asan_all_poisoned(ctx->scratch_buffer + s->head, window));
    if (free_bytes > window)
        FUZZ_ASSERT(fuzz_asan_all_poisoned(ctx->scratch_buffer + s->size - 64, 64));
}

/* The whole free part poisoned (ASan): once per input, it costs O(size / 8). */
static inline void shadow_check_free_poisoned(const q_context *ctx, const arena_shadow *s)
{
    if (s->exists)
        FUZZ_ASSERT(fuzz_asan_all_poisoned(ctx->scratch_buffer + s->head, s->size - s->head));
}

/* Probes that the page after the arena is inaccessible without faulting: the kernel
 * answers EFAULT when write(2) reads from a PROT_NONE page. */
static inline void shadow_check_guard_page(const q_context *ctx)
{
    int fds[2];
    if (pipe(fds) != 0)
        return; /* no descriptors left: nothing to conclude */
    ssize_t w = write(fds[1], ctx->scratch_buffer + ctx->scratch_size, 1);
    int err = errno;
    close(fds[0]);
    close(fds[1]);
    FUZZ_ASSERT_MSG(w < 0 && err == EFAULT, "the page after the arena is accessible");
}

/* The twin gets an arena of `bytes` too, after the context's q_alloc_arena returned `rc`
 * without an injected failure (callers turn injection off first): the same answer. */
static inline void shadow_twin_alloc_arena(arena_shadow *s, size_t bytes, q_error_code rc)
{
    q_error_code twin_rc = q_alloc_arena(&s->twin, bytes);
    FUZZ_ASSERT_MSG(twin_rc == rc, "q_alloc_arena(%zu): %d, twin %d", bytes, (int)rc,
                    (int)twin_rc);
}

/* q_arena_set_base on the twin, after the context's returned `rc`. */
static inline void shadow_twin_set_base(arena_shadow *s, q_error_code rc)
{
    FUZZ_ASSERT(q_arena_set_base(&s->twin) == rc);
}

/* Forgets every block and the arena (the context's was released): releases the twin's. */
static inline void shadow_forget(arena_shadow *s)
{
    q_free_memory(&s->twin);
    memset(s, 0, sizeof *s);
}

/* One q_arena_alloc checked against the shadow and against q_arena_alloc_slow on the
 * twin. Returns the pointer. */
static inline void *shadow_alloc(q_context *ctx, arena_shadow *s, size_t size)
{
    void *p = q_arena_alloc(ctx, size);
    void *slow = q_arena_alloc_slow(&s->twin, size);
    FUZZ_ASSERT_MSG((p == NULL) == (slow == NULL), "%zu bytes: %s (fast path), %s (slow path)",
                    size, p ? "a pointer" : "NULL", slow ? "a pointer" : "NULL");
    if (p != NULL)
        FUZZ_ASSERT_MSG((size_t)((unsigned char *)p - ctx->scratch_buffer) ==
                            (size_t)((unsigned char *)slow - s->twin.scratch_buffer),
                        "%zu bytes: offset %zu (fast path), %zu (slow path)", size,
                        (size_t)((unsigned char *)p - ctx->scratch_buffer),
                        (size_t)((unsigned char *)slow - s->twin.scratch_buffer));
    if (!s->exists) {
        FUZZ_ASSERT_MSG(p == NULL, "allocation of %zu without an arena", size);
        shadow_check_ctx(ctx, s);
        return NULL;
    }
    int ok;
    size_t rounded = shadow_round(size, &ok);
    int fits = ok && rounded <= s->size - s->head;
    if (!fits) {
        FUZZ_ASSERT_MSG(p == NULL, "%zu bytes do not fit (head %zu of %zu) but got a pointer",
                        size, s->head, s->size);
        shadow_check_ctx(ctx, s); /* head unchanged */
        return NULL;
    }
    FUZZ_ASSERT_MSG(p != NULL, "%zu bytes fit (head %zu of %zu) but got NULL", size, s->head,
                    s->size);
    unsigned char *b = p;
    FUZZ_ASSERT(((uintptr_t)b & (Q_ALIGN - 1)) == 0);
    FUZZ_ASSERT(b >= ctx->scratch_buffer && b <= ctx->scratch_buffer + s->size);
    FUZZ_ASSERT((size_t)(b - ctx->scratch_buffer) == s->head); /* a bump: the old head */
    FUZZ_ASSERT(size <= (size_t)(ctx->scratch_buffer + s->size - b));
    size_t off = s->head;
    s->head += rounded;
    if (size > 0) {
        /* Disjoint from every live block (the bump property makes this cheap, but check
         * what the contract says, not how it is implemented). */
        for (size_t i = 0; i < s->n_blocks; i++) {
            const shadow_block *o = &s->blocks[i];
            FUZZ_ASSERT_MSG(off + size <= o->off || o->off + o->size <= off,
                            "block [%zu,+%zu) overlaps live block [%zu,+%zu)", off, size,
                            o->off, o->size);
        }
        FUZZ_ASSERT_MSG(fuzz_asan_all_addressable(b, size), "requested bytes poisoned");
        FUZZ_ASSERT_MSG(fuzz_asan_all_poisoned(b + size, rounded - size),
                        "padding after %zu bytes addressable", size);
#ifdef FUZZ_CHECK_MSAN_ARENA
        /* Fresh arena bytes are uninitialized under MSan. */
        FUZZ_ASSERT(__msan_test_shadow(b, size) == 0);
#endif
        uint8_t tag = (uint8_t)(0x11 + 37u * (s->tag_counter++));
        shadow_fill(b, size, tag);
        if (s->n_blocks < SHADOW_MAX_BLOCKS) {
            shadow_block nb = {off, size, tag};
            s->blocks[s->n_blocks++] = nb;
        }
    }
    shadow_check_ctx(ctx, s);
    return p;
}

/* A reset (q_arena_reset or q_arena_reset_extern) checked: blocks verified first,
 * surviving ones (below the base) again. */
static inline void shadow_reset_with(q_context *ctx, arena_shadow *s, void (*reset)(q_context *))
{
    shadow_verify_all(ctx, s);
    size_t old_head = s->head;
    if (reset != NULL)
        reset(ctx);
    else
        q_arena_reset(ctx);
    q_arena_reset_instrumented(&s->twin);
    if (!s->exists) {
        shadow_check_ctx(ctx, s);
        return;
    }
    s->head = s->base;
    size_t kept = 0;
    for (size_t i = 0; i < s->n_blocks; i++)
        if (s->blocks[i].off < s->base)
            s->blocks[kept++] = s->blocks[i];
    s->n_blocks = kept;
    shadow_verify_all(ctx, s);
    shadow_check_ctx(ctx, s);
    /* The released range is poisoned again (a bounded prefix of it). */
    size_t released = old_head - s->base;
    size_t check = released < 4096 ? released : 4096;
    FUZZ_ASSERT_MSG(fuzz_asan_all_poisoned(ctx->scratch_buffer + s->base, check),
                    "released bytes still addressable after reset");
}

static inline void shadow_reset(q_context *ctx, arena_shadow *s)
{
    shadow_reset_with(ctx, s, NULL);
}

#endif
