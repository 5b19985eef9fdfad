// KV cache writes by slot mapping and block moves (copy within a cache, swap between caches).
// Cache layout (ops/ops.h): kv[2, num_blocks, num_kv_heads, block_size, head_dim].
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <limits>
#include <utility>
#include <vector>

#include "ops/ops.h"

namespace taco {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int64_t kBlocks = 6, kKvHeads = 2, kBlockSize = 4, kHeadDim = 8;

at::Tensor nan_cache(at::ScalarType dtype) {
  return at::full({2, kBlocks, kKvHeads, kBlockSize, kHeadDim}, kNaN, dtype);
}

// The [Hkv, D] entries of slot `slot` in half `which` (0: K, 1: V).
at::Tensor slot_view(const at::Tensor& kv, int64_t which, int64_t slot) {
  return kv[which][slot / kBlockSize].select(1, slot % kBlockSize);
}

class WriteKvCache : public ::testing::TestWithParam<at::ScalarType> {};

TEST_P(WriteKvCache, ValuesLandAtTheirSlotsAndNegativeSlotsAreSkipped) {
  const at::ScalarType dtype = GetParam();
  at::manual_seed(11);
  // key/value as views of a packed qkv row [T, (Hq + 2 Hkv) * D], as the model produces them.
  const int64_t tokens = 7, q_heads = 4;
  at::Tensor qkv = at::randn({tokens, (q_heads + 2 * kKvHeads) * kHeadDim}).to(dtype);
  at::Tensor key =
      qkv.narrow(1, q_heads * kHeadDim, kKvHeads * kHeadDim).view({tokens, kKvHeads, kHeadDim});
  at::Tensor value = qkv.narrow(1, (q_heads + kKvHeads) * kHeadDim, kKvHeads * kHeadDim)
                         .view({tokens, kKvHeads, kHeadDim});
  ASSERT_FALSE(key.is_contiguous());
  const std::vector<int64_t> slots = {13, 0, -1, 23, 5, -1, 8};
  at::Tensor slot_mapping = at::tensor(slots, at::kLong);
  at::Tensor kv = nan_cache(dtype);
  ops::write_kv_cache(key, value, kv, slot_mapping);

  at::Tensor written = at::zeros({2, kBlocks, kKvHeads, kBlockSize, kHeadDim}, at::kBool);
  for (int64_t t = 0; t < tokens; ++t) {
    if (slots[t] < 0) continue;
    EXPECT_TRUE(at::equal(slot_view(kv, 0, slots[t]), key[t])) << "K of token " << t;
    EXPECT_TRUE(at::equal(slot_view(kv, 1, slots[t]), value[t])) << "V of token " << t;
    slot_view(written, 0, slots[t]).fill_(true);
    slot_view(written, 1, slots[t]).fill_(true);
  }
  // Everything not written (including what the skipped tokens would have hit) is still NaN.
  EXPECT_TRUE(kv.isnan().logical_not().equal(written));
}

// 8-bit caches store x / scale rounded to nearest even and saturated at the format's largest
// value: the codes torch's conversion gives for the clamped quotient, over thousands of values
// from subnormal to past the largest, exact ties, zeros of both signs and rows long enough for the
// vector path.
TEST(WriteKvCacheFp8, CodesMatchTorchsConversion) {
  at::manual_seed(5);
  const int64_t tokens = 100, heads = 2, dim = 72, bs = 16, blocks = 8;
  for (const auto& [cache, max] :
       {std::pair{at::kFloat8_e4m3fn, 448.0}, std::pair{at::kFloat8_e5m2, 57344.0}}) {
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      SCOPED_TRACE(std::string(c10::toString(cache)) + " from " + c10::toString(dtype));
      at::Tensor key = (at::randn({tokens, heads, dim}) *
                        at::pow(2.0, at::randint(-24, 18, {tokens, heads, dim})))
                           .to(dtype);
      // Ties between neighbouring codes (1 + (2j + 1) / 16: halfway for 3 mantissa bits) and
      // signed zeros.
      key[0][0] = at::arange(dim, at::kFloat).mul(0.125).add(1.0625).to(dtype);
      key[1][1].fill_(-0.0);
      at::Tensor value = at::randn({tokens, heads, dim}).mul(1000).to(dtype);
      const double k_scale = 0.25, v_scale = 3.0;
      at::Tensor kv = at::zeros({2, blocks, heads, bs, dim}, cache);
      std::vector<int64_t> slots(tokens);
      for (int64_t t = 0; t < tokens; ++t) slots[t] = t % 9 == 4 ? -1 : (t * 37) % (blocks * bs);
      ops::write_kv_cache(key, value, kv, at::tensor(slots, at::kLong), k_scale, v_scale);
      auto expect = [&](const at::Tensor& x, double scale) {
        return (x.to(at::kFloat) / scale).clamp(-max, max).to(cache).view(at::kByte);
      };
      for (int64_t t = 0; t < tokens; ++t) {
        if (slots[t] < 0) continue;
        const int64_t b = slots[t] / bs, r = slots[t] % bs;
        EXPECT_TRUE(at::equal(kv[0][b].select(1, r).view(at::kByte), expect(key[t], k_scale)))
            << "K of token " << t;
        EXPECT_TRUE(at::equal(kv[1][b].select(1, r).view(at::kByte), expect(value[t], v_scale)))
            << "V of token " << t;
      }
    }
  }
}

