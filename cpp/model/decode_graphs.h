// CUDA graphs of the decode forward (docs/architecture.md, "One engine step"): one graph per padded
// batch size (1, 2, 4, multiples of 8, and min(max_num_seqs, 256) itself), captured at startup over
// static device buffers. A batch in which every sequence computes one token, no longer than the
// largest graph and with no context beyond max_seq_len_to_capture, is copied into the buffers,
// padded (padding rows write no K/V: slot -1) and replayed; anything else runs eagerly.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "core/engine_options.h"
#include "model/llama.h"
#include "ops/cuda_graph.h"

namespace taco {

// One decode step's flat batch on the host (ModelRunner's layout: block_table rows of max_blocks).
struct DecodeInputs {
  const std::vector<int64_t>& input_ids;     // [B]
  const std::vector<int64_t>& positions;     // [B]
  const std::vector<int64_t>& slot_mapping;  // [B]
  const std::vector<int32_t>& seq_lens;      // [B]
  const std::vector<int32_t>& block_table;   // [B, max_blocks]
  int64_t max_blocks = 0;
};

// The largest batch a graph is captured for: min(max_num_seqs, 256).
int64_t decode_graph_max_batch(int64_t max_num_seqs);

class DecodeGraphs {
 public:
  // Captures every size now; kv_caches must outlive this object (the graphs write into them).
  DecodeGraphs(const LlamaModel& model, const EngineOptions& opts,
               std::vector<at::Tensor>& kv_caches);
  ~DecodeGraphs();

  // True when a batch of `batch` one-token sequences with this longest context can replay.
  bool fits(int64_t batch, int64_t max_seq_len) const;

  // Hidden states [B, H] of the step (a view of the graph's output, valid until the next run).
  at::Tensor run(const DecodeInputs& in);

 private:
  struct Graph {
    int64_t batch = 0;
    ops::CapturedGraph graph;
    at::Tensor hidden;  // [batch, H], written by each replay
  };
  void capture(Graph& g, std::vector<at::Tensor>& kv_caches, const ops::CapturedGraph* pool_owner);

  const LlamaModel& model_;
  int64_t max_seq_len_;  // attention is planned for contexts up to this many tokens
  int64_t table_width_;  // block_table columns: ceil(max_seq_len_ / block_size)
  std::vector<std::unique_ptr<Graph>> graphs_;  // ascending batch sizes, sharing one pool
  // Static device inputs at the largest size; graph b reads their first b rows. *_host are
  // pinned mirrors filled on the host then copied over in one transfer each.
  at::Tensor input_ids_, positions_, slot_mapping_, query_start_loc_, seq_lens_, block_table_;
  at::Tensor input_ids_host_, positions_host_, slot_mapping_host_, seq_lens_host_,
      block_table_host_;
};

}  // namespace taco
