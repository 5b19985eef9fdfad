// Each thread takes a contiguous range of four-row tiles and streams their blocks once; every x
// row is dotted with a tile while it sits in L1. Per block the kernels compute sum(code * x)
// per row and add d * that + m * sum(x): with AVX512-VNNI, x is rounded to int8 per block and
// the codes of the four rows meet it in two integer dot-product instructions; elsewhere the
// codes are widened to float.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC bug 105593, see cpu/vec_avx512.h
#pragma GCC diagnostic ignored "-Wuninitialized"        // the same, in _mm512_reduce_add_ps

#include "cpu/quant_linear.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "cpu/dispatch.h"
#include "cpu/half.h"
#include "cpu/parallel.h"

#ifdef __AVX512F__
#include <immintrin.h>

#include "cpu/vec_avx512.h"
#endif

namespace taco::cpu {
inline namespace TACO_CPU_NS {
namespace {

using kernels::kQuantBlock;
using kernels::kQuantTileRows;
using kernels::QuantType;
constexpr int64_t R = kQuantTileRows;

float half_at(const uint8_t* p) {
  fp16 h;
  std::memcpy(&h, p, sizeof(h));
  return static_cast<float>(h);
}

void put_half(uint8_t* p, float v) {
  const fp16 h(v);
  std::memcpy(p, &h, sizeof(h));
}

// x rows prepared once per call: float values and per-block sums, or (int8 path) codes, scales
// and scale * sum(codes).
struct PreparedX {
  std::vector<float> x, sum;
  std::vector<int8_t> q;
  std::vector<float> scale;
};

template <typename T>
PreparedX prepare(const QuantLinearParams& p, bool int8) {
  const int64_t nb = p.k / kQuantBlock;
  PreparedX px;
  px.x.resize(p.m * p.k);
  px.sum.resize(p.m * nb);
  for (int64_t i = 0; i < p.m; ++i) {
    const T* src = static_cast<const T*>(p.x) + i * p.x_stride;
    for (int64_t c = 0; c < p.k; ++c) px.x[i * p.k + c] = static_cast<float>(src[c]);
  }
  if (int8) {
    px.q.resize(p.m * p.k);
    px.scale.resize(p.m * nb);
  }
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* xb = px.x.data() + i * p.k + b * kQuantBlock;
      if (!int8) {
        float s = 0;
        for (int64_t c = 0; c < kQuantBlock; ++c) s += xb[c];
        px.sum[i * nb + b] = s;
        continue;
      }
      float amax = 0;
      for (int64_t c = 0; c < kQuantBlock; ++c) amax = std::max(amax, std::fabs(xb[c]));
      const float d = amax / 127.0f;
      const float inv = d > 0 ? 1.0f / d : 0.0f;
      int32_t s = 0;
      int8_t* q = px.q.data() + i * p.k + b * kQuantBlock;
      for (int64_t c = 0; c < kQuantBlock; ++c) {
        q[c] = static_cast<int8_t>(std::nearbyint(xb[c] * inv));
        s += q[c];
      }
      px.scale[i * nb + b] = d;
      px.sum[i * nb + b] = d * static_cast<float>(s);
    }
  }
  return px;
}

// Float path: out[r] for the tile's R rows = sum over blocks of d_r * sum(code * x) + m_r * sum(x).
template <int BITS>
void tile_float(const uint8_t* tile, int64_t nb, const float* x, const float* xsum, float* out) {
  constexpr int64_t code_bytes = R * kQuantBlock * BITS / 8;
  constexpr int64_t bytes = code_bytes + R * 4;
  float acc[R] = {}, off[R] = {};
  for (int64_t b = 0; b < nb; ++b, tile += bytes) {
    const float* xb = x + b * kQuantBlock;
    const uint8_t* dm = tile + code_bytes;
    for (int64_t r = 0; r < R; ++r) {
      const uint8_t* codes = tile + r * kQuantBlock * BITS / 8;
      float part;
#ifdef __AVX512F__
      __m512 v;
      if constexpr (BITS == 4) {
        const __m512i q =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes)));
        const __m512 lo = _mm512_cvtepi32_ps(_mm512_and_si512(q, _mm512_set1_epi32(15)));
        const __m512 hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(q, 4));
        v = _mm512_fmadd_ps(hi, _mm512_loadu_ps(xb + 16), _mm512_mul_ps(lo, _mm512_loadu_ps(xb)));
      } else {
        const __m128i* c = reinterpret_cast<const __m128i*>(codes);
        v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(c))),
                          _mm512_loadu_ps(xb));
        v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(c + 1))),
                            _mm512_loadu_ps(xb + 16), v);
      }
      part = _mm512_reduce_add_ps(v);
