// Paged KV bookkeeping for sequences: block tables over a device BlockPool (with copy-on-write
// and prefix caching) and a CPU BlockPool that holds swapped-out sequences.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "core/block_pool.h"
#include "core/sequence.h"

namespace taco {

// The blocks of one sequence. Invariant while on the device: blocks.size() ==
// ceil(tokens with a slot / block_size); every block but the last is full.
struct BlockTable {
  std::vector<int32_t> blocks;  // device block ids, or CPU block ids while on_cpu
  bool on_cpu = false;
  std::vector<uint64_t> hashes;  // chained hashes of the leading full blocks, computed lazily
  int32_t num_published = 0;     // leading blocks already offered to the prefix cache
};

using BlockPairs = std::vector<std::pair<int32_t, int32_t>>;

class BlockManager {
 public:
  BlockManager(int32_t num_device_blocks, int32_t num_cpu_blocks, int32_t block_size,
               bool enable_prefix_caching);

  int32_t block_size() const { return block_size_; }
  bool prefix_caching() const { return caching_; }
  const BlockPool& device() const { return device_; }
  const BlockPool& cpu() const { return cpu_; }
  bool can_allocate(int32_t n) const { return device_.num_free() >= n; }

  // For a sequence with no blocks: takes the cached blocks matching its leading full blocks,
  // stopping before the block holding its last token (that one must be computed to get logits).
  // Returns the number of cached tokens (a multiple of block_size).
  int32_t attach_cached_prefix(const Sequence& seq, BlockTable& t);

  // Device blocks that giving slots to tokens [num_computed, num_computed + num_new) takes:
  // new blocks plus one copy when the partly filled last block is shared or cached.
  int32_t blocks_needed(const BlockTable& t, int32_t num_computed, int32_t num_new) const;
  // Gives those tokens slots (check blocks_needed first). Copy-on-write pairs go to copies,
  // one slot per token to slots.
  void append_slots(BlockTable& t, int32_t num_computed, int32_t num_new, BlockPairs* copies,
                    std::vector<int64_t>* slots);
  // Offers the sequence's newly full, computed blocks to the prefix cache.
  void publish_full_blocks(const Sequence& seq, BlockTable& t);

  // child shares the parent's blocks covering its first num_tokens tokens.
  void fork(const BlockTable& parent, int32_t num_tokens, BlockTable* child);
  // Releases every block of t (device or CPU).
  void free(BlockTable& t);
  // Releases the device blocks past those holding t's first num_tokens tokens (the slots of
  // rejected speculative tokens).
  void truncate(BlockTable& t, int32_t num_tokens);

  // Swap a group of sequences as one: blocks they share are moved once. Costs count distinct
  // blocks; the caller checks them against the destination pool's free blocks.
  int32_t distinct_blocks(const std::vector<BlockTable*>& tables) const;
  bool can_swap_out(const std::vector<BlockTable*>& tables) const;
  void swap_out(const std::vector<BlockTable*>& tables, BlockPairs* device_to_cpu);
  void swap_in(const std::vector<BlockTable*>& tables, BlockPairs* cpu_to_device);

 private:
  const int32_t* block_tokens(const Sequence& seq, int32_t i);  // into tokens_scratch_
  uint64_t block_hash(const Sequence& seq, BlockTable& t, int32_t i);
  static void move_group(const std::vector<BlockTable*>& tables, BlockPool& from, BlockPool& to,
                         BlockPairs* pairs);

  int32_t block_size_;
  bool caching_;
  BlockPool device_;
  BlockPool cpu_;
  std::vector<int32_t> tokens_scratch_;
};

}  // namespace taco
