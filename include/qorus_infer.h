/*
 * qorus inference: the building blocks (F16 conversion, RMSNorm, softmax, matrix-vector
 * products on F32 / F16 / Q8_0 / Q8_SPLIT weights), the tokenizer (llama2.c BPE encode,
 * byte-level BPE encode, streaming UTF-8-safe decode), the forward pass of a llama-family transformer, the sampler
 * and the generation loop of the `qorus run` command.
 *
 * Memory: the forward pass takes every activation from the scratch arena of a q_context
 * (q_arena_alloc) and rewinds it (q_arena_reset) after each token; the KV cache comes from
 * q_alloc_kv_cache; weights are read in place from the model's views (never copied to a
 * float32 model). The tokenizer helpers use the heap (they run once per prompt).
 *
 * Token ids are uint32_t and always < vocab_size: every id that crosses this API is checked.
 * Nothing here prints, exits or aborts: failures are q_error_code values.
 */
#ifndef QORUS_INFER_H
#define QORUS_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "qorus_core.h"
#include "qorus_kernels.h"
#include "qorus_model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================================
 * Building blocks
 * ====================================================================================== */

/* binary16 -> binary32 is q_f16_to_f32 in qorus_model.h. */

/** binary32 -> binary16, rounded to nearest even; overflow gives infinity, NaN stays NaN. */
uint16_t q_f32_to_f16(float f);

/** binary32 -> bfloat16, rounded to nearest even; overflow gives infinity, NaN stays NaN
 *  (quiet, sign kept). */
uint16_t q_f32_to_bf16(float f);

/** out[i] = weight[i] * x[i] / sqrt(mean(x^2) + eps), for i < n. `out` may equal `x`. */
void q_rmsnorm(float *out, const float *x, const float *weight, size_t n, float eps);

/** In-place softmax over x[0..n) (max subtracted first). Does nothing for n == 0. */
void q_softmax(float *x, size_t n);

/**
 * Checks that `t` can be read: a known type, data present, rows and cols non-zero, for
 * Q8_0 cols a multiple of 32 and group_size 32, for Q8_SPLIT a non-zero group_size dividing
 * rows*cols and scales present. Does not check that the bytes exist (the parser did).
 * Errors: Q_ERR_INVALID_ARG (t NULL), Q_ERR_UNSUPPORTED_TYPE, Q_ERR_BAD_SHAPE,
 * Q_ERR_OVERFLOW.
 */
q_error_code q_tensor_check(const q_tensor *t);

/**
 * Dequantizes row `row` of `t` into out[0..t->cols).
 * Errors: those of q_tensor_check, Q_ERR_INVALID_ARG (out NULL, row >= rows).
 */
q_error_code q_tensor_row(float *out, const q_tensor *t, size_t row);

/**
 * out[i] = sum_j W[i][j] * x[j] for i < t->rows, j < t->cols: W (rows, cols) @ x (cols)
 * -> out (rows), computed directly on the stored type (F32, F16, Q8_0 blocks dequantized
 * one block at a time, Q8_SPLIT one group at a time). `n_in` must equal t->cols; `out` must
 * not overlap `x`. Sums run in float, in index order within a row (as llama2.c's matmul).
 * Errors: those of q_tensor_check, Q_ERR_INVALID_ARG (NULL pointers), Q_ERR_BAD_SHAPE
 * (n_in != cols).
 */
q_error_code q_matvec(float *out, const q_tensor *t, const float *x, size_t n_in);

/* ======================================================================================
 * Tokenizer: encode (llama2.c run.c BPE) and decode (streaming, UTF-8 safe)
 * ====================================================================================== */

