/*
 * fuzz_arena_alloc: sequences of q_arena_alloc on an arena of a drawn size, against the
 * shadow model of arena_shadow.h.
 *
 * Input (all parameters, drawn from the tail): failure injection position for the arena's
 * creation, a q_alloc_arena argument class (including the invalid ones), the arena size,
 * then up to MAX_OPS operations, each a size class and its value, or a reset. Sizes hit
 * every class: 0, 1, multiples of Q_ALIGN, odd, exactly / just under / just over the
 * remaining space, near SIZE_MAX, random 64-bit. Every allocation and reset is repeated on
 * the shadow's twin context through the out-of-line slow path and must agree with it
 * (arena_shadow.h): the differential check of the inline fast path.
 */
#include "arena_shadow.h"
#include "qorus_testing.h"

#define MAX_OPS 384

static size_t draw_arena_bytes(fuzz_producer *fp)
{
    switch (fuzz_producer_u32(fp, 0, 5)) {
    case 0: return fuzz_producer_size(fp, 1, 256);
    case 1: return (size_t)Q_ALIGN * fuzz_producer_size(fp, 1, 64);
    case 2: { /* around page multiples: the slack before the guard page varies */
        size_t pages = fuzz_producer_size(fp, 1, 16);
        size_t delta = fuzz_producer_size(fp, 0, 255);
        return pages * 4096 - 128 + delta;
    }
    case 3: return fuzz_producer_size(fp, 1, 65536);
    case 4: return fuzz_producer_size(fp, 1, (size_t)1 << 20);
    default: return fuzz_producer_size(fp, 1, 8192);
    }
}

/* q_alloc_arena's argument errors: each must leave the context empty. */
static void check_bad_arena_args(unsigned which)
{
    q_context ctx = {0};
    arena_shadow none = {0};
    switch (which) {
    case 1:
        FUZZ_ASSERT(q_alloc_arena(&ctx, 0) == Q_ERR_INVALID_ARG);
        break;
    case 2:
        FUZZ_ASSERT(q_alloc_arena(&ctx, Q_MAX_REGION_BYTES + 1) == Q_ERR_OVERFLOW);
        break;
    case 3:
        FUZZ_ASSERT(q_alloc_arena(&ctx, SIZE_MAX) == Q_ERR_OVERFLOW);
        break;
    case 4:
        FUZZ_ASSERT(q_alloc_arena(NULL, 64) == Q_ERR_INVALID_ARG);
        break;
    default:
        return;
    }
    shadow_check_ctx(&ctx, &none);
    FUZZ_ASSERT(q_arena_alloc(&ctx, 1) == NULL);
    FUZZ_ASSERT(q_arena_alloc(&ctx, 0) == NULL);
    FUZZ_ASSERT(q_arena_set_base(&ctx) == Q_ERR_INVALID_STATE);
    q_free_memory(&ctx);
}

static size_t draw_request(fuzz_producer *fp, unsigned cls, const arena_shadow *s)
{
    size_t avail = s->size - s->head;
    switch (cls) {
    case 0: return 0;
    case 1: return 1;
    case 2: return (size_t)Q_ALIGN * fuzz_producer_size(fp, 1, 64);
    case 3: return 2 * fuzz_producer_size(fp, 0, 2047) + 1;
    case 4: return avail;
    case 5: { size_t d = fuzz_producer_size(fp, 0, 127); return avail > d ? avail - d : 0; }
    case 6: return avail + fuzz_producer_size(fp, 1, 128);
    case 7: return SIZE_MAX - fuzz_producer_size(fp, 0, 127);
    case 8: return fuzz_producer_size(fp, 0, s->size);
    case 9: return (size_t)fuzz_producer_range(fp, 0, UINT64_MAX);
    default: /* one byte either side of a Q_ALIGN boundary */
        return (size_t)Q_ALIGN * fuzz_producer_size(fp, 0, 64) + (fuzz_producer_bool(fp) ? 1 : (size_t)-1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_producer fp = fuzz_producer_make(data, size);
    q_context ctx = {0};
    arena_shadow s = {0};

    unsigned inject = fuzz_producer_u32(&fp, 0, 3);
    check_bad_arena_args(fuzz_producer_u32(&fp, 0, 7));
    size_t bytes = draw_arena_bytes(&fp);

    /* No arena yet: every request fails, whatever its size. */
    FUZZ_ASSERT(q_arena_alloc(NULL, bytes) == NULL);
    (void)shadow_alloc(&ctx, &s, bytes & 1 ? bytes : 0);

    if (inject) {
        /* q_alloc_arena makes two OS calls (mmap, mprotect): failing either must leave
         * the context untouched; a later position never fires. */
        q_test_fail_nth_os_call(inject);
        q_error_code rc = q_alloc_arena(&ctx, bytes);
        int fired = q_test_failure_fired();
        q_test_fail_nth_os_call(0);
        if (fired) {
            FUZZ_ASSERT_MSG(rc == Q_ERR_ALLOC, "injected failure %u gave %d", inject, (int)rc);
            shadow_check_ctx(&ctx, &s);
        } else {
            FUZZ_ASSERT(rc == Q_OK);
            q_free_memory(&ctx);
        }
    }
    FUZZ_ASSERT(q_alloc_arena(&ctx, bytes) == Q_OK);
    shadow_twin_alloc_arena(&s, bytes, Q_OK);
    int ok;
    s.exists = 1;
    s.size = shadow_round(bytes, &ok);
    FUZZ_ASSERT(ok);
    shadow_check_ctx(&ctx, &s);
    shadow_check_free_poisoned(&ctx, &s);
    shadow_check_guard_page(&ctx);
    FUZZ_ASSERT(q_alloc_arena(&ctx, bytes) == Q_ERR_INVALID_STATE); /* a second one: refused */
    shadow_twin_alloc_arena(&s, bytes, Q_ERR_INVALID_STATE);
    shadow_check_ctx(&ctx, &s);

    for (unsigned op = 0; op < MAX_OPS && fuzz_producer_remaining(&fp) > 0; op++) {
        unsigned cls = fuzz_producer_u32(&fp, 0, 11);
        if (cls == 11 || s.n_blocks == SHADOW_MAX_BLOCKS) {
            shadow_reset(&ctx, &s);
            continue;
        }
        (void)shadow_alloc(&ctx, &s, draw_request(&fp, cls, &s));
    }

    shadow_verify_all(&ctx, &s);
    shadow_check_free_poisoned(&ctx, &s);
    shadow_reset(&ctx, &s);
    q_free_memory(&ctx);
    shadow_forget(&s);
    FUZZ_ASSERT(ctx.scratch_buffer == NULL && ctx.scratch_size == 0 && ctx.scratch_head == 0);
    q_free_memory(&ctx); /* twice is safe */
    return 0;
}
