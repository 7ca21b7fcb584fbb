/*
 * The malformed-file table: reads the manifest written by `qorus-model malformed DIR` and
 * checks that every file returns its expected error code through the library, fills the
 * diagnostic, leaves nothing allocated, and that every prefix of every file parses without
 * crashing (ASan/MSan watch the reads).
 *
 * usage: test_malformed DIR   (DIR/manifest.tsv)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qorus.h"

static const struct { const char *name; q_error_code code; } codes[] = {
#define C(x) {#x, x}
    C(Q_OK), C(Q_ERR_INVALID_ARG), C(Q_ERR_FILE_OPEN), C(Q_ERR_FILE_STAT),
    C(Q_ERR_NOT_REGULAR_FILE), C(Q_ERR_FILE_TOO_SMALL), C(Q_ERR_MMAP), C(Q_ERR_ALLOC),
    C(Q_ERR_ARENA_OOM), C(Q_ERR_OVERFLOW), C(Q_ERR_BAD_MAGIC), C(Q_ERR_UNSUPPORTED_VERSION),
    C(Q_ERR_INVALID_CONFIG), C(Q_ERR_TRUNCATED), C(Q_ERR_VOCAB_MISMATCH),
    C(Q_ERR_UNSUPPORTED_TYPE), C(Q_ERR_INVALID_STATE), C(Q_ERR_BAD_ALIGNMENT),
    C(Q_ERR_DUPLICATE), C(Q_ERR_MISSING), C(Q_ERR_BAD_SHAPE), C(Q_ERR_BAD_TOKEN), C(Q_ERR_IO),
    C(Q_ERR_THREAD),
#undef C
};

static const char *code_name(q_error_code c)
{
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (codes[i].code == c)
            return codes[i].name;
    return "?";
}

static int code_of(const char *name, q_error_code *out)
{
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(codes[i].name, name) == 0) {
            *out = codes[i].code;
            return 0;
        }
    return -1;
}

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *p = NULL;
    size_t cap = 0, n = 0, r;
    if (f == NULL)
        return NULL;
    for (;;) {
        if (n == cap) {
            unsigned char *q = realloc(p, cap ? cap * 2 : 65536);
            if (q == NULL) {
                free(p);
                fclose(f);
                return NULL;
            }
            p = q;
            cap = cap ? cap * 2 : 65536;
        }
        r = fread(p + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    *len = n;
    return p;
}

static int is_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return 0;
    return 1;
}

/* The diagnostic field each rejected table file must name: the rule that rejected it. A
 * file rejected by the wrong rule (e.g. a bad header value whose row still passed because a
 * later check refused the file) fails here. Keyed by the file's name in the manifest. */
