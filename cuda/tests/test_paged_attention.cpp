// paged_attention against a float64 host reference over mixed batches: decodes, prefill chunks
// over a cached prefix and whole prompts, GQA groups from 1 to 32, every supported head_dim, and
// long single-sequence decodes that force split-KV and its reduction. Cache slots no sequence
// owns, block-table padding (-1) and the output start poisoned, so reading past a sequence or
// skipping a row fails loudly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
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
void check_attention(const Shape& sh, const std::vector<SeqSpec>& seqs, uint32_t seed) {
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
  DeviceBuffer<float> workspace((paged_attention_workspace_bytes(p) + 3) / 4);
  p.workspace = workspace.size() ? workspace.get() : nullptr;
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
                       << workspace.size() * 4 << " bytes)";
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

}  // namespace
}  // namespace taco::cuda::testing
