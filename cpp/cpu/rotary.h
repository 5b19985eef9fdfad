// Rotary position embedding on the CPU, in place on query and key heads (params:
// taco/kernels/rotary.h).
#pragma once

#include "cpu/isa.h"

#include "taco/kernels/rotary.h"

namespace taco::cpu {
inline namespace TACO_CPU_NS {

using kernels::RotaryParams;

// Throws std::invalid_argument naming a bad params field, std::out_of_range for a position
// outside [0, max_pos).
void rotary_embedding(const RotaryParams& p);

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
