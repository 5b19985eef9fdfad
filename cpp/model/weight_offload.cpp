#include "model/weight_offload.h"

#include <algorithm>

namespace taco {

namespace {

int64_t bytes_of(const std::vector<at::Tensor*>& layer) {
  int64_t n = 0;
  for (const at::Tensor* t : layer) n += t->defined() ? static_cast<int64_t>(t->nbytes()) : 0;
  return n;
}

}  // namespace

WeightOffload::WeightOffload(const std::vector<std::vector<at::Tensor*>>& layers,
                             double budget_bytes, const at::Device& device)
    : device_(device) {
  double used = 0;
  while (num_offloaded_ < static_cast<int64_t>(layers.size())) {
    const int64_t b = bytes_of(layers[num_offloaded_]);
    if (used + b > budget_bytes) break;
    used += b;
    ++num_offloaded_;
  }
  if (num_offloaded_ == 0) return;
  offloaded_bytes_ = static_cast<int64_t>(used);
  // Each slot holds, per tensor position, the largest of that position over the offloaded
  // layers (layers of a GGUF file may store their tensors in different types).
  const size_t positions = layers[0].size();
  std::vector<int64_t> largest(positions, 0);
  for (int64_t l = 0; l < num_offloaded_; ++l) {
    for (size_t k = 0; k < positions && k < layers[l].size(); ++k) {
      const at::Tensor* t = layers[l][k];
      if (t->defined()) largest[k] = std::max<int64_t>(largest[k], t->nbytes());
    }
  }
  const bool pin = device.is_cuda();
  for (int64_t l = 0; l < num_offloaded_; ++l) {
    for (at::Tensor* t : layers[l]) {
      if (!t->defined()) continue;
      at::Tensor host = at::empty(t->sizes(), t->options().device(at::kCPU).pinned_memory(pin));
      host.copy_(*t);
      *t = host;
    }
  }
  for (auto& slot : slots_) {
    for (int64_t bytes : largest) {
      slot.push_back(bytes > 0
                         ? at::empty({bytes}, at::TensorOptions().dtype(at::kByte).device(device))
                         : at::Tensor());
    }
  }
  copies_ = std::make_unique<ops::CopyStream>(device);
}

std::vector<at::Tensor> WeightOffload::views(size_t slot,
                                             const std::vector<at::Tensor*>& host) const {
  std::vector<at::Tensor> out(host.size());
  for (size_t k = 0; k < host.size(); ++k) {
    const at::Tensor& h = *host[k];
    if (!h.defined()) continue;
    out[k] = slots_[slot][k]
                 .narrow(0, 0, static_cast<int64_t>(h.nbytes()))
                 .view(h.scalar_type())
                 .view(h.sizes());
  }
  return out;
}

void WeightOffload::prefetch(size_t layer, const std::vector<at::Tensor*>& host) {
  std::vector<at::Tensor> src;
  for (const at::Tensor* t : host) src.push_back(*t);
  copies_->start(views(layer % 2, host), src, static_cast<int>(layer % 2));
}

std::vector<at::Tensor> WeightOffload::acquire(size_t layer, const std::vector<at::Tensor*>& host) {
  copies_->wait(static_cast<int>(layer % 2));
  return views(layer % 2, host);
}

}  // namespace taco
