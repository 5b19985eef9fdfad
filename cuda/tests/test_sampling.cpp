// sample() against a float64 host reference written from the CPU sampler's rules (greedy,
// temperature, top-k, top-p, min-p, inverse-CDF draw in id order, logprobs of the kept
// distribution, rank, top list). Outputs start poisoned. Logits are continuous random values, so
// a uniform number landing within rounding of a boundary, where the two may differ, is unlikely
// enough to ignore.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "cuda_test_util.h"
#include "sample_buffers.h"

namespace taco::cuda::testing {
namespace {

using RowCase = RowSettings;

struct Expected {
  int32_t token;
  double logprob;
  int32_t rank;
  std::vector<int32_t> top_ids;
  std::vector<double> top_logprobs;
};

Expected reference(const float* logits, int64_t vocab, const RowCase& c, int num_top) {
  const bool greedy = !(c.temperature > 0.0f);
  std::vector<float> s(vocab);
  for (int64_t t = 0; t < vocab; ++t) s[t] = greedy ? logits[t] : logits[t] / c.temperature;
  const double m = *std::max_element(s.begin(), s.end());
  double z = 0.0;
  for (float x : s) z += std::exp(x - m);
  std::vector<double> prob(vocab);
  for (int64_t t = 0; t < vocab; ++t) prob[t] = std::exp(s[t] - m) / z;
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return s[a] > s[b]; });
  Expected e;
  if (greedy) {
    e.token = order[0];
    e.rank = 1;
    for (int i = 0; i < num_top; ++i) {
      e.top_ids.push_back(order[i]);
      e.top_logprobs.push_back(s[order[i]] - m - std::log(z));
    }
    e.logprob = s[e.token] - m - std::log(z);
    return e;
  }
  // The CPU sampler's float softmax keeps subnormal probabilities: an id is eligible when its
  // float probability is not 0.
  std::vector<char> eligible(vocab);
  for (int64_t t = 0; t < vocab; ++t) {
    eligible[t] = std::exp(static_cast<float>(s[t] - m)) / static_cast<float>(z) > 0.0f;
  }
  const bool filtered = (c.top_k > 0 && c.top_k < vocab) || c.top_p < 1.0f || c.min_p > 0.0f;
  if (filtered) {
    order.erase(std::remove_if(order.begin(), order.end(), [&](int32_t t) { return !eligible[t]; }),
                order.end());
  }
  size_t keep = order.size();
  if (c.top_k > 0 && c.top_k < vocab) keep = std::min<size_t>(keep, c.top_k);
  if (c.top_p < 1.0f) {
    double total = 0.0;
    for (size_t i = 0; i < keep; ++i) total += prob[order[i]];
    double cum = 0.0;
    for (size_t i = 0; i < keep; ++i) {
      cum += prob[order[i]];
      if (cum >= c.top_p * total) {
        keep = i + 1;
        break;
      }
    }
  }
  std::vector<char> kept(vocab, 0);
  const double cut = c.min_p * prob[order[0]];
  for (size_t i = 0; i < keep; ++i) kept[order[i]] = prob[order[i]] >= cut;
  double total = 0.0;
  for (int64_t t = 0; t < vocab; ++t) total += kept[t] ? prob[t] : 0.0;
  const double target = c.uniform * total;
  double cum = 0.0;
  e.token = -1;
  for (int64_t t = 0; t < vocab && e.token < 0; ++t) {
    if (!kept[t]) continue;
    cum += prob[t];
    if (cum > target) e.token = static_cast<int32_t>(t);
  }
  e.logprob = std::log(prob[e.token] / total);
  e.rank = 1;
  for (int64_t t = 0; t < vocab; ++t) e.rank += kept[t] && prob[t] > prob[e.token];
  for (int32_t t : order) {
    if (static_cast<int>(e.top_ids.size()) == num_top) break;
    if (!kept[t]) continue;
    e.top_ids.push_back(t);
    e.top_logprobs.push_back(eligible[t] ? std::log(prob[t] / total) : -INFINITY);
  }
  while (static_cast<int>(e.top_ids.size()) < num_top) {
    e.top_ids.push_back(-1);
    e.top_logprobs.push_back(-INFINITY);
  }
  return e;
}

