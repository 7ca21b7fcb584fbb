/*
 * fuzz_arena_reset: interleavings of q_arena_alloc, q_arena_reset, q_arena_set_base,
 * arena and KV cache (re)allocation and release, q_kv_cache_clear and q_free_memory, with
 * OS failures injected at positions drawn from the input. After every step the context is
 * compared with the shadow model (arena_shadow.h plus the KV cache state), live blocks keep
 * their contents, blocks below the base survive resets, and the KV cache reads as zero
 * after allocation and after a clear. Every arena operation is repeated on the shadow's
 * twin context through the out-of-line slow path and must agree with it (arena_shadow.h):
 * the differential check of the inline fast path and of q_arena_reset_extern.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "arena_shadow.h"
#include "qorus_testing.h"

#define MAX_STEPS 256
#define KV_PROBES 8

typedef struct kv_shadow {
    int exists;
    size_t size;
    size_t probe_off[KV_PROBES]; /* written bytes */
    uint8_t probe_val[KV_PROBES];
    size_t n_probes;
} kv_shadow;

static void check_kv(const q_context *ctx, const kv_shadow *kv)
{
    if (!kv->exists) {
        FUZZ_ASSERT(ctx->kv_buffer == NULL && ctx->kv_size == 0 && ctx->kv_mapped_size == 0);
        return;
    }
    FUZZ_ASSERT(ctx->kv_buffer != NULL);
    FUZZ_ASSERT(((uintptr_t)ctx->kv_buffer & (Q_ALIGN - 1)) == 0);
    FUZZ_ASSERT(ctx->kv_size == kv->size);
    FUZZ_ASSERT(ctx->kv_mapped_size >= kv->size);
    long page = sysconf(_SC_PAGESIZE);
    FUZZ_ASSERT(page > 0 && ctx->kv_mapped_size % (size_t)page == 0);
    FUZZ_ASSERT(ctx->kv_mapped_size - kv->size < (size_t)page);
    const unsigned char *b = ctx->kv_buffer;
    for (size_t i = 0; i < kv->n_probes; i++)
        FUZZ_ASSERT(b[kv->probe_off[i]] == kv->probe_val[i]);
}

/* KV bytes read as zero: first and last bytes, and a sample in between. */
static void check_kv_zero(const q_context *ctx, const kv_shadow *kv)
{
    const unsigned char *b = ctx->kv_buffer;
    FUZZ_ASSERT(b[0] == 0 && b[kv->size - 1] == 0);
    for (size_t off = 0; off < kv->size; off += 4093)
        FUZZ_ASSERT(b[off] == 0);
}

static size_t draw_region_bytes(fuzz_producer *fp)
{
    switch (fuzz_producer_u32(fp, 0, 7)) {
    case 0: return fuzz_producer_size(fp, 1, 512);
    case 1: return (size_t)Q_ALIGN * fuzz_producer_size(fp, 1, 256);
    case 2: return fuzz_producer_size(fp, 1, 1 << 18);
    case 3: return 0;                                              /* invalid */
    case 4: return Q_MAX_REGION_BYTES + fuzz_producer_size(fp, 1, 4096); /* too large */
    case 5: return SIZE_MAX - fuzz_producer_size(fp, 0, 4096);        /* overflows */
    default: return 4096 * fuzz_producer_size(fp, 1, 8) - fuzz_producer_size(fp, 0, 64);
    }
}

static size_t draw_request(fuzz_producer *fp, const arena_shadow *s)
{
    size_t avail = s->size - s->head;
    switch (fuzz_producer_u32(fp, 0, 6)) {
    case 0: return 0;
    case 1: return fuzz_producer_size(fp, 1, 200);
    case 2: return (size_t)Q_ALIGN * fuzz_producer_size(fp, 1, 32);
    case 3: return avail;
    case 4: return avail + fuzz_producer_size(fp, 0, 64) - 32;
    case 5: return SIZE_MAX - fuzz_producer_size(fp, 0, 64);
    default: return fuzz_producer_size(fp, 0, s->size + 64);
    }
}

typedef struct map_shadow {
    int exists;
    size_t size;
    uint8_t first, last;
} map_shadow;

static void check_map(const q_context *ctx, const map_shadow *m)
{
    if (!m->exists) {
        FUZZ_ASSERT(ctx->weights_mmap == NULL && ctx->weights_size == 0);
        return;
    }
    const unsigned char *b = ctx->weights_mmap;
    FUZZ_ASSERT(b != NULL && ctx->weights_size == m->size);
    FUZZ_ASSERT(b[0] == m->first && b[m->size - 1] == m->last);
}