static const struct { const char *file; const char *field; } expected_fields[] = {
    {"fuzz_model_llama2c/l2c_empty", "magic"},
    {"fuzz_model_llama2c/l2c_magic_only", "magic"},
    {"fuzz_model_llama2c/l2c_short_header", "header"},
    {"fuzz_model_llama2c/l2c_header_only", "token_embedding"},
    {"fuzz_model_llama2c/l2c_truncated_last_float", "freq_cis_imag"},
    {"fuzz_model_llama2c/l2c_truncated_half", "token_embedding"},
    {"fuzz_model_llama2c/l2c_truncated_odd", "freq_cis_imag"},
    {"fuzz_model_llama2c/l2c_trailing_bytes", "trailing_bytes"},
    {"fuzz_model_llama2c/l2c_dim_zero", "magic (legacy dim)"},
    {"fuzz_model_llama2c/l2c_dim_negative", "magic (legacy dim)"},
    {"fuzz_model_llama2c/l2c_dim_huge", "magic (legacy dim)"},
    {"fuzz_model_llama2c/l2c_hidden_zero", "hidden_dim"},
    {"fuzz_model_llama2c/l2c_hidden_huge", "hidden_dim"},
    {"fuzz_model_llama2c/l2c_layers_zero", "n_layers"},
    {"fuzz_model_llama2c/l2c_layers_huge", "n_layers"},
    {"fuzz_model_llama2c/l2c_n_heads_zero", "n_heads"},
    {"fuzz_model_llama2c/l2c_n_heads_negative", "n_heads"},
    {"fuzz_model_llama2c/l2c_n_heads_huge", "n_heads"},
    {"fuzz_model_llama2c/l2c_n_heads_not_dividing_dim", "n_heads"},
    {"fuzz_model_llama2c/l2c_head_size_odd", "head_size"},
    {"fuzz_model_llama2c/l2c_n_kv_heads_zero", "n_kv_heads"},
    {"fuzz_model_llama2c/l2c_n_kv_heads_above_n_heads", "n_kv_heads"},
    {"fuzz_model_llama2c/l2c_vocab_zero", "vocab_size"},
    {"fuzz_model_llama2c/l2c_vocab_int_min", "vocab_size"},
    {"fuzz_model_llama2c/l2c_vocab_huge", "vocab_size"},
    {"fuzz_model_llama2c/l2c_vocab_negative_huge", "vocab_size"},
    {"fuzz_model_llama2c/l2c_seq_len_zero", "seq_len"},
    {"fuzz_model_llama2c/l2c_seq_len_huge", "seq_len"},
    {"fuzz_model_llama2c/l2c_n_kv_heads_not_dividing", "n_kv_heads"},
    {"fuzz_model_llama2c/l2c_shared_flag_flipped_to_unshared", "wcls"},
    {"fuzz_model_llama2c/l2c_unshared_flag_flipped_to_shared", "trailing_bytes"},
    {"fuzz_model_llama2c/l2c_vocab_larger_than_weights", "freq_cis_imag"},
    {"fuzz_model_llama2c/l2c_layers_plus_one", "w2"},
    {"fuzz_model_llama2c/l2c_seq_len_doubled", "freq_cis_imag"},
    {"fuzz_model_llama2c/ak42_version_0", "version"},
    {"fuzz_model_llama2c/ak42_version_3", "version"},
    {"fuzz_model_llama2c/ak42_version_negative", "version"},
    {"fuzz_model_llama2c/ak42_magic_only", "version"},
    {"fuzz_model_llama2c/ak42_header_truncated", "header"},
    {"fuzz_model_llama2c/ak42_v1_truncated", "w3"},
    {"fuzz_model_llama2c/ak42_v1_trailing_bytes", "trailing_bytes"},
    {"fuzz_model_llama2c/ak42_dim_zero", "dim"},
    {"fuzz_model_llama2c/ak42_n_heads_zero", "n_heads"},
    {"fuzz_model_llama2c/ak42_vocab_negative", "vocab_size"},
    {"fuzz_model_llama2c/ak42_vocab_int_min", "vocab_size"},
    {"fuzz_model_llama2c/ak42_shared_flag_2", "shared_classifier"},
    {"fuzz_model_llama2c/ak42_v1_read_as_v2", "group_size"},
    {"fuzz_model_llama2c/ak42_v2_read_as_v1", "token_embedding"},
    {"fuzz_model_llama2c/ak42_v2_group_size_zero", "group_size"},
    {"fuzz_model_llama2c/ak42_v2_group_size_negative", "group_size"},
    {"fuzz_model_llama2c/ak42_v2_group_size_not_dividing", "group_size"},
    {"fuzz_model_llama2c/ak42_v2_group_size_huge", "group_size"},
    {"fuzz_model_llama2c/ak42_v2_truncated_scales", "w3"},
    {"fuzz_tokenizer/tok_empty", "max_token_length"},
    {"fuzz_tokenizer/tok_truncated_score", "token score"},
    {"fuzz_tokenizer/tok_truncated_length", "token length"},
    {"fuzz_tokenizer/tok_truncated_piece", "token bytes"},
    {"fuzz_tokenizer/tok_trailing_garbage", "trailing_bytes"},
    {"fuzz_tokenizer/tok_max_token_length_zero", "max_token_length"},
    {"fuzz_tokenizer/tok_max_token_length_negative", "max_token_length"},
    {"fuzz_tokenizer/tok_max_token_length_huge", "max_token_length"},
    {"fuzz_tokenizer/tok_length_above_max_token_length", "token length"},
    {"fuzz_tokenizer/tok_negative_length", "token length"},
    {"fuzz_tokenizer/tok_length_int_min", "token length"},
    {"fuzz_tokenizer/tok_nan_score", "token score (NaN)"},
    {"fuzz_tokenizer/tok_length_past_end", "token bytes"},
    {"fuzz_tokenizer/tok_byte_token_minus_1", "byte token <0x-1>"},
    {"fuzz_tokenizer/tok_byte_token_one_digit", "byte token <0x1>"},
    {"fuzz_tokenizer/tok_byte_token_three_digits", "byte token <0x100>"},
    {"fuzz_tokenizer/tok_byte_token_not_hex", "byte token <0xGG>"},
    {"fuzz_tokenizer/tok_byte_token_empty", "byte token <0x>"},
    {"fuzz_tokenizer/tok_byte_token_duplicate", "byte token <0x41>"},
    {"fuzz_tokenizer/tok_fewer_tokens_than_model", "vocab_size"},
    {"fuzz_tokenizer/tok_more_tokens_than_model", "vocab_size"},
    {"fuzz_tokenizer/tok_eos_out_of_range", "eos_id"},
    {"fuzz_gguf/gguf_header_short", "header"},
    {"fuzz_gguf/gguf_truncated_in_metadata", "n_kv"},
    {"fuzz_gguf/gguf_truncated_data", "data of blk.1.ffn_up.weight"},
    {"fuzz_gguf/gguf_version_1", "version"},
    {"fuzz_gguf/gguf_version_4", "version"},
    {"fuzz_gguf/gguf_version_big_endian", "version"},
    {"fuzz_gguf/gguf_n_tensors_times_size_overflow", "n_tensors"},
    {"fuzz_gguf/gguf_n_kv_times_size_overflow", "n_kv"},
    {"fuzz_gguf/gguf_n_kv_past_end", "n_kv"},
    {"fuzz_gguf/gguf_n_tensors_past_end", "n_tensors"},
    {"fuzz_gguf/gguf_string_length_n_plus_1_overflow", "key"},
    {"fuzz_gguf/gguf_string_length_past_end", "key"},
    {"fuzz_gguf/gguf_token_length_n_plus_1_overflow", "array string"},
    {"fuzz_gguf/gguf_value_type_unknown", "value type of qorus.bad_type"},
    {"fuzz_gguf/gguf_nested_array", "array type of qorus.nested"},
    {"fuzz_gguf/gguf_array_count_times_size_overflow", "array length"},
    {"fuzz_gguf/gguf_duplicate_key", "key llama.block_count"},
    {"fuzz_gguf/gguf_alignment_zero", "general.alignment"},
    {"fuzz_gguf/gguf_alignment_not_power_of_two", "general.alignment"},
    {"fuzz_gguf/gguf_alignment_huge", "general.alignment"},
    {"fuzz_gguf/gguf_alignment_wrong_type", "general.alignment"},
    {"fuzz_gguf/gguf_missing_architecture", "general.architecture"},
    {"fuzz_gguf/gguf_architecture_gpt2", "general.architecture gpt2"},
    {"fuzz_gguf/gguf_missing_block_count", "llama.block_count"},
    {"fuzz_gguf/gguf_missing_embedding_length", "llama.embedding_length"},
    {"fuzz_gguf/gguf_embedding_length_string", "llama.embedding_length"},
    {"fuzz_gguf/gguf_block_count_zero", "n_layers"},
    {"fuzz_gguf/gguf_head_count_zero", "n_heads"},
    {"fuzz_gguf/gguf_head_count_not_dividing", "n_heads"},
    {"fuzz_gguf/gguf_head_count_kv_not_dividing", "n_kv_heads"},
    {"fuzz_gguf/gguf_context_length_negative", "seq_len"},
    {"fuzz_gguf/gguf_context_length_huge", "seq_len"},
    {"fuzz_gguf/gguf_rope_dimension_mismatch", "llama.rope.dimension_count"},
    {"fuzz_gguf/gguf_rope_freq_base_nan", "rope_theta"},
    {"fuzz_gguf/gguf_rope_freq_base_huge_negative", "rope_theta"},
    {"fuzz_gguf/gguf_rope_freq_base_zero", "rope_theta"},
    {"fuzz_gguf/gguf_rms_epsilon_negative", "norm_eps"},
    {"fuzz_gguf/gguf_vocab_size_key_mismatch", "llama.vocab_size"},
    {"fuzz_gguf/gguf_block_count_above_tensors", "tensor blk.2.attn_norm.weight"},
    {"fuzz_gguf/gguf_block_count_below_tensors", "block of blk.1.attn_k.weight"},
    {"fuzz_gguf/gguf_n_dims_above_max", "n_dims of blk.0.attn_q.weight"},
    {"fuzz_gguf/gguf_n_dims_zero", "n_dims of blk.0.attn_q.weight"},
    {"fuzz_gguf/gguf_zero_dimension", "zero dimension of blk.0.attn_q.weight"},
    {"fuzz_gguf/gguf_tensor_type_q4_1", "type of blk.0.attn_k.weight"},
    {"fuzz_gguf/gguf_tensor_type_unknown", "type of blk.0.attn_k.weight"},
    {"fuzz_gguf/gguf_tensor_type_29", "type of blk.0.attn_k.weight"},
    {"fuzz_gguf/gguf_tensor_type_31", "type of blk.0.attn_k.weight"},
    {"fuzz_gguf/gguf_ne_product_overflow", "ne of token_embd.weight"},
    {"fuzz_gguf/gguf_ne_times_type_size_overflow", "size of output_norm.weight"},
    {"fuzz_gguf/gguf_ne_above_int64", "ne of output_norm.weight"},
    {"fuzz_gguf/gguf_cumulative_data_size_overflow", "data size at qorus.big.b"},
    {"fuzz_gguf/gguf_duplicate_tensor_name", "tensor output_norm.weight"},
    {"fuzz_gguf/gguf_tensor_offset_unaligned", "offset of blk.0.attn_v.weight"},
    {"fuzz_gguf/gguf_tensor_offset_past_end", "data of output_norm.weight"},
    {"fuzz_gguf/gguf_tensor_offset_wraps", "offset of output_norm.weight"},
    {"fuzz_gguf/gguf_q8_0_row_not_multiple_of_32", "Q8_0 row of blk.0.attn_q.weight"},
    {"fuzz_gguf/gguf_q4_0_row_not_multiple_of_32", "Q4_0 row of blk.0.attn_q.weight"},
    {"fuzz_gguf/gguf_q4_k_row_not_multiple_of_256", "Q4_K row of blk.0.attn_q.weight"},
    {"fuzz_gguf/gguf_q5_k_row_not_multiple_of_256", "Q5_K row of blk.0.attn_q.weight"},
    {"fuzz_gguf/gguf_q6_k_row_not_multiple_of_256", "Q6_K row of blk.0.attn_q.weight"},
    {"fuzz_gguf/gguf_tensor_shape_mismatch", "tensor blk.0.attn_q.weight"},
    {"fuzz_gguf/gguf_tensor_3d", "tensor blk.0.attn_q.weight"},
    {"fuzz_gguf/gguf_norm_not_f32", "type of output_norm.weight"},
    {"fuzz_gguf/gguf_norm_bf16", "type of blk.1.ffn_norm.weight"},
    {"fuzz_gguf/gguf_missing_tensor", "tensor blk.1.ffn_up.weight"},
    {"fuzz_gguf/gguf_missing_token_embd", "tensor token_embd.weight"},
    {"fuzz_gguf/gguf_missing_output_norm", "tensor output_norm.weight"},
    {"fuzz_gguf/gguf_missing_tokens", "tokenizer.ggml.tokens"},
    {"fuzz_gguf/gguf_missing_scores", "tokenizer.ggml.scores"},
    {"fuzz_gguf/gguf_tokens_wrong_element_type", "tokenizer.ggml.tokens"},
    {"fuzz_gguf/gguf_scores_wrong_element_type", "tokenizer.ggml.scores"},
    {"fuzz_gguf/gguf_token_type_wrong_element_type", "tokenizer.ggml.token_type"},
    {"fuzz_gguf/gguf_tokens_fewer_than_vocab", "tokenizer.ggml.tokens"},
    {"fuzz_gguf/gguf_scores_fewer_than_tokens", "tokenizer.ggml.scores"},
    {"fuzz_gguf/gguf_bos_out_of_range", "tokenizer.ggml.bos_token_id"},
    {"fuzz_gguf/gguf_bos_negative", "tokenizer.ggml.bos_token_id"},
    {"fuzz_gguf/gguf_byte_token_minus_1", "byte token <0x-1>"},
    {"fuzz_gguf/gguf_qwen2_bias_wrong_shape", "tensor blk.0.attn_k.bias"},
    {"fuzz_gguf/gguf_qwen2_bias_f16", "type of blk.0.attn_v.bias"},
    {"fuzz_gguf/gguf_qwen2_llama_keys", "qwen2.block_count"},
    {"fuzz_gguf/gguf_rope_freqs_count", "tensor rope_freqs.weight"},
    {"fuzz_gguf/gguf_rope_freqs_f16", "type of rope_freqs.weight"},
    {"fuzz_gguf/gguf_rope_freqs_zero", "value of rope_freqs.weight"},
    {"fuzz_gguf/gguf_rope_freqs_negative_infinity", "value of rope_freqs.weight"},
    {"fuzz_gguf/gguf_rope_scaling_yarn", "rope scaling yarn"},
    {"fuzz_gguf/gguf_rope_scaling_linear_without_factor", "llama.rope.scaling.factor"},
    {"fuzz_gguf/gguf_rope_scaling_factor_below_1", "llama.rope.scaling.factor"},
    {"fuzz_gguf/vocab_only_bpe_llama3.gguf", "tensor token_embd.weight"},
    {"fuzz_gguf/gguf_bpe_model_unknown", "tokenizer.ggml.model bert"},
    {"fuzz_gguf/gguf_bpe_model_not_string", "tokenizer.ggml.model"},
    {"fuzz_gguf/gguf_bpe_pre_missing", "tokenizer.ggml.pre"},
    {"fuzz_gguf/gguf_bpe_pre_not_string", "tokenizer.ggml.pre"},
    {"fuzz_gguf/gguf_bpe_pre_unknown", "tokenizer.ggml.pre falcon"},
    {"fuzz_gguf/gguf_bpe_merges_missing", "tokenizer.ggml.merges"},
    {"fuzz_gguf/gguf_bpe_merges_i32", "tokenizer.ggml.merges"},
    {"fuzz_gguf/gguf_bpe_merge_no_space", "merge (not \"left right\")"},
    {"fuzz_gguf/gguf_bpe_merge_two_spaces", "merge (not \"left right\")"},
    {"fuzz_gguf/gguf_bpe_merge_empty_side", "merge (not \"left right\")"},
    {"fuzz_gguf/gguf_bpe_merge_unknown_token", "merge names an unknown token"},
    {"fuzz_gguf/gguf_bpe_merge_result_not_token", "merge result is not a token"},
    {"fuzz_gguf/gguf_bpe_merge_side_user_defined", "merge names an unknown token"},
    {"fuzz_gguf/gguf_bpe_merge_duplicate", "tokenizer.ggml.merges"},
    {"fuzz_gguf/gguf_bpe_token_type_0", "tokenizer.ggml.token_type"},
    {"fuzz_gguf/gguf_bpe_token_type_7", "tokenizer.ggml.token_type"},
    {"fuzz_gguf/gguf_bpe_token_raw_space", "token (not byte-level text)"},
    {"fuzz_gguf/gguf_bpe_token_not_utf8", "token (not byte-level text)"},
    {"fuzz_gguf/gguf_bpe_token_empty", "token (empty)"},
    {"fuzz_gguf/gguf_bpe_byte_piece_missing", "byte-level token of byte"},
    {"fuzz_gguf/gguf_bpe_byte_piece_control", "byte-level token of byte"},
    {"fuzz_gguf/gguf_bpe_bos_missing", "tokenizer.ggml.bos_token_id"},
    {"fuzz_gguf/gguf_bpe_eos_out_of_range", "tokenizer.ggml.eos_token_id"},
    {"fuzz_gguf/gguf_bpe_eot_out_of_range", "tokenizer.ggml.eot_token_id"},
    {"fuzz_gguf/gguf_bpe_add_bos_not_bool", "tokenizer.ggml.add_bos_token"},
    {"fuzz_gguf/gguf_spm_eot_out_of_range", "tokenizer.ggml.eot_token_id"},
    {"fuzz_gguf/gguf_spm_add_bos_not_bool", "tokenizer.ggml.add_bos_token"},
};