void check_rows(int64_t vocab, int64_t stride, const std::vector<RowCase>& cases, int num_top,
                float logit_scale) {
  const int64_t rows = static_cast<int64_t>(cases.size());
  std::mt19937 rng(static_cast<uint32_t>(vocab * 31 + num_top));
  const std::vector<float> logits = random_vector<float>(rows * stride, rng, logit_scale);
  const DeviceBuffer<float> d_logits(logits);
  const SampleBuffers buf(cases, num_top);
  const SampleParams p = buf.params(d_logits.get(), vocab, stride);
  TACO_CUDA_LAUNCH_OK(sample(p, nullptr));
  const auto token = buf.token.download(), rank = buf.rank.download();
  const auto top_ids = buf.top_ids.download();
  const auto logprob = buf.logprob.download(), top_lp = buf.top_logprobs.download();
  for (int64_t r = 0; r < rows; ++r) {
    const Expected e = reference(logits.data() + r * stride, vocab, cases[r], num_top);
    SCOPED_TRACE(::testing::Message()
                 << "vocab " << vocab << " row " << r << " T " << cases[r].temperature << " k "
                 << cases[r].top_k << " p " << cases[r].top_p << " min_p " << cases[r].min_p
                 << " u " << cases[r].uniform);
    EXPECT_EQ(token[r], e.token);
    EXPECT_EQ(rank[r], e.rank);
    EXPECT_TRUE(close(logprob[r], e.logprob, 1e-4, 1e-4)) << logprob[r] << " vs " << e.logprob;
    for (int i = 0; i < num_top; ++i) {
      EXPECT_EQ(top_ids[r * num_top + i], e.top_ids[i]) << "top " << i;
      if (e.top_ids[i] >= 0 && e.top_logprobs[i] > -INFINITY) {
        EXPECT_TRUE(close(top_lp[r * num_top + i], e.top_logprobs[i], 1e-4, 1e-4))
            << "top " << i << ": " << top_lp[r * num_top + i] << " vs " << e.top_logprobs[i];
      } else {
        EXPECT_EQ(top_lp[r * num_top + i], -INFINITY) << "top " << i;
      }
    }
  }
}

std::vector<RowCase> mixed_cases() {
  std::vector<RowCase> cases = {
      {0.0f, -1, 1.0f, 0.0f, 0.0},      // greedy
      {0.0f, 50, 0.5f, 0.2f, 0.7},      // greedy ignores the filters
      {1.0f, -1, 1.0f, 0.0f, 0.5},      // plain sampling
      {0.7f, -1, 1.0f, 0.0f, 0.999},    // the tail of the id order
      {0.7f, -1, 1.0f, 0.0f, 0.0},      // the first kept id
      {1.0f, 1, 1.0f, 0.0f, 0.9},       // top-k 1 is greedy
      {0.8f, 50, 1.0f, 0.0f, 0.31},     // top-k
      {1.2f, -1, 0.9f, 0.0f, 0.62},     // top-p
      {0.5f, -1, 0.01f, 0.0f, 0.5},     // top-p keeping one id
      {1.0f, -1, 1.0f, 0.05f, 0.44},    // min-p
      {0.9f, 40, 0.8f, 0.1f, 0.77},     // all three
      {1.5f, 2000, 0.95f, 0.0f, 0.13},  // a wide top-k under top-p
      {0.05f, -1, 1.0f, 0.0f, 0.5},     // low temperature: most probabilities are 0 or subnormal
      {0.05f, 3, 1.0f, 0.0f, 0.5},      // ... with a top-k above the ids of nonzero probability
  };
  return cases;
}

TEST(Sampling, MatchesTheHostReference) {
  TACO_REQUIRE_GPU();
  check_rows(49152, 49152, mixed_cases(), 5, 3.0f);   // SmolLM2's vocab
  check_rows(49152, 49160, mixed_cases(), 20, 1.0f);  // padded rows, flatter logits, 20 top
  check_rows(1000, 1000, mixed_cases(), 0, 5.0f);     // a vocab below one pass of the block
}

TEST(Sampling, ManyRowsWithRandomSettings) {
  TACO_REQUIRE_GPU();
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::vector<RowCase> cases;
  for (int i = 0; i < 96; ++i) {
    const float u = unit(rng);
    cases.push_back({i % 7 == 0 ? 0.0f : 0.3f + 1.5f * unit(rng),
                     i % 3 == 0 ? static_cast<int32_t>(1 + 300 * unit(rng)) : -1,
                     i % 2 == 0 ? 0.5f + 0.5f * unit(rng) : 1.0f, i % 5 == 0 ? 0.1f * u : 0.0f,
                     static_cast<double>(unit(rng))});
  }
  check_rows(32000, 32000, cases, 3, 2.5f);
}

TEST(Sampling, RejectsBadParams) {
  SampleParams p;
  p.rows = 1;
  p.vocab = 10;
  p.logits_stride = 5;  // below vocab
  EXPECT_EQ(sample(p, nullptr), cudaErrorInvalidValue);
  p.logits_stride = 10;
  p.num_top = kMaxSampleTop + 1;
  EXPECT_EQ(sample(p, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace taco::cuda::testing
