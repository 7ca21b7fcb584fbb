/*
 * Sampler, as llama2.c run.c: greedy argmax, or temperature + softmax followed by top-p
 * (nucleus) or plain multinomial sampling, with run.c's xorshift64* generator so a seed
 * gives the same tokens every time.
 *
 * Top-p: keep the tokens whose probability is at least (1 - topp) / (n - 1) (they alone
 * can be in the nucleus), sort them by probability (descending; ties by lower index, so
 * the order does not depend on qsort), take the shortest prefix whose mass exceeds topp
 * and draw from it.
 */
#include "qorus_infer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct prob_index {
    float prob;
    uint32_t index;
} prob_index;

uint32_t q_random_u32(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545F4914F6CDD1Dull) >> 32);
}

float q_random_f32(uint64_t *state)
{
    return (float)(q_random_u32(state) >> 8) / 16777216.0f;
}

q_error_code q_sampler_init(q_sampler *s, size_t vocab_size, float temperature, float topp,
                            uint64_t seed)
{
    if (s == NULL)
        return Q_ERR_INVALID_ARG;
    memset(s, 0, sizeof *s);
    if (vocab_size == 0 || vocab_size > UINT32_MAX || !isfinite(temperature) ||
        temperature < 0.0f || !isfinite(topp))
        return Q_ERR_INVALID_ARG;
    s->vocab_size = vocab_size;
    s->temperature = temperature;
    s->topp = topp;
    s->rng_state = seed != 0 ? seed : Q_SAMPLER_SEED_FOR_ZERO;
    return Q_OK;
}

/* Index of the largest value; the lowest index on ties (NaN never wins). */
static uint32_t argmax(const float *p, size_t n)
{
    size_t best = 0;
    float max_p = p[0];
    for (size_t i = 1; i < n; i++) {
        if (p[i] > max_p) {
            best = i;
            max_p = p[i];
        }
    }
    return (uint32_t)best;
}

/* Draws from probabilities p[0..n) with coin in [0, 1). */
static uint32_t sample_mult(const float *p, size_t n, float coin)
{
    float cdf = 0.0f;
    for (size_t i = 0; i < n; i++) {
        cdf += p[i];
        if (coin < cdf)
            return (uint32_t)i;
    }
    return (uint32_t)(n - 1); /* rounding */
}

static int compare_desc(const void *a, const void *b)
{
    const prob_index *x = a, *y = b;
    if (x->prob > y->prob)
        return -1;
    if (x->prob < y->prob)
        return 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* Top-p draw from p[0..n) with coin in [0, 1); idx holds n entries of scratch. */
static uint32_t sample_topp(const float *p, size_t n, float topp, prob_index *idx, float coin)
{
    size_t n0 = 0;
    const float cutoff = (1.0f - topp) / (float)(n > 1 ? n - 1 : 1);
    for (size_t i = 0; i < n; i++) {
        if (p[i] >= cutoff) {
            idx[n0].index = (uint32_t)i;
            idx[n0].prob = p[i];
            n0++;
        }
    }
    if (n0 == 0) /* only when probabilities are NaN */
        return argmax(p, n);
    qsort(idx, n0, sizeof *idx, compare_desc);

    float cumulative = 0.0f;
    size_t last = n0 - 1;
    for (size_t i = 0; i < n0; i++) {
        cumulative += idx[i].prob;
        if (cumulative > topp) {
            last = i;
            break;
        }
    }
    float r = coin * cumulative;
    float cdf = 0.0f;
    for (size_t i = 0; i <= last; i++) {
        cdf += idx[i].prob;
        if (r < cdf)
            return idx[i].index;
    }
    return idx[last].index; /* rounding */
}

q_error_code q_sample(q_sampler *s, q_context *ctx, float *logits, uint32_t *token)
{
    if (s == NULL || s->vocab_size == 0 || logits == NULL || token == NULL)
        return Q_ERR_INVALID_ARG;
    size_t n = s->vocab_size;
    if (s->temperature == 0.0f) {
        *token = argmax(logits, n);
        return Q_OK;
    }
    for (size_t i = 0; i < n; i++)
        logits[i] /= s->temperature;
    q_softmax(logits, n);
    float coin = q_random_f32(&s->rng_state);
    if (s->topp <= 0.0f || s->topp >= 1.0f) {
        *token = sample_mult(logits, n, coin);
        return Q_OK;
    }
    if (ctx == NULL)
        return Q_ERR_INVALID_ARG;
    prob_index *idx = q_arena_alloc(ctx, n * sizeof *idx); /* (vocab_size) */
    if (idx == NULL)
        return Q_ERR_ARENA_OOM;
    size_t used = q_arena_used(ctx);
    if (used > s->arena_high_water)
        s->arena_high_water = used;
    *token = sample_topp(logits, n, s->topp, idx, coin);
    q_arena_reset(ctx);
    return Q_OK;
}
