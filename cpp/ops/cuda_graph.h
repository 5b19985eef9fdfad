// Device work captured once and replayed with one launch (CUDA graphs): decode steps are hundreds
// of small kernels whose launch gaps would otherwise dominate. CUDA builds only; elsewhere
// capture() throws.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>

namespace taco::ops {

class CapturedGraph {
 public:
  CapturedGraph();
  ~CapturedGraph();
  CapturedGraph(const CapturedGraph&) = delete;
  CapturedGraph& operator=(const CapturedGraph&) = delete;

  // Runs fn once eagerly (warm-up: library handles and workspaces) and once under capture, both
  // on a side stream of device. Tensors fn allocates while captured come from a private memory
  // pool: a new one, or share_pool_with's when given (then the two must never replay at once;
  // capture the largest graph first). Each graph holds a reference to its pool.
  void capture(const at::Device& device, const std::function<void()>& fn,
               const CapturedGraph* share_pool_with = nullptr);

  // Replays the captured work on the device's current stream.
  void replay();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace taco::ops
