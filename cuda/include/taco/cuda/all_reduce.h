// Our own all-reduce across the GPUs of one machine (tensor parallelism's small messages: a
// decode step's activations), over buffers the ranks share through CUDA IPC. vLLM's custom
// all-reduce and TensorRT-LLM's follow the same plan; this one differs where said below.
//
// Each rank owns a staging buffer (capacity bytes) and a signal block in device memory, both
// allocated with cudaMalloc and mapped into every other rank's process (cudaIpcGetMemHandle /
// cudaIpcOpenMemHandle); params carry every rank's pointers as seen from this process.
//
// One call: the input is copied into this rank's staging buffer, then one kernel runs:
// - every barrier but the first starts with __syncthreads(), so no peer hears of this block's
//   progress before all its threads have made it (as vLLM's barrier).
// - start barrier: thread r of block b stores the call's flag into rank r's signal
//   (start[b][this rank], a release store at system scope) and waits until its own
//   start[b][r] holds the flag (acquire): every rank's block b has its input staged.
// - one-shot (small messages): every rank reads all ranks' staged inputs and sums them, in rank
//   order and in float32, into its output. Every rank computes identical bits.
// - two-shot (larger ones): rank r sums part r of every rank's input into part r of its own
//   staging buffer (reduce-scatter), a middle barrier, then every rank copies each part from its
//   owner's buffer (all-gather).
// - end barrier: no rank leaves before every rank has finished reading the others' buffers,
//   so the next call may overwrite them (vLLM skips it where its buffers double; we keep one
//   buffer per rank and always pay it).
// The flag is a per-call number kept in device memory: block b of a call reads its rank's
// counter[b], uses counter[b] + 1 and stores it back at the end, so the numbers advance alike on
// every rank (the ranks run the same calls, with the same block counts, in the same order) and a
// call captured in a CUDA graph gets a fresh number at every replay (vLLM keeps the counter per
// block in its signal too). Signals must start zeroed. Peer data is read through L2 only
// (ld.global.cg): another GPU's writes are not in this GPU's L1.
//
// Limits (as vLLM's): at most kMaxAllReduceRanks ranks, bytes a multiple of 16 and at most the
// staging capacity, float32 / float16 / bfloat16. Inside a CUDA graph the copy and the kernel
// are captured like any other work (the decode graphs of tensor-parallel ranks use it).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "taco/cuda/dtype.h"

namespace taco::cuda {

constexpr int kMaxAllReduceRanks = 8;
constexpr int kMaxAllReduceBlocks = 36;

// One rank's barrier flags, written by the others: [block][sender].
struct AllReduceSignal {
  alignas(128) uint32_t start[kMaxAllReduceBlocks][kMaxAllReduceRanks];
  alignas(128) uint32_t middle[kMaxAllReduceBlocks][kMaxAllReduceRanks];
  alignas(128) uint32_t end[kMaxAllReduceBlocks][kMaxAllReduceRanks];
  alignas(128) uint32_t counter[kMaxAllReduceBlocks];  // written by this rank only
};

struct AllReduceParams {
  int rank = 0;
  int world = 0;
  void* buffers[kMaxAllReduceRanks] = {};  // each rank's staging buffer, mapped here
  AllReduceSignal* signals[kMaxAllReduceRanks] = {};
  int64_t capacity = 0;  // bytes of each staging buffer
  const void* in = nullptr;
  void* out = nullptr;  // may be `in`
  int64_t bytes = 0;
  DType dtype = DType::kBFloat16;
  bool two_shot = false;
  // A barrier waiting longer than this for a peer aborts the kernel (__trap: the launch, and the
  // context, fail with an error); 0 waits forever.
  uint64_t timeout_ns = 0;
};

// Messages up to this many bytes take one-shot by default (below: latency; above: bandwidth).
constexpr int64_t kOneShotMaxBytes = 256 * 1024;

// Empty when params are usable, else a message naming the bad field.
const char* all_reduce_check(const AllReduceParams& p);

// cudaErrorInvalidValue when all_reduce_check fails.
cudaError_t all_reduce(const AllReduceParams& p, cudaStream_t stream);

}  // namespace taco::cuda
