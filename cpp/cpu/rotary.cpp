#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC bug 105593, see cpu/vec_avx512.h

#include "cpu/rotary.h"
#include "cpu/isa.h"

#include <stdexcept>
#include <string>

#include "cpu/dispatch.h"
#include "cpu/parallel.h"
#include "cpu/vec.h"
#include "cpu/vec_avx512.h"

namespace taco::cpu {
inline namespace TACO_CPU_NS {
namespace {

// Rotates the pairs (x[i], x[i + half]) or (x[2i], x[2i+1]) of one head, i < half.
template <typename T>
void rotate_head(T* x, const float* cos, const float* sin, int64_t half, bool is_neox) {
  int64_t i = 0;
#ifdef __AVX512F__
  // neox pairs are two contiguous halves: 16 pairs per step.
  for (; is_neox && i + 16 <= half; i += 16) {
    const __m512 x0 = avx512::load16(x + i), x1 = avx512::load16(x + half + i);
    const __m512 c = _mm512_loadu_ps(cos + i), s = _mm512_loadu_ps(sin + i);
    avx512::store16(x + i, _mm512_sub_ps(_mm512_mul_ps(x0, c), _mm512_mul_ps(x1, s)));
    avx512::store16(x + half + i, _mm512_add_ps(_mm512_mul_ps(x1, c), _mm512_mul_ps(x0, s)));
  }
#endif
  for (; i < half; ++i) {
    const int64_t a = is_neox ? i : 2 * i;
    const int64_t b = is_neox ? i + half : 2 * i + 1;
    const float x0 = to_float(x[a]);
    const float x1 = to_float(x[b]);
    x[a] = from_float<T>(x0 * cos[i] - x1 * sin[i]);
    x[b] = from_float<T>(x1 * cos[i] + x0 * sin[i]);
  }
}

template <typename T>
void rotary_embedding_impl(const RotaryParams& p) {
  const int64_t half = p.rot_dim / 2;
  for (int64_t t = 0; t < p.tokens; ++t) {
    if (p.positions[t] < 0 || p.positions[t] >= p.max_pos) {
      throw std::out_of_range("rotary_embedding: position " + std::to_string(p.positions[t]) +
                              " outside the cos/sin cache of " + std::to_string(p.max_pos));
    }
  }
  parallel_for(0, p.tokens, 16, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const float* cos = p.cos_sin + p.positions[t] * p.rot_dim;
      const float* sin = cos + half;
      T* q = static_cast<T*>(p.query) + t * p.query_stride;
      for (int64_t h = 0; h < p.num_heads; ++h) {
        rotate_head(q + h * p.head_dim, cos, sin, half, p.is_neox);
      }
      T* k = static_cast<T*>(p.key) + t * p.key_stride;
      for (int64_t h = 0; h < p.num_kv_heads; ++h) {
        rotate_head(k + h * p.head_dim, cos, sin, half, p.is_neox);
      }
    }
  });
}

}  // namespace

void rotary_embedding(const RotaryParams& p) {
  throw_if(p.check(), "rotary_embedding");
  dispatch(p.dtype, [&]<typename T>() { rotary_embedding_impl<T>(p); });
}

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
