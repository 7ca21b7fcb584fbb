/*
 * fuzz_generate: a tiny valid model whose config and weights come from the input, a
 * tokenizer built from the input (a tokenizer.bin image parsed by q_tokenizer_parse), a
 * prompt from the input, then
 *   1. the prompt's tokens through q_forward, every logit read and required finite (the
 *      weights are finite and bounded by construction);
 *   2. q_generate with a sampler drawn from the input (greedy, multinomial, top-p), its
 *      output required to be valid UTF-8 without control bytes other than whitespace
 *      (the decoder's promise), and its statistics consistent;
 *   3. OS failures injected in some inputs: q_state_init / q_generate must fail cleanly;
 *   4. the optimized paths against their references: the prompt run as batches of a
 *      drawn size on 2 threads gives bitwise the logits of 1 thread one token at a time,
 *      and q_generate on 2 threads with batched prefill emits exactly the bytes of the
 *      1-thread, one-token-at-a-time run (same sampler seed).
 *
 * Input layout: parameters from the TAIL (fuzz_producer): config, vocabulary, sampler,
 * steps, prompt length, failure position; the HEAD is payload: prompt bytes first, then
 * weight bytes (byte b -> (b - 128) / 32, cycled when short).
 */
#include <math.h>

#include "fuzz_helpers.h"
#include "model_oracle.h"
#include "qorus_infer.h"
#include "qorus_testing.h"

#define MAX_PROMPT 32
#define MAX_STEPS 24

static const char *const extra_pieces[] = {
    " ", "a", "b", "c", "e", "t", "h", "ab", "ba", " a", "th", "he", " the", "abc",
    "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\n", "\t", "x", "y", "z", "aa", "bb",
    "\xe2\x96\x81", "\xe2\x96\x81\x61", "!", "<0x41", "<unk>x", "?", " t", "ee",
};

/* tokenizer.bin image: int32 max_len, then (float score, int32 len, bytes) per token. */
static size_t build_tokenizer(uint8_t *out, size_t cap, size_t vocab, int byte_fallback,
                              uint32_t score_seed)
{
    size_t off = 4, max_len = 0;
    char piece[32];
    for (size_t id = 0; id < vocab; id++) {
        const char *p;
        size_t n;
        if (id == 0) {
            p = "<unk>";
        } else if (id == 1) {
            p = "\n<s>\n";
        } else if (id == 2) {
            p = "\n</s>\n";
        } else if (byte_fallback && id < 3 + 256) {
            snprintf(piece, sizeof piece, "<0x%02X>", (unsigned)(id - 3));
            p = piece;
        } else {
            size_t k = id - 3 - (byte_fallback ? 256 : 0);
            size_t n_extra = sizeof extra_pieces / sizeof extra_pieces[0];
            if (k < n_extra) {
                p = extra_pieces[k];
            } else {
                snprintf(piece, sizeof piece, "w%zu", k);
                p = piece;
            }
        }
        n = strlen(p);
        FUZZ_ASSERT(off + 8 + n <= cap);
        float score = (float)((id * 7919u + score_seed) % 97u) - 48.0f;
        int32_t len = (int32_t)n;
        memcpy(out + off, &score, 4);
        memcpy(out + off + 4, &len, 4);
        memcpy(out + off + 8, p, n);
        off += 8 + n;
        if (n > max_len)
            max_len = n;
    }
    int32_t ml = (int32_t)max_len;
    memcpy(out, &ml, 4);
    return off;
}

static int is_valid_output(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            if ((c < 0x20 && c != '\n' && c != '\t' && c != '\r' && c != '\v' && c != '\f') ||
                c == 0x7f)
                return 0;
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; }
        else return 0;
        if (i + len > n)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

typedef struct sink {
    unsigned char buf[4096];
    size_t len;
    size_t total;
    int stop_after; /* emit calls before asking to stop; -1 never */
    int calls;
} sink;

