// The paged-attention kernel for mixed prefill/decode batches (plan in taco/cuda/attention.h);
// decode-only batches go to paged_attention_decode.cu.
// Grid: x = sequence * q_tiles + query tile, y = kv head * head_chunks + head chunk, z = key split.
// A CTA's rows are (token, head) pairs; warp w owns rows w, w + 4, w + 8, w + 12 and keeps their
// online-softmax state (max, sum, head_dim / 32 accumulators per lane) in registers.
#include <cmath>

#include "attention_plan.cuh"

namespace taco::cuda {
namespace {

// Shared memory of one CTA: queries [kAttnRows, D] float (pre-scaled), K chunk
// [kAttnChunk, D + pad] (the 16-byte pad spreads lane-per-key row reads over all banks), V chunk
// [kAttnChunk, D].
template <typename T, int D>
struct Smem {
  static constexpr int kKStride = D + kVec<T>;
  static constexpr size_t kBytes =
      sizeof(float) * kAttnRows * D + sizeof(T) * kAttnChunk * (kKStride + D);
};

// Stages keys [c0, c0 + kAttnChunk) of one kv head, 16 bytes per thread per step; keys at or past
// key_end are zero-filled so that masked lanes multiply finite values.
template <typename T, int D>
__device__ void stage_chunk(const PagedAttentionParams& p, const int32_t* table, int kv_head,
                            int c0, int key_end, T* ks, T* vs) {
  using P = Pack<T, kVec<T>>;
  constexpr int kPacks = D / kVec<T>;  // 16-byte packs per row
  const T* k_cache = static_cast<const T*>(p.kv);
  const int64_t half = p.num_blocks * p.num_kv_heads * p.block_size * D;
  for (int i = threadIdx.x; i < kAttnChunk * kPacks; i += blockDim.x) {
    const int j = i / kPacks, v = i % kPacks, pos = c0 + j;
    P k{}, val{};
    if (pos < key_end) {
      const int64_t block = table[pos / p.block_size];
      const int64_t off =
          ((block * p.num_kv_heads + kv_head) * p.block_size + pos % p.block_size) * D;
      k = reinterpret_cast<const P*>(k_cache + off)[v];
      val = reinterpret_cast<const P*>(k_cache + half + off)[v];
    }
    reinterpret_cast<P*>(ks + j * Smem<T, D>::kKStride)[v] = k;
    reinterpret_cast<P*>(vs + j * D)[v] = val;
  }
}

// Score of the query row q (float, pre-scaled) against the staged key row k.
template <typename T, int D>
__device__ float score(const float* q, const T* k) {
  using P = Pack<T, kVec<T>>;
  float s = 0.0f;
#pragma unroll
  for (int v = 0; v < D / kVec<T>; ++v) {
    const P kp = reinterpret_cast<const P*>(k)[v];
#pragma unroll
    for (int e = 0; e < kVec<T>; ++e) s += q[v * kVec<T> + e] * to_float(kp.v[e]);
  }
  return s;
}

template <typename T, int D>
struct RowState {
  static constexpr int kPerLane = D / 32;
  float m = -INFINITY, l = 0.0f;
  float acc[kPerLane] = {};

