// One step as every tensor-parallel rank executes it: the block moves and the flat batch that
// rank 0 builds from the SchedulerOutput. Rank 0 broadcasts it; the other ranks have no
// scheduler, sequences or sampler and run exactly this: move blocks, forward, and the LM head
// over the listed rows (their logits slices join rank 0's in the gather).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace taco {

namespace ops {
class Communicator;
}

struct StepPlan {
  enum class Kind : int64_t { kStep = 1, kIdle = 2, kStop = 3 };
  Kind kind = Kind::kStep;
  std::vector<std::pair<int32_t, int32_t>> swap_in, swap_out, copy;
  std::vector<int64_t> input_ids, positions, slot_mapping;  // [T]
  std::vector<int32_t> query_start_loc, seq_lens;           // [B + 1], [B]
  std::vector<int32_t> block_table;                         // [B, max_blocks], row-major
  int64_t max_blocks = 0, max_query_len = 0, max_seq_len = 0;
  std::vector<int64_t> logit_rows;  // rows of the batch whose logits are computed
};

// Plain int64 words: a header of sizes, then each vector. decode_step_plan checks every size
// against the words it has and throws std::runtime_error on a malformed message.
std::vector<int64_t> encode_step_plan(const StepPlan& p);
StepPlan decode_step_plan(const std::vector<int64_t>& words);

// Rank 0 side: the message's length, then the message, as two broadcasts from rank 0.
void send_step_plan(ops::Communicator& comm, const StepPlan& p);
// Other ranks: blocks until rank 0 sends one.
StepPlan receive_step_plan(ops::Communicator& comm);

}  // namespace taco
