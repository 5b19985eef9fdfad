// LoRA's grouped shrink / expand on the CPU (params: taco/kernels/lora.h).
#pragma once

#include "cpu/isa.h"

#include "taco/kernels/lora.h"

namespace taco::cpu {
inline namespace TACO_CPU_NS {

using kernels::LoraParams;

// y[t] += (x[t] A_slot^T) B_slot^T for every token with a slot; tokens of one slot are taken
// in tiles, so each adapter's A and B rows are read once per tile rather than once per token.
// Accumulates in float32 and rounds once into y.
void lora_apply(const LoraParams& p);

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
