#include "model/decode_graphs.h"

#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cstring>

#include "ops/device_memory.h"

namespace taco {

int64_t decode_graph_max_batch(int64_t max_num_seqs) {
  return std::min<int64_t>(max_num_seqs, 256);
}

namespace {

std::vector<int64_t> capture_sizes(int64_t max_num_seqs) {
  const int64_t largest = decode_graph_max_batch(max_num_seqs);
  std::vector<int64_t> sizes;
  for (int64_t b : {1, 2, 4}) {
    if (b <= largest) sizes.push_back(b);
  }
  for (int64_t b = 8; b <= largest; b += 8) sizes.push_back(b);
  if (sizes.back() < largest) sizes.push_back(largest);
  return sizes;
}

// The first src.size() elements of a pinned 1-D mirror.
template <typename T>
void copy_into(at::Tensor& host, const std::vector<T>& src) {
  std::memcpy(host.data_ptr(), src.data(), src.size() * sizeof(T));
}

}  // namespace

DecodeGraphs::DecodeGraphs(const LlamaModel& model, const EngineOptions& opts,
                           std::vector<at::Tensor>& kv_caches)
    : model_(model),
      max_seq_len_(std::min(opts.max_seq_len_to_capture, opts.max_model_len)),
      table_width_((max_seq_len_ + opts.block_size - 1) / opts.block_size) {
  const std::vector<int64_t> sizes = capture_sizes(opts.max_num_seqs);
  const int64_t n = sizes.back();
  const at::Device device = model.device();
  const auto longs = at::TensorOptions().dtype(at::kLong).device(device);
  const auto ints = at::TensorOptions().dtype(at::kInt).device(device);
  // Safe contents for capture and padding: token 0 at position 0, no K/V write, one key of
  // block 0 to attend to.
  input_ids_ = at::zeros({n}, longs);
  positions_ = at::zeros({n}, longs);
  slot_mapping_ = at::full({n}, -1, longs);
  query_start_loc_ = at::arange(n + 1, ints);  // one token per sequence, at every size
  seq_lens_ = at::ones({n}, ints);
  block_table_ = at::zeros({n, table_width_}, ints);
  const auto pinned = [](const at::Tensor& t) { return t.cpu().pin_memory(); };
  input_ids_host_ = pinned(input_ids_);
  positions_host_ = pinned(positions_);
  slot_mapping_host_ = pinned(slot_mapping_);
  seq_lens_host_ = pinned(seq_lens_);
  block_table_host_ = pinned(block_table_);

  c10::InferenceMode guard;
  // Largest first: the smaller graphs then reuse its pool's blocks.
  for (auto it = sizes.rbegin(); it != sizes.rend(); ++it) {
    auto g = std::make_unique<Graph>();
    g->batch = *it;
    capture(*g, kv_caches, graphs_.empty() ? nullptr : &graphs_.back()->graph);
    graphs_.insert(graphs_.begin(), std::move(g));
  }
}

DecodeGraphs::~DecodeGraphs() = default;

void DecodeGraphs::capture(Graph& g, std::vector<at::Tensor>& kv_caches,
                           const ops::CapturedGraph* pool_owner) {
  const int64_t b = g.batch;
  AttentionMetadata md;
  md.positions = positions_.narrow(0, 0, b);
  md.slot_mapping = slot_mapping_.narrow(0, 0, b);
  md.query_start_loc = query_start_loc_.narrow(0, 0, b + 1);
  md.seq_lens = seq_lens_.narrow(0, 0, b);
  md.block_table = block_table_.narrow(0, 0, b);
  md.max_query_len = 1;
  md.max_seq_len = max_seq_len_;  // the kernels' launch shape covers any context up to this
  const at::Tensor ids = input_ids_.narrow(0, 0, b);
  g.graph.capture(
      model_.device(), [&] { g.hidden = model_.forward(ids, md, kv_caches); }, pool_owner);
}

bool DecodeGraphs::fits(int64_t batch, int64_t max_seq_len) const {
  return batch > 0 && batch <= graphs_.back()->batch && max_seq_len <= max_seq_len_;
}

at::Tensor DecodeGraphs::run(const DecodeInputs& in) {
  const auto batch = static_cast<int64_t>(in.input_ids.size());
  Graph& g = **std::lower_bound(graphs_.begin(), graphs_.end(), batch,
                                [](const auto& graph, int64_t b) { return graph->batch < b; });
  // The previous step's uploads read these pinned mirrors asynchronously: wait for them (steps
  // that sample already waited for their logits, so this rarely waits).
  ops::synchronize(model_.device());
  copy_into(input_ids_host_, in.input_ids);
  copy_into(positions_host_, in.positions);
  copy_into(slot_mapping_host_, in.slot_mapping);
  copy_into(seq_lens_host_, in.seq_lens);
  auto* table = block_table_host_.data_ptr<int32_t>();
  // Blocks past table_width_ hold no position below max_seq_len_ (fits() checked the contexts).
  const int64_t cols = std::min(in.max_blocks, table_width_);
  for (int64_t r = 0; r < batch; ++r) {
    std::copy_n(in.block_table.data() + r * in.max_blocks, cols, table + r * table_width_);
  }
  // Padding rows write no K/V and attend to one key; their other inputs may be stale but valid.
  std::fill(slot_mapping_host_.data_ptr<int64_t>() + batch,
            slot_mapping_host_.data_ptr<int64_t>() + g.batch, -1);
  std::fill(seq_lens_host_.data_ptr<int32_t>() + batch,
            seq_lens_host_.data_ptr<int32_t>() + g.batch, 1);
  const auto upload = [&](at::Tensor& dev, const at::Tensor& host, int64_t rows) {
    dev.narrow(0, 0, rows).copy_(host.narrow(0, 0, rows), /*non_blocking=*/true);
  };
  upload(input_ids_, input_ids_host_, g.batch);
  upload(positions_, positions_host_, g.batch);
  upload(slot_mapping_, slot_mapping_host_, g.batch);
  upload(seq_lens_, seq_lens_host_, g.batch);
  upload(block_table_, block_table_host_, g.batch);
  g.graph.replay();
  return g.hidden.narrow(0, 0, batch);
}

}  // namespace taco
