/*
 * Model-file checks that the mutation run (scripts/mutation-test.sh, fuzz/mutants/) showed
 * no other test making: each case names the mutant it kills. Files are built in memory,
 * in the formats documented at the top of src/model/llama2c.c, gguf.c and tokenizer.c, or
 * edited from the valid GGUF the malformed-table generator writes.
 *
 * usage: test_mutants_model VALID_GGUF   (a GGUF with a tokenizer, bos_token_id uint32)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "qorus.h"

#define AK42_HEADER_BYTES 256

#define RUN_TEST_ARG(fn, arg)                                                     \
    do {                                                                          \
        int before_ = check_failures;                                             \
        fn(arg);                                                                  \
        fprintf(stderr, "%s %s\n", check_failures == before_ ? "ok  " : "FAIL", #fn); \
    } while (0)

static void put_i32(unsigned char *p, int32_t v)
{
    uint32_t u = (uint32_t)v;
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(u >> (8 * i));
}

/* An ak42 header (no tensors): magic, version, the seven config fields, shared flag,
 * group size. */
static void ak42_header(unsigned char *h, int32_t version, const int32_t cfg[7], int32_t group)
{
    memset(h, 0, AK42_HEADER_BYTES);
    put_i32(h, 0x616b3432);
    put_i32(h + 4, version);
    for (int i = 0; i < 7; i++)
        put_i32(h + 8 + 4 * i, cfg[i]);
    h[36] = 1; /* shared classifier */
    put_i32(h + 37, group);
}

/* Mutant 19 (l2c-group-size-div): a Q8 group must divide hidden_dim as well as dim, or
 * groups straddle the rows of w1/w2/w3. The malformed table's group size 3 fails the dim
 * check already, so only a size dividing dim and not hidden_dim tells the two apart. */
static void test_group_size_must_divide_hidden_dim(void)
{
    static const int32_t cfg[7] = {16, 24, 1, 2, 2, 8, 4}; /* dim 16, hidden 24 */
    unsigned char h[AK42_HEADER_BYTES];
    q_model m;
    q_diag d;

    ak42_header(h, 2, cfg, 16); /* 16 | 16, 16 does not divide 24 */
    CHECK_EQ_ERR(q_model_parse(&m, NULL, h, sizeof h, &d), Q_ERR_INVALID_CONFIG);
    CHECK(strcmp(d.field, "group_size") == 0);
    CHECK_EQ_INT(d.offset, 37);
    CHECK_EQ_INT(d.value, 16);

    /* control: a group size dividing both passes the header and stops at the missing
     * tensors, so the case above failed for its group size and nothing else */
    ak42_header(h, 2, cfg, 8);
    CHECK_EQ_ERR(q_model_parse(&m, NULL, h, sizeof h, &d), Q_ERR_TRUNCATED);
}

/* Mutant 21 (cfg-head-size-odd): an odd head size (RoPE rotates pairs) is rejected for
 * itself. The malformed table's row fails anyway with the same code later (its tensor
 * sizes no longer add up to the file: "trailing_bytes"), so the field is what tells. */
static void test_odd_head_size_rejected_by_name(void)
{
    unsigned char h[28];
    static const int32_t cfg[7] = {24, 32, 1, 8, 8, 16, 4}; /* head size 24 / 8 = 3 */
    q_model m;
    q_diag d;
    for (int i = 0; i < 7; i++)
        put_i32(h + 4 * i, cfg[i]);
    CHECK_EQ_ERR(q_model_parse(&m, NULL, h, sizeof h, &d), Q_ERR_INVALID_CONFIG);
    CHECK(strcmp(d.field, "head_size") == 0);
    CHECK_EQ_INT(d.offset, 12); /* the n_heads field */
    CHECK_EQ_INT(d.value, 3);

    /* control: head size 4 passes the header and stops at the missing tensors */
    put_i32(h + 12, 6);
    put_i32(h + 16, 6);
    CHECK_EQ_ERR(q_model_parse(&m, NULL, h, sizeof h, &d), Q_ERR_TRUNCATED);
}

static size_t put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
    return 8;
}

/* Mutant 24 (gguf-array-count): a string array announcing more elements than the bytes left
 * can hold (each needs its 8-byte length) is refused up front, naming the array length.
 * Without that check the parser walks the strings until it runs out, with the same code
 * but blaming an "array string" far from the lying count. */
