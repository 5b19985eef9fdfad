// Device sampling (see taco/cuda/sampling.h). One block of kThreads per row, no workspace:
// each pass over a row recomputes s = logit / T and prob = exp(s - max) / Z from the logits,
// which stay in L2 across passes.
//
// Ordering: every id gets a 64-bit key, its score's order-preserving bits above the complement
// of its id, so keys descend as the sampler's order does (score descending, ties by lower id)
// and no two ids share one. The kept set of a sampled row is then "key >= floor" (plus prob > 0
// and the min-p cut), and floor comes from radix selection over the keys, eight bits a pass:
// by count for top-k, by probability mass for top-p.
#include <cfloat>
#include <climits>

#include "common.cuh"
#include "taco/cuda/sampling.h"

namespace taco::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kBins = 256;
constexpr unsigned kFull = 0xffffffffu;

using Key = unsigned long long;

// Larger float, larger result (NaN aside); -0 and +0 map alike, as they compare equal.
__device__ __forceinline__ uint32_t ordered_bits(float x) {
  uint32_t u = __float_as_uint(x);
  if ((u << 1) == 0) u = 0;
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ Key sort_key(float score, int64_t id) {
  return (static_cast<Key>(ordered_bits(score)) << 32) | (0xffffffffu - static_cast<uint32_t>(id));
}

__device__ __forceinline__ int32_t id_of(Key key) {
  return static_cast<int32_t>(0xffffffffu - static_cast<uint32_t>(key & 0xffffffffu));
}

struct MaxOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a > b ? a : b;
  }
};
struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};

// Reduction over the block; every thread gets the result. All threads must call it.
template <typename T, typename Op>
__device__ T block_reduce(T x, Op op, T identity) {
  __shared__ T partial[kWarps];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = op(x, __shfl_xor_sync(kFull, x, o));
  __syncthreads();  // partial may still be read by the previous call
  if (lane == 0) partial[warp] = x;
  __syncthreads();
  x = lane < kWarps ? partial[lane] : identity;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = op(x, __shfl_xor_sync(kFull, x, o));
  return x;
}

// Exclusive prefix sum over the block in thread order. All threads must call it.
__device__ double block_exclusive_scan(double x) {
  __shared__ double warp_total[kWarps];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  double inclusive = x;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const double y = __shfl_up_sync(kFull, inclusive, o);
    if (lane >= o) inclusive += y;
  }
  double exclusive = __shfl_up_sync(kFull, inclusive, 1);
  if (lane == 0) exclusive = 0.0;
  __syncthreads();
  if (lane == 31) warp_total[warp] = inclusive;
  __syncthreads();
  if (warp == 0) {
    double w = lane < kWarps ? warp_total[lane] : 0.0;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const double y = __shfl_up_sync(kFull, w, o);
      if (lane >= o) w += y;
    }
    if (lane < kWarps) warp_total[lane] = w;  // inclusive totals of warps 0..lane
  }
  __syncthreads();
  return (warp > 0 ? warp_total[warp - 1] : 0.0) + exclusive;
}

// One row's softmax statistics and filters.
struct Row {
  const float* logits;
  int64_t vocab;
  bool greedy;
  bool filtered = false;  // top-k, top-p or min-p on: only kept ids are listed
  float temperature;      // 1 for greedy rows
  float max_score;
  float z;  // sum of exp(s - max_score)
  float log_z;
  Key floor = 0;     // kept: key >= floor
  float cut = 0.0f;  // kept: prob >= cut

  // The CPU sampler divides the logits by the temperature (it does not multiply by 1 / T); an
  // IEEE division, not the fast-math approximation.
  __device__ float score(int64_t t) const {
    return greedy ? logits[t] : __fdiv_rn(logits[t], temperature);
  }
  // Fast-math flushes probabilities below 2^-126 to 0, so masses lose them (they are below any
  // rounding of the sums), but whether an id has a nonzero probability is decided as the CPU's
  // softmax, which keeps subnormals, would: log prob >= ln(2^-150).
  __device__ float prob(float s) const { return expf(s - max_score) / z; }
  __device__ bool positive(float s) const { return s - max_score - log_z >= -103.97f; }
  // Unfiltered rows keep every id (those of probability 0 carry no mass and list as -inf).
  __device__ bool kept(float s, int64_t t) const {
    if (greedy || !filtered) return true;
    return positive(s) && prob(s) >= cut && sort_key(s, t) >= floor;
  }
};

struct Shared {
  int count[kBins];
  double mass[kBins];
  double stage[kThreads];  // one slot per thread, for the warp-aggregated mass adds
  int chosen;
  double need;
  int token;
};

