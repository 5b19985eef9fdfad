#include "model/step_plan.h"

#include <ATen/ATen.h>

#include <stdexcept>
#include <string>

#include "ops/communicator.h"

namespace taco {

namespace {

constexpr int64_t kMagic = 0x7461636f54500001;  // "tacoTP", version 1
constexpr size_t kHeaderWords = 3;              // magic, kind, total words

class Writer {
 public:
  explicit Writer(std::vector<int64_t>& w) : w_(w) {}
  void word(int64_t v) { w_.push_back(v); }
  template <typename T>
  void vec(const std::vector<T>& v) {
    w_.push_back(static_cast<int64_t>(v.size()));
    w_.insert(w_.end(), v.begin(), v.end());
  }
  void pairs(const std::vector<std::pair<int32_t, int32_t>>& v) {
    w_.push_back(static_cast<int64_t>(v.size()));
    for (const auto& [a, b] : v) w_.push_back(a), w_.push_back(b);
  }

 private:
  std::vector<int64_t>& w_;
};

class Reader {
 public:
  explicit Reader(const std::vector<int64_t>& w) : w_(w) {}
  int64_t word() {
    if (pos_ >= w_.size()) fail();
    return w_[pos_++];
  }
  template <typename T>
  void vec(std::vector<T>& out) {
    const int64_t n = count(1);
    out.assign(w_.begin() + pos_, w_.begin() + pos_ + n);
    pos_ += n;
  }
  void pairs(std::vector<std::pair<int32_t, int32_t>>& out) {
    const int64_t n = count(2);
    out.clear();
    for (int64_t i = 0; i < n; ++i, pos_ += 2) {
      out.emplace_back(static_cast<int32_t>(w_[pos_]), static_cast<int32_t>(w_[pos_ + 1]));
    }
  }
  bool done() const { return pos_ == w_.size(); }
  [[noreturn]] void fail() const {
    throw std::runtime_error("tensor parallel: malformed step plan at word " +
                             std::to_string(pos_) + " of " + std::to_string(w_.size()));
  }

 private:
  int64_t count(int64_t words_each) {
    const int64_t n = word();
    if (n < 0 || n > static_cast<int64_t>(w_.size() - pos_) / words_each) fail();
    return n;
  }
  const std::vector<int64_t>& w_;
  size_t pos_ = 0;
};

}  // namespace

std::vector<int64_t> encode_step_plan(const StepPlan& p) {
  std::vector<int64_t> w;
  Writer out(w);
  out.word(kMagic);
  out.word(static_cast<int64_t>(p.kind));
  out.word(0);  // total, filled below
  out.pairs(p.swap_in);
  out.pairs(p.swap_out);
  out.pairs(p.copy);
  out.vec(p.input_ids);
  out.vec(p.positions);
  out.vec(p.slot_mapping);
  out.vec(p.query_start_loc);
  out.vec(p.seq_lens);
  out.vec(p.block_table);
  out.word(p.max_blocks);
  out.word(p.max_query_len);
  out.word(p.max_seq_len);
  out.vec(p.logit_rows);
  w[2] = static_cast<int64_t>(w.size());
  return w;
}

StepPlan decode_step_plan(const std::vector<int64_t>& words) {
  Reader in(words);
  StepPlan p;
  if (in.word() != kMagic) in.fail();
  const int64_t kind = in.word();
  if (kind < 1 || kind > 3) in.fail();
  p.kind = static_cast<StepPlan::Kind>(kind);
  if (in.word() != static_cast<int64_t>(words.size())) in.fail();
  in.pairs(p.swap_in);
  in.pairs(p.swap_out);
  in.pairs(p.copy);
  in.vec(p.input_ids);
  in.vec(p.positions);
  in.vec(p.slot_mapping);
  in.vec(p.query_start_loc);
  in.vec(p.seq_lens);
  in.vec(p.block_table);
  p.max_blocks = in.word();
  p.max_query_len = in.word();
  p.max_seq_len = in.word();
  in.vec(p.logit_rows);
  const size_t T = p.input_ids.size(), B = p.seq_lens.size();
  const bool consistent = in.done() && p.positions.size() == T && p.slot_mapping.size() == T &&
                          (p.kind != StepPlan::Kind::kStep || p.query_start_loc.size() == B + 1) &&
                          p.max_blocks >= 0 &&
                          p.block_table.size() == B * static_cast<size_t>(p.max_blocks);
  if (!consistent) in.fail();
  for (int64_t r : p.logit_rows) {
    if (r < 0 || r >= static_cast<int64_t>(T)) in.fail();
  }
  return p;
}

void send_step_plan(ops::Communicator& comm, const StepPlan& p) {
  std::vector<int64_t> words = encode_step_plan(p);
  at::Tensor size = at::tensor({static_cast<int64_t>(words.size())}, at::kLong);
  comm.broadcast(size, 0);
  at::Tensor body = at::from_blob(words.data(), {static_cast<int64_t>(words.size())}, at::kLong);
  comm.broadcast(body, 0);
}

StepPlan receive_step_plan(ops::Communicator& comm) {
  at::Tensor size = at::zeros({1}, at::kLong);
  comm.broadcast(size, 0);
  const int64_t n = size.item<int64_t>();
  if (n < static_cast<int64_t>(kHeaderWords) || n > (int64_t{1} << 32)) {
    throw std::runtime_error("tensor parallel: step plan of " + std::to_string(n) + " words");
  }
  std::vector<int64_t> words(static_cast<size_t>(n));
  at::Tensor body = at::from_blob(words.data(), {n}, at::kLong);
  comm.broadcast(body, 0);
  return decode_step_plan(words);
}

}  // namespace taco
