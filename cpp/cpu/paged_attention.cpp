// One work item = (sequence, kv head, tile of up to kQueryTile query tokens). The item reads each
// K/V block of its sequence once, widens K and V to float (bf16 caches: keeps both in bf16 for
// bf16 dot products, V interleaved in key pairs), and scores it against every query row it owns:
// all q heads of the GQA group times the tile's tokens (a decode is one tile of one token, so the
// group's heads share each K/V read). bf16 items of at least kLaneMinRows rows (prefill tiles)
// take the lane kernel of attention_lanes.h instead. Softmax is online (running max and sum per
// row), so nothing of size seq_len is materialized. Items are handed out longest first from a
// shared counter, so a long prefill chunk does not leave the other threads idle at the end.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC bug 105593, see cpu/vec_avx512.h

#include "cpu/paged_attention.h"
#include "cpu/isa.h"

#include "cpu/parallel.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "cpu/attention_block.h"
#include "cpu/attention_lanes.h"
#include "cpu/dispatch.h"
#include "cpu/fp8_convert.h"
#include "cpu/key_pairs.h"
#include "cpu/vec.h"
#include "cpu/vec_avx512.h"

namespace taco::cpu {
inline namespace TACO_CPU_NS {
namespace {

constexpr int64_t kQueryTile = 16;
// Query rows from which a bf16 item runs the lane kernel (attention_lanes.h): below (decodes,
// short tiles), transposing the queries costs more than the reductions it saves.
constexpr int64_t kLaneMinRows = 8;
// Total work (query rows x keys) below which one thread runs every item: about 15 us.
constexpr int64_t kSerialCost = 4096;

struct WorkItem {
  int64_t cost;  // rows times keys read: the order items are handed out in
  int32_t seq;
  int32_t kv_head;
  int32_t q_begin;  // first query token of the tile (absolute token index)
  int32_t q_end;
};

// Per-thread buffers: rows = group size * tile tokens.
struct Scratch {
  std::vector<float> q, acc, max, sum, k, v;
  std::vector<bf16> q_bf16;       // bf16 caches: unscaled query rows (attend_block_bf16)
  std::vector<uint32_t> v_pairs;  // bf16 caches: the block's values in key pairs
  std::vector<int64_t> visible;
  void resize(int64_t rows, int64_t block_size, int64_t d) {
    q.resize(rows * d);
    q_bf16.resize(rows * d);
    acc.resize(rows * d);
    max.resize(rows);
    sum.resize(rows);
    visible.resize(rows);
    k.resize(block_size * d);
    v.resize(block_size * d);
    v_pairs.resize((block_size + 1) / 2 * d);
  }
};

// The first n elements of src as float: src itself for float caches, else widened into buf.
template <typename T>
const float* as_float(const T* src, float* buf, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    return src;
  } else {
#ifdef __AVX512F__
    if (n % 16 == 0) {
      avx512::widen(buf, src, n);
      return buf;
    }
#endif
    load_float(buf, src, n);
    return buf;
  }
}

// Asks for [p, p + bytes) in L2 ahead of its use.
inline void prefetch(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t i = 0; i < bytes; i += 64) __builtin_prefetch(c + i, 0, 2);
}

// Loads the item's query rows (row r: token q_begin + r / group, head kv_head * group + r % group)
// scaled by the softmax scale, and resets the softmax state.
template <typename T>
void load_queries(const PagedAttentionParams& p, const WorkItem& w, int64_t group, Scratch& s) {
  const int64_t d = p.head_dim;
  const int64_t rows = group * (w.q_end - w.q_begin);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t token = w.q_begin + r / group;
    const int64_t head = w.kv_head * group + r % group;
    const T* q = static_cast<const T*>(p.query) + token * p.query_stride + head * d;
    for (int64_t i = 0; i < d; ++i) s.q[r * d + i] = to_float(q[i]) * p.scale;
    if constexpr (std::is_same_v<T, bf16>) std::copy(q, q + d, s.q_bf16.data() + r * d);
  }
  std::fill(s.acc.begin(), s.acc.begin() + rows * d, 0.0f);
  std::fill(s.max.begin(), s.max.begin() + rows, -std::numeric_limits<float>::infinity());
  std::fill(s.sum.begin(), s.sum.begin() + rows, 0.0f);
}