// The key K among candidates (prob > 0, key >= floor) at which the running count (kByMass false)
// or running probability mass (true), walking keys downward, first reaches need. Returns 0 when
// the candidates never reach it. Eight bits of the key a pass, most significant first; lanes of a
// warp that fall into the same bin add to the histogram once.
template <bool kByMass>
__device__ Key radix_select(const Row& r, Key floor, double need, Shared& sh) {
  const int lane = threadIdx.x % 32;
  Key prefix = 0, mask = 0;
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < kBins; i += kThreads) sh.count[i] = 0, sh.mass[i] = 0.0;
    __syncthreads();
    for (int64_t base = 0; base < r.vocab; base += kThreads) {  // uniform trip count
      const int64_t t = base + threadIdx.x;
      int digit = kBins;  // not a candidate
      double pr = 0.0;
      if (t < r.vocab) {
        const float s = r.score(t);
        const Key key = sort_key(s, t);
        if (r.positive(s) && key >= floor && (key & mask) == prefix) {
          digit = static_cast<int>((key >> shift) & 0xff);
          pr = r.prob(s);
        }
      }
      const unsigned peers = __match_any_sync(kFull, digit);
      if (kByMass) sh.stage[threadIdx.x] = pr;
      __syncwarp();
      if (digit < kBins && lane == __ffs(peers) - 1) {
        atomicAdd(&sh.count[digit], __popc(peers));
        if (kByMass) {
          const double* warp_stage = sh.stage + (threadIdx.x - lane);
          double sum = 0.0;
          for (unsigned m = peers; m != 0; m &= m - 1) sum += warp_stage[__ffs(m) - 1];
          atomicAdd(&sh.mass[digit], sum);
        }
      }
      __syncwarp();  // stage is rewritten next iteration
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      double before = 0.0;
      sh.chosen = -1;
      for (int d = kBins - 1; d >= 0; --d) {
        const double v = kByMass ? sh.mass[d] : static_cast<double>(sh.count[d]);
        if (sh.count[d] > 0 && before + v >= need) {
          sh.chosen = d;
          sh.need = need - before;
          break;
        }
        before += v;
      }
      // Past the first pass the chosen bin's parts were summed in another order than the bin and
      // may fall short of need by a rounding: keep the whole bin (its lowest key).
      if (sh.chosen < 0 && shift < 56) {
        for (int d = 0; d < kBins && sh.chosen < 0; ++d) {
          if (sh.count[d] > 0) sh.chosen = d, sh.need = 0.0;
        }
      }
    }
    __syncthreads();
    const int chosen = sh.chosen;
    need = sh.need;
    const bool unique = chosen >= 0 && sh.count[chosen] == 1;
    __syncthreads();  // read before the next pass clears the histogram
    if (chosen < 0) return 0;
    prefix |= static_cast<Key>(chosen) << shift;
    mask |= static_cast<Key>(0xff) << shift;
    if (unique) {  // one candidate left: its key is the answer
      Key best = 0;
      for (int64_t t = threadIdx.x; t < r.vocab; t += kThreads) {
        const float s = r.score(t);
        const Key key = sort_key(s, t);
        if (r.positive(s) && key >= floor && (key & mask) == prefix) best = key;
      }
      return block_reduce(best, MaxOp{}, Key{0});
    }
  }
  return prefix;
}

// Sum of prob over kept ids (count too).
__device__ double kept_mass(const Row& r, int* count) {
  double mass = 0.0;
  int n = 0;
  for (int64_t t = threadIdx.x; t < r.vocab; t += kThreads) {
    const float s = r.score(t);
    if (r.kept(s, t)) mass += r.prob(s), ++n;
  }
  *count = block_reduce(n, SumOp{}, 0);
  return block_reduce(mass, SumOp{}, 0.0);
}

// Largest key of a kept id below `below` (0 when there is none).
__device__ Key next_kept_key(const Row& r, Key below) {
  Key best = 0;
  for (int64_t t = threadIdx.x; t < r.vocab; t += kThreads) {
    const float s = r.score(t);
    const Key key = sort_key(s, t);
    if (key < below && key > best && r.kept(s, t)) best = key;
  }
  return block_reduce(best, MaxOp{}, Key{0});
}

// Inverse-CDF draw over the kept ids in id order: the first id at which the running mass exceeds
// target. Each thread walks one contiguous chunk of ids.
__device__ int32_t draw(const Row& r, double target, Shared& sh) {
  const int64_t chunk = (r.vocab + kThreads - 1) / kThreads;
  const int64_t begin = min(r.vocab, threadIdx.x * chunk);
  const int64_t end = min(r.vocab, begin + chunk);
  double mass = 0.0;
  for (int64_t t = begin; t < end; ++t) {
    const float s = r.score(t);
    if (r.kept(s, t)) mass += r.prob(s);
  }
  if (threadIdx.x == 0) sh.token = INT_MAX;
  const double before = block_exclusive_scan(mass);  // synchronizes: sh.token is set
  // A chunk's range ends where the next chunk's begins, so the ranges tile [0, total) without
  // gaps whatever the rounding of the scan.
  sh.stage[threadIdx.x] = before;
  __syncthreads();
  const double after = threadIdx.x + 1 < kThreads ? sh.stage[threadIdx.x + 1] : INFINITY;
  if (mass > 0.0 && before <= target && target < after) {
    double cum = before;
    int last = -1;
    for (int64_t t = begin; t < end; ++t) {
      const float s = r.score(t);
      if (!r.kept(s, t) || !(r.prob(s) > 0.0f)) continue;
      cum += r.prob(s);
      last = static_cast<int>(t);
      if (cum > target) break;
    }
    atomicMin(&sh.token, last);  // the crossing, or the chunk's last id when rounding missed it
  }
  __syncthreads();
  const int token = sh.token;
  if (token != INT_MAX) return token;
  // Rounding put the target past every chunk: take the last id with mass, as the CPU sampler
  // does.
  int last = -1;
  for (int64_t t = threadIdx.x; t < r.vocab; t += kThreads) {
    const float s = r.score(t);
    if (r.kept(s, t) && r.prob(s) > 0.0f) last = max(last, static_cast<int>(t));
  }
  return block_reduce(last, MaxOp{}, -1);
}

