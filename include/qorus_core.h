/*
 * qorus memory core: the model mapping, the KV cache and the per-token scratch arena.
 *
 * One q_context holds the three regions of one inference. A zero-initialized context
 * (`q_context ctx = {0};`) is a valid empty context for every function here. A context is
 * not thread-safe: use one per thread of generation. While a q_state (qorus_infer.h) uses a
 * context, its KV cache and arena belong to the state: release them with q_state_free, not
 * with q_free_kv_cache / q_free_arena / q_free_memory (the state keeps pointers into them).
 *
 * Errors are checked in the order the doc comments list them: when several arguments are
 * wrong, the first listed error is returned.
 *
 * Every pointer the core returns is aligned to Q_ALIGN (64) bytes. The library never calls
 * exit/abort and never prints: every failure is a q_error_code (or NULL from
 * q_arena_alloc), with a message from q_strerror().
 */
#ifndef QORUS_CORE_H
#define QORUS_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "qorus_config.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Alignment of every pointer the core returns, and granule of the scratch arena. */
#define Q_ALIGN 64

/** Smallest file q_init_memory_ex accepts: the smallest valid model header (GGUF's 24 bytes:
 *  magic, version, tensor count, metadata count). */
#define Q_MIN_MODEL_FILE_BYTES 24

/** Largest KV cache or arena the core will map (1 TiB): anything larger is an error, not an
 *  attempt. On 32-bit targets the limit is half the address space. */
#if SIZE_MAX > 0xffffffffu
#define Q_MAX_REGION_BYTES ((size_t)1 << 40)
#else
#define Q_MAX_REGION_BYTES (SIZE_MAX / 2)
#endif

/** Error codes. Q_OK is 0, every error is negative; the values are fixed once released. */
typedef enum q_error_code {
    Q_OK = 0,
    Q_ERR_INVALID_ARG = -1,          /**< NULL pointer, unknown enum value, zero size */
    Q_ERR_FILE_OPEN = -2,            /**< open() failed (missing file, permissions) */
    Q_ERR_FILE_STAT = -3,            /**< fstat() failed */
    Q_ERR_NOT_REGULAR_FILE = -4,     /**< directory, FIFO, device... */
    Q_ERR_FILE_TOO_SMALL = -5,       /**< smaller than Q_MIN_MODEL_FILE_BYTES */
    Q_ERR_MMAP = -6,                 /**< mmap() of the model file failed */
    Q_ERR_ALLOC = -7,                /**< the OS refused memory (mmap/malloc) */
    Q_ERR_ARENA_OOM = -8,            /**< the scratch arena cannot hold a request */
    Q_ERR_OVERFLOW = -9,             /**< a size computation overflowed or is absurd */
    Q_ERR_BAD_MAGIC = -10,           /**< not a model/tokenizer file of a known format */
    Q_ERR_UNSUPPORTED_VERSION = -11, /**< known format, unknown version */
    Q_ERR_INVALID_CONFIG = -12,      /**< a hyperparameter outside its Q_MAX_* range or inconsistent */
    Q_ERR_TRUNCATED = -13,           /**< the file ends before the data it announces */
    Q_ERR_VOCAB_MISMATCH = -14,      /**< tokenizer and model disagree on the vocabulary */
    Q_ERR_UNSUPPORTED_TYPE = -15,    /**< a tensor or metadata type this build cannot use */
    Q_ERR_INVALID_STATE = -16,       /**< e.g. allocating the KV cache twice */
    Q_ERR_BAD_ALIGNMENT = -17,       /**< an offset or alignment field the format forbids */
    Q_ERR_DUPLICATE = -18,           /**< a metadata key or tensor name appears twice */
    Q_ERR_MISSING = -19,             /**< a required key or tensor is absent */
    Q_ERR_BAD_SHAPE = -20,           /**< tensor dimensions wrong for the config, or zero */
    Q_ERR_BAD_TOKEN = -21,           /**< a token piece or id the tokenizer cannot accept */
    Q_ERR_IO = -22,                  /**< reading or writing a file failed; an output callback
                                          asked q_generate to stop */
    Q_ERR_THREAD = -23,              /**< the OS refused to create a thread */
    Q_ERR_MODEL_CHANGED = -24,       /**< the model file was truncated or replaced while in use
                                          (a mapped page lost its file bytes), or shrank while
                                          being read (Q_MMAP_READ) */
} q_error_code;

/** How q_init_memory_ex maps the model file. */
typedef enum q_mmap_strategy {
    Q_MMAP_LAZY = 0,  /**< map, hint the kernel to read ahead asynchronously (MADV_WILLNEED) */
    Q_MMAP_EAGER = 1, /**< map and pre-fault every page now (MAP_POPULATE on Linux) */
    Q_MMAP_READ = 2,  /**< no file mapping: read the file with pread into an anonymous
                           mapping made read-only afterwards ("--no-mmap"); later changes
                           to the file cannot reach the run */
} q_mmap_strategy;

