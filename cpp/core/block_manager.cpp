#include "core/block_manager.h"

#include <algorithm>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

namespace taco {

BlockManager::BlockManager(int32_t num_device_blocks, int32_t num_cpu_blocks, int32_t block_size,
                           bool enable_prefix_caching)
    : block_size_(block_size),
      caching_(enable_prefix_caching),
      device_(num_device_blocks, block_size, enable_prefix_caching),
      cpu_(num_cpu_blocks, block_size, false),
      tokens_scratch_(block_size) {}

const int32_t* BlockManager::block_tokens(const Sequence& seq, int32_t i) {
  for (int32_t k = 0; k < block_size_; ++k) tokens_scratch_[k] = seq.token_at(i * block_size_ + k);
  return tokens_scratch_.data();
}

// Hash of block i of seq; hashes of blocks before i are computed first and memoized in t.
uint64_t BlockManager::block_hash(const Sequence& seq, BlockTable& t, int32_t i) {
  while (static_cast<int32_t>(t.hashes.size()) <= i) {
    const int32_t j = static_cast<int32_t>(t.hashes.size());
    const uint64_t parent = j == 0 ? seq.cache_salt : t.hashes[j - 1];
    t.hashes.push_back(hash_block(parent, block_tokens(seq, j), block_size_));
  }
  return t.hashes[i];
}

int32_t BlockManager::attach_cached_prefix(const Sequence& seq, BlockTable& t) {
  if (!caching_ || !t.blocks.empty()) return 0;
  const int32_t max_blocks = (seq.len() - 1) / block_size_;
  for (int32_t i = 0; i < max_blocks; ++i) {
    const uint64_t h = block_hash(seq, t, i);
    const int32_t b =
        device_.lookup(h, i == 0 ? seq.cache_salt : t.hashes[i - 1], block_tokens(seq, i));
    if (b < 0) break;
    device_.incref(b);
    t.blocks.push_back(b);
  }
  t.num_published = static_cast<int32_t>(t.blocks.size());
  return static_cast<int32_t>(t.blocks.size()) * block_size_;
}

int32_t BlockManager::blocks_needed(const BlockTable& t, int32_t num_computed,
                                    int32_t num_new) const {
  const int32_t have = static_cast<int32_t>(t.blocks.size());
  const int32_t want = (num_computed + num_new + block_size_ - 1) / block_size_;
  int32_t n = want > have ? want - have : 0;
  const int32_t first = num_computed / block_size_;
  if (num_new > 0 && first < have) {
    const int32_t b = t.blocks[first];
    if (device_.ref_count(b) > 1 || device_.is_cached(b)) ++n;
  }
  return n;
}

void BlockManager::append_slots(BlockTable& t, int32_t num_computed, int32_t num_new,
                                BlockPairs* copies, std::vector<int64_t>* slots) {
  const int32_t first = num_computed / block_size_;
  if (num_new > 0 && first < static_cast<int32_t>(t.blocks.size())) {
    const int32_t b = t.blocks[first];
    // Writing into a block others read (a fork's shared tail, or a published cached block):
    // copy it first so their view stays intact.
    if (device_.ref_count(b) > 1 || device_.is_cached(b)) {
      const int32_t fresh = device_.allocate();
      copies->emplace_back(b, fresh);
      device_.decref(b);
      t.blocks[first] = fresh;
      // The copy is private and unpublished; hashes of earlier blocks stay valid.
      if (t.num_published > first) t.num_published = first;
    }
  }
  const int32_t want = (num_computed + num_new + block_size_ - 1) / block_size_;
  while (static_cast<int32_t>(t.blocks.size()) < want) t.blocks.push_back(device_.allocate());
  for (int32_t pos = num_computed; pos < num_computed + num_new; ++pos) {
    slots->push_back(static_cast<int64_t>(t.blocks[pos / block_size_]) * block_size_ +
                     pos % block_size_);
  }
}

void BlockManager::publish_full_blocks(const Sequence& seq, BlockTable& t) {
  if (!caching_ || t.on_cpu) return;
  const int32_t full =
      std::min<int32_t>(seq.num_computed / block_size_, static_cast<int32_t>(t.blocks.size()));
  for (int32_t i = t.num_published; i < full; ++i) {
    const uint64_t h = block_hash(seq, t, i);
    device_.publish(t.blocks[i], h, i == 0 ? seq.cache_salt : t.hashes[i - 1],
                    block_tokens(seq, i));
  }
  if (full > t.num_published) t.num_published = full;
}

void BlockManager::fork(const BlockTable& parent, int32_t num_tokens, BlockTable* child) {
  const int32_t n = (num_tokens + block_size_ - 1) / block_size_;
  if (parent.on_cpu || n > static_cast<int32_t>(parent.blocks.size())) {
    throw std::logic_error("BlockManager::fork: parent does not cover the shared tokens");
  }
  child->blocks.assign(parent.blocks.begin(), parent.blocks.begin() + n);
  for (int32_t b : child->blocks) device_.incref(b);
  const int32_t full = num_tokens / block_size_;
  child->hashes.assign(parent.hashes.begin(),
                       parent.hashes.begin() + std::min<size_t>(full, parent.hashes.size()));
  child->num_published = std::min(parent.num_published, full);
  child->on_cpu = false;
}

void BlockManager::truncate(BlockTable& t, int32_t num_tokens) {
  if (t.on_cpu) return;
  const auto keep = static_cast<size_t>((num_tokens + block_size_ - 1) / block_size_);
  while (t.blocks.size() > keep) {
    device_.decref(t.blocks.back());
    t.blocks.pop_back();
  }
  if (t.hashes.size() > keep) t.hashes.resize(keep);
  t.num_published = std::min(t.num_published, static_cast<int32_t>(keep));
}

void BlockManager::free(BlockTable& t) {
  BlockPool& pool = t.on_cpu ? cpu_ : device_;
  // Release the tail first so that cached prefix blocks end up most recently used last:
  // evicting a chain from its end keeps the shared beginnings alive longer.
  for (auto it = t.blocks.rbegin(); it != t.blocks.rend(); ++it) pool.decref(*it);
  t.blocks.clear();
  t.on_cpu = false;
  t.num_published = 0;
}

int32_t BlockManager::distinct_blocks(const std::vector<BlockTable*>& tables) const {
  std::unordered_set<int32_t> seen;
  for (const BlockTable* t : tables) seen.insert(t->blocks.begin(), t->blocks.end());
  return static_cast<int32_t>(seen.size());
}

bool BlockManager::can_swap_out(const std::vector<BlockTable*>& tables) const {
  return cpu_.num_blocks() > 0 && distinct_blocks(tables) <= cpu_.num_free();
}

// Moves every table's blocks from one pool to the other; a block shared by several tables gets
// one destination block with as many references.
void BlockManager::move_group(const std::vector<BlockTable*>& tables, BlockPool& from,
                              BlockPool& to, BlockPairs* pairs) {
  std::unordered_map<int32_t, int32_t> moved;
  for (BlockTable* t : tables) {
    for (int32_t& b : t->blocks) {
      auto it = moved.find(b);
      int32_t dst;
      if (it == moved.end()) {
        dst = to.allocate();
        moved.emplace(b, dst);
        pairs->emplace_back(b, dst);
      } else {
        dst = it->second;
        to.incref(dst);
      }
      from.decref(b);
      b = dst;
    }
  }
}

void BlockManager::swap_out(const std::vector<BlockTable*>& tables, BlockPairs* device_to_cpu) {
  move_group(tables, device_, cpu_, device_to_cpu);
  for (BlockTable* t : tables) {
    t->on_cpu = true;
    t->num_published = 0;
  }
}

void BlockManager::swap_in(const std::vector<BlockTable*>& tables, BlockPairs* cpu_to_device) {
  move_group(tables, cpu_, device_, cpu_to_device);
  for (BlockTable* t : tables) t->on_cpu = false;
}

}  // namespace taco
