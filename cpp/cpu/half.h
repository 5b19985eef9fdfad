// The 16-bit model dtypes of the CPU kernels as plain types: storage-compatible with any other
// bf16 / IEEE half buffer (a uint16 each), so the kernels need no framework header. Conversions
// from float round to nearest even; a NaN becomes a quiet NaN.
#pragma once

#include "cpu/isa.h"

#include <cstdint>
#include <cstring>

namespace taco::cpu {
inline namespace TACO_CPU_NS {

struct bf16 {
  uint16_t bits = 0;

  bf16() = default;
  bf16(float f) : bits(round(f)) {}  // NOLINT(google-explicit-constructor): numeric type
  operator float() const {           // NOLINT(google-explicit-constructor)
    const uint32_t u = static_cast<uint32_t>(bits) << 16;
    float f;
    std::memcpy(&f, &u, sizeof(f));
    return f;
  }

  static uint16_t round(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof(u));
    if (f != f) return 0x7FC0;
    return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
  }
};

struct fp16 {
  _Float16 value = 0;

  fp16() = default;
  fp16(float f) : value(static_cast<_Float16>(f)) {}  // NOLINT(google-explicit-constructor)
  operator float() const { return static_cast<float>(value); }  // NOLINT
};

static_assert(sizeof(bf16) == 2 && sizeof(fp16) == 2, "16-bit dtypes must be 2 bytes");

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
