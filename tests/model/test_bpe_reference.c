/*
 * The byte-level BPE tokenizer against the original tokenizers: for each of GPT-2, Llama 3
 * and Qwen2.5 (vocab-only GGUFs written by tests/scripts/bpe_reference.sh from the
 * @lenml/tokenizer-* packages), every string of tests/model/bpe/strings.txt must encode to
 * exactly the ids in <name>.ids, and every string of special_strings.txt, with
 * Q_ENCODE_SPECIAL, to <name>.special.ids (both files hold the original tokenizers' ids).
 * Decoding the plain encodings gives every string back byte for byte; so does decoding
 * special strings encoded without Q_ENCODE_SPECIAL, where control-token text stays text.
 *
 *   test_bpe_reference VOCAB_DIR DATA_DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "qorus_infer.h"
#include "qorus_model.h"

#define MAX_LINE 65536

/* Unescapes a strings.txt line in place (\\ \n \r \t, and \e alone for ""): its length,
 * or -1 for a malformed escape. */
static long unescape(char *s)
{
    size_t n = strlen(s), out = 0;
    if (strcmp(s, "\\e") == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            s[out++] = s[i];
            continue;
        }
        switch (s[++i]) {
        case '\\': s[out++] = '\\'; break;
        case 'n': s[out++] = '\n'; break;
        case 'r': s[out++] = '\r'; break;
        case 't': s[out++] = '\t'; break;
        default: return -1;
        }
    }
    return (long)out;
}

/* Reads one line without its newline; 0 at the end of the file. */
static int read_line(FILE *f, char *buf)
{
    if (fgets(buf, MAX_LINE, f) == NULL)
        return 0;
    buf[strcspn(buf, "\n")] = '\0';
    return 1;
}

/* Parses a line of decimal ids. Returns the count. */
static size_t parse_ids(const char *line, uint32_t *ids, size_t cap)
{
    size_t n = 0;
    char *end;
    for (const char *p = line; *p != '\0' && n < cap; p = end) {
        unsigned long v = strtoul(p, &end, 10);
        if (end == p)
            break;
        ids[n++] = (uint32_t)v;
    }
    return n;
}

static void print_ids(const char *what, const uint32_t *ids, size_t n)
{
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %u", ids[i]);
    fprintf(stderr, "\n");
}

/* Encodes every string of `strings` and compares with the lines of `expected`. */
static void check_file(const char *name, const q_tokenizer *tok, const char *strings,
                       const char *expected, unsigned flags, size_t *n_checked)
{
    FILE *fs = fopen(strings, "r"), *fe = fopen(expected, "r");
    char *line = malloc(MAX_LINE), *want = malloc(MAX_LINE);
    uint32_t *got = malloc(sizeof(uint32_t) * (MAX_LINE + 3));
    uint32_t *ref = malloc(sizeof(uint32_t) * (MAX_LINE + 3));
    q_encoder enc;
    q_decoder dec;
    CHECK(fs != NULL && fe != NULL && line != NULL && want != NULL && got != NULL && ref != NULL);
    CHECK_EQ_ERR(q_encoder_init(&enc, tok), Q_OK);
    CHECK_EQ_ERR(q_decoder_init(&dec, tok), Q_OK);
    size_t lineno = 0;
    while (fs != NULL && fe != NULL && read_line(fs, line)) {
        lineno++;
        if (line[0] == '#' || line[0] == '\0')
            continue;
        long len = unescape(line);
        CHECK(len >= 0);
        if (len < 0)
            continue;
        CHECK(read_line(fe, want));
        size_t n_want = parse_ids(want, ref, MAX_LINE + 3), n_got = 0;
        q_error_code rc = q_encode_ex(&enc, line, (size_t)len, flags, got, MAX_LINE + 3, &n_got);
        CHECK_EQ_ERR(rc, Q_OK);
        int same = rc == Q_OK && n_got == n_want &&
                   (n_got == 0 || memcmp(got, ref, n_got * sizeof *got) == 0);
        if (!same) {
            fprintf(stderr, "%s: %s line %zu: ids differ from the original tokenizer's\n",
                    name, strings, lineno);
            print_ids("want", ref, n_want);
            print_ids("got ", got, n_got);
            check_failures++;
        }
        (*n_checked)++;
        /* round trip: the plain encoding decodes to the text, byte for byte */
        rc = q_encode_ex(&enc, line, (size_t)len, 0, got, MAX_LINE + 3, &n_got);
        CHECK_EQ_ERR(rc, Q_OK);
        size_t at = 0;
        int round_trip = rc == Q_OK;
        for (size_t i = 0; round_trip && i < n_got; i++) {
            const char *piece;
            size_t plen;
            round_trip = q_decoder_piece(&dec, got[i], &piece, &plen) == Q_OK &&
                         plen <= (size_t)len - at && memcmp(line + at, piece, plen) == 0;
            at += plen;
        }
        if (!round_trip || at != (size_t)len) {
            fprintf(stderr, "%s: %s line %zu: decoding does not give the text back\n", name,
                    strings, lineno);
            check_failures++;
        }
    }
    if (fe != NULL)
        CHECK(!read_line(fe, want)); /* no expected line left over */
    q_encoder_free(&enc);
    q_decoder_free(&dec);
    if (fs != NULL)
        fclose(fs);
    if (fe != NULL)
        fclose(fe);
    free(line);
    free(want);
    free(got);
    free(ref);
}

int main(int argc, char **argv)
{
    static const char *const names[] = {"gpt2", "llama3", "qwen2"};
    static const q_pretok pretoks[] = {Q_PRETOK_GPT2, Q_PRETOK_LLAMA3, Q_PRETOK_QWEN2};
    char path[4096], strings[4096], expected[4096];
    if (argc != 3) {
        fprintf(stderr, "usage: %s VOCAB_DIR DATA_DIR\n", argv[0]);
        return 2;
    }
    for (size_t k = 0; k < 3; k++) {
        q_tokenizer tok;
        q_diag d;
        size_t n_plain = 0, n_special = 0;
        snprintf(path, sizeof path, "%s/%s.vocab.gguf", argv[1], names[k]);
        q_error_code rc = q_vocab_load(&tok, path, &d);
        if (rc != Q_OK) {
            fprintf(stderr, "%s: %s (field '%s', value %lld)\n", path, q_error_name(rc), d.field,
                    (long long)d.value);
            check_failures++;
            continue;
        }
        CHECK_EQ_INT(tok.kind, Q_VOCAB_BPE);
        CHECK_EQ_INT(tok.pretok, pretoks[k]);
        snprintf(strings, sizeof strings, "%s/strings.txt", argv[2]);
        snprintf(expected, sizeof expected, "%s/%s.ids", argv[2], names[k]);
        check_file(names[k], &tok, strings, expected, 0, &n_plain);
        snprintf(strings, sizeof strings, "%s/special_strings.txt", argv[2]);
        snprintf(expected, sizeof expected, "%s/%s.special.ids", argv[2], names[k]);
        check_file(names[k], &tok, strings, expected, Q_ENCODE_SPECIAL, &n_special);
        printf("%s: %zu tokens, %zu merges; %zu plain and %zu special strings compared\n",
               names[k], tok.vocab_size, tok.n_merges, n_plain, n_special);
        CHECK(n_plain > 100 && n_special > 5);
        q_tokenizer_free(&tok);
    }
    return check_result("test_bpe_reference");
}
