/*
 * The generation loop of `qorus run`, as llama2.c run.c's generate(): the prompt (with
 * BOS) is forced token by token, then the sampler takes over; each step emits the next
 * token decoded after the current one; BOS ends the text; "\n" closes it.
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

q_error_code q_generate(q_state *st, const q_tokenizer *tok, q_sampler *sampler,
                        const char *prompt, size_t steps, q_emit_fn emit, void *user,
                        q_gen_stats *stats)
{
    if (stats != NULL)
        memset(stats, 0, sizeof *stats);
    if (st == NULL || st->model == NULL || tok == NULL || sampler == NULL)
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
        err = q_encode(&enc, prompt, text_len, 1, 0, tokens, cap, &n_prompt);
    q_encoder_free(&enc);

    size_t pos = 0, n_sampled = 0;
    double t_first = -1.0;
    if (err == Q_OK) {
        uint32_t token = tokens[0];
        while (pos < steps) {
            float *logits;
            if ((err = q_forward(st, token, pos, &logits)) != Q_OK)
                break;
            uint32_t next;
            if (pos + 1 < n_prompt) {
                next = tokens[pos + 1];
            } else {
                if ((err = q_sample(sampler, st->ctx, logits, &next)) != Q_OK)
                    break;
                if (n_sampled++ == 0)
                    t_first = now_seconds();
            }
            pos++;
            if (next == tok->bos_id)
                break;
            const char *out;
            size_t out_len;
            if ((err = q_decoder_next(&dec, token, next, &out, &out_len)) != Q_OK ||
                (err = emit_bytes(emit, user, out, out_len)) != Q_OK)
                break;
            token = next;
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
    }
    return err;
}