static void test_gguf_string_array_count_checked_first(void)
{
    unsigned char f[128] = {0};
    size_t n = 0;
    q_model m;
    q_diag d;
    put_i32(f, 0x46554747); /* "GGUF" */
    put_i32(f + 4, 3);
    n = 8;
    n += put_u64(f + n, 0); /* tensors */
    n += put_u64(f + n, 1); /* metadata pairs */
    n += put_u64(f + n, 1); /* key "k" */
    f[n++] = 'k';
    put_i32(f + n, 9); /* array */
    put_i32(f + n + 4, 8); /* of strings */
    n += 8;
    size_t count_at = n;
    n += put_u64(f + n, 1000);
    n += put_u64(f + n, 0); /* two empty strings, then the file ends */
    n += put_u64(f + n, 0);
    CHECK_EQ_ERR(q_model_parse(&m, NULL, f, n, &d), Q_ERR_TRUNCATED);
    CHECK(strcmp(d.field, "array length") == 0);
    CHECK_EQ_INT(d.offset, count_at);

    /* control: a count of 2 parses the pair and stops further on (no architecture key) */
    put_u64(f + count_at, 2);
    q_error_code rc = q_model_parse(&m, NULL, f, n, &d);
    CHECK(rc != Q_OK && strcmp(d.field, "array length") != 0);
}

/* Mutant 27 (gguf-align-pow2): general.alignment must be a power of two (offsets are
 * checked with a mask). The malformed table's row also fails later at a tensor offset
 * with the same code; a file without tensors shows which check refused it. */
static void test_gguf_alignment_power_of_two(void)
{
    static const char key[] = "general.alignment";
    unsigned char f[128] = {0};
    size_t n = 0, value_at;
    q_model m;
    q_diag d;
    put_i32(f, 0x46554747); /* "GGUF" */
    put_i32(f + 4, 3);
    n = 8;
    n += put_u64(f + n, 0); /* tensors */
    n += put_u64(f + n, 1); /* metadata pairs */
    n += put_u64(f + n, sizeof key - 1);
    memcpy(f + n, key, sizeof key - 1);
    n += sizeof key - 1;
    put_i32(f + n, 4); /* uint32 */
    n += 4;
    value_at = n;
    put_i32(f + n, 48);
    n += 4;
    CHECK_EQ_ERR(q_model_parse(&m, NULL, f, n, &d), Q_ERR_BAD_ALIGNMENT);
    CHECK(strcmp(d.field, "general.alignment") == 0);
    CHECK_EQ_INT(d.value, 48);
    CHECK_EQ_INT(d.offset, value_at);

    /* control: 64 passes that check and the parse stops at the missing architecture */
    put_i32(f + value_at, 64);
    CHECK_EQ_ERR(q_model_parse(&m, NULL, f, n, &d), Q_ERR_MISSING);
}

/* Mutant 29 (gguf-zero-dim): a zero dimension is refused where it is read. The malformed
 * table's row reaches the shape check of a model tensor later, with the same code; a file
 * whose only tensor is not a model tensor shows which check refused it. */
static void test_gguf_zero_dimension_named(void)
{
    unsigned char f[160] = {0}; /* zero padding: room for the data section */
    size_t n = 0;
    q_model m;
    q_diag d;
    put_i32(f, 0x46554747); /* "GGUF" */
    put_i32(f + 4, 3);
    n = 8;
    n += put_u64(f + n, 1); /* tensors */
    n += put_u64(f + n, 0); /* metadata pairs */
    n += put_u64(f + n, 1); /* name "t" */
    f[n++] = 't';
    put_i32(f + n, 2); /* n_dims */
    n += 4;
    size_t ne_at = n;
    n += put_u64(f + n, 4);
    n += put_u64(f + n, 0); /* ne[1] = 0 */
    put_i32(f + n, 0); /* F32 */
    n += 4;
    n += put_u64(f + n, 0); /* offset */
    CHECK_EQ_ERR(q_model_parse(&m, NULL, f, sizeof f, &d), Q_ERR_BAD_SHAPE);
    CHECK(strcmp(d.field, "zero dimension of t") == 0);

    /* control: ne[1] = 1 passes the tensor table and stops at the missing architecture */
    put_u64(f + ne_at + 8, 1);
    CHECK_EQ_ERR(q_model_parse(&m, NULL, f, sizeof f, &d), Q_ERR_MISSING);
}

/* Mutant 30 (gguf-offset-end): tensor data ending one byte past the file is refused (the
 * parser would hand out a view reaching past the mapping). The malformed table's offsets
 * are far past the end; this one is off by exactly one. */
