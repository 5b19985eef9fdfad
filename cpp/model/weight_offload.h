// cpu_offload_gb: the weights of the first decoder layers, as many as fit the budget, live in
// host memory (pinned on a GPU) and are copied into a device staging slot just before their
// layer runs; with two slots the copy of layer i + 1 overlaps the compute of layer i
// (ops::CopyStream). Device memory then holds the other layers plus the slots (one layer's worth
// each; one slot when a single layer is offloaded).
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <vector>

#include "ops/copy_stream.h"

namespace taco {

class WeightOffload {
 public:
  WeightOffload(double budget_bytes, const at::Device& device);

  // Called for layers 0, 1, ... as they load: moves the layer's tensors (pointers to every
  // tensor of the layer, in one order for all layers; undefined ones allowed) into host memory,
  // rewriting them, when they fit what is left of the budget and every earlier layer moved.
  // Returns whether it moved them.
  bool offer(const std::vector<at::Tensor*>& layer);
  // After the last offer: allocates the staging slots.
  void finish();

  int64_t num_offloaded() const { return num_offloaded_; }
  int64_t offloaded_bytes() const { return static_cast<int64_t>(used_); }
  bool offloaded(size_t layer) const { return static_cast<int64_t>(layer) < num_offloaded_; }

  // Starts copying an offloaded layer's host tensors (its current tensors) into its slot.
  void prefetch(size_t layer, const std::vector<at::Tensor*>& host);
  // The device copies of `host`'s tensors, in order, with the compute stream ordered after
  // their copy (prefetch must have been called for this layer).
  std::vector<at::Tensor> acquire(size_t layer, const std::vector<at::Tensor*>& host);

 private:
  size_t slot_of(size_t layer) const { return layer % slots_.size(); }
  std::vector<at::Tensor> views(size_t slot, const std::vector<at::Tensor*>& host) const;

  double budget_;
  at::Device device_;
  bool closed_ = false;  // a layer did not fit: later ones stay on the device
  int64_t num_offloaded_ = 0;
  double used_ = 0;
  std::vector<int64_t> largest_;                // per tensor position, over the offloaded layers
  std::vector<std::vector<at::Tensor>> slots_;  // per slot, per tensor position: uint8 storage
  std::unique_ptr<ops::CopyStream> copies_;
};

}  // namespace taco
