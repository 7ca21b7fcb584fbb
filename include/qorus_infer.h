/*
 * qorus inference: tokenizer encode/decode, forward pass, sampler.
 * (Interface owned by the inference module; see src/infer/.)
 */
#ifndef QORUS_INFER_H
#define QORUS_INFER_H

#include "qorus_core.h"
#include "qorus_model.h"

#endif
