// bf16 rows interleaved in pairs: the operand layout of a bf16 dot product (vdpbf16ps) whose
// sum runs over rows, as P V runs over keys in attention.
#pragma once

#include "cpu/isa.h"

#include "cpu/half.h"

#include <cstdint>

namespace taco::cpu {
inline namespace TACO_CPU_NS {

// dst[j * d + e] = the dword (v[2j][e], v[2j + 1][e]), row 2j in the low half, for j < pairs;
// rows at or past `rows` read as zero (unwritten cache rows may hold NaNs, and 0 * NaN would
// poison a sum). v: rows of d bf16, contiguous. Requires an AVX512-BF16 build and d % 32 == 0.
void pair_rows_bf16(uint32_t* dst, const bf16* v, int64_t rows, int64_t pairs, int64_t d);

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