/** Lookup index over a tokenizer's pieces, built once and reused for every prompt. */
typedef struct q_encoder {
    const q_tokenizer *tok;
    const char *const *pieces;   /* (vocab_size) piece text, see q_encoder_init */
    const size_t *piece_lengths; /* (vocab_size) */
    void *owned;                 /* the translated pieces, when there are any */
    uint32_t *sorted;    /* (vocab_size) token ids ordered by piece bytes, ties by id */
    char *buf;           /* (buf_cap) scratch for the concatenation of two pieces */
    size_t buf_cap;
    int64_t space_id;    /* id of the " " piece (the dummy prefix), -1 if absent */
    uint32_t unk_id;     /* id of "<unk>" (0 if absent): unknown characters without byte fallback */
    /* byte-level BPE vocabularies (tok->kind == Q_VOCAB_BPE) only: */
    struct q_pretok_re *pretok; /* the compiled pre-tokenizer (src/infer/pretok.c) */
    uint64_t *pair_keys; /* (pair_mask + 1) open addressing: left << 32 | right, UINT64_MAX empty */
    uint32_t *pair_ranks;/* (pair_mask + 1) the merge rank of that pair */
    size_t pair_mask;
    uint32_t *specials;  /* (n_specials) control and user-defined ids, by first byte, longer first */
    size_t n_specials;
    size_t *special_at;  /* (257) the specials starting with byte b: special_at[b] .. [b + 1] */
    int ignore_merges;   /* Llama 3: a word that is itself a normal piece is that piece */
} q_encoder;

/**
 * Builds the lookup index of `tok` (which must outlive `enc`). Duplicate pieces resolve
 * to the lowest id. A SentencePiece-spelled vocabulary (GGUF: no piece contains a space,
 * some contain U+2581 "▁") is used with every "▁" read as " ", so that both spellings
 * encode and decode the same text (the decoder does the same). Without scores
 * (tok->scores NULL) every merge has score 0.
 * `enc` is an output: its previous contents are ignored, so an initialized encoder must be
 * freed with q_encoder_free before it is initialized again (or its index leaks).
 * A byte-level BPE tokenizer (tok->kind Q_VOCAB_BPE) also gets its merge-rank table, its
 * list of special pieces and its compiled pre-tokenizer.
 * Errors: Q_ERR_INVALID_ARG (enc or tok NULL, empty vocabulary, missing pieces; BPE: a merge
 * naming an id >= vocab_size, merges NULL with n_merges > 0, pretok not a known
 * pre-tokenizer), Q_ERR_BAD_TOKEN (BPE: a normal or byte piece that is not byte-level text,
 * which the parsers refuse, in a tokenizer built by hand), Q_ERR_OVERFLOW, Q_ERR_ALLOC. On
 * error `enc` (when not NULL) is zeroed and nothing is allocated.
 */
q_error_code q_encoder_init(q_encoder *enc, const q_tokenizer *tok);

/** Frees the index and zeroes `enc`. Safe on a zeroed encoder and twice. */
void q_encoder_free(q_encoder *enc);

/** Tokens q_encode can produce for `text_len` bytes: text_len + 3 (BOS, dummy prefix, EOS).
 *  Returns 0 if that overflows. */
size_t q_encode_capacity(size_t text_len);

/**
 * Encodes text[0..text_len) exactly as llama2.c run.c's encode(): BOS (tok->bos_id) when
 * `add_bos`; the " " piece when the text is non-empty (skipped if the vocabulary has none);
 * then one token per UTF-8 codepoint found in the vocabulary (a codepoint is a lead byte
 * plus at most three continuation bytes, as run.c groups them: invalid sequences are cut
 * the same way); a codepoint not found becomes its byte-fallback tokens
 * (tok->byte_tokens[byte], one per byte) or, without byte fallback, one unk_id; then
 * pairs are merged greedily, highest score first (the leftmost pair on ties), while the
 * concatenation of two adjacent pieces is itself a piece; EOS (tok->eos_id) when
 * `add_eos`. NUL bytes inside the text are ordinary bytes.
 *
 * `tokens` must hold `capacity` ids; q_encode_capacity(text_len) is always enough.
 * Every id written is < vocab_size.
 * Errors, in this order: Q_ERR_INVALID_ARG (enc, tokens or n_tokens NULL, text NULL with
 * text_len > 0, encoder zeroed: never initialized or freed), Q_ERR_BAD_TOKEN (a requested
 * bos_id or eos_id >= vocab_size), Q_ERR_OVERFLOW (capacity below
 * q_encode_capacity(text_len)), Q_ERR_ALLOC. After every error *n_tokens (when n_tokens is
 * not NULL) is 0.
 */
q_error_code q_encode(const q_encoder *enc, const char *text, size_t text_len, int add_bos,
                      int add_eos, uint32_t *tokens, size_t capacity, size_t *n_tokens);

