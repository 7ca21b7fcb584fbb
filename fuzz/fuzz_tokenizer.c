/*
 * fuzz_tokenizer: llama2.c tokenizer.bin files through q_tokenizer_parse and
 * q_tokenizer_load. The whole input is the file (see model_common.h). The expected
 * vocabulary size, which the format does not store, is taken three ways: the number of
 * complete entries the file holds (so valid files are accepted), that number plus or minus
 * one (Q_ERR_VOCAB_MISMATCH), and a value derived from the input's hash. Accepted
 * vocabularies encode and decode a few bytes of the input. Dictionary
 * fuzz/dict/tokenizer.dict.
 * Structure-aware mutator: fuzz/mutator_tokenizer.c (LLVMFuzzerCustomMutator in libFuzzer builds,
 * libqorus_mutator_fuzz_tokenizer.so for AFL++; QORUS_FUZZ_STRUCTURED=0 turns it off).
 */
#include "model_common.h"

/* Entries a tokenizer.bin holds: after the 4-byte max_token_length, each entry is a
 * float32 score, an int32 length and that many bytes. Stops at the first entry that does
 * not fit or has a negative length. */
static size_t count_entries(const uint8_t *data, size_t size)
{
    size_t off = 4, n = 0;
    while (off <= size && size - off >= 8 && n <= Q_MAX_VOCAB) {
        int32_t len;
        memcpy(&len, data + off + 4, 4);
        if (len < 0 || (size_t)len > size - off - 8)
            break;
        off += 8 + (size_t)len;
        n++;
    }
    return n;
}

/* The parser's verdict against the independent oracle's (model_oracle.h), both ways. */
static void fuzz_check_tokenizer_oracle(const uint8_t *data, size_t size, size_t expected,
                                        q_error_code rc, const q_diag *diag)
{
    oracle_verdict v;
    int valid = oracle_tokenizer(data, size, expected, &v);
    FUZZ_ASSERT_MSG(rc != Q_OK || valid,
                    "expected %zu: parser accepted a tokenizer the oracle rejects (rule: %s)",
                    expected, v.rule);
    FUZZ_ASSERT_MSG(rc == Q_OK || !valid,
                    "expected %zu: parser rejected a tokenizer the oracle accepts: %s (field '%s')",
                    expected, q_error_name(rc), diag->field);
}

static void check_one(const uint8_t *data, size_t size, size_t expected, unsigned long inject)
{
    q_tokenizer tok;
    q_diag diag;
    q_test_fail_nth_os_call(inject);
    q_error_code rc = q_tokenizer_parse(&tok, data, size, expected, &diag);
    int fired = q_test_failure_fired();
    q_test_fail_nth_os_call(0);
    if (fired)
        FUZZ_ASSERT_MSG(rc == Q_ERR_ALLOC, "allocation %lu failed, parser said %s", inject,
                        q_error_name(rc));
    else
        fuzz_check_tokenizer_oracle(data, size, expected, rc, &diag);
    if (rc == Q_OK) {
        /* expected 0: the parser counts the entries itself (src/model/tokenizer.c). */
        FUZZ_ASSERT_MSG(tok.vocab_size == (expected ? expected : count_entries(data, size)),
                        "vocab %zu, expected %zu", tok.vocab_size, expected);
        fuzz_check_tokenizer(&tok);
        if (!inject)
            fuzz_run_tokenizer(&tok, data, size);
    } else {
        FUZZ_ASSERT(tok.pieces == NULL && tok.scores == NULL && tok.piece_lengths == NULL);
    }
    q_tokenizer_free(&tok);
    q_tokenizer_free(&tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t h = fuzz_hash(data, size);
    size_t n = count_entries(data, size);
    unsigned long inject = fuzz_injection_from_hash(h);
    if ((h & 0xf0u) == 0)
        fuzz_check_model_api_misuse(data, size);
    if (inject)
        check_one(data, size, n, inject);
    check_one(data, size, n, 0);
    check_one(data, size, n + 1, 0);
    if (n > 0)
        check_one(data, size, n - 1, 0);
    check_one(data, size, (size_t)(h >> 32) % (2 * n + 3), 0);
    check_one(data, size, 0, 0);

    /* The file path agrees with the memory path. */
    if (size >= Q_MIN_MODEL_FILE_BYTES) {
        const char *path = fuzz_temp_file(data, size);
        if (path != NULL) {
            q_tokenizer a, b;
            q_error_code ra = q_tokenizer_parse(&a, data, size, n, NULL);
            q_error_code rb = q_tokenizer_load(&b, path, n, NULL);
            FUZZ_ASSERT_MSG(ra == rb, "parse %s, load %s", q_error_name(ra), q_error_name(rb));
            if (ra == Q_OK) {
                FUZZ_ASSERT(a.vocab_size == b.vocab_size && a.max_token_length == b.max_token_length);
                for (size_t i = 0; i < a.vocab_size; i++)
                    FUZZ_ASSERT(a.piece_lengths[i] == b.piece_lengths[i] &&
                                memcmp(a.pieces[i], b.pieces[i], a.piece_lengths[i]) == 0);
            }
            q_tokenizer_free(&a);
            q_tokenizer_free(&b);
            fuzz_remove_temp_file(path);
        }
    }
    return 0;
}
