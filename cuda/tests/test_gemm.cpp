// gemm (out = x @ w^T + bias) against a float64 host reference, for the heuristic's pick and for
// every compiled config the device can run, bf16 and fp16. Outputs start NaN and live in rows
// padded past n: every element of [m, n] must be written (finite) and no padding element may be.
// Error measure: ||out - ref|| / ||ref|| over the checked rows (all rows for small problems, an
// evenly spread sample of rows, first and last included, for large ones).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "taco/cuda/gemm.h"
#include "test_types.h"

namespace taco::cuda::testing {
namespace {

struct Shape {
  int64_t m, n, k;
};

// Run with a config (>= 0) or the heuristic (kAuto).
constexpr int kAuto = -1;

template <typename T>
double tolerance_rel() {
  return std::is_same_v<T, __half> ? 2e-3 : 1e-2;
}

// Rows whose reference is computed: all of them up to 64, else up to 64 spread evenly, fewer
// (down to 8) for large n * k so that the float64 reference stays within a few seconds.
std::vector<int64_t> checked_rows(int64_t m, int64_t n, int64_t k) {
  std::vector<int64_t> rows;
  const int64_t budget = std::max<int64_t>(8, (int64_t{1} << 28) / (n * k));
  const int64_t count = std::min<int64_t>(m, std::min<int64_t>(64, budget));
  for (int64_t i = 0; i < count; ++i) rows.push_back(count == m ? i : i * (m - 1) / (count - 1));
  return rows;
}

template <typename T>
class GemmCase {
 public:
  GemmCase(Shape s, bool with_bias) : s_(s), bias_(with_bias) {
    std::mt19937 rng(static_cast<uint32_t>(s.m * 131 + s.n * 7 + s.k + with_bias));
    x_stride_ = s.k + 8;  // padded rows: the kernels must honor the strides
    out_stride_ = s.n + 16;
    x_ = uniform_vector(s.m * x_stride_, rng(), 1.0f);
    w_ = uniform_vector(s.n * s.k, rng(), std::sqrt(3.0f / static_cast<float>(s.k)));
    b_ = uniform_vector(s.n, rng(), 1.0f);
  }

  // Uniform in [-scale, scale) from a xorshift stream: the Llama weights have 10^8 elements, too
  // many for std::normal_distribution in a unit test.
  static std::vector<T> uniform_vector(int64_t count, uint32_t seed, float scale) {
    std::vector<T> v(count);
    uint32_t state = seed | 1u;
    for (T& e : v) {
      state ^= state << 13;
      state ^= state >> 17;
      state ^= state << 5;
      e = from_f<T>(scale * (static_cast<float>(state >> 8) * (2.0f / 16777216.0f) - 1.0f));
    }
    return v;
  }

  GemmParams params(void* out, const void* x, const void* w, const void* bias) const {
    GemmParams p{};
    p.out = out;
    p.x = x;
    p.w = w;
    p.bias = bias_ ? bias : nullptr;
    p.m = s_.m;
    p.n = s_.n;
    p.k = s_.k;
    p.out_stride = out_stride_;
    p.x_stride = x_stride_;
    p.w_stride = s_.k;
    p.dtype = dtype_of<T>();
    return p;
  }

  // Runs one config (or the heuristic), eagerly or as the replay of a CUDA graph, then checks
  // writes and the error; returns a message describing the failure, empty when the case passes.
  std::string run_and_check(int config, bool graph = false) const {
    DeviceBuffer<T> dx(x_), dw(w_), db(b_);
    DeviceBuffer<T> dout(std::vector<T>(s_.m * out_stride_, nan_value<T>()));
    GemmParams p = params(dout.get(), dx.get(), dw.get(), db.get());
    if (!gemm_supported(p)) return "gemm_supported() is false";
    const size_t ws_bytes =
        config == kAuto ? gemm_workspace_size(p) : gemm_config_workspace_size(p, config);
    DeviceBuffer<uint8_t> ws(ws_bytes);
    p.workspace = ws.get();
    p.workspace_bytes = ws_bytes;
    const cudaError_t err =
        graph ? replay_in_graph(p, config, dout.get()) : launch(p, config, nullptr);
    if (err != cudaSuccess) return std::string("launch: ") + cudaGetErrorString(err);
    const cudaError_t sync = cudaDeviceSynchronize();
    if (sync != cudaSuccess) return std::string("kernel: ") + cudaGetErrorString(sync);
    return check(dout.download());
  }

