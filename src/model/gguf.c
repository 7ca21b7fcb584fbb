/* GGUF: parser lands in the next commit. */
#include "model/model_internal.h"

q_error_code q_gguf_parse(q_model *model, q_tokenizer *tokenizer, const unsigned char *buf,
                          size_t len, q_diag *diag)
{
    (void)model;
    (void)tokenizer;
    (void)buf;
    (void)len;
    return q_fail(diag, Q_ERR_UNSUPPORTED_VERSION, "gguf", 0, 0);
}
