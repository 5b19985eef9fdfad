// The collectives of tensor parallelism, behind one small interface: the model and the runner call
// these and never know which library moves the bytes. The ranks' process group is created by
// the Python frontend (torch.distributed: gloo for CPU tensors, NCCL for CUDA tensors) and
// registered under a name; C++ resolves that name and calls c10d directly.
#pragma once

#include <ATen/ATen.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace taco::ops {

// Time spent in collectives and how many ran, for the throughput notes (TACO_TP_STATS=1 prints
// them when the communicator is destroyed).
struct CommStats {
  int64_t calls = 0;
  int64_t bytes = 0;
  double seconds = 0.0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // In place: t becomes the elementwise sum over the ranks (contiguous, any float dtype).
  virtual void all_reduce_sum(at::Tensor& t) = 0;
  // In place: the elementwise minimum (int64 tensors; KV block counts).
  virtual void all_reduce_min(at::Tensor& t) = 0;
  // Every rank's t [n, ...] (same shape everywhere) stacked in rank order: [world * n, ...].
  virtual at::Tensor all_gather(const at::Tensor& t) = 0;
  // In place: rank `root`'s t (a CPU tensor of the same shape on every rank) on every rank.
  virtual void broadcast(at::Tensor& t, int root) = 0;

  // True when all_reduce_sum of a CUDA tensor of up to `bytes` may be captured in a CUDA graph
  // (our IPC all-reduce; NCCL calls through c10d are not captured here).
  virtual bool cuda_graph_safe(int64_t /*bytes*/) const { return false; }

  const CommStats& stats() const { return stats_; }

 protected:
  // Counts one collective of `bytes` that began at `start` and has just ended.
  void record(int64_t bytes, std::chrono::steady_clock::time_point start) {
    stats_.calls += 1;
    stats_.bytes += bytes;
    stats_.seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  CommStats stats_;
};

// The positive number of seconds the environment variable `name` holds, else `fallback`.
double env_seconds(const char* name, double fallback);

// TACO_TP_TIMEOUT_S (300 when unset or invalid): how long a collective waits for a peer.
double collective_timeout_seconds();

// Prints "taco tp rank R (kind): N collectives, M MB, S s" to stderr when TACO_TP_STATS=1.
void report_stats(const std::string& kind, int rank, const CommStats& stats);

// The process group registered as `group_name` (torch.distributed's _register_process_group).
// Throws std::invalid_argument when no such group exists or its size is not world_size.
std::unique_ptr<Communicator> resolve_communicator(const std::string& group_name, int world_size);

}  // namespace taco::ops
