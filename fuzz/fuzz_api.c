/*
 * fuzz_api: the public API driven with drawn arguments, in drawn order.
 *
 * The other targets feed the library well-formed calls with hostile DATA; this one makes
 * hostile CALLS: positions, token ids, sizes, options, NULL pointers, calls out of order
 * (q_forward before q_state_init, after q_state_free, twice-freed states, a second state on
 * a context that already has one, arena calls on a state's arena). For every call the
 * target computes, from the contract in the headers alone, what must happen:
 *   - an argument outside the documented domain: exactly the documented error code, with
 *     the documented side effects (outputs zeroed or left untouched);
 *   - arguments inside the domain: success (or the one resource error the contract allows,
 *     e.g. Q_ERR_ARENA_OOM when the caller has taken the state's arena space);
 * and checks the memory core's visible state (q_context fields, read-only) against a shadow
 * kept by the target after every call. Never a crash, never a silent success.
 * The encode, decode and generate operations reach both forms of each entry point:
 * q_encode / q_encode_ex (drawn flags, unknown bits included), q_decoder_next /
 * q_decoder_piece, q_generate / q_generate_ex (Q_ENCODE_SPECIAL, none, or a refused flag).
 *
 * The world of one input (all locals, nothing survives the input):
 *   - a tiny llama2.c v0 checkpoint and tokenizer.bin, generated in code (deterministic,
 *     the same for every input) and parsed with q_model_parse / q_tokenizer_parse;
 *   - two contexts, two state slots, one encoder, one decoder, one sampler.
 * Input layout: everything is drawn from the TAIL with fuzz_producer: an operation number,
 * then that operation's arguments, repeated until the input is used up (at most MAX_OPS).
 *
 * What is out of the documented domain and therefore never called: re-initializing a live
 * state/encoder/decoder without freeing it (the old one leaks), freeing the KV cache or
 * arena of a context under a live state, passing arrays shorter than the sizes given,
 * q_arena_reset(NULL) in a release-arena build.
 */
#include <math.h>

#include "fuzz_helpers.h"
#include "qorus_infer.h"

#define MAX_OPS 48

/* ---- the built-in model: dim 8, 2 heads of 4, 1 KV head, 2 layers, seq_len 6 ---- */

enum { DIM = 8, HIDDEN = 12, LAYERS = 2, HEADS = 2, KV_HEADS = 1, SEQ_LEN = 6 };
#define HEAD_SIZE (DIM / HEADS)
#define KV_DIM (KV_HEADS * HEAD_SIZE)

static const char *const pieces[] = {
    "<unk>", "\n<s>\n", "\n</s>\n", " ", "a", "b", "c", "e", "t", "h", "ab", "ba", " a",
    "th", "he", " the", "abc", "\xc3\xa9", "\xe2\x82\xac", "\n", "x", "y", "z", "aa", "!",
    "?", " t", "ee", "\xf0\x9f\x98\x80", "<0x41>", "w1", "w2",
};
#define VOCAB (sizeof pieces / sizeof pieces[0])

#define MODEL_FLOATS                                                                       \
    (VOCAB * DIM + LAYERS * (2 * DIM + 2 * DIM * DIM + 2 * KV_DIM * DIM + 3 * HIDDEN * DIM) + \
     DIM + 2 * SEQ_LEN * HEAD_SIZE / 2)
#define MODEL_BYTES (7 * 4 + MODEL_FLOATS * 4)
#define MODEL_SLACK 64 /* readable bytes after the image, for "len too long" */

static unsigned char model_image[MODEL_BYTES + MODEL_SLACK];
static unsigned char tok_image[4 + VOCAB * (8 + 8)];
static size_t tok_image_len;

static void put_i32(unsigned char *p, int32_t v)
{
    memcpy(p, &v, 4);
}

static void put_f32(unsigned char *p, float v)
{
    memcpy(p, &v, 4);
}

/* Generated once; a pure function of nothing, so every input sees the same files. */
static void build_images(void)
{
    if (tok_image_len != 0)
        return;
    const int32_t header[7] = {DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, (int32_t)VOCAB, SEQ_LEN};
    for (int i = 0; i < 7; i++)
        put_i32(model_image + 4 * i, header[i]);
    /* Norm weights (rms_att, rms_ffn, rms_final) are 1, everything else small. */
    size_t norm_att = VOCAB * DIM;
    size_t norm_ffn = norm_att + LAYERS * (DIM + 2 * DIM * DIM + 2 * KV_DIM * DIM);
    size_t norm_final = norm_ffn + LAYERS * (DIM + 3 * HIDDEN * DIM);
    for (size_t i = 0; i < MODEL_FLOATS; i++) {
        float v = (float)((int)((i * 2654435761u) >> 24 & 63) - 32) / 64.0f;
        if ((i >= norm_att && i < norm_att + LAYERS * DIM) ||
            (i >= norm_ffn && i < norm_ffn + LAYERS * DIM) ||
            (i >= norm_final && i < norm_final + DIM))
            v = 1.0f;
        put_f32(model_image + 28 + 4 * i, v);
    }
    size_t off = 4, max_len = 0;
    for (size_t id = 0; id < VOCAB; id++) {
        size_t n = strlen(pieces[id]);
        put_f32(tok_image + off, (float)(id % 7) - 3.0f);
        put_i32(tok_image + off + 4, (int32_t)n);
        memcpy(tok_image + off + 8, pieces[id], n);
        off += 8 + n;
        if (n > max_len)
            max_len = n;
    }
    put_i32(tok_image, (int32_t)max_len);
    tok_image_len = off;
}

/* ---- the shadow of a context, kept from the contract alone ---- */

typedef struct shadow {
    int has_kv, has_arena;
    size_t size, head, base; /* arena: usable bytes (a multiple of Q_ALIGN), head, base */
    int owner;               /* state slot using this context, -1 for none */
} shadow;

typedef struct world {
    q_model model;
    q_tokenizer tok;
    q_context ctx[2];
    shadow sh[2];
    q_state st[2];
    int st_live[2];
    int st_ctx[2];          /* context index of a live state */
    size_t st_init_head[2]; /* the arena head right after q_state_init: logits only */
    q_encoder enc;
    int enc_live;
    q_decoder dec;
    int dec_live;
    q_sampler smp;
    int smp_live;
} world;

static size_t align_up(size_t n, int *ok)
{
    if (n > SIZE_MAX - (Q_ALIGN - 1)) {
        *ok = 0;
        return 0;
    }
    *ok = 1;
    return (n + Q_ALIGN - 1) & ~(size_t)(Q_ALIGN - 1);
}

