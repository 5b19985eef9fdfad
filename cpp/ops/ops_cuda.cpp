// CUDA adapters (see ops_cuda.h). Inputs were validated by ops.cpp; here tensors become raw
// pointers and element strides, and each kernel's cudaError_t becomes a TORCH_CHECK naming the op.
#include "ops/ops_cuda.h"

#if TACO_WITH_CUDA

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdlib>
#include <cstring>

#include "taco/cuda/activation.h"
#include "taco/cuda/attention.h"
#include "taco/cuda/gemm.h"
#include "taco/cuda/kv_cache.h"
#include "taco/cuda/norm.h"
#include "taco/cuda/rotary.h"

namespace taco::ops::cuda_impl {
namespace {

cuda::DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return cuda::DType::kFloat32;
    case at::kHalf:
      return cuda::DType::kFloat16;
    case at::kBFloat16:
      return cuda::DType::kBFloat16;
    default:
      TORCH_CHECK(false, "CUDA kernels: dtype ", t.scalar_type(),
                  " is not supported (float32, bfloat16, float16)");
  }
}

cudaStream_t stream_of(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}

void check(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA kernel failed: ", cudaGetErrorString(err));
}

bool cublas_forced() {
  static const bool forced = [] {
    const char* v = std::getenv("TACO_GEMM");
    return v != nullptr && std::strcmp(v, "cublas") == 0;
  }();
  return forced;
}

}  // namespace

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const bool plain = x.dim() == 2 && x.stride(1) == 1 && weight.dim() == 2 &&
                     weight.stride(1) == 1 && weight.size(1) == x.size(1) &&
                     weight.dtype() == x.dtype() &&
                     (!bias.defined() || (bias.is_contiguous() && bias.dtype() == x.dtype() &&
                                          bias.numel() == weight.size(0)));
  const bool half = x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf;
  if (plain && half && !cublas_forced()) {
    const c10::cuda::CUDAGuard guard(x.device());
    at::Tensor out = at::empty({x.size(0), weight.size(0)}, x.options());
    cuda::GemmParams p;
    p.out = out.data_ptr();
    p.x = x.data_ptr();
    p.w = weight.data_ptr();
    p.bias = bias.defined() ? bias.data_ptr() : nullptr;
    p.m = x.size(0);
    p.n = weight.size(0);
    p.k = x.size(1);
    p.out_stride = out.stride(0);
    p.x_stride = x.stride(0);
    p.w_stride = weight.stride(0);
    p.dtype = dtype_of(x);
    if (cuda::gemm_supported(p)) {
      // Stream-K kernels want a few MB of workspace; the caching allocator makes it cheap.
      at::Tensor workspace;
      if (const size_t bytes = cuda::gemm_workspace_size(p); bytes > 0) {
        workspace = at::empty({static_cast<int64_t>(bytes)}, x.options().dtype(at::kByte));
        p.workspace = workspace.data_ptr();
        p.workspace_bytes = bytes;
      }
      check(cuda::gemm(p, stream_of(x)), "linear");
      return out;
    }
  }
  return bias.defined() ? at::linear(x, weight, bias) : at::linear(x, weight);
}

void rms_norm(at::Tensor& out, const at::Tensor& x, const at::Tensor& weight, double eps) {
  const c10::cuda::CUDAGuard guard(x.device());
  cuda::RmsNormParams p{
      out.data_ptr(), x.data_ptr(),  nullptr,     weight.data_ptr(),       x.size(0),
      x.size(1),      out.stride(0), x.stride(0), static_cast<float>(eps), dtype_of(x)};
  check(cuda::rms_norm(p, stream_of(x)), "rms_norm");
}

void fused_add_rms_norm(at::Tensor& x, at::Tensor& residual, const at::Tensor& weight, double eps) {
  const c10::cuda::CUDAGuard guard(x.device());
  cuda::RmsNormParams p{
      x.data_ptr(), x.data_ptr(), residual.data_ptr(), weight.data_ptr(),       x.size(0),
      x.size(1),    x.stride(0),  x.stride(0),         static_cast<float>(eps), dtype_of(x)};
  check(cuda::fused_add_rms_norm(p, stream_of(x)), "fused_add_rms_norm");
}

void rotary_embedding(const at::Tensor& positions, at::Tensor& query, at::Tensor& key,
                      int64_t head_dim, const at::Tensor& cos_sin_cache, bool is_neox) {
  const c10::cuda::CUDAGuard guard(query.device());
  cuda::RotaryParams p{positions.data_ptr<int64_t>(),
                       query.data_ptr(),
                       key.data_ptr(),
                       cos_sin_cache.data_ptr<float>(),
                       positions.size(0),
                       query.size(1) / head_dim,
                       key.size(1) / head_dim,
                       head_dim,
                       cos_sin_cache.size(1),
                       query.stride(0),
                       key.stride(0),
                       cos_sin_cache.size(0),
                       is_neox,
                       dtype_of(query)};
  check(cuda::rotary_embedding(p, stream_of(query)), "rotary_embedding");
}

