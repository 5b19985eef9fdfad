// paged_attention against a float64 host reference over mixed batches: decodes, prefill chunks
// over a cached prefix and whole prompts, GQA groups from 1 to 32, every supported head_dim, and
// long single-sequence decodes that force split-KV and its reduction. Decode-only batches
// (max_query_len 1) take the decode kernel: lengths around block and stage edges, forced small
// partitions (empty splits), every bench variant (mma ones included), and the mixed kernel forced
// on a decode batch. Cache slots no sequence owns, block-table padding (-1) and the output start
// poisoned, so reading past a sequence or skipping a row fails loudly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <numeric>
#include <random>
#include <type_traits>
#include <vector>

#include "taco/cuda/attention.h"
#include "test_types.h"

namespace taco::cuda::testing {
namespace {

struct SeqSpec {
  int32_t seq_len;  // context including this step's tokens
  int32_t q_len;    // 1: decode; < seq_len: chunk over a cached prefix; == seq_len: prompt
};

struct Shape {
  int64_t kv_heads, group, head_dim, block_size;
};

// Decode-path knobs of PagedAttentionParams, and whether the call must be refused.
struct Knobs {
  int variant = 0;
  int64_t partition_keys = 0;
  bool expect_invalid = false;
};

template <typename T>
class PagedAttentionTest : public ::testing::Test {};
TYPED_TEST_SUITE(PagedAttentionTest, ElementTypes, TypeNames);

// Host inputs of one call and the block each position lives in.
template <typename T>
struct Batch {
  std::vector<int32_t> q_start{0}, lens, table;
  std::vector<T> query, kv;
  int64_t max_blocks = 0, num_blocks = 0, tokens = 0, max_q = 0, max_len = 0;
};

template <typename T>
Batch<T> make_batch(const Shape& sh, const std::vector<SeqSpec>& seqs, std::mt19937& rng) {
  Batch<T> b;
  int64_t needed = 0;
  for (const auto& s : seqs) {
    b.q_start.push_back(b.q_start.back() + s.q_len);
    b.lens.push_back(s.seq_len);
    const int64_t blocks = (s.seq_len + sh.block_size - 1) / sh.block_size;
    b.max_blocks = std::max(b.max_blocks, blocks);
    b.max_q = std::max<int64_t>(b.max_q, s.q_len);
    b.max_len = std::max<int64_t>(b.max_len, s.seq_len);
    needed += blocks;
  }
  b.tokens = b.q_start.back();
  b.num_blocks = needed + 5;  // spare blocks stay NaN
  std::vector<int32_t> ids(b.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  b.table.assign(seqs.size() * b.max_blocks, -1);
  const int64_t heads = sh.kv_heads * sh.group, d = sh.head_dim, bs = sh.block_size;
  b.kv.assign(2 * b.num_blocks * sh.kv_heads * bs * d, nan_value<T>());
  std::normal_distribution<float> dist(0.0f, 1.0f);
  size_t next = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int64_t i = 0; i * bs < seqs[s].seq_len; ++i) b.table[s * b.max_blocks + i] = ids[next++];
    for (int32_t pos = 0; pos < seqs[s].seq_len; ++pos) {  // only owned slots get values
      const int64_t block = b.table[s * b.max_blocks + pos / bs];
      for (int64_t half = 0; half < 2; ++half) {
        for (int64_t h = 0; h < sh.kv_heads; ++h) {
          const int64_t base =
              (((half * b.num_blocks + block) * sh.kv_heads + h) * bs + pos % bs) * d;
          for (int64_t e = 0; e < d; ++e) b.kv[base + e] = from_f<T>(dist(rng));
        }
      }
    }
  }
  b.query = random_vector<T>(b.tokens * heads * d, rng);
  return b;
}

// float64 causal attention of query row (token, head) over its sequence.
template <typename T>
void reference_row(double* out, const Batch<T>& b, const Shape& sh, int64_t seq, int64_t token,
                   int64_t head, double scale) {
  const int64_t d = sh.head_dim, bs = sh.block_size, heads = sh.kv_heads * sh.group;
  const int64_t q_len = b.q_start[seq + 1] - b.q_start[seq];
  const int64_t pos = b.lens[seq] - q_len + (token - b.q_start[seq]);
  const int64_t kvh = head / sh.group;
  const T* q = b.query.data() + (token * heads + head) * d;
  auto at = [&](int64_t half, int64_t p) {
    const int64_t block = b.table[seq * b.max_blocks + p / bs];
    return b.kv.data() + (((half * b.num_blocks + block) * sh.kv_heads + kvh) * bs + p % bs) * d;
  };
  std::vector<double> s(pos + 1);
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t p = 0; p <= pos; ++p) {
    const T* k = at(0, p);
    double dot = 0.0;
    for (int64_t e = 0; e < d; ++e) dot += static_cast<double>(to_f(q[e])) * to_f(k[e]);
    s[p] = dot * scale;
    m = std::max(m, s[p]);
  }
  double sum = 0.0;
  std::fill(out, out + d, 0.0);
  for (int64_t p = 0; p <= pos; ++p) {
    const double w = std::exp(s[p] - m);
    sum += w;
    const T* v = at(1, p);
    for (int64_t e = 0; e < d; ++e) out[e] += w * to_f(v[e]);
  }
  for (int64_t e = 0; e < d; ++e) out[e] /= sum;
}