static void check_ctx(const world *w, int i)
{
    const q_context *c = &w->ctx[i];
    const shadow *s = &w->sh[i];
    FUZZ_ASSERT_MSG((c->kv_buffer != NULL) == s->has_kv, "ctx %d: kv_buffer %p, shadow %d", i,
                    c->kv_buffer, s->has_kv);
    FUZZ_ASSERT_MSG((c->scratch_buffer != NULL) == s->has_arena, "ctx %d: arena %p, shadow %d",
                    i, (void *)c->scratch_buffer, s->has_arena);
    if (s->has_arena) {
        FUZZ_ASSERT_MSG(c->scratch_size == s->size && c->scratch_head == s->head &&
                            c->scratch_base_offset == s->base,
                        "ctx %d: size/head/base %zu/%zu/%zu, shadow %zu/%zu/%zu", i,
                        c->scratch_size, c->scratch_head, c->scratch_base_offset, s->size,
                        s->head, s->base);
        FUZZ_ASSERT(((uintptr_t)c->scratch_buffer & (Q_ALIGN - 1)) == 0);
    } else {
        FUZZ_ASSERT(c->scratch_size == 0 && c->scratch_head == 0 && c->scratch_base_offset == 0);
    }
    if (!s->has_kv)
        FUZZ_ASSERT(c->kv_size == 0);
    FUZZ_ASSERT(q_arena_used(c) == (s->has_arena ? s->head : 0));
}

#define EXPECT(rc, want, what)                                                            \
    FUZZ_ASSERT_MSG((rc) == (want), "%s: returned %s, the contract says %s", what,       \
                    q_error_name(rc), q_error_name(want))

/* ---- drawn values ---- */

/* A context index or NULL: 0, 1, or 2 = NULL (one draw in 8). */
static q_context *draw_ctx(fuzz_producer *p, world *w, int *index)
{
    unsigned v = fuzz_producer_u32(p, 0, 7);
    *index = v == 7 ? -1 : (int)(v & 1);
    return *index < 0 ? NULL : &w->ctx[*index];
}

static q_state *draw_state(fuzz_producer *p, world *w, int *index)
{
    unsigned v = fuzz_producer_u32(p, 0, 7);
    *index = v == 7 ? -1 : (int)(v & 1);
    return *index < 0 ? NULL : &w->st[*index];
}

/* Sizes around the interesting boundaries of `avail`. */
static size_t draw_size(fuzz_producer *p, size_t avail)
{
    switch (fuzz_producer_u32(p, 0, 11)) {
    case 0: return 0;
    case 1: return 1;
    case 2: return Q_ALIGN - 1;
    case 3: return Q_ALIGN;
    case 4: return Q_ALIGN + 1;
    case 5: return avail;
    case 6: return avail + 1;
    case 7: return avail > Q_ALIGN ? avail - Q_ALIGN + 1 : 0;
    case 8: return SIZE_MAX;
    case 9: return SIZE_MAX - (Q_ALIGN - 2);
    case 10: return Q_MAX_REGION_BYTES + fuzz_producer_size(p, 0, 1);
    default: return fuzz_producer_size(p, 0, 4096);
    }
}

static uint32_t draw_token(fuzz_producer *p)
{
    switch (fuzz_producer_u32(p, 0, 15)) {
    case 0: return (uint32_t)VOCAB;
    case 1: return (uint32_t)VOCAB + 1;
    case 2: return UINT32_MAX;
    default: return fuzz_producer_u32(p, 0, (uint32_t)VOCAB - 1);
    }
}

static size_t draw_pos(fuzz_producer *p)
{
    switch (fuzz_producer_u32(p, 0, 11)) {
    case 0: return SEQ_LEN;
    case 1: return SEQ_LEN + 1;
    case 2: return SIZE_MAX;
    case 3: return SIZE_MAX - 1;
    default: return fuzz_producer_size(p, 0, SEQ_LEN - 1);
    }
}

static float draw_float(fuzz_producer *p, int kind)
{
    static const float temps[] = {0.0f, 0.5f, 1.0f, 2.0f, -1.0f, -0.0f, NAN, INFINITY, -INFINITY,
                                  1e-30f};
    static const float topps[] = {0.0f, 0.5f, 0.9f, 1.0f, -1.0f, 2.0f, NAN, INFINITY, 0.999f};
    if (kind == 0)
        return temps[fuzz_producer_u32(p, 0, sizeof temps / sizeof temps[0] - 1)];
    return topps[fuzz_producer_u32(p, 0, sizeof topps / sizeof topps[0] - 1)];
}

static void check_logits(const float *l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        FUZZ_ASSERT_MSG(isfinite(l[i]), "logit %zu is %g", i, (double)l[i]);
}

/* Whether the caller has taken arena space of a live state (allocations above its base or
 * a moved base): the forward pass may then run out of arena (Q_ERR_ARENA_OOM). */
static int state_arena_taken(const world *w, int s)
{
    const shadow *sh = &w->sh[w->st_ctx[s]];
    return sh->head != w->st_init_head[s] || sh->base != w->st_init_head[s];
}

/* After a call on a live state: a call that ran (success, or q_generate stopped by its
 * callback) rewound the arena to its base; one that ran out of arena may leave the head
 * anywhere inside; one refused for its arguments changed nothing. */
static void resync_after_call(world *w, int ci, q_error_code rc)
{
    shadow *sh = &w->sh[ci];
    if (rc == Q_OK || rc == Q_ERR_IO) {
        sh->head = sh->base;
    } else if (rc == Q_ERR_ARENA_OOM) {
        size_t head = w->ctx[ci].scratch_head;
        FUZZ_ASSERT(head >= sh->base && head <= sh->size && head % Q_ALIGN == 0);
        sh->head = head;
    }
}

/* ---- operations ---- */

static void op_alloc_region(fuzz_producer *p, world *w, int kv)
{
    int ci;
    q_context *c = draw_ctx(p, w, &ci);
    size_t bytes = draw_size(p, fuzz_producer_size(p, 1, 8192));
    q_error_code want;
    if (c == NULL || bytes == 0)
        want = Q_ERR_INVALID_ARG;
    else if (kv ? w->sh[ci].has_kv : w->sh[ci].has_arena)
        want = Q_ERR_INVALID_STATE;
    else if (bytes > Q_MAX_REGION_BYTES)
        want = Q_ERR_OVERFLOW;
    else if (bytes > ((size_t)1 << 24))
        return; /* in the domain but too large to map per input */
    else
        want = Q_OK;
    q_context before = c ? *c : (q_context){0};
    q_error_code rc = kv ? q_alloc_kv_cache(c, bytes) : q_alloc_arena(c, bytes);
    EXPECT(rc, want, kv ? "q_alloc_kv_cache" : "q_alloc_arena");
    if (rc != Q_OK) {
        if (c != NULL)
            FUZZ_ASSERT_MSG(memcmp(&before, c, sizeof before) == 0, "failed call changed ctx");
        return;
    }
    if (kv) {
        w->sh[ci].has_kv = 1;
        FUZZ_ASSERT(c->kv_size == bytes);
        unsigned char *b = c->kv_buffer;
        FUZZ_ASSERT(b[0] == 0 && b[bytes - 1] == 0); /* zero pages */
        b[bytes - 1] = 1;
    } else {
        int ok;
        w->sh[ci].has_arena = 1;
        w->sh[ci].size = align_up(bytes, &ok);
        w->sh[ci].head = w->sh[ci].base = 0;
    }
}

