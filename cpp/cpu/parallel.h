// Parallel loops of the CPU kernels over OpenMP. In a process that also runs torch, libgomp is
// torch's own (same soname, loaded first), so kernels and torch's GEMMs share one thread pool
// and one thread count.
#pragma once

#include "cpu/isa.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace taco::cpu {
inline namespace TACO_CPU_NS {

inline int num_threads() { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

// Calls fn(chunk_begin, chunk_end) over [begin, end) split into one contiguous chunk per thread,
// each at least `grain` long; runs inline when the range is small or already inside a parallel
// region.
template <typename Fn>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const Fn& fn) {
  const int64_t range = end - begin;
  if (range <= 0) return;
  const int64_t max_chunks =
      (range + std::max<int64_t>(grain, 1) - 1) / std::max<int64_t>(grain, 1);
  const int threads = static_cast<int>(std::min<int64_t>(num_threads(), max_chunks));
  if (threads <= 1) {
    fn(begin, end);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int64_t n = omp_get_num_threads();
    const int64_t chunk = (range + n - 1) / n;
    const int64_t lo = begin + omp_get_thread_num() * chunk;
    if (lo < end) fn(lo, std::min(end, lo + chunk));
  }
}

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
