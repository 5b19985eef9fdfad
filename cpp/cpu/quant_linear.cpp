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
#include <string>
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

// ---- Stored blocks ----

// One 32-value block of a stored row, decoded: w[j] = d[j / 16] * code[j] + m[j / 16]; for the
// symmetric types also w[j] = d[j / 16] * (code[j] - zero), the form llama.cpp dequantizes with.
struct Block32 {
  uint8_t code[32];
  float d[2];
  float m[2];
  int zero = -1;  // -1: not symmetric
};

// llama.cpp's 6-bit scale and min of sub-block j from a K-quant's 12 packed bytes.
void scale_min_k4(int j, const uint8_t* q, int* sc, int* mn) {
  if (j < 4) {
    *sc = q[j] & 63;
    *mn = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Block b (of 32 values) of a stored row.
void decode_block(QuantType t, const uint8_t* row, int64_t b, Block32& o) {
  o.zero = -1;
  if (kernels::quant_zero_point(t)) {
    const uint8_t* blk = row + b * kernels::quant_block_bytes(t);
    const float d = half_at(blk), z = half_at(blk + 2);
    o.d[0] = o.d[1] = d;
    o.zero = static_cast<int>(z);
    o.m[0] = o.m[1] = -z * d;
    if (t == QuantType::kQ8_Z) {
      std::memcpy(o.code, blk + 4, 32);
    } else {
      for (int j = 0; j < 16; ++j) {
        o.code[j] = blk[4 + j] & 15;
        o.code[j + 16] = blk[4 + j] >> 4;
      }
    }
    return;
  }
  if (!kernels::quant_is_k(t)) {
    const uint8_t* blk = row + b * kernels::quant_block_bytes(t);
    const float d = half_at(blk);
    o.d[0] = o.d[1] = d;
    if (t == QuantType::kQ8_0) {
      for (int j = 0; j < 32; ++j)
        o.code[j] = static_cast<uint8_t>(static_cast<int8_t>(blk[2 + j]) + 128);
      o.m[0] = o.m[1] = -128.0f * d;
      o.zero = 128;
      return;
    }
    const bool has_m = t == QuantType::kQ4_1 || t == QuantType::kQ5_1;
    const bool five = t == QuantType::kQ5_0 || t == QuantType::kQ5_1;
    const uint8_t* qs = blk + (has_m ? 4 : 2) + (five ? 4 : 0);
    uint32_t qh = 0;
    if (five) std::memcpy(&qh, blk + (has_m ? 4 : 2), 4);
    for (int j = 0; j < 16; ++j) {
      o.code[j] = static_cast<uint8_t>((qs[j] & 15) | (((qh >> j) & 1) << 4));
      o.code[j + 16] = static_cast<uint8_t>((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
    }
    if (has_m) {
      o.m[0] = o.m[1] = half_at(blk + 2);
    } else {
      o.zero = five ? 16 : 8;
      o.m[0] = o.m[1] = -static_cast<float>(o.zero) * d;
    }
    return;
  }
  const uint8_t* sb = row + (b / 8) * kernels::quant_block_bytes(t);
  const int sub = static_cast<int>(b % 8);
  if (t == QuantType::kQ6_K) {
    const uint8_t* ql = sb + (sub / 4) * 64;
    const uint8_t* qh = sb + 128 + (sub / 4) * 32;
    const auto* sc = reinterpret_cast<const int8_t*>(sb + 192) + (sub / 4) * 8;
    const float d = half_at(sb + 208);
    const int quarter = sub % 4;
    for (int l = 0; l < 32; ++l) {
      const uint8_t lo = quarter % 2 == 0 ? ql[l] : ql[l + 32];
      const int nib = quarter < 2 ? (lo & 0xF) : (lo >> 4);
      o.code[l] = static_cast<uint8_t>(nib | (((qh[l] >> (2 * quarter)) & 3) << 4));
    }
    for (int h = 0; h < 2; ++h) {
      o.d[h] = d * static_cast<float>(sc[2 * quarter + h]);
      o.m[h] = -32.0f * o.d[h];
    }
    o.zero = 32;
    return;
  }
  // Q4_K, Q5_K: d, dmin, scales[12], (Q5_K: qh[32]), qs[128].
  const float d = half_at(sb), dmin = half_at(sb + 2);
  int sc = 0, mn = 0;
  scale_min_k4(sub, sb + 4, &sc, &mn);
  o.d[0] = o.d[1] = d * static_cast<float>(sc);
  o.m[0] = o.m[1] = -(dmin * static_cast<float>(mn));
  const bool five = t == QuantType::kQ5_K;
  const uint8_t* qh = sb + 16;
  const uint8_t* qs = sb + (five ? 48 : 16) + (sub / 2) * 32;
  for (int l = 0; l < 32; ++l) {
    int q = sub % 2 == 0 ? (qs[l] & 0xF) : (qs[l] >> 4);
    if (five) q += ((qh[l] >> sub) & 1) << 4;
    o.code[l] = static_cast<uint8_t>(q);
  }
}

// ---- x prepared once per call ----

// Float values and sums per block (and per 16 values when the weight has two scale groups), or
// (int8 path) codes, scales and scale * sum(codes).
struct PreparedX {
  std::vector<float> x, sum, sum16;
  std::vector<int8_t> q;
  std::vector<float> scale;
};

template <typename T>
PreparedX prepare(const QuantLinearParams& p, bool int8, bool halves) {
  const int64_t nb = p.k / kQuantBlock;
  PreparedX px;
  px.x.resize(p.m * p.k);
  px.sum.resize(p.m * nb);
  if (halves) px.sum16.resize(p.m * nb * 2);
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
      float half_sum[2] = {0, 0};
      if (!int8) {
        for (int64_t c = 0; c < kQuantBlock; ++c) half_sum[c / 16] += xb[c];
      } else {
        float amax = 0;
        for (int64_t c = 0; c < kQuantBlock; ++c) amax = std::max(amax, std::fabs(xb[c]));
        const float d = amax / 127.0f;
        const float inv = d > 0 ? 1.0f / d : 0.0f;
        int32_t s[2] = {0, 0};
        int8_t* q = px.q.data() + i * p.k + b * kQuantBlock;
        for (int64_t c = 0; c < kQuantBlock; ++c) {
          q[c] = static_cast<int8_t>(std::nearbyint(xb[c] * inv));
          s[c / 16] += q[c];
        }
        px.scale[i * nb + b] = d;
        half_sum[0] = d * static_cast<float>(s[0]);
        half_sum[1] = d * static_cast<float>(s[1]);
      }
      px.sum[i * nb + b] = half_sum[0] + half_sum[1];
      if (halves) {
        px.sum16[(i * nb + b) * 2] = half_sum[0];
        px.sum16[(i * nb + b) * 2 + 1] = half_sum[1];
      }
    }
  }
  return px;
}

// ---- Kernels ----

// Float path: out[r] for the tile's R rows = sum over blocks (and groups) of
// d * sum(code * x) + m * sum(x). xsum: per block (G = 1) or per 16 values (G = 2).
template <int BITS, int G, bool ZP>
void tile_float(const uint8_t* tile, int64_t nb, const float* x, const float* xsum, float* out) {
  constexpr int64_t code_bytes = R * kQuantBlock * BITS / 8;
  constexpr int64_t bytes = code_bytes + R * G * 4;
  float acc[R] = {}, off[R] = {};
  for (int64_t b = 0; b < nb; ++b, tile += bytes) {
    const float* xb = x + b * kQuantBlock;
    const uint8_t* dm = tile + code_bytes;
    for (int64_t r = 0; r < R; ++r) {
      const uint8_t* codes = tile + r * kQuantBlock * BITS / 8;
      float part[2];
#ifdef __AVX512F__
      __m512 lo, hi;
      if constexpr (BITS == 4) {
        const __m512i q =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes)));
        lo = _mm512_cvtepi32_ps(_mm512_and_si512(q, _mm512_set1_epi32(15)));
        hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(q, 4));
      } else {
        const __m128i* c = reinterpret_cast<const __m128i*>(codes);
        lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(c)));
        hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(c + 1)));
      }
      if constexpr (G == 1) {
        part[0] = _mm512_reduce_add_ps(
            _mm512_fmadd_ps(hi, _mm512_loadu_ps(xb + 16), _mm512_mul_ps(lo, _mm512_loadu_ps(xb))));
      } else {
        part[0] = _mm512_reduce_add_ps(_mm512_mul_ps(lo, _mm512_loadu_ps(xb)));
        part[1] = _mm512_reduce_add_ps(_mm512_mul_ps(hi, _mm512_loadu_ps(xb + 16)));
      }
