// The CUDA side of tensor parallelism's collectives: our IPC all-reduce (taco/cuda/all_reduce.h)
// for CUDA tensors that fit its staging buffers, over the group's communicator (NCCL for CUDA
// tensors, gloo for CPU ones) for everything else.
#pragma once

#include <memory>

#include "ops/communicator.h"

namespace taco::ops {

// The IPC all-reduce over `fallback` when this build has CUDA, every rank runs on this machine
// and every rank could map every other rank's buffers (same GPU, or GPUs with peer access);
// otherwise `fallback` itself. Collective: every rank calls it at the same point, with its
// device current.
std::unique_ptr<Communicator> with_cuda_ipc(std::unique_ptr<Communicator> fallback,
                                            int device_index);

}  // namespace taco::ops
