// Dense GEMM of a linear layer, out = x @ w^T (+ bias), through CUTLASS: on sm_90 (Hopper) TMA +
// wgmma warp-specialized kernels, elsewhere (sm_80+) a CUTLASS 2.x multistage tensor-op kernel.
// Inputs and output share one dtype (bf16 or fp16); accumulation is float32. Shapes and
// alignments outside gemm_supported() are the caller's to route to cuBLAS.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "taco/cuda/dtype.h"

namespace taco::cuda {

struct GemmParams {
  void* out;         // [m, n] row-major, row stride out_stride elements
  const void* x;     // [m, k] row-major activations, row stride x_stride elements
  const void* w;     // [n, k] row-major (nn.Linear weight), row stride w_stride elements
  const void* bias;  // [n] contiguous, or nullptr for none
  void* workspace;   // workspace_bytes of device memory, or nullptr (see gemm_workspace_size)
  size_t workspace_bytes = 0;
  int64_t m = 0;
  int64_t n = 0;
  int64_t k = 0;
  int64_t out_stride = 0;
  int64_t x_stride = 0;
  int64_t w_stride = 0;
  DType dtype = DType::kBFloat16;
};

// Whether gemm() can run p on the current device: bf16/fp16, sm_80 or newer, n, k and the three
// row strides multiples of 8 and every pointer 16-byte aligned (TMA / cp.async move 16 bytes),
// m, n, k > 0. Pointers are not dereferenced.
bool gemm_supported(const GemmParams& p);

// Bytes of workspace that lets gemm() pick a split-K / stream-K kernel for p. Zero when the
// chosen kernel needs none. With less workspace than this gemm() still works, on a
// data-parallel kernel. The workspace is reinitialized by gemm() on its stream (graph-safe).
size_t gemm_workspace_size(const GemmParams& p);

// out = x @ w^T (+ bias), on the kernel the shape heuristic picks. cudaErrorNotSupported when
// !gemm_supported(p).
cudaError_t gemm(const GemmParams& p, cudaStream_t stream);

// The compiled kernel configurations, for tests and the benchmark: every config can be run on
// any supported shape (where gemm_config_runnable says so for the device).
int gemm_num_configs();
const char* gemm_config_name(int config);
// True when config runs on the current device (sm_90 configs need an sm_90 device).
bool gemm_config_runnable(int config);
// The config gemm() picks for p on the current device, given p.workspace_bytes.
int gemm_pick_config(const GemmParams& p);
// Workspace bytes config needs for p.
size_t gemm_config_workspace_size(const GemmParams& p, int config);
// gemm() forced onto one config; cudaErrorInvalidValue when the config cannot run p here.
cudaError_t gemm_with_config(const GemmParams& p, int config, cudaStream_t stream);

}  // namespace taco::cuda