#else
      part[0] = part[1] = 0;
      for (int j = 0; j < 16; ++j) {
        const int c_lo = BITS == 4 ? codes[j] & 15 : codes[j];
        const int c_hi = BITS == 4 ? codes[j] >> 4 : codes[j + 16];
        part[0] += static_cast<float>(c_lo) * xb[j];
        part[G - 1] += static_cast<float>(c_hi) * xb[j + 16];
      }
#endif
      for (int h = 0; h < G; ++h) {
        const float d = half_at(dm + 2 * (G * r + h));
        const float m = half_at(dm + 2 * (G * R + G * r + h));
        acc[r] += d * part[h];
        off[r] += (ZP ? -m * d : m) * xsum[b * G + h];
      }
    }
  }
  for (int64_t r = 0; r < R; ++r) out[r] = acc[r] + off[r];
}

#if defined(__AVX512VNNI__) && defined(__AVX512F__)
constexpr bool kInt8 = true;

// Software prefetch of the weight stream a few KiB ahead of the block being read (bytes: one
// tile block): on its own the hardware prefetcher leaves the kernels waiting on memory.
constexpr int64_t kPrefetch = 4096;
inline void prefetch_ahead(const uint8_t* tile, int64_t bytes) {
  for (int64_t o = 0; o < bytes; o += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(tile + kPrefetch + o), _MM_HINT_T0);
  }
}