  // One chunk: s is this lane's score (key c0 + lane), -inf where masked.
  __device__ void update(float s, const T* vs, int lane) {
    const float m_new = fmaxf(m, warp_max(s));
    if (m_new == -INFINITY) return;  // warp-uniform: no visible key yet
    const float alpha = __expf(m - m_new);
    const float pj = s == -INFINITY ? 0.0f : __expf(s - m_new);
    l = l * alpha + warp_sum(pj);
#pragma unroll
    for (int e = 0; e < kPerLane; ++e) acc[e] *= alpha;
    for (int j = 0; j < kAttnChunk; ++j) {
      const float pk = __shfl_sync(0xffffffffu, pj, j);
      const T* v = vs + j * D + lane * kPerLane;
#pragma unroll
      for (int e = 0; e < kPerLane; ++e) acc[e] += pk * to_float(v[e]);
    }
    m = m_new;
  }
};

template <typename T, int D>
__global__ void __launch_bounds__(kAttnWarps * 32)
    paged_attention_kernel(PagedAttentionParams p, AttentionPlan plan) {
  extern __shared__ __align__(16) unsigned char smem[];
  float* qs = reinterpret_cast<float*>(smem);
  T* ks = reinterpret_cast<T*>(qs + kAttnRows * D);
  T* vs = ks + kAttnChunk * Smem<T, D>::kKStride;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;

  const int seq = blockIdx.x / plan.q_tiles, tile = blockIdx.x % plan.q_tiles;
  const int kv_head = blockIdx.y / plan.head_chunks, chunk = blockIdx.y % plan.head_chunks;
  const int q0 = p.query_start_loc[seq];
  const int q_len = p.query_start_loc[seq + 1] - q0;
  const int t0 = tile * plan.tile_tokens;
  if (t0 >= q_len) return;  // a tile past this sequence's query tokens (grid sized by the longest)
  const int group = static_cast<int>(p.num_heads / p.num_kv_heads);
  const int head_in_group0 = chunk * plan.heads_per_cta;
  const int rows = (min(q_len, t0 + plan.tile_tokens) - t0) * plan.heads_per_cta;
  auto row_valid = [&](int r) {
    return r < rows && head_in_group0 + r % plan.heads_per_cta < group;
  };
  auto row_token = [&](int r) { return t0 + r / plan.heads_per_cta; };
  auto row_head = [&](int r) { return kv_head * group + head_in_group0 + r % plan.heads_per_cta; };

  const int seq_len = p.seq_lens[seq];
  const int first_pos = seq_len - q_len;  // position of query token 0
  const int key_begin = blockIdx.z * plan.partition_keys;
  const int key_end =
      min(first_pos + min(q_len, t0 + plan.tile_tokens), key_begin + plan.partition_keys);

  for (int i = threadIdx.x; i < kAttnRows * D; i += blockDim.x) {
    const int r = i / D, d = i % D;
    float q = 0.0f;
    if (row_valid(r)) {
      const int64_t token = q0 + row_token(r);
      q = to_float(static_cast<const T*>(p.query)[token * p.query_stride + row_head(r) * D + d]);
    }
    qs[i] = q * p.scale;
  }

  RowState<T, D> state[kAttnRowsPerWarp];
  const int32_t* table = p.block_table + seq * p.max_blocks_per_seq;
  for (int c0 = key_begin; c0 < key_end; c0 += kAttnChunk) {
    __syncthreads();  // the previous chunk is consumed (and, first time, qs is written)
    stage_chunk<T, D>(p, table, kv_head, c0, key_end, ks, vs);
    __syncthreads();
    const int pos = c0 + lane;
#pragma unroll
    for (int i = 0; i < kAttnRowsPerWarp; ++i) {
      const int r = warp + i * kAttnWarps;
      if (!row_valid(r)) continue;  // warp-uniform
      const bool visible = pos < key_end && pos <= first_pos + row_token(r);
      const float s =
          visible ? score<T, D>(qs + r * D, ks + lane * Smem<T, D>::kKStride) : -INFINITY;
      state[i].update(s, vs, lane);
    }
  }

  const int64_t heads_rows = p.tokens * p.num_heads;  // (token, head) rows of one split
#pragma unroll
  for (int i = 0; i < kAttnRowsPerWarp; ++i) {
    const int r = warp + i * kAttnWarps;
    if (!row_valid(r)) continue;
    const int64_t row = static_cast<int64_t>(q0 + row_token(r)) * p.num_heads + row_head(r);
    const RowState<T, D>& st = state[i];
    if (plan.num_splits == 1) {
      T* out = static_cast<T*>(p.out) + row * D + lane * RowState<T, D>::kPerLane;
#pragma unroll
      for (int e = 0; e < RowState<T, D>::kPerLane; ++e) out[e] = from_float<T>(st.acc[e] / st.l);
    } else {
      const int64_t srow = blockIdx.z * heads_rows + row;
      float* acc = p.workspace + srow * D + lane * RowState<T, D>::kPerLane;
#pragma unroll
      for (int e = 0; e < RowState<T, D>::kPerLane; ++e) acc[e] = st.acc[e];
      if (lane == 0) {
        float* stats = p.workspace + static_cast<int64_t>(plan.num_splits) * heads_rows * D;
        stats[srow] = st.m;  // max, then sum: layout in attention_plan.cuh
        stats[plan.num_splits * heads_rows + srow] = st.l;
      }
    }
  }
}

template <typename T, int D>
cudaError_t launch(const PagedAttentionParams& p, const AttentionPlan& plan, cudaStream_t stream) {
  constexpr size_t kSmem = Smem<T, D>::kBytes;
  auto* kernel = paged_attention_kernel<T, D>;
  if (kSmem > 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kSmem));
    if (err != cudaSuccess) return err;
  }
  const dim3 grid(static_cast<unsigned>(p.num_seqs * plan.q_tiles),
                  static_cast<unsigned>(p.num_kv_heads * plan.head_chunks),
                  static_cast<unsigned>(plan.num_splits));
  kernel<<<grid, kAttnWarps * 32, kSmem, stream>>>(p, plan);
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess && plan.num_splits > 1)
    err = launch_attention_reduce(p, plan.num_splits, stream);
  return err;
}

cudaError_t device_sms(int* sms) {
  int device = 0;
  const cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  return cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, device);
}

bool supported(const PagedAttentionParams& p) {
  const bool dim = paged_attention_head_dim_supported(p.head_dim);
  return dim && p.num_kv_heads > 0 && p.num_heads % p.num_kv_heads == 0 && p.block_size > 0;
}

}  // namespace

size_t paged_attention_workspace_bytes(const PagedAttentionParams& p) {
  int sms = 0;
  if (!supported(p) || device_sms(&sms) != cudaSuccess) return 0;
  if (use_decode_path(p)) return sizeof(float) * decode_workspace_floats(p, sms);
  return sizeof(float) * attention_workspace_floats(p, make_attention_plan(p, sms).num_splits);
}

cudaError_t paged_attention(const PagedAttentionParams& p, cudaStream_t stream) {
  if (p.tokens == 0 || p.num_seqs == 0) return cudaSuccess;
  if (!p.check().empty()) return cudaErrorInvalidValue;
  if (!supported(p)) return cudaErrorInvalidValue;
  // 8-bit caches are built for the CPU kernels only.
  if (p.cache_type != kernels::KvCacheType::kModel) return cudaErrorInvalidValue;
  int sms = 0;
  if (const cudaError_t err = device_sms(&sms); err != cudaSuccess) return err;
  if (use_decode_path(p)) return paged_attention_decode(p, sms, stream);
  const AttentionPlan plan = make_attention_plan(p, sms);
  if (attention_workspace_floats(p, plan.num_splits) > 0 && !p.workspace)
    return cudaErrorInvalidValue;
  return dispatch(p.dtype, [&]<typename T>() {
    switch (p.head_dim) {
      case 64:
        return launch<T, 64>(p, plan, stream);
      case 96:
        return launch<T, 96>(p, plan, stream);
      case 128:
        return launch<T, 128>(p, plan, stream);
      default:
        return launch<T, 256>(p, plan, stream);
    }
  });
}

}  // namespace taco::cuda
