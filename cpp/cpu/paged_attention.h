// Paged attention on the CPU over a flat batch that mixes prefill chunks and decodes (params
// and semantics: taco/kernels/attention.h; cache layout: taco/kernels/kv_cache.h).
#pragma once

#include "cpu/isa.h"

#include "taco/kernels/attention.h"

namespace taco::cpu {
inline namespace TACO_CPU_NS {

using kernels::PagedAttentionParams;

// Throws std::invalid_argument naming a bad params field.
void paged_attention(const PagedAttentionParams& p);

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