void silu_and_mul(at::Tensor& out, const at::Tensor& x) {
  const c10::cuda::CUDAGuard guard(x.device());
  cuda::SiluAndMulParams p{out.data_ptr(), x.data_ptr(), x.size(0),
                           out.size(1),    x.stride(0),  dtype_of(x)};
  check(cuda::silu_and_mul(p, stream_of(x)), "silu_and_mul");
}

void write_kv_cache(const at::Tensor& key, const at::Tensor& value, at::Tensor& kv,
                    const at::Tensor& slot_mapping) {
  const c10::cuda::CUDAGuard guard(kv.device());
  cuda::WriteKvParams p{
      key.data_ptr(), value.data_ptr(), kv.data_ptr(),   slot_mapping.data_ptr<int64_t>(),
      key.size(0),    kv.size(2),       kv.size(4),      kv.size(3),
      kv.size(1),     key.stride(0),    value.stride(0), dtype_of(kv)};
  check(cuda::write_kv_cache(p, stream_of(kv)), "write_kv_cache");
}

void paged_attention(at::Tensor& out, const at::Tensor& query, const at::Tensor& kv,
                     const at::Tensor& query_start_loc, const at::Tensor& seq_lens,
                     const at::Tensor& block_table, double scale, int64_t max_query_len,
                     int64_t max_seq_len) {
  const int64_t head_dim = kv.size(4);
  TORCH_CHECK(head_dim == 64 || head_dim == 96 || head_dim == 128 || head_dim == 256,
              "paged_attention: the CUDA kernel supports head_dim 64, 96, 128 and 256, got ",
              head_dim);
  const c10::cuda::CUDAGuard guard(query.device());
  cuda::PagedAttentionParams p;
  p.out = out.data_ptr();
  p.query = query.data_ptr();
  p.kv = kv.data_ptr();
  p.query_start_loc = query_start_loc.data_ptr<int32_t>();
  p.seq_lens = seq_lens.data_ptr<int32_t>();
  p.block_table = block_table.data_ptr<int32_t>();
  p.tokens = query.size(0);
  p.num_seqs = seq_lens.numel();
  p.num_heads = query.size(1);
  p.num_kv_heads = kv.size(2);
  p.head_dim = head_dim;
  p.block_size = kv.size(3);
  p.num_blocks = kv.size(1);
  p.max_blocks_per_seq = block_table.size(1);
  p.query_stride = query.stride(0);
  p.max_query_len = max_query_len;
  p.max_seq_len = max_seq_len;
  p.scale = static_cast<float>(scale);
  p.dtype = dtype_of(query);
  // Split-KV scratch from the caching allocator, released back to it (stream-ordered) on return.
  const size_t bytes = cuda::paged_attention_workspace_bytes(p);
  at::Tensor workspace;
  if (bytes > 0) {
    workspace =
        at::empty({static_cast<int64_t>((bytes + 3) / 4)}, query.options().dtype(at::kFloat));
    p.workspace = workspace.data_ptr<float>();
  }
  check(cuda::paged_attention(p, stream_of(query)), "paged_attention");
}

void copy_blocks(std::vector<at::Tensor>& kv_caches,
                 const std::vector<std::pair<int32_t, int32_t>>& src_dst) {
  if (kv_caches.empty() || src_dst.empty()) return;
  const at::Tensor& first = kv_caches.front();
  const c10::cuda::CUDAGuard guard(first.device());
  std::vector<int64_t> bases;
  for (const auto& kv : kv_caches) {
    TORCH_CHECK(kv.is_contiguous() && kv.sizes() == first.sizes() && kv.dtype() == first.dtype() &&
                    kv.device() == first.device(),
                "copy_blocks: CUDA caches must be contiguous with one shape, dtype and device");
    bases.push_back(reinterpret_cast<int64_t>(kv.data_ptr()));
  }
  std::vector<int32_t> pairs;
  for (const auto& [src, dst] : src_dst) {
    pairs.push_back(src);
    pairs.push_back(dst);
  }
  // Small host arrays; the copy to the device is ordered on the current stream before the launch.
  const at::Tensor dev_bases = at::tensor(bases, at::kLong).to(first.device());
  const at::Tensor dev_pairs = at::tensor(pairs, at::kInt).to(first.device());
  cuda::CopyBlocksParams p{reinterpret_cast<void* const*>(dev_bases.data_ptr<int64_t>()),
                           dev_pairs.data_ptr<int32_t>(),
                           static_cast<int64_t>(kv_caches.size()),
                           static_cast<int64_t>(src_dst.size()),
                           first.size(1),
                           first.size(2) * first.size(3) * first.size(4) * first.element_size()};
  check(cuda::copy_blocks(p, stream_of(first)), "copy_blocks");
}

}  // namespace taco::ops::cuda_impl

#endif  // TACO_WITH_CUDA
