// The linear layers of one SmolLM2-135M decode step (30 layers x q, k, v, o, gate, up, down, and
// the 49152-row head) at m x rows, timed for the CPU kernels: the packed bf16 skinny GEMM and the
// block-quantized kernels (Q8_0, Q4_1, packed) and the FP8 kernel (bf16 activations). Prints ms
// per step and the weight bytes read per second.
//
//   bench_cpu_linear [m] [kernels]   kernels: any of "bf16", "q8", "q4", "fp8" (default all);
//                                    TACO_CPU_ISA picks a level, as everywhere
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/fp8_linear.h"
#include "cpu/isa.h"
#include "cpu/quant_linear.h"
#include "cpu/skinny_gemm.h"

namespace {

struct Shape {
  int64_t n, k, count;
};
// SmolLM2-135M: hidden 576, 9/3 heads of 64, intermediate 1536, vocab 49152, 30 layers.
const Shape kShapes[] = {
    {576, 576, 60}, {192, 576, 60}, {1536, 576, 60}, {576, 1536, 30}, {49152, 576, 1}};

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace taco;
  const int64_t m = argc > 1 ? std::atoll(argv[1]) : 1;
  const std::string only = argc > 2 ? argv[2] : "bf16,q8,q4,fp8";
  std::printf("level %s, m = %lld\n", cpu::active_isa().c_str(), static_cast<long long>(m));
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  struct Layer {
    Shape s;
    std::vector<uint16_t> bf16;  // packed for the skinny kernel
    std::vector<uint8_t> q8, q4, fp8;
    std::vector<float> scale;
  };
  std::vector<Layer> layers;
  for (const Shape& s : kShapes) {
    for (int64_t c = 0; c < s.count; ++c) {
      Layer l{s, {}, {}, {}, {}, std::vector<float>(s.n, 0.01f)};
      std::vector<uint16_t> plain(s.n * s.k);
      for (auto& v : plain) v = 0x3c00 + (rng() & 0x3ff);  // bf16 values around 1/128..1/64
      if (cpu::skinny_gemm_supported(s.k)) {
        l.bf16.resize(cpu::skinny_packed_elems(s.n, s.k));
        cpu::pack_skinny_weight(plain.data(), l.bf16.data(), s.n, s.k);
      }
      std::vector<uint8_t> q8(s.n * s.k / 32 * 34), q4(s.n * s.k / 32 * 20);
      for (auto& b : q8) b = static_cast<uint8_t>(rng());
      for (auto& b : q4) b = static_cast<uint8_t>(rng());
      for (size_t b = 0; b < q8.size(); b += 34) q8[b + 1] = 0x1c;  // small finite fp16 d
      for (size_t b = 0; b < q4.size(); b += 20) q4[b + 1] = q4[b + 3] = 0x1c;
      l.q8.resize(kernels::quant_packed_bytes(kernels::QuantType::kQ8_0, s.n, s.k));
      l.q4.resize(kernels::quant_packed_bytes(kernels::QuantType::kQ4_1, s.n, s.k));
      cpu::pack_quant_weight(kernels::QuantType::kQ8_0, kernels::QuantType::kQ8_0, q8.data(),
                             l.q8.data(), s.n, s.k);
      cpu::pack_quant_weight(kernels::QuantType::kQ4_1, kernels::QuantType::kQ4_0, q4.data(),
                             l.q4.data(), s.n, s.k);
      std::vector<uint8_t> f8(s.n * s.k);
      // Gaussian weights at a per-tensor scale (max |w| about 5 -> 448), as FP8 checkpoints hold.
      for (auto& b : f8) b = kernels::fp8_e4m3_from_float(normal(rng) * 448.0f / 5.0f);
      l.fp8.resize(kernels::fp8_packed_bytes(s.n, s.k));
      cpu::pack_fp8_weight(f8.data(), l.fp8.data(), s.n, s.k);
      layers.push_back(std::move(l));
    }
  }
  std::vector<uint16_t> xb(m * 1536, 0x3f80);
  std::vector<float> xf(m * 1536, 1.0f);
  std::vector<float> out(m * 49152);
  auto step = [&](int kind) {
    for (Layer& l : layers) {
      if (kind == 0) {
        cpu::SkinnyGemmParams p{out.data(), xb.data(), l.bf16.data(), m,   l.s.n,
                                l.s.k,      l.s.k,     l.s.n,         true};
        cpu::skinny_gemm_bf16(p);
      } else if (kind == 3) {
        kernels::Fp8LinearParams p;
        p.out = out.data();
        p.x = xb.data();
        p.w = l.fp8.data();
        p.scale = l.scale.data();
        p.m = m;
        p.n = l.s.n;
        p.k = l.s.k;
        p.x_stride = l.s.k;
        p.out_stride = l.s.n;
        p.dtype = kernels::DType::kBFloat16;
        cpu::fp8_linear(p);
      } else {
        kernels::QuantLinearParams p;
        p.out = out.data();
        p.x = xf.data();
        p.w = kind == 1 ? l.q8.data() : l.q4.data();
        p.m = m;
        p.n = l.s.n;
        p.k = l.s.k;
        p.x_stride = l.s.k;
        p.out_stride = l.s.n;
        p.wtype = kind == 1 ? kernels::QuantType::kQ8_0 : kernels::QuantType::kQ4_1;
        p.dtype = kernels::DType::kFloat32;
        cpu::quant_linear(p);
      }
    }
  };
  const char* names[] = {"bf16 skinny", "Q8_0", "Q4_1", "FP8"};
  const char* keys[] = {"bf16", "q8", "q4", "fp8"};
  for (int kind = 0; kind < 4; ++kind) {
    if (only.find(keys[kind]) == std::string::npos) continue;
    if (kind == 0 && !cpu::skinny_gemm_supported(576)) continue;
    double bytes = 0;
    for (const Layer& l : layers) {
      const size_t sizes[] = {2 * l.bf16.size(), l.q8.size(), l.q4.size(), l.fp8.size()};
      bytes += static_cast<double>(sizes[kind]);
    }
    step(kind);  // warm-up
    const int reps = 20;
    const double t0 = now();
    for (int r = 0; r < reps; ++r) step(kind);
    const double ms = (now() - t0) / reps * 1e3;
    std::printf("bench cpu_linear %-12s %7.2f ms/step  %6.1f MB/step  %6.1f GB/s\n", names[kind],
                ms, bytes / 1e6, bytes / (ms * 1e-3) / 1e9);
  }
  return 0;
}
