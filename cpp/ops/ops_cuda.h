// The CUDA half of cpp/ops: fills taco::cuda params from tensors that ops.cpp has already checked
// for shape, dtype and device, and launches on the current stream of the tensors' device. Built
// only with the CUDA backend (TACO_WITH_CUDA). Unverified on a GPU until `make gpu-check` runs.
#pragma once

#if TACO_WITH_CUDA

#include <ATen/ATen.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace taco::ops::cuda_impl {

// y = x W^T (+ bias) in x's dtype: the CUTLASS GEMM where it supports the shape, dtype and
// alignment (bf16 / fp16, sm_80+), else cuBLAS through ATen (float32 included). The env
// TACO_GEMM=cublas sends everything to cuBLAS (for comparisons).
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

void rms_norm(at::Tensor& out, const at::Tensor& x, const at::Tensor& weight, double eps);
void fused_add_rms_norm(at::Tensor& x, at::Tensor& residual, const at::Tensor& weight, double eps);
void rotary_embedding(const at::Tensor& positions, at::Tensor& query, at::Tensor& key,
                      int64_t head_dim, const at::Tensor& cos_sin_cache, bool is_neox);
void silu_and_mul(at::Tensor& out, const at::Tensor& x);
void write_kv_cache(const at::Tensor& key, const at::Tensor& value, at::Tensor& kv,
                    const at::Tensor& slot_mapping);
void paged_attention(at::Tensor& out, const at::Tensor& query, const at::Tensor& kv,
                     const at::Tensor& query_start_loc, const at::Tensor& seq_lens,
                     const at::Tensor& block_table, double scale, int64_t max_query_len,
                     int64_t max_seq_len);
// One launch for every layer; pairs already range-checked.
void copy_blocks(std::vector<at::Tensor>& kv_caches,
                 const std::vector<std::pair<int32_t, int32_t>>& src_dst);

}  // namespace taco::ops::cuda_impl

#endif  // TACO_WITH_CUDA
