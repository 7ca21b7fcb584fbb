/*
 * GPT-2's byte-level alphabet: every byte 0..255 is spelled as one Unicode character, so
 * that a byte-level BPE vocabulary is printable text. The bytes that are printable in
 * Latin-1 ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF) stand for themselves; the other 68
 * (0x00..0x20, 0x7F..0xA0, 0xAD), in increasing order, become U+0100..U+0143. So a space
 * is "Ġ" (U+0120) and a newline "Ċ" (U+010A). This is the mapping's definition (GPT-2's
 * bytes_to_unicode), not a Unicode property.
 */
#ifndef QORUS_BYTE_LEVEL_H
#define QORUS_BYTE_LEVEL_H

#include <stddef.h>
#include <stdint.h>

#include "qorus_model.h"

/* The codepoint that spells byte b. */
static inline uint32_t q_byte_to_cp(unsigned b)
{
    if (b <= 0x20)
        return 0x100u + b;
    if (b >= 0x7F && b <= 0xA0)
        return 0x100u + 33u + (b - 0x7Fu);
    if (b == 0xAD)
        return 0x100u + 67u;
    return b;
}

/* The byte codepoint cp spells, or -1 when cp is not in the alphabet. */
static inline int q_cp_to_byte(uint32_t cp)
{
    if (cp < 0x100u)
        return (cp <= 0x20u || (cp >= 0x7Fu && cp <= 0xA0u) || cp == 0xADu) ? -1 : (int)cp;
    if (cp <= 0x100u + 32u)
        return (int)(cp - 0x100u);
    if (cp <= 0x100u + 66u)
        return (int)(cp - 0x100u - 33u + 0x7Fu);
    if (cp == 0x100u + 67u)
        return 0xAD;
    return -1;
}

/* Writes the UTF-8 spelling of byte b (1 or 2 bytes) to out; returns its length. */
static inline size_t q_byte_spell(unsigned b, unsigned char out[2])
{
    uint32_t cp = q_byte_to_cp(b);
    if (cp < 0x80u) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    out[0] = (unsigned char)(0xC0u | (cp >> 6));
    out[1] = (unsigned char)(0x80u | (cp & 0x3Fu));
    return 2;
}

/* Reads one character of the alphabet at s[0..n): its byte, and *used (1 or 2) bytes
 * consumed; -1 when s does not start with one (every alphabet character is below U+0800,
 * so it is one or two UTF-8 bytes; overlong forms are refused). */
static inline int q_byte_unspell(const unsigned char *s, size_t n, size_t *used)
{
    if (n == 0)
        return -1;
    if (s[0] < 0x80u) {
        *used = 1;
        return q_cp_to_byte(s[0]);
    }
    if (s[0] < 0xC2u || s[0] > 0xDFu || n < 2 || (s[1] & 0xC0u) != 0x80u)
        return -1;
    *used = 2;
    return q_cp_to_byte(((uint32_t)(s[0] & 0x1Fu) << 6) | (s[1] & 0x3Fu));
}

/* Whether token i of a BPE vocabulary is byte-level text: normal and byte tokens (every
 * token when the file has no types). The parser checks exactly these pieces against the
 * alphabet, and the encoder and decoder read exactly these through it. */
static inline int q_bpe_is_text_token(const q_tokenizer *t, size_t i)
{
    return t->token_types == NULL || t->token_types[i] == Q_TOKEN_TYPE_NORMAL ||
           t->token_types[i] == Q_TOKEN_TYPE_BYTE;
}

#endif