/** q_encode_ex flags. */
enum {
    Q_ENCODE_BOS = 1,     /* start with tok->bos_id */
    Q_ENCODE_EOS = 2,     /* end with tok->eos_id */
    Q_ENCODE_SPECIAL = 4, /* BPE: control tokens written in the text (`<|im_start|>`) are
                             those tokens; without it they are plain text */
};

/**
 * Encodes text[0..text_len) with the vocabulary's own algorithm; `flags` is a set of
 * Q_ENCODE_*.
 *  - SentencePiece vocabularies (tok->kind Q_VOCAB_SPM): as q_encode (Q_ENCODE_SPECIAL has
 *    no effect).
 *  - Byte-level BPE (Q_VOCAB_BPE): BOS when asked; the text is cut at every user-defined
 *    piece and, with Q_ENCODE_SPECIAL, every control piece it contains (leftmost first,
 *    the longest at a position), those pieces becoming their tokens; the rest is split into
 *    words by the pre-tokenizer (src/infer/pretok.c); each word's bytes become their
 *    byte-level tokens (tok->byte_tokens), merged pair by pair, the lowest merge rank first
 *    (leftmost on ties), as long as a listed merge applies — with Llama 3's pre-tokenizer a
 *    word that is a normal piece as a whole is that piece (ignore_merges); EOS when asked.
 *    There is no dummy prefix. Any bytes are accepted, invalid UTF-8 too: decoding the
 *    tokens gives the text back byte for byte.
 * Errors: those of q_encode, and Q_ERR_INVALID_ARG (unknown flag bits, or the
 * pre-tokenizer's regular expression engine refused the text: a match limit).
 */
q_error_code q_encode_ex(const q_encoder *enc, const char *text, size_t text_len,
                         unsigned flags, uint32_t *tokens, size_t capacity, size_t *n_tokens);

/**
 * Streaming decoder state. The bytes of every piece go through a UTF-8 assembler:
 *  - after BOS a leading space of the piece is dropped (as run.c);
 *  - a piece that is a byte-fallback token (<0xXX>) contributes its single byte;
 *  - ASCII bytes are kept if printable or whitespace (run.c's isprint || isspace), other
 *    control bytes (and DEL) are dropped;
 *  - bytes >= 0x80 are kept only as complete, valid UTF-8 sequences (no overlongs, no
 *    surrogates, <= U+10FFFF), which may span several tokens; an incomplete sequence is
 *    dropped when a byte that cannot continue it arrives, or at q_decoder_finish.
 * For ASCII output this is exactly run.c's safe_printf; unlike run.c (which drops every
 * non-ASCII fallback byte, printing "Olá" as "Ol") valid UTF-8 from byte fallback is kept.
 */
typedef struct q_decoder {
    const q_tokenizer *tok;
    const char *const *pieces;   /* (vocab_size) piece text ("▁" read as " ", see q_encoder_init) */
    const size_t *piece_lengths; /* (vocab_size) */
    void *owned;                 /* the translated pieces, when there are any */
    unsigned char pending[4]; /* bytes of an incomplete UTF-8 sequence */
    size_t n_pending;
    size_t n_needed;          /* total length of the pending sequence, 0 when none */
    char *out;                /* (out_cap) output of the last call */
    size_t out_cap;
} q_decoder;

/**
 * Prepares a decoder for `tok` (which must outlive it). `dec` is an output: an initialized
 * decoder must be freed with q_decoder_free before it is initialized again.
 * Errors: Q_ERR_INVALID_ARG (dec or tok NULL, empty vocabulary, missing pieces),
 * Q_ERR_BAD_TOKEN (BPE: a normal or byte piece that is not byte-level text, in a tokenizer
 * built by hand), Q_ERR_OVERFLOW, Q_ERR_ALLOC. On error `dec` (when not NULL) is zeroed.
 */
q_error_code q_decoder_init(q_decoder *dec, const q_tokenizer *tok);

/** Frees the decoder's buffer and zeroes it. Safe on a zeroed decoder and twice. */
void q_decoder_free(q_decoder *dec);

/**
 * Decodes `token`, which follows `prev_token` (used only for the space after BOS), and
 * sets *out / *out_len to the bytes to print now (valid until the next call; possibly 0).
 * `prev_token` may be any value (only its equality with bos_id matters).
 * Errors, in this order: Q_ERR_INVALID_ARG (dec, out or out_len NULL, decoder zeroed: never
 * initialized or freed), Q_ERR_BAD_TOKEN (token >= vocab_size). On error the decoder state
 * is unchanged, *out is not written and *out_len (when out_len is not NULL) is 0.
 */