static void op_arena_alloc(fuzz_producer *p, world *w)
{
    int ci;
    q_context *c = draw_ctx(p, w, &ci);
    shadow *sh = ci >= 0 ? &w->sh[ci] : NULL;
    size_t avail = sh && sh->has_arena ? sh->size - sh->head : 0;
    size_t size = draw_size(p, avail);
    int ok;
    size_t rounded = align_up(size, &ok);
    int want_null = c == NULL || !sh->has_arena || !ok || rounded > avail;
    unsigned char *b = q_arena_alloc(c, size);
    FUZZ_ASSERT_MSG((b == NULL) == want_null,
                    "q_arena_alloc(%zu) with %zu available returned %p", size, avail, (void *)b);
    if (b == NULL)
        return;
    FUZZ_ASSERT(b == c->scratch_buffer + sh->head);
    FUZZ_ASSERT(((uintptr_t)b & (Q_ALIGN - 1)) == 0);
    sh->head += rounded;
    if (size > 0) {
        b[0] = 0x11;
        b[size - 1] = 0x22;
    }
}

/* q_arena_reset, q_arena_set_base, q_kv_cache_clear: fine on a state's context too. */
static void op_arena_misc(fuzz_producer *p, world *w)
{
    int ci;
    q_context *c = draw_ctx(p, w, &ci);
    shadow *sh = ci >= 0 ? &w->sh[ci] : NULL;
    switch (fuzz_producer_u32(p, 0, 3)) {
    case 0:
        if (c == NULL) {
#if Q_ARENA_INSTRUMENTED
            q_arena_reset(NULL); /* instrumented builds ignore NULL */
#endif
            return;
        }
        if (fuzz_producer_bool(p))
            q_arena_reset(c);
        else
            q_arena_reset_extern(c);
        if (sh->has_arena)
            sh->head = sh->base;
        return;
    case 1: {
        q_error_code rc = q_arena_set_base(c);
        EXPECT(rc, c == NULL ? Q_ERR_INVALID_ARG : !sh->has_arena ? Q_ERR_INVALID_STATE : Q_OK,
               "q_arena_set_base");
        if (rc == Q_OK)
            sh->base = sh->head;
        return;
    }
    case 2: {
        q_error_code rc = q_kv_cache_clear(c);
        EXPECT(rc, c == NULL ? Q_ERR_INVALID_ARG : !sh->has_kv ? Q_ERR_INVALID_STATE : Q_OK,
               "q_kv_cache_clear");
        if (rc == Q_OK)
            FUZZ_ASSERT(((unsigned char *)c->kv_buffer)[c->kv_size - 1] == 0);
        return;
    }
    default:
        FUZZ_ASSERT(q_mapping_status(NULL) == Q_ERR_INVALID_ARG);
        FUZZ_ASSERT(q_arena_used(NULL) == 0);
        if (c != NULL)
            EXPECT(q_mapping_status(c), Q_OK, "q_mapping_status");
        return;
    }
}

/* The release calls: only on contexts no live state uses. */
static void op_free(fuzz_producer *p, world *w)
{
    int ci;
    q_context *c = draw_ctx(p, w, &ci);
    unsigned which = fuzz_producer_u32(p, 0, 2);
    if (ci >= 0 && w->sh[ci].owner >= 0)
        return;
    if (which == 2) {
        q_free_memory(c);
        q_free_memory(c); /* twice: safe */
        if (c != NULL) {
            static const q_context zero;
            FUZZ_ASSERT(memcmp(c, &zero, sizeof zero) == 0);
            w->sh[ci].has_kv = w->sh[ci].has_arena = 0;
            w->sh[ci].size = w->sh[ci].head = w->sh[ci].base = 0;
        }
        return;
    }
    q_error_code rc = which ? q_free_arena(c) : q_free_kv_cache(c);
    EXPECT(rc, c == NULL ? Q_ERR_INVALID_ARG : Q_OK, which ? "q_free_arena" : "q_free_kv_cache");
    if (c == NULL)
        return;
    if (which) {
        w->sh[ci].has_arena = 0;
        w->sh[ci].size = w->sh[ci].head = w->sh[ci].base = 0;
    } else {
        w->sh[ci].has_kv = 0;
    }
}

static void op_init_memory(fuzz_producer *p, world *w)
{
    int ci;
    q_context *c = draw_ctx(p, w, &ci);
    const char *path = fuzz_producer_bool(p) ? "/nonexistent/qorus-fuzz-api" : NULL;
    int strategy = (int)fuzz_producer_u32(p, 0, 4) - 1; /* -1 .. 3 */
    q_error_code want = c == NULL || path == NULL                  ? Q_ERR_INVALID_ARG
                        : strategy < 0 || strategy > Q_MMAP_READ ? Q_ERR_INVALID_ARG
                                                                 : Q_ERR_FILE_OPEN;
    q_error_code rc = q_init_memory_ex(c, path, (q_mmap_strategy)strategy);
    EXPECT(rc, want, "q_init_memory_ex");
    if (c != NULL && strategy == Q_MMAP_LAZY)
        EXPECT(q_init_memory(c, path), want, "q_init_memory");
    if (c != NULL)
        FUZZ_ASSERT(c->weights_mmap == NULL && c->weights_size == 0);
}