// Int8 path for 4-bit codes: per block one 64-byte line holds the four rows' 16 code bytes; its
// low nibbles (columns 0-15) and high nibbles (16-31) meet x's int8 codes, broadcast to the four
// 128-bit lanes, in two vpdpbusd: lane group r sums row r's products.
template <bool ZP>
void tile_int8(const uint8_t* tile, int64_t nb, const int8_t* xq, const float* xscale,
               const float* xsum, float* out) {
  constexpr int64_t bytes = R * 16 + R * 4;
  const __m512i mask = _mm512_set1_epi8(15);
  const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  __m512 acc = _mm512_setzero_ps();
  __m128 off = _mm_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, tile += bytes) {
    prefetch_ahead(tile, bytes);
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
    __m128 m = _mm256_extractf128_ps(dm, 1);
    if constexpr (ZP) m = _mm_mul_ps(_mm_sub_ps(_mm_setzero_ps(), m), d);  // -z d
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

// The same for M rows of x at once (M <= 4: verification steps of speculative decoding, small
// batches): each block's codes and scales are unpacked once and meet every row's codes. Row i's
// arithmetic is tile_int8's, in the same order: the results are bit-identical.
template <bool ZP, int M>
void tile_int8_rows(const uint8_t* tile, int64_t nb, const int8_t* xq, int64_t k,
                    const float* xscale, const float* xsum, float (*out)[R]) {
  constexpr int64_t bytes = R * 16 + R * 4;
  const __m512i mask = _mm512_set1_epi8(15);
  const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  __m512 acc[M];
  __m128 off[M];
#pragma GCC unroll 4
  for (int i = 0; i < M; ++i) {
    acc[i] = _mm512_setzero_ps();
    off[i] = _mm_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b, tile += bytes) {
    prefetch_ahead(tile, bytes);
    const __m512i codes = _mm512_loadu_si512(tile);
    const __m512i lo = _mm512_and_si512(codes, mask);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(codes, 4), mask);
    const __m256 dm =
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tile + R * 16)));
    const __m128 d = _mm256_castps256_ps128(dm);
    __m128 m = _mm256_extractf128_ps(dm, 1);
    if constexpr (ZP) m = _mm_mul_ps(_mm_sub_ps(_mm_setzero_ps(), m), d);  // -z d
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i) {
      const __m128i* xb = reinterpret_cast<const __m128i*>(xq + i * k + b * kQuantBlock);
      const __m512i xlo = _mm512_broadcast_i32x4(_mm_loadu_si128(xb));
      const __m512i xhi = _mm512_broadcast_i32x4(_mm_loadu_si128(xb + 1));
      __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xlo);
      dot = _mm512_dpbusd_epi32(dot, hi, xhi);
      const __m512 scale = _mm512_permutexvar_ps(
          spread, _mm512_castps128_ps512(_mm_mul_ps(d, _mm_set1_ps(xscale[i * nb + b]))));
      acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc[i]);
      off[i] = _mm_fmadd_ps(m, _mm_set1_ps(xsum[i * nb + b]), off[i]);
    }
  }
  for (int i = 0; i < M; ++i) {
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, acc[i]);
    alignas(16) float offs[4];
    _mm_store_ps(offs, off[i]);
    for (int64_t r = 0; r < R; ++r) {
      out[i][r] = lanes[4 * r] + lanes[4 * r + 1] + lanes[4 * r + 2] + lanes[4 * r + 3] + offs[r];
    }
  }
}

