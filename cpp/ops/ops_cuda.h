// The CUDA half of cpp/ops: launches kernels whose params ops.cpp filled and checked, on the
// current stream of the tensors' device. Built
// only with the CUDA backend (TACO_WITH_CUDA). Unverified on a GPU until `make gpu-check` runs.
#pragma once

#if TACO_WITH_CUDA

#include <ATen/ATen.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "taco/kernels/activation.h"
#include "taco/kernels/attention.h"
#include "taco/kernels/kv_cache.h"
#include "taco/kernels/lora.h"
#include "taco/kernels/norm.h"
#include "taco/kernels/rotary.h"

namespace taco::ops::cuda_impl {

// y = x W^T (+ bias) in x's dtype: the CUTLASS GEMM where it supports the shape, dtype and
// alignment (bf16 / fp16, sm_80+), else cuBLAS through ATen (float32 included). The env
// TACO_GEMM=cublas sends everything to cuBLAS (for comparisons).
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

// y = x W^T for a W4A16 weight (taco/kernels/w4a16.h: codes, d, m, z on x's device; x bf16 or
// fp16): the GEMV kernel up to kW4GemvMaxRows rows, else the weight widened into a dense buffer
// for linear() above.
at::Tensor w4a16_linear(const at::Tensor& x, const at::Tensor& codes, const at::Tensor& d,
                        const at::Tensor& m, const at::Tensor& z, int64_t n);

// Launchers for params that ops.cpp filled and checked: each runs on the current stream of
// `device` and turns the kernel's cudaError_t into a torch error naming the op.
void rms_norm(const kernels::RmsNormParams& p, const at::Device& device);
void fused_add_rms_norm(const kernels::RmsNormParams& p, const at::Device& device);
void rotary_embedding(const kernels::RotaryParams& p, const at::Device& device);
void silu_and_mul(const kernels::SiluAndMulParams& p, const at::Device& device);
void write_kv_cache(const kernels::WriteKvParams& p, const at::Device& device);
void lora_apply(const kernels::LoraParams& p, const at::Device& device);
// Also refuses a head_dim the kernels lack and allocates the split-KV workspace.
void paged_attention(const kernels::PagedAttentionParams& p, const at::Device& device);
// One launch for every layer; pairs already range-checked.
void copy_blocks(std::vector<at::Tensor>& kv_caches,
                 const std::vector<std::pair<int32_t, int32_t>>& src_dst);

}  // namespace taco::ops::cuda_impl

#endif  // TACO_WITH_CUDA