static void test_gguf_tensor_data_one_byte_short(void)
{
    unsigned char f[160] = {0};
    size_t n = 0;
    q_model m;
    q_diag d;
    put_i32(f, 0x46554747); /* "GGUF" */
    put_i32(f + 4, 3);
    n = 8;
    n += put_u64(f + n, 1); /* tensors */
    n += put_u64(f + n, 0); /* metadata pairs */
    n += put_u64(f + n, 1); /* name "t" */
    f[n++] = 't';
    put_i32(f + n, 2); /* n_dims */
    n += 4;
    n += put_u64(f + n, 4); /* 4 x 1 float32: 16 bytes */
    n += put_u64(f + n, 1);
    put_i32(f + n, 0); /* F32 */
    n += 4;
    n += put_u64(f + n, 0); /* offset */
    size_t data_at = (n + 31) & ~(size_t)31; /* default alignment 32 */
    CHECK(data_at + 16 <= sizeof f);
    CHECK_EQ_ERR(q_model_parse(&m, NULL, f, data_at + 15, &d), Q_ERR_TRUNCATED);
    CHECK(strcmp(d.field, "data of t") == 0);

    /* control: with all 16 bytes present the parse stops at the missing architecture */
    CHECK_EQ_ERR(q_model_parse(&m, NULL, f, data_at + 16, &d), Q_ERR_MISSING);
}

/* Mutant 36 (tok-len-max): a tokenizer.bin piece one byte longer than max_token_length is
 * refused (the table's row is twice the limit). */
static void test_token_one_byte_over_max_len(void)
{
    unsigned char f[64] = {0};
    size_t n = 0;
    q_tokenizer t;
    q_diag d;
    put_i32(f, 4); /* max_token_length */
    n = 4;
    static const char *const pieces[3] = {"<unk>", "<s>", "</s>"}; /* 5 bytes: over by one */
    for (int i = 0; i < 3; i++) {
        size_t len = strlen(pieces[i]);
        put_i32(f + n, 0); /* score 0.0f */
        put_i32(f + n + 4, (int32_t)len);
        memcpy(f + n + 8, pieces[i], len);
        n += 8 + len;
    }
    CHECK_EQ_ERR(q_tokenizer_parse(&t, f, n, 3, &d), Q_ERR_BAD_TOKEN);
    CHECK(strcmp(d.field, "token length") == 0);
    CHECK_EQ_INT(d.value, 5);

    /* control: max_token_length 5 accepts the same pieces */
    put_i32(f, 5);
    CHECK_EQ_ERR(q_tokenizer_parse(&t, f, n, 3, &d), Q_OK);
    CHECK_EQ_INT(t.vocab_size, 3);
    q_tokenizer_free(&t);
}

/* Mutant 34 (gguf-bos-range): bos_token_id == vocab is refused naming the GGUF key. The
 * common tokenizer check refuses it too, later, with the same code but the field "bos_id";
 * the table's row (260) cannot tell the two apart. */
static void test_gguf_bos_equal_to_vocab(const char *valid_path)
{
    static const char key[] = "tokenizer.ggml.bos_token_id";
    FILE *fp = fopen(valid_path, "rb");
    CHECK(fp != NULL);
    if (fp == NULL)
        return;
    static unsigned char f[1 << 20];
    size_t len = fread(f, 1, sizeof f, fp);
    fclose(fp);
    CHECK(len > 0 && len < sizeof f);

    q_model m;
    q_tokenizer t;
    q_diag d;
    CHECK_EQ_ERR(q_model_parse(&m, &t, f, len, &d), Q_OK);
    size_t vocab = t.vocab_size;
    q_tokenizer_free(&t);
    q_model_free(&m);

    unsigned char *k = NULL;
    for (size_t i = 0; i + sizeof key - 1 + 8 <= len && k == NULL; i++)
        if (memcmp(f + i, key, sizeof key - 1) == 0)
            k = f + i + sizeof key - 1;
    CHECK(k != NULL && k[0] == 4 && k[1] == 0 && k[2] == 0 && k[3] == 0); /* uint32 */
    if (k == NULL)
        return;
    put_i32(k + 4, (int32_t)vocab);
    CHECK_EQ_ERR(q_model_parse(&m, &t, f, len, &d), Q_ERR_BAD_TOKEN);
    CHECK(strcmp(d.field, key) == 0);
    CHECK_EQ_INT(d.value, (int64_t)vocab);

    /* control: the last id is a valid BOS */
    put_i32(k + 4, (int32_t)vocab - 1);
    CHECK_EQ_ERR(q_model_parse(&m, &t, f, len, &d), Q_OK);
    q_tokenizer_free(&t);
    q_model_free(&m);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_mutants_model VALID_GGUF\n");
        return 2;
    }
    RUN_TEST_ARG(test_gguf_bos_equal_to_vocab, argv[1]);
    RUN_TEST(test_token_one_byte_over_max_len);
    RUN_TEST(test_gguf_tensor_data_one_byte_short);
    RUN_TEST(test_gguf_zero_dimension_named);
    RUN_TEST(test_gguf_alignment_power_of_two);
    RUN_TEST(test_gguf_string_array_count_checked_first);
    RUN_TEST(test_group_size_must_divide_hidden_dim);
    RUN_TEST(test_odd_head_size_rejected_by_name);
    return check_result("test_mutants_model");
}