static void op_state_init(fuzz_producer *p, world *w)
{
    int si, ci;
    q_state *st = draw_state(p, w, &si);
    q_context *c = draw_ctx(p, w, &ci);
    if (si >= 0 && w->st_live[si])
        return; /* re-initializing a live state leaks it: outside the domain */

    /* the model: NULL, valid, or broken in one way */
    q_layer bad_layers[LAYERS];
    memcpy(bad_layers, w->model.layers, sizeof bad_layers);
    q_model bad = w->model;
    const q_model *m = &w->model;
    q_error_code model_err = Q_OK;
    switch (fuzz_producer_u32(p, 0, 15)) {
    case 0: m = NULL; break;
    case 1: bad.config.vocab_size = 0; m = &bad; model_err = Q_ERR_INVALID_CONFIG; break;
    case 2: bad.config.seq_len = (size_t)Q_MAX_SEQ_LEN + 1; m = &bad; model_err = Q_ERR_INVALID_CONFIG; break;
    case 3: bad.config.n_kv_heads = 3; m = &bad; model_err = Q_ERR_INVALID_CONFIG; break;
    case 7: /* kv heads within the head count but not dividing it (head size 2 stays even) */
        bad.config.n_heads = 4;
        bad.config.n_kv_heads = 3;
        m = &bad;
        model_err = Q_ERR_INVALID_CONFIG;
        break;
    case 4: bad.classifier.rows++; m = &bad; model_err = Q_ERR_BAD_SHAPE; break;
    case 5:
        bad_layers[LAYERS - 1].wq.type = (q_tensor_type)99;
        bad.layers = bad_layers;
        m = &bad;
        model_err = Q_ERR_UNSUPPORTED_TYPE;
        break;
    case 6:
        bad_layers[0].w2.cols = HIDDEN + 1;
        bad.layers = bad_layers;
        m = &bad;
        model_err = Q_ERR_BAD_SHAPE;
        break;
    default: break;
    }

    static const size_t threads[] = {0, 1, 2, 3, 1, 2, Q_MAX_THREADS, Q_MAX_THREADS + 1, SIZE_MAX};
    static const size_t batches[] = {0, 1, 2, 3, SEQ_LEN, SEQ_LEN + 1, Q_MAX_BATCH,
                                     Q_MAX_BATCH + 1, SIZE_MAX};
    static const size_t min_work[] = {0, 1, SIZE_MAX};
    q_state_options o = {0};
    o.n_threads = threads[fuzz_producer_u32(p, 0, 8)];
    if (o.n_threads == Q_MAX_THREADS && fuzz_producer_u32(p, 0, 3) != 0)
        o.n_threads = 2; /* the full pool is slow to start: one draw in four */
    o.max_batch = batches[fuzz_producer_u32(p, 0, 8)];
    /* the kernel table: one byte, byte % 3 = 0 the default (NULL), 1 the reference, 2 an
     * optimized table, (byte / 3) picking among those this CPU runs (q_kernels_optimized:
     * every one is reached; none here: the default). One byte as before, so the corpus
     * decodes as it did. */
    unsigned kb = fuzz_producer_u32(p, 0, 255);
    const q_kernels *optimized[4];
    size_t n_opt = q_kernels_optimized(optimized, 4);
    if (n_opt > 4)
        n_opt = 4;
    o.kernels = kb % 3 == 0   ? NULL
                : kb % 3 == 1 ? q_kernels_scalar()
                : n_opt == 0  ? NULL
                              : optimized[(kb / 3) % n_opt];
    o.parallel_min_work = min_work[fuzz_producer_u32(p, 0, 2)];
    unsigned how = fuzz_producer_u32(p, 0, 3); /* 0: q_state_init, 1: NULL options, else opts */
    const q_state_options *opt = how == 1 ? NULL : &o;
    if (how == 0)
        memset(&o, 0, sizeof o);

    size_t n_threads = opt && opt->n_threads ? opt->n_threads : 1;
    size_t max_batch = opt && opt->max_batch ? opt->max_batch : Q_DEFAULT_BATCH;
    q_error_code want;
    if (st == NULL || c == NULL || m == NULL)
        want = Q_ERR_INVALID_ARG;
    else if (n_threads > Q_MAX_THREADS || max_batch > Q_MAX_BATCH)
        want = Q_ERR_INVALID_ARG;
    else if (model_err != Q_OK)
        want = model_err;
    else if (w->sh[ci].has_kv || w->sh[ci].has_arena)
        want = Q_ERR_INVALID_STATE;
    else
        want = Q_OK;

    q_context before = c ? *c : (q_context){0};
    q_error_code rc = how == 0 ? q_state_init(st, c, m) : q_state_init_ex(st, c, m, opt);
    EXPECT(rc, want, "q_state_init_ex");
    if (rc != Q_OK) {
        if (st != NULL) {
            static const q_state zero;
            FUZZ_ASSERT_MSG(memcmp(st, &zero, sizeof zero) == 0, "failed init left st set");
        }
        if (c != NULL)
            FUZZ_ASSERT_MSG(memcmp(&before, c, sizeof before) == 0, "failed init changed ctx");
        return;
    }
    FUZZ_ASSERT(st->model == m && st->ctx == c && st->n_threads == n_threads);
    FUZZ_ASSERT(st->max_batch == (max_batch < SEQ_LEN ? max_batch : SEQ_LEN));
    FUZZ_ASSERT(st->kernels != NULL && st->logits != NULL);
    FUZZ_ASSERT(st->kernels == (opt && opt->kernels ? opt->kernels : q_kernels_select()));
    FUZZ_ASSERT((st->pool != NULL) == (n_threads > 1));
    int ok;
    shadow *sh = &w->sh[ci];
    sh->has_kv = sh->has_arena = 1;
    sh->size = align_up(st->arena_bytes, &ok);
    sh->head = sh->base = align_up(VOCAB * sizeof(float), &ok); /* the persistent logits */
    sh->owner = si;
    w->st_live[si] = 1;
    w->st_ctx[si] = ci;
    w->st_init_head[si] = sh->head;
    FUZZ_ASSERT(c->kv_size == st->kv_bytes &&
                st->kv_bytes == (size_t)LAYERS * SEQ_LEN * KV_DIM * 2 * sizeof(float));
    for (size_t i = 0; i < VOCAB; i++)
        FUZZ_ASSERT(st->logits[i] == 0.0f);
}

static void op_state_free(fuzz_producer *p, world *w)
{
    int si;
    q_state *st = draw_state(p, w, &si);
    q_state_free(st);
    if (fuzz_producer_bool(p))
        q_state_free(st); /* twice: safe */
    if (st == NULL)
        return;
    static const q_state zero;
    FUZZ_ASSERT(memcmp(st, &zero, sizeof zero) == 0);
    if (w->st_live[si]) {
        shadow *sh = &w->sh[w->st_ctx[si]];
        sh->has_kv = sh->has_arena = 0;
        sh->size = sh->head = sh->base = 0;
        sh->owner = -1;
        w->st_live[si] = 0;
    }
}

