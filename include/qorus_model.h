/*
 * qorus model files: llama2.c checkpoints (legacy v0, ak42 v1 float32, ak42 v2 Q8_0),
 * llama2.c tokenizer.bin, and GGUF (v2/v3; llama and qwen2 architectures; F32, F16, BF16,
 * Q8_0, Q4_0, Q4_K, Q5_K, Q6_K; SentencePiece and byte-level BPE vocabularies).
 *
 * Parsing is separate from file access: every parser takes (buf, len) and validates the
 * whole file before anything is used; weights stay views into `buf`. The file loaders are
 * thin wrappers that map the file with q_init_memory_ex and call the parser.
 */
#ifndef QORUS_MODEL_H
#define QORUS_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "qorus_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Named limits of every config field (inclusive). A value outside is Q_ERR_INVALID_CONFIG. */
#define Q_MAX_DIM 65536u
#define Q_MAX_HIDDEN_DIM 262144u
#define Q_MAX_LAYERS 1024u
#define Q_MAX_HEADS 1024u
#define Q_MAX_VOCAB 1048576u
#define Q_MAX_SEQ_LEN 1048576u
#define Q_MAX_TOKEN_BYTES 1024u  /* longest tokenizer piece */
#define Q_MAX_GROUP_SIZE 65536u  /* ak42 v2 quantization group */
#define Q_GGUF_MAX_DIMS 4u         /* ggml's GGML_MAX_DIMS; more is Q_ERR_BAD_SHAPE */
#define Q_GGUF_MAX_ALIGNMENT 65536u /* largest accepted general.alignment (power of two) */
#define Q_GGUF_DEFAULT_ALIGNMENT 32u

/** byte_tokens[] entry of a byte with no `<0xXX>` piece. */
#define Q_TOKEN_NONE UINT32_MAX

/** Where a rejected file went wrong, for the driver's one-line message. */
typedef struct q_diag {
    char field[64];   /* offending field or key, e.g. "n_heads", "tensor blk.0.attn_q.weight" */
    uint64_t offset;  /* byte offset in the file where the problem was found */
    int64_t value;    /* offending value when it is a number */
} q_diag;

typedef enum q_model_format {
    Q_FORMAT_LLAMA2C = 1, /* version 0 (legacy), 1 (ak42 float32), 2 (ak42 Q8_0) */
    Q_FORMAT_GGUF = 2,    /* version 2 or 3 */
} q_model_format;

typedef enum q_tensor_type {
    Q_TENSOR_F32 = 0,
    Q_TENSOR_F16 = 1,
    Q_TENSOR_Q4_0 = 2,      /* ggml blocks of 32: f16 scale then 16 bytes of 4-bit codes (18 bytes) */
    Q_TENSOR_Q8_0 = 8,      /* ggml blocks of 32: f16 scale then 32 int8 (34 bytes) */
    Q_TENSOR_Q4_K = 12,     /* ggml super-blocks of 256 4-bit codes, 8 6-bit scales and mins (144 bytes) */
    Q_TENSOR_Q5_K = 13,     /* ggml super-blocks of 256 5-bit codes, 8 6-bit scales and mins (176 bytes) */
    Q_TENSOR_Q6_K = 14,     /* ggml super-blocks of 256 6-bit codes, 16 int8 scales (210 bytes) */
    Q_TENSOR_BF16 = 30,     /* bfloat16: the high 16 bits of a float32 (ggml type 30) */
    Q_TENSOR_Q8_SPLIT = 64, /* llama2.c v2: rows*cols int8, then one float32 scale per group */
} q_tensor_type;

/** A read-only 2-D view into the mapping, row-major: `rows` rows of `cols` contiguous
 *  values. 1-D tensors have rows == 1. Data may be unaligned: read through memcpy. */
typedef struct q_tensor {
    q_tensor_type type;
    const void *data;
    const void *scales; /* Q8_SPLIT only: rows*cols/group_size float32 scales */
    size_t rows;
    size_t cols;
    size_t group_size;  /* values per scale: 32 for Q8_0, the header's for Q8_SPLIT */
} q_tensor;

