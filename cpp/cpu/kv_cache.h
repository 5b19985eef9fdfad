// Writing new keys/values into the paged KV cache on the CPU (params and cache layout:
// taco/kernels/kv_cache.h).
#pragma once

#include "cpu/isa.h"

#include "taco/kernels/kv_cache.h"

namespace taco::cpu {
TACO_CPU_ISA_BEGIN

using kernels::WriteKvParams;

// Throws std::invalid_argument naming a bad params field, std::out_of_range for a slot beyond
// the cache.
void write_kv_cache(const WriteKvParams& p);

TACO_CPU_ISA_END
}  // namespace taco::cpu
