#include "model/weight_offload.h"

#include <algorithm>

namespace taco {

WeightOffload::WeightOffload(double budget_bytes, const at::Device& device)
    : budget_(budget_bytes), device_(device) {}

bool WeightOffload::offer(const std::vector<at::Tensor*>& layer) {
  if (closed_) return false;
  double bytes = 0;
  for (const at::Tensor* t : layer) bytes += t->defined() ? static_cast<double>(t->nbytes()) : 0;
  if (used_ + bytes > budget_) {
    closed_ = true;
    return false;
  }
  used_ += bytes;
  ++num_offloaded_;
  largest_.resize(std::max(largest_.size(), layer.size()), 0);
  const bool pin = device_.is_cuda();
  for (size_t k = 0; k < layer.size(); ++k) {
    at::Tensor* t = layer[k];
    if (!t->defined()) continue;
    largest_[k] = std::max<int64_t>(largest_[k], t->nbytes());
    at::Tensor host = at::empty(t->sizes(), t->options().device(at::kCPU).pinned_memory(pin));
    host.copy_(*t);
    *t = host;  // the device copy is freed here (back to the allocator's cache)
  }
  return true;
}

void WeightOffload::finish() {
  if (num_offloaded_ == 0) return;
  slots_.resize(std::min<int64_t>(num_offloaded_, 2));
  for (auto& slot : slots_) {
    for (int64_t bytes : largest_) {
      slot.push_back(bytes > 0
                         ? at::empty({bytes}, at::TensorOptions().dtype(at::kByte).device(device_))
                         : at::Tensor());
    }
  }
  copies_ = std::make_unique<ops::CopyStream>(device_);
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
  const size_t slot = slot_of(layer);
  copies_->start(views(slot, host), src, static_cast<int>(slot));
}

std::vector<at::Tensor> WeightOffload::acquire(size_t layer, const std::vector<at::Tensor*>& host) {
  const size_t slot = slot_of(layer);
  copies_->wait(static_cast<int>(slot));
  return views(slot, host);
}

}  // namespace taco