/** The transformer family of a model (GGUF general.architecture). */
typedef enum q_arch {
    Q_ARCH_LLAMA = 0, /* llama2.c checkpoints and GGUF "llama" (Llama 2 and 3, TinyLlama, SmolLM) */
    Q_ARCH_QWEN2 = 1, /* GGUF "qwen2": q/k/v biases, NEOX rotary pairs */
} q_arch;

typedef struct q_config {
    size_t dim;         /* embedding width */
    size_t hidden_dim;  /* FFN width */
    size_t n_layers;
    size_t n_heads;     /* query heads; divides dim, head_size = dim / n_heads is even */
    size_t n_kv_heads;  /* key/value heads; divides n_heads */
    size_t vocab_size;
    size_t seq_len;     /* longest context */
    float rope_theta;   /* 10000 for llama2.c */
    float norm_eps;     /* RMSNorm epsilon, 1e-5 for llama2.c */
    q_arch arch;        /* Q_ARCH_LLAMA for llama2.c files */
    int rope_neox;      /* 0: RoPE rotates pairs (2j, 2j+1) of a head (llama); 1: pairs
                           (j, j + head_size / 2) (NEOX: qwen2) */
    float rope_linear_factor; /* linear RoPE scaling: angles divided by it; 0 or 1: none */
} q_config;

typedef struct q_layer {
    q_tensor attn_norm; /* (dim) */
    q_tensor wq;        /* (n_heads * head_size, dim) */
    q_tensor wk;        /* (n_kv_heads * head_size, dim) */
    q_tensor wv;        /* (n_kv_heads * head_size, dim) */
    q_tensor wo;        /* (dim, n_heads * head_size) */
    q_tensor ffn_norm;  /* (dim) */
    q_tensor w1;        /* (hidden_dim, dim) gate */
    q_tensor w2;        /* (dim, hidden_dim) down */
    q_tensor w3;        /* (hidden_dim, dim) up */
    q_tensor bq;        /* (1, dim) F32 bias added to wq's output; data NULL when absent */
    q_tensor bk;        /* (1, n_kv_heads * head_size) F32 bias of wk; data NULL when absent */
    q_tensor bv;        /* (1, n_kv_heads * head_size) F32 bias of wv; data NULL when absent */
} q_layer;

typedef struct q_model {
    q_model_format format;
    uint32_t version;
    q_config config;
    q_tensor token_embedding; /* (vocab_size, dim) */
    q_layer *layers;          /* n_layers entries, heap-allocated by the parser */
    q_tensor final_norm;      /* (dim) */
    q_tensor classifier;      /* (vocab_size, dim); same view as token_embedding if shared */
    int shared_classifier;
    q_tensor rope_factors;    /* (1, head_size / 2) F32, finite and > 0: rotation frequency j
                                 is divided by factor j (Llama 3's rope_freqs.weight); data
                                 NULL when absent */
} q_model;

/** What kind of vocabulary a tokenizer holds (GGUF tokenizer.ggml.model). */
typedef enum q_vocab_kind {
    Q_VOCAB_SPM = 0, /* SentencePiece-style scores and byte fallback: llama2.c, GGUF "llama" */
    Q_VOCAB_BPE = 1, /* byte-level BPE with ranked merges: GGUF "gpt2" */
} q_vocab_kind;

/** The pre-tokenizer of a byte-level BPE vocabulary (GGUF tokenizer.ggml.pre). */
typedef enum q_pretok {
    Q_PRETOK_NONE = 0,   /* SentencePiece vocabularies */
    Q_PRETOK_GPT2 = 1,   /* "gpt-2" */
    Q_PRETOK_LLAMA3 = 2, /* "llama-bpe" (also "llama3", "llama-v3"): Llama 3 */
    Q_PRETOK_QWEN2 = 3,  /* "qwen2": Qwen2 / Qwen2.5 */
} q_pretok;

/** Token types (GGUF tokenizer.ggml.token_type), numbered as llama.cpp writes them. */
enum {
    Q_TOKEN_TYPE_UNDEFINED = 0,
    Q_TOKEN_TYPE_NORMAL = 1,       /* produced by the encoder's merges */
    Q_TOKEN_TYPE_UNKNOWN = 2,
    Q_TOKEN_TYPE_CONTROL = 3,      /* special: matched in a prompt only when asked */
    Q_TOKEN_TYPE_USER_DEFINED = 4, /* added text: matched in every prompt */
    Q_TOKEN_TYPE_UNUSED = 5,
    Q_TOKEN_TYPE_BYTE = 6,
};