template <bool ZP>
void tile_int8_rows(int rows, const uint8_t* tile, int64_t nb, const int8_t* xq, int64_t k,
                    const float* xscale, const float* xsum, float (*out)[R]) {
  if (rows == 4) {
    tile_int8_rows<ZP, 4>(tile, nb, xq, k, xscale, xsum, out);
  } else if (rows == 3) {
    tile_int8_rows<ZP, 3>(tile, nb, xq, k, xscale, xsum, out);
  } else {
    tile_int8_rows<ZP, 2>(tile, nb, xq, k, xscale, xsum, out);
  }
}

// Int8 path for 8-bit codes: per block two 64-byte lines hold rows 0-1 and 2-3 (32 code bytes
// each); x's 32 int8 codes, broadcast to both halves, meet each line in one vpdpbusd, lanes
// 8r'..8r'+7 summing row r' of the line (the first four lanes its columns 0-15, the next four
// 16-31). The offsets m (Q8_0: -128 d, cancelling the +128 exactly) meet x's sums. With two
// scale groups (G = 2) each four-lane half takes its own d and m.
template <int G, bool ZP>
void tile_int8_8bit(const uint8_t* tile, int64_t nb, const int8_t* xq, const float* xscale,
                    const float* xsum, float* out) {
  constexpr int64_t bytes = R * 32 + R * G * 4;
  const __m512i spread01 = G == 1
                               ? _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)
                               : _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const __m512i spread23 = G == 1
                               ? _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)
                               : _mm512_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7);
  __m512 acc01 = _mm512_setzero_ps(), acc23 = _mm512_setzero_ps();
  __m256 off = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, tile += bytes) {
    prefetch_ahead(tile, bytes);
    const __m512i x32 = _mm512_broadcast_i64x4(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + b * kQuantBlock)));
    const __m512i dot01 =
        _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(tile), x32);
    const __m512i dot23 =
        _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(tile + 64), x32);
    __m256 d, m, s;
    if constexpr (G == 1) {
      const __m256 dm =
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tile + R * 32)));
      d = _mm256_castps128_ps256(_mm256_castps256_ps128(dm));
      m = _mm256_castps128_ps256(_mm256_extractf128_ps(dm, 1));
      if constexpr (ZP) m = _mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), m), d);  // -z d
      s = _mm256_set1_ps(xsum[b]);
    } else {
      const __m128i* dm = reinterpret_cast<const __m128i*>(tile + R * 32);
      d = _mm256_cvtph_ps(_mm_loadu_si128(dm));
      m = _mm256_cvtph_ps(_mm_loadu_si128(dm + 1));
      // (sum of columns 0-15, sum of 16-31), once per row.
      s = _mm256_castpd_ps(_mm256_broadcast_sd(reinterpret_cast<const double*>(xsum + 2 * b)));
    }
    const __m512 dx = _mm512_castps256_ps512(_mm256_mul_ps(d, _mm256_set1_ps(xscale[b])));
    acc01 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot01), _mm512_permutexvar_ps(spread01, dx), acc01);
    acc23 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot23), _mm512_permutexvar_ps(spread23, dx), acc23);
    off = _mm256_fmadd_ps(m, s, off);
  }
  alignas(64) float a[16], c[16];
  _mm512_store_ps(a, acc01);
  _mm512_store_ps(c, acc23);
  alignas(32) float offs[8];
  _mm256_store_ps(offs, off);
  float rows[R] = {};
  for (int j = 0; j < 8; ++j) {
    rows[0] += a[j];
    rows[1] += a[8 + j];
    rows[2] += c[j];
    rows[3] += c[8 + j];
  }
  for (int64_t r = 0; r < R; ++r) {
    out[r] = rows[r] + (G == 1 ? offs[r] : offs[2 * r] + offs[2 * r + 1]);
  }
}
#else
constexpr bool kInt8 = false;
#endif

