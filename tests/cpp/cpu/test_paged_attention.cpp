// taco::ops::paged_attention against a plain float64 reference that gathers each sequence's K/V
// through its block table and applies a causal softmax. Every cache slot no sequence owns, the
// padding of the block table and the output tensor start poisoned (NaN / -1), so a kernel that
// reads past a sequence or skips an output row fails loudly.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "ops/ops.h"

namespace taco {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct SeqSpec {
  int32_t seq_len;  // context length including this step's tokens
  int32_t q_len;    // 1: decode; < seq_len: prefill chunk over a cached prefix; == seq_len: prompt
};

struct Shape {
  at::ScalarType dtype;
  int64_t num_kv_heads;
  int64_t group;  // q heads per kv head
  int64_t head_dim;
  int64_t block_size;
  bool strided_query;  // query as a view of a wider [T, heads + 3, D] tensor
  // An 8-bit cache (float8_e4m3fn / float8_e5m2) read with these scales; Undefined: dtype.
  at::ScalarType cache = at::ScalarType::Undefined;
  double k_scale = 1.0, v_scale = 1.0;
};

// The inputs of one call. kv [2, blocks, Hkv, bs, D]; query [T, Hq, D]; out [T, Hq, D].
struct Batch {
  std::vector<SeqSpec> seqs;
  std::vector<int32_t> q_start;  // host copy of query_start_loc
  at::Tensor query, kv, out, query_start_loc, seq_lens, block_table;
  int64_t max_query_len = 0, max_seq_len = 0;
};

std::pair<double, double> tolerance(at::ScalarType dtype) {
  if (dtype == at::kFloat) return {2e-5, 1e-4};
  if (dtype == at::kHalf) return {4e-3, 4e-3};
  return {2.5e-2, 2.5e-2};  // bfloat16: 8 mantissa bits
}

int64_t blocks_for(int64_t len, int64_t block_size) { return (len + block_size - 1) / block_size; }

// Shuffled, non-contiguous block ids (spare blocks are never referenced); rows padded with -1.
at::Tensor random_block_table(const std::vector<SeqSpec>& seqs, int64_t block_size,
                              int64_t num_blocks, std::mt19937& rng) {
  int64_t max_blocks = 0;
  for (const auto& s : seqs) max_blocks = std::max(max_blocks, blocks_for(s.seq_len, block_size));
  std::vector<int32_t> ids(num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  at::Tensor table = at::full({static_cast<int64_t>(seqs.size()), max_blocks}, -1, at::kInt);
  auto acc = table.accessor<int32_t, 2>();
  size_t next = 0;
  for (size_t b = 0; b < seqs.size(); ++b) {
    for (int64_t i = 0; i < blocks_for(seqs[b].seq_len, block_size); ++i) acc[b][i] = ids[next++];
  }
  return table;
}

// Cache slot of every position of every sequence, sequences back to back: [sum of seq_len].
at::Tensor context_slots(const Batch& batch, int64_t block_size) {
  std::vector<int64_t> slots;
  auto t = batch.block_table.accessor<int32_t, 2>();
  for (size_t b = 0; b < batch.seqs.size(); ++b) {
    for (int32_t p = 0; p < batch.seqs[b].seq_len; ++p) {
      slots.push_back(t[b][p / block_size] * block_size + p % block_size);
    }
  }
  return at::tensor(slots, at::kLong);
}

// Random K/V in the slots below each sequence's length, NaN everywhere else.
at::Tensor poisoned_cache(const Shape& sh, const at::Tensor& slots, int64_t num_blocks) {
  at::Tensor used = at::zeros({num_blocks * sh.block_size}, at::kBool).index_fill_(0, slots, true);
  at::Tensor kv = at::randn({2, num_blocks, sh.num_kv_heads, sh.block_size, sh.head_dim});
  kv.masked_fill_(used.logical_not().view({1, num_blocks, 1, sh.block_size, 1}), kNaN);
  return kv.to(sh.cache == at::ScalarType::Undefined ? sh.dtype : sh.cache);
}

Batch make_batch(const Shape& sh, const std::vector<SeqSpec>& seqs, std::mt19937& rng) {
  Batch batch;
  batch.seqs = seqs;
  batch.q_start = {0};
  std::vector<int32_t> lens;
  int64_t needed = 0;
  for (const auto& s : seqs) {
    batch.q_start.push_back(batch.q_start.back() + s.q_len);
    lens.push_back(s.seq_len);
    batch.max_query_len = std::max<int64_t>(batch.max_query_len, s.q_len);
    batch.max_seq_len = std::max<int64_t>(batch.max_seq_len, s.seq_len);
    needed += blocks_for(s.seq_len, sh.block_size);
  }
  batch.query_start_loc = at::tensor(batch.q_start, at::kInt);
  batch.seq_lens = at::tensor(lens, at::kInt);
  const int64_t num_blocks = needed + 7;
  batch.block_table = random_block_table(seqs, sh.block_size, num_blocks, rng);
  batch.kv = poisoned_cache(sh, context_slots(batch, sh.block_size), num_blocks);
  const int64_t tokens = batch.q_start.back();
  const int64_t heads = sh.num_kv_heads * sh.group;
  if (sh.strided_query) {
    batch.query = at::randn({tokens, heads + 3, sh.head_dim}).to(sh.dtype).narrow(1, 0, heads);
  } else {
    batch.query = at::randn({tokens, heads, sh.head_dim}).to(sh.dtype);
  }
  batch.out = at::full({tokens, heads, sh.head_dim}, kNaN, sh.dtype);
  return batch;
}

// float64 causal attention of one sequence. q [q_len, Hq, D]; k, v [len, Hkv, D] -> [q_len, Hq, D].
// q head h reads kv head h / group.
at::Tensor reference_seq(const Shape& sh, const at::Tensor& q, const at::Tensor& k,
                         const at::Tensor& v, double scale) {
  const int64_t q_len = q.size(0), len = k.size(0), g = sh.group, hkv = sh.num_kv_heads;
  at::Tensor qb = q.view({q_len, hkv, g, sh.head_dim})
                      .permute({1, 0, 2, 3})
                      .reshape({hkv, q_len * g, sh.head_dim});
  at::Tensor scores = at::bmm(qb, k.permute({1, 2, 0})) * scale;  // [Hkv, q_len * g, len]
  if (q_len > 1) {
    at::Tensor q_pos = at::arange(len - q_len, len, at::kLong).view({q_len, 1, 1});
    at::Tensor future = at::arange(len, at::kLong).view({1, 1, len}) > q_pos;  // [q_len, 1, len]
    scores.view({hkv, q_len, g, len})
        .masked_fill_(future, -std::numeric_limits<double>::infinity());
  }
  at::Tensor out = at::bmm(at::softmax(scores, -1), v.permute({1, 0, 2}));  // [Hkv, q_len * g, D]
  return out.view({hkv, q_len, g, sh.head_dim})
      .permute({1, 0, 2, 3})
      .reshape({q_len, hkv * g, sh.head_dim});
}

// Reference output of the whole batch: [T, Hq, D] float64.
at::Tensor reference(const Shape& sh, const Batch& batch, double scale) {
  const at::Tensor slots = context_slots(batch, sh.block_size);
  const int64_t cache_rows = batch.kv.size(1) * sh.block_size;
  auto gather = [&](int64_t which) {  // [sum of seq_len, Hkv, D]
    at::Tensor flat =
        batch.kv[which].permute({0, 2, 1, 3}).reshape({cache_rows, sh.num_kv_heads, sh.head_dim});
    return flat.index_select(0, slots).to(at::kDouble) * (which == 0 ? sh.k_scale : sh.v_scale);
  };
  const at::Tensor k = gather(0), v = gather(1), q = batch.query.to(at::kDouble);
  at::Tensor ref = at::empty(q.sizes(), q.options());
  int64_t ctx0 = 0;
  for (size_t b = 0; b < batch.seqs.size(); ++b) {
    const auto [len, q_len] = batch.seqs[b];
    ref.narrow(0, batch.q_start[b], q_len)
        .copy_(reference_seq(sh, q.narrow(0, batch.q_start[b], q_len), k.narrow(0, ctx0, len),
                             v.narrow(0, ctx0, len), scale));
    ctx0 += len;
  }
  return ref;
}

// Sets the ATen intra-op thread count for a scope. The reference issues thousands of tiny ATen
// ops; with a thread pool each pays a parallel region, which under ctest -j (processes x threads
// > cores) costs milliseconds apiece. So setup and reference run on one thread, and only the
// kernel under test gets the pool.
class ThreadCount {
 public:
  explicit ThreadCount(int n) : saved_(at::get_num_threads()) { at::set_num_threads(n); }
  ~ThreadCount() { at::set_num_threads(saved_); }
  ThreadCount(const ThreadCount&) = delete;
  ThreadCount& operator=(const ThreadCount&) = delete;

 private:
  int saved_;
};

void expect_matches_reference(const Shape& sh, const std::vector<SeqSpec>& seqs, uint64_t seed) {
  const int pool = at::get_num_threads();
  ThreadCount single(1);
  at::manual_seed(seed);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  Batch batch = make_batch(sh, seqs, rng);
  const double scale = 1.0 / std::sqrt(static_cast<double>(sh.head_dim));
  {
    ThreadCount kernel_threads(pool);
    ops::paged_attention(batch.out, batch.query, batch.kv, batch.query_start_loc, batch.seq_lens,
                         batch.block_table, scale, batch.max_query_len, batch.max_seq_len,
                         sh.k_scale, sh.v_scale);
  }
  const at::Tensor out = batch.out.to(at::kDouble);
  ASSERT_EQ(out.isnan().sum().item<int64_t>(), 0) << "NaN leaked into the output";
  const at::Tensor ref = reference(sh, batch, scale);
  const auto [atol, rtol] = tolerance(sh.dtype);
  const at::Tensor bad = ((out - ref).abs() > atol + rtol * ref.abs()).flatten(1).any(1);  // [T]
  for (size_t b = 0; b < seqs.size(); ++b) {
    const at::Tensor rows = bad.narrow(0, batch.q_start[b], seqs[b].q_len);
    EXPECT_FALSE(rows.any().item<bool>())
        << "sequence " << b << " seq_len " << seqs[b].seq_len << " q_len " << seqs[b].q_len
        << ": max abs error "
        << (out - ref).narrow(0, batch.q_start[b], seqs[b].q_len).abs().max().item<double>();
  }
}

// Decodes, chunks over cached prefixes and whole prompts around block and query-tile edges,
// shuffled so the kinds interleave in the flat batch.
std::vector<SeqSpec> mixed_seqs(int32_t bs, std::mt19937& rng) {
  std::vector<SeqSpec> seqs = {
      {1, 1},  {5, 1},       {bs, 1},          {bs + 1, 1}, {257, 1},   {600, 1},
      {17, 9}, {3 * bs, bs}, {3 * bs + 1, 17}, {300, 37},   {600, 100}, {129, 128},
      {2, 2},  {bs, bs},     {bs + 3, bs + 3}, {100, 100},  {333, 333}};
  std::shuffle(seqs.begin(), seqs.end(), rng);
  return seqs;
}

class PagedAttentionMixed : public ::testing::TestWithParam<at::ScalarType> {};

// Every GQA ratio (1, 3, 4) times every block size (8, 16, 32), two kv heads, head_dim 64.
TEST_P(PagedAttentionMixed, MatchesReferenceWithPoisonedCache) {
  for (const int64_t group : {1, 3, 4}) {
    for (const int64_t block_size : {8, 16, 32}) {
      SCOPED_TRACE("gqa " + std::to_string(group) + ", block size " + std::to_string(block_size));
      std::mt19937 rng(static_cast<uint32_t>(group * 100 + block_size));
      const Shape sh{GetParam(), 2, group, 64, block_size, true};
      expect_matches_reference(sh, mixed_seqs(static_cast<int32_t>(block_size), rng),
                               static_cast<uint64_t>(group * 1000 + block_size));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, PagedAttentionMixed,
                         ::testing::Values(at::kFloat, at::kBFloat16, at::kHalf),
                         [](const ::testing::TestParamInfo<at::ScalarType>& info) {
                           return std::string(c10::toString(info.param));
                         });

// 8-bit caches (E4M3, E5M2) with K and V scales: the kernel reads code value * scale; the
// reference attends over the same dequantized values. Float and bf16 queries (bf16 prefill
// tiles would otherwise take the lane kernel).
TEST(PagedAttentionFp8Cache, MatchesReferenceOverTheDequantizedCache) {
  for (const at::ScalarType cache : {at::kFloat8_e4m3fn, at::kFloat8_e5m2}) {
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      for (const int64_t group : {1, 3}) {
        SCOPED_TRACE(std::string(c10::toString(cache)) + " " + c10::toString(dtype) + ", gqa " +
                     std::to_string(group));
        std::mt19937 rng(static_cast<uint32_t>(group));
        const Shape sh{dtype, 2, group, 64, 16, true, cache, 0.5, 2.0};
        expect_matches_reference(sh, mixed_seqs(16, rng), static_cast<uint64_t>(group * 7));
      }
    }
  }
}

// bf16 prefill tiles of 8 or more query rows run the lane kernel (attention_lanes.h): every head
// size it takes, with tiles of 1 to 4 lane groups (GQA 1 to 4 times 16 tokens).
TEST(PagedAttentionLanes, Bf16HeadSizesMatchReference) {
  for (const int64_t head_dim : {32, 96, 128}) {
    for (const int64_t group : {1, 4}) {
      SCOPED_TRACE("head_dim " + std::to_string(head_dim) + ", gqa " + std::to_string(group));
      std::mt19937 rng(static_cast<uint32_t>(head_dim + group));
      const Shape sh{at::kBFloat16, 2, group, head_dim, 16, false};
      expect_matches_reference(sh, {{40, 40}, {70, 9}, {33, 17}, {5, 1}, {200, 64}},
                               static_cast<uint64_t>(head_dim * 10 + group));
    }
  }
}

// Every context length 1..600 in one batch: mostly decodes, a short chunk for every fourth
// length and a whole prompt for every 32nd (whole prompts cost len^2, so they are sparse).
std::vector<SeqSpec> length_sweep() {
  std::vector<SeqSpec> seqs;
  for (int32_t len = 1; len <= 600; ++len) {
    int32_t q_len = 1;
    if (len % 32 == 3) {
      q_len = len;
    } else if (len % 4 == 2) {
      q_len = 1 + (len * 7) % std::min(len, 24);
    }
    seqs.push_back({len, q_len});
  }
  return seqs;
}

using SweepParam = std::tuple<int64_t, int64_t>;  // group, block size

class PagedAttentionSweep : public ::testing::TestWithParam<SweepParam> {};

TEST_P(PagedAttentionSweep, EveryLengthUpTo600) {
  const auto [group, block_size] = GetParam();
  const Shape sh{at::kFloat, 1, group, 32, block_size, false};
  std::mt19937 rng(7);
  std::vector<SeqSpec> seqs = length_sweep();
  std::shuffle(seqs.begin(), seqs.end(), rng);
  expect_matches_reference(sh, seqs, static_cast<uint64_t>(group * 31 + block_size));
}

// Each GQA ratio and each block size once (the mixed batches above cover every combination).
INSTANTIATE_TEST_SUITE_P(Kernels, PagedAttentionSweep,
                         ::testing::Values(SweepParam{1, 32}, SweepParam{3, 8}, SweepParam{4, 16}),
                         [](const ::testing::TestParamInfo<SweepParam>& info) {
                           return "gqa" + std::to_string(std::get<0>(info.param)) + "_bs" +
                                  std::to_string(std::get<1>(info.param));
                         });

// A small valid batch to corrupt in the error tests: two sequences, block size 4.
Batch small_batch(int64_t num_heads, int64_t num_kv_heads) {
  const Shape sh{at::kFloat, num_kv_heads, 1, 8, 4, false};
  std::mt19937 rng(3);
  Batch batch = make_batch(sh, {{6, 2}, {9, 1}}, rng);
  batch.query = at::randn({3, num_heads, 8});
  batch.out = at::empty({3, num_heads, 8});
  return batch;
}

void call(Batch& batch) {
  ops::paged_attention(batch.out, batch.query, batch.kv, batch.query_start_loc, batch.seq_lens,
                       batch.block_table, 0.5, batch.max_query_len, batch.max_seq_len);
}

TEST(PagedAttentionErrors, SmallBatchIsValid) {
  Batch batch = small_batch(4, 2);
  EXPECT_NO_THROW(call(batch));
}

TEST(PagedAttentionErrors, BlockIdOutsideCacheThrows) {
  Batch batch = small_batch(4, 2);
  batch.block_table[1][2] = static_cast<int32_t>(batch.kv.size(1));
  EXPECT_ANY_THROW(call(batch));
  batch.block_table[1][2] = -3;
  EXPECT_ANY_THROW(call(batch));
}

TEST(PagedAttentionErrors, HeadsNotAMultipleOfKvHeadsThrows) {
  Batch five_over_two = small_batch(5, 2);
  EXPECT_ANY_THROW(call(five_over_two));
  Batch one_over_two = small_batch(1, 2);
  EXPECT_ANY_THROW(call(one_over_two));
}

TEST(PagedAttentionErrors, InconsistentMetadataThrows) {
  Batch too_long = small_batch(4, 2);
  too_long.seq_lens[1] = 13;  // needs 4 blocks, the table has 3 columns
  EXPECT_ANY_THROW(call(too_long));
  Batch q_past_context = small_batch(4, 2);
  q_past_context.seq_lens[0] = 1;  // two query tokens over a one-token context
  EXPECT_ANY_THROW(call(q_past_context));
  Batch wrong_dtype = small_batch(4, 2);
  wrong_dtype.seq_lens = wrong_dtype.seq_lens.to(at::kLong);
  EXPECT_ANY_THROW(call(wrong_dtype));
}

}  // namespace
}  // namespace taco