q_error_code q_decoder_next(q_decoder *dec, uint32_t prev_token, uint32_t token,
                            const char **out, size_t *out_len);

/** Drops an incomplete pending sequence (end of stream). Does nothing on NULL; safe on a
 *  zeroed decoder. */
void q_decoder_finish(q_decoder *dec);

/**
 * The exact bytes token `token` stands for, for a tokenizer's round trip: a SentencePiece
 * piece with "▁" read as " " (a byte-fallback token <0xXX> is its byte), a byte-level BPE
 * normal or byte piece decoded through GPT-2's alphabet, a user-defined piece as written,
 * nothing for control, unknown and unused BPE tokens. Unlike q_decoder_next nothing is
 * filtered. *out stays valid until the next call on `dec`.
 * Errors: Q_ERR_INVALID_ARG (a NULL argument, decoder zeroed), Q_ERR_BAD_TOKEN (token >=
 * vocab_size). On error *out_len (when not NULL) is 0.
 */
q_error_code q_decoder_piece(q_decoder *dec, uint32_t token, const char **out, size_t *out_len);

/**
 * Feeds raw bytes to the decoder's UTF-8 assembler (no tokenizer involved) and sets *out /
 * *out_len to what may be printed. For tests and for callers that produce bytes
 * themselves. At most len + 3 bytes come out; `len` must be at most 4096.
 * Errors: Q_ERR_INVALID_ARG (dec, out or out_len NULL, bytes NULL with len > 0, len above
 * 4096, decoder zeroed). On error nothing is fed, *out is not written and *out_len (when
 * out_len is not NULL) is 0.
 */
q_error_code q_decoder_feed_bytes(q_decoder *dec, const void *bytes, size_t len,
                                  const char **out, size_t *out_len);

/* ======================================================================================
 * Forward pass
 * ====================================================================================== */

/** Prompt tokens per forward batch when the options leave it 0: a multiple of 12, so
 *  that the AVX2 matmul tiles (3 tokens for float weights, 4 for int8) have no leftover
 *  tokens in a full batch. */
#define Q_DEFAULT_BATCH 48u
/** Largest accepted batch. */
#define Q_MAX_BATCH 512u
/** Work (multiply-adds) below which a step of the forward pass runs on the calling thread
 *  alone: waking the workers and waiting for them costs microseconds, more than a small
 *  step takes. Which thread runs a task never changes its result. */
#define Q_DEFAULT_PARALLEL_MIN_WORK 32768u
/** Most threads a forward pass may use. */
#define Q_MAX_THREADS 64u

/** The online cores of this machine, at least 1 and at most Q_MAX_THREADS: the driver's
 *  default thread count. */
size_t q_default_threads(void);

/** How q_state_init_ex sets up the forward pass. A zeroed struct means the defaults. */
typedef struct q_state_options {
    size_t n_threads;         /* threads of the forward pass, caller included; 0 means 1 */
    size_t max_batch;         /* tokens per batch of q_forward_batch; 0 = Q_DEFAULT_BATCH,
                                 1 = one token at a time (the reference for batching) */
    const q_kernels *kernels; /* kernel table; NULL = q_kernels_select() */
    size_t parallel_min_work; /* steps with less work run on the caller alone; 0 =
                                 Q_DEFAULT_PARALLEL_MIN_WORK, 1 = always on the pool */
} q_state_options;

struct q_pool;

/** Per-model inference state over one q_context. */
typedef struct q_state {
    const q_model *model;
    q_context *ctx;
    const q_kernels *kernels; /* the arithmetic (reference or SIMD table) */
    struct q_pool *pool;      /* worker threads, NULL with one thread */
    size_t n_threads;         /* threads of the forward pass, caller included */
    size_t max_batch;         /* tokens per forward batch */
    size_t parallel_min_work; /* see q_state_options */
    size_t head_size;        /* dim / n_heads */
    size_t kv_dim;           /* n_kv_heads * head_size */
    float *key_cache;        /* (n_layers, seq_len, kv_dim) in ctx->kv_buffer */
    float *value_cache;      /* (n_layers, seq_len, kv_dim) right after key_cache */
    float *logits;           /* (vocab_size) below the arena base: survives resets */
    size_t kv_bytes;         /* n_layers * seq_len * kv_dim * 2 * sizeof(float) */
    size_t arena_bytes;      /* size of the arena created by q_state_init */
    size_t arena_high_water; /* largest q_arena_used() seen, persistent part included */
} q_state;