 private:
  static cudaError_t launch(const GemmParams& p, int config, cudaStream_t stream) {
    return config == kAuto ? gemm(p, stream) : gemm_with_config(p, config, stream);
  }

  // Captures the launch in global mode (as the engine's decode graphs are), replays it three
  // times and poisons the output before the last replay, which alone must produce it: the
  // workspace reinitialization is part of the graph.
  cudaError_t replay_in_graph(const GemmParams& p, int config, T* out) const {
    cudaStream_t stream;
    cudaError_t err = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    if (err != cudaSuccess) return err;
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    err = cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal);
    if (err == cudaSuccess) {
      const cudaError_t launched = launch(p, config, stream);
      err = cudaStreamEndCapture(stream, &graph);
      if (launched != cudaSuccess) err = launched;
    }
    if (err == cudaSuccess) err = cudaGraphInstantiate(&exec, graph, 0);
    for (int r = 0; r < 3 && err == cudaSuccess; ++r) {
      if (r == 2) err = cudaMemsetAsync(out, 0xff, s_.m * out_stride_ * sizeof(T), stream);
      if (err == cudaSuccess) err = cudaGraphLaunch(exec, stream);
    }
    if (err == cudaSuccess) err = cudaStreamSynchronize(stream);
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
    return err;
  }

  std::string check(const std::vector<T>& got) const {
    size_t unwritten = 0, padding_written = 0;
    for (int64_t i = 0; i < s_.m; ++i) {
      for (int64_t j = 0; j < out_stride_; ++j) {
        const bool finite = std::isfinite(to_f(got[i * out_stride_ + j]));
        if (j < s_.n)
          unwritten += !finite;
        else
          padding_written += !std::isnan(to_f(got[i * out_stride_ + j]));
      }
    }
    double err2 = 0.0, ref2 = 0.0;
    std::vector<double> ref(s_.n);
    for (const int64_t i : checked_rows(s_.m, s_.n, s_.k)) {
      reference_row(i, ref.data());
      for (int64_t j = 0; j < s_.n; ++j) {
        const double d = to_f(got[i * out_stride_ + j]) - ref[j];
        err2 += d * d;
        ref2 += ref[j] * ref[j];
      }
    }
    const double rel = std::sqrt(err2 / ref2);
    if (unwritten == 0 && padding_written == 0 && rel < tolerance_rel<T>()) return "";
    return "unwritten " + std::to_string(unwritten) + ", padding written " +
           std::to_string(padding_written) + ", relative error " + std::to_string(rel);
  }

  void reference_row(int64_t i, double* ref) const {
    std::vector<double> xr(s_.k), wr(s_.k);
    for (int64_t c = 0; c < s_.k; ++c) xr[c] = to_f(x_[i * x_stride_ + c]);
    for (int64_t j = 0; j < s_.n; ++j) {
      double acc = bias_ ? to_f(b_[j]) : 0.0;
      const T* wj = w_.data() + j * s_.k;
      for (int64_t c = 0; c < s_.k; ++c) acc += xr[c] * static_cast<double>(to_f(wj[c]));
      ref[j] = acc;
    }
  }

  Shape s_;
  bool bias_;
  int64_t x_stride_ = 0, out_stride_ = 0;
  std::vector<T> x_, w_, b_;
};

std::string describe(Shape s, bool bias, int config) {
  return std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k) +
         (bias ? " bias" : "") + " config " +
         (config == kAuto ? std::string("auto") : gemm_config_name(config));
}

using GemmTypes = ::testing::Types<__half, __nv_bfloat16>;

template <typename T>
class GemmTest : public ::testing::Test {};
TYPED_TEST_SUITE(GemmTest, GemmTypes, TypeNames);

// Every runnable config on small and odd shapes (n, k odd multiples of 8), bias on and off.
// 4300 x 1096 x 264 makes 9 x 17 = 153 tiles of 128 x 256, just over one wave of 132 SMs: the
// stream-K config runs its data-parallel wave plus the split remainder on it.
TYPED_TEST(GemmTest, EveryConfig) {
  TACO_REQUIRE_GPU();
  const Shape shapes[] = {{1, 960, 576},  {7, 104, 296},    {64, 576, 1536},
                          {300, 200, 72}, {2048, 328, 136}, {4300, 1096, 264}};
  int runnable = 0;
  for (int c = 0; c < gemm_num_configs(); ++c) {
    if (!gemm_config_runnable(c)) continue;
    ++runnable;
    for (const Shape& s : shapes) {
      for (const bool bias : {false, true}) {
        const std::string msg = GemmCase<TypeParam>(s, bias).run_and_check(c);
        EXPECT_TRUE(msg.empty()) << describe(s, bias, c) << ": " << msg;
      }
    }
  }
  EXPECT_GE(runnable, 2) << "no sm_80 configs runnable on an sm_80+ device";
}