static const char *expected_field(const char *file)
{
    for (size_t i = 0; i < sizeof expected_fields / sizeof expected_fields[0]; i++)
        if (strcmp(expected_fields[i].file, file) == 0)
            return expected_fields[i].field;
    return NULL;
}

/* Parses `buf` as `kind`; on error checks that nothing was left allocated. */
static q_error_code parse(const char *kind, const unsigned char *buf, size_t len, size_t vocab,
                          q_diag *d, int *leftovers)
{
    q_error_code rc;
    *leftovers = 0;
    if (strcmp(kind, "tokenizer") == 0) {
        q_tokenizer t;
        rc = q_tokenizer_parse(&t, buf, len, vocab, d);
        if (rc != Q_OK)
            *leftovers = !is_zero(&t, sizeof t);
        q_tokenizer_free(&t);
    } else {
        q_model m;
        q_tokenizer t;
        rc = q_model_parse(&m, &t, buf, len, d);
        if (rc != Q_OK)
            *leftovers = !is_zero(&m, sizeof m) || !is_zero(&t, sizeof t);
        else if (strcmp(kind, "gguf") == 0 ? m.format != Q_FORMAT_GGUF
                                            : m.format != Q_FORMAT_LLAMA2C)
            *leftovers = 2;
        q_model_free(&m);
        q_tokenizer_free(&t);
    }
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Boundary rows: for every numeric rule, the last valid value passes that rule (the file is
 * accepted, or — when a valid file at the limit would be gigabytes — rejected by a LATER rule,
 * named in the diagnostic), the first invalid values are rejected by that rule. Every row checks
 * the error code and the diagnostic field, so a file refused for the wrong reason fails.       */
/* ------------------------------------------------------------------------------------ */

typedef struct buf_t {
    unsigned char *p;
    size_t len, cap;
} buf_t;

static void put(buf_t *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (b->p == NULL)
            abort();
        b->cap = cap;
    }
    if (src != NULL)
        memcpy(b->p + b->len, src, n);
    else
        memset(b->p + b->len, 0, n);
    b->len += n;
}
static void put_u32(buf_t *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    put(b, x, 4);
}
static void put_u64(buf_t *b, uint64_t v)
{
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}
static void put_f32(buf_t *b, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    put_u32(b, u);
}
static void put_str(buf_t *b, const char *s, size_t n)
{
    put_u64(b, n);
    put(b, s, n);
}