/**
 * One inference context. A plain struct so the arena fast path can be inlined; treat the
 * fields as read-only outside the library.
 *
 * Arena invariants (kept by every function): scratch_size is a multiple of Q_ALIGN;
 * scratch_base_offset <= scratch_head <= scratch_size and both are multiples of Q_ALIGN;
 * scratch_buffer == NULL implies scratch_size == 0.
 */
typedef struct q_context {
    /* model file, mapped PROT_READ / MAP_PRIVATE */
    const void *weights_mmap;
    size_t weights_size;
    /* KV cache: its own anonymous mapping, zero until written */
    void *kv_buffer;
    size_t kv_size;          /* bytes usable, as requested */
    size_t kv_mapped_size;   /* bytes mapped (page-rounded) */
    /* scratch arena: its own mapping followed by one PROT_NONE guard page */
    unsigned char *scratch_buffer;
    size_t scratch_size;        /* usable bytes, a multiple of Q_ALIGN */
    size_t scratch_head;        /* offset of the next allocation */
    size_t scratch_base_offset; /* where q_arena_reset rewinds to */
    size_t scratch_mapped_size; /* bytes mapped, guard page included */
} q_context;

/** Returns a static, human-readable message for `code` (never NULL; unknown codes get a
 *  generic message). */
const char *q_strerror(q_error_code code);

/** Returns the symbolic name of `code` ("Q_ERR_TRUNCATED"), or "Q_ERR_UNKNOWN". */
const char *q_error_name(q_error_code code);

/**
 * Maps the model file at `path` read-only with the lazy strategy.
 * Same as q_init_memory_ex(ctx, path, Q_MMAP_LAZY); same errors.
 */
q_error_code q_init_memory(q_context *ctx, const char *path);

/**
 * Maps the model file at `path` into ctx->weights_mmap / ctx->weights_size
 * (PROT_READ, MAP_PRIVATE), or with Q_MMAP_READ reads it into an anonymous mapping
 * (PROT_READ once filled). With Q_MMAP_READ the file descriptor is closed before
 * returning; a guarded file mapping keeps it open (O_CLOEXEC) until q_free_memory, to
 * notice changes of the file's size or mtime.
 *
 * File mappings (lazy, eager) are guarded: if the file is truncated while mapped, a read
 * of a page that lost its bytes does not kill the process with SIGBUS; the core's handler
 * (installed with the first guarded mapping, removed with the last) maps zero pages over
 * the rest of the mapping and marks it damaged, and q_mapping_status() then returns
 * Q_ERR_MODEL_CHANGED (the forward pass checks it every token). SIGBUS anywhere else goes
 * to the previous handler or kills as usual. See q_mapping_status.
 *
 * Errors, in this order: Q_ERR_INVALID_ARG (ctx or path NULL, unknown strategy), Q_ERR_INVALID_STATE (ctx
 * already holds a mapping), Q_ERR_FILE_OPEN, Q_ERR_FILE_STAT, Q_ERR_NOT_REGULAR_FILE,
 * Q_ERR_FILE_TOO_SMALL (below Q_MIN_MODEL_FILE_BYTES), Q_ERR_OVERFLOW (file larger than the
 * address space), Q_ERR_MMAP; with Q_MMAP_READ also Q_ERR_ALLOC (the anonymous mapping),
 * Q_ERR_IO (pread failed; errno tells why) and Q_ERR_MODEL_CHANGED (the file shrank while
 * being read). On error ctx is unchanged.
 */
q_error_code q_init_memory_ex(q_context *ctx, const char *path, q_mmap_strategy strategy);

/**
 * Allocates the KV cache: `bytes` zeroed bytes in their own page-rounded anonymous mapping.
 * No memset: the kernel provides zero pages on first touch, so RSS grows only as the cache
 * is written.
 *
 * Errors, in this order: Q_ERR_INVALID_ARG (ctx NULL or bytes 0), Q_ERR_INVALID_STATE (a
 * KV cache exists; nothing is leaked or changed), Q_ERR_OVERFLOW (bytes above
 * Q_MAX_REGION_BYTES), Q_ERR_ALLOC (mmap failed). On error ctx is unchanged.
 */
q_error_code q_alloc_kv_cache(q_context *ctx, size_t bytes);

/**
 * Zeroes the KV cache again by returning its pages to the kernel (MADV_DONTNEED on its own
 * anonymous mapping, result checked), so RSS drops back.
 *
 * Errors: Q_ERR_INVALID_ARG (ctx NULL), Q_ERR_INVALID_STATE (no KV cache), Q_ERR_ALLOC
 * (madvise failed; the cache is then left as it was).
 */
q_error_code q_kv_cache_clear(q_context *ctx);

/**
 * Creates the scratch arena: `bytes` rounded up to Q_ALIGN, in its own mapping followed by
 * a PROT_NONE guard page. The head and base start at 0.
 *
 * Errors, in this order: Q_ERR_INVALID_ARG (ctx NULL or bytes 0), Q_ERR_INVALID_STATE (an
 * arena exists), Q_ERR_OVERFLOW (bytes above Q_MAX_REGION_BYTES), Q_ERR_ALLOC (mmap or
 * mprotect failed; nothing is leaked). On error ctx is unchanged.
 */