/* q_forward, q_forward_batch, q_forward_tokens with drawn positions, ids, counts, outputs. */
static void op_forward(fuzz_producer *p, world *w)
{
    int si;
    q_state *st = draw_state(p, w, &si);
    int live = si >= 0 && w->st_live[si];
    unsigned kind = fuzz_producer_u32(p, 0, 2);
    uint32_t tokens[16];
    size_t n = 1;
    if (kind != 0) {
        switch (fuzz_producer_u32(p, 0, 7)) {
        case 0: n = 0; break;
        case 1: n = SEQ_LEN; break;
        case 2: n = SEQ_LEN + 1; break;
        case 3: n = 16; break;
        default: n = fuzz_producer_size(p, 1, SEQ_LEN); break;
        }
    }
    for (size_t i = 0; i < 16; i++)
        tokens[i] = i < n ? draw_token(p) : 0;
    int bad_token = 0;
    for (size_t i = 0; i < n; i++)
        bad_token |= tokens[i] >= VOCAB;
    const uint32_t *tp = fuzz_producer_u32(p, 0, 15) == 0 && kind != 0 ? NULL : tokens;
    size_t pos = kind == 2 ? 0 : draw_pos(p);
    int null_out = fuzz_producer_u32(p, 0, 3) == 0;

    q_error_code want;
    if (kind == 2) { /* q_forward_tokens */
        if (!live || tp == NULL || n == 0)
            want = Q_ERR_INVALID_ARG;
        else if (n > SEQ_LEN)
            want = Q_ERR_INVALID_CONFIG;
        else
            want = bad_token ? Q_ERR_BAD_TOKEN : Q_OK;
    } else {
        if (!live || tp == NULL || n == 0)
            want = Q_ERR_INVALID_ARG;
        else if (bad_token)
            want = Q_ERR_BAD_TOKEN;
        else if (pos >= SEQ_LEN || n > SEQ_LEN - pos)
            want = Q_ERR_INVALID_CONFIG;
        else
            want = Q_OK;
    }

    static float sentinel_obj;
    float *sentinel = &sentinel_obj;
    float *logits = sentinel;
    float out[VOCAB + 1];
    for (size_t i = 0; i <= VOCAB; i++)
        out[i] = -7.0f;
    q_error_code rc;
    if (kind == 0)
        rc = q_forward(st, tokens[0], pos, null_out ? NULL : &logits);
    else if (kind == 1)
        rc = q_forward_batch(st, tp, n, pos, null_out ? NULL : &logits);
    else
        rc = q_forward_tokens(st, tp, n, null_out ? NULL : out);

    if (want == Q_OK && rc == Q_ERR_ARENA_OOM && state_arena_taken(w, si))
        want = Q_ERR_ARENA_OOM; /* the caller took the state's arena space */
    EXPECT(rc, want, kind == 0 ? "q_forward" : kind == 1 ? "q_forward_batch" : "q_forward_tokens");
    FUZZ_ASSERT(out[VOCAB] == -7.0f);
    if (rc != Q_OK) {
        FUZZ_ASSERT_MSG(logits == sentinel, "*logits written on error");
        for (size_t i = 0; i < VOCAB; i++)
            FUZZ_ASSERT_MSG(out[i] == -7.0f, "logits_out written on error");
    } else {
        if (kind == 2) {
            if (!null_out) {
                check_logits(out, VOCAB);
                FUZZ_ASSERT(memcmp(out, st->logits, sizeof(float) * VOCAB) == 0);
            }
        } else {
            FUZZ_ASSERT(logits == (null_out ? sentinel : st->logits));
        }
        check_logits(st->logits, VOCAB);
    }
    if (live)
        resync_after_call(w, w->st_ctx[si], rc);
}

static void op_tensor_row(fuzz_producer *p, world *w)
{
    q_tensor t;
    const q_tensor *tp = &t;
    q_error_code kind_err = Q_OK;
    switch (fuzz_producer_u32(p, 0, 7)) {
    case 0: tp = NULL; break;
    case 1: t = w->model.layers[fuzz_producer_u32(p, 0, LAYERS - 1)].wq; break;
    case 2: t = w->model.final_norm; break;
    case 3: memset(&t, 0, sizeof t); break; /* no data */
    case 4: t = w->model.token_embedding; t.data = NULL; break;
    case 5: t = w->model.token_embedding; t.type = (q_tensor_type)7; kind_err = Q_ERR_UNSUPPORTED_TYPE; break;
    default: t = w->model.token_embedding; break;
    }
    size_t rows = tp ? t.rows : 0;
    size_t row;
    switch (fuzz_producer_u32(p, 0, 5)) {
    case 0: row = rows; break;
    case 1: row = rows + 1; break;
    case 2: row = SIZE_MAX; break;
    case 3: row = rows ? rows - 1 : 0; break;
    default: row = fuzz_producer_size(p, 0, rows ? rows - 1 : 0); break;
    }
    float buf[DIM + 1];
    for (size_t i = 0; i <= DIM; i++)
        buf[i] = -7.0f;
    float *out = fuzz_producer_u32(p, 0, 7) == 0 ? NULL : buf;
    q_error_code want = tp == NULL || out == NULL || t.data == NULL || row >= rows
                            ? Q_ERR_INVALID_ARG
                            : kind_err;
    q_error_code rc = q_tensor_read_row(tp, row, out);
    EXPECT(rc, want, "q_tensor_read_row");
    FUZZ_ASSERT(buf[DIM] == -7.0f);
    if (rc != Q_OK) {
        for (size_t i = 0; i < DIM; i++)
            FUZZ_ASSERT_MSG(buf[i] == -7.0f, "q_tensor_read_row wrote on error");
        return;
    }
    /* the F32 rows of the image, read back independently */
    const unsigned char *base = t.data;
    for (size_t i = 0; i < t.cols; i++) {
        float v;
        memcpy(&v, base + 4 * (row * t.cols + i), 4);
        FUZZ_ASSERT(memcmp(&v, &buf[i], 4) == 0);
    }
}

static void op_model_parse(fuzz_producer *p, world *w)
{
    q_model m;
    q_tokenizer t;
    q_diag d;
    int null_model = fuzz_producer_u32(p, 0, 3) == 0;
    int null_buf = fuzz_producer_u32(p, 0, 3) == 0;
    unsigned lk = fuzz_producer_u32(p, 0, 3);
    size_t len = lk == 0 ? MODEL_BYTES : lk == 1 ? MODEL_BYTES - fuzz_producer_size(p, 1, MODEL_BYTES)
                 : lk == 2 ? MODEL_BYTES + fuzz_producer_size(p, 1, MODEL_SLACK) : MODEL_BYTES;
    q_error_code rc = q_model_parse(null_model ? NULL : &m, fuzz_producer_bool(p) ? &t : NULL,
                                    null_buf ? NULL : model_image, len, &d);
    if (null_model || null_buf) {
        EXPECT(rc, Q_ERR_INVALID_ARG, "q_model_parse");
        if (!null_model) {
            static const q_model zero;
            FUZZ_ASSERT(memcmp(&m, &zero, sizeof zero) == 0);
        }
        return;
    }
    if (len == MODEL_BYTES) {
        EXPECT(rc, Q_OK, "q_model_parse");
        FUZZ_ASSERT(memcmp(&m.config, &w->model.config, sizeof m.config) == 0);
        q_model_free(&m);
        q_model_free(&m);
        return;
    }
    if (len > MODEL_BYTES) {
        EXPECT(rc, Q_ERR_INVALID_CONFIG, "q_model_parse (trailing bytes)");
        FUZZ_ASSERT(strcmp(d.field, "trailing_bytes") == 0);
    } else {
        FUZZ_ASSERT_MSG(rc < 0, "a truncated image of %zu bytes accepted", len);
    }
    static const q_model zero;
    FUZZ_ASSERT(memcmp(&m, &zero, sizeof zero) == 0);
}

/* q_model_load: NULL arguments, a missing file, an unknown strategy, a valid or a truncated
 * file, into a fresh context or one that already holds a KV cache or arena (refused: the
 * load must not release regions it did not create). */
