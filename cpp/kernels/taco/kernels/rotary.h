// Rotary position embedding params: query and key heads rotated in place.
#pragma once

#include <cstdint>
#include <string>

#include "taco/kernels/check.h"
#include "taco/kernels/dtype.h"

namespace taco::kernels {

struct RotaryParams {
  const int64_t* positions = nullptr;  // [tokens] int64
  void* query = nullptr;  // [tokens, num_heads * head_dim] dtype, row stride query_stride elements
  void* key = nullptr;    // [tokens, num_kv_heads * head_dim] dtype, row stride key_stride
  const float* cos_sin = nullptr;  // [max_pos, rot_dim] float32: cos in columns [0, rot_dim/2),
                                   //   sin after
  int64_t tokens = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t rot_dim = 0;  // rotated leading features of each head (even, <= head_dim)
  int64_t query_stride = 0;
  int64_t key_stride = 0;
  int64_t max_pos = 0;
  bool is_neox = true;  // neox: pairs (i, i + rot_dim/2); GPT-J: pairs (2i, 2i+1)
  DType dtype = DType::kBFloat16;

  std::string check() const {
    using namespace detail;
    constexpr const char* w = "RotaryParams";
    return first_error(require(tokens >= 0, w, "tokens", tokens, "must be >= 0"),
                       require(num_heads > 0, w, "num_heads", num_heads, "must be > 0"),
                       require(num_kv_heads > 0, w, "num_kv_heads", num_kv_heads, "must be > 0"),
                       require(head_dim > 0, w, "head_dim", head_dim, "must be > 0"),
                       require(rot_dim > 0 && rot_dim % 2 == 0 && rot_dim <= head_dim, w, "rot_dim",
                               rot_dim, "must be even, > 0 and <= head_dim"),
                       require(query_stride >= num_heads * head_dim, w, "query_stride",
                               query_stride, "must be >= num_heads * head_dim"),
                       require(key_stride >= num_kv_heads * head_dim, w, "key_stride", key_stride,
                               "must be >= num_kv_heads * head_dim"),
                       require(max_pos > 0, w, "max_pos", max_pos, "must be > 0"),
                       tokens > 0 ? require_ptr(positions, w, "positions") : std::string(),
                       tokens > 0 ? require_ptr(query, w, "query") : std::string(),
                       tokens > 0 ? require_ptr(key, w, "key") : std::string(),
                       require_ptr(cos_sin, w, "cos_sin"));
  }
};

}  // namespace taco::kernels
