/*
 * qorus: a C11 memory core for LLM inference, with the model loaders, tokenizer, forward
 * pass and sampler of its reference driver. Umbrella header.
 */
#ifndef QORUS_H
#define QORUS_H

#include "qorus_core.h"
#include "qorus_model.h"
#include "qorus_infer.h"
#include "qorus_kernels.h"

#endif
