#include "ops/cuda_graph.h"

#if TACO_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace taco::ops {

#if TACO_WITH_CUDA

struct CapturedGraph::Impl {
  at::cuda::CUDAGraph graph;
};

CapturedGraph::CapturedGraph() : impl_(std::make_unique<Impl>()) {}
CapturedGraph::~CapturedGraph() = default;

void CapturedGraph::capture(const at::Device& device, const std::function<void()>& fn,
                            const CapturedGraph* share_pool_with) {
  const c10::cuda::CUDAGuard device_guard(device);
  // Capture needs a stream other than the legacy default one; the side stream waits for work
  // already queued on the current stream and the current stream for the capture's warm-up.
  const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream(device.index());
  const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, device.index());
  current.synchronize();
  {
    const c10::cuda::CUDAStreamGuard stream_guard(side);
    fn();
    side.synchronize();
    // A pool id shared across engines would outlive its graphs: each engine's first graph makes
    // its own ({0, 0}: a fresh private pool) and the others borrow it.
    impl_->graph.capture_begin(share_pool_with ? share_pool_with->impl_->graph.pool()
                                               : at::cuda::MempoolId_t{0, 0});
    fn();
    impl_->graph.capture_end();
  }
  side.synchronize();
}

void CapturedGraph::replay() { impl_->graph.replay(); }

#else

struct CapturedGraph::Impl {};

CapturedGraph::CapturedGraph() = default;
CapturedGraph::~CapturedGraph() = default;

void CapturedGraph::capture(const at::Device& device, const std::function<void()>&,
                            const CapturedGraph*) {
  TORCH_CHECK(false, "CUDA graphs: no CUDA backend in this build (", device, ")");
}

void CapturedGraph::replay() { TORCH_CHECK(false, "CUDA graphs: nothing captured"); }

#endif

}  // namespace taco::ops
