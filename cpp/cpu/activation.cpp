#include "cpu/activation.h"

#include <ATen/Parallel.h>

#include <cmath>

#include "cpu/vec.h"

namespace taco::cpu {

template <typename T>
void silu_and_mul(const SiluAndMulParams& p) {
  at::parallel_for(0, p.tokens, 8, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const T* gate = static_cast<const T*>(p.x) + t * p.x_stride;
      const T* up = gate + p.inter;
      T* out = static_cast<T*>(p.out) + t * p.inter;
      for (int64_t i = 0; i < p.inter; ++i) {
        const float g = to_float(gate[i]);
        const float act = to_float(from_float<T>(g / (1.0f + std::exp(-g))));
        out[i] = from_float<T>(act * to_float(up[i]));
      }
    }
  });
}

template void silu_and_mul<float>(const SiluAndMulParams&);
template void silu_and_mul<c10::BFloat16>(const SiluAndMulParams&);
template void silu_and_mul<c10::Half>(const SiluAndMulParams&);

}  // namespace taco::cpu
