#include "ops/copy_stream.h"

#if TACO_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <optional>
#endif

namespace taco::ops {

struct CopyStream::Impl {
  at::Device device;
#if TACO_WITH_CUDA
  std::optional<c10::cuda::CUDAStream> side;
  cudaEvent_t queued = nullptr;  // the compute stream's point a copy waits for
  cudaEvent_t done[2] = {};      // per ticket: its copies are complete
  bool recorded[2] = {false, false};
#endif
  explicit Impl(const at::Device& d) : device(d) {}
};

namespace {

#if TACO_WITH_CUDA
void check(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, "weight offload: ", what, ": ", cudaGetErrorString(err));
}
#endif

}  // namespace

CopyStream::CopyStream(const at::Device& device) : impl_(std::make_unique<Impl>(device)) {
#if TACO_WITH_CUDA
  if (!device.is_cuda()) return;
  const c10::cuda::CUDAGuard guard(device);
  impl_->side = c10::cuda::getStreamFromPool(false, device.index());
  check(cudaEventCreateWithFlags(&impl_->queued, cudaEventDisableTiming), "cudaEventCreate");
  for (cudaEvent_t& e : impl_->done) {
    check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
  }
#endif
}

CopyStream::~CopyStream() {
#if TACO_WITH_CUDA
  if (!impl_->side) return;
  const c10::cuda::CUDAGuard guard(impl_->device);
  cudaStreamSynchronize(impl_->side->stream());
  cudaEventDestroy(impl_->queued);
  for (cudaEvent_t e : impl_->done) cudaEventDestroy(e);
#endif
}

void CopyStream::start(const std::vector<at::Tensor>& dst, const std::vector<at::Tensor>& src,
                       int ticket) {
  const auto copy_all = [&] {
    for (size_t i = 0; i < dst.size() && i < src.size(); ++i) {
      if (dst[i].defined() && src[i].defined()) dst[i].copy_(src[i], /*non_blocking=*/true);
    }
  };
#if TACO_WITH_CUDA
  if (impl_->side) {
    const c10::cuda::CUDAGuard guard(impl_->device);
    const cudaStream_t compute = c10::cuda::getCurrentCUDAStream(impl_->device.index()).stream();
    check(cudaEventRecord(impl_->queued, compute), "cudaEventRecord");
    check(cudaStreamWaitEvent(impl_->side->stream(), impl_->queued, 0), "cudaStreamWaitEvent");
    {
      const c10::cuda::CUDAStreamGuard on_side(*impl_->side);
      copy_all();
    }
    check(cudaEventRecord(impl_->done[ticket & 1], impl_->side->stream()), "cudaEventRecord");
    impl_->recorded[ticket & 1] = true;
    return;
  }
#endif
  (void)ticket;
  copy_all();
}

void CopyStream::wait(int ticket) {
#if TACO_WITH_CUDA
  if (impl_->side && impl_->recorded[ticket & 1]) {
    const cudaStream_t compute = c10::cuda::getCurrentCUDAStream(impl_->device.index()).stream();
    check(cudaStreamWaitEvent(compute, impl_->done[ticket & 1], 0), "cudaStreamWaitEvent");
  }
#endif
  (void)ticket;
}

}  // namespace taco::ops