static int boundary_failures, boundary_rows;

/* One row: `kind` "model" (q_model_parse with a tokenizer) or "tokenizer". */
static void row(const char *name, const char *kind, const buf_t *b, size_t vocab,
                q_error_code expect, const char *expect_field)
{
    q_diag d;
    int left;
    q_error_code got = parse(strcmp(kind, "tokenizer") == 0 ? "tokenizer" : "model", b->p,
                             b->len, vocab, &d, &left);
    boundary_rows++;
    if (got != expect || (expect != Q_OK && strcmp(d.field, expect_field) != 0)) {
        fprintf(stderr, "FAIL boundary %s: got %s (field '%s' = %lld), expected %s ('%s')\n",
                name, code_name(got), d.field, (long long)d.value, code_name(expect),
                expect == Q_OK ? "" : expect_field);
        boundary_failures++;
    } else if (left == 1) {
        fprintf(stderr, "FAIL boundary %s: output not zeroed on error\n", name);
        boundary_failures++;
    }
}

/* A llama2.c header (v0: 28 bytes; v1/v2: 256 bytes) with config `f`, and `weights` zero
 * bytes after it. */
static void l2c(buf_t *b, int version, const int32_t f[7], int shared, int32_t gs,
                size_t weights)
{
    b->len = 0;
    if (version > 0) {
        put_u32(b, 0x616b3432u);
        put_u32(b, (uint32_t)version);
    }
    for (int i = 0; i < 7; i++)
        put_u32(b, (uint32_t)f[i]);
    if (version > 0) {
        unsigned char flag = (unsigned char)shared;
        put(b, &flag, 1);
        if (version == 2)
            put_u32(b, (uint32_t)gs);
        put(b, NULL, 256 - b->len);
    }
    put(b, NULL, weights);
}

/* Float count of a v0/v1 file with the small config (dim 8, hidden 16, 1 layer, 2 heads). */
static size_t l2c_floats(int version, const int32_t f[7], int shared)
{
    size_t dim = (size_t)f[0], hid = (size_t)f[1], L = (size_t)f[2], hs = dim / (size_t)f[3];
    size_t kv = (size_t)f[4] * hs, vocab = (size_t)(f[5] < 0 ? -f[5] : f[5]);
    size_t n = vocab * dim * (shared ? 1 : 2) + L * (2 * dim + 2 * dim * dim + 2 * kv * dim +
                                                     3 * hid * dim) + dim;
    if (version == 0)
        n += (size_t)f[6] * hs; /* freq_cis real + imag */
    return n;
}