/* A per-process scratch folder holding the files q_init_memory_ex is pointed at. */
static char scratch_dir[128];
static unsigned file_counter;

static void remove_scratch(void)
{
    char path[192];
    for (unsigned i = 0; i <= file_counter; i++) {
        snprintf(path, sizeof path, "%s/f%u", scratch_dir, i);
        (void)unlink(path);
    }
    snprintf(path, sizeof path, "%s/fifo", scratch_dir);
    (void)unlink(path);
    (void)rmdir(scratch_dir);
}

static int make_scratch(void)
{
    if (scratch_dir[0] != '\0')
        return 1;
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch_dir, sizeof scratch_dir, "%s/qorus-fuzz-XXXXXX",
             tmp != NULL && strlen(tmp) < 64 ? tmp : "/tmp");
    if (mkdtemp(scratch_dir) == NULL) {
        scratch_dir[0] = '\0';
        return 0;
    }
    char fifo[192];
    snprintf(fifo, sizeof fifo, "%s/fifo", scratch_dir);
    (void)mkfifo(fifo, 0600);
    atexit(remove_scratch);
    return 1;
}

/* A fresh regular file of `size` bytes (a new inode each time: an existing mapping of the
 * previous file stays valid). Returns 0 if the file system refuses. */
static int write_file(char *path, size_t cap, size_t size, uint8_t seed)
{
    snprintf(path, cap, "%s/f%u", scratch_dir, file_counter);
    (void)unlink(path);
    file_counter = (file_counter + 1) % 64;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return 0;
    unsigned char buf[512];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(seed + i * 13u);
    size_t done = 0;
    while (done < size) {
        size_t n = size - done < sizeof buf ? size - done : sizeof buf;
        if (write(fd, buf, n) != (ssize_t)n) {
            close(fd);
            return 0;
        }
        done += n;
    }
    close(fd);
    return 1;
}

/* One q_init_memory(_ex) call on a drawn kind of path, checked against the shadow. */
static void map_step(q_context *ctx, map_shadow *m, fuzz_producer *fp)
{
    if (!make_scratch())
        return;
    char path[192];
    unsigned kind = fuzz_producer_u32(fp, 0, 7);
    unsigned how = fuzz_producer_u32(fp, 0, 2); /* lazy, eager, q_init_memory */
    size_t size = 0;
    uint8_t seed = (uint8_t)fuzz_producer_u32(fp, 0, 255);
    q_error_code expect;
    const char *p = path;
    q_context *c = ctx;
    int bad_strategy = 0;
    switch (kind) {
    case 0: case 1:
        size = fuzz_producer_size(fp, 0, kind == 0 ? 64 : 3 * 4096 + 100);
        if (!write_file(path, sizeof path, size, seed))
            return;
        expect = size < Q_MIN_MODEL_FILE_BYTES ? Q_ERR_FILE_TOO_SMALL : Q_OK;
        break;
    case 2:
        snprintf(path, sizeof path, "%s", scratch_dir);
        expect = Q_ERR_NOT_REGULAR_FILE;
        break;
    case 3:
        snprintf(path, sizeof path, "%s/fifo", scratch_dir);
        expect = Q_ERR_NOT_REGULAR_FILE;
        break;
    case 4:
        snprintf(path, sizeof path, "%s/missing", scratch_dir);
        expect = Q_ERR_FILE_OPEN;
        break;
    case 5:
        p = NULL;
        expect = Q_ERR_INVALID_ARG;
        break;
    case 6:
        bad_strategy = 1;
        snprintf(path, sizeof path, "%s", scratch_dir);
        expect = Q_ERR_INVALID_ARG;
        break;
    default:
        c = NULL;
        snprintf(path, sizeof path, "%s", scratch_dir);
        expect = Q_ERR_INVALID_ARG;
        break;
    }
    if (expect != Q_ERR_INVALID_ARG && m->exists)
        expect = Q_ERR_INVALID_STATE;

    q_error_code rc;
    if (bad_strategy)
        rc = q_init_memory_ex(c, p, (q_mmap_strategy)(3 + seed % 5)); /* 2 = Q_MMAP_READ */
    else if (how == 2)
        rc = q_init_memory(c, p);
    else
        rc = q_init_memory_ex(c, p, how ? Q_MMAP_EAGER : Q_MMAP_LAZY);

    if (q_test_failure_fired()) {
        /* open (first call) or mmap (second) refused: the matching error, nothing kept */
        FUZZ_ASSERT_MSG(rc == Q_ERR_FILE_OPEN || rc == Q_ERR_MMAP, "injected failure: %s",
                        q_error_name(rc));
    } else {
        FUZZ_ASSERT_MSG(rc == expect, "q_init_memory_ex(kind %u) gave %s, expected %s", kind,
                        q_error_name(rc), q_error_name(expect));
        if (rc == Q_OK) {
            m->exists = 1;
            m->size = size;
            m->first = seed;
            m->last = (uint8_t)(seed + ((size - 1) % 512) * 13u);
        }
    }
    check_map(ctx, m);
}