template <typename T>
void check_attention(const Shape& sh, const std::vector<SeqSpec>& seqs, uint32_t seed,
                     const Knobs& knobs = {}) {
  std::mt19937 rng(seed);
  const Batch<T> b = make_batch<T>(sh, seqs, rng);
  const int64_t heads = sh.kv_heads * sh.group, d = sh.head_dim;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  DeviceBuffer<T> query(b.query), kv(b.kv),
      out(std::vector<T>(b.tokens * heads * d, nan_value<T>()));
  DeviceBuffer<int32_t> q_start(b.q_start), lens(b.lens), table(b.table);
  PagedAttentionParams p;
  p.out = out.get();
  p.query = query.get();
  p.kv = kv.get();
  p.query_start_loc = q_start.get();
  p.seq_lens = lens.get();
  p.block_table = table.get();
  p.tokens = b.tokens;
  p.num_seqs = static_cast<int64_t>(seqs.size());
  p.num_heads = heads;
  p.num_kv_heads = sh.kv_heads;
  p.head_dim = d;
  p.block_size = sh.block_size;
  p.num_blocks = b.num_blocks;
  p.max_blocks_per_seq = b.max_blocks;
  p.query_stride = heads * d;
  p.max_query_len = b.max_q;
  p.max_seq_len = b.max_len;
  p.scale = static_cast<float>(scale);
  p.dtype = dtype_of<T>();
  p.decode_variant = knobs.variant;
  p.decode_partition_keys = knobs.partition_keys;
  DeviceBuffer<float> workspace((paged_attention_workspace_bytes(p) + 3) / 4);
  p.workspace = workspace.size() ? workspace.get() : nullptr;
  if (knobs.expect_invalid) {
    EXPECT_EQ(paged_attention(p, nullptr), cudaErrorInvalidValue) << "variant " << knobs.variant;
    return;
  }
  TACO_CUDA_LAUNCH_OK(paged_attention(p, nullptr));

  const std::vector<T> got = out.download();
  const auto [atol, rtol] = tolerance<T>();
  std::vector<double> want(d);
  for (size_t s = 0; s < seqs.size(); ++s) {
    size_t bad = 0;
    for (int64_t t = b.q_start[s]; t < b.q_start[s + 1]; ++t) {
      for (int64_t h = 0; h < heads; ++h) {
        reference_row(want.data(), b, sh, static_cast<int64_t>(s), t, h, scale);
        for (int64_t e = 0; e < d; ++e)
          bad += !close(to_f(got[(t * heads + h) * d + e]), want[e], atol, rtol);
      }
    }
    EXPECT_EQ(bad, 0u) << "sequence " << s << " seq_len " << seqs[s].seq_len << " q_len "
                       << seqs[s].q_len << " (kv_heads " << sh.kv_heads << " group " << sh.group
                       << " head_dim " << d << " block_size " << sh.block_size << ", workspace "
                       << workspace.size() * 4 << " bytes, variant " << knobs.variant
                       << ", partition " << knobs.partition_keys << ")";
  }
}

const std::vector<SeqSpec> kMixed = {{1, 1},   {37, 1},  {200, 1}, {64, 64},
                                     {90, 17}, {33, 33}, {513, 5}};

TYPED_TEST(PagedAttentionTest, MixedBatchAcrossGroupsAndHeadDims) {
  TACO_REQUIRE_GPU();
  for (int64_t d : {64, 96, 128, 256}) check_attention<TypeParam>({2, 4, d, 16}, kMixed, 1);
  check_attention<TypeParam>({4, 1, 64, 16}, kMixed, 2);   // MHA
  check_attention<TypeParam>({1, 8, 128, 32}, kMixed, 3);  // group 8, bigger blocks
  check_attention<TypeParam>({1, 32, 64, 16}, kMixed, 4);  // group > 16 rows: head chunks
  check_attention<TypeParam>({2, 3, 64, 16}, kMixed,
                             5);  // group 3: 5 tokens per CTA, a ragged tile
}