/**
 * q_state_init_ex with the defaults: one thread, batches of Q_DEFAULT_BATCH tokens,
 * the kernel table of q_kernels_select().
 */
q_error_code q_state_init(q_state *st, q_context *ctx, const q_model *model);

/**
 * Validates `model` (config consistent, every tensor readable by q_tensor_check and shaped
 * as the config says), then creates in `ctx` the KV cache (q_alloc_kv_cache, size computed
 * with overflow checks) and a scratch arena sized for one batch of activations (every
 * thread's attention scratch included) plus the persistent logits and the sampler's
 * scratch, and starts the worker threads (opt->n_threads - 1 of them; nothing is created
 * or allocated per token afterwards). `ctx` may already hold the model mapping but no KV
 * cache or arena. `model` and `ctx` must outlive `st`; `opt` may be NULL (defaults).
 * Results never depend on n_threads: every output element is computed by one thread, in
 * a fixed order.
 * `st` is an output: unless it is NULL it is zeroed first, whatever it held, so a live
 * state must be released with q_state_free before it is initialized again (its threads,
 * KV cache and arena would otherwise be lost); a second state on the same `ctx` is refused
 * with Q_ERR_INVALID_STATE, since ctx then has a KV cache.
 * Errors, in this order: Q_ERR_INVALID_ARG (NULL st, ctx or model; n_threads above
 * Q_MAX_THREADS, max_batch above Q_MAX_BATCH after 0 is replaced by its default),
 * Q_ERR_INVALID_CONFIG, Q_ERR_BAD_SHAPE, Q_ERR_UNSUPPORTED_TYPE (the model's checks,
 * config first, then the tensors), Q_ERR_INVALID_STATE (ctx already has a KV cache or
 * arena), Q_ERR_OVERFLOW, Q_ERR_ALLOC, Q_ERR_THREAD (a worker could not be started). On
 * error `st` (when not NULL) is zeroed, ctx is unchanged (nothing is left allocated in it)
 * and no thread is left running, by this call.
 */
q_error_code q_state_init_ex(q_state *st, q_context *ctx, const q_model *model,
                             const q_state_options *opt);

/**
 * Runs the transformer on `token` at position `pos` (q_forward_batch of one token).
 * Errors: those of q_forward_batch.
 */
q_error_code q_forward(q_state *st, uint32_t token, size_t pos, float **logits);

/**
 * Runs the transformer on tokens[i] at position pos0 + i for i < n, in batches of at most
 * st->max_batch tokens (every weight row is read once per batch; attention is causal
 * inside the batch), writes each position's keys and values into the KV cache, and sets
 * *logits (may be NULL) to the vocab_size logits that follow the LAST token (st->logits,
 * overwritten by the next call). Positions before pos0 must have been run before for a
 * meaningful result (unrun positions read as zeros). The logits are bitwise the same as
 * running the tokens one at a time with q_forward, with any thread count. Activations come
 * from the arena above its head, which is reset (to its base) before returning. Nothing is
 * run when an argument is bad.
 * Errors, in this order: Q_ERR_INVALID_ARG (st NULL or not initialized: zeroed, as after
 * a failed q_state_init_ex or q_state_free; tokens NULL; n == 0), Q_ERR_BAD_TOKEN (a token
 * >= vocab_size), Q_ERR_INVALID_CONFIG (pos0 >= seq_len or pos0 + n > seq_len, without
 * overflow), Q_ERR_ARENA_OOM (only when the caller has taken arena space of the state's
 * context above its base, or moved the base, with q_arena_alloc / q_arena_set_base; the
 * arena q_state_init made always suffices), Q_ERR_MODEL_CHANGED (the model file was
 * truncated or replaced under its mapping: checked after every batch; see
 * q_mapping_status). On error *logits is not written.
 */
q_error_code q_forward_batch(q_state *st, const uint32_t *tokens, size_t n, size_t pos0,
                             float **logits);

