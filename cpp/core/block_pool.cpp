#include "core/block_pool.h"

#include <algorithm>
#include <stdexcept>

#include "core/mix64.h"

namespace taco {

uint64_t hash_block(uint64_t parent_hash, const int32_t* tokens, int32_t n) {
  uint64_t h = mix64(parent_hash ^ 0x5bd1e995ULL);
  for (int32_t i = 0; i < n; ++i) h = mix64(h ^ static_cast<uint32_t>(tokens[i]));
  return h;
}

BlockPool::BlockPool(int32_t num_blocks, int32_t block_size, bool enable_caching)
    : block_size_(block_size), enable_caching_(enable_caching), blocks_(num_blocks) {
  free_.reserve(num_blocks);
  // Stack order: block 0 is handed out first.
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
  if (enable_caching_) tokens_.resize(static_cast<size_t>(num_blocks) * block_size);
}

int32_t BlockPool::allocate() {
  int32_t b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (!lru_.empty()) {
    b = lru_.front();
    evict(b);
  } else {
    throw std::logic_error("BlockPool::allocate: no free block");
  }
  blocks_[b].ref = 1;
  return b;
}

void BlockPool::evict(int32_t b) {
  Block& blk = blocks_[b];
  lru_.erase(blk.lru_pos);
  by_hash_.erase(blk.hash);
  blk.cached = false;
}

void BlockPool::incref(int32_t b) {
  Block& blk = blocks_[b];
  if (blk.ref == 0) {
    if (!blk.cached) throw std::logic_error("BlockPool::incref on a free block");
    lru_.erase(blk.lru_pos);
  }
  ++blk.ref;
}

void BlockPool::decref(int32_t b) {
  Block& blk = blocks_[b];
  if (blk.ref <= 0) throw std::logic_error("BlockPool::decref on a free block");
  if (--blk.ref > 0) return;
  if (blk.cached) {
    blk.lru_pos = lru_.insert(lru_.end(), b);
  } else {
    free_.push_back(b);
  }
}

int32_t BlockPool::lookup(uint64_t hash, uint64_t parent_hash, const int32_t* tokens) const {
  if (!enable_caching_) return -1;
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return -1;
  const Block& blk = blocks_[it->second];
  const int32_t* stored = &tokens_[static_cast<size_t>(it->second) * block_size_];
  if (blk.parent_hash != parent_hash || !std::equal(tokens, tokens + block_size_, stored)) {
    return -1;  // a hash collision: treat as a miss
  }
  return it->second;
}

void BlockPool::publish(int32_t b, uint64_t hash, uint64_t parent_hash, const int32_t* tokens) {
  if (!enable_caching_ || blocks_[b].cached || by_hash_.count(hash)) return;
  Block& blk = blocks_[b];
  blk.cached = true;
  blk.hash = hash;
  blk.parent_hash = parent_hash;
  std::copy(tokens, tokens + block_size_, &tokens_[static_cast<size_t>(b) * block_size_]);
  by_hash_.emplace(hash, b);
}

}  // namespace taco
