// cpu::quant_linear against a double-precision reference over the dequantized weight (and, where
// the level rounds x to int8 per block, over x rounded the same way). The test quantizes random
// weights round-to-nearest into the GGUF block layouts itself (the layouts were checked against
// the gguf library's quantize / dequantize) and packs them with cpu::pack_quant_weight.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/half.h"
#include "cpu/quant_linear.h"

namespace taco {
namespace {

using kernels::DType;
using kernels::QuantType;

uint16_t half_bits(float v) {
  cpu::fp16 h(v);
  uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
}

float half_value(float v) { return static_cast<float>(cpu::fp16(v)); }

// Blocks of random codes and scales (small positive fp16 d, and dmin or m), with the values they
// stand for (dequantize_quant, itself checked against the gguf package's dequantization by the
// Python GGUF tests): the types this test has no quantizer for.
std::vector<uint8_t> random_blocks(QuantType t, int64_t n, int64_t k, std::vector<double>* deq) {
  const int64_t bytes = kernels::quant_block_bytes(t);
  std::vector<uint8_t> out(n * kernels::quant_row_bytes(t, k));
  std::mt19937 rng(5);
  for (uint8_t& b : out) b = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> scale(0.0005f, 0.002f);
  for (size_t off = 0; off < out.size(); off += bytes) {
    const uint16_t d = half_bits(scale(rng)), dmin = half_bits(scale(rng));
    if (t == QuantType::kQ6_K) {
      std::memcpy(&out[off + 208], &d, 2);
    } else if (kernels::quant_zero_point(t)) {
      // The zero point is an integer code: 0-15 for 4-bit codes, 0-255 for 8-bit.
      const int top = kernels::quant_code_bits(t) == 4 ? 15 : 255;
      const uint16_t z = half_bits(static_cast<float>(rng() % (top + 1)));
      std::memcpy(&out[off], &d, 2);
      std::memcpy(&out[off + 2], &z, 2);
    } else {
      std::memcpy(&out[off], &d, 2);
      std::memcpy(&out[off + 2], &dmin, 2);
    }
  }
  std::vector<float> f(n * k);
  cpu::dequantize_quant(t, out.data(), f.data(), n, k);
  deq->assign(f.begin(), f.end());
  return out;
}

// Quantizes w [n, k] into blocks and returns them with the dequantized weight they stand for.
std::vector<uint8_t> quantize(QuantType t, const std::vector<float>& w, int64_t n, int64_t k,
                              std::vector<double>* deq) {
  if (t != QuantType::kQ8_0 && t != QuantType::kQ4_0 && t != QuantType::kQ4_1) {
    return random_blocks(t, n, k, deq);
  }
  const int64_t bytes = kernels::quant_block_bytes(t);
  std::vector<uint8_t> out(n * (k / 32) * bytes);
  deq->assign(n * k, 0.0);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t b = 0; b < k / 32; ++b) {
      const float* v = w.data() + r * k + b * 32;
      uint8_t* blk = out.data() + (r * (k / 32) + b) * bytes;
      double* dq = deq->data() + r * k + b * 32;
      const float mx = *std::max_element(v, v + 32);
      const float mn = *std::min_element(v, v + 32);
      if (t == QuantType::kQ8_0) {
        const float amax = std::max(std::fabs(mx), std::fabs(mn));
        const float d = half_value(amax / 127.0f);
        const uint16_t db = half_bits(d);
        std::memcpy(blk, &db, 2);
        for (int i = 0; i < 32; ++i) {
          const int q = d == 0 ? 0 : std::clamp(static_cast<int>(std::lround(v[i] / d)), -127, 127);
          blk[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(q));
          dq[i] = static_cast<double>(d) * q;
        }
      } else if (t == QuantType::kQ4_0) {
        const float amax = std::fabs(mx) >= std::fabs(mn) ? mx : mn;  // signed, as ggml
        const float d = half_value(amax / -8.0f);
        const uint16_t db = half_bits(d);
        std::memcpy(blk, &db, 2);
        for (int i = 0; i < 32; ++i) {
          const int q = d == 0 ? 8 : std::clamp(static_cast<int>(std::lround(v[i] / d)) + 8, 0, 15);
          if (i < 16)
            blk[2 + i] = static_cast<uint8_t>(q);
          else
            blk[2 + i - 16] |= static_cast<uint8_t>(q << 4);
          dq[i] = static_cast<double>(d) * (q - 8);
        }
      } else {
        const float d = half_value((mx - mn) / 15.0f);
        const float m = half_value(mn);
        const uint16_t db = half_bits(d), mb = half_bits(m);
        std::memcpy(blk, &db, 2);
        std::memcpy(blk + 2, &mb, 2);
        for (int i = 0; i < 32; ++i) {
          const int q =
              d == 0 ? 0 : std::clamp(static_cast<int>(std::lround((v[i] - m) / d)), 0, 15);
          if (i < 16)
            blk[4 + i] = static_cast<uint8_t>(q);
          else
            blk[4 + i - 16] |= static_cast<uint8_t>(q << 4);
          dq[i] = static_cast<double>(d) * q + m;
        }
      }
    }
  }
  return out;
}