static void boundary_llama2c(void)
{
    static const char *const names[7] = {"dim", "hidden_dim", "n_layers", "n_heads",
                                         "n_kv_heads", "vocab_size", "seq_len"};
    static const uint32_t max[7] = {Q_MAX_DIM, Q_MAX_HIDDEN_DIM, Q_MAX_LAYERS, Q_MAX_HEADS,
                                    Q_MAX_HEADS, Q_MAX_VOCAB, Q_MAX_SEQ_LEN};
    const int32_t base[7] = {8, 16, 1, 2, 2, 4, 4};
    buf_t b = {0};
    char name[96];
    int32_t f[7];

    /* valid files, exact size; one float more or less */
    for (int version = 0; version <= 1; version++)
        for (int shared = 0; shared <= 1; shared++) {
            memcpy(f, base, sizeof f);
            if (version == 0 && !shared)
                f[5] = -f[5];
            size_t w = 4 * l2c_floats(version, base, shared);
            snprintf(name, sizeof name, "v%d shared=%d exact size", version, shared);
            l2c(&b, version, f, shared, 0, w);
            row(name, "model", &b, 0, Q_OK, "");
            snprintf(name, sizeof name, "v%d shared=%d one byte short", version, shared);
            l2c(&b, version, f, shared, 0, w - 1);
            row(name, "model", &b, 0, Q_ERR_TRUNCATED,
                !shared ? "wcls" : version == 0 ? "freq_cis_imag" : "w3");
            snprintf(name, sizeof name, "v%d shared=%d one float over", version, shared);
            l2c(&b, version, f, shared, 0, w + 4);
            row(name, "model", &b, 0, Q_ERR_INVALID_CONFIG, "trailing_bytes");
        }

    /* every config field through an ak42 v1 header: 1 and the maximum pass the config rules
     * (the header-only file is then truncated at its first tensor, rms_att); 0, -1 and the
     * maximum + 1 are the field's own error */
    for (int i = 0; i < 7; i++) {
        const int32_t lo[3] = {0, -1, 0};
        for (int k = 0; k < 4; k++) {
            int32_t value = k == 0 ? 1 : k == 1 ? (int32_t)max[i] : k == 2 ? (int32_t)max[i] + 1
                                                                          : lo[0];
            memcpy(f, base, sizeof f);
            if (i == 3 || i == 4) { /* heads: dim a multiple, head size even */
                f[0] = 2048;
                f[3] = f[4] = 1;
                if (i == 4)
                    f[3] = (int32_t)Q_MAX_HEADS;
            }
            if (i == 0 && value == 1)
                f[3] = f[4] = 1; /* dim 1: head size 1 is odd, see the head-size rows */
            f[i] = value;
            int ok_config = k <= 1 && !(i == 0 && value == 1);
            snprintf(name, sizeof name, "ak42 %s = %d", names[i], value);
            l2c(&b, 1, f, 1, 0, 0);
            row(name, "model", &b, 0, ok_config ? Q_ERR_TRUNCATED : Q_ERR_INVALID_CONFIG,
                ok_config ? "rms_att" : (i == 0 && value == 1) ? "head_size" : names[i]);
            if (k == 3) { /* and -1 */
                f[i] = -1;
                snprintf(name, sizeof name, "ak42 %s = -1", names[i]);
                l2c(&b, 1, f, 1, 0, 0);
                row(name, "model", &b, 0, Q_ERR_INVALID_CONFIG, names[i]);
            }
        }
    }
    /* the legacy dim is the format's magic */
    memcpy(f, base, sizeof f);
    f[0] = (int32_t)Q_MAX_DIM;
    l2c(&b, 0, f, 1, 0, 0);
    row("v0 dim = Q_MAX_DIM", "model", &b, 0, Q_ERR_TRUNCATED, "token_embedding");
    f[0] = (int32_t)Q_MAX_DIM + 1;
    l2c(&b, 0, f, 1, 0, 0);
    row("v0 dim = Q_MAX_DIM + 1", "model", &b, 0, Q_ERR_BAD_MAGIC, "magic (legacy dim)");
    f[0] = 0;
    l2c(&b, 0, f, 1, 0, 0);
    row("v0 dim = 0", "model", &b, 0, Q_ERR_BAD_MAGIC, "magic (legacy dim)");
    /* v0 vocab: -Q_MAX_VOCAB is an unshared classifier, one more is out of range */
    memcpy(f, base, sizeof f);
    f[5] = -(int32_t)Q_MAX_VOCAB;
    l2c(&b, 0, f, 0, 0, 0);
    row("v0 vocab = -Q_MAX_VOCAB", "model", &b, 0, Q_ERR_TRUNCATED, "token_embedding");
    f[5] = -(int32_t)Q_MAX_VOCAB - 1;
    l2c(&b, 0, f, 0, 0, 0);
    row("v0 vocab = -Q_MAX_VOCAB - 1", "model", &b, 0, Q_ERR_INVALID_CONFIG, "vocab_size");
    /* divisibility and head size */
    memcpy(f, base, sizeof f);
    f[0] = 6, f[3] = 3, f[4] = 3; /* head size 2 */
    l2c(&b, 1, f, 1, 0, 0);
    row("ak42 head size 2", "model", &b, 0, Q_ERR_TRUNCATED, "rms_att");
    f[3] = 2, f[4] = 2; /* head size 3 */
    l2c(&b, 1, f, 1, 0, 0);
    row("ak42 head size 3", "model", &b, 0, Q_ERR_INVALID_CONFIG, "head_size");
    f[0] = 8, f[3] = 3, f[4] = 3; /* 3 does not divide 8 */
    l2c(&b, 1, f, 1, 0, 0);
    row("ak42 n_heads 3, dim 8", "model", &b, 0, Q_ERR_INVALID_CONFIG, "n_heads");
    f[0] = 16, f[3] = 4, f[4] = 3; /* 3 does not divide 4 */
    l2c(&b, 1, f, 1, 0, 0);
    row("ak42 n_kv_heads 3, n_heads 4", "model", &b, 0, Q_ERR_INVALID_CONFIG, "n_kv_heads");
    f[4] = 8; /* above n_heads */
    l2c(&b, 1, f, 1, 0, 0);
    row("ak42 n_kv_heads 8, n_heads 4", "model", &b, 0, Q_ERR_INVALID_CONFIG, "n_kv_heads");
    /* version and shared flag */
    memcpy(f, base, sizeof f);
    for (int version = 0; version <= 3; version++) {
        snprintf(name, sizeof name, "ak42 version %d", version);
        b.len = 0;
        put_u32(&b, 0x616b3432u);
        put_u32(&b, (uint32_t)version);
        for (int i = 0; i < 7; i++)
            put_u32(&b, (uint32_t)f[i]);
        put(&b, "\1\4\0\0\0", 5); /* shared, group size 4 */
        put(&b, NULL, 256 - b.len);
        row(name, "model", &b, 0,
            version == 1 || version == 2 ? Q_ERR_TRUNCATED : Q_ERR_UNSUPPORTED_VERSION,
            version == 1 || version == 2 ? "rms_att" : "version");
    }
    for (int flag = 1; flag <= 2; flag++) {
        l2c(&b, 1, f, flag, 0, 0);
        snprintf(name, sizeof name, "ak42 shared_classifier %d", flag);
        row(name, "model", &b, 0, flag == 1 ? Q_ERR_TRUNCATED : Q_ERR_INVALID_CONFIG,
            flag == 1 ? "rms_att" : "shared_classifier");
    }
    /* v2 group size: 1..Q_MAX_GROUP_SIZE, dividing dim and hidden_dim */
    f[0] = (int32_t)Q_MAX_GROUP_SIZE, f[1] = (int32_t)Q_MAX_GROUP_SIZE;
    const int32_t groups[5] = {1, (int32_t)Q_MAX_GROUP_SIZE, (int32_t)Q_MAX_GROUP_SIZE + 1, 0, -1};
    for (int k = 0; k < 5; k++) {
        l2c(&b, 2, f, 1, groups[k], 0);
        snprintf(name, sizeof name, "ak42 v2 group_size %d", groups[k]);
        row(name, "model", &b, 0, k < 2 ? Q_ERR_TRUNCATED : Q_ERR_INVALID_CONFIG,
            k < 2 ? "rms_att" : "group_size");
    }
    f[0] = 8, f[1] = 12; /* 8 divides dim but not hidden_dim */
    l2c(&b, 2, f, 1, 8, 0);
    row("ak42 v2 group_size 8, hidden 12", "model", &b, 0, Q_ERR_INVALID_CONFIG, "group_size");
    l2c(&b, 2, f, 1, 4, 0);
    row("ak42 v2 group_size 4, hidden 12", "model", &b, 0, Q_ERR_TRUNCATED, "rms_att");
    free(b.p);
}