#else
      part = 0;
      if constexpr (BITS == 4) {
        for (int j = 0; j < 16; ++j) {
          part += static_cast<float>(codes[j] & 15) * xb[j] +
                  static_cast<float>(codes[j] >> 4) * xb[j + 16];
        }
      } else {
        for (int j = 0; j < kQuantBlock; ++j) part += static_cast<float>(codes[j]) * xb[j];
      }
#endif
      acc[r] += half_at(dm + 2 * r) * part;
      off[r] += half_at(dm + 2 * (R + r)) * xsum[b];
    }
  }
  for (int64_t r = 0; r < R; ++r) out[r] = acc[r] + off[r];
}

#if defined(__AVX512VNNI__) && defined(__AVX512F__)
constexpr bool kInt8 = true;

// Int8 path for 4-bit codes: per block one 64-byte line holds the four rows' 16 code bytes; its
// low nibbles (columns 0-15) and high nibbles (16-31) meet x's int8 codes, broadcast to the four
// 128-bit lanes, in two vpdpbusd: lane group r sums row r's products.
void tile_int8(const uint8_t* tile, int64_t nb, const int8_t* xq, const float* xscale,
               const float* xsum, float* out) {
  constexpr int64_t bytes = R * 16 + R * 4;
  const __m512i mask = _mm512_set1_epi8(15);
  const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  __m512 acc = _mm512_setzero_ps();
  __m128 off = _mm_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, tile += bytes) {
    const __m512i codes = _mm512_loadu_si512(tile);
    const __m512i lo = _mm512_and_si512(codes, mask);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(codes, 4), mask);
    const __m128i* xb = reinterpret_cast<const __m128i*>(xq + b * kQuantBlock);
    const __m512i xlo = _mm512_broadcast_i32x4(_mm_loadu_si128(xb));
    const __m512i xhi = _mm512_broadcast_i32x4(_mm_loadu_si128(xb + 1));
    __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xlo);
    dot = _mm512_dpbusd_epi32(dot, hi, xhi);
    const __m256 dm =
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tile + R * 16)));
    const __m128 d = _mm256_castps256_ps128(dm);
    const __m128 m = _mm256_extractf128_ps(dm, 1);
    const __m512 scale = _mm512_permutexvar_ps(
        spread, _mm512_castps128_ps512(_mm_mul_ps(d, _mm_set1_ps(xscale[b]))));
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc);
    off = _mm_fmadd_ps(m, _mm_set1_ps(xsum[b]), off);
  }
  // Row r: the four lanes 4r..4r+3 of acc, plus off[r].
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, acc);
  alignas(16) float offs[4];
  _mm_store_ps(offs, off);
  for (int64_t r = 0; r < R; ++r) {
    out[r] = lanes[4 * r] + lanes[4 * r + 1] + lanes[4 * r + 2] + lanes[4 * r + 3] + offs[r];
  }
}

// Int8 path for 8-bit codes (q + 128): per block two 64-byte lines hold rows 0-1 and 2-3 (32
// code bytes each); x's 32 int8 codes, broadcast to both halves, meet each line in one vpdpbusd,
// lanes 8r'..8r'+7 summing row r' of the line. m = -128 d cancels the +128 exactly.
void tile_int8_8bit(const uint8_t* tile, int64_t nb, const int8_t* xq, const float* xscale,
                    const float* xsum, float* out) {
  constexpr int64_t bytes = R * 32 + R * 4;
  const __m512i spread01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const __m512i spread23 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  __m512 acc01 = _mm512_setzero_ps(), acc23 = _mm512_setzero_ps();
  __m128 off = _mm_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, tile += bytes) {
    const __m512i x32 = _mm512_broadcast_i64x4(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + b * kQuantBlock)));
    const __m512i dot01 =
        _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(tile), x32);
    const __m512i dot23 =
        _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(tile + 64), x32);
    const __m256 dm =
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tile + R * 32)));
    const __m512 d =
        _mm512_castps128_ps512(_mm_mul_ps(_mm256_castps256_ps128(dm), _mm_set1_ps(xscale[b])));
    acc01 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot01), _mm512_permutexvar_ps(spread01, d), acc01);
    acc23 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot23), _mm512_permutexvar_ps(spread23, d), acc23);
    off = _mm_fmadd_ps(_mm256_extractf128_ps(dm, 1), _mm_set1_ps(xsum[b]), off);
  }
  alignas(64) float a[16], c[16];
  _mm512_store_ps(a, acc01);
  _mm512_store_ps(c, acc23);
  alignas(16) float offs[4];
  _mm_store_ps(offs, off);
  float rows[R] = {};
  for (int j = 0; j < 8; ++j) {
    rows[0] += a[j];
    rows[1] += a[8 + j];
    rows[2] += c[j];
    rows[3] += c[8 + j];
  }
  for (int64_t r = 0; r < R; ++r) out[r] = rows[r] + offs[r];
}
#else
constexpr bool kInt8 = false;
#endif

