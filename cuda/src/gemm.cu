// GEMM entry points: argument checks, the per-device capability cache, the table of compiled
// configs and the heuristic that picks one by (m, n, k). No CUTLASS here: the configs live in
// gemm_sm90_*.cu and gemm_sm80.cu (see gemm_kernels.cuh).
#include <array>
#include <cstdint>
#include <limits>
#include <mutex>

#include "gemm_kernels.cuh"

namespace taco::cuda {
namespace gemm_detail {
namespace {

struct DeviceInfo {
  int cc = 0;  // compute capability, major * 10 + minor
  int sm_count = 0;
};

constexpr int kMaxCachedDevices = 64;

DeviceInfo query_device(int dev) {
  DeviceInfo info;
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&info.sm_count, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
    cudaGetLastError();  // leave no error behind for the caller's next check
    return DeviceInfo{};
  }
  info.cc = major * 10 + minor;
  return info;
}

// The current device's facts, queried once per device.
DeviceInfo current_device() {
  static std::array<DeviceInfo, kMaxCachedDevices> cache;
  static std::array<std::once_flag, kMaxCachedDevices> once;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    cudaGetLastError();
    return DeviceInfo{};
  }
  if (dev < 0 || dev >= kMaxCachedDevices) return query_device(dev);
  std::call_once(once[dev], [dev] { cache[dev] = query_device(dev); });
  return cache[dev];
}

enum Config : int {
  kSm90Ws64x16,
  kSm90Pp64x64,
  kSm90Pp64x128,
  kSm90Sk128x256,
  kSm90Coop128x128,
  kSm90Coop128x256,
  kSm80_64x64,
  kSm80_128x128,
  kNumConfigs,
};

constexpr GemmKernel kKernels[kNumConfigs] = {
    {"sm90_ws_64x16", true, sm90_ws_64x16, sm90_ws_64x16_workspace},
    {"sm90_pp_64x64", true, sm90_pp_64x64, sm90_pp_64x64_workspace},
    {"sm90_pp_64x128", true, sm90_pp_64x128, sm90_pp_64x128_workspace},
    {"sm90_sk_128x256", true, sm90_sk_128x256, sm90_sk_128x256_workspace},
    {"sm90_coop_128x128", true, sm90_coop_128x128, sm90_coop_128x128_workspace},
    {"sm90_coop_128x256", true, sm90_coop_128x256, sm90_coop_128x256_workspace},
    {"sm80_64x64", false, sm80_64x64, sm80_workspace},
    {"sm80_128x128", false, sm80_128x128, sm80_workspace},
};

bool runnable(int config, const DeviceInfo& dev) {
  if (config < 0 || config >= kNumConfigs || dev.cc < 80) return false;
  // sm_90a cubins carry arch-specific instructions that load on compute capability 9.0 only.
  return !kKernels[config].sm90_only || dev.cc == 90;
}

int64_t tiles(int64_t n, int64_t m, int64_t tile_n, int64_t tile_m) {
  return ((n + tile_n - 1) / tile_n) * ((m + tile_m - 1) / tile_m);
}

// Fraction of the SM slots the last wave leaves busy, over all waves of ctas one-per-SM CTAs.
double wave_efficiency(int64_t ctas, int64_t sms) {
  const int64_t waves = (ctas + sms - 1) / sms;
  return static_cast<double>(ctas) / static_cast<double>(waves * sms);
}

// Hopper, from the H100 measurements (bench_gemm, SmolLM2 and Llama-3-8B layers). A wave is one
// tile per SM; the configs' tiles are n x m (weight rows x tokens).
//   m <= 16: 64 x 16 tiles, always: the weight stream is the cost and the narrowest token tile
//     wastes the least (they beat stream-K and every wider tile at every n measured).
//   m <= 64: 64 x 16 while they fit in one wave (n <= 2048 at m = 64), else ping-pong 64 x 64.
//   m <= 256: ping-pong 64 x 64, else 64 x 128, whichever fits in one wave: more, smaller tiles
//     than 128-row ones leave fewer SMs idle.
//   n that 128-row tiles pad by more than 10% (SmolLM2's 576: 640 rows): ping-pong 64 x 128
//     (second run: 1.26x cuBLAS at 8192 x 576 x 576 where stream-K 128 x 256 took 1.98x, and
//     the fastest compiled config at m = 2048 and 8192 on n = 576).
//   otherwise cooperative 128 x 256 when its waves are >= 80% full; 128 x 128 when those are
//     >= 90% full or the 128 x 256 tiles fill less than one wave (m = 2048 at n = 576..960);
//     stream-K 128 x 256 in between (m = 8192 at n = 576: 160 tiles, the second wave 21% full),
//     given the workspace; 128 x 128 without it.
int pick_sm90(const GemmParams& p, const DeviceInfo& dev) {
  const int64_t sms = dev.sm_count;
  if (p.m <= 16) return kSm90Ws64x16;
  if (p.m <= 64) return tiles(p.n, p.m, 64, 16) <= sms ? kSm90Ws64x16 : kSm90Pp64x64;
  if (p.m <= 256 && tiles(p.n, p.m, 64, 64) <= sms) return kSm90Pp64x64;
  if (p.m <= 256 && tiles(p.n, p.m, 64, 128) <= sms) return kSm90Pp64x128;
  if ((p.n + 127) / 128 * 128 * 10 > p.n * 11) return kSm90Pp64x128;
  const int64_t tiles_128x256 = tiles(p.n, p.m, 128, 256);
  if (wave_efficiency(tiles_128x256, sms) >= 0.8) return kSm90Coop128x256;
  if (tiles_128x256 < sms || wave_efficiency(tiles(p.n, p.m, 128, 128), sms) >= 0.9)
    return kSm90Coop128x128;
  const bool stream_k_fits = kKernels[kSm90Sk128x256].workspace_size(p) <= p.workspace_bytes;
  return stream_k_fits ? kSm90Sk128x256 : kSm90Coop128x128;
}

// Other sm_80+ devices: 128x128 tiles when they fill the device, else the 64x64 ones.
int pick_sm80(const GemmParams& p, const DeviceInfo& dev) {
  return tiles(p.n, p.m, 128, 128) >= dev.sm_count ? kSm80_128x128 : kSm80_64x64;
}

bool multiple_of_8(int64_t v) { return v % 8 == 0; }
bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

int current_device_sm_count() { return current_device().sm_count; }

}  // namespace gemm_detail

