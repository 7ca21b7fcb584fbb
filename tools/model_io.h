/*
 * Writers of the qorus-model tool: llama2.c checkpoints (v0, ak42 v1, ak42 v2 Q8_0),
 * llama2.c tokenizer.bin and GGUF v2/v3, from float32 weights held in memory. The GGUF
 * writer takes a set of corruptions so the malformed-file generator can reuse it.
 * Tools may allocate with malloc and print; the library may not.
 */
#ifndef QORUS_TOOLS_MODEL_IO_H
#define QORUS_TOOLS_MODEL_IO_H

#include <stddef.h>
#include <stdint.h>

#include "qorus_model.h"

/* A growable byte buffer. Allocation failure ends the tool (tools only). */
typedef struct tbuf {
    unsigned char *p;
    size_t n, cap;
} tbuf;

void tb_put(tbuf *b, const void *data, size_t n);
void tb_u8(tbuf *b, uint8_t v);
void tb_u32(tbuf *b, uint32_t v);
void tb_i32(tbuf *b, int32_t v);
void tb_u64(tbuf *b, uint64_t v);
void tb_f32(tbuf *b, float v);
void tb_str(tbuf *b, const char *s);               /* GGUF string: u64 length + bytes */
void tb_poke_u32(tbuf *b, size_t at, uint32_t v);
void tb_poke_u64(tbuf *b, size_t at, uint64_t v);
void tb_free(tbuf *b);
int tb_save(const tbuf *b, const char *path);       /* 0 or -1 (errno set) */
int tb_load(tbuf *b, const char *path);             /* 0 or -1 */

/* A model as float32 arrays, llama2.c shapes (L = n_layers, kv = n_kv_heads * head_size). */
typedef struct tm_model {
    q_config cfg;
    int shared;
    float *emb;       /* (vocab, dim) */
    float *rms_att;   /* (L, dim) */
    float *wq;        /* (L, dim, dim) */
    float *wk;        /* (L, kv, dim) */
    float *wv;        /* (L, kv, dim) */
    float *wo;        /* (L, dim, dim) */
    float *rms_ffn;   /* (L, dim) */
    float *w1;        /* (L, hidden, dim) */
    float *w2;        /* (L, dim, hidden) */
    float *w3;        /* (L, hidden, dim) */
    float *rms_final; /* (dim) */
    float *wcls;      /* (vocab, dim), NULL when shared */
    float *bq;        /* (L, dim) q bias (qwen2), NULL when none; bk, bv likewise */
    float *bk;        /* (L, kv) */
    float *bv;        /* (L, kv) */
    float *rope_factors; /* (head_size / 2) Llama 3's rope_freqs.weight, NULL when none */
} tm_model;

/* A tokenizer vocabulary owned by the tool. SentencePiece (kind Q_VOCAB_SPM, what tok_random
 * makes) or byte-level BPE (Q_VOCAB_BPE: GGUF tokenizer.ggml.model "gpt2"), which only the
 * GGUF writer can hold (a llama2.c tokenizer.bin has no merges). */
typedef struct tm_tok {
    size_t n;
    char **pieces;
    size_t *lens;
    float *scores;
    size_t max_len;
    q_vocab_kind kind;
    char pre[32];        /* BPE: tokenizer.ggml.pre ("llama-bpe", "qwen2", "gpt-2"...) */
    int has_scores;      /* BPE: write tokenizer.ggml.scores (SentencePiece always does) */
    int32_t *types;      /* n token types; NULL: BPE writes none, SentencePiece guesses them
                            from the pieces (unk 2, control 3, <0xHH> 6, else 1) */
    size_t n_merges;
    char **merges;       /* BPE: n_merges "left right" strings, rank order */
    size_t *merge_lens;
    int64_t bos, eos;    /* 1 and 2 unless the vocabulary says otherwise */
    int64_t eot;         /* tokenizer.ggml.eot_token_id; -1: key absent */
    int add_bos;         /* tokenizer.ggml.add_bos_token; -1: key absent */
} tm_tok;

void tm_alloc(tm_model *m, const q_config *cfg, int shared);
void tm_random(tm_model *m, const q_config *cfg, int shared, uint64_t seed);
/* What an architecture adds to a tm_random model (cfg.arch / rope fields are set by the
 * caller): "qwen2": random q/k/v biases; "llama3": Llama 3.1's rope frequency factors
 * (scaling factor 8, low / high frequency factors 1 / 4, original context 8192) for the
 * model's rope_theta; "llama": nothing. Returns -1 for another name. */
int tm_add_arch(tm_model *m, const char *arch, uint64_t seed);
q_error_code tm_from_model(tm_model *m, const q_model *qm);
void tm_free(tm_model *m);

/* version 0, 1, or 2 (Q8_0 with group_size, which must divide dim and hidden_dim). */
void tm_write_llama2c(tbuf *out, const tm_model *m, int version, size_t group_size);

