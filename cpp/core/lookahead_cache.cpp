#include "core/lookahead_cache.h"

#include <algorithm>

namespace taco {

namespace {

uint64_t edge_key(int32_t node, int32_t token) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(node)) << 32) | static_cast<uint32_t>(token);
}

}  // namespace

LookaheadCache::LookaheadCache(int32_t depth, int32_t max_nodes)
    : depth_(std::max(depth, 1)), max_nodes_(std::max(max_nodes, 1)) {
  clear();
}

void LookaheadCache::clear() {
  nodes_.assign(1, Node{});
  tokens_.assign(1, -1);
  edges_.clear();
}

int32_t LookaheadCache::child(int32_t node, int32_t token) const {
  auto it = edges_.find(edge_key(node, token));
  return it == edges_.end() ? -1 : it->second;
}

int32_t LookaheadCache::child_or_add(int32_t node, int32_t token) {
  auto [it, added] = edges_.try_emplace(edge_key(node, token), 0);
  if (added) {
    it->second = static_cast<int32_t>(nodes_.size());
    nodes_.push_back(Node{});
    tokens_.push_back(token);
  }
  return it->second;
}

void LookaheadCache::insert(const Sequence& seq, int32_t* next_start) {
  const int32_t len = seq.len();
  for (int32_t start = *next_start; start + depth_ <= len; ++start) {
    if (static_cast<int32_t>(nodes_.size()) + depth_ > max_nodes_) clear();
    int32_t node = 0;
    for (int32_t i = 0; i < depth_; ++i) {
      const int32_t next = child_or_add(node, seq.token_at(start + i));
      Node& c = nodes_[next];
      ++c.count;
      Node& parent = nodes_[node];
      // Ties go to the latest window: recent continuations are the likelier ones.
      if (parent.best_child < 0 || c.count >= nodes_[parent.best_child].count) {
        parent.best_child = next;
      }
      node = next;
    }
    *next_start = start + 1;
  }
}

void LookaheadCache::lookup(const Sequence& seq, int32_t max_n, int32_t min_n, int32_t max_tokens,
                            std::vector<int32_t>* draft) const {
  const int32_t len = seq.len();
  max_n = std::min({max_n, len, depth_ - 1});
  for (int32_t n = max_n; n >= min_n; --n) {
    int32_t node = 0;
    for (int32_t i = len - n; i < len && node >= 0; ++i) node = child(node, seq.token_at(i));
    if (node < 0 || nodes_[node].best_child < 0) continue;
    for (int32_t k = 0; k < max_tokens && nodes_[node].best_child >= 0; ++k) {
      node = nodes_[node].best_child;
      draft->push_back(tokens_[node]);
    }
    return;
  }
}

}  // namespace taco