static void op_model_load(fuzz_producer *p, world *w)
{
    int ci;
    q_context *c = draw_ctx(p, w, &ci);
    q_model m;
    q_tokenizer t;
    q_diag d;
    unsigned fk = fuzz_producer_u32(p, 0, 3); /* 0 NULL, 1 missing, 2 valid, 3 truncated */
    int strategy = fuzz_producer_u32(p, 0, 7) == 0 ? 3 : (int)fuzz_producer_u32(p, 0, 2);
    int null_model = fuzz_producer_u32(p, 0, 7) == 0;
    size_t file_bytes = fk == 2 ? MODEL_BYTES : MODEL_BYTES / 2;
    const char *path = fk == 0   ? NULL
                       : fk == 1 ? "/nonexistent/qorus-fuzz-api"
                                 : fuzz_temp_file(model_image, file_bytes);
    if (fk >= 2 && path == NULL)
        return; /* the file system refused: nothing to check */
    q_error_code want;
    if (null_model || c == NULL || path == NULL)
        want = Q_ERR_INVALID_ARG;
    else if (w->sh[ci].has_kv || w->sh[ci].has_arena)
        want = Q_ERR_INVALID_STATE;
    else if (strategy > Q_MMAP_READ)
        want = Q_ERR_INVALID_ARG;
    else if (fk == 1)
        want = Q_ERR_FILE_OPEN;
    else if (fk == 2)
        want = Q_OK;
    else
        want = Q_ERR_TRUNCATED;
    q_context before = c ? *c : (q_context){0};
    q_error_code rc = q_model_load(null_model ? NULL : &m, fuzz_producer_bool(p) ? &t : NULL, c,
                                   path, (q_mmap_strategy)strategy, &d);
    if (fk >= 2)
        fuzz_remove_temp_file(path);
    EXPECT(rc, want, "q_model_load");
    if (rc == Q_ERR_INVALID_STATE)
        FUZZ_ASSERT(strcmp(d.field, "ctx") == 0);
    if (rc != Q_OK) {
        static const q_model zero;
        if (!null_model)
            FUZZ_ASSERT(memcmp(&m, &zero, sizeof zero) == 0);
        if (c != NULL)
            FUZZ_ASSERT_MSG(memcmp(&before, c, sizeof before) == 0, "failed q_model_load changed ctx");
        return;
    }
    FUZZ_ASSERT(memcmp(&m.config, &w->model.config, sizeof m.config) == 0);
    FUZZ_ASSERT(c->weights_mmap != NULL && c->weights_size == MODEL_BYTES);
    q_model_free(&m);
    q_free_memory(c); /* a fresh context: nothing else in it */
}

static void op_encoder(fuzz_producer *p, world *w)
{
    q_tokenizer empty = {0};
    switch (fuzz_producer_u32(p, 0, 3)) {
    case 0: { /* init: NULL, an empty tokenizer, or the real one */
        if (w->enc_live)
            return;
        unsigned k = fuzz_producer_u32(p, 0, 3);
        const q_tokenizer *t = k == 0 ? NULL : k == 1 ? &empty : &w->tok;
        q_encoder *e = fuzz_producer_u32(p, 0, 7) == 0 ? NULL : &w->enc;
        q_error_code rc = q_encoder_init(e, t);
        EXPECT(rc, e == NULL || k < 2 ? Q_ERR_INVALID_ARG : Q_OK, "q_encoder_init");
        if (rc == Q_OK)
            w->enc_live = 1;
        else if (e != NULL)
            FUZZ_ASSERT(w->enc.sorted == NULL && w->enc.tok == NULL);
        return;
    }
    case 1:
        q_encoder_free(fuzz_producer_bool(p) ? &w->enc : NULL);
        q_encoder_free(&w->enc);
        w->enc_live = 0;
        return;
    default: {
        char text[24];
        size_t text_len = fuzz_producer_size(p, 0, sizeof text);
        for (size_t i = 0; i < text_len; i++)
            text[i] = (char)fuzz_producer_bits(p, 1);
        const char *tx = fuzz_producer_u32(p, 0, 7) == 0 ? NULL : text;
        size_t need = q_encode_capacity(text_len);
        uint32_t toks[sizeof text + 4];
        size_t cap;
        switch (fuzz_producer_u32(p, 0, 3)) {
        case 0: cap = need - 1; break;
        case 1: cap = 0; break;
        default: cap = need; break;
        }
        uint32_t *tp = fuzz_producer_u32(p, 0, 7) == 0 ? NULL : toks;
        size_t n_tok = 99;
        size_t *np = fuzz_producer_u32(p, 0, 7) == 0 ? NULL : &n_tok;
        q_encoder *e = fuzz_producer_u32(p, 0, 7) == 0 ? NULL : &w->enc;
        /* 0..3: q_encode(add_bos, add_eos); 4..15: q_encode_ex with flags 0..11 (8.. unknown) */
        unsigned how = fuzz_producer_u32(p, 0, 15), flags = how < 4 ? how : how - 4;
        int add_bos = (flags & Q_ENCODE_BOS) != 0, add_eos = (flags & Q_ENCODE_EOS) != 0;
        int bad_flags = how >= 4 && (flags & ~7u) != 0;
        q_error_code want = e == NULL || !w->enc_live || tp == NULL || np == NULL ||
                                    (tx == NULL && text_len > 0) || bad_flags
                                ? Q_ERR_INVALID_ARG
                            : cap < need ? Q_ERR_OVERFLOW
                                         : Q_OK;
        q_error_code rc = how < 4 ? q_encode(e, tx, text_len, add_bos, add_eos, tp, cap, np)
                                  : q_encode_ex(e, tx, text_len, flags, tp, cap, np);
        EXPECT(rc, want, how < 4 ? "q_encode" : "q_encode_ex");
        if (np != NULL && rc != Q_OK)
            FUZZ_ASSERT_MSG(n_tok == 0, "q_encode error left *n_tokens %zu", n_tok);
        if (rc == Q_OK) {
            FUZZ_ASSERT(n_tok <= need && n_tok >= (size_t)(add_bos + add_eos));
            for (size_t i = 0; i < n_tok; i++)
                FUZZ_ASSERT(toks[i] < VOCAB);
            if (add_bos)
                FUZZ_ASSERT(toks[0] == w->tok.bos_id);
            if (add_eos)
                FUZZ_ASSERT(toks[n_tok - 1] == w->tok.eos_id);
        }
        return;
    }
    }
}

