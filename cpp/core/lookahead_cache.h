// The lookahead cache: an engine-wide prefix tree of the n-grams of every prompt and output seen,
// from which speculative decoding drafts continuations that other requests (or this one) took.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "core/sequence.h"

namespace taco {

class LookaheadCache {
 public:
  // Windows of `depth` tokens are indexed (a context of up to max_n tokens and the draft after
  // it); `max_nodes` bounds the tree, which starts over when full.
  LookaheadCache(int32_t depth, int32_t max_nodes);

  // Indexes the windows of tokens [0, seq.len()) that start at or after *next_start and end
  // within the sequence; advances *next_start past them.
  void insert(const Sequence& seq, int32_t* next_start);

  // The longest suffix of seq's tokens of min_n .. max_n tokens that the tree holds, followed by
  // its most frequent continuation (the latest on ties) for up to max_tokens tokens, appended to
  // draft. Appends nothing when no suffix of min_n tokens is known.
  void lookup(const Sequence& seq, int32_t max_n, int32_t min_n, int32_t max_tokens,
              std::vector<int32_t>* draft) const;

  int32_t num_nodes() const { return static_cast<int32_t>(nodes_.size()); }
  int32_t depth() const { return depth_; }

 private:
  struct Node {
    uint32_t count = 0;       // windows through this node
    int32_t best_child = -1;  // the most frequent child (node id)
  };
  int32_t child(int32_t node, int32_t token) const;
  int32_t child_or_add(int32_t node, int32_t token);
  void clear();

  int32_t depth_;
  int32_t max_nodes_;
  std::vector<Node> nodes_;                      // node 0: the root
  std::vector<int32_t> tokens_;                  // the token leading into each node
  std::unordered_map<uint64_t, int32_t> edges_;  // (parent << 32 | token) -> child
};

}  // namespace taco
