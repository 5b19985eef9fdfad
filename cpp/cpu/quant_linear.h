// Linear layers over block-quantized weights on the CPU (params and block layouts:
// taco/kernels/quant.h): the weight stays quantized in memory and each block is widened in
// registers, so a decode step reads 4.5-8.5 bits per weight instead of 16.
#pragma once

#include "cpu/isa.h"
#include "taco/kernels/quant.h"

namespace taco::cpu {
inline namespace TACO_CPU_NS {

using kernels::QuantLinearParams;

// out = x W^T. Throws std::invalid_argument naming a bad params field.
void quant_linear(const QuantLinearParams& p);

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