template <typename T>
void run(const QuantLinearParams& p) {
  const bool bits4 = kernels::quant_code_bits(p.wtype) == 4;
  const bool int8 = kInt8;
  const PreparedX px = prepare<T>(p, int8);
  const int64_t nb = p.k / kQuantBlock;
  const int64_t tiles = (p.n + R - 1) / R;
  const int64_t tile_bytes = nb * kernels::quant_tile_block_bytes(p.wtype);
  const auto* w = static_cast<const uint8_t*>(p.w);
  parallel_for(0, tiles, 4, [&](int64_t t0, int64_t t1) {
    float out[R];
    for (int64_t t = t0; t < t1; ++t) {
      const uint8_t* tile = w + t * tile_bytes;
      const int64_t rows = std::min(R, p.n - t * R);
      for (int64_t i = 0; i < p.m; ++i) {
        const float* xsum = px.sum.data() + i * nb;
#if defined(__AVX512VNNI__) && defined(__AVX512F__)
        if (int8 && bits4) {
          tile_int8(tile, nb, px.q.data() + i * p.k, px.scale.data() + i * nb, xsum, out);
        } else if (int8) {
          tile_int8_8bit(tile, nb, px.q.data() + i * p.k, px.scale.data() + i * nb, xsum, out);
        } else
#endif
            if (bits4) {
          tile_float<4>(tile, nb, px.x.data() + i * p.k, xsum, out);
        } else {
          tile_float<8>(tile, nb, px.x.data() + i * p.k, xsum, out);
        }
        T* dst = static_cast<T*>(p.out) + i * p.out_stride + t * R;
        for (int64_t r = 0; r < rows; ++r) dst[r] = T(out[r]);
      }
    }
  });
}

}  // namespace

void pack_quant_weight(QuantType t, const void* raw, void* packed, int64_t n, int64_t k) {
  if (n <= 0 || k <= 0 || k % kQuantBlock != 0) {
    throw std::invalid_argument("pack_quant_weight: n must be > 0 and k a positive multiple of 32");
  }
  const int64_t nb = k / kQuantBlock;
  const int64_t raw_bytes = kernels::quant_block_bytes(t);
  const int64_t code_bytes = kQuantBlock * kernels::quant_code_bits(t) / 8;
  const int64_t tb = kernels::quant_tile_block_bytes(t);
  const auto* src = static_cast<const uint8_t*>(raw);
  auto* dst = static_cast<uint8_t*>(packed);
  const int64_t tiles = (n + R - 1) / R;
  parallel_for(0, tiles, 16, [&](int64_t t0, int64_t t1) {
    for (int64_t tile = t0; tile < t1; ++tile) {
      for (int64_t b = 0; b < nb; ++b) {
        uint8_t* out = dst + (tile * nb + b) * tb;
        std::memset(out, 0, tb);
        for (int64_t r = 0; r < R; ++r) {
          const int64_t row = tile * R + r;
          if (row >= n) continue;
          const uint8_t* blk = src + (row * nb + b) * raw_bytes;
          const float d = half_at(blk);
          uint8_t* codes = out + r * code_bytes;
          float m = 0;
          if (t == QuantType::kQ8_0) {
            for (int64_t j = 0; j < kQuantBlock; ++j) {
              codes[j] =
                  static_cast<uint8_t>(static_cast<int>(static_cast<int8_t>(blk[2 + j])) + 128);
            }
            m = -128.0f * d;
          } else if (t == QuantType::kQ4_0) {
            std::memcpy(codes, blk + 2, 16);
            m = -8.0f * d;
          } else {
            std::memcpy(codes, blk + 4, 16);
            m = half_at(blk + 2);
          }
          put_half(out + R * code_bytes + 2 * r, d);
          put_half(out + R * code_bytes + 2 * (R + r), m);
        }
      }
    }
  });
}

