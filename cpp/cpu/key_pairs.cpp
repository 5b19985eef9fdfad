#include "cpu/key_pairs.h"
#include "cpu/isa.h"

#include <stdexcept>

#ifdef __AVX512BF16__
#include <immintrin.h>
#endif

namespace taco::cpu {
inline namespace TACO_CPU_NS {

#ifdef __AVX512BF16__
void pair_rows_bf16(uint32_t* dst, const bf16* v, int64_t rows, int64_t pairs, int64_t d) {
  // Word 2e of output dword e takes a[16h + e], word 2e + 1 takes b[16h + e] (b's words are
  // indices 32..63 of the two-table permute), for the low (h = 0) and high (h = 1) halves.
  alignas(64) static const uint16_t kIdx[2][32] = {
      {0, 32, 1, 33, 2,  34, 3,  35, 4,  36, 5,  37, 6,  38, 7,  39,
       8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47},
      {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
       24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63}};
  const __m512i lo = _mm512_load_si512(kIdx[0]), hi = _mm512_load_si512(kIdx[1]);
  for (int64_t j = 0; j < pairs; ++j) {
    for (int64_t c = 0; c < d; c += 32) {
      const __m512i a =
          2 * j < rows ? _mm512_loadu_si512(v + 2 * j * d + c) : _mm512_setzero_si512();
      const __m512i b =
          2 * j + 1 < rows ? _mm512_loadu_si512(v + (2 * j + 1) * d + c) : _mm512_setzero_si512();
      _mm512_storeu_si512(dst + j * d + c, _mm512_permutex2var_epi16(a, lo, b));
      _mm512_storeu_si512(dst + j * d + c + 16, _mm512_permutex2var_epi16(a, hi, b));
    }
  }
}
#else
void pair_rows_bf16(uint32_t*, const bf16*, int64_t, int64_t, int64_t) {
  throw std::logic_error("pair_rows_bf16: built without AVX512-BF16");
}
#endif

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
