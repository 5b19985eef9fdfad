// How a paged-attention call is cut into CTAs and key splits (attention.h describes the scheme).
// Shared by the attention kernel, its workspace query and the split reduction so all three agree.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "common.cuh"
#include "taco/cuda/attention.h"

namespace taco::cuda {

constexpr int kAttnWarps = 4;
constexpr int kAttnRows = 16;  // query rows (token, head) per CTA
constexpr int kAttnRowsPerWarp = kAttnRows / kAttnWarps;
constexpr int kAttnChunk = 32;          // keys staged in shared memory at a time
constexpr int kMinPartitionKeys = 512;  // fewest keys worth a split of their own
constexpr int kMaxSplits = 32;
constexpr int kTargetCtasPerSm = 8;  // split until the grid holds this many per SM

struct AttentionPlan {
  int heads_per_cta = 1;   // GQA heads of one kv head that share a CTA (<= kAttnRows)
  int tile_tokens = 1;     // query tokens per CTA: kAttnRows / heads_per_cta
  int q_tiles = 1;         // CTAs per sequence along its query tokens (from max_query_len)
  int head_chunks = 1;     // CTAs per kv head along its GQA group
  int num_splits = 1;      // key partitions (grid z); > 1 needs the workspace and the reduction
  int partition_keys = 0;  // keys per split, a multiple of kAttnChunk
};

inline AttentionPlan make_attention_plan(const PagedAttentionParams& p, int num_sms) {
  AttentionPlan plan;
  const int64_t group = p.num_heads / p.num_kv_heads;
  plan.heads_per_cta = static_cast<int>(std::min<int64_t>(group, kAttnRows));
  plan.tile_tokens = kAttnRows / plan.heads_per_cta;
  plan.head_chunks = static_cast<int>(ceil_div(group, plan.heads_per_cta));
  plan.q_tiles =
      static_cast<int>(ceil_div(std::max<int64_t>(p.max_query_len, 1), plan.tile_tokens));
  const int64_t ctas = p.num_seqs * plan.q_tiles * p.num_kv_heads * plan.head_chunks;
  const int64_t max_splits =
      std::min<int64_t>(kMaxSplits, std::max<int64_t>(1, p.max_seq_len / kMinPartitionKeys));
  const int64_t wanted =
      ceil_div(static_cast<int64_t>(kTargetCtasPerSm) * num_sms, std::max<int64_t>(ctas, 1));
  plan.num_splits = static_cast<int>(std::clamp<int64_t>(wanted, 1, max_splits));
  const int64_t keys = ceil_div(std::max<int64_t>(p.max_seq_len, 1), plan.num_splits);
  plan.partition_keys = static_cast<int>(ceil_div(keys, kAttnChunk) * kAttnChunk);
  return plan;
}

// Workspace of a split call, float32: acc [splits, tokens, heads, head_dim], then max and sum,
// each [splits, tokens, heads]. Both the mixed and the decode kernel write this layout.
inline size_t attention_workspace_floats(const PagedAttentionParams& p, int num_splits) {
  if (num_splits == 1) return 0;
  return static_cast<size_t>(num_splits) * p.tokens * p.num_heads * (p.head_dim + 2);
}

// Merges the num_splits partials of every (token, head) into out (paged_attention_reduce.cu).
cudaError_t launch_attention_reduce(const PagedAttentionParams& p, int num_splits,
                                    cudaStream_t stream);

// ---- Decode path: one CTA per (sequence, kv head x head chunk, key split).

// One decode-kernel configuration: element type, head_dim, GQA heads per CTA, warps per CTA, keys
// per slot per stage, cp.async stages (paged_attention_decode.cu describes the thread layout).
template <typename T, int D, int HEADS, int WARPS, int KPT, int STAGES>
struct DecodeCfg {
  using Elem = T;
  static constexpr int kD = D, kHeads = HEADS, kWarps = WARPS, kStages = STAGES;
  static constexpr int kThreads = WARPS * 32;
  static constexpr int kVecN = kVec<T>;     // elements per 16-byte pack
  static constexpr int kPacks = D / kVecN;  // packs per K or V row
  // Threads per key: the largest power of two dividing kPacks (96: 3 packs each), at most a warp.
  static constexpr int kTpk = std::min(kPacks & -kPacks, 32);
  static constexpr int kPpt = kPacks / kTpk;  // packs per thread per row
  static constexpr int kDims = kPpt * kVecN;  // head_dim elements a thread owns
  // Keys per slot per stage: a thread that owns several packs per row keeps about the same bytes
  // in flight with fewer keys.
  static constexpr int kKpt = std::max(1, KPT / kPpt);
  static constexpr int kSlots = kThreads / kTpk;
  static constexpr int kStageKeys = kSlots * kKpt;  // keys the CTA stages per step
  static constexpr size_t kPipeBytes = sizeof(T) * 2 * STAGES * kStageKeys * D;
  static constexpr size_t kMergeBytes = sizeof(float) * WARPS * HEADS * (D + 2);
  static constexpr size_t kSmem = std::max(kPipeBytes, kMergeBytes);
  // q and the accumulators take 2 * HEADS * kDims registers a thread: light configurations must
  // fit 16 warps per SM (128 registers), heavy ones 12.
  static constexpr int kMinBlocks = std::max(1, (HEADS * kDims <= 32 ? 16 : 12) / WARPS);
};

// The decode configurations the bench compares; entry 0 is the default. Entries past 0 are built
// for bf16, head_dim 128 and 4 heads per CTA only (attention.h). mma entries run the tensor-core
// kernel of paged_attention_decode_mma.cu (keys_per_slot unused there).
struct DecodeVariant {
  const char* name;
  int warps, keys_per_slot, stages;
  bool mma;
};
inline constexpr DecodeVariant kDecodeVariants[] = {
    {"w4 k2 s4", 4, 2, 4, false}, {"w4 k1 s6", 4, 1, 6, false}, {"w4 k4 s3", 4, 4, 3, false},
    {"w8 k2 s3", 8, 2, 3, false}, {"w2 k2 s6", 2, 2, 6, false}, {"mma w2 s3", 2, 1, 3, true},
    {"mma w2 s2", 2, 1, 2, true}, {"mma w4 s3", 4, 1, 3, true},
};
inline constexpr int kNumDecodeVariants = sizeof(kDecodeVariants) / sizeof(kDecodeVariants[0]);

template <typename T, int D, int HEADS, int V>
using DecodeVariantCfg = DecodeCfg<T, D, HEADS, kDecodeVariants[V].warps,
                                   kDecodeVariants[V].keys_per_slot, kDecodeVariants[V].stages>;

// Most GQA heads a decode CTA takes for (T, D): a power of two <= 8 whose q and accumulators stay
// within 64 + 64 registers a thread.
template <typename T, int D>
constexpr int decode_max_heads() {
  int heads = 8;
  while (heads > 1 && heads * DecodeCfg<T, D, 1, 4, 1, 1>::kDims > 64) heads /= 2;
  return heads;
}

// Heads per CTA for a GQA group: the group rounded up to a power of two, capped (larger groups
// take several CTAs per kv head; padding heads are computed and dropped).
inline int decode_heads(int64_t group, int max_heads) {
  int heads = 1;
  while (heads < group && heads < max_heads) heads *= 2;
  return heads;
}

constexpr int kDecodeMinPartition = 256;   // fewest keys worth a split of their own
constexpr int kDecodeMaxPartition = 4096;  // long contexts always split: uneven batches balance

struct DecodeSplit {
  int head_chunks = 1;     // CTAs per kv head along its GQA group
  int num_splits = 1;      // key partitions (grid z)
  int partition_keys = 0;  // keys per split, a multiple of the stage's keys
};

// Splits so that the grid fills one wave of resident CTAs (blocks_per_sm per SM), keys per split
// within [kDecodeMinPartition, kDecodeMaxPartition] unless the caller fixed them.
template <class C>
DecodeSplit plan_decode(const PagedAttentionParams& p, int sms, int blocks_per_sm) {
  DecodeSplit s;
  s.head_chunks = static_cast<int>(ceil_div(p.num_heads / p.num_kv_heads, C::kHeads));
  const int64_t ctas = std::max<int64_t>(1, p.num_seqs * p.num_kv_heads * s.head_chunks);
  const int64_t keys = std::max<int64_t>(p.max_seq_len, 1);
  int64_t part = p.decode_partition_keys;
  if (part <= 0) {
    const int64_t fill = std::max<int64_t>(1, int64_t{sms} * blocks_per_sm / ctas);
    part = std::clamp<int64_t>(ceil_div(keys, fill), kDecodeMinPartition, kDecodeMaxPartition);
  }
  part = std::max<int64_t>(part, ceil_div(keys, 65535));  // grid z limit
  part = ceil_div(part, C::kStageKeys) * C::kStageKeys;
  s.partition_keys = static_cast<int>(part);
  s.num_splits = static_cast<int>(ceil_div(keys, part));
  return s;
}

// ---- Device pieces shared by the decode kernels (paged_attention_decode*.cu).

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src),
               "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Final merge of a decode CTA: red holds each warp's unnormalized output rows