static int emit(void *user, const char *bytes, size_t len)
{
    sink *s = user;
    fuzz_touch_bytes(bytes, len);
    size_t room = sizeof s->buf - s->len;
    size_t take = len < room ? len : room;
    memcpy(s->buf + s->len, bytes, take);
    s->len += take;
    s->total += len;
    s->calls++;
    return s->stop_after >= 0 && s->calls > s->stop_after;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_producer fp = fuzz_producer_make(data, size);

    /* Config: dim = n_heads * head_size, head size even, n_kv_heads | n_heads. */
    static const size_t heads_choices[] = {1, 2, 4};
    size_t n_heads = heads_choices[fuzz_producer_u32(&fp, 0, 2)];
    size_t head_size = 2 * fuzz_producer_size(&fp, 1, 4);
    size_t kv_div = fuzz_producer_bool(&fp) && n_heads > 1 ? 2 : 1;
    q_config cfg = {0};
    cfg.dim = n_heads * head_size;
    cfg.n_heads = n_heads;
    cfg.n_kv_heads = n_heads / kv_div;
    cfg.hidden_dim = fuzz_producer_size(&fp, 1, 48);
    cfg.n_layers = fuzz_producer_size(&fp, 1, 3);
    cfg.seq_len = fuzz_producer_size(&fp, 1, 16);
    int byte_fallback = fuzz_producer_u32(&fp, 0, 3) == 0;
    cfg.vocab_size = (byte_fallback ? 259 : 3) + fuzz_producer_size(&fp, 1, 40);
    cfg.rope_theta = fuzz_producer_bool(&fp) ? 0.0f : 500000.0f; /* 0: the default */
    cfg.norm_eps = 0.0f;
    int shared = fuzz_producer_bool(&fp);
    uint32_t score_seed = fuzz_producer_u32(&fp, 0, 255);

    static const float temps[] = {0.0f, 0.5f, 1.0f, 2.0f};
    static const float topps[] = {0.0f, 0.5f, 0.9f, 1.0f};
    float temperature = temps[fuzz_producer_u32(&fp, 0, 3)];
    float topp = topps[fuzz_producer_u32(&fp, 0, 3)];
    uint64_t seed = fuzz_producer_range(&fp, 0, 0xffff);
    size_t steps = fuzz_producer_size(&fp, 0, MAX_STEPS);
    size_t prompt_len = fuzz_producer_size(&fp, 0, MAX_PROMPT);
    unsigned inject = fuzz_producer_u32(&fp, 0, 15);
    inject = inject <= 4 ? inject : 0; /* 1..4 in a quarter of the inputs */
    int stop_after = (int)fuzz_producer_u32(&fp, 0, 8) - 1;

    size_t payload_len;
    const uint8_t *payload = fuzz_producer_payload(&fp, &payload_len);
    char prompt[MAX_PROMPT + 1];
    if (prompt_len > payload_len)
        prompt_len = payload_len;
    for (size_t i = 0; i < prompt_len; i++)
        prompt[i] = payload[i] ? (char)payload[i] : 'a';
    prompt[prompt_len] = '\0';
    const uint8_t *wbytes = payload + prompt_len;
    size_t wlen = payload_len - prompt_len;

    size_t n_floats = q_model_float_count(&cfg, shared);
    FUZZ_ASSERT(n_floats > 0);
    float *weights = malloc(n_floats * sizeof *weights);
    FUZZ_ASSERT(weights != NULL);
    for (size_t i = 0; i < n_floats; i++)
        weights[i] = wlen ? ((float)wbytes[i % wlen] - 128.0f) / 32.0f : 0.01f;

    q_model model;
    FUZZ_ASSERT(q_model_from_floats(&model, &cfg, weights, n_floats - 1, shared) == Q_ERR_TRUNCATED);
    q_error_code rc = q_model_from_floats(&model, &cfg, weights, n_floats, shared);
    FUZZ_ASSERT_MSG(rc == Q_OK, "q_model_from_floats: %s", q_error_name(rc));

    static uint8_t tokbin[300 * 24 + 4];
    size_t toklen = build_tokenizer(tokbin, sizeof tokbin, cfg.vocab_size, byte_fallback, score_seed);
    q_tokenizer tok;
    rc = q_tokenizer_parse(&tok, tokbin, toklen, cfg.vocab_size, NULL);
    FUZZ_ASSERT_MSG(rc == Q_OK, "tokenizer: %s", q_error_name(rc));
    oracle_verdict verdict;
    FUZZ_ASSERT_MSG(oracle_tokenizer(tokbin, toklen, cfg.vocab_size, &verdict),
                    "the oracle rejects the tokenizer the parser accepted (rule: %s)", verdict.rule);
    FUZZ_ASSERT(tok.has_byte_fallback == byte_fallback);

    /* 1. forward over the prompt's tokens: finite logits */
    q_encoder enc;
    FUZZ_ASSERT(q_encoder_init(&enc, &tok) == Q_OK);
    uint32_t tokens[MAX_PROMPT + 3];
    size_t n_tokens = 0;
    rc = q_encode(&enc, prompt, prompt_len, 1, 0, tokens, q_encode_capacity(prompt_len), &n_tokens);
    FUZZ_ASSERT_MSG(rc == Q_OK, "q_encode: %s", q_error_name(rc));
    FUZZ_ASSERT(n_tokens >= 1 && tokens[0] == tok.bos_id);
    q_encoder_free(&enc);

    q_context ctx = {0};
    q_state st;
    rc = q_state_init(&st, &ctx, &model);
    FUZZ_ASSERT_MSG(rc == Q_OK, "q_state_init: %s", q_error_name(rc));
    size_t n_run = n_tokens < cfg.seq_len ? n_tokens : cfg.seq_len;
    for (size_t pos = 0; pos < n_run; pos++) {
        float *logits = NULL;
        FUZZ_ASSERT(tokens[pos] < cfg.vocab_size);
        rc = q_forward(&st, tokens[pos], pos, &logits);
        FUZZ_ASSERT_MSG(rc == Q_OK, "q_forward: %s", q_error_name(rc));
        for (size_t i = 0; i < cfg.vocab_size; i++)
            FUZZ_ASSERT_MSG(isfinite(logits[i]), "logit %zu at pos %zu is %g", i, pos,
                            (double)logits[i]);
        FUZZ_ASSERT(q_arena_used(&ctx) <= st.arena_high_water);
    }
    /* 4a. the same positions as batches on 2 threads: bitwise the same last logits */
    static float last_logits[512];
    FUZZ_ASSERT(cfg.vocab_size <= sizeof last_logits / sizeof last_logits[0]);
    memcpy(last_logits, st.logits, cfg.vocab_size * sizeof(float));
    q_state_free(&st);
    FUZZ_ASSERT(ctx.kv_buffer == NULL && ctx.scratch_buffer == NULL);
    q_state_options two = {.n_threads = 2, .max_batch = 1 + score_seed % 8, .kernels = NULL,
                           .parallel_min_work = 1}; /* every step on the pool */
    rc = q_state_init_ex(&st, &ctx, &model, &two);
    FUZZ_ASSERT_MSG(rc == Q_OK, "q_state_init_ex: %s", q_error_name(rc));
    float *batch_logits = NULL;
    rc = q_forward_batch(&st, tokens, n_run, 0, &batch_logits);
    FUZZ_ASSERT_MSG(rc == Q_OK, "q_forward_batch: %s", q_error_name(rc));
    for (size_t i = 0; i < cfg.vocab_size; i++)
        FUZZ_ASSERT_MSG(memcmp(&batch_logits[i], &last_logits[i], sizeof(float)) == 0,
                        "logit %zu: %a with 2 threads, batches of %zu; %a one by one", i,
                        (double)batch_logits[i], two.max_batch, (double)last_logits[i]);
    q_state_free(&st);

    /* 3. injected failure in q_state_init: clean error, nothing left in ctx */
    if (inject) {
        q_test_fail_nth_os_call(inject);
        rc = q_state_init(&st, &ctx, &model);
        int fired = q_test_failure_fired();
        q_test_fail_nth_os_call(0);
        if (fired) {
            FUZZ_ASSERT_MSG(rc == Q_ERR_ALLOC, "injected failure: %s", q_error_name(rc));
            FUZZ_ASSERT(ctx.kv_buffer == NULL && ctx.scratch_buffer == NULL);
        } else {
            FUZZ_ASSERT(rc == Q_OK);
            q_state_free(&st);
        }
    }

    /* 2. generation (1 thread, one token at a time) */
    q_state_options one = {.n_threads = 1, .max_batch = 1, .kernels = NULL,
                           .parallel_min_work = 0};
    rc = q_state_init_ex(&st, &ctx, &model, &one);
    FUZZ_ASSERT(rc == Q_OK);
    q_sampler sampler;
    FUZZ_ASSERT(q_sampler_init(&sampler, cfg.vocab_size, temperature, topp, seed) == Q_OK);
    sink out = {{0}, 0, 0, stop_after, 0};
    q_gen_stats stats;
    rc = q_generate(&st, &tok, &sampler, prompt, steps, emit, &out, &stats);

    /* 4b. the same generation on 2 threads with batched prefill: the same bytes */
    {
        q_context ctx2 = {0};
        q_state st2;
        FUZZ_ASSERT(q_state_init_ex(&st2, &ctx2, &model, &two) == Q_OK);
        q_sampler sampler2;
        FUZZ_ASSERT(q_sampler_init(&sampler2, cfg.vocab_size, temperature, topp, seed) == Q_OK);
        static sink out2;
        memset(&out2, 0, sizeof out2);
        out2.stop_after = stop_after;
        q_gen_stats stats2;
        q_error_code rc2 = q_generate(&st2, &tok, &sampler2, prompt, steps, emit, &out2, &stats2);
        FUZZ_ASSERT_MSG(rc2 == rc, "q_generate: %s on 2 threads, %s on 1", q_error_name(rc2),
                        q_error_name(rc));
        FUZZ_ASSERT_MSG(out2.total == out.total && out2.len == out.len &&
                            memcmp(out2.buf, out.buf, out.len) == 0,
                        "2 threads with batches of %zu emitted other bytes than 1 thread",
                        two.max_batch);
        if (rc == Q_OK)
            FUZZ_ASSERT(stats2.n_positions == stats.n_positions &&
                        stats2.n_sampled == stats.n_sampled);
        q_state_free(&st2);
        q_free_memory(&ctx2);
    }
    if (stop_after >= 0 && out.calls > stop_after) {
        FUZZ_ASSERT_MSG(rc == Q_ERR_IO, "emit asked to stop, q_generate said %s", q_error_name(rc));
    } else {
        FUZZ_ASSERT_MSG(rc == Q_OK, "q_generate: %s", q_error_name(rc));
        size_t limit = steps == 0 || steps > cfg.seq_len ? cfg.seq_len : steps;
        FUZZ_ASSERT_MSG(stats.n_positions <= limit, "%zu positions, limit %zu", stats.n_positions, limit);
        FUZZ_ASSERT(stats.n_sampled <= stats.n_positions);
        FUZZ_ASSERT(isfinite(stats.seconds) && stats.seconds >= 0.0);
        FUZZ_ASSERT(out.len > 0 && out.buf[out.len - 1] == '\n'); /* ends with "\n" */
    }
    if (out.len == out.total)
        FUZZ_ASSERT_MSG(is_valid_output(out.buf, out.len), "invalid UTF-8 or control byte in output");
    q_state_free(&st);
    q_free_memory(&ctx);
    q_tokenizer_free(&tok);
    q_model_free(&model);
    free(weights);
    return 0;
}
