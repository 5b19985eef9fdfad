#include "ops/communicator.h"

#include <torch/csrc/distributed/c10d/GroupRegistry.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <vector>

namespace taco::ops {

namespace {

// Every collective waits for its result: the forward needs it next, and an error (a peer that
// died closes its connections) surfaces here as an exception in the step.
class C10dCommunicator : public Communicator {
 public:
  explicit C10dCommunicator(c10::intrusive_ptr<c10d::ProcessGroup> pg) : pg_(std::move(pg)) {}

  ~C10dCommunicator() override { report_stats("c10d", rank(), stats_); }

  int rank() const override { return pg_->getRank(); }
  int world_size() const override { return pg_->getSize(); }

  void all_reduce_sum(at::Tensor& t) override { reduce(t, c10d::ReduceOp::SUM); }
  void all_reduce_min(at::Tensor& t) override { reduce(t, c10d::ReduceOp::MIN); }

  at::Tensor all_gather(const at::Tensor& t) override {
    const auto start = std::chrono::steady_clock::now();
    std::vector<at::Tensor> in{t.contiguous()};
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < world_size(); ++r) out[0].push_back(at::empty_like(in[0]));
    pg_->allgather(out, in)->wait();
    record(t.nbytes(), start);
    return at::cat(out[0], 0);
  }

  void broadcast(at::Tensor& t, int root) override {
    const auto start = std::chrono::steady_clock::now();
    std::vector<at::Tensor> ts{t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    pg_->broadcast(ts, o)->wait();
    record(t.nbytes(), start);
  }

 private:
  void reduce(at::Tensor& t, c10d::ReduceOp op) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<at::Tensor> ts{t};
    c10d::AllreduceOptions o;
    o.reduceOp = op;
    pg_->allreduce(ts, o)->wait();
    record(t.nbytes(), start);
  }

  c10::intrusive_ptr<c10d::ProcessGroup> pg_;
};

}  // namespace

double env_seconds(const char* name, double fallback) {
  const char* env = std::getenv(name);
  if (env == nullptr || *env == '\0') return fallback;
  char* end = nullptr;
  const double v = std::strtod(env, &end);
  return end != env && *end == '\0' && v > 0 ? v : fallback;
}

double collective_timeout_seconds() { return env_seconds("TACO_TP_TIMEOUT_S", 300.0); }

void report_stats(const std::string& kind, int rank, const CommStats& s) {
  const char* env = std::getenv("TACO_TP_STATS");
  if (env == nullptr || *env != '1') return;
  std::fprintf(stderr, "taco tp rank %d (%s): %lld collectives, %.1f MB, %.3f s\n", rank,
               kind.c_str(), static_cast<long long>(s.calls), s.bytes / 1e6, s.seconds);
}

std::unique_ptr<Communicator> resolve_communicator(const std::string& group_name, int world_size) {
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  std::string why = "none is registered under that name";
  try {
    pg = c10d::resolve_process_group(group_name);
  } catch (const std::exception& e) {
    why = e.what();
    pg.reset();
  }
  if (!pg) throw std::invalid_argument("distributed_group \"" + group_name + "\": " + why);
  if (pg->getSize() != world_size) {
    throw std::invalid_argument("distributed_group \"" + group_name + "\" has " +
                                std::to_string(pg->getSize()) + " ranks, tensor_parallel_size is " +
                                std::to_string(world_size));
  }
  return std::make_unique<C10dCommunicator>(std::move(pg));
}

}  // namespace taco::ops
