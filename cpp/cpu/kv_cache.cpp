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
  if (p.cache_type != kernels::KvCacheType::kModel) {
    auto* k8 = static_cast<uint8_t*>(p.kv);
    uint8_t* v8 = k8 + p.num_blocks * block_stride;
    parallel_for(0, p.tokens, 16, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t slot = p.slot_mapping[t];
        if (slot < 0) continue;
        const int64_t base = (slot / p.block_size) * block_stride + (slot % p.block_size) * row;
        const T* k = static_cast<const T*>(p.key) + t * p.key_stride;
        const T* v = static_cast<const T*>(p.value) + t * p.value_stride;
        for (int64_t h = 0; h < p.num_kv_heads; ++h) {
          float_to_fp8(p.cache_type, k + h * row, k8 + base + h * head_stride, row, p.k_scale);
          float_to_fp8(p.cache_type, v + h * row, v8 + base + h * head_stride, row, p.v_scale);
        }
      }
    });
    return;
  }
  T* k_cache = static_cast<T*>(p.kv);
  T* v_cache = k_cache + p.num_blocks * block_stride;
  parallel_for(0, p.tokens, 64, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t slot = p.slot_mapping[t];
      if (slot < 0) continue;
      const int64_t base = (slot / p.block_size) * block_stride + (slot % p.block_size) * row;
      const T* k = static_cast<const T*>(p.key) + t * p.key_stride;
      const T* v = static_cast<const T*>(p.value) + t * p.value_stride;
      for (int64_t h = 0; h < p.num_kv_heads; ++h) {
        std::memcpy(k_cache + base + h * head_stride, k + h * row, row * sizeof(T));
        std::memcpy(v_cache + base + h * head_stride, v + h * row, row * sizeof(T));
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