TEST_P(WriteKvCache, SlotBeyondTheCacheThrows) {
  const at::ScalarType dtype = GetParam();
  at::Tensor key = at::randn({2, kKvHeads, kHeadDim}).to(dtype);
  at::Tensor kv = nan_cache(dtype);
  at::Tensor last = at::tensor(std::vector<int64_t>{0, kBlocks * kBlockSize - 1}, at::kLong);
  EXPECT_NO_THROW(ops::write_kv_cache(key, key, kv, last));
  at::Tensor past = at::tensor(std::vector<int64_t>{0, kBlocks * kBlockSize}, at::kLong);
  EXPECT_ANY_THROW(ops::write_kv_cache(key, key, kv, past));
  at::Tensor int32_slots = at::tensor(std::vector<int32_t>{0, 1}, at::kInt);
  EXPECT_ANY_THROW(ops::write_kv_cache(key, key, kv, int32_slots));
}

INSTANTIATE_TEST_SUITE_P(Kernels, WriteKvCache,
                         ::testing::Values(at::kFloat, at::kBFloat16, at::kHalf),
                         [](const ::testing::TestParamInfo<at::ScalarType>& info) {
                           return std::string(c10::toString(info.param));
                         });

std::vector<at::Tensor> random_layers(int64_t layers, int64_t blocks,
                                      at::ScalarType dtype = at::kBFloat16) {
  std::vector<at::Tensor> kv;
  for (int64_t l = 0; l < layers; ++l) {
    kv.push_back(at::randn({2, blocks, kKvHeads, kBlockSize, kHeadDim}).to(dtype));
  }
  return kv;
}

// Bitwise equality (8-bit float caches included).
bool same(const at::Tensor& a, const at::Tensor& b) {
  return at::equal(a.contiguous().view(at::kByte), b.contiguous().view(at::kByte));
}

// The cache dtypes block moves see: the model's and the 8-bit floats.
const at::ScalarType kCacheDtypes[] = {at::kBFloat16, at::kFloat8_e4m3fn, at::kFloat8_e5m2};