/* tokenizer.bin with `n` pieces "a", "b", ... (piece `long_at` of `long_len` bytes instead). */
static void tok(buf_t *b, int32_t max_len, size_t n, size_t long_at, int32_t long_len)
{
    b->len = 0;
    put_u32(b, (uint32_t)max_len);
    for (size_t i = 0; i < n; i++) {
        put_f32(b, -(float)i);
        int32_t len = i == long_at ? long_len : 1;
        put_u32(b, (uint32_t)len);
        for (int32_t k = 0; k < len; k++) {
            char c = (char)('a' + i % 26);
            put(b, &c, 1);
        }
    }
}

static void boundary_tokenizer(void)
{
    buf_t b = {0};
    tok(&b, (int32_t)Q_MAX_TOKEN_BYTES, 3, 0, (int32_t)Q_MAX_TOKEN_BYTES);
    row("max_token_length = Q_MAX_TOKEN_BYTES, piece of that length", "tokenizer", &b, 3, Q_OK, "");
    tok(&b, (int32_t)Q_MAX_TOKEN_BYTES + 1, 3, 9, 1);
    row("max_token_length = Q_MAX_TOKEN_BYTES + 1", "tokenizer", &b, 3, Q_ERR_INVALID_CONFIG,
        "max_token_length");
    tok(&b, 0, 3, 9, 1);
    row("max_token_length = 0", "tokenizer", &b, 3, Q_ERR_INVALID_CONFIG, "max_token_length");
    tok(&b, 1, 3, 9, 1);
    row("max_token_length = 1", "tokenizer", &b, 3, Q_OK, "");
    tok(&b, 4, 3, 1, 4);
    row("piece length = max_token_length", "tokenizer", &b, 3, Q_OK, "");
    tok(&b, 4, 3, 1, 5);
    row("piece length = max_token_length + 1", "tokenizer", &b, 3, Q_ERR_BAD_TOKEN, "token length");
    tok(&b, 4, 3, 1, 0);
    row("piece length 0", "tokenizer", &b, 3, Q_OK, "");
    tok(&b, 4, 3, 1, -1);
    row("piece length -1", "tokenizer", &b, 3, Q_ERR_BAD_TOKEN, "token length");
    /* bos 1 and eos 2 must be ids: 3 pieces is the smallest vocabulary */
    tok(&b, 4, 3, 9, 1);
    row("vocab 3 (eos 2 in range)", "tokenizer", &b, 3, Q_OK, "");
    tok(&b, 4, 2, 9, 1);
    row("vocab 2 (eos 2 = vocab)", "tokenizer", &b, 2, Q_ERR_BAD_TOKEN, "eos_id");
    tok(&b, 4, 1, 9, 1);
    row("vocab 1 (bos 1 = vocab)", "tokenizer", &b, 1, Q_ERR_BAD_TOKEN, "bos_id");
    tok(&b, 4, 3, 9, 1);
    row("expected vocab 4 of 3", "tokenizer", &b, 4, Q_ERR_VOCAB_MISMATCH, "vocab_size");
    row("expected vocab 2 of 3", "tokenizer", &b, 2, Q_ERR_VOCAB_MISMATCH, "vocab_size");
    row("expected vocab Q_MAX_VOCAB + 1", "tokenizer", &b, (size_t)Q_MAX_VOCAB + 1,
        Q_ERR_INVALID_CONFIG, "vocab_size");
    /* scores: infinity is a score, NaN is not */
    b.len = 0;
    put_u32(&b, 4);
    for (int i = 0; i < 3; i++) {
        put_f32(&b, i == 1 ? -HUGE_VALF : i == 2 ? NAN : 0.0f);
        put_u32(&b, 1);
        put(&b, "x", 1);
    }
    row("score NaN (third piece)", "tokenizer", &b, 3, Q_ERR_BAD_TOKEN, "token score (NaN)");
    b.len -= 9; /* the third entry again, with +inf */
    put_f32(&b, HUGE_VALF);
    put_u32(&b, 1);
    put(&b, "x", 1);
    row("score -inf and +inf", "tokenizer", &b, 3, Q_OK, "");
    /* byte pieces: <0xHH> exactly; 0xff and 0x00 are bytes, a second <0x41> is a duplicate */
    static const char *const pieces[][3] = {
        {"<0x00>", "<0xff>", "<0xFE>"}, {"<0x41>", "<0x41>", "c"}, {"<0x4>", "b", "c"},
        {"<0x414>", "b", "c"},          {"<0xg0>", "b", "c"},       {"<0x>", "b", "c"},
        {"<0x", "0x41>", "<0x41"},
    };
    static const q_error_code expect[] = {Q_OK, Q_ERR_DUPLICATE, Q_ERR_BAD_TOKEN, Q_ERR_BAD_TOKEN,
                                          Q_ERR_BAD_TOKEN, Q_ERR_BAD_TOKEN, Q_OK};
    static const char *const field[] = {"", "byte token <0x41>", "byte token <0x4>",
                                        "byte token <0x414>", "byte token <0xg0>",
                                        "byte token <0x>", ""};
    for (size_t k = 0; k < sizeof expect / sizeof expect[0]; k++) {
        b.len = 0;
        put_u32(&b, 8);
        for (int i = 0; i < 3; i++) {
            put_f32(&b, 0.0f);
            put_u32(&b, (uint32_t)strlen(pieces[k][i]));
            put(&b, pieces[k][i], strlen(pieces[k][i]));
        }
        char name[64];
        snprintf(name, sizeof name, "byte pieces %s %s %s", pieces[k][0], pieces[k][1],
                 pieces[k][2]);
        row(name, "tokenizer", &b, 3, expect[k], field[k]);
    }
    free(b.p);
}

/* A tiny GGUF v3 llama (dim 8, hidden 16, 1 layer, 2 heads, vocab 4, F32) with knobs. */
typedef struct gguf_opt {
    int alignment_type;        /* 0: no general.alignment key; else its value type */
    uint32_t alignment;
    int block_count_bool;      /* llama.block_count as bool (true) instead of u32 */
    int freq_base_f64;         /* llama.rope.freq_base as f64 */
    double freq_base;
    int eps_set;
    float eps;
    int bos_set, eos_set;
    int32_t bos, eos;
    size_t piece_len;          /* length of piece 3 (0: 1 byte) */
    const char *extra;         /* an extra tensor, shaped like attn_q (dim x dim) */
} gguf_opt;

