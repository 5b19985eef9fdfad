// The splitmix64 finalizer: a cheap, well mixed 64-bit hash step, used for prefix-cache block
// hashes, the counter-based uniforms of seeded sampling and the test executors' token scripts.
#pragma once

#include <cstdint>

namespace taco {

inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace taco
