/*
 * The memory core: model mapping, KV cache and scratch arena of one q_context.
 *
 * Scratch arena
 * -------------
 * A bump allocator over one anonymous mapping:
 *
 *     map base        scratch_buffer                              scratch_buffer+scratch_size
 *     | slack (unused) | used ... | head -> free ...                | guard page (PROT_NONE) |
 *
 * The usable part is placed at the END of its page-rounded mapping so the guard page starts
 * exactly at scratch_buffer + scratch_size: running off the last allocation faults even in
 * a release build. scratch_size is the requested size rounded up to Q_ALIGN.
 *
 * Invariants: scratch_size, scratch_head and scratch_base_offset are multiples of Q_ALIGN,
 * base <= head <= size, scratch_buffer is Q_ALIGN-aligned (page start + a multiple of
 * Q_ALIGN). Hence every returned pointer is aligned, and "size <= size - head" already
 * implies that the rounded size fits: the fast path in qorus_core.h needs one comparison.
 * Under sanitizers every byte at or above the head, and every padding byte between a
 * block's requested end and the next Q_ALIGN boundary, is poisoned.
 *
 * Bound: allocation and reset are O(1) in release builds; instrumented builds add O(size)
 * annotation work per allocation and O(used) per reset.
 *
 * KV cache
 * --------
 * Its own page-rounded anonymous private mapping: the kernel hands out zero pages on first
 * touch, so it is zeroed without a memset and RSS grows only with what is written. (The
 * audit's madvise(MADV_DONTNEED) on an aligned_alloc buffer is wrong twice: heap addresses
 * are not page-aligned (EINVAL, buffer left dirty), and on heap memory it can discard
 * neighbouring objects and allocator metadata. MADV_DONTNEED is used only on this mapping,
 * by q_kv_cache_clear, with its result checked.)
 */
#include "qorus_core.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/checked.h"
#include "core/guard.h"
#include "core/os.h"
#include "core/sanitize.h"

#ifndef Q_DEBUG_FILL
#define Q_DEBUG_FILL 0
#endif
#define Q_FILL_ALLOCATED 0xA5 /* debug: fresh bytes from q_arena_alloc */
#define Q_FILL_RESET 0xDD     /* debug: bytes released by q_arena_reset */

/* The arena's sanitizer annotations. Only an instrumented arena (Q_ARENA_INSTRUMENTED,
 * qorus_config.h) may poison its bytes: with the release arena the inline fast path of
 * q_arena_alloc hands out bytes without a call into the library, so they must never have
 * been poisoned (QORUS_ARENA_FAST builds the release arena under ASan and MSan too). */
#if Q_ARENA_INSTRUMENTED
#define Q_ARENA_NOACCESS(p, n) Q_MEM_NOACCESS(p, n)
#define Q_ARENA_UNDEFINED(p, n) Q_MEM_UNDEFINED(p, n)
#else
#define Q_ARENA_NOACCESS(p, n) ((void)(p), (void)(n))
#define Q_ARENA_UNDEFINED(p, n) ((void)(p), (void)(n))
#endif

/* ---- model mapping ---- */

q_error_code q_init_memory(q_context *ctx, const char *path)
{
    return q_init_memory_ex(ctx, path, Q_MMAP_LAZY);
}

/* Maps an open regular file of `size` bytes. */
static q_error_code map_model_file(int fd, size_t size, q_mmap_strategy strategy,
                                   const void **out)
{
    int flags = MAP_PRIVATE;
#ifdef MAP_POPULATE
    if (strategy == Q_MMAP_EAGER)
        flags |= MAP_POPULATE;
#endif
    void *p = q_os_mmap(NULL, size, PROT_READ, flags, fd, 0);
    if (p == MAP_FAILED)
        return Q_ERR_MMAP;
    if (strategy == Q_MMAP_LAZY) {
        /* An asynchronous read-ahead hint; its failure changes nothing for correctness.
         * WILLNEED alone: the advice values are an enumeration, not flags (SEQUENTIAL |
         * WILLNEED == WILLNEED), and SEQUENTIAL's drop-behind would hurt a model whose
         * weights are read again for every token. */
        (void)posix_madvise(p, size, POSIX_MADV_WILLNEED);
    }
#ifndef MAP_POPULATE
    if (strategy == Q_MMAP_EAGER) {
        /* No MAP_POPULATE: touch one byte per page. */
        volatile const unsigned char *bytes = p;
        size_t page = q_os_page_size();
        for (size_t off = 0; off < size; off += page)
            (void)bytes[off];
    }
#endif
    *out = p;
    return Q_OK;
}

/* Q_MMAP_READ: reads `size` bytes of the open file into an anonymous mapping, read-only
 * once filled. Short reads and EINTR are retried; end of file before `size` bytes means the
 * file shrank since fstat. */