// expected[l][:, dst] = before[l][:, src] for every pair; all else unchanged.
std::vector<at::Tensor> moved(const std::vector<at::Tensor>& src,
                              const std::vector<at::Tensor>& dst,
                              const std::vector<std::pair<int32_t, int32_t>>& pairs) {
  std::vector<at::Tensor> expected;
  for (size_t l = 0; l < dst.size(); ++l) {
    at::Tensor e = dst[l].clone();
    for (const auto& [s, d] : pairs) e.select(1, d).copy_(src[l].select(1, s));
    expected.push_back(e);
  }
  return expected;
}

TEST(CopyBlocks, MovesExactlyTheListedBlocksInEveryLayer) {
  for (const at::ScalarType dtype : kCacheDtypes) {
    SCOPED_TRACE(c10::toString(dtype));
    at::manual_seed(5);
    std::vector<at::Tensor> kv = random_layers(3, kBlocks, dtype);
    const std::vector<std::pair<int32_t, int32_t>> pairs = {{1, 4}, {2, 0}, {1, 5}};
    const std::vector<at::Tensor> expected = moved(kv, kv, pairs);
    ops::copy_blocks(kv, pairs);
    for (size_t l = 0; l < kv.size(); ++l) EXPECT_TRUE(same(kv[l], expected[l])) << "layer " << l;
  }
}

TEST(SwapBlocks, MovesExactlyTheListedBlocksInEveryLayer) {
  for (const at::ScalarType dtype : kCacheDtypes) {
    SCOPED_TRACE(c10::toString(dtype));
    at::manual_seed(6);
    // A device cache of kBlocks blocks and a smaller CPU cache, as vLLM sizes them.
    const std::vector<at::Tensor> device = random_layers(3, kBlocks, dtype);
    std::vector<at::Tensor> host = random_layers(3, 4, dtype);
    std::vector<at::Tensor> device_before;
    for (const auto& t : device) device_before.push_back(t.clone());
    const std::vector<std::pair<int32_t, int32_t>> out_pairs = {{5, 0}, {2, 3}};
    const std::vector<at::Tensor> expected_host = moved(device, host, out_pairs);
    ops::swap_blocks(device, host, out_pairs);
    for (size_t l = 0; l < host.size(); ++l) {
      EXPECT_TRUE(same(host[l], expected_host[l])) << "host layer " << l;
      EXPECT_TRUE(same(device[l], device_before[l])) << "source layer " << l << " changed";
    }

    std::vector<at::Tensor> device_mut = device;
    const std::vector<std::pair<int32_t, int32_t>> in_pairs = {{3, 1}, {0, 4}};
    const std::vector<at::Tensor> expected_device = moved(host, device, in_pairs);
    ops::swap_blocks(host, device_mut, in_pairs);
    for (size_t l = 0; l < device_mut.size(); ++l) {
      EXPECT_TRUE(same(device_mut[l], expected_device[l])) << "device layer " << l;
    }
  }
}

TEST(CopyBlocks, BlockOutsideTheCacheThrows) {
  std::vector<at::Tensor> kv = random_layers(2, kBlocks);
  EXPECT_ANY_THROW(ops::copy_blocks(kv, {{0, static_cast<int32_t>(kBlocks)}}));
  EXPECT_ANY_THROW(ops::copy_blocks(kv, {{-1, 0}}));
}

TEST(SwapBlocks, BlockOutsideEitherCacheThrows) {
  const std::vector<at::Tensor> device = random_layers(2, kBlocks);
  std::vector<at::Tensor> host = random_layers(2, 4);
  EXPECT_ANY_THROW(ops::swap_blocks(device, host, {{0, 4}}));
  EXPECT_ANY_THROW(ops::swap_blocks(device, host, {{static_cast<int32_t>(kBlocks), 0}}));
}

TEST(SwapBlocks, LayerCountMismatchThrows) {
  const std::vector<at::Tensor> src = random_layers(2, kBlocks);
  std::vector<at::Tensor> dst = random_layers(3, kBlocks);
  EXPECT_ANY_THROW(ops::swap_blocks(src, dst, {{0, 0}}));
}

}  // namespace
}  // namespace taco
