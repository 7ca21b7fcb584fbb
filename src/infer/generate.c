/*
 * The generation loop of `qorus run`, as llama2.c run.c's generate(): the prompt (with
 * BOS) is forced, then the sampler takes over; each step emits the next token decoded
 * after the current one; BOS ends the text; "\n" closes it. Unlike run.c the prompt runs
 * through the model in batches (q_forward_batch: the same logits, each weight read once
 * per batch instead of once per token); the text is the same.
 *
 * Byte-level BPE vocabularies (Llama 3, Qwen2, GPT-2) follow their metadata instead: BOS
 * only when tok->add_bos says so (an empty prompt still starts from BOS: the model needs a
 * first token), and a sampled EOS or end-of-turn token ends the text; special-token text
 * in the prompt is read as those tokens only with Q_ENCODE_SPECIAL.
 */
#include "qorus_infer.h"

#include <stdint.h>
#include <string.h>
#include <time.h>

#include "core/os.h"

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static q_error_code emit_bytes(q_emit_fn emit, void *user, const char *bytes, size_t len)
{
    if (emit == NULL || len == 0)
        return Q_OK;
    return emit(user, bytes, len) == 0 ? Q_OK : Q_ERR_IO;
}

/* Emits `next` decoded after `token`. */
static q_error_code decode_emit(q_decoder *dec, uint32_t token, uint32_t next, q_emit_fn emit,
                                void *user)
{
    const char *out;
    size_t out_len;
    q_error_code err = q_decoder_next(dec, token, next, &out, &out_len);
    if (err != Q_OK)
        return err;
    return emit_bytes(emit, user, out, out_len);
}

/* Whether the sampled token `id` ends the text: BOS for SentencePiece vocabularies (as
 * run.c), EOS or end of turn for BPE ones. */
static int ends_text(const q_tokenizer *tok, uint32_t id)
{
    if (tok->kind == Q_VOCAB_BPE)
        return id == tok->eos_id || (tok->eot_id != Q_TOKEN_NONE && id == tok->eot_id);
    return id == tok->bos_id;
}

q_error_code q_generate(q_state *st, const q_tokenizer *tok, q_sampler *sampler,
                        const char *prompt, size_t steps, q_emit_fn emit, void *user,
                        q_gen_stats *stats)
{
    return q_generate_ex(st, tok, sampler, prompt, steps, 0, emit, user, stats);
}