// The keys of the item's (sequence, kv head) for the lane kernel: the bf16 cache itself, or for
// an 8-bit cache the blocks the item reads widened into bf16 scratch (value * scale rounded to
// bf16, as a bf16 cache holds them; rows past the last key zero).
LaneKeys lane_keys(const PagedAttentionParams& p, const WorkItem& w, int64_t last_pos) {
  const int64_t d = p.head_dim;
  const int64_t head_elems = p.block_size * d;
  const int64_t block_elems = p.num_kv_heads * head_elems;
  const int32_t* table = p.block_table + w.seq * p.max_blocks_per_seq;
  if (p.cache_type == kernels::KvCacheType::kModel) {
    const auto* k_cache = static_cast<const bf16*>(p.kv);
    return {k_cache + w.kv_head * head_elems,
            k_cache + p.num_blocks * block_elems + w.kv_head * head_elems, table, block_elems,
            p.block_size};
  }
  thread_local std::vector<bf16> k, v;
  thread_local std::vector<float> row;
  thread_local std::vector<int32_t> order;
  const int64_t blocks = last_pos / p.block_size + 1;
  k.resize(blocks * head_elems);
  v.resize(blocks * head_elems);
  row.resize(head_elems);
  order.resize(blocks);
  const auto* k8 = static_cast<const uint8_t*>(p.kv);
  const uint8_t* v8 = k8 + p.num_blocks * block_elems;
  for (int64_t b = 0; b < blocks; ++b) {
    order[b] = static_cast<int32_t>(b);
    const int64_t keys = std::min(p.block_size, last_pos - b * p.block_size + 1);
    const int64_t offset = table[b] * block_elems + w.kv_head * head_elems;
    for (auto [src, dst, scale] :
         {std::tuple{k8, k.data(), p.k_scale}, {v8, v.data(), p.v_scale}}) {
      fp8_to_float(p.cache_type, src + offset, row.data(), keys * d, scale);
      bf16* out = dst + b * head_elems;
      for (int64_t i = 0; i < keys * d; ++i) out[i] = bf16(row[i]);
      std::fill(out + keys * d, out + head_elems, bf16(0.0f));
    }
  }
  return {k.data(), v.data(), order.data(), head_elems, p.block_size};
}

// The item's rows in groups of kLaneRows through the lane kernel (bf16 queries).
void run_item_lanes(const PagedAttentionParams& p, const WorkItem& w, int64_t first_pos,
                    int64_t last_pos) {
  const int64_t d = p.head_dim;
  const int64_t group = p.num_heads / p.num_kv_heads;
  const int64_t rows = group * (w.q_end - w.q_begin);
  const LaneKeys keys = lane_keys(p, w, last_pos);
  const bf16* q_ptr[kLaneRows];
  bf16* out_ptr[kLaneRows];
  int64_t pos[kLaneRows];
  for (int64_t r0 = 0; r0 < rows; r0 += kLaneRows) {
    const int64_t n = std::min(kLaneRows, rows - r0);
    for (int64_t l = 0; l < n; ++l) {
      const int64_t r = r0 + l;
      const int64_t token = w.q_begin + r / group;
      const int64_t head = w.kv_head * group + r % group;
      q_ptr[l] = static_cast<const bf16*>(p.query) + token * p.query_stride + head * d;
      out_ptr[l] = static_cast<bf16*>(p.out) + (token * p.num_heads + head) * d;
      pos[l] = first_pos + r / group;
    }
    attend_lanes_bf16({q_ptr, out_ptr, pos, n, d, p.scale}, keys);
  }
}

template <typename T>
void run_item(const PagedAttentionParams& p, const WorkItem& w, Scratch& s) {
  const int64_t d = p.head_dim;
  const int64_t group = p.num_heads / p.num_kv_heads;
  const int64_t rows = group * (w.q_end - w.q_begin);
  const int64_t q_len = p.query_start_loc[w.seq + 1] - p.query_start_loc[w.seq];
  // Position of the tile's first token; row r's token sits at first_pos + r / group.
  const int64_t first_pos = p.seq_lens[w.seq] - q_len + (w.q_begin - p.query_start_loc[w.seq]);
  const int64_t last_pos = first_pos + (w.q_end - w.q_begin) - 1;
  const bool fp8 = p.cache_type != kernels::KvCacheType::kModel;
  if constexpr (std::is_same_v<T, bf16>) {
    if (rows >= kLaneMinRows && attention_lanes_supported(d, p.block_size)) {
      return run_item_lanes(p, w, first_pos, last_pos);
    }
  }
  s.resize(rows, p.block_size, d);
  load_queries<T>(p, w, group, s);

  const int64_t head_elems = p.block_size * d;
  const int64_t block_elems = p.num_kv_heads * head_elems;
  const T* k_cache = static_cast<const T*>(p.kv);
  const T* v_cache = k_cache + p.num_blocks * block_elems;
  // 8-bit caches: the same element offsets, one byte each.
  const auto* k8 = static_cast<const uint8_t*>(p.kv);
  const uint8_t* v8 = k8 + p.num_blocks * block_elems;
  const int64_t elem_bytes = fp8 ? 1 : static_cast<int64_t>(sizeof(T));
  const int32_t* table = p.block_table + w.seq * p.max_blocks_per_seq;
  const AttentionRows state{
      s.q.data(), s.acc.data(), s.max.data(), s.sum.data(), s.visible.data(), rows, d};
  const int64_t num_blocks = last_pos / p.block_size + 1;
  const bool bf16_keys = attend_bf16_supported(d);
  for (int64_t b = 0; b < num_blocks; ++b) {
    // Blocks are scattered, so the hardware prefetcher cannot run ahead across them.
    if (b + 1 < num_blocks) {
      const int64_t next = (table[b + 1] * block_elems + w.kv_head * head_elems) * elem_bytes;
      prefetch(k8 + next, head_elems * elem_bytes);
      prefetch(k8 + p.num_blocks * block_elems * elem_bytes + next, head_elems * elem_bytes);
    }
    const int64_t pos0 = b * p.block_size;
    for (int64_t r = 0; r < rows; ++r) {
      s.visible[r] = std::clamp<int64_t>(first_pos + r / group - pos0 + 1, 0, p.block_size);
    }
    // Only the keys some row sees are widened; the rest of the block may be unwritten.
    const int64_t keys = std::min(p.block_size, last_pos - pos0 + 1);
    const int64_t offset = table[b] * block_elems + w.kv_head * head_elems;
    if (fp8) {
      fp8_to_float(p.cache_type, k8 + offset, s.k.data(), keys * d, p.k_scale);
      fp8_to_float(p.cache_type, v8 + offset, s.v.data(), keys * d, p.v_scale);
      attend_block(state, s.k.data(), s.v.data());
      continue;
    }
    if constexpr (std::is_same_v<T, bf16>) {
      if (bf16_keys) {
        pair_rows_bf16(s.v_pairs.data(), v_cache + offset, keys, (keys + 1) / 2, d);
        attend_block_bf16(state, s.q_bf16.data(), p.scale, k_cache + offset, s.v_pairs.data());
        continue;
      }
    }
    const float* v = as_float(v_cache + offset, s.v.data(), keys * d);
    attend_block(state, as_float(k_cache + offset, s.k.data(), keys * d), v);
  }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t token = w.q_begin + r / group;
    const int64_t head = w.kv_head * group + r % group;
    T* out = static_cast<T*>(p.out) + (token * p.num_heads + head) * d;
    const float inv = 1.0f / s.sum[r];
    for (int64_t i = 0; i < d; ++i) out[i] = from_float<T>(s.acc[r * d + i] * inv);
  }
}