struct Case {
  QuantType type;
  DType dtype;
  int64_t m, n, k;
};

class QuantLinear : public ::testing::TestWithParam<Case> {};

TEST_P(QuantLinear, MatchesTheDequantizedReference) {
  const Case c = GetParam();
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> w(c.n * c.k);
  for (float& v : w) v = normal(rng) * 0.05f;
  std::vector<double> deq;
  const std::vector<uint8_t> blocks = quantize(c.type, w, c.n, c.k, &deq);
  const int64_t x_stride = c.k + 8;  // rows not contiguous
  std::vector<float> xf(c.m * x_stride, std::nanf(""));
  std::vector<cpu::bf16> xb(c.m * x_stride, cpu::bf16(std::nanf("")));
  std::vector<double> x(c.m * c.k);
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < c.k; ++j) {
      const float v = normal(rng);
      xf[i * x_stride + j] = v;
      xb[i * x_stride + j] = cpu::bf16(v);
      x[i * c.k + j] = c.dtype == DType::kFloat32 ? v : static_cast<float>(cpu::bf16(v));
    }
  }
  if (cpu::quant_linear_int8(c.type)) {
    // x as the kernel sees it: per block of 32, scale max|x| / 127, codes rounded to nearest.
    for (int64_t i = 0; i < c.m; ++i) {
      for (int64_t b = 0; b < c.k / 32; ++b) {
        double* xb = x.data() + i * c.k + b * 32;
        float amax = 0;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(static_cast<float>(xb[j])));
        const float d = amax / 127.0f;
        const float inv = d > 0 ? 1.0f / d : 0.0f;
        for (int j = 0; j < 32; ++j) {
          xb[j] = static_cast<double>(d) * std::nearbyint(static_cast<float>(xb[j]) * inv);
        }
      }
    }
  }
  std::vector<uint8_t> packed(kernels::quant_packed_bytes(c.type, c.n, c.k), 0xAB);
  cpu::pack_quant_weight(c.type, kernels::quant_layout(c.type), blocks.data(), packed.data(), c.n,
                         c.k);
  const int64_t out_stride = c.n + 3;
  std::vector<float> outf(c.m * out_stride, -7.0f);
  std::vector<cpu::bf16> outb(c.m * out_stride, cpu::bf16(-7.0f));
  kernels::QuantLinearParams p;
  p.out = c.dtype == DType::kFloat32 ? static_cast<void*>(outf.data()) : outb.data();
  p.x = c.dtype == DType::kFloat32 ? static_cast<const void*>(xf.data()) : xb.data();
  p.w = packed.data();
  p.m = c.m;
  p.n = c.n;
  p.k = c.k;
  p.x_stride = x_stride;
  p.out_stride = out_stride;
  p.wtype = c.type;
  p.dtype = c.dtype;
  cpu::quant_linear(p);
  const double tol_rel = c.dtype == DType::kFloat32 ? 2e-5 : 8e-3;
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t r = 0; r < c.n; ++r) {
      double ref = 0, mag = 0, xabs = 0, wmax = 0;
      for (int64_t j = 0; j < c.k; ++j) {
        ref += x[i * c.k + j] * deq[r * c.k + j];
        mag += std::fabs(x[i * c.k + j] * deq[r * c.k + j]);
        xabs += std::fabs(x[i * c.k + j]);
        wmax = std::max(wmax, std::fabs(deq[r * c.k + j]));
      }
      // A K-quant's d * scale and dmin * min are rounded to fp16 at packing (relative 2^-11).
      if (kernels::quant_is_k(c.type)) mag += 4.0 * xabs * wmax;
      const double got = c.dtype == DType::kFloat32 ? outf[i * out_stride + r]
                                                    : static_cast<float>(outb[i * out_stride + r]);
      ASSERT_NEAR(got, ref, tol_rel * (mag + std::fabs(ref)) + 1e-6) << "row " << i << " col " << r;
    }
    for (int64_t r = c.n; r < out_stride; ++r) {
      const float pad = c.dtype == DType::kFloat32 ? outf[i * out_stride + r]
                                                   : static_cast<float>(outb[i * out_stride + r]);
      ASSERT_EQ(pad, -7.0f) << "wrote past n";
    }
  }
  // Rows computed together equal each row computed alone, bit for bit: a speculative
  // verification step's rows see what single-row decode steps would.
  for (int64_t i = 0; c.m > 1 && i < c.m; ++i) {
    std::vector<float> onef(out_stride, -7.0f);
    std::vector<cpu::bf16> oneb(out_stride, cpu::bf16(-7.0f));
    kernels::QuantLinearParams one = p;
    one.m = 1;
    one.x = c.dtype == DType::kFloat32 ? static_cast<const void*>(xf.data() + i * x_stride)
                                       : xb.data() + i * x_stride;
    one.out = c.dtype == DType::kFloat32 ? static_cast<void*>(onef.data()) : oneb.data();
    cpu::quant_linear(one);
    for (int64_t r = 0; r < c.n; ++r) {
      const float together = c.dtype == DType::kFloat32
                                 ? outf[i * out_stride + r]
                                 : static_cast<float>(outb[i * out_stride + r]);
      const float alone = c.dtype == DType::kFloat32 ? onef[r] : static_cast<float>(oneb[r]);
      ASSERT_EQ(together, alone) << "row " << i << " col " << r;
    }
  }
}

