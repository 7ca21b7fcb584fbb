/*
 * fuzz_gguf: GGUF v2/v3 files through q_model_parse (with the tokenizer taken from the
 * metadata) and q_model_load; accepted small models run forward steps and their tokenizer
 * encodes and decodes a few bytes. The whole input is the file (see model_common.h);
 * dictionary fuzz/dict/gguf.dict.
 * Structure-aware mutator: fuzz/mutator_gguf.c (LLVMFuzzerCustomMutator in libFuzzer builds,
 * libqorus_mutator_fuzz_gguf.so for AFL++; QORUS_FUZZ_STRUCTURED=0 turns it off).
 */
#include "model_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_model_input(data, size, 1);
    return 0;
}
