// Tensor-core decode paged attention (the mma variants; scheme in taco/cuda/attention.h). Same grid
// and splits as paged_attention_decode.cu, but each warp owns whole tiles of 16 keys: it copies a
// tile's K and V into its own smem ring (cp.async, kStages deep, __syncwarp only), computes
// S = Q K^T with mma.m16n8k16 (A = the CTA's GQA heads as rows, up to 16, zero-padded; B = K rows
// through ldmatrix), an online softmax per row in the accumulator layout, and O += P V with P
// re-packed from the S accumulators as the A operand and V through ldmatrix.trans. Warps merge
// once at the end (decode_combine).
#include <cmath>

#include "attention_plan.cuh"

namespace taco::cuda {
namespace {

template <typename T, int D, int W, int S>
struct MmaCfg {
  using Elem = T;
  static constexpr int kD = D, kWarps = W, kStages = S, kThreads = W * 32;
  static constexpr int kHeads = 16;             // mma rows: GQA heads per CTA
  static constexpr int kTile = 16;              // keys per warp per step
  static constexpr int kStageKeys = W * kTile;  // keys per CTA per step (partition granule)
  static constexpr int kRow = D + 8;            // smem row pitch: +16 bytes spreads ldmatrix rows
  static constexpr int kChunks = D / 8;         // 16-byte chunks per K or V row
  static constexpr int kTileElems = 2 * kTile * kRow;  // K rows, then V rows
  static constexpr size_t kPipeBytes = sizeof(T) * W * S * kTileElems;
  static constexpr size_t kMergeBytes = sizeof(float) * W * kHeads * (D + 2);
  static constexpr size_t kSmem = std::max(kPipeBytes, kMergeBytes);
  static_assert(kTile * kChunks % 32 == 0, "every lane runs the copy loop equally often");
};

template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same_v<T, __half>) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
  } else {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
}

// c += a * b for one m16n8k16 tile, float accumulators.
template <typename T>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

template <bool kTrans>
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem_row));
  if constexpr (kTrans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
}

// One warp's key tiles: tile j of the warp covers keys key_begin + (warp + j * W) * 16 + [0, 16).
template <class C>
struct WarpTiles {
  using T = typename C::Elem;
  const T* k_cache;  // kv[0] at this kv head's row 0 of block 0
  int64_t v_offset, block_stride;
  const int32_t* table;
  int block_size, block_shift, key_begin, key_end, warp, lane;
  T* ring;  // this warp's kStages tiles

  __device__ int first_key(int j) const { return key_begin + (warp + j * C::kWarps) * C::kTile; }
  __device__ T* tile(int j) const { return ring + (j % C::kStages) * C::kTileElems; }

  // Copies tile j; keys past key_end become zeros. Lane r < 16 looks up key r's block once and
  // the lanes copying that row read it by shuffle (warp-uniform: j < tiles for the whole warp).
  __device__ void issue(int j) const {
    T* dst = tile(j);
    const int mine = first_key(j) + lane % C::kTile;
    int block_id = -1, in_block = 0;
    if (mine < key_end) {
      const int blk = block_shift >= 0 ? mine >> block_shift : mine / block_size;
      block_id = table[blk];
      in_block = mine - blk * block_size;
    }
#pragma unroll
    for (int c = lane; c < C::kTile * C::kChunks; c += 32) {
      const int r = c / C::kChunks, e = (c % C::kChunks) * 8;
      const int id = __shfl_sync(0xffffffffu, block_id, r);
      const int row = __shfl_sync(0xffffffffu, in_block, r);
      const bool valid = id >= 0;
      const T* src =
          valid ? k_cache + id * block_stride + static_cast<int64_t>(row) * C::kD : k_cache;
      cp_async16(dst + r * C::kRow + e, src + e, valid ? 16 : 0);
      cp_async16(dst + (C::kTile + r) * C::kRow + e, src + (valid ? v_offset : 0) + e,
                 valid ? 16 : 0);
    }
  }
};

// Per-thread state in the mma accumulator layout: rows g = lane / 4 and g + 8, row max and this
// thread's part of the row sum (quad-reduced at the end), O as D / 8 n-tiles.
template <class C>
struct MmaState {
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  float o[C::kD / 8][4] = {};

  // S (scaled, masked, two n-tiles of 8 keys) -> P packed as the A operand of P.V.
  __device__ void softmax(float (&s)[2][4], uint32_t (&pa)[4]) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = fmaxf(fmaxf(s[0][2 * r], s[0][2 * r + 1]), fmaxf(s[1][2 * r], s[1][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m[r], mx);
      const bool none = m_new == -INFINITY;  // no visible key in this row yet
      const float alpha = none ? 1.0f : exp2f(m[r] - m_new);
#pragma unroll
      for (int t = 0; t < 2; ++t) {
#pragma unroll
        for (int e = 0; e < 2; ++e) s[t][2 * r + e] = none ? 0.0f : exp2f(s[t][2 * r + e] - m_new);
      }
      l[r] = l[r] * alpha + s[0][2 * r] + s[0][2 * r + 1] + s[1][2 * r] + s[1][2 * r + 1];
      m[r] = m_new;
#pragma unroll
      for (int n = 0; n < C::kD / 8; ++n) {
        o[n][2 * r] *= alpha;
        o[n][2 * r + 1] *= alpha;
      }
    }
    using T = typename C::Elem;
    pa[0] = pack2<T>(s[0][0], s[0][1]);
    pa[1] = pack2<T>(s[0][2], s[0][3]);
    pa[2] = pack2<T>(s[1][0], s[1][1]);
    pa[3] = pack2<T>(s[1][2], s[1][3]);
  }
};