TYPED_TEST(PagedAttentionTest, LongDecodesSplitKeys) {
  TACO_REQUIRE_GPU();
  // Few sequences with long contexts: the plan splits keys and reduces the partials. The
  // shortest sequence sees empty splits past its length.
  check_attention<TypeParam>({2, 4, 128, 16}, {{4000, 1}, {2500, 1}, {40, 1}}, 6);
  check_attention<TypeParam>({1, 8, 64, 16}, {{3000, 1}, {1500, 3}}, 7);
}

// Decodes only: lengths 1, around a block (16) and the default stage (16 keys), block multiples,
// and a few thousand keys, so partial stages, partial blocks and long key loops all occur.
std::vector<SeqSpec> decode_batch(std::initializer_list<int32_t> lens) {
  std::vector<SeqSpec> seqs;
  for (int32_t len : lens) seqs.push_back({len, 1});
  return seqs;
}
const std::vector<SeqSpec> kDecodes =
    decode_batch({1, 15, 16, 17, 31, 32, 33, 64, 100, 255, 256, 257, 1024, 2900});

TYPED_TEST(PagedAttentionTest, DecodeBatchAcrossGroupsAndHeadDims) {
  TACO_REQUIRE_GPU();
  for (int64_t group : {1, 4, 8}) {
    for (int64_t d : {64, 128}) check_attention<TypeParam>({2, group, d, 16}, kDecodes, 10);
  }
  check_attention<TypeParam>({2, 4, 96, 16}, kDecodes, 11);    // 3 packs per thread
  check_attention<TypeParam>({1, 8, 96, 16}, kDecodes, 12);    // heads capped: 2+ chunks
  check_attention<TypeParam>({1, 4, 256, 16}, kDecodes, 13);   // a warp per key
  check_attention<TypeParam>({2, 3, 128, 16}, kDecodes, 14);   // padding head in the CTA
  check_attention<TypeParam>({1, 12, 128, 16}, kDecodes, 15);  // two head chunks, one ragged
  check_attention<TypeParam>({1, 32, 64, 16}, kDecodes, 16);   // four head chunks
}

TYPED_TEST(PagedAttentionTest, DecodeBlockSizes) {
  TACO_REQUIRE_GPU();
  check_attention<TypeParam>({2, 4, 128, 32}, kDecodes, 20);
  check_attention<TypeParam>({2, 4, 128, 8}, kDecodes, 21);   // a stage spans two blocks
  check_attention<TypeParam>({2, 4, 128, 24}, kDecodes, 22);  // not a power of two: division
  check_attention<TypeParam>({1, 4, 64, 1}, decode_batch({1, 2, 17, 300}), 23);
}

TYPED_TEST(PagedAttentionTest, DecodeSplitsAndEmptySplits) {
  TACO_REQUIRE_GPU();
  // Small fixed partitions: many splits, and the short sequences see splits with no key at all.
  for (int64_t part : {16, 64, 100, 512})
    check_attention<TypeParam>({2, 4, 128, 16}, kDecodes, 30, {0, part});
  // One long sequence alone: the plan splits it to fill the GPU.
  check_attention<TypeParam>({8, 4, 128, 16}, decode_batch({9000}), 31);
  check_attention<TypeParam>({1, 8, 64, 16}, decode_batch({5000, 3}), 32);
}

TYPED_TEST(PagedAttentionTest, DecodeVariantsAndMixedKernelOnDecodes) {
  TACO_REQUIRE_GPU();
  check_attention<TypeParam>({2, 4, 128, 16}, kDecodes, 40, {-1});  // the mixed kernel
  const bool bf16 = std::is_same_v<TypeParam, __nv_bfloat16>;
  int v = 1;
  for (; paged_attention_decode_variant_name(v) != nullptr; ++v) {
    SCOPED_TRACE(paged_attention_decode_variant_name(v));
    // Variants exist for bf16, head_dim 128, groups 3 and 4 (the bench shape).
    check_attention<TypeParam>({2, 4, 128, 16}, kDecodes, 41, {v, 0, !bf16});
    check_attention<TypeParam>({2, 3, 128, 16}, kDecodes, 42, {v, 64, !bf16});
    check_attention<TypeParam>({2, 8, 128, 16}, kDecodes, 43, {v, 0, true});
    check_attention<TypeParam>({2, 4, 64, 16}, kDecodes, 44, {v, 0, true});
  }
  EXPECT_GE(v, 2) << "the bench needs variants to compare";
  check_attention<TypeParam>({2, 4, 128, 16}, kDecodes, 45, {v, 0, true});  // past the last
}

}  // namespace
}  // namespace taco::cuda::testing
