// cpu_offload_gb: the weights of the first decoder layers, as many as fit the budget, live in
// host memory (pinned on a GPU) and are copied into one of two device staging slots just before
// their layer runs; the copy of layer i + 1 overlaps the compute of layer i (ops::CopyStream).
// Device memory then holds the other layers plus two layers' worth of staging.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <memory>
#include <vector>

#include "ops/copy_stream.h"

namespace taco {

class WeightOffload {
 public:
  // layers[i]: pointers to every tensor of decoder layer i, in one order for all layers
  // (undefined tensors allowed). Moves the tensors of layers 0, 1, ... while their bytes add up
  // to at most budget_bytes into host memory, rewriting the pointed-to tensors.
  WeightOffload(const std::vector<std::vector<at::Tensor*>>& layers, double budget_bytes,
                const at::Device& device);

  int64_t num_offloaded() const { return num_offloaded_; }
  int64_t offloaded_bytes() const { return offloaded_bytes_; }
  bool offloaded(size_t layer) const { return static_cast<int64_t>(layer) < num_offloaded_; }

  // Starts copying an offloaded layer's host tensors (as given: layer's current tensors) into
  // its slot (layer % 2).
  void prefetch(size_t layer, const std::vector<at::Tensor*>& host);
  // The device copies of `host`'s tensors, in order, with the compute stream ordered after
  // their copy (prefetch must have been called for this layer).
  std::vector<at::Tensor> acquire(size_t layer, const std::vector<at::Tensor*>& host);

 private:
  std::vector<at::Tensor> views(size_t slot, const std::vector<at::Tensor*>& host) const;

  at::Device device_;
  int64_t num_offloaded_ = 0;
  int64_t offloaded_bytes_ = 0;
  std::array<std::vector<at::Tensor>, 2> slots_;  // per tensor position: uint8 storage
  std::unique_ptr<ops::CopyStream> copies_;
};

}  // namespace taco