// Scores of the 16 keys of tile (two n-tiles), times qscale, -inf past key_end.
template <class C>
__device__ void tile_scores(const typename C::Elem* tile, const uint32_t (&qf)[C::kD / 16][4],
                            int lane, int k0, int key_end, float qscale, float (&s)[2][4]) {
#pragma unroll
  for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) s[nt][e] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < C::kD / 16; kk += 2) {
      uint32_t b[4];  // keys nt*8 + [0, 8), dims kk*16 + [0, 32) in four 8x8 matrices
      ldmatrix_x4<false>(b, tile + (nt * 8 + lane % 8) * C::kRow + kk * 16 + (lane / 8) * 8);
      mma16816<typename C::Elem>(s[nt], qf[kk], b[0], b[1]);
      mma16816<typename C::Elem>(s[nt], qf[kk + 1], b[2], b[3]);
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int key = k0 + nt * 8 + (lane % 4) * 2 + (e & 1);
      s[nt][e] = key < key_end ? s[nt][e] * qscale : -INFINITY;
    }
  }
}

// O += P V over the tile's 16 V rows.
template <class C>
__device__ void tile_pv(const typename C::Elem* tile, const uint32_t (&pa)[4], int lane,
                        MmaState<C>& st) {
  const typename C::Elem* v = tile + C::kTile * C::kRow;
#pragma unroll
  for (int n = 0; n < C::kD / 8; n += 2) {
    uint32_t b[4];  // (keys 0-7, 8-15) x (dims n*8, (n+1)*8), transposed into B fragments
    ldmatrix_x4<true>(b, v + ((lane / 8) % 2 * 8 + lane % 8) * C::kRow + (n + lane / 16) * 8);
    mma16816<typename C::Elem>(st.o[n], pa, b[0], b[1]);
    mma16816<typename C::Elem>(st.o[n + 1], pa, b[2], b[3]);
  }
}

// Q of the CTA's heads as A fragments (rows = heads, padding rows 0), unscaled.
template <class C>
__device__ void load_query(const typename C::Elem* q, int heads, int lane,
                           uint32_t (&qf)[C::kD / 16][4]) {
  using T = typename C::Elem;
  const int g = lane / 4, c = (lane % 4) * 2;
#pragma unroll
  for (int kk = 0; kk < C::kD / 16; ++kk) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int row = g + (i % 2) * 8, col = kk * 16 + c + (i / 2) * 8;
      qf[kk][i] = row < heads
                      ? pack2<T>(to_float(q[row * C::kD + col]), to_float(q[row * C::kD + col + 1]))
                      : 0u;
    }
  }
}

// Merges the warps through smem (rows = heads; padding rows are stored and never read).
template <class C>
__device__ void write_mma_result(const PagedAttentionParams& p, const DecodeSplit& split,
                                 MmaState<C>& st, int token, int head0, int heads, float* red) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    st.l[r] += __shfl_xor_sync(0xffffffffu, st.l[r], 1);
    st.l[r] += __shfl_xor_sync(0xffffffffu, st.l[r], 2);
  }
  float* stats = red + C::kWarps * C::kHeads * C::kD;  // [warp][row] max, then sum
  cp_async_wait<0>();
  __syncthreads();  // red aliases the other warps' rings
#pragma unroll
  for (int n = 0; n < C::kD / 8; ++n) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = g + (e / 2) * 8, col = n * 8 + (lane % 4) * 2 + (e & 1);
      red[(warp * C::kHeads + row) * C::kD + col] = st.o[n][e];
    }
  }
  if (lane % 4 == 0) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      stats[warp * C::kHeads + g + r * 8] = st.m[r];
      stats[(C::kWarps + warp) * C::kHeads + g + r * 8] = st.l[r];
    }
  }
  __syncthreads();
  decode_combine<typename C::Elem, C::kD, C::kWarps, C::kHeads>(p, split, token, head0, heads, red);
}

