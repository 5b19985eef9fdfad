// Host-to-device weight copies that overlap compute: on CUDA the copies run on a side stream and
// the compute stream waits only for the ones it needs; on the CPU they run at once.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <vector>

namespace taco::ops {

class CopyStream {
 public:
  explicit CopyStream(const at::Device& device);
  ~CopyStream();
  CopyStream(const CopyStream&) = delete;
  CopyStream& operator=(const CopyStream&) = delete;

  // dst[i].copy_(src[i]) for the defined pairs, once the work already queued on the compute
  // stream is done (it may still read dst), tagged `ticket` (0 or 1: one per staging slot).
  void start(const std::vector<at::Tensor>& dst, const std::vector<at::Tensor>& src, int ticket);
  // Work queued on the compute stream from now on runs after the copies of `ticket`.
  void wait(int ticket);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace taco::ops