template <typename T>
void run(const QuantLinearParams& p) {
  const bool bits4 = kernels::quant_code_bits(p.wtype) == 4;
  const bool halves = kernels::quant_groups(p.wtype) == 2;
  const bool zp = kernels::quant_zero_point(p.wtype);
  const bool int8 = kInt8;
  const PreparedX px = prepare<T>(p, int8, halves);
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
        const float* xsum = halves ? px.sum16.data() + i * nb * 2 : px.sum.data() + i * nb;
#if defined(__AVX512VNNI__) && defined(__AVX512F__)
        if (int8 && bits4 && p.m - i >= 2) {
          // Up to four rows share each block's unpacked codes.
          const int group = static_cast<int>(std::min<int64_t>(4, p.m - i));
          float outs[4][R];
          const int8_t* xq = px.q.data() + i * p.k;
          const float* xs = px.scale.data() + i * nb;
          if (zp) {
            tile_int8_rows<true>(group, tile, nb, xq, p.k, xs, xsum, outs);
          } else {
            tile_int8_rows<false>(group, tile, nb, xq, p.k, xs, xsum, outs);
          }
          for (int g = 0; g < group; ++g) {
            T* dst = static_cast<T*>(p.out) + (i + g) * p.out_stride + t * R;
            for (int64_t r = 0; r < rows; ++r) dst[r] = T(outs[g][r]);
          }
          i += group - 1;
          continue;
        }
        if (int8) {
          const int8_t* xq = px.q.data() + i * p.k;
          const float* xs = px.scale.data() + i * nb;
          if (bits4 && zp) {
            tile_int8<true>(tile, nb, xq, xs, xsum, out);
          } else if (bits4) {
            tile_int8<false>(tile, nb, xq, xs, xsum, out);
          } else if (halves) {
            tile_int8_8bit<2, false>(tile, nb, xq, xs, xsum, out);
          } else if (zp) {
            tile_int8_8bit<1, true>(tile, nb, xq, xs, xsum, out);
          } else {
            tile_int8_8bit<1, false>(tile, nb, xq, xs, xsum, out);
          }
        } else
#endif
        {
          const float* x = px.x.data() + i * p.k;
          if (bits4 && zp) {
            tile_float<4, 1, true>(tile, nb, x, xsum, out);
          } else if (bits4) {
            tile_float<4, 1, false>(tile, nb, x, xsum, out);
          } else if (halves) {
            tile_float<8, 2, false>(tile, nb, x, xsum, out);
          } else if (zp) {
            tile_float<8, 1, true>(tile, nb, x, xsum, out);
          } else {
            tile_float<8, 1, false>(tile, nb, x, xsum, out);
          }
        }
        T* dst = static_cast<T*>(p.out) + i * p.out_stride + t * R;
        for (int64_t r = 0; r < rows; ++r) dst[r] = T(out[r]);
      }
    }
  });
}

void check_shape(const char* what, QuantType t, int64_t n, int64_t k, bool allow_empty) {
  if (n < (allow_empty ? 0 : 1) || k <= 0 || k % kernels::quant_block_values(t) != 0) {
    throw std::invalid_argument(std::string(what) + ": n must be " +
                                (allow_empty ? ">= 0" : "> 0") + " and k a positive multiple of " +
                                std::to_string(kernels::quant_block_values(t)) + " for " +
                                kernels::quant_type_name(t));
  }
}

template <typename T>
void unpack(QuantType t, const uint8_t* packed, T* out, int64_t n, int64_t k) {
  const int64_t nb = k / kQuantBlock;
  const int64_t tb = kernels::quant_tile_block_bytes(t);
  const bool bits4 = kernels::quant_code_bits(t) == 4;
  const int64_t G = kernels::quant_groups(t);
  const bool zp = kernels::quant_zero_point(t);
  const int64_t code_bytes = kQuantBlock * kernels::quant_code_bits(t) / 8;
  parallel_for(0, (n + R - 1) / R, 4, [&](int64_t t0, int64_t t1) {
    for (int64_t tile = t0; tile < t1; ++tile) {
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* blk = packed + (tile * nb + b) * tb;
        for (int64_t r = 0; r < R && tile * R + r < n; ++r) {
          const uint8_t* codes = blk + r * code_bytes;
          const uint8_t* dm = blk + R * code_bytes;
          float d[2], m[2];
          for (int64_t h = 0; h < 2; ++h) {
            d[h] = half_at(dm + 2 * (G * r + h % G));
            m[h] = half_at(dm + 2 * (G * R + G * r + h % G));
            if (zp) m[h] = -m[h] * d[h];
          }
          T* dst = out + (tile * R + r) * k + b * kQuantBlock;
#ifdef __AVX512F__
          auto put = [&](T* p, __m512i q, int h) {
            avx512::store16(p, _mm512_fmadd_ps(_mm512_cvtepi32_ps(q), _mm512_set1_ps(d[h]),
                                               _mm512_set1_ps(m[h])));
          };
          if (bits4) {
            const __m512i q =
                _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes)));
            put(dst, _mm512_and_si512(q, _mm512_set1_epi32(15)), 0);
            put(dst + 16, _mm512_srli_epi32(q, 4), 1);
          } else {
            const __m128i* c = reinterpret_cast<const __m128i*>(codes);
            put(dst, _mm512_cvtepu8_epi32(_mm_loadu_si128(c)), 0);
            put(dst + 16, _mm512_cvtepu8_epi32(_mm_loadu_si128(c + 1)), 1);
          }
          continue;
#endif
          for (int64_t j = 0; j < 16; ++j) {
            const int c_lo = bits4 ? codes[j] & 15 : codes[j];
            const int c_hi = bits4 ? codes[j] >> 4 : codes[j + 16];
            dst[j] = T(d[0] * static_cast<float>(c_lo) + m[0]);
            dst[j + 16] = T(d[1] * static_cast<float>(c_hi) + m[1]);
          }
        }
      }
    }
  });
}

}  // namespace