template <class C>
__global__ void __launch_bounds__(C::kThreads)
    paged_attention_decode_mma_kernel(PagedAttentionParams p, DecodeSplit split) {
  using T = typename C::Elem;
  extern __shared__ __align__(16) unsigned char smem[];
  const int seq = blockIdx.x;
  const int token = p.query_start_loc[seq];
  if (p.query_start_loc[seq + 1] == token) return;  // no query token for this sequence
  const int kv_head = blockIdx.y / split.head_chunks, chunk = blockIdx.y % split.head_chunks;
  const int group = static_cast<int>(p.num_heads / p.num_kv_heads);
  const int head0 = kv_head * group + chunk * C::kHeads;
  const int heads = min(C::kHeads, group - chunk * C::kHeads);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;

  WarpTiles<C> wt;
  wt.k_cache = static_cast<const T*>(p.kv) + kv_head * p.block_size * C::kD;
  wt.block_stride = p.num_kv_heads * p.block_size * C::kD;
  wt.v_offset = p.num_blocks * wt.block_stride;
  wt.table = p.block_table + seq * p.max_blocks_per_seq;
  wt.block_size = static_cast<int>(p.block_size);
  wt.block_shift = (wt.block_size & (wt.block_size - 1)) ? -1 : __ffs(wt.block_size) - 1;
  wt.key_begin = blockIdx.z * split.partition_keys;
  wt.key_end = min(p.seq_lens[seq], wt.key_begin + split.partition_keys);
  wt.warp = warp;
  wt.lane = lane;
  wt.ring = reinterpret_cast<T*>(smem) + warp * C::kStages * C::kTileElems;
  const int all_tiles = max(0, wt.key_end - wt.key_begin + C::kTile - 1) / C::kTile;
  const int tiles = all_tiles > warp ? (all_tiles - warp + C::kWarps - 1) / C::kWarps : 0;
#pragma unroll
  for (int j = 0; j < C::kStages - 1; ++j) {
    if (j < tiles) wt.issue(j);
    cp_async_commit();
  }

  uint32_t qf[C::kD / 16][4];
  load_query<C>(static_cast<const T*>(p.query) + token * p.query_stride + head0 * C::kD, heads,
                lane, qf);
  const float qscale = p.scale * kLog2e;
  MmaState<C> st;
  for (int j = 0; j < tiles; ++j) {
    if (j + C::kStages - 1 < tiles) wt.issue(j + C::kStages - 1);
    cp_async_commit();
    cp_async_wait<C::kStages - 1>();
    __syncwarp();  // the tile's rows were copied by every lane of the warp
    float s[2][4];
    uint32_t pa[4];
    tile_scores<C>(wt.tile(j), qf, lane, wt.first_key(j), wt.key_end, qscale, s);
    st.softmax(s, pa);
    tile_pv<C>(wt.tile(j), pa, lane, st);
    __syncwarp();  // every lane is done with the slot before the next issue refills it
  }
  write_mma_result<C>(p, split, st, token, head0, heads, reinterpret_cast<float*>(smem));
}

// Occupancy of kernel C (CTAs per SM) after raising its smem limit; 0 on error. Once per process.
template <class C>
int mma_blocks_per_sm() {
  static const int blocks =
      resident_blocks_per_sm(paged_attention_decode_mma_kernel<C>, C::kThreads, C::kSmem);
  return blocks;
}

// Calls fn.template operator()<C>() for the mma variant of p: built for bf16, head_dim 128 and
// groups of 3 or 4 (attention.h), cudaErrorInvalidValue elsewhere.
template <typename Fn>
cudaError_t with_mma_config(const PagedAttentionParams& p, Fn&& fn) {
  const int64_t group = p.num_heads / p.num_kv_heads;
  if (p.dtype != DType::kBFloat16 || p.head_dim != 128 || decode_heads(group, 8) != 4)
    return cudaErrorInvalidValue;
  using T = __nv_bfloat16;
  static_assert(kDecodeVariants[5].mma && kDecodeVariants[7].mma, "mma variants are 5 to 7");
  switch (p.decode_variant) {
    case 5:
      return fn.template
      operator()<MmaCfg<T, 128, kDecodeVariants[5].warps, kDecodeVariants[5].stages>>();
    case 6:
      return fn.template
      operator()<MmaCfg<T, 128, kDecodeVariants[6].warps, kDecodeVariants[6].stages>>();
    case 7:
      return fn.template
      operator()<MmaCfg<T, 128, kDecodeVariants[7].warps, kDecodeVariants[7].stages>>();
  }
  return cudaErrorInvalidValue;
}

}  // namespace

size_t decode_mma_workspace_floats(const PagedAttentionParams& p, int sms) {
  size_t floats = 0;
  with_mma_config(p, [&]<class C>() {
    floats = decode_split_workspace_floats<C>(p, sms, mma_blocks_per_sm<C>());
    return cudaSuccess;
  });
  return floats;
}

cudaError_t paged_attention_decode_mma(const PagedAttentionParams& p, int sms,
                                       cudaStream_t stream) {
  return with_mma_config(p, [&]<class C>() {
    return launch_decode<C>(paged_attention_decode_mma_kernel<C>, p, sms, mma_blocks_per_sm<C>(),
                            stream);
  });
}

}  // namespace taco::cuda
