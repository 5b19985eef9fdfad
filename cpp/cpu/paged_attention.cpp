// One work item = (sequence, kv head, tile of up to kQueryTile query tokens). The item reads each
// K/V block of its sequence once, converts it to float, and scores it against every query row
// it owns: all q heads of the GQA group times the tile's tokens. Softmax is online (running max
// and sum per row), so nothing of size seq_len is materialized.
#include "cpu/paged_attention.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/vec.h"

namespace taco::cpu {
namespace {

constexpr int64_t kQueryTile = 16;

struct WorkItem {
  int32_t seq;
  int32_t kv_head;
  int32_t q_begin;  // first query token of the tile (absolute token index)
  int32_t q_end;
};

// Per-thread buffers: rows = group size * tile tokens.
struct Scratch {
  std::vector<float> q, acc, max, sum, k, v, scores;
  void resize(int64_t rows, int64_t block_size, int64_t d) {
    q.resize(rows * d);
    acc.resize(rows * d);
    max.resize(rows);
    sum.resize(rows);
    k.resize(block_size * d);
    v.resize(block_size * d);
    scores.resize(block_size);
  }
};

template <typename T>
const float* block_as_float(const T* src, float* buf, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    return src;
  } else {
    load_float(buf, src, n);
    return buf;
  }
}

template <typename T>
void run_item(const PagedAttentionParams& p, const WorkItem& w, Scratch& s) {
  const int64_t d = p.head_dim;
  const int64_t group = p.num_heads / p.num_kv_heads;
  const int64_t tile = w.q_end - w.q_begin;
  const int64_t rows = group * tile;  // row r: token w.q_begin + r / group, head r % group
  const int64_t q_len = p.query_start_loc[w.seq + 1] - p.query_start_loc[w.seq];
  const int64_t ctx = p.seq_lens[w.seq];
  const int64_t first_pos = ctx - q_len + (w.q_begin - p.query_start_loc[w.seq]);
  s.resize(rows, p.block_size, d);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t token = w.q_begin + r / group;
    const int64_t head = w.kv_head * group + r % group;
    const T* q = static_cast<const T*>(p.query) + token * p.query_stride + head * d;
    for (int64_t i = 0; i < d; ++i) s.q[r * d + i] = to_float(q[i]) * p.scale;
  }
  std::fill(s.acc.begin(), s.acc.begin() + rows * d, 0.0f);
  std::fill(s.max.begin(), s.max.begin() + rows, -std::numeric_limits<float>::infinity());
  std::fill(s.sum.begin(), s.sum.begin() + rows, 0.0f);

  const int64_t last_pos = first_pos + tile - 1;
  const int64_t head_elems = p.block_size * d;
  const int64_t block_elems = p.num_kv_heads * head_elems;
  const T* k_cache = static_cast<const T*>(p.kv);
  const T* v_cache = k_cache + p.num_blocks * block_elems;
  const int32_t* table = p.block_table + w.seq * p.max_blocks_per_seq;
  for (int64_t b = 0; b * p.block_size <= last_pos; ++b) {
    const int64_t offset = table[b] * block_elems + w.kv_head * head_elems;
    const float* k = block_as_float(k_cache + offset, s.k.data(), head_elems);
    const float* v = block_as_float(v_cache + offset, s.v.data(), head_elems);
    const int64_t pos0 = b * p.block_size;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t visible = std::min(p.block_size, first_pos + r / group - pos0 + 1);
      if (visible <= 0) continue;
      const float* q = &s.q[r * d];
      float block_max = s.max[r];
      for (int64_t j = 0; j < visible; ++j) {
        s.scores[j] = dot(q, k + j * d, d);
        block_max = std::max(block_max, s.scores[j]);
      }
      const float rescale = std::exp(s.max[r] - block_max);
      float* acc = &s.acc[r * d];
      float sum = s.sum[r] * rescale;
      for (int64_t j = 0; j < visible; ++j) {
        const float e = std::exp(s.scores[j] - block_max);
        sum += e;
        scale_axpy(acc, j == 0 ? rescale : 1.0f, e, v + j * d, d);
      }
      s.max[r] = block_max;
      s.sum[r] = sum;
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t token = w.q_begin + r / group;
    const int64_t head = w.kv_head * group + r % group;
    T* out = static_cast<T*>(p.out) + (token * p.num_heads + head) * d;
    const float inv = 1.0f / s.sum[r];
    for (int64_t i = 0; i < d; ++i) out[i] = from_float<T>(s.acc[r * d + i] * inv);
  }
}

std::vector<WorkItem> plan(const PagedAttentionParams& p) {
  std::vector<WorkItem> items;
  for (int32_t b = 0; b < p.num_seqs; ++b) {
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
    for (int32_t h = 0; h < p.num_kv_heads; ++h) {
      for (int32_t t = q0; t < q1; t += kQueryTile) {
        items.push_back({b, h, t, static_cast<int32_t>(std::min<int64_t>(q1, t + kQueryTile))});
      }
    }
  }
  return items;
}

}  // namespace

template <typename T>
void paged_attention(const PagedAttentionParams& p) {
  if (p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads != 0) {
    throw std::invalid_argument("paged_attention: num_heads must be a multiple of num_kv_heads");
  }
  const std::vector<WorkItem> items = plan(p);
  at::parallel_for(0, static_cast<int64_t>(items.size()), 1, [&](int64_t begin, int64_t end) {
    Scratch scratch;
    for (int64_t i = begin; i < end; ++i) run_item<T>(p, items[i], scratch);
  });
}

template void paged_attention<float>(const PagedAttentionParams&);
template void paged_attention<c10::BFloat16>(const PagedAttentionParams&);
template void paged_attention<c10::Half>(const PagedAttentionParams&);

}  // namespace taco::cpu
