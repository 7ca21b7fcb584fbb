/* Messages and names of q_error_code. */
#include "qorus_core.h"

#define Q_ERROR_TABLE(X)                                                                      \
    X(Q_OK, "success")                                                                        \
    X(Q_ERR_INVALID_ARG, "invalid argument")                                                  \
    X(Q_ERR_FILE_OPEN, "cannot open file")                                                    \
    X(Q_ERR_FILE_STAT, "cannot stat file")                                                    \
    X(Q_ERR_NOT_REGULAR_FILE, "not a regular file")                                           \
    X(Q_ERR_FILE_TOO_SMALL, "file too small to be a model")                                   \
    X(Q_ERR_MMAP, "cannot map file")                                                          \
    X(Q_ERR_ALLOC, "out of memory")                                                           \
    X(Q_ERR_ARENA_OOM, "scratch arena exhausted")                                             \
    X(Q_ERR_OVERFLOW, "size overflow")                                                        \
    X(Q_ERR_BAD_MAGIC, "bad magic: not a known model or tokenizer format")                    \
    X(Q_ERR_UNSUPPORTED_VERSION, "unsupported format version")                                \
    X(Q_ERR_INVALID_CONFIG, "invalid model configuration")                                    \
    X(Q_ERR_TRUNCATED, "truncated file")                                                      \
    X(Q_ERR_VOCAB_MISMATCH, "tokenizer and model vocabularies do not match")                  \
    X(Q_ERR_UNSUPPORTED_TYPE, "unsupported tensor or value type")                             \
    X(Q_ERR_INVALID_STATE, "invalid state for this operation")                                \
    X(Q_ERR_BAD_ALIGNMENT, "bad alignment")                                                   \
    X(Q_ERR_DUPLICATE, "duplicate key or tensor name")                                        \
    X(Q_ERR_MISSING, "required key or tensor missing")                                        \
    X(Q_ERR_BAD_SHAPE, "tensor shape does not match the configuration")                       \
    X(Q_ERR_BAD_TOKEN, "invalid token")                                                       \
    X(Q_ERR_IO, "input/output error")

const char *q_strerror(q_error_code code)
{
    switch (code) {
#define Q_MESSAGE_CASE(name, message) \
    case name:                        \
        return message;
        Q_ERROR_TABLE(Q_MESSAGE_CASE)
#undef Q_MESSAGE_CASE
    }
    return "unknown error";
}

const char *q_error_name(q_error_code code)
{
    switch (code) {
#define Q_NAME_CASE(name, message) \
    case name:                     \
        return #name;
        Q_ERROR_TABLE(Q_NAME_CASE)
#undef Q_NAME_CASE
    }
    return "Q_ERR_UNKNOWN";
}
