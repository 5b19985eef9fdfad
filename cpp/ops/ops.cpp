// ATen adapters: check shapes, dtypes and devices, fill each kernel's params once, dispatch by
// device. CPU tensors go to cpp/cpu; CUDA tensors go to cuda/ through ops_cuda.cpp when the CUDA
// backend is built (TACO_WITH_CUDA), and are rejected otherwise.
#include "ops/ops.h"

#include <initializer_list>

#include "cpu/activation.h"
#include "cpu/kv_cache.h"
#include "cpu/lora.h"
#include "cpu/norm.h"
#include "cpu/paged_attention.h"
#include "cpu/rotary.h"
#include "ops/kernel_dtype.h"
#include "ops/ops_cuda.h"

namespace taco::ops {
namespace {

// True when every tensor sits on one CUDA device (CUDA builds only), false when all are on the
// CPU; anything else throws with the op's name.
bool on_cuda(std::initializer_list<const at::Tensor*> tensors, const char* name) {
  const at::Device device = (*tensors.begin())->device();
  for (const at::Tensor* t : tensors) {
    TORCH_CHECK(t->device() == device, name, ": tensors on different devices (", device, " and ",
                t->device(), ")");
  }
#if TACO_WITH_CUDA
  if (device.is_cuda()) return true;
#else
  TORCH_CHECK(!device.is_cuda(), name, ": CUDA backend not built (only CPU kernels are available)");
#endif
  TORCH_CHECK(device.is_cpu(), name, ": expected a CPU or CUDA tensor, got ", device);
  return false;
}

// Rows must be contiguous (stride 1 along the last dim); returns the row stride.
int64_t row_stride(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 2 && t.stride(1) == 1, name,
              ": expected a 2-D tensor with contiguous rows");
  return t.stride(0);
}

// Runs a kernel whose params are filled, on the tensors' CUDA device through ops_cuda.cpp (after
// `check`, the params check that kernel needs, so a bad field is named: the CUDA kernel would only
// return cudaErrorInvalidValue), else on the CPU, whose kernel runs the same check itself.
#if TACO_WITH_CUDA
#define TACO_RUN(cuda, op, params, device, check) \
  do {                                            \
    if (cuda) {                                   \
      check_params(check, #op);                   \
      return cuda_impl::op(params, device);       \
    }                                             \
    cpu::op(params);                              \
  } while (0)
#else
#define TACO_RUN(cuda, op, params, device, check) \
  do {                                            \
    (void)(cuda);                                 \
    cpu::op(params);                              \
  } while (0)
#endif

}  // namespace

void rms_norm(at::Tensor& out, const at::Tensor& x, const at::Tensor& weight, double eps) {
  const bool cuda = on_cuda({&out, &x, &weight}, "rms_norm");
  TORCH_CHECK(out.sizes() == x.sizes() && out.dtype() == x.dtype() && weight.dtype() == x.dtype(),
              "rms_norm: out, x and weight must share shape and dtype");
  TORCH_CHECK(weight.is_contiguous() && weight.numel() == x.size(-1), "rms_norm: bad weight");
  const int64_t out_stride = row_stride(out, "rms_norm out");
  const int64_t x_stride = row_stride(x, "rms_norm x");
  const kernels::RmsNormParams p{
      out.data_ptr(), x.data_ptr(), nullptr,  weight.data_ptr(),       x.size(0),
      x.size(1),      out_stride,   x_stride, static_cast<float>(eps), kernel_dtype(x, "rms_norm")};
  TACO_RUN(cuda, rms_norm, p, x.device(), p.check());
}

void fused_add_rms_norm(at::Tensor& x, at::Tensor& residual, const at::Tensor& weight, double eps) {
  const bool cuda = on_cuda({&x, &residual, &weight}, "fused_add_rms_norm");
  TORCH_CHECK(residual.is_contiguous() && residual.sizes() == x.sizes() &&
                  residual.dtype() == x.dtype() && weight.dtype() == x.dtype(),
              "fused_add_rms_norm: x, residual and weight must share shape and dtype");
  TORCH_CHECK(weight.is_contiguous() && weight.numel() == x.size(-1),
              "fused_add_rms_norm: bad weight");
  const int64_t stride = row_stride(x, "fused_add_rms_norm x");
  const kernels::RmsNormParams p{x.data_ptr(),
                                 x.data_ptr(),
                                 residual.data_ptr(),
                                 weight.data_ptr(),
                                 x.size(0),
                                 x.size(1),
                                 stride,
                                 stride,
                                 static_cast<float>(eps),
                                 kernel_dtype(x, "fused_add_rms_norm")};
  TACO_RUN(cuda, fused_add_rms_norm, p, x.device(), p.check(/*fused=*/true));
}

void rotary_embedding(const at::Tensor& positions, at::Tensor& query, at::Tensor& key,
                      int64_t head_dim, const at::Tensor& cos_sin_cache, bool is_neox) {
  const bool cuda = on_cuda({&positions, &query, &key, &cos_sin_cache}, "rotary_embedding");
  TORCH_CHECK(positions.scalar_type() == at::kLong && positions.is_contiguous(),
              "rotary_embedding: positions must be contiguous int64");
  TORCH_CHECK(cos_sin_cache.scalar_type() == at::kFloat && cos_sin_cache.is_contiguous() &&
                  cos_sin_cache.dim() == 2 && cos_sin_cache.size(1) <= head_dim &&
                  cos_sin_cache.size(1) % 2 == 0,
              "rotary_embedding: cos_sin_cache must be contiguous float32 [max_pos, rot_dim]");
  TORCH_CHECK(query.dtype() == key.dtype() && query.size(0) == positions.size(0) &&
                  key.size(0) == positions.size(0) && query.size(1) % head_dim == 0 &&
                  key.size(1) % head_dim == 0,
              "rotary_embedding: query/key must be [T, heads * head_dim] of one dtype");
  const int64_t query_stride = row_stride(query, "rotary_embedding query");
  const int64_t key_stride = row_stride(key, "rotary_embedding key");
  const kernels::RotaryParams p{positions.data_ptr<int64_t>(),
                                query.data_ptr(),
                                key.data_ptr(),
                                cos_sin_cache.data_ptr<float>(),
                                positions.size(0),
                                query.size(1) / head_dim,
                                key.size(1) / head_dim,
                                head_dim,
                                cos_sin_cache.size(1),
                                query_stride,
                                key_stride,
                                cos_sin_cache.size(0),
                                is_neox,
                                kernel_dtype(query, "rotary_embedding")};
  TACO_RUN(cuda, rotary_embedding, p, query.device(), p.check());
}

void silu_and_mul(at::Tensor& out, const at::Tensor& x) {
  const bool cuda = on_cuda({&out, &x}, "silu_and_mul");
  TORCH_CHECK(x.dim() == 2 && out.dim() == 2 && x.size(1) % 2 == 0 && out.is_contiguous() &&
                  out.size(0) == x.size(0) && out.size(1) == x.size(1) / 2 &&
                  out.dtype() == x.dtype(),
              "silu_and_mul: expected x [T, 2I] and out [T, I] of one dtype");
  const int64_t x_stride = row_stride(x, "silu_and_mul x");
  const kernels::SiluAndMulParams p{out.data_ptr(), x.data_ptr(), x.size(0),
                                    out.size(1),    x_stride,     kernel_dtype(x, "silu_and_mul")};
  TACO_RUN(cuda, silu_and_mul, p, x.device(), p.check());
}

void lora_apply(at::Tensor& y, const at::Tensor& x, const at::Tensor& a, const at::Tensor& b,
                const at::Tensor& token_slot, const std::vector<int64_t>& slice_start) {
  const bool cuda = on_cuda({&y, &x, &a, &b, &token_slot}, "lora_apply");
  TORCH_CHECK(a.dim() == 3 && b.dim() == 3 && a.is_contiguous() && b.is_contiguous() &&
                  a.size(0) == b.size(0) && a.dtype() == b.dtype(),
              "lora_apply: a [slots, in, slices * rank] and b [slots, rank, out] must be "
              "contiguous, of one dtype");
  TORCH_CHECK(token_slot.dim() == 1 && token_slot.scalar_type() == at::kInt &&
                  token_slot.is_contiguous() && token_slot.size(0) == x.size(0) &&
                  y.size(0) == x.size(0) && y.dtype() == x.dtype(),
              "lora_apply: x [T, in], y [T, out] of one dtype and token_slot [T] int32");
  const auto slices = static_cast<int64_t>(slice_start.size()) - 1;
  TORCH_CHECK(slices >= 1 && slices <= kernels::kMaxLoraSlices, "lora_apply: one to three slices");
  kernels::LoraParams p;
  p.y = y.data_ptr();
  p.x = x.data_ptr();
  p.a = a.data_ptr();
  p.b = b.data_ptr();
  p.token_slot = token_slot.data_ptr<int32_t>();
  at::Tensor scratch;  // the CUDA kernels' x A^T (the CPU kernel keeps its own)
  if (cuda) {
    scratch = at::empty({x.size(0), a.size(2)}, x.options().dtype(at::kFloat));
    p.scratch = scratch.data_ptr<float>();
  }
  for (int64_t s = 0; s <= slices; ++s) p.slice_start[s] = static_cast<int32_t>(slice_start[s]);
  p.tokens = x.size(0);
  p.in = x.size(1);
  p.out = y.size(1);
  p.rank = b.size(1);
  p.slices = slices;
  p.num_slots = a.size(0);
  p.x_stride = row_stride(x, "lora_apply x");
  p.y_stride = row_stride(y, "lora_apply y");
  p.dtype = kernel_dtype(x, "lora_apply");
  p.weight_dtype = kernel_dtype(a, "lora_apply");
  TORCH_CHECK(a.size(2) == slices * p.rank && a.size(1) == p.in && b.size(2) == p.out,
              "lora_apply: a is ", a.sizes(), " and b ", b.sizes(), " for x ", x.sizes(), ", y ",
              y.sizes(), " and ", slices, " slice(s)");
  TACO_RUN(cuda, lora_apply, p, x.device(), p.check());
}

kernels::KvCacheType kv_cache_type(const at::Tensor& kv) {
  if (kv.scalar_type() == at::kFloat8_e4m3fn) return kernels::KvCacheType::kFp8E4M3;
  if (kv.scalar_type() == at::kFloat8_e5m2) return kernels::KvCacheType::kFp8E5M2;
  return kernels::KvCacheType::kModel;
}

namespace {

// The cache holds dtype, or an 8-bit float (CPU only).
void check_cache_dtype(const at::Tensor& kv, const at::Tensor& x, bool cuda, const char* name) {
  const bool fp8 = kv_cache_type(kv) != kernels::KvCacheType::kModel;
  TORCH_CHECK(fp8 || kv.dtype() == x.dtype(), name, ": the cache holds ", kv.dtype(), ", not ",
              x.dtype(), " or an 8-bit float");
  TORCH_CHECK(!(fp8 && cuda), name, ": 8-bit KV caches are built for the CPU only");
}

}  // namespace

void write_kv_cache(const at::Tensor& key, const at::Tensor& value, at::Tensor& kv,
                    const at::Tensor& slot_mapping, double k_scale, double v_scale) {
  const bool cuda = on_cuda({&key, &value, &kv, &slot_mapping}, "write_kv_cache");
  TORCH_CHECK(kv.dim() == 5 && kv.size(0) == 2 && kv.is_contiguous(),
              "write_kv_cache: kv must be contiguous [2, blocks, kv_heads, block_size, head_dim]");
  TORCH_CHECK(key.dim() == 3 && key.sizes() == value.sizes() && key.size(1) == kv.size(2) &&
                  key.size(2) == kv.size(4) && value.dtype() == key.dtype(),
              "write_kv_cache: key/value must be [T, kv_heads, head_dim] of one dtype");
  check_cache_dtype(kv, key, cuda, "write_kv_cache");
  TORCH_CHECK(key.stride(2) == 1 && key.stride(1) == key.size(2) && value.stride(2) == 1 &&
                  value.stride(1) == value.size(2),
              "write_kv_cache: key/value heads must be contiguous within a token");
  TORCH_CHECK(slot_mapping.scalar_type() == at::kLong && slot_mapping.is_contiguous() &&
                  slot_mapping.numel() == key.size(0),
              "write_kv_cache: slot_mapping must be contiguous int64 [T]");
  const kernels::WriteKvParams p{key.data_ptr(),
                                 value.data_ptr(),
                                 kv.data_ptr(),
                                 slot_mapping.data_ptr<int64_t>(),
                                 key.size(0),
                                 kv.size(2),
                                 kv.size(4),
                                 kv.size(3),
                                 kv.size(1),
                                 key.stride(0),
                                 value.stride(0),
                                 kernel_dtype(key, "write_kv_cache"),
                                 kv_cache_type(kv),
                                 static_cast<float>(k_scale),
                                 static_cast<float>(v_scale)};
  TACO_RUN(cuda, write_kv_cache, p, kv.device(), p.check());
}

void paged_attention(at::Tensor& out, const at::Tensor& query, const at::Tensor& kv,
                     const at::Tensor& query_start_loc, const at::Tensor& seq_lens,
                     const at::Tensor& block_table, double scale, int64_t max_query_len,
                     int64_t max_seq_len, double k_scale, double v_scale) {
  const bool cuda =
      on_cuda({&out, &query, &kv, &query_start_loc, &seq_lens, &block_table}, "paged_attention");
  TORCH_CHECK(kv.dim() == 5 && kv.size(0) == 2 && kv.is_contiguous(),
              "paged_attention: kv must be contiguous [2, blocks, kv_heads, block_size, head_dim]");
  check_cache_dtype(kv, query, cuda, "paged_attention");
  TORCH_CHECK(query.dim() == 3 && query.size(2) == kv.size(4) && query.stride(2) == 1 &&
                  query.stride(1) == query.size(2),
              "paged_attention: query must be [T, heads, head_dim] with contiguous heads");
  TORCH_CHECK(out.is_contiguous() && out.sizes() == query.sizes() && out.dtype() == query.dtype(),
              "paged_attention: out must be contiguous like query");
  for (const auto* t : {&query_start_loc, &seq_lens, &block_table}) {
    TORCH_CHECK(t->scalar_type() == at::kInt && t->is_contiguous(),
                "paged_attention: query_start_loc, seq_lens and block_table must be contiguous "
                "int32");
  }
  const int64_t num_seqs = seq_lens.numel();
  TORCH_CHECK(query_start_loc.numel() == num_seqs + 1 && block_table.dim() == 2 &&
                  block_table.size(0) == num_seqs,
              "paged_attention: batch metadata sizes disagree");
  kernels::PagedAttentionParams p;
  p.out = out.data_ptr();
  p.query = query.data_ptr();
  p.kv = kv.data_ptr();
  p.query_start_loc = query_start_loc.data_ptr<int32_t>();
  p.seq_lens = seq_lens.data_ptr<int32_t>();
  p.block_table = block_table.data_ptr<int32_t>();
  p.tokens = query.size(0);
  p.num_seqs = num_seqs;
  p.num_heads = query.size(1);
  p.num_kv_heads = kv.size(2);
  p.head_dim = kv.size(4);
  p.block_size = kv.size(3);
  p.num_blocks = kv.size(1);
  p.max_blocks_per_seq = block_table.size(1);
  p.query_stride = query.stride(0);
  p.max_query_len = max_query_len;
  p.max_seq_len = max_seq_len;
  p.scale = static_cast<float>(scale);
  p.dtype = kernel_dtype(query, "paged_attention");
  p.cache_type = kv_cache_type(kv);
  p.k_scale = static_cast<float>(k_scale);
  p.v_scale = static_cast<float>(v_scale);
  TACO_RUN(cuda, paged_attention, p, query.device(), p.check());
}

namespace {

// Both ids of every pair must name a block of a cache with num_blocks blocks (select() would
// silently wrap a negative id).
void check_block_pairs(const std::vector<std::pair<int32_t, int32_t>>& src_dst, int64_t src_blocks,
                       int64_t dst_blocks, const char* name) {
  for (const auto& [src, dst] : src_dst) {
    TORCH_CHECK(src >= 0 && src < src_blocks && dst >= 0 && dst < dst_blocks, name,
                ": block pair (", src, ", ", dst, ") outside caches of ", src_blocks, " and ",
                dst_blocks, " blocks");
  }
}

void check_cache(const at::Tensor& kv, const char* name) {
  TORCH_CHECK(kv.dim() == 5 && kv.size(0) == 2, name,
              ": each kv cache must be [2, blocks, kv_heads, block_size, head_dim]");
}

}  // namespace

void copy_blocks(std::vector<at::Tensor>& kv_caches,
                 const std::vector<std::pair<int32_t, int32_t>>& src_dst) {
  for (auto& kv : kv_caches) {
    check_cache(kv, "copy_blocks");
    check_block_pairs(src_dst, kv.size(1), kv.size(1), "copy_blocks");
  }
#if TACO_WITH_CUDA
  // One launch for all layers instead of a copy_ per block per layer.
  if (!kv_caches.empty() && kv_caches.front().is_cuda()) {
    return cuda_impl::copy_blocks(kv_caches, src_dst);
  }
#endif
  for (auto& kv : kv_caches) {
    for (const auto& [src, dst] : src_dst) kv.select(1, dst).copy_(kv.select(1, src));
  }
}

// src and dst sit on different devices (device <-> CPU); copy_ moves each [2, Hkv, bs, D] block.
void swap_blocks(const std::vector<at::Tensor>& src, std::vector<at::Tensor>& dst,
                 const std::vector<std::pair<int32_t, int32_t>>& src_dst) {
  TORCH_CHECK(src.size() == dst.size(), "swap_blocks: layer counts differ (", src.size(), " vs ",
              dst.size(), ")");
  for (size_t layer = 0; layer < src.size(); ++layer) {
    check_cache(src[layer], "swap_blocks");
    check_cache(dst[layer], "swap_blocks");
    TORCH_CHECK(
        src[layer].dtype() == dst[layer].dtype() && src[layer].size(2) == dst[layer].size(2) &&
            src[layer].size(3) == dst[layer].size(3) && src[layer].size(4) == dst[layer].size(4),
        "swap_blocks: layer ", layer, " caches differ in dtype or block shape");
    check_block_pairs(src_dst, src[layer].size(1), dst[layer].size(1), "swap_blocks");
    for (const auto& [s, d] : src_dst) dst[layer].select(1, d).copy_(src[layer].select(1, s));
  }
}

}  // namespace taco::ops