/** A tokenizer vocabulary. Pieces are heap copies, NUL-terminated (length kept too). */
typedef struct q_tokenizer {
    size_t vocab_size;
    char **pieces;          /* vocab_size pieces */
    size_t *piece_lengths;  /* vocab_size lengths */
    float *scores;          /* vocab_size merge scores (SentencePiece; 0 for BPE without them) */
    size_t max_token_length;
    uint32_t bos_id;        /* 1 for llama2.c */
    uint32_t eos_id;        /* 2 for llama2.c */
    int has_byte_fallback;  /* all of <0x00>..<0xFF> present */
    uint32_t byte_tokens[256]; /* id of <0xXX>, Q_TOKEN_NONE when that piece is absent; for
                                  BPE the id of the byte's one-character byte-level piece */
    char *piece_storage;    /* one block holding every piece (pieces[i] point into it) */
    q_vocab_kind kind;
    q_pretok pretok;        /* Q_PRETOK_NONE unless kind is Q_VOCAB_BPE */
    uint8_t *token_types;   /* (vocab_size) Q_TOKEN_TYPE_*; NULL when the file has none */
    size_t n_merges;
    uint32_t *merges;       /* (n_merges, 3): left id, right id, merged id; the row is the
                               merge's rank (0 merges first). BPE only, NULL otherwise */
    uint32_t eot_id;        /* end of turn (GGUF eot_token_id), Q_TOKEN_NONE when absent */
    int add_bos;            /* prompts start with bos_id: 1 for llama2.c, GGUF
                               tokenizer.ggml.add_bos_token (default 1) */
} q_tokenizer;

/**
 * Parses a model file held in memory (format detected from the magic: "GGUF", "ak42",
 * otherwise llama2.c legacy). Validates everything before returning; on success `model`
 * holds views into `buf` (which must outlive it) and, for GGUF, `tokenizer` (may be NULL
 * to skip) the vocabulary from the metadata, pieces as stored (SentencePiece space as
 * U+2581, BOS/EOS `<s>`/`</s>`); for llama2.c files `tokenizer` is left zeroed. `tokenizer`
 * must not hold a vocabulary (it is overwritten). On error nothing is allocated, `model`
 * and `tokenizer` are zeroed, and `diag` (may be NULL) names the offending field.
 * Validation rules and their codes: docs/model-formats.md.
 * GGUF tensors keep their file type (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K or Q6_K for
 * matrices; norms, q/k/v biases and rope factors are always F32);
 * llama2.c v2 matrices are Q8_SPLIT with group_size dividing cols; everything else F32.
 *
 * Errors: Q_ERR_INVALID_ARG, Q_ERR_BAD_MAGIC, Q_ERR_UNSUPPORTED_VERSION,
 * Q_ERR_INVALID_CONFIG, Q_ERR_TRUNCATED, Q_ERR_OVERFLOW, Q_ERR_UNSUPPORTED_TYPE,
 * Q_ERR_BAD_ALIGNMENT, Q_ERR_DUPLICATE, Q_ERR_MISSING, Q_ERR_BAD_SHAPE, Q_ERR_BAD_TOKEN,
 * Q_ERR_VOCAB_MISMATCH, Q_ERR_ALLOC.
 */
q_error_code q_model_parse(q_model *model, q_tokenizer *tokenizer, const void *buf, size_t len,
                           q_diag *diag);

/**
 * Maps `path` into ctx (q_init_memory_ex with `strategy`) and parses it with q_model_parse.
 * `ctx` must be fresh: no mapping, KV cache or arena yet (load the model before
 * q_state_init creates them). On a parse error the context is released with q_free_memory,
 * so it is zeroed again; on every other error it is unchanged. `model` and `tokenizer`
 * (when not NULL) are zeroed on every error.
 * Errors, in this order: Q_ERR_INVALID_ARG (model, ctx or path NULL; diag field names it),
 * Q_ERR_INVALID_STATE (ctx holds a KV cache or arena; diag field "ctx"), those of
 * q_init_memory_ex (unknown strategy, a mapping already there, the file; diag field empty),
 * those of q_model_parse.
 */