/* Every error code has a message and a distinct symbolic name; unknown codes too. */
static void check_error_table(void)
{
    const char *names[32];
    size_t n = 0;
    for (int code = 1; code >= -40; code--) {
        const char *msg = q_strerror((q_error_code)code);
        const char *name = q_error_name((q_error_code)code);
        FUZZ_ASSERT(msg != NULL && msg[0] != '\0' && name != NULL && name[0] != '\0');
        if (strcmp(name, "Q_ERR_UNKNOWN") == 0)
            continue;
        FUZZ_ASSERT(code <= 0 && strncmp(name, "Q_", 2) == 0);
        for (size_t i = 0; i < n; i++)
            FUZZ_ASSERT(strcmp(names[i], name) != 0);
        if (n < 32)
            names[n++] = name;
    }
    /* Q_OK and every error down to the last one, Q_ERR_MODEL_CHANGED */
    FUZZ_ASSERT(n == (size_t)(1 - (int)Q_ERR_MODEL_CHANGED) && strcmp(q_error_name(Q_OK), "Q_OK") == 0);
}

static void forget_all_blocks(arena_shadow *s)
{
    shadow_forget(s); /* the twin's arena goes too */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_producer fp = fuzz_producer_make(data, size);
    q_context ctx = {0};
    arena_shadow s = {0};
    kv_shadow kv = {0};
    map_shadow map = {0};

    for (unsigned step = 0; step < MAX_STEPS && fuzz_producer_remaining(&fp) > 0; step++) {
        /* Per step: 0 (none) or the position (1-3) of an OS call made to fail. */
        q_test_fail_nth_os_call(fuzz_producer_u32(&fp, 0, 3));

        switch (fuzz_producer_u32(&fp, 0, 13)) {
        case 0: case 1: case 2: /* allocate */
            (void)shadow_alloc(&ctx, &s, draw_request(&fp, &s));
            break;
        case 3: /* reset */
            shadow_reset(&ctx, &s);
            break;
        case 4: /* reset through the out-of-line entry point */
            shadow_reset_with(&ctx, &s, q_arena_reset_extern);
            break;
        case 12: /* map a model file */
            map_step(&ctx, &map, &fp);
            break;
        case 5: { /* set the base */
            q_error_code rc = q_arena_set_base(&ctx);
            shadow_twin_set_base(&s, rc);
            if (s.exists) {
                FUZZ_ASSERT(rc == Q_OK);
                s.base = s.head;
            } else {
                FUZZ_ASSERT(rc == Q_ERR_INVALID_STATE);
            }
            break;
        }
        case 6: { /* create the arena */
            size_t bytes = draw_region_bytes(&fp);
            q_error_code rc = q_alloc_arena(&ctx, bytes);
            /* The twin's arena is created with injection off, and only when no failure
             * was injected into the context's. */
            int fired = q_test_failure_fired();
            q_test_fail_nth_os_call(0);
            if (!fired)
                shadow_twin_alloc_arena(&s, bytes, rc);
            int ok;
            size_t rounded = shadow_round(bytes, &ok);
            if (bytes == 0) {
                FUZZ_ASSERT(rc == Q_ERR_INVALID_ARG);
            } else if (s.exists) {
                FUZZ_ASSERT(rc == Q_ERR_INVALID_STATE);
            } else if (bytes > Q_MAX_REGION_BYTES || !ok) {
                FUZZ_ASSERT(rc == Q_ERR_OVERFLOW);
            } else if (fired) {
                FUZZ_ASSERT_MSG(rc == Q_ERR_ALLOC, "injected failure gave %d", (int)rc);
            } else {
                FUZZ_ASSERT_MSG(rc == Q_OK, "q_alloc_arena(%zu) gave %d", bytes, (int)rc);
                s.exists = 1;
                s.size = rounded;
                shadow_check_ctx(&ctx, &s);
                shadow_check_free_poisoned(&ctx, &s);
            }
            break;
        }
        case 7: /* release the arena */
            shadow_verify_all(&ctx, &s);
            FUZZ_ASSERT(q_free_arena(&ctx) == Q_OK);
            forget_all_blocks(&s);
            break;
        case 8: { /* create the KV cache */
            size_t bytes = draw_region_bytes(&fp);
            q_error_code rc = q_alloc_kv_cache(&ctx, bytes);
            if (bytes == 0) {
                FUZZ_ASSERT(rc == Q_ERR_INVALID_ARG);
            } else if (kv.exists) {
                FUZZ_ASSERT(rc == Q_ERR_INVALID_STATE);
            } else if (bytes > Q_MAX_REGION_BYTES) {
                FUZZ_ASSERT(rc == Q_ERR_OVERFLOW);
            } else if (q_test_failure_fired()) {
                FUZZ_ASSERT_MSG(rc == Q_ERR_ALLOC, "injected failure gave %d", (int)rc);
            } else {
                FUZZ_ASSERT_MSG(rc == Q_OK, "q_alloc_kv_cache(%zu) gave %d", bytes, (int)rc);
                kv.exists = 1;
                kv.size = bytes;
                kv.n_probes = 0;
                check_kv(&ctx, &kv);
                check_kv_zero(&ctx, &kv);
            }
            break;
        }
        case 9: /* write to the KV cache, or clear it */
            if (!kv.exists) {
                FUZZ_ASSERT(q_kv_cache_clear(&ctx) == Q_ERR_INVALID_STATE);
            } else if (fuzz_producer_bool(&fp) && kv.n_probes < KV_PROBES) {
                size_t off = fuzz_producer_size(&fp, 0, kv.size - 1);
                uint8_t val = (uint8_t)fuzz_producer_u32(&fp, 1, 255);
                ((unsigned char *)ctx.kv_buffer)[off] = val;
                /* A later probe at the same offset supersedes the earlier one. */
                for (size_t i = 0; i < kv.n_probes; i++)
                    if (kv.probe_off[i] == off)
                        kv.probe_val[i] = val;
                kv.probe_off[kv.n_probes] = off;
                kv.probe_val[kv.n_probes] = val;
                kv.n_probes++;
            } else {
                FUZZ_ASSERT(q_kv_cache_clear(&ctx) == Q_OK);
                kv.n_probes = 0;
                check_kv_zero(&ctx, &kv);
            }
            break;
        case 10: /* release the KV cache */
            FUZZ_ASSERT(q_free_kv_cache(&ctx) == Q_OK);
            memset(&kv, 0, sizeof kv);
            break;
        default: /* release everything */
            shadow_verify_all(&ctx, &s);
            q_free_memory(&ctx);
            forget_all_blocks(&s);
            memset(&kv, 0, sizeof kv);
            memset(&map, 0, sizeof map);
            FUZZ_ASSERT(ctx.weights_mmap == NULL && ctx.weights_size == 0);
            break;
        }
        q_test_fail_nth_os_call(0);
        FUZZ_ASSERT(q_test_os_call_count() == 0 && !q_test_failure_fired());
        shadow_check_ctx(&ctx, &s);
        check_kv(&ctx, &kv);
        check_map(&ctx, &map);
    }

    shadow_verify_all(&ctx, &s);
    shadow_check_free_poisoned(&ctx, &s);
    if (s.exists)
        shadow_check_guard_page(&ctx);
    /* NULL arguments are refused, never dereferenced. */
    FUZZ_ASSERT(q_arena_alloc(NULL, 0) == NULL);
    FUZZ_ASSERT(q_arena_set_base(NULL) == Q_ERR_INVALID_ARG);
    FUZZ_ASSERT(q_alloc_kv_cache(NULL, 64) == Q_ERR_INVALID_ARG);
    FUZZ_ASSERT(q_kv_cache_clear(NULL) == Q_ERR_INVALID_ARG);
    FUZZ_ASSERT(q_free_kv_cache(NULL) == Q_ERR_INVALID_ARG);
    FUZZ_ASSERT(q_free_arena(NULL) == Q_ERR_INVALID_ARG);
    FUZZ_ASSERT(q_arena_used(NULL) == 0);
    q_free_memory(NULL);
#if Q_ARENA_INSTRUMENTED
    q_arena_reset(NULL); /* instrumented builds ignore NULL (release builds may not) */
#endif
    check_error_table();
    q_free_memory(&ctx);
    q_free_memory(&ctx);
    shadow_forget(&s);
    return 0;
}
