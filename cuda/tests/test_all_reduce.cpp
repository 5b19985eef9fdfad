// The IPC all-reduce with two ranks as two processes on one GPU: this test process is rank 0
// and starts itself again as rank 1 (a fresh process: CUDA does not survive fork). The ranks
// exchange their cudaIpcMemHandles through files in a temporary directory, then run the same
// calls: float32 and bfloat16, 1 KiB to 8 MiB, one-shot and two-shot. Each input is a function
// of (rank, index), so each rank checks its output against the host's sum in rank order, bit
// for bit. Then rank 0 prints one latency line per size (200 calls after 20 warm-up calls).
// Two processes on one GPU without MPS time-slice the device: the barriers complete across
// context switches, so this checks the protocol and the sums but not truly concurrent ranks,
// and the latency lines include the switching (GPUs of their own measure the kernel).
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "cuda_test_util.h"
#include "taco/cuda/all_reduce.h"

extern char** environ;

namespace taco::cuda::testing {
namespace {

constexpr int64_t kCapacity = 8 << 20;
constexpr const char* kRankEnv = "TACO_ALLREDUCE_RANK";
constexpr const char* kDirEnv = "TACO_ALLREDUCE_DIR";

// Waits for the stream, failing (instead of hanging) when a barrier never completes.
void wait_or_die(cudaStream_t s, const char* what) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    const cudaError_t err = cudaStreamQuery(s);
    if (err == cudaSuccess) return;
    if (err != cudaErrorNotReady) check(err, what);
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr, "all_reduce: %s did not finish within 60 s\n", what);
      std::_Exit(3);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

struct Shared {
  void* buffer = nullptr;
  AllReduceSignal* signal = nullptr;
};

void write_handles(const std::string& dir, int rank, const Shared& s) {
  cudaIpcMemHandle_t h[2];
  check(cudaIpcGetMemHandle(&h[0], s.buffer), "cudaIpcGetMemHandle");
  check(cudaIpcGetMemHandle(&h[1], s.signal), "cudaIpcGetMemHandle");
  const std::string tmp = dir + "/tmp" + std::to_string(rank);
  {
    std::ofstream f(tmp, std::ios::binary);
    f.write(reinterpret_cast<const char*>(h), sizeof(h));
  }
  std::rename(tmp.c_str(), (dir + "/rank" + std::to_string(rank)).c_str());
}

Shared open_handles(const std::string& dir, int rank) {
  const std::string path = dir + "/rank" + std::to_string(rank);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  struct stat st{};
  while (stat(path.c_str(), &st) != 0) {
    if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("no peer handles");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  cudaIpcMemHandle_t h[2];
  std::ifstream f(path, std::ios::binary);
  f.read(reinterpret_cast<char*>(h), sizeof(h));
  Shared s;
  check(cudaIpcOpenMemHandle(&s.buffer, h[0], cudaIpcMemLazyEnablePeerAccess), "open buffer");
  void* sig = nullptr;
  check(cudaIpcOpenMemHandle(&sig, h[1], cudaIpcMemLazyEnablePeerAccess), "open signal");
  s.signal = static_cast<AllReduceSignal*>(sig);
  return s;
}

template <typename T>
float input_value(int rank, int64_t i) {
  return round_to<T>(static_cast<float>((i * 7 + rank * 13) % 101) * 0.03125f - 1.5f);
}

// Runs every case as rank `rank` of 2; returns the number of mismatching outputs.
int64_t run_rank(int rank, const std::string& dir, bool print_latency) {
  Shared mine;
  check(cudaMalloc(&mine.buffer, kCapacity), "cudaMalloc");
  check(cudaMalloc(reinterpret_cast<void**>(&mine.signal), sizeof(AllReduceSignal)), "cudaMalloc");
  check(cudaMemset(mine.signal, 0, sizeof(AllReduceSignal)), "cudaMemset");
  check(cudaDeviceSynchronize(), "sync");
  write_handles(dir, rank, mine);
  const Shared peer = open_handles(dir, 1 - rank);
  AllReduceParams p;
  p.rank = rank;
  p.world = 2;
  p.capacity = kCapacity;
  p.buffers[rank] = mine.buffer;
  p.signals[rank] = mine.signal;
  p.buffers[1 - rank] = peer.buffer;
  p.signals[1 - rank] = peer.signal;
  cudaStream_t stream;
  check(cudaStreamCreate(&stream), "stream");
  int64_t bad = 0;
  const int64_t sizes[] = {1 << 10, 4 << 10, 64 << 10, 256 << 10, 1 << 20, 8 << 20};
  const auto each_type = [&]<typename T>() {
    for (int64_t bytes : sizes) {
      const int64_t n = bytes / static_cast<int64_t>(sizeof(T));
      std::vector<T> host(n);
      for (int64_t i = 0; i < n; ++i) host[i] = from_f<T>(input_value<T>(rank, i));
      for (bool two_shot : {false, true}) {
        DeviceBuffer<T> data(host);
        p.in = p.out = data.get();
        p.bytes = bytes;
        p.dtype = dtype_of<T>();
        p.two_shot = two_shot;
        check(all_reduce(p, stream), "all_reduce");
        wait_or_die(stream, "all_reduce");
        const std::vector<T> got = data.download();
        for (int64_t i = 0; i < n; ++i) {
          const float want = round_to<T>(0.0f + input_value<T>(0, i) + input_value<T>(1, i));
          if (to_f(got[i]) != want) ++bad;
        }
      }
    }
    // Timed calls (rank 1 makes the same calls; rank 0 prints).
    for (int64_t bytes : sizes) {
      DeviceBuffer<T> data(bytes / sizeof(T));
      cudaEvent_t start, stop;
      check(cudaEventCreate(&start), "event");
      check(cudaEventCreate(&stop), "event");
      for (int it = 0; it < 220; ++it) {
        if (it == 20) check(cudaEventRecord(start, stream), "record");
        p.in = p.out = data.get();
        p.bytes = bytes;
        p.dtype = dtype_of<T>();
        p.two_shot = bytes > kOneShotMaxBytes;
        check(all_reduce(p, stream), "all_reduce");
      }
      check(cudaEventRecord(stop, stream), "record");
      wait_or_die(stream, "timed all_reduce");
      float ms = 0;
      check(cudaEventElapsedTime(&ms, start, stop), "elapsed");
      if (print_latency) {
        std::printf("bench all_reduce %s 2 ranks (2 processes, 1 GPU) %7lld KiB: %8.2f us (%s)\n",
                    dtype_name<T>(), static_cast<long long>(bytes >> 10), ms * 1e3 / 200,
                    bytes > kOneShotMaxBytes ? "two-shot" : "one-shot");
      }
      cudaEventDestroy(start);
      cudaEventDestroy(stop);
    }
  };
  each_type.template operator()<float>();
  each_type.template operator()<__nv_bfloat16>();
  cudaStreamDestroy(stream);
  cudaIpcCloseMemHandle(peer.buffer);
  cudaIpcCloseMemHandle(peer.signal);
  cudaFree(mine.buffer);
  cudaFree(mine.signal);
  return bad;
}

TEST(AllReduceIpc, RejectsBadParams) {
  AllReduceParams p;
  EXPECT_STRNE(all_reduce_check(p), "");
  p.world = 2;
  p.bytes = 24;
  EXPECT_STRNE(all_reduce_check(p), "");
  EXPECT_EQ(all_reduce(p, nullptr), cudaErrorInvalidValue);
}

TEST(AllReduceIpc, TwoProcessesOnOneGpu) {
  TACO_REQUIRE_GPU();
  char dir_template[] = "/tmp/taco_allreduce_XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  // Rank 1: this executable again, running only the rank test below.
  const std::string filter = "--gtest_filter=AllReduceIpc.RankOne";
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  env_strings.push_back(std::string(kRankEnv) + "=1");
  env_strings.push_back(std::string(kDirEnv) + "=" + dir);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string self = "/proc/self/exe";
  char* argv[] = {self.data(), const_cast<char*>(filter.c_str()), nullptr};
  pid_t child = 0;
  ASSERT_EQ(posix_spawn(&child, "/proc/self/exe", nullptr, nullptr, argv, envp.data()), 0);
  const int64_t bad = run_rank(0, dir, /*print_latency=*/true);
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_EQ(bad, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "rank 1 status " << status;
}

// Rank 1 of the test above; skipped when run on its own.
TEST(AllReduceIpc, RankOne) {
  const char* rank = std::getenv(kRankEnv);
  if (rank == nullptr) GTEST_SKIP() << "runs as rank 1 of AllReduceIpc.TwoProcessesOnOneGpu";
  EXPECT_EQ(run_rank(1, std::getenv(kDirEnv), /*print_latency=*/false), 0);
}

}  // namespace
}  // namespace taco::cuda::testing