static void gguf(buf_t *b, const gguf_opt *o)
{
    enum { U32 = 4, I32 = 5, F32 = 6, BOOL = 7, STR = 8, ARR = 9, F64 = 12 };
    static const char *const tnames[12] = {
        "token_embd.weight",          "output_norm.weight",       "blk.0.attn_norm.weight",
        "blk.0.attn_q.weight",        "blk.0.attn_k.weight",      "blk.0.attn_v.weight",
        "blk.0.attn_output.weight",   "blk.0.ffn_norm.weight",    "blk.0.ffn_gate.weight",
        "blk.0.ffn_down.weight",      "blk.0.ffn_up.weight",      NULL};
    /* ne[0], ne[1] */
    static const uint64_t shape[12][2] = {{8, 4}, {8, 1}, {8, 1}, {8, 8}, {8, 8}, {8, 8},
                                          {8, 8}, {8, 1}, {8, 16}, {16, 8}, {8, 16}, {8, 8}};
    static const char *const ukeys[6] = {"llama.embedding_length", "llama.feed_forward_length",
                                         "llama.block_count", "llama.attention.head_count",
                                         "llama.attention.head_count_kv", "llama.context_length"};
    static const uint32_t uvals[6] = {8, 16, 1, 2, 2, 4};
    uint32_t align = o->alignment_type == U32 && o->alignment != 0 &&
                             (o->alignment & (o->alignment - 1)) == 0 &&
                             o->alignment <= Q_GGUF_MAX_ALIGNMENT
                         ? o->alignment
                         : 32; /* where the data goes; an invalid value is written as is */
    size_t n_t = o->extra ? 12 : 11;
    uint64_t n_kv = (uint64_t)(1 + 6 + 2 + (o->alignment_type != 0) + (o->freq_base_f64 != 0) +
                               (o->eps_set != 0) + (o->bos_set != 0) + (o->eos_set != 0));
    b->len = 0;
    put(b, "GGUF", 4);
    put_u32(b, 3);
    put_u64(b, n_t);
    put_u64(b, n_kv);
    put_str(b, "general.architecture", 20);
    put_u32(b, STR);
    put_str(b, "llama", 5);
    if (o->alignment_type) {
        put_str(b, "general.alignment", 17);
        put_u32(b, (uint32_t)o->alignment_type);
        if (o->alignment_type == U32)
            put_u32(b, o->alignment);
        else
            put_u64(b, o->alignment);
    }
    for (int i = 0; i < 6; i++) {
        put_str(b, ukeys[i], strlen(ukeys[i]));
        if (i == 2 && o->block_count_bool) {
            put_u32(b, BOOL);
            put(b, "\1", 1);
        } else {
            put_u32(b, U32);
            put_u32(b, uvals[i]);
        }
    }
    if (o->freq_base_f64) {
        uint64_t u;
        memcpy(&u, &o->freq_base, 8);
        put_str(b, "llama.rope.freq_base", 20);
        put_u32(b, F64);
        put_u64(b, u);
    }
    if (o->eps_set) {
        put_str(b, "llama.attention.layer_norm_rms_epsilon", 38);
        put_u32(b, F32);
        put_f32(b, o->eps);
    }
    if (o->bos_set) {
        put_str(b, "tokenizer.ggml.bos_token_id", 27);
        put_u32(b, I32);
        put_u32(b, (uint32_t)o->bos);
    }
    if (o->eos_set) {
        put_str(b, "tokenizer.ggml.eos_token_id", 27);
        put_u32(b, I32);
        put_u32(b, (uint32_t)o->eos);
    }
    put_str(b, "tokenizer.ggml.tokens", 21);
    put_u32(b, ARR);
    put_u32(b, STR);
    put_u64(b, 4);
    for (int i = 0; i < 4; i++) {
        size_t n = i == 3 && o->piece_len ? o->piece_len : 1;
        put_u64(b, n);
        for (size_t k = 0; k < n; k++)
            put(b, &"abcd"[i], 1);
    }
    put_str(b, "tokenizer.ggml.scores", 21);
    put_u32(b, ARR);
    put_u32(b, F32);
    put_u64(b, 4);
    for (int i = 0; i < 4; i++)
        put_f32(b, (float)-i);
    /* tensor infos, data offsets packed at the alignment */
    uint64_t off = 0;
    for (size_t i = 0; i < n_t; i++) {
        const char *nm = tnames[i] ? tnames[i] : o->extra;
        put_str(b, nm, strlen(nm));
        put_u32(b, 2);
        put_u64(b, shape[i][0]);
        put_u64(b, shape[i][1]);
        put_u32(b, 0);
        put_u64(b, off);
        off += (shape[i][0] * shape[i][1] * 4 + align - 1) / align * align;
    }
    put(b, NULL, (align - b->len % align) % align);
    put(b, NULL, (size_t)off);
}

static void boundary_gguf(void)
{
    buf_t b = {0};
    gguf_opt o;
#define G(...) (memset(&o, 0, sizeof o), o = (gguf_opt){__VA_ARGS__}, gguf(&b, &o))
    G(0);
    row("gguf valid", "model", &b, 0, Q_OK, "");
    /* alignment: a power of two in 1..Q_GGUF_MAX_ALIGNMENT, uint32 */
    const uint32_t aligns[7] = {1, 2, Q_GGUF_MAX_ALIGNMENT, 0, 3, Q_GGUF_MAX_ALIGNMENT + 1,
                                2 * Q_GGUF_MAX_ALIGNMENT};
    for (int k = 0; k < 7; k++) {
        char name[64];
        G(.alignment_type = 4, .alignment = aligns[k]);
        snprintf(name, sizeof name, "gguf general.alignment %u", aligns[k]);
        row(name, "model", &b, 0, k < 3 ? Q_OK : Q_ERR_BAD_ALIGNMENT,
            k < 3 ? "" : "general.alignment");
    }
    G(.alignment_type = 10, .alignment = 32);
    row("gguf general.alignment as u64", "model", &b, 0, Q_ERR_UNSUPPORTED_TYPE,
        "general.alignment");
    /* integer keys: bool is not an integer (a bug found by the oracle) */
    G(.block_count_bool = 1);
    row("gguf llama.block_count as bool", "model", &b, 0, Q_ERR_UNSUPPORTED_TYPE,
        "llama.block_count");
    /* freq_base as f64: inside the float range accepted, beyond it rejected (a bug found by
     * the oracle: 3.0e38 < x <= FLT_MAX was refused) */
    G(.freq_base_f64 = 1, .freq_base = 3.2e38);
    row("gguf freq_base f64 3.2e38", "model", &b, 0, Q_OK, "");
    G(.freq_base_f64 = 1, .freq_base = 1e39);
    row("gguf freq_base f64 1e39", "model", &b, 0, Q_ERR_INVALID_CONFIG, "rope_theta");
    G(.freq_base_f64 = 1, .freq_base = 1e-300); /* a float 0 */
    row("gguf freq_base f64 1e-300", "model", &b, 0, Q_ERR_INVALID_CONFIG, "rope_theta");
    /* epsilon in (0, 1) */
    G(.eps_set = 1, .eps = 0.99999994f);
    row("gguf epsilon below 1", "model", &b, 0, Q_OK, "");
    G(.eps_set = 1, .eps = 1.0f);
    row("gguf epsilon 1", "model", &b, 0, Q_ERR_INVALID_CONFIG, "norm_eps");
    G(.eps_set = 1, .eps = 0.0f);
    row("gguf epsilon 0", "model", &b, 0, Q_ERR_INVALID_CONFIG, "norm_eps");
    /* bos / eos ids: vocab - 1 accepted, vocab and -1 rejected */
    G(.bos_set = 1, .bos = 3, .eos_set = 1, .eos = 3);
    row("gguf bos = eos = vocab - 1", "model", &b, 0, Q_OK, "");
    G(.bos_set = 1, .bos = 4);
    row("gguf bos = vocab", "model", &b, 0, Q_ERR_BAD_TOKEN, "tokenizer.ggml.bos_token_id");
    G(.eos_set = 1, .eos = 4);
    row("gguf eos = vocab", "model", &b, 0, Q_ERR_BAD_TOKEN, "tokenizer.ggml.eos_token_id");
    G(.eos_set = 1, .eos = -1);
    row("gguf eos = -1", "model", &b, 0, Q_ERR_BAD_TOKEN, "tokenizer.ggml.eos_token_id");
    /* piece length: Q_MAX_TOKEN_BYTES accepted, one more rejected */
    G(.piece_len = Q_MAX_TOKEN_BYTES);
    row("gguf piece of Q_MAX_TOKEN_BYTES", "model", &b, 0, Q_OK, "");
    G(.piece_len = Q_MAX_TOKEN_BYTES + 1);
    row("gguf piece of Q_MAX_TOKEN_BYTES + 1", "model", &b, 0, Q_ERR_BAD_TOKEN, "token length");
    /* blk.N: N = block_count is rejected, however large (a bug found by the oracle: an N
     * above 429496728 was taken for an unknown name and ignored); leading zeros are extras */
    G(.extra = "blk.1.attn_q.weight");
    row("gguf blk.1 with 1 block", "model", &b, 0, Q_ERR_INVALID_CONFIG,
        "block of blk.1.attn_q.weight");
    G(.extra = "blk.99999999999.attn_q.weight");
    row("gguf blk.99999999999", "model", &b, 0, Q_ERR_INVALID_CONFIG,
        "block of blk.99999999999.attn_q.weight");
    G(.extra = "blk.00.attn_q.weight");
    row("gguf blk.00 (an extra)", "model", &b, 0, Q_OK, "");
    G(.extra = "blk.7.rope.weight");
    row("gguf blk.7 unknown suffix (an extra)", "model", &b, 0, Q_OK, "");
#undef G
    free(b.p);
}

