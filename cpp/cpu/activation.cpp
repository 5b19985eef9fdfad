#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC bug 105593, see cpu/vec_avx512.h

#include "cpu/activation.h"
#include "cpu/isa.h"

#include "cpu/parallel.h"

#include <cmath>

#include "cpu/dispatch.h"
#include "cpu/vec.h"
#include "cpu/vec_avx512.h"

namespace taco::cpu {
inline namespace TACO_CPU_NS {
namespace {

// out[0..n) = round(round(silu(gate)) * up): HF applies the activation and the product as two
// ops in the model dtype.
template <typename T>
void silu_and_mul_row(T* out, const T* gate, const T* up, int64_t n) {
  int64_t i = 0;
#ifdef __AVX512F__
  for (; i + 16 <= n; i += 16) {
    const __m512 g = avx512::load16(gate + i);
    const __m512 e = avx512::exp(_mm512_sub_ps(_mm512_setzero_ps(), g));
    const __m512 silu = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    const __m512 act = avx512::round_to<T>(silu);
    avx512::store16(out + i, _mm512_mul_ps(act, avx512::load16(up + i)));
  }
#endif
  for (; i < n; ++i) {
    const float g = to_float(gate[i]);
    const float act = to_float(from_float<T>(g / (1.0f + std::exp(-g))));
    out[i] = from_float<T>(act * to_float(up[i]));
  }
}

template <typename T>
void silu_and_mul_impl(const SiluAndMulParams& p) {
  parallel_for(0, p.tokens, 8, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const T* gate = static_cast<const T*>(p.x) + t * p.x_stride;
      silu_and_mul_row(static_cast<T*>(p.out) + t * p.inter, gate, gate + p.inter, p.inter);
    }
  });
}

}  // namespace

void silu_and_mul(const SiluAndMulParams& p) {
  throw_if(p.check(), "silu_and_mul");
  dispatch(p.dtype, [&]<typename T>() { silu_and_mul_impl<T>(p); });
}

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