/**
 * Runs q_forward on tokens[i] at position i for i < n (n <= seq_len) and copies the last
 * logits into logits_out (vocab_size floats, may be NULL). The entry point for fuzzers.
 * Errors, in this order: Q_ERR_INVALID_ARG (st not initialized, tokens NULL, n == 0),
 * Q_ERR_INVALID_CONFIG (n > seq_len), then those of q_forward_batch (Q_ERR_BAD_TOKEN...).
 * On error logits_out is not written.
 */
q_error_code q_forward_tokens(q_state *st, const uint32_t *tokens, size_t n,
                              float *logits_out);

/** Stops the worker threads, releases the KV cache and arena that q_state_init created in
 *  st->ctx (the model mapping stays) and zeroes `st`. Safe on a zeroed state and twice. */
void q_state_free(q_state *st);

/**
 * Builds `model` as views into `weights`: n_floats float32 values in llama2.c checkpoint
 * order WITHOUT the freq_cis block: token_embedding (vocab, dim); attn_norm (layers, dim);
 * wq (layers, n_heads*head_size, dim); wk, wv (layers, kv_dim, dim); wo (layers, dim,
 * n_heads*head_size); ffn_norm (layers, dim); w1 (layers, hidden, dim); w2 (layers, dim,
 * hidden); w3 (layers, hidden, dim); final_norm (dim); then classifier (vocab, dim) unless
 * `shared_classifier`. Extra floats are ignored. rope_theta and norm_eps default to 10000
 * and 1e-5 when 0. The result has format Q_FORMAT_LLAMA2C, version 0, and is freed with
 * q_model_free. For tests and fuzzers (tiny models built in memory).
 * Errors: Q_ERR_INVALID_ARG (NULL), Q_ERR_INVALID_CONFIG (a field 0 or above its Q_MAX_*,
 * n_heads not dividing dim, odd head size, n_kv_heads not dividing n_heads),
 * Q_ERR_OVERFLOW, Q_ERR_TRUNCATED (fewer floats than the shapes need), Q_ERR_ALLOC.
 */
q_error_code q_model_from_floats(q_model *model, const q_config *config, const float *weights,
                                 size_t n_floats, int shared_classifier);

/** Number of floats q_model_from_floats needs for `config`; 0 on overflow or bad config. */
size_t q_model_float_count(const q_config *config, int shared_classifier);

/* ======================================================================================
 * Sampler
 * ====================================================================================== */

typedef struct q_sampler {
    size_t vocab_size;
    float temperature;       /* 0: greedy argmax */
    float topp;              /* in (0,1): nucleus sampling; otherwise plain multinomial */
    uint64_t rng_state;      /* xorshift64* state, never 0 */
    size_t arena_high_water; /* largest q_arena_used() seen while sampling */
} q_sampler;

/** Seed used when 0 is given (xorshift cannot leave state 0). */
#define Q_SAMPLER_SEED_FOR_ZERO 0x9E3779B97F4A7C15ull

/**
 * Sets up a sampler: temperature 0 is greedy (argmax, the lowest index on ties, as run.c);
 * otherwise logits are divided by the temperature, softmaxed, and a token is drawn with
 * the xorshift64* generator of run.c seeded with `seed` (0 is replaced by
 * Q_SAMPLER_SEED_FOR_ZERO), by top-p (nucleus) sampling when 0 < topp < 1, else from the
 * full distribution. Same seed, same model, same prompt: same tokens.
 * Errors: Q_ERR_INVALID_ARG (s NULL, vocab_size 0 or above UINT32_MAX, temperature
 * negative or not finite, topp not finite). On error `s` (when not NULL) is zeroed.
 * (-0.0 is not negative: it is greedy.)
 */
q_error_code q_sampler_init(q_sampler *s, size_t vocab_size, float temperature, float topp,
                            uint64_t seed);

/**
 * Picks the next token from logits[0..vocab_size) (modified in place when sampling).
 * Top-p takes its (vocab_size) scratch from ctx's arena and resets the arena before
 * returning (`ctx` may be NULL for greedy or plain multinomial sampling).
 * Errors, in this order: Q_ERR_INVALID_ARG (s, logits or token NULL; sampler zeroed:
 * never initialized or its init failed; top-p sampling with ctx NULL), Q_ERR_ARENA_OOM
 * (top-p: ctx has no arena, or less than vocab_size * 8 bytes, rounded up to Q_ALIGN,
 * above its head). On error *token is not written (logits may have been scaled).
 */