// [W][ROWS][D] float (log2-domain softmax), then max [W][ROWS] and sum [W][ROWS]. Writes the
// first `heads` rows to out, or as split partials (natural-log max) to the workspace.
template <typename T, int D, int W, int ROWS>
__device__ void decode_combine(const PagedAttentionParams& p, const DecodeSplit& split, int token,
                               int head0, int heads, const float* red) {
  const float* stats = red + W * ROWS * D;
  const int64_t rows = p.tokens * p.num_heads;
  for (int i = threadIdx.x; i < heads * D; i += blockDim.x) {
    const int h = i / D, d = i % D;
    float mx = -INFINITY;
    for (int w = 0; w < W; ++w) mx = fmaxf(mx, stats[w * ROWS + h]);
    float o = 0.0f, l = 0.0f;
    for (int w = 0; mx != -INFINITY && w < W; ++w) {
      const float a = exp2f(stats[w * ROWS + h] - mx);
      o += red[(w * ROWS + h) * D + d] * a;
      l += stats[(W + w) * ROWS + h] * a;
    }
    const int64_t row = static_cast<int64_t>(token) * p.num_heads + head0 + h;
    if (split.num_splits == 1) {
      static_cast<T*>(p.out)[row * D + d] = from_float<T>(o / l);
    } else {
      const int64_t srow = blockIdx.z * rows + row;
      p.workspace[srow * D + d] = o;
      if (d == 0) {
        float* ws_stats = p.workspace + split.num_splits * rows * D;
        ws_stats[srow] = mx == -INFINITY ? -INFINITY : mx * kLn2;
        ws_stats[split.num_splits * rows + srow] = l;
      }
    }
  }
}

