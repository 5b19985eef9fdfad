#include "cpu/kv_cache.h"
#include "cpu/isa.h"

#include "cpu/parallel.h"

#include "cpu/half.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "cpu/dispatch.h"
#include "cpu/fp8_convert.h"

namespace taco::cpu {
inline namespace TACO_CPU_NS {
namespace {

template <typename T>
void write_kv_cache_impl(const WriteKvParams& p) {
  const int64_t num_slots = p.num_blocks * p.block_size;
  for (int64_t t = 0; t < p.tokens; ++t) {
    if (p.slot_mapping[t] >= num_slots) {
      throw std::out_of_range("write_kv_cache: slot " + std::to_string(p.slot_mapping[t]) +
                              " beyond the cache's " + std::to_string(num_slots));
    }
  }
  // Element offsets within one of the two halves of kv.
  const int64_t row = p.head_dim;
  const int64_t head_stride = p.block_size * row;
  const int64_t block_stride = p.num_kv_heads * head_stride;
  const bool fp8 = p.cache_type != kernels::KvCacheType::kModel;
  const int64_t elem = fp8 ? 1 : static_cast<int64_t>(sizeof(T));  // bytes per cached value
  auto* k_cache = static_cast<uint8_t*>(p.kv);
  uint8_t* v_cache = k_cache + p.num_blocks * block_stride * elem;
  // One head's row: copied, or rounded to the 8-bit format.
  auto put = [&](const T* src, uint8_t* dst, float scale) {
    if (fp8) {
      float_to_fp8(p.cache_type, src, dst, row, scale);
    } else {
      std::memcpy(dst, src, row * sizeof(T));
    }
  };
  parallel_for(0, p.tokens, fp8 ? 16 : 64, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t slot = p.slot_mapping[t];
      if (slot < 0) continue;
      const int64_t base = (slot / p.block_size) * block_stride + (slot % p.block_size) * row;
      const T* k = static_cast<const T*>(p.key) + t * p.key_stride;
      const T* v = static_cast<const T*>(p.value) + t * p.value_stride;
      for (int64_t h = 0; h < p.num_kv_heads; ++h) {
        put(k + h * row, k_cache + (base + h * head_stride) * elem, p.k_scale);
        put(v + h * row, v_cache + (base + h * head_stride) * elem, p.v_scale);
      }
    }
  });
}

}  // namespace

void write_kv_cache(const WriteKvParams& p) {
  throw_if(p.check(), "write_kv_cache");
  dispatch(p.dtype, [&]<typename T>() { write_kv_cache_impl<T>(p); });
}

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
