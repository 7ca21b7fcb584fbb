/*
 * The malformed-file table: reads the manifest written by `qorus-model malformed DIR` and
 * checks that every file returns its expected error code through the library, fills the
 * diagnostic, leaves nothing allocated, and that every prefix of every file parses without
 * crashing (ASan/MSan watch the reads).
 *
 * usage: test_malformed DIR   (DIR/manifest.tsv)
 */
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
    fprintf(stderr, "%d rows, %d failures\n", rows, failures);
    return failures == 0 && rows > 0 ? 0 : 1;
}
