/*
 * Pre-tokenizers of byte-level BPE vocabularies: the regular expression that splits text
 * into words before merges, as each model family's original tokenizer defines it. Matching
 * is PCRE2's (Unicode letter and number classes, UTF-8 with invalid sequences allowed).
 */
#ifndef QORUS_PRETOK_H
#define QORUS_PRETOK_H

#include <stddef.h>

#include "qorus_model.h"

typedef struct q_pretok_re q_pretok_re;

/* Compiles the pattern of `kind`. Errors: Q_ERR_INVALID_ARG (Q_PRETOK_NONE or an unknown
 * kind), Q_ERR_ALLOC. */
q_error_code q_pretok_compile(q_pretok kind, q_pretok_re **out);

void q_pretok_free(q_pretok_re *re);

/* The pattern's source, for documentation and tests. NULL for an unknown kind. */
const char *q_pretok_pattern(q_pretok kind);

/* Called for each word [start, end) in text order; a non-Q_OK result stops the split. */
typedef q_error_code (*q_word_fn)(void *user, size_t start, size_t end);

/* Splits text[0..len) into words and calls `fn` on each: the pattern's matches, and
 * between them any bytes the pattern cannot match (only invalid UTF-8 can be left over),
 * as words of their own, so the words cover the text. Errors: Q_ERR_ALLOC,
 * Q_ERR_INVALID_ARG (PCRE2 refused: a match limit), or the first error of `fn`. */
q_error_code q_pretok_split(const q_pretok_re *re, const char *text, size_t len, q_word_fn fn,
                            void *user);

#endif
