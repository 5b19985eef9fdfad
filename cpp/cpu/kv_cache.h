// Writing new keys/values into the paged KV cache on the CPU (params and cache layout:
// taco/kernels/kv_cache.h).
#pragma once

#include "cpu/isa.h"

#include "taco/kernels/kv_cache.h"

namespace taco::cpu {
inline namespace TACO_CPU_NS {

using kernels::WriteKvParams;

// Throws std::invalid_argument naming a bad params field, std::out_of_range for a slot beyond
// the cache.
void write_kv_cache(const WriteKvParams& p);

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
