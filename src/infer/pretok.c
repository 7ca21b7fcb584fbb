/*
 * Pre-tokenizer patterns (see pretok.h). Each is the regular expression of the model
 * family's tokenizer.json, unchanged:
 *   gpt-2      GPT-2's ByteLevel split: contractions, an optional space before a run of
 *              letters, of digits or of other symbols, then whitespace runs (a run before
 *              a non-space keeps its last space for the next word)
 *   llama-bpe  Llama 3: case-insensitive contractions, letters with one leading non-letter,
 *              digits in groups of at most three, symbols with trailing newlines, newline
 *              runs, whitespace
 *   qwen2      Qwen2: as Llama 3 but one digit per word
 * PCRE2 with PCRE2_UTF | PCRE2_UCP gives \p{L}, \p{N} and \s their Unicode meaning;
 * PCRE2_MATCH_INVALID_UTF lets invalid UTF-8 through as bytes that match nothing. The
 * interpreter is used (no JIT): prompts are short, and JIT code is invisible to MSan.
 * PCRE2 allocates through q_os_malloc / q_os_free, so the fault-injection tests reach it.
 */
#include "infer/pretok.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/os.h"
#include "core/sanitize.h"

struct q_pretok_re {
    pcre2_code *code;
    pcre2_general_context *gctx;
};

static const char pattern_gpt2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char pattern_llama3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char pattern_qwen2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const char *q_pretok_pattern(q_pretok kind)
{
    switch (kind) {
    case Q_PRETOK_GPT2: return pattern_gpt2;
    case Q_PRETOK_LLAMA3: return pattern_llama3;
    case Q_PRETOK_QWEN2: return pattern_qwen2;
    default: return NULL;
    }
}

static void *pcre_malloc(PCRE2_SIZE n, void *user)
{
    (void)user;
    return q_os_malloc(n);
}

static void pcre_free(void *p, void *user)
{
    (void)user;
    q_os_free(p);
}

q_error_code q_pretok_compile(q_pretok kind, q_pretok_re **out)
{
    const char *pattern = q_pretok_pattern(kind);
    int err;
    PCRE2_SIZE err_at;
    *out = NULL;
    if (pattern == NULL)
        return Q_ERR_INVALID_ARG;
    q_pretok_re *re = q_os_calloc(1, sizeof *re);
    if (re == NULL)
        return Q_ERR_ALLOC;
    re->gctx = pcre2_general_context_create(pcre_malloc, pcre_free, NULL);
    pcre2_compile_context *cctx = re->gctx != NULL ? pcre2_compile_context_create(re->gctx) : NULL;
    if (cctx != NULL)
        re->code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_at,
                                 cctx);
    pcre2_compile_context_free(cctx);
    if (re->code == NULL) {
        /* the patterns are fixed and valid: only memory can be missing */
        q_pretok_free(re);
        return Q_ERR_ALLOC;
    }
    *out = re;
    return Q_OK;
}

void q_pretok_free(q_pretok_re *re)
{
    if (re == NULL)
        return;
    pcre2_code_free(re->code);
    pcre2_general_context_free(re->gctx);
    q_os_free(re);
}

q_error_code q_pretok_split(const q_pretok_re *re, const char *text, size_t len, q_word_fn fn,
                            void *user)
{
    pcre2_match_data *md = pcre2_match_data_create(1, re->gctx);
    if (md == NULL)
        return Q_ERR_ALLOC;
    q_error_code err = Q_OK;
    size_t at = 0;
    while (at < len && err == Q_OK) {
        size_t start = len, end = len;
        int rc = pcre2_match(re->code, (PCRE2_SPTR)text, len, at, 0, md, NULL);
        if (rc > 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            Q_MEM_WRITTEN(ov, 2 * sizeof *ov); /* written by PCRE2, not instrumented */
            start = ov[0];
            end = ov[1];
            if (start < at || end <= start || end > len) { /* no pattern matches empty */
                err = Q_ERR_INVALID_ARG;
                break;
            }
        } else if (rc == PCRE2_ERROR_NOMEMORY || rc == PCRE2_ERROR_HEAPLIMIT) {
            err = Q_ERR_ALLOC;
            break;
        } else if (rc != PCRE2_ERROR_NOMATCH) {
            err = Q_ERR_INVALID_ARG;
            break;
        }
        if (start > at) /* bytes no word covers */
            err = fn(user, at, start);
        if (err == Q_OK && end > start)
            err = fn(user, start, end);
        at = end;
    }
    pcre2_match_data_free(md);
    return err;
}
