#include "ops/cuda_graph.h"

#if TACO_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <map>
#include <mutex>
#endif

namespace taco::ops {

#if TACO_WITH_CUDA

struct CapturedGraph::Impl {
  at::cuda::CUDAGraph graph;
};

namespace {

c10::cuda::CUDAStream capture_stream(c10::DeviceIndex index) {
  static std::mutex mutex;
  static std::map<c10::DeviceIndex, c10::cuda::CUDAStream> streams;
  const std::lock_guard<std::mutex> lock(mutex);
  auto it = streams.find(index);
  if (it == streams.end()) {
    it = streams.emplace(index, c10::cuda::getStreamFromPool(false, index)).first;
  }
  return it->second;
}

}  // namespace

CapturedGraph::CapturedGraph() : impl_(std::make_unique<Impl>()) {}
CapturedGraph::~CapturedGraph() = default;

void CapturedGraph::capture(const at::Device& device, const std::function<void()>& fn,
                            const CapturedGraph* share_pool_with) {
  const c10::cuda::CUDAGuard device_guard(device);
  // Capture needs a stream other than the legacy default one. One side stream per device for
  // every capture (as torch.cuda.graph): blocks the warm-ups cache stay usable by the next one.
  const c10::cuda::CUDAStream side = capture_stream(device.index());
  c10::cuda::getCurrentCUDAStream(device.index()).synchronize();
  const c10::cuda::CUDAStreamGuard stream_guard(side);
  fn();
  side.synchronize();
  // A pool id shared across engines would outlive its graphs: each engine's first graph makes
  // its own ({0, 0}: a fresh private pool) and the others borrow it.
  impl_->graph.capture_begin(share_pool_with ? share_pool_with->impl_->graph.pool()
                                             : at::cuda::MempoolId_t{0, 0});
  try {
    fn();
  } catch (...) {
    // End the capture so the stream and the allocators leave capture mode; the error that
    // stopped fn is the one to report.
    try {
      impl_->graph.capture_end();
    } catch (...) {
    }
    throw;
  }
  impl_->graph.capture_end();
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
