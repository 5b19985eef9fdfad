#include "ops/cuda_all_reduce.h"

#if TACO_WITH_CUDA

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "ops/kernel_dtype.h"
#include "taco/cuda/all_reduce.h"

namespace taco::ops {

namespace {

constexpr int64_t kStagingBytes = 8 << 20;  // the largest message the IPC path takes

class CudaIpcCommunicator : public Communicator {
 public:
  CudaIpcCommunicator(std::unique_ptr<Communicator> fallback, int device, void* buffer,
                      cuda::AllReduceSignal* signal, const cuda::AllReduceParams& base,
                      std::vector<void*> opened)
      : fallback_(std::move(fallback)),
        device_(device),
        buffer_(buffer),
        signal_(signal),
        base_(base),
        opened_(std::move(opened)) {}

  ~CudaIpcCommunicator() override {
    report_stats("cuda-ipc", fallback_->rank(), stats_);
    const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
    cudaDeviceSynchronize();
    for (void* p : opened_) cudaIpcCloseMemHandle(p);
    cudaFree(buffer_);
    cudaFree(signal_);
  }

  int rank() const override { return fallback_->rank(); }
  int world_size() const override { return fallback_->world_size(); }

  void all_reduce_sum(at::Tensor& t) override {
    const auto type = t.scalar_type();
    const bool ok = t.is_cuda() && t.is_contiguous() &&
                    (type == at::kFloat || type == at::kBFloat16 || type == at::kHalf) &&
                    t.nbytes() % 16 == 0 && static_cast<int64_t>(t.nbytes()) <= kStagingBytes &&
                    reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
    if (!ok) return fallback_->all_reduce_sum(t);
    const auto start = std::chrono::steady_clock::now();
    cuda::AllReduceParams p = base_;
    p.in = p.out = t.data_ptr();
    p.bytes = static_cast<int64_t>(t.nbytes());
    p.dtype = kernel_dtype(t, "tensor parallel all-reduce");
    p.two_shot = p.bytes > cuda::kOneShotMaxBytes;
    const cudaError_t err =
        cuda::all_reduce(p, c10::cuda::getCurrentCUDAStream(t.device().index()).stream());
    TORCH_CHECK(err == cudaSuccess, "tensor parallel all-reduce: ", cudaGetErrorString(err));
    record(p.bytes, start);
  }
  void all_reduce_min(at::Tensor& t) override { fallback_->all_reduce_min(t); }
  // Every all-reduce that fits the staging buffer takes the IPC kernel, whose flags live in
  // device memory: such calls replay correctly from a CUDA graph.
  bool cuda_graph_safe(int64_t bytes) const override {
    return bytes <= kStagingBytes && bytes % 16 == 0;
  }
  at::Tensor all_gather(const at::Tensor& t) override { return fallback_->all_gather(t); }
  void broadcast(at::Tensor& t, int root) override { fallback_->broadcast(t, root); }

 private:
  std::unique_ptr<Communicator> fallback_;
  int device_;
  void* buffer_;
  cuda::AllReduceSignal* signal_;
  cuda::AllReduceParams base_;
  std::vector<void*> opened_;
};

// Every rank's handle bytes, in rank order, through the fallback's CPU all-gather.
std::vector<cudaIpcMemHandle_t> exchange(Communicator& comm, const cudaIpcMemHandle_t& mine) {
  at::Tensor local = at::empty({1, static_cast<int64_t>(sizeof(mine))}, at::kByte);
  std::memcpy(local.data_ptr(), &mine, sizeof(mine));
  const at::Tensor all = comm.all_gather(local).contiguous();
  std::vector<cudaIpcMemHandle_t> out(comm.world_size());
  for (int r = 0; r < comm.world_size(); ++r) {
    std::memcpy(&out[r], all.data_ptr<uint8_t>() + r * sizeof(mine), sizeof(mine));
  }
  return out;
}

}  // namespace

std::unique_ptr<Communicator> with_cuda_ipc(std::unique_ptr<Communicator> fallback,
                                            int device_index) {
  const int world = fallback->world_size(), rank = fallback->rank();
  if (world < 2 || world > cuda::kMaxAllReduceRanks) return fallback;
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_index));
  void* buffer = nullptr;
  void* signal = nullptr;
  cudaIpcMemHandle_t hb{}, hs{};
  bool ok = cudaMalloc(&buffer, kStagingBytes) == cudaSuccess &&
            cudaMalloc(&signal, sizeof(cuda::AllReduceSignal)) == cudaSuccess &&
            cudaMemset(signal, 0, sizeof(cuda::AllReduceSignal)) == cudaSuccess &&
            cudaDeviceSynchronize() == cudaSuccess &&
            cudaIpcGetMemHandle(&hb, buffer) == cudaSuccess &&
            cudaIpcGetMemHandle(&hs, signal) == cudaSuccess;
  std::vector<void*> opened;
  const auto release = [&] {
    for (void* p : opened) cudaIpcCloseMemHandle(p);
    if (buffer != nullptr) cudaFree(buffer);
    if (signal != nullptr) cudaFree(signal);
  };
  cuda::AllReduceParams base;
  base.rank = rank;
  base.world = world;
  base.capacity = kStagingBytes;
  base.timeout_ns = static_cast<uint64_t>(collective_timeout_seconds() * 1e9);
  at::Tensor all_ok = at::tensor({int64_t{0}}, at::kLong);
  try {
    // Handles of ranks that failed are garbage; whether every rank succeeded is agreed below.
    const std::vector<cudaIpcMemHandle_t> buffers = exchange(*fallback, hb);
    const std::vector<cudaIpcMemHandle_t> signals = exchange(*fallback, hs);
    for (int r = 0; r < world && ok; ++r) {
      if (r == rank) {
        base.buffers[r] = buffer;
        base.signals[r] = static_cast<cuda::AllReduceSignal*>(signal);
        continue;
      }
      void* b = nullptr;
      void* s = nullptr;
      ok = cudaIpcOpenMemHandle(&b, buffers[r], cudaIpcMemLazyEnablePeerAccess) == cudaSuccess;
      if (ok) opened.push_back(b);
      ok =
          ok && cudaIpcOpenMemHandle(&s, signals[r], cudaIpcMemLazyEnablePeerAccess) == cudaSuccess;
      if (ok) opened.push_back(s);
      base.buffers[r] = b;
      base.signals[r] = static_cast<cuda::AllReduceSignal*>(s);
    }
    cudaGetLastError();  // a failed open leaves its error behind; the fallback is taken instead
    all_ok.fill_(ok ? 1 : 0);
    fallback->all_reduce_min(all_ok);
  } catch (...) {
    release();  // a peer is gone
    throw;
  }
  if (all_ok.item<int64_t>() != 1) {
    release();
    return fallback;
  }
  return std::make_unique<CudaIpcCommunicator>(std::move(fallback), device_index, buffer,
                                               static_cast<cuda::AllReduceSignal*>(signal), base,
                                               std::move(opened));
}

}  // namespace taco::ops

#else

namespace taco::ops {

std::unique_ptr<Communicator> with_cuda_ipc(std::unique_ptr<Communicator> fallback, int) {
  return fallback;
}

}  // namespace taco::ops

#endif
