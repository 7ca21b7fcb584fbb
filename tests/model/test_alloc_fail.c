/*
 * Out-of-memory by countdown (SQLite's way): the Nth OS call (open, mmap, heap) fails,
 * for N = 1, 2, ... until the load succeeds. Every failure must return an error, leave the
 * context, model and tokenizer zeroed, and leak nothing (LeakSanitizer in the asan build).
 *
 * usage: test_alloc_fail FILE...   (kind by name: *.gguf, *tokenizer*, else llama2.c)
 */
#include <stdio.h>
#include <string.h>

#include "../check.h"
#include "qorus.h"
#include "qorus_testing.h"

static int is_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

static void countdown(const char *path)
{
    int tok = strstr(path, "tok") != NULL;
    unsigned long n;
    for (n = 1; n < 100000; n++) {
        q_context ctx = {0};
        q_model m;
        q_tokenizer t;
        q_diag d;
        q_error_code rc;
        int fired;
        q_test_fail_nth_os_call(n);
        rc = tok ? q_tokenizer_load(&t, path, 0, &d) : q_model_load(&m, &t, &ctx, path, Q_MMAP_LAZY, &d);
        fired = q_test_failure_fired();
        q_test_fail_nth_os_call(0);
        if (!fired) {
            CHECK_EQ_ERR(rc, Q_OK);
            if (!tok) {
                q_model_free(&m);
                q_free_memory(&ctx);
            }
            q_tokenizer_free(&t);
            break;
        }
        CHECK(rc != Q_OK);
        if (rc == Q_OK) {
            fprintf(stderr, "  %s: call %lu failed but the load succeeded\n", path, n);
            q_model_free(&m);
            q_tokenizer_free(&t);
            q_free_memory(&ctx);
            continue;
        }
        CHECK(is_zero(&t, sizeof t));
        if (!tok) {
            CHECK(is_zero(&m, sizeof m));
            CHECK(ctx.weights_mmap == NULL && ctx.weights_size == 0);
        }
    }
    fprintf(stderr, "  %s: %lu failure points\n", path, n - 1);
    CHECK(n > 1);
}

/* The encoder of a file's vocabulary, by countdown too: q_encoder_init (for byte-level BPE
 * also the merge table and PCRE2's compiled pre-tokenizer, whose allocations go through
 * the same OS layer) and one q_encode_ex with special pieces. Every failure is Q_ERR_ALLOC,
 * leaves the encoder zeroed and leaks nothing. */
static void countdown_encoder(const char *path)
{
    static const char text[] = "Hello <|endoftext|> w\xc3\xb6rld 123 <tool>!";
    q_context ctx = {0};
    q_model m;
    q_tokenizer t;
    q_diag d;
    uint32_t ids[sizeof text + 3];
    unsigned long n;
    if (q_model_load(&m, &t, &ctx, path, Q_MMAP_LAZY, &d) != Q_OK || t.vocab_size == 0) {
        if (t.vocab_size == 0)
            q_model_free(&m);
        q_free_memory(&ctx);
        return;
    }
    for (n = 1; n < 100000; n++) {
        q_encoder enc;
        size_t n_ids = 0;
        q_test_fail_nth_os_call(n);
        q_error_code rc = q_encoder_init(&enc, &t);
        if (rc == Q_OK)
            rc = q_encode_ex(&enc, text, sizeof text - 1, Q_ENCODE_BOS | Q_ENCODE_SPECIAL, ids,
                             sizeof ids / sizeof ids[0], &n_ids);
        int fired = q_test_failure_fired();
        q_test_fail_nth_os_call(0);
        if (!fired) {
            CHECK_EQ_ERR(rc, Q_OK);
            q_encoder_free(&enc);
            break;
        }
        CHECK_EQ_ERR(rc, Q_ERR_ALLOC);
        CHECK_EQ_INT(n_ids, 0);
        q_encoder_free(&enc);
    }
    fprintf(stderr, "  %s: encoder: %lu failure points\n", path, n - 1);
    CHECK(n > 1);
    q_tokenizer_free(&t);
    q_model_free(&m);
    q_free_memory(&ctx);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        countdown(argv[i]);
        if (strstr(argv[i], ".gguf") != NULL)
            countdown_encoder(argv[i]);
    }
    return check_failures ? 1 : 0;
}