static void op_decoder(fuzz_producer *p, world *w)
{
    static unsigned char bytes[4097];
    switch (fuzz_producer_u32(p, 0, 4)) {
    case 0: {
        if (w->dec_live)
            return;
        q_tokenizer empty = {0};
        unsigned k = fuzz_producer_u32(p, 0, 3);
        const q_tokenizer *t = k == 0 ? NULL : k == 1 ? &empty : &w->tok;
        q_decoder *d = fuzz_producer_u32(p, 0, 7) == 0 ? NULL : &w->dec;
        q_error_code rc = q_decoder_init(d, t);
        EXPECT(rc, d == NULL || k < 2 ? Q_ERR_INVALID_ARG : Q_OK, "q_decoder_init");
        if (rc == Q_OK)
            w->dec_live = 1;
        else if (d != NULL)
            FUZZ_ASSERT(w->dec.out == NULL && w->dec.tok == NULL);
        return;
    }
    case 1:
        q_decoder_free(fuzz_producer_bool(p) ? &w->dec : NULL);
        q_decoder_free(&w->dec);
        w->dec_live = 0;
        return;
    case 2:
        if (fuzz_producer_bool(p))
            q_decoder_finish(&w->dec); /* fine on a zeroed decoder too */
        else
            q_decoder_finish(NULL);
        return;
    case 3: { /* next */
        q_decoder *d = fuzz_producer_u32(p, 0, 7) == 0 ? NULL : &w->dec;
        uint32_t prev = draw_token(p), tok = draw_token(p);
        const char *o = NULL;
        size_t ol = 99;
        const char **op = fuzz_producer_u32(p, 0, 7) == 0 ? NULL : &o;
        size_t *olp = fuzz_producer_u32(p, 0, 7) == 0 ? NULL : &ol;
        q_error_code want = d == NULL || !w->dec_live || op == NULL || olp == NULL
                                ? Q_ERR_INVALID_ARG
                            : tok >= VOCAB ? Q_ERR_BAD_TOKEN
                                           : Q_OK;
        int exact = fuzz_producer_u32(p, 0, 3) == 0; /* q_decoder_piece: same rules */
        q_error_code rc = exact ? q_decoder_piece(d, tok, op, olp)
                                : q_decoder_next(d, prev, tok, op, olp);
        EXPECT(rc, want, exact ? "q_decoder_piece" : "q_decoder_next");
        if (olp != NULL && rc != Q_OK)
            FUZZ_ASSERT(ol == 0);
        if (rc == Q_OK) {
            FUZZ_ASSERT(ol <= strlen(pieces[tok]) + (exact ? 0 : 3));
            if (ol)
                fuzz_touch_bytes(o, ol);
        }
        return;
    }
    default: { /* feed bytes */
        q_decoder *d = fuzz_producer_u32(p, 0, 7) == 0 ? NULL : &w->dec;
        size_t len;
        switch (fuzz_producer_u32(p, 0, 5)) {
        case 0: len = 4096; break;
        case 1: len = 4097; break;
        case 2: len = SIZE_MAX; break;
        default: len = fuzz_producer_size(p, 0, 8); break;
        }
        for (size_t i = 0; i < 8; i++)
            bytes[i] = (unsigned char)fuzz_producer_bits(p, 1);
        const void *b = fuzz_producer_u32(p, 0, 7) == 0 ? NULL : bytes;
        const char *o = NULL;
        size_t ol = 99;
        const char **op = fuzz_producer_u32(p, 0, 7) == 0 ? NULL : &o;
        q_error_code want = d == NULL || !w->dec_live || op == NULL || (b == NULL && len > 0) ||
                                    len > 4096
                                ? Q_ERR_INVALID_ARG
                                : Q_OK;
        q_error_code rc = q_decoder_feed_bytes(d, b, len, op, &ol);
        EXPECT(rc, want, "q_decoder_feed_bytes");
        if (rc != Q_OK)
            FUZZ_ASSERT(ol == 0);
        else
            FUZZ_ASSERT(ol <= len + 3);
        memset(bytes, 0, 8);
        return;
    }
    }
}

static void op_sampler(fuzz_producer *p, world *w)
{
    if (fuzz_producer_bool(p)) {
        q_sampler *s = fuzz_producer_u32(p, 0, 7) == 0 ? NULL : &w->smp;
        size_t vocab;
        switch (fuzz_producer_u32(p, 0, 4)) {
        case 0: vocab = 0; break;
        case 1: vocab = (size_t)UINT32_MAX + 1; break;
        case 2: vocab = 1; break;
        default: vocab = VOCAB; break;
        }
        float temp = draw_float(p, 0), topp = draw_float(p, 1);
        uint64_t seed = fuzz_producer_bits(p, 2);
        q_error_code want = s == NULL || vocab == 0 || vocab > UINT32_MAX || !isfinite(temp) ||
                                    temp < 0.0f || !isfinite(topp)
                                ? Q_ERR_INVALID_ARG
                                : Q_OK;
        q_error_code rc = q_sampler_init(s, vocab, temp, topp, seed);
        EXPECT(rc, want, "q_sampler_init");
        if (s == NULL)
            return;
        w->smp_live = rc == Q_OK;
        if (rc != Q_OK) {
            static const q_sampler zero;
            FUZZ_ASSERT(memcmp(s, &zero, sizeof zero) == 0);
        } else {
            FUZZ_ASSERT(s->rng_state != 0 && s->vocab_size == vocab);
        }
        return;
    }
    /* q_sample */
    int ci;
    q_context *c = draw_ctx(p, w, &ci);
    q_sampler *s = fuzz_producer_u32(p, 0, 7) == 0 ? NULL : &w->smp;
    float logits[VOCAB];
    for (size_t i = 0; i < VOCAB; i++)
        logits[i] = (float)fuzz_producer_u32(p, 0, 15) - 8.0f;
    float *lp = fuzz_producer_u32(p, 0, 7) == 0 ? NULL : logits;
    uint32_t token = UINT32_MAX - 5;
    uint32_t *tp = fuzz_producer_u32(p, 0, 7) == 0 ? NULL : &token;
    q_error_code want = Q_OK;
    int topp_path = w->smp_live && w->smp.temperature != 0.0f && w->smp.topp > 0.0f &&
                    w->smp.topp < 1.0f;
    size_t need = 0;
    int ok = 1;
    if (s == NULL || !w->smp_live || lp == NULL || tp == NULL) {
        want = Q_ERR_INVALID_ARG;
    } else if (topp_path) {
        need = align_up(w->smp.vocab_size * 8, &ok); /* (index, probability) pairs */
        if (c == NULL)
            want = Q_ERR_INVALID_ARG;
        else if (!w->sh[ci].has_arena || need > w->sh[ci].size - w->sh[ci].head)
            want = Q_ERR_ARENA_OOM;
    }
    q_error_code rc = q_sample(s, c, lp, tp);
    EXPECT(rc, want, "q_sample");
    if (rc != Q_OK) {
        FUZZ_ASSERT_MSG(token == UINT32_MAX - 5, "q_sample wrote *token on error");
        return;
    }
    FUZZ_ASSERT(token < w->smp.vocab_size);
    if (topp_path)
        w->sh[ci].head = w->sh[ci].base; /* the sampler resets the arena */
}