int main(int argc, char **argv)
{
    char path[4096], line[1024];
    FILE *mf;
    int rows = 0, failures = 0;
    size_t per_code[64] = {0};

    if (argc != 2) {
        fprintf(stderr, "usage: test_malformed DIR\n");
        return 2;
    }
    snprintf(path, sizeof path, "%s/manifest.tsv", argv[1]);
    mf = fopen(path, "r");
    if (mf == NULL) {
        perror(path);
        return 1;
    }
    while (fgets(line, sizeof line, mf) != NULL) {
        char name[512], kind[32], expect_name[64];
        size_t vocab = 0, len = 0;
        unsigned char *buf;
        q_error_code expect, got;
        q_diag d;
        int left;
        if (sscanf(line, "%511s %31s %63s %zu", name, kind, expect_name, &vocab) != 4) {
            fprintf(stderr, "bad manifest line: %s", line);
            failures++;
            continue;
        }
        rows++;
        if (code_of(expect_name, &expect) != 0) {
            fprintf(stderr, "%s: unknown expected code %s\n", name, expect_name);
            failures++;
            continue;
        }
        snprintf(path, sizeof path, "%s/%s", argv[1], name);
        buf = read_all(path, &len);
        if (buf == NULL && len != 0) {
            perror(path);
            failures++;
            continue;
        }
        got = parse(kind, buf ? buf : (const unsigned char *)"", len, vocab, &d, &left);
        if (got != expect) {
            fprintf(stderr, "FAIL %s: got %s (field '%s' = %lld at %llu), expected %s\n", name,
                    code_name(got), d.field, (long long)d.value, (unsigned long long)d.offset,
                    expect_name);
            failures++;
        } else if (got != Q_OK && d.field[0] == '\0') {
            fprintf(stderr, "FAIL %s: %s without a diagnostic field\n", name, expect_name);
            failures++;
        } else if (got != Q_OK && (expected_field(name) == NULL ||
                                   strcmp(expected_field(name), d.field) != 0)) {
            fprintf(stderr, "FAIL %s: field '%s', expected '%s'\n    FIELD {\"%s\", \"%s\"},\n",
                    name, d.field, expected_field(name) ? expected_field(name) : "(no entry)",
                    name, d.field);
            failures++;
        } else if (left) {
            fprintf(stderr, "FAIL %s: %s\n", name,
                    left == 2 ? "accepted as the wrong format" : "output not zeroed on error");
            failures++;
        }
        if ((size_t)-got < sizeof per_code / sizeof per_code[0])
            per_code[-got]++;
        /* every prefix parses without crashing: all of the first 1 KiB, then a stride */
        for (size_t n = 0; buf != NULL && n < len; n += n < 1024 ? 1 : 61) {
            q_diag pd;
            (void)parse(kind, buf, n, vocab, &pd, &left);
            if (left) {
                fprintf(stderr, "FAIL %s: prefix %zu left output behind\n", name, n);
                failures++;
                break;
            }
        }
        /* valid seeds: deterministic byte mutations parse without crashing or leaking */
        if (expect == Q_OK && buf != NULL && len > 0) {
            uint64_t s = 0x9E3779B97F4A7C15ULL ^ len;
            for (int k = 0; k < 400; k++) {
                unsigned char *mut = malloc(len);
                q_diag md;
                memcpy(mut, buf, len);
                for (int flips = 1 + k % 4; flips > 0; flips--) {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    /* half the mutations hit the first 256 bytes (headers, metadata) */
                    size_t pos = (size_t)(s >> 16) % (k % 2 ? len : (len < 256 ? len : 256));
                    mut[pos] = (unsigned char)(k % 3 == 0 ? 0xff : (s >> 8));
                }
                (void)parse(kind, mut, len, vocab, &md, &left);
                free(mut);
                if (left == 1) {
                    fprintf(stderr, "FAIL %s: mutation %d left output behind\n", name, k);
                    failures++;
                    break;
                }
            }
        }
        free(buf);
    }
    fclose(mf);
    for (size_t i = 0; i < sizeof per_code / sizeof per_code[0]; i++)
        if (per_code[i])
            fprintf(stderr, "  %-28s %zu files\n", code_name((q_error_code)(-(int)i)), per_code[i]);
    boundary_llama2c();
    boundary_tokenizer();
    boundary_gguf();
    failures += boundary_failures;
    fprintf(stderr, "%d boundary rows, %d failures\n", boundary_rows, boundary_failures);
    fprintf(stderr, "%d rows, %d failures\n", rows, failures);
    return failures == 0 && rows > 0 ? 0 : 1;
}
