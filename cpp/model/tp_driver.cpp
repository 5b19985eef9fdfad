#include "model/tp_driver.h"

#include "ops/communicator.h"

#include <algorithm>
#include <stdexcept>

namespace taco {

namespace {

// TACO_TP_HEARTBEAT_S, else 10 s or a third of the collectives' timeout if that is shorter.
std::chrono::steady_clock::duration heartbeat_interval() {
  const double seconds = ops::env_seconds("TACO_TP_HEARTBEAT_S",
                                          std::min(10.0, ops::collective_timeout_seconds() / 3));
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(seconds));
}

}  // namespace

TpDriver::TpDriver(ops::Communicator& comm)
    : comm_(comm), idle_(heartbeat_interval()), last_sent_(std::chrono::steady_clock::now()) {
  thread_ = std::thread([this] { heartbeat(); });
}

TpDriver::~TpDriver() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (error_.empty()) {
      StepPlan stop;
      stop.kind = StepPlan::Kind::kStop;
      try {
        send_step_plan(comm_, stop);
      } catch (const std::exception&) {
        // The other ranks are gone already; nothing is left to stop.
      }
    }
  }
  wake_.notify_all();
  thread_.join();
}

void TpDriver::send_locked(const StepPlan& plan) {
  if (!error_.empty()) {
    throw std::runtime_error("tensor parallel: a rank failed earlier (" + error_ +
                             "); this engine cannot run further steps");
  }
  try {
    send_step_plan(comm_, plan);
  } catch (const std::exception& e) {
    error_ = e.what();
    throw;
  }
  last_sent_ = std::chrono::steady_clock::now();
}

std::unique_lock<std::mutex> TpDriver::begin_step(const StepPlan& plan) {
  std::unique_lock<std::mutex> lock(mu_);
  send_locked(plan);
  return lock;
}

void TpDriver::fail(std::unique_lock<std::mutex>& step, const std::string& error) {
  if (!step.owns_lock()) step = std::unique_lock<std::mutex>(mu_);
  if (error_.empty()) error_ = error.empty() ? "a step failed" : error;
}

void TpDriver::heartbeat() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    const auto due = last_sent_ + idle_;
    if (std::chrono::steady_clock::now() < due) {
      wake_.wait_until(lock, due);
      continue;
    }
    if (!error_.empty()) {
      wake_.wait(lock, [this] { return stopping_; });
      break;
    }
    StepPlan idle;
    idle.kind = StepPlan::Kind::kIdle;
    try {
      send_locked(idle);
    } catch (const std::exception&) {
      // Recorded in error_; the next step reports it.
    }
  }
}

}  // namespace taco