void pack_quant_weight(QuantType t, QuantType layout, const void* raw, void* packed, int64_t n,
                       int64_t k) {
  check_shape("pack_quant_weight", t, n, k, false);
  if (!kernels::quant_can_share(t, layout) || kernels::quant_common_layout(t, layout) != layout) {
    throw std::invalid_argument(std::string("pack_quant_weight: ") + kernels::quant_type_name(t) +
                                " does not fit the layout of " + kernels::quant_type_name(layout));
  }
  const int64_t nb = k / kQuantBlock;
  const int64_t row_bytes = kernels::quant_row_bytes(t, k);
  const bool bits4 = kernels::quant_code_bits(layout) == 4;
  const int64_t G = kernels::quant_groups(layout);
  const bool zp = kernels::quant_zero_point(layout);
  const int64_t code_bytes = kQuantBlock * kernels::quant_code_bits(layout) / 8;
  const int64_t tb = kernels::quant_tile_block_bytes(layout);
  const auto* src = static_cast<const uint8_t*>(raw);
  auto* dst = static_cast<uint8_t*>(packed);
  parallel_for(0, (n + R - 1) / R, 16, [&](int64_t t0, int64_t t1) {
    Block32 blk;
    for (int64_t tile = t0; tile < t1; ++tile) {
      for (int64_t b = 0; b < nb; ++b) {
        uint8_t* out = dst + (tile * nb + b) * tb;
        std::memset(out, 0, tb);
        for (int64_t r = 0; r < R; ++r) {
          const int64_t row = tile * R + r;
          if (row >= n) continue;
          decode_block(t, src + row * row_bytes, b, blk);
          uint8_t* codes = out + r * code_bytes;
          if (bits4) {
            for (int j = 0; j < 16; ++j) {
              codes[j] = static_cast<uint8_t>(blk.code[j] | (blk.code[j + 16] << 4));
            }
          } else {
            std::memcpy(codes, blk.code, 32);
          }
          for (int64_t h = 0; h < G; ++h) {
            put_half(out + R * code_bytes + 2 * (G * r + h), blk.d[h]);
            put_half(out + R * code_bytes + 2 * (G * R + G * r + h),
                     zp ? static_cast<float>(blk.zero) : blk.m[h]);
          }
        }
      }
    }
  });
}

void dequantize_quant(QuantType t, const void* raw, float* out, int64_t n, int64_t k) {
  check_shape("dequantize_quant", t, n, k, true);
  const int64_t nb = k / kQuantBlock;
  const int64_t row_bytes = kernels::quant_row_bytes(t, k);
  const auto* src = static_cast<const uint8_t*>(raw);
  parallel_for(0, n * nb, 256, [&](int64_t b0, int64_t b1) {
    Block32 blk;
    for (int64_t i = b0; i < b1; ++i) {
      const int64_t row = i / nb, b = i % nb;
      decode_block(t, src + row * row_bytes, b, blk);
      float* dst = out + row * k + b * kQuantBlock;
      for (int j = 0; j < 32; ++j) {
        const int h = j / 16;
        dst[j] = blk.zero >= 0 ? blk.d[h] * static_cast<float>(blk.code[j] - blk.zero)
                               : blk.d[h] * static_cast<float>(blk.code[j]) + blk.m[h];
      }
    }
  });
}

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
