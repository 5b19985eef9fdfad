// Collectives through shared memory, for ranks on one machine: the CPU's own all-reduce. Over
// gloo a small all-reduce costs a message round trip through TCP and several thread wake-ups
// (about 0.6-0.8 ms on a 2-core machine); here it is a copy into a shared slot, a flag, and a
// sum over the other ranks' slots.
//
// Protocol (one shared segment per group, created by rank 0 and unlinked once every rank has
// mapped it): every collective has a generation number, the same on every rank since all ranks
// run the same collectives in the same order. A rank copies its data into its slot of the
// generation's buffer half (generation parity), publishes the generation in its flag (release
// store), waits until every flag has reached it (acquire loads), then reads the other slots.
// Two halves make one flag per rank enough: a rank can only start generation g + 2, which
// reuses g's half, after every rank has published g + 1, which each does only after it has
// finished reading g. The sum adds the ranks' values in rank order in float32 on every rank,
// so every rank gets bit-identical results (bf16 / fp16 rounded once, at the end).
//
// Waiting spins briefly, then yields, then sleeps in growing steps (idle ranks between steps
// cost little CPU); it checks that the awaited rank's process is alive (not gone, not a zombie)
// and gives up after TACO_TP_TIMEOUT_S seconds (300).
//
// Only CPU tensors of float32 / bfloat16 / float16 whose bytes fit a slot (1 MiB; sums are cut
// into slot-sized pieces) take this path; everything else goes to the fallback (the group's
// gloo / NCCL communicator), which all ranks choose alike since they see the same sizes.
#pragma once

#include <memory>
#include <string>

#include "ops/communicator.h"

namespace taco::ops {

// Shared memory over `fallback` when every rank of its group runs on this machine (same host
// name and boot id) and the segment can be created; otherwise `fallback` itself. Collective:
// every rank calls it at the same point.
std::unique_ptr<Communicator> with_shared_memory(std::unique_ptr<Communicator> fallback,
                                                 const std::string& group_name);

}  // namespace taco::ops