void tok_random(tm_tok *t, size_t n, uint64_t seed);
void tok_from_q(tm_tok *t, const q_tokenizer *q);
void tok_set_piece(tm_tok *t, size_t i, const char *piece, size_t len);
/* Sets token types (allocating t->types, all 1, on first use). */
void tok_set_type(tm_tok *t, size_t i, int32_t type);
/* Appends a token (score 0, type 1 when t->types is set); returns its id. */
size_t tok_add(tm_tok *t, const char *piece, size_t len);
/* Appends merge "left right" (any text: the malformed generator writes broken ones). */
void tok_add_merge(tm_tok *t, const char *merge);
void tok_set_merge(tm_tok *t, size_t i, const char *merge);
/* A small valid byte-level BPE vocabulary: the 256 byte-level pieces (ids 0..255 in byte
 * order), merged pieces with their merges, a spare normal piece "xyz" (no merge makes it),
 * the control token "<|endoftext|>" (type 3, bos = eos = eot) and the user-defined
 * "<tool>" (type 4); `pre` is tokenizer.ggml.pre, add_bos_token false. */
void tok_bpe_sample(tm_tok *t, const char *pre);
/* The llama2.c tokenizer.bin of t; only a SentencePiece vocabulary (t->kind Q_VOCAB_SPM). */
void tok_write(tbuf *out, const tm_tok *t);
void tok_free(tm_tok *t);

/* Which type each matrix of a GGUF file gets. */
typedef enum gguf_recipe {
    GG_RECIPE_UNIFORM = 0, /* every matrix is gguf_opts.mat_type */
    /* llama.cpp's Q4_K_M (mat_type is ignored): Q4_K, except the classifier (output.weight,
     * or token_embd.weight when shared) and, in layer i of n, attn_v.weight and ffn_down.weight when
     * i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2, which are Q6_K */
    GG_RECIPE_Q4_K_M
} gguf_recipe;

/* Corruptions for the GGUF writer. A zeroed struct (plus version and mat_type) writes a
 * valid file. */
typedef struct gguf_opts {
    uint32_t version;         /* 2 or 3 */
    uint32_t mat_type;        /* Q_TENSOR_F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K or Q6_K for
                               * matrices (K types: rows a multiple of 256) */
    gguf_recipe recipe;       /* GG_RECIPE_UNIFORM (0): every matrix mat_type */
    const char *typed;        /* a matrix written as typed_type instead (info and data: a */
    uint32_t typed_type;      /* valid mix of types, unlike the t_type corruption) */
    uint32_t alignment;       /* 0: no general.alignment key (default 32) */
    uint32_t alignment_gtype; /* 0: uint32 (4); else the value type written (e.g. 10, u64) */
    int set_n_tensors;  uint64_t n_tensors;
    int set_n_kv;       uint64_t n_kv;
    int first_key_len_max;    /* first key's length field = UINT64_MAX */
    int first_key_len_past;   /* first key's length field points past the end */
    int bad_value_type;       /* an extra key of value type 13 */
    int nested_array;         /* an extra key holding an array of arrays */
    int huge_array;           /* an extra u32 array with count 2^62 */
    int dup_key;              /* llama.block_count twice */
    int dup_tensor;           /* output_norm.weight twice */
    const char *arch;         /* NULL: "llama"; "": key omitted */
    const char *omit_key;     /* a key not written */
    const char *string_key;   /* an integer key written as a string */
    const char *int_key; int64_t int_value; /* override of one integer key (u32 unless <0: i32) */
    const char *float_key; float float_value; /* override of one float key */
    const char *extra_int_key; uint32_t extra_int_value; /* an extra u32 key */
    const char *extra_str_key; const char *extra_str_value; /* an extra string key */
    /* tensor corruptions, applied to the tensor named `tensor` */
    const char *tensor;
    uint32_t t_n_dims;        /* 0: unchanged; UINT32_MAX: write 0 */
    int t_set_ne; uint64_t t_ne[4];
    int t_set_type; uint32_t t_type;
    int t_set_offset; uint64_t t_offset;
    int t_offset_add;         /* offset + 4: misaligned */
    const char *omit_tensor;
    int big_tensors;          /* two extra tensors of 2^63 bytes each */
    /* tokenizer corruptions */
    int no_tokenizer;
    uint32_t tokens_gtype;    /* 0: string (8); else the element type written */
    uint32_t scores_gtype;    /* 0: f32 (6) */
    uint32_t types_gtype;     /* 0: i32 (5) */
    int tokens_drop;          /* write n - tokens_drop tokens */
    int scores_drop;
    int token_len_max;        /* token 5's length = UINT64_MAX */
    int set_bos; int64_t bos;
    /* byte-level BPE corruptions (and eot / add_bos for both kinds) */
    const char *tok_model;    /* tokenizer.ggml.model written as this string instead */
    uint32_t tok_model_gtype; /* 0: string; else written as u32 0 */
    uint32_t pre_gtype;       /* 0: string; else tokenizer.ggml.pre written as u32 0 */
    uint32_t merges_gtype;    /* 0: string array; else an array of that (u32-sized) type */
    int set_eos; int64_t eos;
    int set_eot; int64_t eot;
    uint32_t add_bos_gtype;   /* 0: bool; else add_bos_token written as that integer type */
    int set_type; size_t type_index; int32_t type_value; /* one token type overridden */
    int vocab_only;           /* no tensors (llama.cpp's vocab-only files): metadata only */
} gguf_opts;

void tm_write_gguf(tbuf *out, const tm_model *m, const tm_tok *t, const gguf_opts *o);

/* Float to IEEE half, round to nearest even. */
uint16_t tm_f32_to_f16(float f);

/* float32 -> bfloat16, round to nearest even (the tool's own, independent of the library) */
uint16_t tm_f32_to_bf16(float f);

#endif
