// Rank 0's side of the tensor-parallel step protocol. Each engine step locks the ranks, sends
// them its StepPlan and then runs the same collectives they do. Between steps the other ranks
// wait in a broadcast, which would time out (the process group's timeout) while the caller is
// idle: a heartbeat thread sends an idle plan after TACO_TP_HEARTBEAT_S seconds without a step
// (default 10, or a third of TACO_TP_TIMEOUT_S when that is shorter). Destruction sends the stop
// plan. After a failed collective the group is unusable, so every later step fails at once with the
// first error.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "model/step_plan.h"

namespace taco {

class TpDriver {
 public:
  explicit TpDriver(ops::Communicator& comm);
  ~TpDriver();
  TpDriver(const TpDriver&) = delete;
  TpDriver& operator=(const TpDriver&) = delete;

  // Locks the ranks for one step (until the returned lock is released) and broadcasts `plan`.
  // Throws std::runtime_error when an earlier collective failed.
  std::unique_lock<std::mutex> begin_step(const StepPlan& plan);
  // Records that a step failed: the group is unusable from now on. `step` is the step's lock,
  // taken here when begin_step did not return it.
  void fail(std::unique_lock<std::mutex>& step, const std::string& error);

 private:
  void heartbeat();
  void send_locked(const StepPlan& plan);

  ops::Communicator& comm_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::string error_;  // the first failure; non-empty: the group is unusable
  std::chrono::steady_clock::duration idle_;
  std::chrono::steady_clock::time_point last_sent_;
  std::thread thread_;
};

}  // namespace taco