static q_error_code read_model_file(int fd, size_t size, const void **out)
{
    size_t mapped;
    if (!q_align_up(size, q_os_page_size(), &mapped))
        return Q_ERR_OVERFLOW;
    unsigned char *p = q_os_mmap(NULL, mapped, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return Q_ERR_ALLOC;
    q_error_code err = Q_OK;
    size_t done = 0;
    while (done < size) {
        size_t want = size - done;
        if (want > ((size_t)1 << 30))
            want = (size_t)1 << 30; /* Linux transfers at most ~2 GiB per call anyway */
        ssize_t got = q_os_pread(fd, p + done, want, (off_t)done);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            err = Q_ERR_IO;
            break;
        }
        if (got == 0) {
            err = Q_ERR_MODEL_CHANGED;
            break;
        }
        done += (size_t)got;
    }
    if (err == Q_OK && q_os_mprotect(p, mapped, PROT_READ) != 0)
        err = Q_ERR_ALLOC;
    if (err != Q_OK) {
        int saved = errno;
        (void)q_os_munmap(p, mapped);
        errno = saved;
        return err;
    }
    *out = p;
    return Q_OK;
}

q_error_code q_init_memory_ex(q_context *ctx, const char *path, q_mmap_strategy strategy)
{
    if (ctx == NULL || path == NULL)
        return Q_ERR_INVALID_ARG;
    if (strategy != Q_MMAP_LAZY && strategy != Q_MMAP_EAGER && strategy != Q_MMAP_READ)
        return Q_ERR_INVALID_ARG;
    if (ctx->weights_mmap != NULL)
        return Q_ERR_INVALID_STATE;

    /* O_NONBLOCK: opening a FIFO must not wait for a writer; no effect on regular files. */
    int fd = q_os_open_read(path);
    if (fd < 0)
        return Q_ERR_FILE_OPEN;

    q_error_code err;
    struct stat st;
    const void *mapping = NULL;
    if (fstat(fd, &st) != 0)
        err = Q_ERR_FILE_STAT;
    else if (!S_ISREG(st.st_mode))
        err = Q_ERR_NOT_REGULAR_FILE;
    else if (st.st_size < (off_t)Q_MIN_MODEL_FILE_BYTES)
        err = Q_ERR_FILE_TOO_SMALL;
    else if ((uintmax_t)st.st_size > (uintmax_t)SIZE_MAX)
        err = Q_ERR_OVERFLOW;
    else if (strategy == Q_MMAP_READ)
        err = read_model_file(fd, (size_t)st.st_size, &mapping);
    else
        err = map_model_file(fd, (size_t)st.st_size, strategy, &mapping);
    /* A guarded file mapping keeps its descriptor (to notice changes); the rest close it. */
    if (err != Q_OK || strategy == Q_MMAP_READ ||
        !q_guard_register(mapping, (size_t)st.st_size, fd, &st)) {
        int saved = errno;
        close(fd);
        errno = saved; /* the driver reports errno of the failing call */
    }
    if (err != Q_OK)
        return err;

    ctx->weights_mmap = mapping;
    ctx->weights_size = (size_t)st.st_size;
    return Q_OK;
}

/* ---- KV cache ---- */

q_error_code q_alloc_kv_cache(q_context *ctx, size_t bytes)
{
    if (ctx == NULL || bytes == 0)
        return Q_ERR_INVALID_ARG;
    if (ctx->kv_buffer != NULL)
        return Q_ERR_INVALID_STATE;
    size_t mapped;
    if (bytes > Q_MAX_REGION_BYTES || !q_align_up(bytes, q_os_page_size(), &mapped))
        return Q_ERR_OVERFLOW;

    void *p = q_os_mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return Q_ERR_ALLOC;
    ctx->kv_buffer = p;
    ctx->kv_size = bytes;
    ctx->kv_mapped_size = mapped;
    return Q_OK;
}

q_error_code q_kv_cache_clear(q_context *ctx)
{
    if (ctx == NULL)
        return Q_ERR_INVALID_ARG;
    if (ctx->kv_buffer == NULL)
        return Q_ERR_INVALID_STATE;
    if (madvise(ctx->kv_buffer, ctx->kv_mapped_size, MADV_DONTNEED) != 0)
        return Q_ERR_ALLOC;
    return Q_OK;
}

q_error_code q_free_kv_cache(q_context *ctx)
{
    if (ctx == NULL)
        return Q_ERR_INVALID_ARG;
    if (ctx->kv_buffer != NULL)
        (void)q_os_munmap(ctx->kv_buffer, ctx->kv_mapped_size);
    ctx->kv_buffer = NULL;
    ctx->kv_size = 0;
    ctx->kv_mapped_size = 0;
    return Q_OK;
}

/* ---- scratch arena ---- */