q_error_code q_alloc_arena(q_context *ctx, size_t bytes);

/* Out-of-line parts of the arena; call q_arena_alloc / q_arena_reset instead. They are also
 * the reference the fuzz targets compare the inline fast path with (fuzz/arena_shadow.h). */
void *q_arena_alloc_slow(q_context *ctx, size_t size);
void q_arena_reset_instrumented(q_context *ctx);

/**
 * The hot path: returns a Q_ALIGN-aligned pointer to `size` usable bytes from the scratch
 * arena, valid until the next q_arena_reset (or forever if q_arena_set_base is called
 * after it). The head advances by `size` rounded up to Q_ALIGN.
 *
 * `size == 0` returns a valid aligned pointer to zero usable bytes and consumes nothing
 * (NULL only if the context has no arena).
 *
 * Returns NULL, with the head unchanged, when ctx is NULL, when the context has no arena,
 * or when the rounded size does not fit in the remaining space (including sizes near
 * SIZE_MAX). Never aborts.
 *
 * Contents are unspecified: in debug builds they are filled with 0xA5, under MSan they are
 * uninitialized, under ASan exactly `size` bytes are addressable.
 */
static inline void *q_arena_alloc(q_context *ctx, size_t size)
{
#if Q_ARENA_INSTRUMENTED
    return q_arena_alloc_slow(ctx, size);
#else
    if (__builtin_expect(ctx != NULL, 1)) {
        size_t head = ctx->scratch_head;
        size_t avail = ctx->scratch_size - head; /* a multiple of Q_ALIGN, 0 without arena */
        /* 1 <= size <= avail. As avail is a multiple of Q_ALIGN, the rounded size fits too,
         * and size + Q_ALIGN - 1 cannot overflow (avail <= Q_MAX_REGION_BYTES). Sizes near
         * SIZE_MAX, size 0 and every failure take the slow path. */
        if (__builtin_expect(size - 1 < avail, 1)) {
            ctx->scratch_head = head + ((size + (Q_ALIGN - 1)) & ~(size_t)(Q_ALIGN - 1));
            return ctx->scratch_buffer + head;
        }
    }
    return q_arena_alloc_slow(ctx, size);
#endif
}

/**
 * The other hot path: rewinds the arena head to scratch_base_offset in O(1), invalidating
 * every allocation made since the base was set. `ctx` must not be NULL (release builds do
 * nothing but the store; instrumented builds ignore NULL). Under ASan the freed region is
 * poisoned again, in debug builds it is filled with 0xDD. Cannot fail.
 */
static inline void q_arena_reset(q_context *ctx)
{
#if Q_ARENA_INSTRUMENTED
    q_arena_reset_instrumented(ctx);
#else
    ctx->scratch_head = ctx->scratch_base_offset;
#endif
}

/**
 * Whether the model mapping of `ctx` is still what was mapped: Q_OK, or
 * Q_ERR_MODEL_CHANGED once a read hit a page whose file bytes were gone (the file was
 * truncated or replaced while in use; the lost range now reads as zeros, so any result
 * computed from it is garbage and must be discarded), or once the file's size or mtime
 * differs from when it was mapped (a truncation inside a page zeroes its tail without any
 * signal). The answer sticks. Costs one fstat(); callable from any thread. Q_OK for contexts without a file mapping
 * (none, or Q_MMAP_READ). Errors: Q_ERR_INVALID_ARG (ctx NULL), Q_ERR_MODEL_CHANGED.
 */
q_error_code q_mapping_status(const q_context *ctx);

/** Out-of-line q_arena_reset, for callers that need an address (FFI, benchmarks). */
void q_arena_reset_extern(q_context *ctx);

/**
 * Makes every allocation made so far permanent: later q_arena_reset calls rewind to the
 * current head. Errors: Q_ERR_INVALID_ARG (ctx NULL), Q_ERR_INVALID_STATE (no arena).
 */
q_error_code q_arena_set_base(q_context *ctx);

/** Bytes of the arena in use (head), 0 for NULL or no arena. */
size_t q_arena_used(const q_context *ctx);

/** Releases the KV cache only. Safe without one. Errors: Q_ERR_INVALID_ARG (ctx NULL). */
q_error_code q_free_kv_cache(q_context *ctx);

/** Releases the scratch arena only. Safe without one. Errors: Q_ERR_INVALID_ARG (ctx NULL). */
q_error_code q_free_arena(q_context *ctx);

/**
 * Releases the model mapping, the KV cache and the arena, and zeroes the context. Safe on
 * NULL, on a zeroed or partly initialized context, and when called twice.
 */
void q_free_memory(q_context *ctx);

#ifdef __cplusplus
}
#endif

#endif /* QORUS_CORE_H */
