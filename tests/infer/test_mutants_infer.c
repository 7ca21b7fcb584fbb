/*
 * Inference checks that the mutation run (scripts/mutation-test.sh, fuzz/mutants/) showed
 * no other test making: each case names the mutant it kills.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "qorus.h"

/* Mutant 45 (enc-eos-range): q_encode refuses add_eos with an eos_id outside the
 * vocabulary (a hand-built tokenizer; the parsers never produce one). */
static void test_encode_eos_out_of_range(void)
{
    static char unk[] = "<unk>", bos[] = "<s>", eos[] = "</s>", a[] = "a";
    char *pieces[4] = {unk, bos, eos, a};
    size_t lengths[4];
    float scores[4] = {0, 0, 0, 0};
    q_tokenizer tok;
    q_encoder enc;
    memset(&tok, 0, sizeof tok);
    for (int i = 0; i < 4; i++)
        lengths[i] = strlen(pieces[i]);
    tok.vocab_size = 4;
    tok.pieces = pieces;
    tok.piece_lengths = lengths;
    tok.scores = scores;
    tok.max_token_length = 5;
    tok.bos_id = 1;
    tok.eos_id = 4; /* == vocab_size */
    CHECK_EQ_ERR(q_encoder_init(&enc, &tok), Q_OK);
    uint32_t ids[16];
    size_t n = 99;
    CHECK_EQ_ERR(q_encode(&enc, "a", 1, 1, 1, ids, 16, &n), Q_ERR_BAD_TOKEN);
    CHECK_EQ_INT(n, 0);

    /* control: without EOS the same call succeeds, every id in range */
    CHECK_EQ_ERR(q_encode(&enc, "a", 1, 1, 0, ids, 16, &n), Q_OK);
    CHECK(n >= 2 && ids[0] == 1);
    for (size_t i = 0; i < n; i++)
        CHECK(ids[i] < 4);
    q_encoder_free(&enc);
}

/* Mutant 50 (sampler-topp-noscale): top-p draws within the nucleus mass, so inside the
 * nucleus the tokens keep their relative odds: top-p 0.7 over {0.5, 0.3, 0.2} keeps
 * {0, 1} and draws 0 with probability 0.5 / 0.8 = 0.625 (a coin over the whole mass would
 * give 0.5 and push the cut-off mass onto token 1). */
static void test_topp_renormalises(void)
{
    const float three[3] = {logf(0.5f), logf(0.3f), logf(0.2f)};
    q_context ctx = {0};
    q_sampler s;
    int count[3] = {0, 0, 0};
    CHECK_EQ_ERR(q_alloc_arena(&ctx, 4096), Q_OK);
    CHECK_EQ_ERR(q_sampler_init(&s, 3, 1.0f, 0.7f, 2024), Q_OK);
    for (int i = 0; i < 4000; i++) {
        float buf[3];
        uint32_t tok = 9;
        memcpy(buf, three, sizeof buf);
        CHECK_EQ_ERR(q_sample(&s, &ctx, buf, &tok), Q_OK);
        if (tok < 3)
            count[tok]++;
    }
    /* 2500 expected, sd ~31: the bounds are 6 sd away; the wrong coin gives ~2000 */
    CHECK(count[2] == 0);
    CHECK(count[0] > 2300 && count[0] < 2700);
    CHECK_EQ_INT(count[0] + count[1], 4000);
    q_free_memory(&ctx);
}

int main(void)
{
    RUN_TEST(test_encode_eos_out_of_range);
    RUN_TEST(test_topp_renormalises);
    return check_result("test_mutants_infer");
}