// Validates one sequence's metadata against the cache; throws on inconsistency.
void check_sequence(const PagedAttentionParams& p, int32_t b) {
  const int32_t q0 = p.query_start_loc[b];
  const int32_t q1 = p.query_start_loc[b + 1];
  const int64_t blocks = (p.seq_lens[b] + p.block_size - 1) / p.block_size;
  if (q1 < q0 || q1 - q0 > p.seq_lens[b] || blocks > p.max_blocks_per_seq) {
    throw std::invalid_argument("paged_attention: sequence " + std::to_string(b) +
                                " has inconsistent query_start_loc / seq_lens / block_table");
  }
  for (int64_t i = 0; i < blocks; ++i) {
    const int32_t id = p.block_table[b * p.max_blocks_per_seq + i];
    if (id < 0 || id >= p.num_blocks) {
      throw std::out_of_range("paged_attention: block id " + std::to_string(id) +
                              " outside the cache");
    }
  }
}

std::vector<WorkItem> plan(const PagedAttentionParams& p) {
  const int64_t group = p.num_heads / p.num_kv_heads;
  std::vector<WorkItem> items;
  for (int32_t b = 0; b < p.num_seqs; ++b) {
    check_sequence(p, b);
    const int32_t q0 = p.query_start_loc[b];
    const int32_t q1 = p.query_start_loc[b + 1];
    for (int32_t t = q0; t < q1; t += kQueryTile) {
      const int32_t t1 = static_cast<int32_t>(std::min<int64_t>(q1, t + kQueryTile));
      // Keys read: the prefix up to the tile's last token.
      const int64_t keys = p.seq_lens[b] - (q1 - t1);
      for (int32_t h = 0; h < p.num_kv_heads; ++h) {
        items.push_back({group * (t1 - t) * keys + keys, b, h, t, t1});
      }
    }
  }
  std::stable_sort(items.begin(), items.end(),
                   [](const WorkItem& a, const WorkItem& b) { return a.cost > b.cost; });
  return items;
}

template <typename T>
void paged_attention_impl(const PagedAttentionParams& p) {
  const std::vector<WorkItem> items = plan(p);
  const int64_t n = static_cast<int64_t>(items.size());
  std::atomic<int64_t> next{0};
  auto work = [&](int64_t, int64_t) {
    thread_local Scratch scratch;
    for (int64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
      run_item<T>(p, items[i], scratch);
    }
  };
  int64_t cost = 0;
  for (const WorkItem& w : items) cost += w.cost;
  // A single-stream decode over a short context is a few microseconds of work, less than
  // waking the other threads and joining them: run it on this thread.
  if (cost < kSerialCost) return work(0, 1);
  parallel_for(0, std::min<int64_t>(num_threads(), n), 1, work);
}

}  // namespace

void paged_attention(const PagedAttentionParams& p) {
  throw_if(p.check(), "paged_attention");
  dispatch(p.dtype, [&]<typename T>() { paged_attention_impl<T>(p); });
}

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