void dequantize_quant(QuantType t, const void* raw, float* out, int64_t n, int64_t k) {
  if (n < 0 || k <= 0 || k % kQuantBlock != 0) {
    throw std::invalid_argument("dequantize_quant: n must be >= 0 and k a positive multiple of 32");
  }
  const int64_t blocks = n * (k / kQuantBlock);
  const int64_t raw_bytes = kernels::quant_block_bytes(t);
  const auto* src = static_cast<const uint8_t*>(raw);
  parallel_for(0, blocks, 256, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const uint8_t* blk = src + b * raw_bytes;
      float* dst = out + b * kQuantBlock;
      const float d = half_at(blk);
      if (t == QuantType::kQ8_0) {
        for (int64_t j = 0; j < kQuantBlock; ++j) {
          dst[j] = d * static_cast<float>(static_cast<int8_t>(blk[2 + j]));
        }
        continue;
      }
      const bool q40 = t == QuantType::kQ4_0;
      const uint8_t* qs = blk + (q40 ? 2 : 4);
      const float m = q40 ? -8.0f * d : half_at(blk + 2);
      for (int64_t j = 0; j < 16; ++j) {
        dst[j] = d * static_cast<float>(qs[j] & 15) + m;
        dst[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
      }
    }
  });
}

namespace {

template <typename T>
void unpack(QuantType t, const uint8_t* packed, T* out, int64_t n, int64_t k) {
  const int64_t nb = k / kQuantBlock;
  const int64_t tb = kernels::quant_tile_block_bytes(t);
  const bool bits4 = kernels::quant_code_bits(t) == 4;
  const int64_t code_bytes = kQuantBlock * kernels::quant_code_bits(t) / 8;
  parallel_for(0, (n + R - 1) / R, 4, [&](int64_t t0, int64_t t1) {
    for (int64_t tile = t0; tile < t1; ++tile) {
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* blk = packed + (tile * nb + b) * tb;
        for (int64_t r = 0; r < R && tile * R + r < n; ++r) {
          const uint8_t* codes = blk + r * code_bytes;
          const float d = half_at(blk + R * code_bytes + 2 * r);
          const float m = half_at(blk + R * code_bytes + 2 * (R + r));
          T* dst = out + (tile * R + r) * k + b * kQuantBlock;
#ifdef __AVX512F__
          const __m512 dv = _mm512_set1_ps(d), mv = _mm512_set1_ps(m);
          auto put = [&](T* p, __m512i q) {
            avx512::store16(p, _mm512_fmadd_ps(_mm512_cvtepi32_ps(q), dv, mv));
          };
          if (bits4) {
            const __m512i q =
                _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes)));
            put(dst, _mm512_and_si512(q, _mm512_set1_epi32(15)));
            put(dst + 16, _mm512_srli_epi32(q, 4));
          } else {
            const __m128i* c = reinterpret_cast<const __m128i*>(codes);
            put(dst, _mm512_cvtepu8_epi32(_mm_loadu_si128(c)));
            put(dst + 16, _mm512_cvtepu8_epi32(_mm_loadu_si128(c + 1)));
          }
          continue;
#endif
          if (bits4) {
            for (int64_t j = 0; j < 16; ++j) {
              dst[j] = T(d * static_cast<float>(codes[j] & 15) + m);
              dst[j + 16] = T(d * static_cast<float>(codes[j] >> 4) + m);
            }
          } else {
            for (int64_t j = 0; j < kQuantBlock; ++j)
              dst[j] = T(d * static_cast<float>(codes[j]) + m);
          }
        }
      }
    }
  });
}

}  // namespace

void unpack_quant_weight(QuantType t, const void* packed, void* out, bool bf16_out, int64_t n,
                         int64_t k) {
  if (n <= 0 || k <= 0 || k % kQuantBlock != 0) {
    throw std::invalid_argument(
        "unpack_quant_weight: n must be > 0 and k a positive multiple of 32");
  }
  const auto* src = static_cast<const uint8_t*>(packed);
  if (bf16_out) return unpack(t, src, static_cast<bf16*>(out), n, k);
  unpack(t, src, static_cast<float*>(out), n, k);
}

void quant_linear(const QuantLinearParams& p) {
  throw_if(p.check(), "quant_linear");
  if (p.m == 0) return;
  if (p.dtype == kernels::DType::kFloat32) return run<float>(p);
  run<bf16>(p);
}

bool quant_linear_int8(QuantType) { return kInt8; }

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
