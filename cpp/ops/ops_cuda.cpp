// CUDA launchers (see ops_cuda.h). Params were filled and validated by ops.cpp; here each kernel
// runs on the device's current stream and its cudaError_t becomes a TORCH_CHECK naming the op.
#include "ops/ops_cuda.h"

#if TACO_WITH_CUDA

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdlib>
#include <cstring>

#include "ops/kernel_dtype.h"
#include "taco/cuda/activation.h"
#include "taco/cuda/attention.h"
#include "taco/cuda/gemm.h"
#include "taco/cuda/kv_cache.h"
#include "taco/cuda/lora.h"
#include "taco/cuda/norm.h"
#include "taco/cuda/rotary.h"
#include "taco/cuda/w4a16.h"

namespace taco::ops::cuda_impl {
namespace {

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
  const bool plain =
      x.dim() == 2 && x.stride(1) == 1 && weight.dim() == 2 && weight.stride(1) == 1 &&
      weight.size(1) == x.size(1) && weight.dtype() == x.dtype() &&
      (!bias.defined() ||
       (bias.is_contiguous() && bias.dtype() == x.dtype() && bias.numel() == weight.size(0)));
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
    p.dtype = kernel_dtype(x, "linear");
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

at::Tensor w4a16_linear(const at::Tensor& x_in, const at::Tensor& codes, const at::Tensor& d,
                        const at::Tensor& m, const at::Tensor& z, int64_t n) {
  const c10::cuda::CUDAGuard guard(x_in.device());
  at::Tensor x = x_in;
  // The kernel reads x in 16-byte packs (k is a multiple of 32).
  if (x.stride(1) != 1 || x.stride(0) % 8 != 0 ||
      reinterpret_cast<uintptr_t>(x.data_ptr()) % 16 != 0) {
    x = x.clone(at::MemoryFormat::Contiguous);
  }
  cuda::W4A16Params p;
  p.x = x.data_ptr();
  p.codes = codes.data_ptr<uint8_t>();
  p.d = reinterpret_cast<const uint16_t*>(d.data_ptr());
  p.mofs = reinterpret_cast<const uint16_t*>(m.data_ptr());
  p.z = z.data_ptr<uint8_t>();
  p.m = x.size(0);
  p.n = n;
  p.k = codes.size(1) * 2;
  p.x_stride = x.stride(0);
  p.dtype = kernel_dtype(x, "w4a16_linear");
  if (p.m > cuda::kW4GemvMaxRows) {
    at::Tensor dense = at::empty({n, p.k}, x.options());
    check(cuda::w4a16_dequantize(p, dense.data_ptr(), stream_of(x)), "w4a16_linear");
    return linear(x_in, dense, at::Tensor());
  }
  at::Tensor out = at::empty({p.m, n}, x.options());
  p.out = out.data_ptr();
  p.out_stride = out.stride(0);
  check(cuda::w4a16_gemv(p, stream_of(x)), "w4a16_linear");
  return out;
}

namespace {

// Runs launch(stream) on device's current stream and checks its result.
template <typename Launch>
void run_on(const at::Device& device, const char* op, Launch&& launch) {
  const c10::cuda::CUDAGuard guard(device);
  check(launch(c10::cuda::getCurrentCUDAStream(device.index()).stream()), op);
}

}  // namespace

void rms_norm(const kernels::RmsNormParams& p, const at::Device& device) {
  run_on(device, "rms_norm", [&](cudaStream_t s) { return cuda::rms_norm(p, s); });
}

void fused_add_rms_norm(const kernels::RmsNormParams& p, const at::Device& device) {
  run_on(device, "fused_add_rms_norm",
         [&](cudaStream_t s) { return cuda::fused_add_rms_norm(p, s); });
}

void rotary_embedding(const kernels::RotaryParams& p, const at::Device& device) {
  run_on(device, "rotary_embedding", [&](cudaStream_t s) { return cuda::rotary_embedding(p, s); });
}

void lora_apply(const kernels::LoraParams& p, const at::Device& device) {
  run_on(device, "lora_apply", [&](cudaStream_t s) { return cuda::lora_apply(p, s); });
}

void silu_and_mul(const kernels::SiluAndMulParams& p, const at::Device& device) {
  run_on(device, "silu_and_mul", [&](cudaStream_t s) { return cuda::silu_and_mul(p, s); });
}

void write_kv_cache(const kernels::WriteKvParams& p, const at::Device& device) {
  run_on(device, "write_kv_cache", [&](cudaStream_t s) { return cuda::write_kv_cache(p, s); });
}

void paged_attention(const kernels::PagedAttentionParams& params, const at::Device& device) {
  TORCH_CHECK(cuda::paged_attention_head_dim_supported(params.head_dim),
              "paged_attention: the CUDA kernel supports head_dim 64, 96, 128 and 256, got ",
              params.head_dim);
  kernels::PagedAttentionParams p = params;
  // Split-KV scratch from the caching allocator, released back to it (stream-ordered) on return.
  const size_t bytes = cuda::paged_attention_workspace_bytes(p);
  at::Tensor workspace;
  if (bytes > 0) {
    workspace = at::empty({static_cast<int64_t>((bytes + 3) / 4)},
                          at::TensorOptions().dtype(at::kFloat).device(device));
    p.workspace = workspace.data_ptr<float>();
  }
  run_on(device, "paged_attention", [&](cudaStream_t s) { return cuda::paged_attention(p, s); });
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