q_error_code q_alloc_arena(q_context *ctx, size_t bytes)
{
    if (ctx == NULL || bytes == 0)
        return Q_ERR_INVALID_ARG;
    if (ctx->scratch_buffer != NULL)
        return Q_ERR_INVALID_STATE;

    size_t page = q_os_page_size();
    size_t usable, pages, mapped;
    if (bytes > Q_MAX_REGION_BYTES || !q_align_up(bytes, Q_ALIGN, &usable) ||
        !q_align_up(usable, page, &pages) || !q_add_size(pages, page, &mapped))
        return Q_ERR_OVERFLOW;

    unsigned char *base = q_os_mmap(NULL, mapped, PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return Q_ERR_ALLOC;
    if (q_os_mprotect(base + pages, page, PROT_NONE) != 0) {
        (void)q_os_munmap(base, mapped);
        return Q_ERR_ALLOC;
    }

    unsigned char *buffer = base + (pages - usable); /* ends where the guard page starts */
    Q_ARENA_NOACCESS(base, pages);
    ctx->scratch_buffer = buffer;
    ctx->scratch_size = usable;
    ctx->scratch_head = 0;
    ctx->scratch_base_offset = 0;
    ctx->scratch_mapped_size = mapped;
    return Q_OK;
}

/* Every allocation of instrumented builds, and every case the inline fast path declines:
 * size 0, sizes that do not fit (up to SIZE_MAX), no arena, ctx NULL. */
void *q_arena_alloc_slow(q_context *ctx, size_t size)
{
    if (ctx == NULL || ctx->scratch_buffer == NULL)
        return NULL;
    size_t head = ctx->scratch_head;
    size_t avail = ctx->scratch_size - head;
    size_t rounded;
    if (!q_align_up(size, Q_ALIGN, &rounded) || rounded > avail)
        return NULL;

    unsigned char *block = ctx->scratch_buffer + head;
    ctx->scratch_head = head + rounded;
    Q_ARENA_UNDEFINED(block, size); /* exactly `size` bytes: the padding stays poisoned */
#if Q_DEBUG_FILL
    memset(block, Q_FILL_ALLOCATED, size);
    Q_ARENA_UNDEFINED(block, size); /* the fill is not data: reads before writes stay errors */
#endif
    return block;
}

void q_arena_reset_instrumented(q_context *ctx)
{
    if (ctx == NULL)
        return;
    if (ctx->scratch_buffer != NULL && ctx->scratch_head > ctx->scratch_base_offset) {
        unsigned char *released = ctx->scratch_buffer + ctx->scratch_base_offset;
        size_t released_size = ctx->scratch_head - ctx->scratch_base_offset;
#if Q_DEBUG_FILL
        Q_ARENA_UNDEFINED(released, released_size);
        memset(released, Q_FILL_RESET, released_size);
#endif
        /* Bytes above the head are still poisoned; only the released range changes. */
        Q_ARENA_NOACCESS(released, released_size);
    }
    ctx->scratch_head = ctx->scratch_base_offset;
}

void q_arena_reset_extern(q_context *ctx)
{
    q_arena_reset(ctx);
}

q_error_code q_arena_set_base(q_context *ctx)
{
    if (ctx == NULL)
        return Q_ERR_INVALID_ARG;
    if (ctx->scratch_buffer == NULL)
        return Q_ERR_INVALID_STATE;
    ctx->scratch_base_offset = ctx->scratch_head;
    return Q_OK;
}

size_t q_arena_used(const q_context *ctx)
{
    return ctx != NULL && ctx->scratch_buffer != NULL ? ctx->scratch_head : 0;
}

q_error_code q_free_arena(q_context *ctx)
{
    if (ctx == NULL)
        return Q_ERR_INVALID_ARG;
    if (ctx->scratch_buffer != NULL) {
        size_t pages = ctx->scratch_mapped_size - q_os_page_size();
        unsigned char *base = ctx->scratch_buffer + ctx->scratch_size - pages;
        /* Shadow memory outlives munmap: leave none poisoned for the next mapping there. */
        Q_MEM_FORGET(base, pages);
        (void)q_os_munmap(base, ctx->scratch_mapped_size);
    }
    ctx->scratch_buffer = NULL;
    ctx->scratch_size = 0;
    ctx->scratch_head = 0;
    ctx->scratch_base_offset = 0;
    ctx->scratch_mapped_size = 0;
    return Q_OK;
}

/* ---- everything ---- */

void q_free_memory(q_context *ctx)
{
    if (ctx == NULL)
        return;
    if (ctx->weights_mmap != NULL) {
        q_guard_unregister(ctx->weights_mmap); /* no-op for Q_MMAP_READ copies */
        (void)q_os_munmap((void *)(uintptr_t)ctx->weights_mmap, ctx->weights_size);
    }
    (void)q_free_kv_cache(ctx);
    (void)q_free_arena(ctx);
    memset(ctx, 0, sizeof *ctx);
}