typedef struct sink {
    size_t total;
    int stop_after;
    int calls;
} sink;

static int emit(void *user, const char *bytes, size_t len)
{
    sink *s = user;
    fuzz_touch_bytes(bytes, len);
    s->total += len;
    s->calls++;
    return s->stop_after >= 0 && s->calls > s->stop_after;
}

static void op_generate(fuzz_producer *p, world *w)
{
    int si;
    q_state *st = draw_state(p, w, &si);
    int live = si >= 0 && w->st_live[si];
    const q_tokenizer *t = fuzz_producer_u32(p, 0, 7) == 0 ? NULL : &w->tok;
    q_sampler *s = fuzz_producer_u32(p, 0, 7) == 0 ? NULL : &w->smp;
    char prompt[12];
    size_t plen = fuzz_producer_size(p, 0, sizeof prompt - 1);
    for (size_t i = 0; i < plen; i++)
        prompt[i] = (char)fuzz_producer_u32(p, 1, 255);
    prompt[plen] = '\0';
    const char *pp = fuzz_producer_u32(p, 0, 3) == 0 ? NULL : prompt;
    size_t steps = fuzz_producer_u32(p, 0, 3) == 0 ? SIZE_MAX : fuzz_producer_size(p, 0, SEQ_LEN + 1);
    sink snk = {0, fuzz_producer_u32(p, 0, 3) == 0 ? (int)fuzz_producer_u32(p, 0, 3) : -1, 0};
    int with_emit = fuzz_producer_u32(p, 0, 3) != 0;
    q_gen_stats stats;
    memset(&stats, 0x5a, sizeof stats);
    q_gen_stats *sp = fuzz_producer_bool(p) ? &stats : NULL;

    /* q_generate, or q_generate_ex with Q_ENCODE_SPECIAL, none, or a flag it refuses */
    unsigned how = fuzz_producer_u32(p, 0, 7);
    unsigned gflags = how == 1 ? (unsigned)Q_ENCODE_SPECIAL : how == 2 ? (unsigned)Q_ENCODE_BOS : 0u;

    q_error_code want;
    if (!live || t == NULL || s == NULL || gflags == (unsigned)Q_ENCODE_BOS)
        want = Q_ERR_INVALID_ARG;
    else if (!w->smp_live || w->smp.vocab_size != VOCAB)
        want = Q_ERR_VOCAB_MISMATCH;
    else
        want = Q_OK;
    q_error_code rc =
        how == 0 ? q_generate(st, t, s, pp, steps, with_emit ? emit : NULL, &snk, sp)
                 : q_generate_ex(st, t, s, pp, steps, gflags, with_emit ? emit : NULL, &snk, sp);
    if (want == Q_OK && rc == Q_ERR_ARENA_OOM && state_arena_taken(w, si))
        want = Q_ERR_ARENA_OOM;
    if (want == Q_OK && rc == Q_ERR_IO && with_emit && snk.stop_after >= 0)
        want = Q_ERR_IO; /* the emit callback asked to stop */
    EXPECT(rc, want, "q_generate");
    if (sp != NULL && rc != Q_OK && want != Q_ERR_ARENA_OOM && want != Q_ERR_IO) {
        static const q_gen_stats zero;
        FUZZ_ASSERT_MSG(memcmp(&stats, &zero, sizeof zero) == 0, "stats not zeroed on error");
    }
    if (rc == Q_OK && sp != NULL) {
        size_t max_steps = steps == 0 || steps > SEQ_LEN ? SEQ_LEN : steps;
        FUZZ_ASSERT(stats.n_positions >= 1 && stats.n_positions <= max_steps);
        FUZZ_ASSERT(stats.n_sampled <= stats.n_positions);
    }
    if (live)
        resync_after_call(w, w->st_ctx[si], rc);
}

static void op_misc(fuzz_producer *p)
{
    int code = (int)(int32_t)fuzz_producer_bits(p, 4);
    FUZZ_ASSERT(q_strerror((q_error_code)code) != NULL);
    FUZZ_ASSERT(q_error_name((q_error_code)code) != NULL);
    if (code > 0 || code < Q_ERR_MODEL_CHANGED)
        FUZZ_ASSERT(strcmp(q_error_name((q_error_code)code), "Q_ERR_UNKNOWN") == 0);
    size_t threads = q_default_threads();
    FUZZ_ASSERT(threads >= 1 && threads <= Q_MAX_THREADS);
    FUZZ_ASSERT(q_encode_capacity(SIZE_MAX - 2) == 0 && q_encode_capacity(5) == 8);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    build_images();
    world w;
    memset(&w, 0, sizeof w);
    w.sh[0].owner = w.sh[1].owner = -1;
    q_error_code rc = q_model_parse(&w.model, NULL, model_image, MODEL_BYTES, NULL);
    FUZZ_ASSERT_MSG(rc == Q_OK, "the built-in model: %s", q_error_name(rc));
    rc = q_tokenizer_parse(&w.tok, tok_image, tok_image_len, VOCAB, NULL);
    FUZZ_ASSERT_MSG(rc == Q_OK, "the built-in tokenizer: %s", q_error_name(rc));

    fuzz_producer fp = fuzz_producer_make(data, size);
    for (int n = 0; n < MAX_OPS && fuzz_producer_remaining(&fp) > 0; n++) {
        switch (fuzz_producer_u32(&fp, 0, 15)) {
        case 0: op_alloc_region(&fp, &w, 0); break;
        case 1: op_alloc_region(&fp, &w, 1); break;
        case 2: op_arena_alloc(&fp, &w); break;
        case 3: op_arena_misc(&fp, &w); break;
        case 4: op_free(&fp, &w); break;
        case 5: op_init_memory(&fp, &w); break;
        case 6: case 7: op_state_init(&fp, &w); break;
        case 8: op_state_free(&fp, &w); break;
        case 9: case 10: op_forward(&fp, &w); break;
        case 11: op_tensor_row(&fp, &w); break;
        case 12:
            if (fuzz_producer_bool(&fp))
                op_model_parse(&fp, &w);
            else
                op_model_load(&fp, &w);
            break;
        case 13: op_encoder(&fp, &w); op_decoder(&fp, &w); break;
        case 14: op_sampler(&fp, &w); break;
        default:
            if (fuzz_producer_bool(&fp))
                op_generate(&fp, &w);
            else
                op_misc(&fp);
            break;
        }
        check_ctx(&w, 0);
        check_ctx(&w, 1);
    }

    for (int s = 0; s < 2; s++)
        q_state_free(&w.st[s]);
    q_encoder_free(&w.enc);
    q_decoder_free(&w.dec);
    q_free_memory(&w.ctx[0]);
    q_free_memory(&w.ctx[1]);
    q_tokenizer_free(&w.tok);
    q_model_free(&w.model);
    return 0;
}