q_error_code q_sample(q_sampler *s, q_context *ctx, float *logits, uint32_t *token);

/** The generator of run.c: xorshift64* step, the high 32 bits. */
uint32_t q_random_u32(uint64_t *state);

/** A float in [0, 1) from q_random_u32, as run.c's random_f32. */
float q_random_f32(uint64_t *state);

/* ======================================================================================
 * Generation (the loop of `qorus run`)
 * ====================================================================================== */

/** Receives output bytes; returning non-zero stops generation (q_generate then returns
 *  Q_ERR_IO). */
typedef int (*q_emit_fn)(void *user, const char *bytes, size_t len);

typedef struct q_gen_stats {
    size_t n_prompt_tokens;   /* after encoding, BOS included */
    size_t n_positions;       /* forward passes run */
    size_t n_sampled;         /* tokens chosen by the sampler (not forced by the prompt) */
    double seconds;           /* wall time of the loop, prompt encoding included */
    double seconds_to_first;  /* until the first sampled token (the whole run if none) */
    double tokens_per_second; /* n_positions / seconds */
    size_t arena_high_water;  /* bytes: max of the forward pass and the sampler */
    size_t kv_bytes;
    size_t n_threads;         /* threads of the forward pass */
    const char *kernels;      /* name of the kernel table ("scalar", "avx2") */
    size_t n_prefill;         /* prompt positions run as batches */
    double seconds_prefill;   /* wall time of those batches */
    double prefill_tokens_per_second; /* n_prefill / seconds_prefill */
    size_t n_decode;          /* positions run one at a time after the prompt */
    double seconds_decode;    /* wall time from the end of the prefill to the end */
    double decode_tokens_per_second;  /* n_decode / seconds_decode */
} q_gen_stats;

/**
 * Generates as run.c's generate(): encodes `prompt` (NULL is "") with BOS (when the
 * vocabulary asks for it: see q_generate_ex); for pos = 0 ..
 * steps-1 runs the forward pass on the current token, takes the next prompt token while
 * the prompt lasts and samples afterwards, stops at a BOS token, and emits each next
 * token decoded after the current one (so the prompt is echoed without its BOS); finally
 * emits "\n". `steps` 0 or above seq_len means seq_len; a prompt longer than the steps
 * is cut (only its first `steps` positions run). `emit` may be NULL; `stats` may be NULL.
 * `stats` (when not NULL) is zeroed first, so a refused call leaves it zeroed.
 * Errors, in this order: Q_ERR_INVALID_ARG (st, tok or sampler NULL, st not initialized),
 * Q_ERR_VOCAB_MISMATCH (tokenizer, sampler and model vocabularies not all equal; a zeroed
 * sampler has vocabulary 0), those of q_encoder_init, q_encode, q_forward, q_sample,
 * Q_ERR_IO (emit asked to stop).
 */
q_error_code q_generate(q_state *st, const q_tokenizer *tok, q_sampler *sampler,
                        const char *prompt, size_t steps, q_emit_fn emit, void *user,
                        q_gen_stats *stats);

/**
 * q_generate with the vocabulary's own conventions spelled out: the prompt starts with BOS
 * when tok->add_bos (1 for llama2.c and SentencePiece GGUF files, tokenizer.ggml.add_bos_token
 * otherwise; an empty prompt without BOS still starts from BOS); `encode_flags` may hold
 * Q_ENCODE_SPECIAL (control-token text in the prompt becomes those tokens); the text ends
 * at a sampled BOS for SentencePiece vocabularies (run.c), at a sampled EOS or end-of-turn
 * token (tok->eot_id) for byte-level BPE ones, whose prompts never stop early. A prompt
 * that does not start with BOS is echoed whole (run.c skips only its BOS).
 * q_generate(...) is q_generate_ex(..., 0, ...).
 * Errors: those of q_generate, Q_ERR_INVALID_ARG for unknown flag bits, Q_ERR_BAD_TOKEN (an
 * empty prompt and bos_id >= vocab_size).
 */
q_error_code q_generate_ex(q_state *st, const q_tokenizer *tok, q_sampler *sampler,
                           const char *prompt, size_t steps, unsigned encode_flags,
                           q_emit_fn emit, void *user, q_gen_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* QORUS_INFER_H */
