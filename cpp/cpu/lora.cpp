#include "cpu/lora.h"

#include <algorithm>
#include <vector>

#include "cpu/dispatch.h"
#include "cpu/parallel.h"

namespace taco::cpu {
inline namespace TACO_CPU_NS {
namespace {

constexpr int64_t kTile = 8;    // tokens of one slot per task
constexpr int64_t kCols = 256;  // output columns per expand task

template <typename T>
void to_floats(const T* src, float* dst, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}

struct Tile {
  int32_t slot;
  int64_t begin, end;  // into the slot-ordered token list
};

// Tokens with a slot, grouped by slot (stable), cut into tiles of at most kTile.
void group_tokens(const LoraParams& p, std::vector<int32_t>& order, std::vector<Tile>& tiles) {
  std::vector<int64_t> count(p.num_slots + 1, 0);
  for (int64_t t = 0; t < p.tokens; ++t) {
    const int32_t s = p.token_slot[t];
    if (s >= 0) ++count[s + 1];
  }
  for (int64_t s = 0; s < p.num_slots; ++s) count[s + 1] += count[s];
  order.resize(count[p.num_slots]);
  std::vector<int64_t> next(count.begin(), count.end() - 1);
  for (int64_t t = 0; t < p.tokens; ++t) {
    const int32_t s = p.token_slot[t];
    if (s >= 0) order[next[s]++] = static_cast<int32_t>(t);
  }
  for (int64_t s = 0; s < p.num_slots; ++s) {
    for (int64_t b = count[s]; b < count[s + 1]; b += kTile) {
      tiles.push_back({static_cast<int32_t>(s), b, std::min(b + kTile, count[s + 1])});
    }
  }
}

// scratch[t] = x[t] A_slot^T for the tokens of each tile.
template <typename T, typename W>
void shrink(const LoraParams& p, const std::vector<int32_t>& order,
            const std::vector<Tile>& tiles) {
  const int64_t sr = p.slices * p.rank;
  parallel_for(0, static_cast<int64_t>(tiles.size()), 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> xf(kTile * p.in), arow(p.in);
    for (int64_t i = lo; i < hi; ++i) {
      const Tile& tile = tiles[i];
      const int64_t n = tile.end - tile.begin;
      for (int64_t k = 0; k < n; ++k) {
        const T* x = static_cast<const T*>(p.x) + order[tile.begin + k] * p.x_stride;
        to_floats(x, xf.data() + k * p.in, p.in);
      }
      const W* a = static_cast<const W*>(p.a) + tile.slot * sr * p.in;
      for (int64_t j = 0; j < sr; ++j) {
        to_floats(a + j * p.in, arow.data(), p.in);
        for (int64_t k = 0; k < n; ++k) {
          const float* xr = xf.data() + k * p.in;
          float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
          for (int64_t c = 0; c < p.in; ++c) acc += xr[c] * arow[c];
          p.scratch[order[tile.begin + k] * sr + j] = acc;
        }
      }
    }
  });
}

// y[t, cols] += scratch[t] B_slot^T over column chunks of kCols.
template <typename T, typename W>
void expand(const LoraParams& p, const std::vector<int32_t>& order,
            const std::vector<Tile>& tiles) {
  const int64_t sr = p.slices * p.rank;
  const int64_t chunks = (p.out + kCols - 1) / kCols;
  const int64_t tasks = static_cast<int64_t>(tiles.size()) * chunks;
  parallel_for(0, tasks, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> acc(kTile * kCols), brow(kCols);
    for (int64_t task = lo; task < hi; ++task) {
      const Tile& tile = tiles[task / chunks];
      const int64_t c0 = (task % chunks) * kCols, c1 = std::min(p.out, c0 + kCols);
      const int64_t n = tile.end - tile.begin, width = c1 - c0;
      std::fill(acc.begin(), acc.begin() + n * kCols, 0.0f);
      const W* b = static_cast<const W*>(p.b) + tile.slot * p.rank * p.out;
      for (int64_t r = 0; r < p.rank; ++r) {
        to_floats(b + r * p.out + c0, brow.data(), width);
        for (int64_t s = 0; s < p.slices; ++s) {
          const int64_t o0 = std::max<int64_t>(c0, p.slice_start[s]);
          const int64_t o1 = std::min<int64_t>(c1, p.slice_start[s + 1]);
          if (o0 >= o1) continue;
          for (int64_t k = 0; k < n; ++k) {
            const float coef = p.scratch[order[tile.begin + k] * sr + s * p.rank + r];
            if (coef == 0.0f) continue;
            float* out = acc.data() + k * kCols - c0;
            const float* bv = brow.data() - c0;
#pragma omp simd
            for (int64_t o = o0; o < o1; ++o) out[o] += coef * bv[o];
          }
        }
      }
      for (int64_t k = 0; k < n; ++k) {
        T* y = static_cast<T*>(p.y) + order[tile.begin + k] * p.y_stride + c0;
        const float* a = acc.data() + k * kCols;
        for (int64_t o = 0; o < width; ++o) y[o] = T(static_cast<float>(y[o]) + a[o]);
      }
    }
  });
}

}  // namespace

void lora_apply(const LoraParams& p) {
  throw_if(p.check(), "lora_apply");
  if (p.tokens == 0) return;
  for (int64_t t = 0; t < p.tokens; ++t) {
    if (p.token_slot[t] >= p.num_slots) {
      throw_if("LoraParams.token_slot[" + std::to_string(t) +
                   "] = " + std::to_string(p.token_slot[t]) + ": must be < num_slots",
               "lora_apply");
    }
  }
  std::vector<int32_t> order;
  std::vector<Tile> tiles;
  group_tokens(p, order, tiles);
  if (tiles.empty()) return;
  dispatch(p.dtype, [&]<typename T>() {
    dispatch(p.weight_dtype, [&]<typename W>() {
      shrink<T, W>(p, order, tiles);
      expand<T, W>(p, order, tiles);
    });
  });
}

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