q_error_code q_generate_ex(q_state *st, const q_tokenizer *tok, q_sampler *sampler,
                           const char *prompt, size_t steps, unsigned encode_flags,
                           q_emit_fn emit, void *user, q_gen_stats *stats)
{
    if (stats != NULL)
        memset(stats, 0, sizeof *stats);
    if (st == NULL || st->model == NULL || tok == NULL || sampler == NULL ||
        (encode_flags & ~(unsigned)Q_ENCODE_SPECIAL) != 0)
        return Q_ERR_INVALID_ARG;
    const q_config *c = &st->model->config;
    if (tok->vocab_size != c->vocab_size || sampler->vocab_size != c->vocab_size)
        return Q_ERR_VOCAB_MISMATCH;
    if (prompt == NULL)
        prompt = "";
    if (steps == 0 || steps > c->seq_len)
        steps = c->seq_len;

    double t0 = now_seconds();
    q_encoder enc;
    q_decoder dec;
    uint32_t *tokens = NULL; /* (text_len + 3) prompt tokens */
    size_t n_prompt = 0;
    q_error_code err = q_encoder_init(&enc, tok);
    if (err != Q_OK)
        return err;
    if ((err = q_decoder_init(&dec, tok)) != Q_OK) {
        q_encoder_free(&enc);
        return err;
    }
    size_t text_len = strlen(prompt);
    size_t cap = q_encode_capacity(text_len);
    if (cap == 0 || cap > SIZE_MAX / sizeof *tokens)
        err = Q_ERR_OVERFLOW;
    else if ((tokens = q_os_malloc(cap * sizeof *tokens)) == NULL)
        err = Q_ERR_ALLOC;
    else
        err = q_encode_ex(&enc, prompt, text_len, encode_flags | (tok->add_bos ? Q_ENCODE_BOS : 0u),
                          tokens, cap, &n_prompt);
    q_encoder_free(&enc);
    int starts_with_bos = tok->add_bos; /* run.c never prints the first token: its BOS */
    if (err == Q_OK && n_prompt == 0) { /* no BOS asked and no text: start from BOS */
        if (tok->bos_id >= tok->vocab_size)
            err = Q_ERR_BAD_TOKEN;
        else
            tokens[n_prompt++] = tok->bos_id;
        starts_with_bos = 1;
    }

    size_t pos = 0, n_sampled = 0, n_prefill = 0;
    double t_first = -1.0, t_prefill_end = t0, prefill_seconds = 0.0;
    if (err == Q_OK) {
        /* The prompt: positions 0..n_run-1 run as batches. Their next tokens are forced
         * (the prompt's own) except after the last prompt token, whose logits are sampled;
         * a forced BOS ends the text after its position, as in run.c's loop. */
        size_t n_run = n_prompt < steps ? n_prompt : steps;
        for (size_t p = 0; tok->kind == Q_VOCAB_SPM && p + 1 < n_run; p++) {
            if (tokens[p + 1] == tok->bos_id) {
                n_run = p + 1; /* the loop below stops there */
                break;
            }
        }
        int stop = 0;
        float *logits = NULL;
        double t_prefill = now_seconds();
        err = q_forward_batch(st, tokens, n_run, 0, &logits);
        t_prefill_end = now_seconds();
        if (err == Q_OK) {
            n_prefill = n_run;
            prefill_seconds = t_prefill_end - t_prefill;
        }
        uint32_t token = tokens[0];
        if (err == Q_OK && !starts_with_bos) /* a prompt without BOS is echoed whole */
            err = decode_emit(&dec, Q_TOKEN_NONE, token, emit, user);
        for (pos = 0; err == Q_OK && pos < n_run; pos++) {
            if (pos + 1 < n_prompt) { /* forced: the next prompt token */
                uint32_t next = tokens[pos + 1];
                if (tok->kind == Q_VOCAB_SPM && next == tok->bos_id) {
                    stop = 1;
                    pos++;
                    break;
                }
                err = decode_emit(&dec, token, next, emit, user);
                token = next;
            }
        }
        if (err == Q_OK && !stop && n_run == n_prompt) {
            /* from the last prompt token's logits on: sample, then one position at a time */
            for (;;) {
                uint32_t next;
                if ((err = q_sample(sampler, st->ctx, logits, &next)) != Q_OK)
                    break;
                if (n_sampled++ == 0)
                    t_first = now_seconds();
                if (ends_text(tok, next))
                    break;
                if ((err = decode_emit(&dec, token, next, emit, user)) != Q_OK)
                    break;
                token = next;
                if (pos >= steps)
                    break;
                if ((err = q_forward(st, token, pos, &logits)) != Q_OK)
                    break;
                pos++;
            }
        }
        q_decoder_finish(&dec);
        if (err == Q_OK)
            err = emit_bytes(emit, user, "\n", 1);
    }
    double t1 = now_seconds();
    q_os_free(tokens);
    q_decoder_free(&dec);

    if (stats != NULL) {
        stats->n_prompt_tokens = n_prompt;
        stats->n_positions = pos;
        stats->n_sampled = n_sampled;
        stats->seconds = t1 - t0;
        stats->seconds_to_first = (t_first >= 0.0 ? t_first : t1) - t0;
        stats->tokens_per_second = stats->seconds > 0.0 ? (double)pos / stats->seconds : 0.0;
        stats->arena_high_water = st->arena_high_water > sampler->arena_high_water
                                      ? st->arena_high_water
                                      : sampler->arena_high_water;
        stats->kv_bytes = st->kv_bytes;
        stats->n_threads = st->n_threads;
        stats->kernels = st->kernels != NULL ? st->kernels->name : "";
        stats->n_prefill = n_prefill;
        stats->seconds_prefill = prefill_seconds;
        stats->prefill_tokens_per_second =
            prefill_seconds > 0.0 ? (double)n_prefill / prefill_seconds : 0.0;
        stats->n_decode = pos - n_prefill;
        stats->seconds_decode = n_prefill > 0 ? t1 - t_prefill_end : 0.0;
        stats->decode_tokens_per_second =
            stats->seconds_decode > 0.0 ? (double)stats->n_decode / stats->seconds_decode : 0.0;
    }
    return err;
}