using gemm_detail::current_device;
using gemm_detail::kKernels;
using gemm_detail::kNumConfigs;

bool gemm_supported(const GemmParams& p) {
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();  // CUTLASS problem extents are int
  if (p.dtype != DType::kBFloat16 && p.dtype != DType::kFloat16) return false;
  if (p.m <= 0 || p.n <= 0 || p.k <= 0 || p.m > kIntMax || p.n > kIntMax || p.k > kIntMax)
    return false;
  if (!gemm_detail::multiple_of_8(p.n) || !gemm_detail::multiple_of_8(p.k)) return false;
  if (!gemm_detail::multiple_of_8(p.out_stride) || !gemm_detail::multiple_of_8(p.x_stride) ||
      !gemm_detail::multiple_of_8(p.w_stride))
    return false;
  if (p.out_stride < p.n || p.x_stride < p.k || p.w_stride < p.k) return false;
  if (!p.out || !p.x || !p.w || !gemm_detail::aligned16(p.out) || !gemm_detail::aligned16(p.x) ||
      !gemm_detail::aligned16(p.w) || (p.bias && !gemm_detail::aligned16(p.bias)))
    return false;
  return current_device().cc >= 80;
}

int gemm_num_configs() { return kNumConfigs; }

const char* gemm_config_name(int config) {
  return config >= 0 && config < kNumConfigs ? kKernels[config].name : "invalid";
}

bool gemm_config_runnable(int config) { return gemm_detail::runnable(config, current_device()); }

int gemm_pick_config(const GemmParams& p) {
  const gemm_detail::DeviceInfo dev = current_device();
  return dev.cc == 90 ? gemm_detail::pick_sm90(p, dev) : gemm_detail::pick_sm80(p, dev);
}

size_t gemm_config_workspace_size(const GemmParams& p, int config) {
  if (!gemm_supported(p) || !gemm_config_runnable(config)) return 0;
  return kKernels[config].workspace_size(p);
}

size_t gemm_workspace_size(const GemmParams& p) {
  GemmParams unlimited = p;
  unlimited.workspace_bytes = std::numeric_limits<size_t>::max();
  if (!gemm_supported(unlimited)) return 0;
  return gemm_config_workspace_size(unlimited, gemm_pick_config(unlimited));
}

cudaError_t gemm_with_config(const GemmParams& p, int config, cudaStream_t stream) {
  if (!gemm_supported(p)) return cudaErrorNotSupported;
  if (!gemm_config_runnable(config)) return cudaErrorInvalidValue;
  return kKernels[config].run(p, stream);
}

cudaError_t gemm(const GemmParams& p, cudaStream_t stream) {
  if (!gemm_supported(p)) return cudaErrorNotSupported;
  return kKernels[gemm_pick_config(p)].run(p, stream);
}

}  // namespace taco::cuda