// The heuristic's pick on the SmolLM2-135M and Llama-3-8B linear layers at decode and prefill m.
TYPED_TEST(GemmTest, ModelShapes) {
  TACO_REQUIRE_GPU();
  const Shape layers[] = {{0, 960, 576},   {0, 576, 576},    {0, 3072, 576},
                          {0, 576, 1536},  {0, 49152, 576},  {0, 6144, 4096},
                          {0, 4096, 4096}, {0, 28672, 4096}, {0, 4096, 14336}};
  for (const int64_t m : {1, 16, 64, 256, 2048}) {
    for (Shape s : layers) {
      s.m = m;
      const bool bias = (s.n / 8 + m) % 2 == 1;  // bias on about half of them
      const std::string msg = GemmCase<TypeParam>(s, bias).run_and_check(kAuto);
      EXPECT_TRUE(msg.empty()) << describe(s, bias, kAuto) << ": " << msg;
    }
  }
  // Long SmolLM2 prefill: n = 576 pads 128-row tiles by 11%, so the 64 x 128 ping-pong runs.
  for (const Shape s : {Shape{8192, 576, 576}, Shape{8192, 576, 1536}}) {
    const std::string msg = GemmCase<TypeParam>(s, true).run_and_check(kAuto);
    EXPECT_TRUE(msg.empty()) << describe(s, true, kAuto) << ": " << msg;
  }
}

// Each config and the heuristic replayed from a CUDA graph, stream-K (workspace) ones included.
TYPED_TEST(GemmTest, GraphReplay) {
  TACO_REQUIRE_GPU();
  const Shape s{16, 4096, 4096};
  for (int c = kAuto; c < gemm_num_configs(); ++c) {
    if (c != kAuto && !gemm_config_runnable(c)) continue;
    const std::string msg = GemmCase<TypeParam>(s, true).run_and_check(c, /*graph=*/true);
    EXPECT_TRUE(msg.empty()) << describe(s, true, c) << " in a graph: " << msg;
  }
}

// Every config gemm() may pick is one the device can run, with or without workspace.
TEST(GemmHeuristic, PicksRunnableConfigs) {
  TACO_REQUIRE_GPU();
  GemmParams p{};
  alignas(16) static char dummy[16];
  p.out = dummy;
  p.x = dummy;
  p.w = dummy;
  p.dtype = DType::kBFloat16;
  for (const int64_t m : {1, 7, 16, 33, 64, 65, 128, 300, 2048, 8192}) {
    for (const int64_t n : {64, 576, 4096, 49152}) {
      p.m = m;
      p.n = n;
      p.k = p.x_stride = p.w_stride = 4096;
      p.out_stride = n;
      for (const size_t ws : {size_t{0}, gemm_workspace_size(p)}) {
        p.workspace_bytes = ws;
        const int c = gemm_pick_config(p);
        EXPECT_TRUE(gemm_config_runnable(c)) << m << "x" << n << " ws " << ws << " -> " << c;
        EXPECT_LE(gemm_config_workspace_size(p, c), ws)
            << m << "x" << n << " -> " << gemm_config_name(c);
      }
    }
  }
}

TEST(GemmSupported, RejectsMisalignedShapes) {
  alignas(16) static char dummy[64];
  GemmParams p{};
  p.out = dummy;
  p.x = dummy;
  p.w = dummy;
  p.m = 4;
  p.n = p.out_stride = 64;
  p.k = p.x_stride = p.w_stride = 64;
  p.dtype = DType::kBFloat16;
  EXPECT_EQ(gemm_supported(p), device_available());
  GemmParams bad = p;
  bad.k = bad.x_stride = bad.w_stride = 60;  // k not a multiple of 8
  EXPECT_FALSE(gemm_supported(bad));
  bad = p;
  bad.n = 36;
  EXPECT_FALSE(gemm_supported(bad));
  bad = p;
  bad.x = dummy + 8;  // 8-byte aligned only
  EXPECT_FALSE(gemm_supported(bad));
  bad = p;
  bad.dtype = DType::kFloat32;
  EXPECT_FALSE(gemm_supported(bad));
  EXPECT_EQ(gemm(bad, nullptr), cudaErrorNotSupported);
}

}  // namespace
}  // namespace taco::cuda::testing
