/*
 * fuzz_model_llama2c: llama2.c checkpoints (legacy v0, ak42 v1 float32, ak42 v2 Q8_0)
 * through q_model_parse and q_model_load; accepted small models run forward steps. The
 * whole input is the file (see model_common.h); dictionary fuzz/dict/llama2c.dict.
 * Structure-aware mutator: fuzz/mutator_llama2c.c (LLVMFuzzerCustomMutator in libFuzzer builds,
 * libqorus_mutator_fuzz_model_llama2c.so for AFL++; QORUS_FUZZ_STRUCTURED=0 turns it off).
 */
#include "model_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_model_input(data, size, 0);
    return 0;
}
