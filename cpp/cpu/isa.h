// Instruction sets of the CPU kernels, chosen at run time. Every kernel source is compiled once per
// x86-64 level (AVX-512 + BF16 + VNNI, AVX-512, AVX2, baseline) into its own namespace
// taco::cpu::isa_<name> and its own shared library (libtaco_cpu_<name>.so), which exports only
// the level's table of entry points: the inline functions and template instantiations compiled
// for that level's instruction set stay inside it (cpp/cpu/level.map), so code built for one
// level never runs on a CPU without it, and a binary built on one x86-64 machine runs on any
// other. The public entry points (taco::cpu::rms_norm, ...) call the best level the CPU
// supports, or the one TACO_CPU_ISA names.
//
// Kernel headers put what they declare in the inline namespace TACO_CPU_NS: compiled as part of a
// level (TACO_CPU_ISA defined) that is the level's namespace, elsewhere `dispatch`, where isa.cpp
// defines the public entry points. Either way callers write taco::cpu::name, and inline helpers
// never mix code of two levels (one definition rule).
#pragma once

#include <cstdint>
#include <string>

#include "taco/kernels/activation.h"
#include "taco/kernels/attention.h"
#include "taco/kernels/fp8.h"
#include "taco/kernels/kv_cache.h"
#include "taco/kernels/lora.h"
#include "taco/kernels/norm.h"
#include "taco/kernels/quant.h"
#include "taco/kernels/rotary.h"

#ifdef TACO_CPU_ISA
#define TACO_CPU_NS TACO_CPU_ISA
#else
#define TACO_CPU_NS dispatch
#endif

namespace taco::cpu {

// Skinny bf16 GEMM params (see skinny_gemm.h), shared by every level.
struct SkinnyGemmParams {
  void* out = nullptr;      // [m, n] with row stride out_stride: bf16, or float when out_float
  const void* x = nullptr;  // [m, k] bf16, row stride x_stride
  const void* w = nullptr;  // W [n, k] in the packed layout (pack_skinny_weight)
  int64_t m = 0, n = 0, k = 0;
  int64_t x_stride = 0, out_stride = 0;
  bool out_float = false;
};

// The kernel entry points: X(name, return type, parameters, arguments).
#define TACO_CPU_ENTRY_POINTS(X)                                                                \
  X(rms_norm, void, (const kernels::RmsNormParams& p), (p))                                     \
  X(fused_add_rms_norm, void, (const kernels::RmsNormParams& p), (p))                           \
  X(rotary_embedding, void, (const kernels::RotaryParams& p), (p))                              \
  X(silu_and_mul, void, (const kernels::SiluAndMulParams& p), (p))                              \
  X(write_kv_cache, void, (const kernels::WriteKvParams& p), (p))                               \
  X(paged_attention, void, (const kernels::PagedAttentionParams& p), (p))                       \
  X(skinny_gemm_supported, bool, (int64_t k), (k))                                              \
  X(skinny_packed_elems, int64_t, (int64_t n, int64_t k), (n, k))                               \
  X(pack_skinny_weight, void, (const void* w, void* packed, int64_t n, int64_t k),              \
    (w, packed, n, k))                                                                          \
  X(skinny_gemm_bf16, void, (const SkinnyGemmParams& p), (p))                                   \
  X(quant_linear, void, (const kernels::QuantLinearParams& p), (p))                             \
  X(quant_linear_int8, bool, (kernels::QuantType t), (t))                                       \
  X(pack_quant_weight, void,                                                                    \
    (kernels::QuantType t, kernels::QuantType layout, const void* raw, void* packed, int64_t n, \
     int64_t k),                                                                                \
    (t, layout, raw, packed, n, k))                                                             \
  X(dequantize_quant, void,                                                                     \
    (kernels::QuantType t, const void* raw, float* out, int64_t n, int64_t k),                  \
    (t, raw, out, n, k))                                                                        \
  X(unpack_quant_weight, void,                                                                  \
    (kernels::QuantType t, const void* packed, void* out, bool bf16_out, int64_t n, int64_t k), \
    (t, packed, out, bf16_out, n, k))                                                           \
  X(pack_fp8_weight, void, (const void* codes, void* packed, int64_t n, int64_t k),             \
    (codes, packed, n, k))                                                                      \
  X(unpack_fp8_weight, void,                                                                    \
    (const void* packed, const float* scale, void* out, bool bf16_out, int64_t n, int64_t k),   \
    (packed, scale, out, bf16_out, n, k))                                                       \
  X(fp8_linear, void, (const kernels::Fp8LinearParams& p), (p))                                 \
  X(lora_apply, void, (const kernels::LoraParams& p), (p))

// One level's entry points.
struct KernelTable {
  const char* isa = nullptr;
#define TACO_CPU_TABLE_FIELD(name, ret, params, args) ret(*name) params = nullptr;
  TACO_CPU_ENTRY_POINTS(TACO_CPU_TABLE_FIELD)
#undef TACO_CPU_TABLE_FIELD
};

// The levels this build has, best first ("avx512bf16", "avx512", "avx2", "generic" on x86-64).
#define TACO_CPU_ISA_LIST_X86(X) X(avx512bf16) X(avx512) X(avx2) X(generic)

#ifndef TACO_CPU_ISA
// The level the kernels run at: TACO_CPU_ISA's when set and the CPU supports it (otherwise a
// warning on stderr and the automatic choice), else the best one the CPU supports.
const KernelTable& active_kernels();
std::string active_isa();
#endif

}  // namespace taco::cpu
