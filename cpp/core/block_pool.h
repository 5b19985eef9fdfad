// A pool of fixed-size KV blocks: reference counts, a free list and, when prefix caching is on, a
// content-addressed cache of full blocks whose unreferenced members are evicted least recently
// used first. Device and CPU (swap) pools are both BlockPools; only the device pool caches.
#pragma once

#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

namespace taco {

// Chained content hash of one full block: hash(parent block's hash, this block's tokens).
uint64_t hash_block(uint64_t parent_hash, const int32_t* tokens, int32_t n);

class BlockPool {
 public:
  BlockPool(int32_t num_blocks, int32_t block_size, bool enable_caching);

  int32_t num_blocks() const { return static_cast<int32_t>(blocks_.size()); }
  // Blocks an allocation can take: never used plus cached but unreferenced (evictable).
  int32_t num_free() const { return static_cast<int32_t>(free_.size() + lru_.size()); }
  int32_t num_cached_free() const { return static_cast<int32_t>(lru_.size()); }
  int32_t ref_count(int32_t block) const { return blocks_[block].ref; }
  bool is_cached(int32_t block) const { return blocks_[block].cached; }

  // A block with reference count 1. Prefers never-used blocks, then evicts the LRU cached one.
  // Throws std::logic_error when num_free() == 0 (callers check first).
  int32_t allocate();
  void incref(int32_t block);
  // At zero references a cached block becomes evictable (keeps its content), others are freed.
  void decref(int32_t block);

  // The cached block holding exactly these tokens after parent_hash, or -1. Does not take a
  // reference: the caller increfs a hit it keeps.
  int32_t lookup(uint64_t hash, uint64_t parent_hash, const int32_t* tokens) const;
  // Publishes a full, computed block under its hash; a no-op when that content is already cached.
  void publish(int32_t block, uint64_t hash, uint64_t parent_hash, const int32_t* tokens);

 private:
  struct Block {
    int32_t ref = 0;
    bool cached = false;
    uint64_t hash = 0;
    uint64_t parent_hash = 0;
    std::list<int32_t>::iterator lru_pos;  // valid while cached and ref == 0
  };
  void evict(int32_t block);

  int32_t block_size_;
  bool enable_caching_;
  std::vector<Block> blocks_;
  std::vector<int32_t> free_;    // never-used or evicted blocks, used as a stack
  std::list<int32_t> lru_;       // cached, unreferenced blocks; front = least recently used
  std::vector<int32_t> tokens_;  // [num_blocks * block_size] content of cached blocks
  std::unordered_map<uint64_t, int32_t> by_hash_;
};

}  // namespace taco
