// BlockPool and BlockManager: reference counts, free list, prefix cache, copy-on-write, swap.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <stdexcept>

#include "core/block_manager.h"

namespace taco {
namespace {

Sequence make_seq(std::vector<int32_t> prompt, int32_t num_computed) {
  Sequence s;
  s.prompt = std::make_shared<const std::vector<int32_t>>(std::move(prompt));
  s.num_computed = num_computed;
  return s;
}

TEST(BlockPool, AllocateFreeInvariants) {
  BlockPool pool(8, 4, false);
  EXPECT_EQ(pool.num_free(), 8);
  std::vector<int32_t> got;
  for (int i = 0; i < 8; ++i) got.push_back(pool.allocate());
  EXPECT_EQ(pool.num_free(), 0);
  EXPECT_THROW(pool.allocate(), std::logic_error);
  std::sort(got.begin(), got.end());
  for (int i = 0; i < 8; ++i) EXPECT_EQ(got[i], i);  // each block handed out once
  pool.incref(3);
  EXPECT_EQ(pool.ref_count(3), 2);
  pool.decref(3);
  EXPECT_EQ(pool.num_free(), 0);
  for (int32_t b : got) pool.decref(b);
  EXPECT_EQ(pool.num_free(), 8);
  EXPECT_THROW(pool.decref(0), std::logic_error);
}

TEST(BlockPool, CachedBlocksAreEvictedLeastRecentlyUsedFirst) {
  BlockPool pool(2, 2, true);
  const int32_t t1[2] = {1, 2}, t2[2] = {3, 4};
  const int32_t a = pool.allocate(), b = pool.allocate();
  pool.publish(a, hash_block(0, t1, 2), 0, t1);
  pool.publish(b, hash_block(0, t2, 2), 0, t2);
  pool.decref(a);
  pool.decref(b);
  EXPECT_EQ(pool.num_free(), 2);
  EXPECT_EQ(pool.num_cached_free(), 2);
  EXPECT_EQ(pool.lookup(hash_block(0, t1, 2), 0, t1), a);
  pool.incref(a);  // a hit: a is in use again, then released as most recent
  pool.decref(a);
  const int32_t c = pool.allocate();  // evicts b, the least recently used
  EXPECT_EQ(c, b);
  EXPECT_EQ(pool.lookup(hash_block(0, t2, 2), 0, t2), -1);
  EXPECT_EQ(pool.lookup(hash_block(0, t1, 2), 0, t1), a);
  EXPECT_EQ(pool.lookup(hash_block(0, t1, 2), 7, t1), -1);  // other parent: a miss
}

TEST(BlockManager, AppendSlotsAndFree) {
  BlockManager bm(8, 0, 4, false);
  Sequence s = make_seq({1, 2, 3, 4, 5, 6}, 0);
  BlockTable t;
  EXPECT_EQ(bm.blocks_needed(t, 0, 6), 2);
  BlockPairs copies;
  std::vector<int64_t> slots;
  bm.append_slots(t, 0, 6, &copies, &slots);
  ASSERT_EQ(t.blocks.size(), 2u);
  ASSERT_EQ(slots.size(), 6u);
  EXPECT_EQ(slots[5], int64_t{t.blocks[1]} * 4 + 1);
  EXPECT_EQ(bm.blocks_needed(t, 6, 1), 0);  // room left in the last block
  EXPECT_EQ(bm.blocks_needed(t, 8, 1), 1);
  EXPECT_TRUE(copies.empty());
  bm.free(t);
  EXPECT_EQ(bm.device().num_free(), 8);
  EXPECT_TRUE(t.blocks.empty());
}

TEST(BlockManager, ForkSharesBlocksAndCopiesOnWrite) {
  BlockManager bm(8, 0, 4, false);
  BlockTable parent, child;
  BlockPairs copies;
  std::vector<int64_t> slots;
  bm.append_slots(parent, 0, 6, &copies, &slots);
  bm.fork(parent, 5, &child);
  EXPECT_EQ(child.blocks, parent.blocks);
  EXPECT_EQ(bm.device().ref_count(parent.blocks[0]), 2);
  EXPECT_EQ(bm.device().num_free(), 6);
  // The child writes position 5 in the shared, partly filled block: one copy.
  EXPECT_EQ(bm.blocks_needed(child, 5, 1), 1);
  slots.clear();
  bm.append_slots(child, 5, 1, &copies, &slots);
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies[0].first, parent.blocks[1]);
  EXPECT_EQ(copies[0].second, child.blocks[1]);
  EXPECT_NE(child.blocks[1], parent.blocks[1]);
  EXPECT_EQ(child.blocks[0], parent.blocks[0]);  // full block stays shared
  EXPECT_EQ(bm.device().ref_count(parent.blocks[1]), 1);
  // The parent now owns its tail alone: no copy.
  EXPECT_EQ(bm.blocks_needed(parent, 6, 1), 0);
  bm.free(parent);
  bm.free(child);
  EXPECT_EQ(bm.device().num_free(), 8);
}

TEST(BlockManager, PrefixLookupIsBlockAlignedAndSkipsTheLastToken) {
  BlockManager bm(16, 0, 4, true);
  Sequence a = make_seq({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0);
  BlockTable ta;
  BlockPairs copies;
  std::vector<int64_t> slots;
  bm.append_slots(ta, 0, 10, &copies, &slots);
  a.num_computed = 10;
  bm.publish_full_blocks(a, ta);  // blocks 0 and 1 are full
  Sequence b = make_seq({1, 2, 3, 4, 5, 6, 7, 8, 42}, 0);
  BlockTable tb;
  EXPECT_EQ(bm.attach_cached_prefix(b, tb), 8);
  EXPECT_EQ(tb.blocks[0], ta.blocks[0]);
  Sequence c = make_seq({9, 9, 9, 9, 9}, 0);
  BlockTable tc;
  EXPECT_EQ(bm.attach_cached_prefix(c, tc), 0);
  // Exactly two cached blocks: the second holds the last token, so only the first is used.
  Sequence d = make_seq({1, 2, 3, 4, 5, 6, 7, 8}, 0);
  BlockTable td;
  EXPECT_EQ(bm.attach_cached_prefix(d, td), 4);
  Sequence e = make_seq({1, 2, 3, 5, 5, 6, 7, 8, 9}, 0);  // differs in block 0: chain breaks
  BlockTable te;
  EXPECT_EQ(bm.attach_cached_prefix(e, te), 0);
  for (BlockTable* t : {&ta, &tb, &tc, &td, &te}) bm.free(*t);
  EXPECT_EQ(bm.device().num_free(), 16);
  EXPECT_EQ(bm.device().num_cached_free(), 2);
}

TEST(BlockManager, SwapRoundTripMovesSharedBlocksOnce) {
  BlockManager bm(8, 8, 4, false);
  BlockTable a, b;
  BlockPairs copies;
  std::vector<int64_t> slots;
  bm.append_slots(a, 0, 6, &copies, &slots);
  bm.fork(a, 6, &b);
  const std::vector<int32_t> before = a.blocks;
  std::vector<BlockTable*> group = {&a, &b};
  EXPECT_EQ(bm.distinct_blocks(group), 2);
  ASSERT_TRUE(bm.can_swap_out(group));
  BlockPairs out;
  bm.swap_out(group, &out);
  EXPECT_EQ(out.size(), 2u);
  EXPECT_EQ(bm.device().num_free(), 8);
  EXPECT_EQ(bm.cpu().num_free(), 6);
  EXPECT_TRUE(a.on_cpu);
  EXPECT_EQ(a.blocks, b.blocks);
  BlockPairs in;
  bm.swap_in(group, &in);
  EXPECT_EQ(in.size(), 2u);
  EXPECT_EQ(bm.cpu().num_free(), 8);
  EXPECT_EQ(bm.device().num_free(), 6);
  EXPECT_EQ(a.blocks, b.blocks);
  EXPECT_EQ(bm.device().ref_count(a.blocks[0]), 2);
  for (size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i].second, in[i].first);
  bm.free(a);
  bm.free(b);
  EXPECT_EQ(bm.device().num_free(), 8);
}

TEST(BlockManager, SwapOutRefusedWithoutCpuSpace) {
  BlockManager bm(8, 1, 4, false);
  BlockTable a;
  BlockPairs copies;
  std::vector<int64_t> slots;
  bm.append_slots(a, 0, 6, &copies, &slots);
  EXPECT_FALSE(bm.can_swap_out({&a}));
  bm.free(a);
}

}  // namespace
}  // namespace taco