// CTAs of `kernel` resident per SM at this block size and dynamic shared memory, after raising
// its dynamic shared-memory limit where it needs more than 48 KB; 0 on error.
template <typename Kernel>
int resident_blocks_per_sm(Kernel* kernel, int threads, size_t smem) {
  if (smem > 48 * 1024 && cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(smem)) != cudaSuccess) {
    return 0;
  }
  int n = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, smem) != cudaSuccess) {
    return 0;
  }
  return n;
}

// What the decode kernels (paged_attention_decode.cu, paged_attention_decode_mma.cu) share: the
// split plan of config C given its residency (`blocks` CTAs per SM, 0 when it cannot be
// resident), the workspace that plan needs, and the launch of the kernel then the reduction.
using DecodeKernel = void (*)(PagedAttentionParams, DecodeSplit);

template <class C>
size_t decode_split_workspace_floats(const PagedAttentionParams& p, int sms, int blocks) {
  if (blocks == 0) return 0;
  return attention_workspace_floats(p, plan_decode<C>(p, sms, blocks).num_splits);
}

template <class C>
cudaError_t launch_decode(DecodeKernel kernel, const PagedAttentionParams& p, int sms, int blocks,
                          cudaStream_t stream) {
  if (blocks == 0) return cudaErrorInvalidConfiguration;
  const DecodeSplit split = plan_decode<C>(p, sms, blocks);
  if (split.num_splits > 1 && !p.workspace) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(p.num_seqs),
                  static_cast<unsigned>(p.num_kv_heads * split.head_chunks),
                  static_cast<unsigned>(split.num_splits));
  kernel<<<grid, C::kThreads, C::kSmem, stream>>>(p, split);
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess && split.num_splits > 1) {
    err = launch_attention_reduce(p, split.num_splits, stream);
  }
  return err;
}

// The decode path (paged_attention_decode.cu) serves batches whose sequences have at most one
// query token, unless the caller forces the mixed kernel (decode_variant -1).
inline bool use_decode_path(const PagedAttentionParams& p) {
  return p.max_query_len == 1 && p.decode_variant >= 0;
}

// Float32 workspace the decode path needs on a device with sms SMs (0: no split, or a variant
// that does not exist for these params, which paged_attention_decode then rejects).
size_t decode_workspace_floats(const PagedAttentionParams& p, int sms);

cudaError_t paged_attention_decode(const PagedAttentionParams& p, int sms, cudaStream_t stream);

// The tensor-core decode kernel (paged_attention_decode_mma.cu) for the mma variants.
size_t decode_mma_workspace_floats(const PagedAttentionParams& p, int sms);
cudaError_t paged_attention_decode_mma(const PagedAttentionParams& p, int sms, cudaStream_t stream);

inline bool is_mma_variant(int v) {
  return v >= 0 && v < kNumDecodeVariants && kDecodeVariants[v].mma;
}

}  // namespace taco::cuda
