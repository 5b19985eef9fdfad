// RMSNorm kernels on the CPU (params and rounding contract: taco/kernels/norm.h).
#pragma once

#include "cpu/isa.h"

#include "taco/kernels/norm.h"

namespace taco::cpu {
inline namespace TACO_CPU_NS {

using kernels::RmsNormParams;

// out = x / rms(x) * weight. Throws std::invalid_argument naming a bad params field.
void rms_norm(const RmsNormParams& p);

// residual += x; out = rms_norm(residual) * weight (out may alias x).
void fused_add_rms_norm(const RmsNormParams& p);

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
