/*
 * Sampler tests: argmax ties (lowest index), top-p nucleus bounds, multinomial frequencies,
 * seeded reproducibility, arena use of top-p, argument errors.
 */
#include <math.h>
#include <string.h>

#include "../check.h"
#include "qorus.h"

static uint32_t draw(q_sampler *s, q_context *ctx, const float *logits, size_t n)
{
    float buf[16];
    CHECK_EQ_INT(s->vocab_size, n);
    memcpy(buf, logits, n * sizeof(float));
    uint32_t tok = UINT32_MAX;
    CHECK_EQ_INT(q_sample(s, ctx, buf, &tok), Q_OK);
    CHECK(tok < n);
    return tok;
}

int main(void)
{
    q_sampler s;
    q_context ctx = {0};
    CHECK_EQ_INT(q_alloc_arena(&ctx, 4096), Q_OK);

    /* greedy: lowest index among equal maxima; with NaN logits (a broken model) the
     * result is still a valid id (run.c's comparison: here index 0) */
    const float ties[5] = {1.0f, 3.0f, -2.0f, 3.0f, 2.0f};
    CHECK_EQ_INT(q_sampler_init(&s, 5, 0.0f, 0.9f, 1), Q_OK);
    CHECK_EQ_INT(draw(&s, NULL, ties, 5), 1);
    const float nans[3] = {NAN, 5.0f, NAN};
    CHECK_EQ_INT(q_sampler_init(&s, 3, 0.0f, 0.9f, 1), Q_OK);
    CHECK_EQ_INT(draw(&s, NULL, nans, 3), 0);

    /* top-p: with p(0) = 0.95 > topp the nucleus is {0} */
    const float peaked[3] = {logf(0.95f), logf(0.03f), logf(0.02f)};
    CHECK_EQ_INT(q_sampler_init(&s, 3, 1.0f, 0.9f, 7), Q_OK);
    for (int i = 0; i < 200; i++)
        CHECK_EQ_INT(draw(&s, &ctx, peaked, 3), 0);
    CHECK_EQ_INT(q_arena_used(&ctx), 0); /* scratch released */
    CHECK(s.arena_high_water >= 3 * 8);

    /* top-p 0.7 over {0.5, 0.3, 0.2}: nucleus {0, 1}, token 2 never drawn */
    const float three[3] = {logf(0.5f), logf(0.3f), logf(0.2f)};
    CHECK_EQ_INT(q_sampler_init(&s, 3, 1.0f, 0.7f, 11), Q_OK);
    int count[3] = {0, 0, 0};
    for (int i = 0; i < 2000; i++)
        count[draw(&s, &ctx, three, 3)]++;
    CHECK(count[2] == 0 && count[0] > 1000 && count[1] > 500);

    /* topp 1 (or 0): plain multinomial, frequencies near the probabilities */
    CHECK_EQ_INT(q_sampler_init(&s, 3, 1.0f, 1.0f, 12345), Q_OK);
    memset(count, 0, sizeof count);
    for (int i = 0; i < 10000; i++)
        count[draw(&s, NULL, three, 3)]++;
    CHECK(count[0] > 4700 && count[0] < 5300 && count[2] > 1800 && count[2] < 2200);

    /* same seed, same tokens; different seed, different tokens */
    const float flat[8] = {0.1f, 0.2f, 0.3f, 0.1f, 0.0f, 0.25f, 0.15f, 0.05f};
    q_sampler a, b, c;
    CHECK_EQ_INT(q_sampler_init(&a, 8, 1.0f, 0.9f, 42), Q_OK);
    CHECK_EQ_INT(q_sampler_init(&b, 8, 1.0f, 0.9f, 42), Q_OK);
    CHECK_EQ_INT(q_sampler_init(&c, 8, 1.0f, 0.9f, 43), Q_OK);
    int same_ab = 1, same_ac = 1;
    for (int i = 0; i < 64; i++) {
        uint32_t ta = draw(&a, &ctx, flat, 8), tb = draw(&b, &ctx, flat, 8),
                 tc = draw(&c, &ctx, flat, 8);
        same_ab &= ta == tb;
        same_ac &= ta == tc;
    }
    CHECK(same_ab && !same_ac);

    /* the generator: nonzero state, floats in [0, 1) */
    uint64_t st = 0;
    CHECK_EQ_INT(q_sampler_init(&a, 8, 1.0f, 0.9f, 0), Q_OK);
    CHECK(a.rng_state == Q_SAMPLER_SEED_FOR_ZERO);
    st = 1;
    for (int i = 0; i < 1000; i++) {
        float f = q_random_f32(&st);
        CHECK(f >= 0.0f && f < 1.0f);
    }

    /* errors */
    CHECK_EQ_INT(q_sampler_init(&s, 0, 1.0f, 0.9f, 1), Q_ERR_INVALID_ARG);
    CHECK_EQ_INT(q_sampler_init(&s, 3, -0.5f, 0.9f, 1), Q_ERR_INVALID_ARG);
    CHECK_EQ_INT(q_sampler_init(&s, 3, NAN, 0.9f, 1), Q_ERR_INVALID_ARG);
    CHECK_EQ_INT(q_sampler_init(&s, 3, 1.0f, INFINITY, 1), Q_ERR_INVALID_ARG);
    CHECK_EQ_INT(q_sampler_init(&s, 3, 1.0f, 0.5f, 1), Q_OK);
    float buf[3] = {0, 0, 0};
    uint32_t tok;
    CHECK_EQ_INT(q_sample(&s, NULL, buf, &tok), Q_ERR_INVALID_ARG); /* top-p needs an arena */
    CHECK_EQ_INT(q_sample(&s, &ctx, NULL, &tok), Q_ERR_INVALID_ARG);
    q_context tiny = {0};
    CHECK_EQ_INT(q_alloc_arena(&tiny, 64), Q_OK);
    CHECK_EQ_INT(q_sampler_init(&s, 16, 1.0f, 0.5f, 1), Q_OK);
    float big[16] = {0};
    CHECK_EQ_INT(q_sample(&s, &tiny, big, &tok), Q_ERR_ARENA_OOM); /* 16 * 8 > 64 */
    q_free_memory(&tiny);
    q_free_memory(&ctx);
    return check_result("test_sampler");
}
