/* Messages and names of q_error_code: one table indexed by -code (0, -1, -2...; an index
 * without an entry is an unknown code). */
#include "qorus_core.h"

typedef struct error_text {
    const char *name;
    const char *message;
} error_text;

#define Q_ERROR_ENTRY(code, text) [-(code)] = {#code, text}

static const error_text error_table[] = {
    Q_ERROR_ENTRY(Q_OK, "success"),
    Q_ERROR_ENTRY(Q_ERR_INVALID_ARG, "invalid argument"),
    Q_ERROR_ENTRY(Q_ERR_FILE_OPEN, "cannot open file"),
    Q_ERROR_ENTRY(Q_ERR_FILE_STAT, "cannot stat file"),
    Q_ERROR_ENTRY(Q_ERR_NOT_REGULAR_FILE, "not a regular file"),
    Q_ERROR_ENTRY(Q_ERR_FILE_TOO_SMALL, "file too small to be a model"),
    Q_ERROR_ENTRY(Q_ERR_MMAP, "cannot map file"),
    Q_ERROR_ENTRY(Q_ERR_ALLOC, "out of memory"),
    Q_ERROR_ENTRY(Q_ERR_ARENA_OOM, "scratch arena exhausted"),
    Q_ERROR_ENTRY(Q_ERR_OVERFLOW, "size overflow"),
    Q_ERROR_ENTRY(Q_ERR_BAD_MAGIC, "bad magic: not a known model or tokenizer format"),
    Q_ERROR_ENTRY(Q_ERR_UNSUPPORTED_VERSION, "unsupported format version"),
    Q_ERROR_ENTRY(Q_ERR_INVALID_CONFIG, "invalid model configuration"),
    Q_ERROR_ENTRY(Q_ERR_TRUNCATED, "truncated file"),
    Q_ERROR_ENTRY(Q_ERR_VOCAB_MISMATCH, "tokenizer and model vocabularies do not match"),
    Q_ERROR_ENTRY(Q_ERR_UNSUPPORTED_TYPE, "unsupported tensor or value type"),
    Q_ERROR_ENTRY(Q_ERR_INVALID_STATE, "invalid state for this operation"),
    Q_ERROR_ENTRY(Q_ERR_BAD_ALIGNMENT, "bad alignment"),
    Q_ERROR_ENTRY(Q_ERR_DUPLICATE, "duplicate key or tensor name"),
    Q_ERROR_ENTRY(Q_ERR_MISSING, "required key or tensor missing"),
    Q_ERROR_ENTRY(Q_ERR_BAD_SHAPE, "tensor shape does not match the configuration"),
    Q_ERROR_ENTRY(Q_ERR_BAD_TOKEN, "invalid token"),
    Q_ERROR_ENTRY(Q_ERR_IO, "input/output error"),
    Q_ERROR_ENTRY(Q_ERR_THREAD, "cannot create a thread"),
    Q_ERROR_ENTRY(Q_ERR_MODEL_CHANGED, "model file changed while in use"),
};

#define ERROR_COUNT (sizeof error_table / sizeof error_table[0])

/* The entry of `code`, or NULL for a value that is not a q_error_code. */
static const error_text *find_error(q_error_code code)
{
    long index = -(long)code;
    if (index < 0 || (unsigned long)index >= ERROR_COUNT || error_table[index].name == NULL)
        return NULL;
    return &error_table[index];
}

const char *q_strerror(q_error_code code)
{
    const error_text *e = find_error(code);
    return e != NULL ? e->message : "unknown error";
}

const char *q_error_name(q_error_code code)
{
    const error_text *e = find_error(code);
    return e != NULL ? e->name : "Q_ERR_UNKNOWN";
}