// Packed into a wider layout (4-bit codes as 8-bit, one scale for both groups), a weight keeps its
// values: parts of a weight stored in different types share one packed weight.
TEST_P(QuantLinear, WiderLayoutsKeepTheValues) {
  const Case c = GetParam();
  std::mt19937 rng(13);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> w(c.n * c.k);
  for (float& v : w) v = normal(rng) * 0.05f;
  std::vector<double> deq;
  const std::vector<uint8_t> blocks = quantize(c.type, w, c.n, c.k, &deq);
  const QuantType own = kernels::quant_layout(c.type);
  std::vector<float> want(c.n * c.k), got(c.n * c.k);
  std::vector<uint8_t> packed(kernels::quant_packed_bytes(own, c.n, c.k));
  cpu::pack_quant_weight(c.type, own, blocks.data(), packed.data(), c.n, c.k);
  cpu::unpack_quant_weight(own, packed.data(), want.data(), false, c.n, c.k);
  for (QuantType layout :
       {QuantType::kQ4_0, QuantType::kQ8_0, QuantType::kQ6_K, QuantType::kQ4_Z, QuantType::kQ8_Z}) {
    if (!kernels::quant_can_share(c.type, layout) ||
        kernels::quant_common_layout(c.type, layout) != layout) {
      std::vector<uint8_t> none(kernels::quant_packed_bytes(layout, c.n, c.k));
      EXPECT_THROW(cpu::pack_quant_weight(c.type, layout, blocks.data(), none.data(), c.n, c.k),
                   std::invalid_argument);
      continue;
    }
    std::vector<uint8_t> wide(kernels::quant_packed_bytes(layout, c.n, c.k));
    cpu::pack_quant_weight(c.type, layout, blocks.data(), wide.data(), c.n, c.k);
    cpu::unpack_quant_weight(layout, wide.data(), got.data(), false, c.n, c.k);
    ASSERT_EQ(got, want) << kernels::quant_type_name(layout);
  }
}