q_error_code q_model_load(q_model *model, q_tokenizer *tokenizer, q_context *ctx,
                          const char *path, q_mmap_strategy strategy, q_diag *diag);

/**
 * Parses a llama2.c tokenizer.bin held in memory: int32 max_token_length, then per token
 * float32 score, int32 length, bytes. `expected_vocab` is the model's vocabulary size; the
 * file must hold exactly that many tokens (Q_ERR_VOCAB_MISMATCH otherwise). With
 * `expected_vocab == 0` the vocabulary is every token the file holds (for inspection).
 * Pieces of the form `<0x..>` must be exactly `<0xHH>` (Q_ERR_BAD_TOKEN otherwise); bytes
 * after the last token that do not form further tokens are Q_ERR_INVALID_CONFIG
 * (field "trailing_bytes"). bos_id = 1 and eos_id = 2 must be < vocab (Q_ERR_BAD_TOKEN).
 * Errors: Q_ERR_INVALID_ARG, Q_ERR_TRUNCATED, Q_ERR_VOCAB_MISMATCH, Q_ERR_BAD_TOKEN,
 * Q_ERR_INVALID_CONFIG, Q_ERR_ALLOC.
 */
q_error_code q_tokenizer_parse(q_tokenizer *tokenizer, const void *buf, size_t len,
                               size_t expected_vocab, q_diag *diag);

/** Maps `path`, parses it with q_tokenizer_parse, unmaps it. Errors: those of
 *  q_init_memory_ex and q_tokenizer_parse. */
q_error_code q_tokenizer_load(q_tokenizer *tokenizer, const char *path, size_t expected_vocab,
                              q_diag *diag);

/**
 * Parses the vocabulary of a GGUF file held in memory, without reading its tensors or its
 * model config: the header, every metadata entry (the same checks as q_model_parse) and the
 * tokenizer.ggml.* keys. This reads llama.cpp's vocab-only files (no tensors) as well as
 * whole models; the vocabulary size is the length of tokenizer.ggml.tokens. Pieces are
 * copies; `buf` need not outlive `tokenizer`. Errors: those of q_model_parse (Q_ERR_MISSING
 * when tokenizer.ggml.tokens is absent), Q_ERR_BAD_MAGIC for a file that is not GGUF. On
 * error `tokenizer` is zeroed and `diag` names the field.
 */
q_error_code q_vocab_parse(q_tokenizer *tokenizer, const void *buf, size_t len, q_diag *diag);

/** Maps `path`, parses it with q_vocab_parse, unmaps it. Errors: those of
 *  q_init_memory_ex and q_vocab_parse. */
q_error_code q_vocab_load(q_tokenizer *tokenizer, const char *path, q_diag *diag);

/**
 * Reads row `row` of `t` as float32 into `out` (t->cols values), converting F16 / BF16 and
 * dequantizing Q8_0 / Q4_0 / Q4_K / Q5_K / Q6_K / Q8_SPLIT. For tools, tests and reference code paths, not hot loops.
 * Errors, in this order: Q_ERR_INVALID_ARG (t or out NULL, t->data NULL, row >= t->rows),
 * Q_ERR_UNSUPPORTED_TYPE (t->type not a q_tensor_type). On error `out` is not written.
 */
q_error_code q_tensor_read_row(const q_tensor *t, size_t row, float *out);

/** IEEE half to float (subnormals, infinities and NaN included). */
float q_f16_to_f32(uint16_t h);

/** bfloat16 to float: exact (the 16 bits become the high half of the float32). */
float q_bf16_to_f32(uint16_t h);

/** Frees what q_model_parse allocated and zeroes `model`. Safe on a zeroed model and twice. */
void q_model_free(q_model *model);

/** Frees the tokenizer's copies and zeroes it. Safe on a zeroed tokenizer and twice. */
void q_tokenizer_free(q_tokenizer *tokenizer);

#ifdef __cplusplus
}
#endif

#endif /* QORUS_MODEL_H */
