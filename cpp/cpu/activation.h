// SiLU-and-mul on the CPU (params: taco/kernels/activation.h).
#pragma once

#include "cpu/isa.h"

#include "taco/kernels/activation.h"

namespace taco::cpu {
inline namespace TACO_CPU_NS {

using kernels::SiluAndMulParams;

// out = silu(gate) * up, each product rounded to the model dtype as HF computes it.
void silu_and_mul(const SiluAndMulParams& p);

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
