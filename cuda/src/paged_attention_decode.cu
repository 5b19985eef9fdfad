// Decode paged attention (scheme in taco/cuda/attention.h). Grid: x = sequence, y = kv head *
// head_chunks + head chunk, z = key split. Thread layout of a CTA: kTpk consecutive threads form a
// key slot; thread t of a slot owns the 16-byte packs t, t + kTpk, ... of head_dim (kDims
// elements). Per stage a slot scores kKpt keys; every slot keeps its own online-softmax state for
// the CTA's heads, and the slots are merged once at the end.
#include <algorithm>
#include <cmath>

#include "attention_plan.cuh"

namespace taco::cuda {
namespace {

// Sum over the kTpk threads of a slot (consecutive lanes, aligned).
template <int kTpk>
__device__ __forceinline__ float slot_sum(float x) {
#pragma unroll
  for (int o = kTpk / 2; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// Where this thread's keys live and which smem slots they go to. Smem of one stage:
// [K|V][kKpt][kSlots][D], so the slots of a warp touch consecutive rows (no bank conflicts).
template <class C>
struct KeyStream {
  using T = typename C::Elem;
  const T* k_cache;  // kv[0] at this kv head's row 0 of block 0
  int64_t v_offset;  // elements from K to V of the same slot
  int64_t block_stride;
  const int32_t* table;  // this sequence's block table row
  int block_size, block_shift, key_begin, key_end, slot, t;
  T* pipe;

  __device__ T* row(int stage, int kv, int i) const {
    return pipe + ((((stage % C::kStages) * 2 + kv) * C::kKpt + i) * C::kSlots + slot) * C::kD;
  }
  __device__ int key(int stage, int i) const {
    return key_begin + stage * C::kStageKeys + i * C::kSlots + slot;
  }

  // Starts the copies of stage; keys past key_end become zeros.
  __device__ void issue(int stage) const {
#pragma unroll
    for (int i = 0; i < C::kKpt; ++i) {
      const int pos = key(stage, i);
      const bool valid = pos < key_end;
      const T* src = k_cache;
      if (valid) {
        const int blk = block_shift >= 0 ? pos >> block_shift : pos / block_size;
        src += table[blk] * block_stride + static_cast<int64_t>(pos - blk * block_size) * C::kD;
      }
#pragma unroll
      for (int u = 0; u < C::kPpt; ++u) {
        const int e = (u * C::kTpk + t) * C::kVecN;
        cp_async16(row(stage, 0, i) + e, src + e, valid ? 16 : 0);
        cp_async16(row(stage, 1, i) + e, src + (valid ? v_offset : 0) + e, valid ? 16 : 0);
      }
    }
  }
};

// This thread's slice of a staged row, as floats.
template <class C>
__device__ __forceinline__ void load_slice(const typename C::Elem* row, int t, float* out) {
  using P = Pack<typename C::Elem, C::kVecN>;
#pragma unroll
  for (int u = 0; u < C::kPpt; ++u) {
    const P pk = reinterpret_cast<const P*>(row)[u * C::kTpk + t];
#pragma unroll
    for (int e = 0; e < C::kVecN; ++e) out[u * C::kVecN + e] = to_float(pk.v[e]);
  }
}

// Online-softmax state of one slot for the CTA's heads, in log2 units (queries carry log2(e)).
template <class C>
struct SlotState {
  float m[C::kHeads], l[C::kHeads], acc[C::kHeads][C::kDims];

  __device__ void init() {
#pragma unroll
    for (int h = 0; h < C::kHeads; ++h) {
      m[h] = -INFINITY;
      l[h] = 0.0f;
#pragma unroll
      for (int e = 0; e < C::kDims; ++e) acc[h][e] = 0.0f;
    }
  }

  // One stage: scores of its kKpt keys, then the P.V update.
  __device__ void consume(const KeyStream<C>& ks, int stage,
                          const float (&q)[C::kHeads][C::kDims]) {
    float s[C::kKpt][C::kHeads];
#pragma unroll
    for (int i = 0; i < C::kKpt; ++i) {
      float k[C::kDims];
      load_slice<C>(ks.row(stage, 0, i), ks.t, k);
#pragma unroll
      for (int h = 0; h < C::kHeads; ++h) {
        float dot = 0.0f;
#pragma unroll
        for (int e = 0; e < C::kDims; ++e) dot += q[h][e] * k[e];
        s[i][h] = slot_sum<C::kTpk>(dot);
      }
      if (ks.key(stage, i) >= ks.key_end) {
#pragma unroll
        for (int h = 0; h < C::kHeads; ++h) s[i][h] = -INFINITY;
      }
    }
#pragma unroll
    for (int h = 0; h < C::kHeads; ++h) rescale(h, s);
#pragma unroll
    for (int i = 0; i < C::kKpt; ++i) {
      float v[C::kDims];
      load_slice<C>(ks.row(stage, 1, i), ks.t, v);
#pragma unroll
      for (int h = 0; h < C::kHeads; ++h) {
#pragma unroll
        for (int e = 0; e < C::kDims; ++e) acc[h][e] += s[i][h] * v[e];
      }
    }
  }

  // Raises head h's max to cover the stage's scores and turns them into weights (in place).
  __device__ void rescale(int h, float (&s)[C::kKpt][C::kHeads]) {
    float mx = m[h];
#pragma unroll
    for (int i = 0; i < C::kKpt; ++i) mx = fmaxf(mx, s[i][h]);
    if (mx == -INFINITY) {  // no visible key yet: weights 0, state unchanged
#pragma unroll
      for (int i = 0; i < C::kKpt; ++i) s[i][h] = 0.0f;
      return;
    }
    const float alpha = exp2f(m[h] - mx);
    l[h] *= alpha;
#pragma unroll
    for (int e = 0; e < C::kDims; ++e) acc[h][e] *= alpha;
    m[h] = mx;
#pragma unroll
    for (int i = 0; i < C::kKpt; ++i) {
      s[i][h] = exp2f(s[i][h] - mx);
      l[h] += s[i][h];
    }
  }

  // Folds in the state of the slot `offset` lanes away (same head_dim slice).
  __device__ void merge_lanes(int offset) {
#pragma unroll
    for (int h = 0; h < C::kHeads; ++h) {
      const float m2 = __shfl_xor_sync(0xffffffffu, m[h], offset);
      const float l2 = __shfl_xor_sync(0xffffffffu, l[h], offset);
      const float mx = fmaxf(m[h], m2);
      const float a = mx == -INFINITY ? 0.0f : exp2f(m[h] - mx);
      const float b = mx == -INFINITY ? 0.0f : exp2f(m2 - mx);
      l[h] = l[h] * a + l2 * b;
#pragma unroll
      for (int e = 0; e < C::kDims; ++e)
        acc[h][e] = acc[h][e] * a + __shfl_xor_sync(0xffffffffu, acc[h][e], offset) * b;
      m[h] = mx;
    }
  }
};

// Merges the warps' states through smem and writes the output rows (or the split's partials).
template <class C>
__device__ void write_result(const PagedAttentionParams& p, const DecodeSplit& split,
                             SlotState<C>& st, int token, int head0, int heads, float* red) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, t = lane % C::kTpk;
#pragma unroll
  for (int o = C::kTpk; o < 32; o <<= 1) st.merge_lanes(o);
  float* stats = red + C::kWarps * C::kHeads * C::kD;  // [warp][head] max, then sum
  cp_async_wait<0>();
  __syncthreads();  // red aliases the pipeline buffers other warps may still read
  if (lane < C::kTpk) {
#pragma unroll
    for (int h = 0; h < C::kHeads; ++h) {
#pragma unroll
      for (int e = 0; e < C::kDims; ++e)
        red[(warp * C::kHeads + h) * C::kD + ((e / C::kVecN) * C::kTpk + t) * C::kVecN +
            e % C::kVecN] = st.acc[h][e];
      if (t == 0) {
        stats[warp * C::kHeads + h] = st.m[h];
        stats[(C::kWarps + warp) * C::kHeads + h] = st.l[h];
      }
    }
  }
  __syncthreads();
  decode_combine<typename C::Elem, C::kD, C::kWarps, C::kHeads>(p, split, token, head0, heads, red);
}

template <class C>
__global__ void __launch_bounds__(C::kThreads, C::kMinBlocks)
    paged_attention_decode_kernel(PagedAttentionParams p, DecodeSplit split) {
  using T = typename C::Elem;
  extern __shared__ __align__(16) unsigned char smem[];
  const int seq = blockIdx.x;
  const int token = p.query_start_loc[seq];
  if (p.query_start_loc[seq + 1] == token) return;  // no query token for this sequence
  const int kv_head = blockIdx.y / split.head_chunks, chunk = blockIdx.y % split.head_chunks;
  const int group = static_cast<int>(p.num_heads / p.num_kv_heads);
  const int head0 = kv_head * group + chunk * C::kHeads;
  const int heads = min(C::kHeads, group - chunk * C::kHeads);

  KeyStream<C> ks;
  ks.k_cache = static_cast<const T*>(p.kv) + kv_head * p.block_size * C::kD;
  ks.block_stride = p.num_kv_heads * p.block_size * C::kD;
  ks.v_offset = p.num_blocks * ks.block_stride;
  ks.table = p.block_table + seq * p.max_blocks_per_seq;
  ks.block_size = static_cast<int>(p.block_size);
  ks.block_shift = (ks.block_size & (ks.block_size - 1)) ? -1 : __ffs(ks.block_size) - 1;
  ks.key_begin = blockIdx.z * split.partition_keys;
  ks.key_end = min(p.seq_lens[seq], ks.key_begin + split.partition_keys);
  ks.slot = threadIdx.x / C::kTpk;
  ks.t = threadIdx.x % C::kTpk;
  ks.pipe = reinterpret_cast<T*>(smem);

  const int stages = max(0, ks.key_end - ks.key_begin + C::kStageKeys - 1) / C::kStageKeys;
#pragma unroll
  for (int s = 0; s < C::kStages - 1; ++s) {
    if (s < stages) ks.issue(s);
    cp_async_commit();
  }

  float q[C::kHeads][C::kDims];  // this thread's slice, times scale * log2(e); 0 for padding heads
  const T* query = static_cast<const T*>(p.query) + token * p.query_stride + head0 * C::kD;
  const float qscale = p.scale * kLog2e;
#pragma unroll
  for (int h = 0; h < C::kHeads; ++h) {
#pragma unroll
    for (int e = 0; e < C::kDims; ++e) {
      const int d = ((e / C::kVecN) * C::kTpk + ks.t) * C::kVecN + e % C::kVecN;
      q[h][e] = h < heads ? to_float(query[h * C::kD + d]) * qscale : 0.0f;
    }
  }

  SlotState<C> st;
  st.init();
  for (int s = 0; s < stages; ++s) {
    if (s + C::kStages - 1 < stages) ks.issue(s + C::kStages - 1);
    cp_async_commit();
    cp_async_wait<C::kStages - 1>();  // this thread's copies of stage s have landed
    st.consume(ks, s, q);
  }
  write_result<C>(p, split, st, token, head0, heads, reinterpret_cast<float*>(smem));
}

// Occupancy of kernel C (CTAs per SM), after raising its dynamic smem limit; 0 on error.
// Computed once per process: one device kind per process (one rank per GPU).
template <class C>
int blocks_per_sm() {
  static const int blocks =
      resident_blocks_per_sm(paged_attention_decode_kernel<C>, C::kThreads, C::kSmem);
  return blocks;
}

template <typename T, int D, int H, typename Fn>
cudaError_t with_variant(const PagedAttentionParams& p, Fn& fn) {
  if (p.decode_variant == 0) return fn.template operator()<DecodeVariantCfg<T, D, H, 0>>();
  if constexpr (std::is_same_v<T, __nv_bfloat16> && D == 128 && H == 4) {
    static_assert(kNumDecodeVariants == 8 && kDecodeVariants[5].mma, "one case per variant");
    switch (p.decode_variant) {
      case 1:
        return fn.template operator()<DecodeVariantCfg<T, D, H, 1>>();
      case 2:
        return fn.template operator()<DecodeVariantCfg<T, D, H, 2>>();
      case 3:
        return fn.template operator()<DecodeVariantCfg<T, D, H, 3>>();
      case 4:
        return fn.template operator()<DecodeVariantCfg<T, D, H, 4>>();
    }
  }
  return cudaErrorInvalidValue;
}

template <typename T, int D, typename Fn>
cudaError_t with_heads(const PagedAttentionParams& p, Fn& fn) {
  switch (decode_heads(p.num_heads / p.num_kv_heads, decode_max_heads<T, D>())) {
    case 1:
      return with_variant<T, D, 1>(p, fn);
    case 2:
      return with_variant<T, D, 2>(p, fn);
    case 4:
      if constexpr (decode_max_heads<T, D>() >= 4) return with_variant<T, D, 4>(p, fn);
      break;
    case 8:
      if constexpr (decode_max_heads<T, D>() >= 8) return with_variant<T, D, 8>(p, fn);
      break;
  }
  return cudaErrorInvalidValue;
}

// Calls fn.template operator()<C>() with the configuration of p (dtype, head_dim, heads per CTA,
// variant); cudaErrorInvalidValue when the variant does not exist for these params.
template <typename Fn>
cudaError_t with_config(const PagedAttentionParams& p, Fn&& fn) {
  return dispatch(p.dtype, [&]<typename T>() {
    switch (p.head_dim) {
      case 64:
        return with_heads<T, 64>(p, fn);
      case 96:
        return with_heads<T, 96>(p, fn);
      case 128:
        return with_heads<T, 128>(p, fn);
      default:
        return with_heads<T, 256>(p, fn);
    }
  });
}

}  // namespace

const char* paged_attention_decode_variant_name(int v) {
  return v >= 0 && v < kNumDecodeVariants ? kDecodeVariants[v].name : nullptr;
}

size_t decode_workspace_floats(const PagedAttentionParams& p, int sms) {
  if (is_mma_variant(p.decode_variant)) return decode_mma_workspace_floats(p, sms);
  size_t floats = 0;
  with_config(p, [&]<class C>() {
    floats = decode_split_workspace_floats<C>(p, sms, blocks_per_sm<C>());
    return cudaSuccess;
  });
  return floats;
}

cudaError_t paged_attention_decode(const PagedAttentionParams& p, int sms, cudaStream_t stream) {
  if (is_mma_variant(p.decode_variant)) return paged_attention_decode_mma(p, sms, stream);
  return with_config(p, [&]<class C>() {
    return launch_decode<C>(paged_attention_decode_kernel<C>, p, sms, blocks_per_sm<C>(), stream);
  });
}

}  // namespace taco::cuda