__global__ void __launch_bounds__(kThreads) sample_kernel(SampleParams p) {
  __shared__ Shared sh;
  const int64_t row = blockIdx.x;
  Row r;
  r.logits = p.logits + row * p.logits_stride;
  r.vocab = p.vocab;
  const float temperature = p.temperature[row];
  r.greedy = !(temperature > 0.0f);
  r.temperature = r.greedy ? 1.0f : temperature;

  float mx = -INFINITY;
  for (int64_t t = threadIdx.x; t < r.vocab; t += kThreads) mx = fmaxf(mx, r.score(t));
  r.max_score = block_reduce(mx, MaxOp{}, -INFINITY);
  float z = 0.0f;
  for (int64_t t = threadIdx.x; t < r.vocab; t += kThreads) z += expf(r.score(t) - r.max_score);
  r.z = block_reduce(z, SumOp{}, 0.0f);
  r.log_z = logf(r.z);

  float log_total = 0.0f;  // log of the kept mass (sampled rows)
  int32_t token;
  if (r.greedy) {
    token = id_of(next_kept_key(r, ~Key{0}));  // the first maximum
  } else {
    const int32_t top_k = p.top_k[row];
    const float top_p = p.top_p[row];
    const float min_p = p.min_p[row];
    r.filtered = (top_k > 0 && top_k < r.vocab) || top_p < 1.0f || min_p > 0.0f;
    if (top_k > 0 && top_k < r.vocab) {
      int positive = 0;
      for (int64_t t = threadIdx.x; t < r.vocab; t += kThreads) positive += r.positive(r.score(t));
      positive = block_reduce(positive, SumOp{}, 0);
      if (top_k < positive) r.floor = radix_select<false>(r, 0, top_k, sh);
    }
    if (top_p < 1.0f) {
      int unused = 0;
      const double total = kept_mass(r, &unused);
      const Key k = radix_select<true>(r, r.floor, static_cast<double>(top_p) * total, sh);
      if (k != 0) r.floor = k;
    }
    if (min_p > 0.0f) r.cut = min_p * (1.0f / r.z);  // min_p * the largest probability
    int n = 0;
    double total = kept_mass(r, &n);
    if (n == 0) {  // nothing passed the filters: keep the most probable id alone
      r.cut = 0.0f;
      r.floor = next_kept_key(r, ~Key{0});
      total = kept_mass(r, &n);
    }
    log_total = static_cast<float>(log(total));
    token = draw(r, p.uniform[row] * total, sh);
  }

  // The value a kept id reports: log(prob / kept mass), from the score to keep subnormal
  // probabilities finite; -inf for probability 0, as the CPU's log(0).
  auto logprob_of = [&](int32_t t) {
    const float s = r.score(t);
    return r.greedy || r.positive(s) ? s - r.max_score - r.log_z - log_total : -INFINITY;
  };
  int rank = 1;
  if (!r.greedy) {
    const float p_token = r.prob(r.score(token));
    int above = 0;
    for (int64_t t = threadIdx.x; t < r.vocab; t += kThreads) {
      const float s = r.score(t);
      above += r.kept(s, t) && r.prob(s) > p_token;
    }
    rank = 1 + block_reduce(above, SumOp{}, 0);
  }
  if (threadIdx.x == 0) {
    p.token[row] = token;
    p.logprob[row] = logprob_of(token);
    p.rank[row] = rank;
  }
  Key below = ~Key{0};
  for (int i = 0; i < p.num_top; ++i) {
    const Key key = below == 0 ? 0 : next_kept_key(r, below);
    if (threadIdx.x == 0) {
      const int32_t id = key == 0 ? -1 : id_of(key);
      p.top_ids[row * p.num_top + i] = id;
      p.top_logprobs[row * p.num_top + i] = key == 0 ? -INFINITY : logprob_of(id);
    }
    below = key;
  }
}

}  // namespace

cudaError_t sample(const SampleParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  if (p.vocab <= 0 || p.vocab > INT_MAX || p.logits_stride < p.vocab || p.rows > INT_MAX ||
      p.num_top < 0 || p.num_top > kMaxSampleTop || (p.num_top > 0 && !p.top_ids)) {
    return cudaErrorInvalidValue;
  }
  sample_kernel<<<static_cast<unsigned>(p.rows), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace taco::cuda
