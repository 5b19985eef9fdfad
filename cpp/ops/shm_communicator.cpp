#include "ops/shm_communicator.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <thread>
#include <vector>

namespace taco::ops {

namespace {

constexpr int kMaxRanks = 64;
constexpr int64_t kSlotBytes = 1 << 20;
constexpr int64_t kLine = 64;

// Segment layout: one cache line per rank for its flag, one for its pid, then the buffers
// [2 halves][world][kSlotBytes].
struct Layout {
  int world = 0;
  int64_t flags = 0, pids = 0, buffers = 0, total = 0;
  explicit Layout(int w) : world(w) {
    flags = 0;
    pids = flags + kLine * w;
    buffers = pids + kLine * w;
    total = buffers + 2 * w * kSlotBytes;
  }
};

// False when the process is gone or a zombie (a killed child not yet reaped still answers
// kill(pid, 0)).
bool process_alive(int pid) {
  if (pid <= 0) return true;
  if (kill(pid, 0) != 0 && errno == ESRCH) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const size_t close = text.rfind(')');
  if (close == std::string::npos || close + 2 >= text.size()) return true;
  const char state = text[close + 2];
  return state != 'Z' && state != 'X';
}

// This machine: its host name and boot id, hashed.
int64_t host_identity() {
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  std::ifstream boot("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(boot, id);
  return static_cast<int64_t>(std::hash<std::string>{}(std::string(name) + "/" + id) >> 1);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

class ShmCommunicator : public Communicator {
 public:
  ShmCommunicator(std::unique_ptr<Communicator> fallback, uint8_t* base, Layout layout)
      : fallback_(std::move(fallback)),
        base_(base),
        layout_(layout),
        rank_(fallback_->rank()),
        world_(fallback_->world_size()),
        timeout_(collective_timeout_seconds()) {}

  ~ShmCommunicator() override {
    report_stats("shm", rank_, stats_);
    munmap(base_, layout_.total);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }

  void all_reduce_sum(at::Tensor& t) override {
    const at::ScalarType type = t.scalar_type();
    const bool floating = type == at::kFloat || type == at::kBFloat16 || type == at::kHalf;
    if (!t.is_cpu() || !t.is_contiguous() || !floating) return fallback_->all_reduce_sum(t);
    const auto start = std::chrono::steady_clock::now();
    const int64_t elem = t.element_size();
    const int64_t per_chunk = kSlotBytes / elem;
    auto* data = static_cast<uint8_t*>(t.data_ptr());
    for (int64_t off = 0; off < t.numel(); off += per_chunk) {
      const int64_t n = std::min(per_chunk, t.numel() - off);
      const uint64_t gen = exchange(data + off * elem, n * elem);
      switch (type) {
        case at::kFloat:
          sum(reinterpret_cast<float*>(data) + off, gen, n);
          break;
        case at::kBFloat16:
          sum(reinterpret_cast<at::BFloat16*>(data) + off, gen, n);
          break;
        default:
          sum(reinterpret_cast<at::Half*>(data) + off, gen, n);
          break;
      }
    }
    record(t.nbytes(), start);
  }

  void all_reduce_min(at::Tensor& t) override { fallback_->all_reduce_min(t); }
  bool cuda_graph_safe(int64_t bytes) const override { return fallback_->cuda_graph_safe(bytes); }

  at::Tensor all_gather(const at::Tensor& t) override {
    if (!t.is_cpu() || t.nbytes() > static_cast<size_t>(kSlotBytes)) {
      return fallback_->all_gather(t);
    }
    const auto start = std::chrono::steady_clock::now();
    const at::Tensor in = t.contiguous();
    const int64_t bytes = static_cast<int64_t>(in.nbytes());
    const uint64_t gen = exchange(in.data_ptr(), bytes);
    std::vector<int64_t> shape = in.sizes().vec();
    shape[0] *= world_;
    at::Tensor out = at::empty(shape, in.options());
    auto* dst = static_cast<uint8_t*>(out.data_ptr());
    for (int r = 0; r < world_; ++r) std::memcpy(dst + r * bytes, slot(gen, r), bytes);
    record(bytes, start);
    return out;
  }

  void broadcast(at::Tensor& t, int root) override {
    if (!t.is_cpu() || !t.is_contiguous() || t.nbytes() > static_cast<size_t>(kSlotBytes)) {
      return fallback_->broadcast(t, root);
    }
    const auto start = std::chrono::steady_clock::now();
    const int64_t bytes = static_cast<int64_t>(t.nbytes());
    const uint64_t gen = exchange(rank_ == root ? t.data_ptr() : nullptr, bytes);
    if (rank_ != root) std::memcpy(t.data_ptr(), slot(gen, root), bytes);
    record(bytes, start);
  }

 private:
  uint64_t* flag(int r) const {
    return reinterpret_cast<uint64_t*>(base_ + layout_.flags + kLine * r);
  }
  int pid(int r) const {
    return __atomic_load_n(reinterpret_cast<int*>(base_ + layout_.pids + kLine * r),
                           __ATOMIC_ACQUIRE);
  }
  uint8_t* slot(uint64_t gen, int r) const {
    return base_ + layout_.buffers + ((gen & 1) * world_ + r) * kSlotBytes;
  }

  // Copies `bytes` of src (none when null) into this rank's slot of a new generation, publishes
  // it and waits for every rank's; returns the generation.
  uint64_t exchange(const void* src, int64_t bytes) {
    const uint64_t gen = ++gen_;
    if (src != nullptr && bytes > 0) std::memcpy(slot(gen, rank_), src, bytes);
    __atomic_store_n(flag(rank_), gen, __ATOMIC_RELEASE);
    for (int r = 0; r < world_; ++r) {
      if (r != rank_) wait_for(r, gen);
    }
    return gen;
  }

  void wait_for(int r, uint64_t gen) {
    uint64_t* f = flag(r);
    if (__atomic_load_n(f, __ATOMIC_ACQUIRE) >= gen) return;
    const auto start = std::chrono::steady_clock::now();
    auto next_check = start;
    int64_t round = 0;
    while (__atomic_load_n(f, __ATOMIC_ACQUIRE) < gen) {
      ++round;
      if (round < 4096) {
        cpu_relax();
        continue;
      }
      if (round < 8192) {
        sched_yield();
        continue;
      }
      const auto now = std::chrono::steady_clock::now();
      const double waited = std::chrono::duration<double>(now - start).count();
      // Sleep in growing steps: 20 us while a step is likely under way, up to 500 us when idle.
      std::this_thread::sleep_for(std::chrono::microseconds(waited < 0.01 ? 20 : 500));
      if (now < next_check) continue;
      next_check = now + std::chrono::milliseconds(20);
      if (!process_alive(pid(r))) {
        throw std::runtime_error("tensor parallel: rank " + std::to_string(r) + " (pid " +
                                 std::to_string(pid(r)) +
                                 ") is gone while this rank waits for it in a collective");
      }
      if (waited > timeout_) {
        throw std::runtime_error(
            "tensor parallel: rank " + std::to_string(r) + " did not reach a collective within " +
            std::to_string(static_cast<int>(timeout_)) + " s (TACO_TP_TIMEOUT_S)");
      }
    }
  }

  template <typename T>
  void sum(T* out, uint64_t gen, int64_t n) {
    std::vector<const T*> in(world_);
    for (int r = 0; r < world_; ++r) in[r] = reinterpret_cast<const T*>(slot(gen, r));
    // The offset of this piece inside each slot is 0: every rank copied it at the slot's start.
    constexpr int64_t kBlock = 256;
    float acc[kBlock];
    for (int64_t b = 0; b < n; b += kBlock) {
      const int64_t m = std::min(kBlock, n - b);
      for (int64_t i = 0; i < m; ++i) acc[i] = static_cast<float>(in[0][b + i]);
      for (int r = 1; r < world_; ++r) {
        const T* src = in[r] + b;
        for (int64_t i = 0; i < m; ++i) acc[i] += static_cast<float>(src[i]);
      }
      for (int64_t i = 0; i < m; ++i) out[b + i] = static_cast<T>(acc[i]);
    }
  }

  std::unique_ptr<Communicator> fallback_;
  uint8_t* base_;
  Layout layout_;
  int rank_, world_;
  double timeout_;
  uint64_t gen_ = 0;
};

// Names of shared-memory objects: a slash, then no slashes.
std::string segment_name(const std::string& group) {
  std::string name = "/taco-";
  for (char c : group) name += (std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
  return name;
}

// Maps the segment: rank 0 creates it (O_EXCL: a stale one of the same name is an error), the
// others open it. Null when anything fails.
uint8_t* map_segment(const std::string& name, const Layout& layout, bool create) {
  const int fd = create ? shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600)
                        : shm_open(name.c_str(), O_RDWR, 0600);
  if (fd < 0) return nullptr;
  // Reserve the pages now: a full /dev/shm would otherwise be a SIGBUS at first touch.
  if (create && (ftruncate(fd, layout.total) != 0 || posix_fallocate(fd, 0, layout.total) != 0)) {
    close(fd);
    shm_unlink(name.c_str());
    return nullptr;
  }
  struct stat st{};
  if (fstat(fd, &st) != 0 || st.st_size < layout.total) {
    close(fd);
    return nullptr;
  }
  void* p = mmap(nullptr, layout.total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  return p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
}

}  // namespace

std::unique_ptr<Communicator> with_shared_memory(std::unique_ptr<Communicator> fallback,
                                                 const std::string& group_name) {
  const int world = fallback->world_size(), rank = fallback->rank();
  if (world < 2 || world > kMaxRanks) return fallback;
  // Same machine? Every rank learns every rank's host identity.
  at::Tensor ids = fallback->all_gather(at::tensor({host_identity()}, at::kLong));
  for (int r = 1; r < world; ++r) {
    if (ids[r].item<int64_t>() != ids[0].item<int64_t>()) return fallback;
  }
  const Layout layout(world);
  const std::string name = segment_name(group_name);
  uint8_t* base = nullptr;
  // Rank 0 creates the segment before the others open it; then every rank says whether it has
  // it mapped, and all take the shared path only if every one has.
  at::Tensor ok = at::zeros({1}, at::kLong);
  if (rank == 0) {
    base = map_segment(name, layout, /*create=*/true);
    if (base != nullptr) std::memset(base, 0, layout.buffers);
    ok.fill_(base != nullptr ? 1 : 0);
  }
  at::Tensor mapped = at::zeros({1}, at::kLong);
  try {
    fallback->broadcast(ok, 0);
    if (rank != 0 && ok.item<int64_t>() == 1) base = map_segment(name, layout, /*create=*/false);
    if (base != nullptr) {
      __atomic_store_n(reinterpret_cast<int*>(base + layout.pids + kLine * rank),
                       static_cast<int>(getpid()), __ATOMIC_RELEASE);
    }
    mapped.fill_(base != nullptr ? 1 : 0);
    fallback->all_reduce_min(mapped);
  } catch (...) {
    // A peer is gone: leave nothing behind in /dev/shm or in this process.
    if (rank == 0 && base != nullptr) shm_unlink(name.c_str());
    if (base != nullptr) munmap(base, layout.total);
    throw;
  }
  if (rank == 0 && ok.item<int64_t>() == 1) shm_unlink(name.c_str());
  if (mapped.item<int64_t>() != 1) {
    if (base != nullptr) munmap(base, layout.total);
    return fallback;
  }
  return std::make_unique<ShmCommunicator>(std::move(fallback), base, layout);
}

}  // namespace taco::ops