// The raw blocks dequantized, and the packed layout widened back (float32 and bf16), are the
// values the blocks stand for.
TEST_P(QuantLinear, DequantizeAndUnpackGiveTheBlockValues) {
  const Case c = GetParam();
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> w(c.n * c.k);
  for (float& v : w) v = normal(rng) * 0.05f;
  std::vector<double> deq;
  const std::vector<uint8_t> blocks = quantize(c.type, w, c.n, c.k, &deq);
  std::vector<float> raw(c.n * c.k), unpacked(c.n * c.k);
  std::vector<cpu::bf16> unpacked_bf16(c.n * c.k);
  cpu::dequantize_quant(c.type, blocks.data(), raw.data(), c.n, c.k);
  std::vector<uint8_t> packed(kernels::quant_packed_bytes(c.type, c.n, c.k));
  cpu::pack_quant_weight(c.type, kernels::quant_layout(c.type), blocks.data(), packed.data(), c.n,
                         c.k);
  cpu::unpack_quant_weight(c.type, packed.data(), unpacked.data(), false, c.n, c.k);
  cpu::unpack_quant_weight(c.type, packed.data(), unpacked_bf16.data(), true, c.n, c.k);
  for (int64_t i = 0; i < c.n * c.k; ++i) {
    ASSERT_EQ(raw[i], static_cast<float>(deq[i])) << i;
    if (kernels::quant_is_k(c.type)) {
      // d * scale and the min rounded to fp16 at packing.
      ASSERT_NEAR(unpacked[i], raw[i], 2e-3 * std::fabs(raw[i]) + 1e-4) << i;
      continue;
    }
    // The packed offset m is an fp16 (exact for Q4_0 and Q8_0, Q4_1's own fp16 m).
    ASSERT_EQ(unpacked[i], raw[i]) << i;
    ASSERT_EQ(static_cast<float>(unpacked_bf16[i]), static_cast<float>(cpu::bf16(raw[i]))) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Types, QuantLinear,
                         ::testing::Values(Case{QuantType::kQ8_0, DType::kFloat32, 1, 37, 576},
                                           Case{QuantType::kQ4_0, DType::kFloat32, 1, 4, 32},
                                           Case{QuantType::kQ4_0, DType::kFloat32, 3, 64, 96},
                                           Case{QuantType::kQ4_1, DType::kFloat32, 1, 70, 576},
                                           Case{QuantType::kQ4_1, DType::kFloat32, 5, 33, 1536},
                                           Case{QuantType::kQ8_0, DType::kBFloat16, 2, 48, 64},
                                           Case{QuantType::kQ4_1, DType::kBFloat16, 4, 129, 576},
                                           Case{QuantType::kQ5_0, DType::kFloat32, 3, 37, 576},
                                           Case{QuantType::kQ5_1, DType::kBFloat16, 2, 20, 96},
                                           Case{QuantType::kQ4_K, DType::kFloat32, 1, 37, 512},
                                           Case{QuantType::kQ4_K, DType::kBFloat16, 3, 64, 256},
                                           Case{QuantType::kQ5_K, DType::kFloat32, 2, 21, 768},
                                           Case{QuantType::kQ5_K, DType::kBFloat16, 1, 64, 256},
                                           Case{QuantType::kQ6_K, DType::kFloat32, 1, 45, 512},
                                           Case{QuantType::kQ6_K, DType::kBFloat16, 5, 8, 256},
                                           Case{QuantType::kQ4_Z, DType::kFloat32, 3, 37, 576},
                                           Case{QuantType::kQ4_Z, DType::kBFloat16, 1, 64, 128},
                                           Case{QuantType::kQ8_Z, DType::kFloat32, 1, 21, 256},
                                           Case{QuantType::kQ8_Z, DType::kBFloat16, 4, 48, 96}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           const Case& c = info.param;
                           return std::string(kernels::quant_type_name(c.type)) + "_" +
                                  kernels::dtype_name(c.dtype) + "_m" + std::to_string(c.m) + "_n" +
                                  std::to_string(c.n) + "_k" + std::to_string(c.k);
                         });

TEST(QuantLinearParams, CheckNamesTheBadField) {
  kernels::QuantLinearParams p;
  uint8_t w = 0;
  p.w = &w;
  p.n = 4;
  p.k = 48;
  p.x_stride = 48;
  p.out_stride = 4;
  EXPECT_NE(p.check().find("QuantLinearParams.k = 48"), std::string::npos) << p.check();
  p.k = 64;
  p.x_stride = 64;
  p.dtype = DType::kFloat16;
  EXPECT_NE(p.check().find("dtype"), std::string::npos) << p.check();
  EXPECT_THROW(cpu::quant_linear(p), std::invalid_argument);
}

}  // namespace
}  // namespace taco
