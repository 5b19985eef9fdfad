// Bandwidth of the CUDA kernels on one device, timed with CUDA events (median of 20 runs after 5
// warm-ups), each next to a device-to-device copy of the same bytes (bytes read + written), the
// ceiling a memory-bound kernel can reach. One line per kernel:
//   bench <kernel> <shape> time_us=<median> GB/s=<achieved> copy_GB/s=<copy> pct_of_copy=<ratio>
// Decode attention runs at batch 64 x 2048 and 8192 context and batch 1 x 32768 (Llama-3-8B heads:
// 32 q, 8 kv, head_dim 128, bf16, block 16), sweeping the decode-kernel variants and split sizes
// (default first, the old mixed kernel last); its bytes are the K/V it must read plus queries and
// outputs. Sampling runs at batch 64 x SmolLM2's vocab and 256 x Llama-3's. W4A16 GEMV runs at
// batch 1, 4 and 8 beside the dense bf16 GEMM of the same weight. LoRA runs Llama-3-8B's fused
// q/k/v with 4 rank-16 adapters over the tokens, at decode (64) and prefill (4096) sizes.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "sample_buffers.h"
#include "taco/cuda/activation.h"
#include "taco/cuda/attention.h"
#include "taco/cuda/gemm.h"
#include "taco/cuda/kv_cache.h"
#include "taco/cuda/lora.h"
#include "taco/cuda/norm.h"
#include "taco/cuda/rotary.h"
#include "taco/cuda/sampling.h"
#include "taco/cuda/w4a16.h"

namespace taco::cuda::testing {
namespace {

using bf16 = __nv_bfloat16;

// Median milliseconds of fn() over 20 timed runs.
double time_ms(const std::function<cudaError_t()>& fn) {
  for (int i = 0; i < 5; ++i) check(fn(), "warm-up");
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "event");
  check(cudaEventCreate(&stop), "event");
  std::vector<double> ms;
  for (int i = 0; i < 20; ++i) {
    check(cudaEventRecord(start), "record");
    check(fn(), "run");
    check(cudaEventRecord(stop), "record");
    check(cudaEventSynchronize(stop), "sync");
    float t = 0.0f;
    check(cudaEventElapsedTime(&t, start, stop), "elapsed");
    ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// Random bf16 in [-1, 1) through a repeated 1 MiB host pattern (filling GBs from the host RNG
// would dominate the run).
template <typename T>
void fill_random(T* dst, size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  const std::vector<T> pattern = random_vector<T>(std::min<size_t>(n, 1 << 19), rng, 0.5f);
  for (size_t i = 0; i < n; i += pattern.size()) {
    const size_t m = std::min(pattern.size(), n - i);
    check(cudaMemcpy(dst + i, pattern.data(), m * sizeof(T), cudaMemcpyHostToDevice), "fill");
  }
}

void report(const char* name, const std::string& shape, double ms, double bytes) {
  // The copy reads and writes bytes / 2 each, so its GB/s counts the same traffic.
  const size_t half = static_cast<size_t>(bytes / 2);
  DeviceBuffer<uint8_t> a(half), b(half);
  const double copy_ms =
      time_ms([&] { return cudaMemcpyAsync(b.get(), a.get(), half, cudaMemcpyDeviceToDevice); });
  const double gbs = bytes / ms / 1e6, copy_gbs = bytes / copy_ms / 1e6;
  std::printf("bench %-22s %-34s time_us=%.1f GB/s=%.0f copy_GB/s=%.0f pct_of_copy=%.0f%%\n", name,
              shape.c_str(), ms * 1e3, gbs, copy_gbs, 100.0 * gbs / copy_gbs);
}

// One decode-attention setting of the sweep: a decode-kernel variant (-1: the mixed kernel) and
// a fixed keys-per-split (0: the plan's choice).
struct DecodeSetting {
  int variant;
  int64_t partition_keys;
};

std::string setting_name(const DecodeSetting& s) {
  std::string name = s.variant < 0 ? std::string("mixed-kernel")
                     : s.variant == 0
                         ? std::string("default ") + paged_attention_decode_variant_name(0)
                         : std::string("variant ") + paged_attention_decode_variant_name(s.variant);
  return name + " part=" + (s.partition_keys ? std::to_string(s.partition_keys) : "auto");
}

// Decode attention at batch x ctx, Llama-3-8B heads (32 q, 8 kv, head_dim 128, bf16, block 16),
// one line per setting, the default first. A setting the library refuses prints its error.
void bench_decode_attention(int64_t batch, int64_t ctx) {
  const int64_t heads = 32, kv_heads = 8, d = 128, bs = 16;
  const int64_t blocks_per_seq = ctx / bs, num_blocks = batch * blocks_per_seq;
  DeviceBuffer<bf16> kv(2 * num_blocks * kv_heads * bs * d), q(batch * heads * d),
      out(batch * heads * d);
  fill_random(kv.get(), kv.size(), 1);
  fill_random(q.get(), q.size(), 2);
  std::vector<int32_t> table(num_blocks), q_start(batch + 1), lens(batch, ctx);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), std::mt19937(3));  // blocks scattered as in serving
  std::iota(q_start.begin(), q_start.end(), 0);
  DeviceBuffer<int32_t> dtable(table), dstart(q_start), dlens(lens);
  PagedAttentionParams p;
  p.out = out.get();
  p.query = q.get();
  p.kv = kv.get();
  p.query_start_loc = dstart.get();
  p.seq_lens = dlens.get();
  p.block_table = dtable.get();
  p.tokens = batch;
  p.num_seqs = batch;
  p.num_heads = heads;
  p.num_kv_heads = kv_heads;
  p.head_dim = d;
  p.block_size = bs;
  p.num_blocks = num_blocks;
  p.max_blocks_per_seq = blocks_per_seq;
  p.query_stride = heads * d;
  p.max_query_len = 1;
  p.max_seq_len = ctx;
  p.scale = 0.088f;
  p.dtype = DType::kBFloat16;
  std::vector<DecodeSetting> settings = {{0, 0}};
  for (int v = 1; paged_attention_decode_variant_name(v); ++v) settings.push_back({v, 0});
  for (int64_t part : {256, 512, 1024, 2048, 4096, 8192})
    if (part < ctx || part == 8192) settings.push_back({0, part});
  settings.push_back({-1, 0});
  const double bytes = (kv.size() + q.size() + out.size()) * sizeof(bf16);
  const std::string shape =
      "b" + std::to_string(batch) + " ctx" + std::to_string(ctx) + " h32/8 d128 bf16 ";
  for (const DecodeSetting& s : settings) {
    p.decode_variant = s.variant;
    p.decode_partition_keys = s.partition_keys;
    DeviceBuffer<float> workspace((paged_attention_workspace_bytes(p) + 3) / 4);
    p.workspace = workspace.size() ? workspace.get() : nullptr;
    if (const cudaError_t err = paged_attention(p, nullptr); err != cudaSuccess) {
      std::printf("bench decode_attention %s%s error=%s\n", shape.c_str(), setting_name(s).c_str(),
                  cudaGetErrorString(err));
      continue;
    }
    const double ms = time_ms([&] { return paged_attention(p, nullptr); });
    report("decode_attention", shape + setting_name(s), ms, bytes);
  }
}

void bench_norms() {
  const int64_t tokens = 4096, hidden = 4096;
  DeviceBuffer<bf16> x(tokens * hidden), res(tokens * hidden), out(tokens * hidden), w(hidden);
  fill_random(x.get(), x.size(), 4);
  fill_random(res.get(), res.size(), 5);
  fill_random(w.get(), w.size(), 6);
  RmsNormParams p{out.get(), x.get(), nullptr, w.get(), tokens,
                  hidden,    hidden,  hidden,  1e-6f,   DType::kBFloat16};
  const double row_bytes = static_cast<double>(tokens * hidden * sizeof(bf16));
  report("rms_norm", "t4096 h4096 bf16", time_ms([&] { return rms_norm(p, nullptr); }),
         2 * row_bytes);
  p.residual = res.get();
  p.out = x.get();  // in place, as the model calls it
  report("fused_add_rms_norm", "t4096 h4096 bf16",
         time_ms([&] { return fused_add_rms_norm(p, nullptr); }), 4 * row_bytes);
}

void bench_rotary_and_cache() {
  const int64_t tokens = 4096, heads = 32, kv_heads = 8, d = 128, max_pos = 8192, bs = 16;
  DeviceBuffer<bf16> q(tokens * heads * d), k(tokens * kv_heads * d), v(tokens * kv_heads * d);
  DeviceBuffer<float> cos_sin(max_pos * d);
  fill_random(q.get(), q.size(), 7);
  fill_random(k.get(), k.size(), 8);
  fill_random(v.get(), v.size(), 9);
  fill_random(cos_sin.get(), cos_sin.size(), 10);
  std::vector<int64_t> pos(tokens);
  std::iota(pos.begin(), pos.end(), 0);
  DeviceBuffer<int64_t> dpos(pos);
  RotaryParams r{dpos.get(), q.get(), k.get(),   cos_sin.get(), tokens,  heads, kv_heads,
                 d,          d,       heads * d, kv_heads * d,  max_pos, true,  DType::kBFloat16};
  const double qk_bytes = static_cast<double>((q.size() + k.size()) * sizeof(bf16));
  report("rotary_neox", "t4096 h32/8 d128 bf16",
         time_ms([&] { return rotary_embedding(r, nullptr); }), 2 * qk_bytes);

  const int64_t num_blocks = tokens / bs + 8;
  DeviceBuffer<bf16> kv(2 * num_blocks * kv_heads * bs * d);
  std::vector<int64_t> slots(tokens);
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(slots.begin(), slots.end(), std::mt19937(11));
  DeviceBuffer<int64_t> dslots(slots);
  WriteKvParams w{k.get(), v.get(), kv.get(),   dslots.get(), tokens,       kv_heads,
                  d,       bs,      num_blocks, kv_heads * d, kv_heads * d, DType::kBFloat16};
  const double kv_bytes = static_cast<double>((k.size() + v.size()) * sizeof(bf16));
  report("write_kv_cache", "t4096 kv8 d128 bf16",
         time_ms([&] { return write_kv_cache(w, nullptr); }), 2 * kv_bytes);
}

void bench_activation() {
  const int64_t tokens = 4096, inter = 14336;
  DeviceBuffer<bf16> x(tokens * 2 * inter), out(tokens * inter);
  fill_random(x.get(), x.size(), 12);
  SiluAndMulParams p{out.get(), x.get(), tokens, inter, 2 * inter, DType::kBFloat16};
  report("silu_and_mul", "t4096 i14336 bf16", time_ms([&] { return silu_and_mul(p, nullptr); }),
         static_cast<double>((x.size() + out.size()) * sizeof(bf16)));
}

// LoRA's shrink + expand on Llama-3-8B's q/k/v (in 4096, out 4096 + 1024 + 1024), 4 adapters of
// rank 16 round-robin over the tokens: its bytes are the 4 adapters' A and B, x, and y read and
// written.
void bench_lora(int64_t tokens) {
  const int64_t in = 4096, out = 6144, rank = 16, slots = 4, sr = 3 * rank;
  DeviceBuffer<bf16> x(tokens * in), y(tokens * out), a(slots * in * sr), b(slots * rank * out);
  DeviceBuffer<float> scratch(tokens * sr);
  fill_random(x.get(), x.size(), 21);
  fill_random(y.get(), y.size(), 22);
  fill_random(a.get(), a.size(), 23);
  fill_random(b.get(), b.size(), 24);
  std::vector<int32_t> slot(tokens);
  for (int64_t t = 0; t < tokens; ++t) slot[t] = static_cast<int32_t>(t % slots);
  DeviceBuffer<int32_t> dslot(slot);
  LoraParams p;
  p.y = y.get(), p.x = x.get(), p.a = a.get(), p.b = b.get();
  p.token_slot = dslot.get(), p.scratch = scratch.get();
  p.slice_start[0] = 0, p.slice_start[1] = 4096, p.slice_start[2] = 5120, p.slice_start[3] = 6144;
  p.tokens = tokens, p.in = in, p.out = out, p.rank = rank, p.slices = 3, p.num_slots = slots;
  p.x_stride = in, p.y_stride = out;
  p.dtype = p.weight_dtype = DType::kBFloat16;
  const double bytes = static_cast<double>((a.size() + b.size() + x.size() + 2 * y.size()) * 2);
  report("lora_apply", "t" + std::to_string(tokens) + " qkv 4096->6144 r16 x4 bf16",
         time_ms([&] { return lora_apply(p, nullptr); }), bytes);
}

// W4A16 GEMV at decode batch sizes on a Llama-3-8B projection (n 14336, k 4096): its bytes are the
// 4-bit weight with its per-32 scales, offsets and zero points, x and out; the dense bf16 GEMM
// (gemm.h) over the same weight widened, next to it, reads four times the weight bytes.
void bench_w4a16() {
  const int64_t n = 14336, k = 4096;
  DeviceBuffer<uint8_t> codes(n * k / 2), z(n * k / 32);
  DeviceBuffer<uint16_t> d(n * k / 32), m(n * k / 32);
  fill_random(reinterpret_cast<bf16*>(codes.get()), codes.size() / 2, 14);
  check(cudaMemset(z.get(), 8, z.size()), "fill");
  check(cudaMemset(m.get(), 0, m.size() * 2), "fill");
  {
    const std::vector<__half> scale(d.size(), __float2half_rn(0.01f));
    check(cudaMemcpy(d.get(), scale.data(), d.size() * 2, cudaMemcpyHostToDevice), "fill");
  }
  DeviceBuffer<bf16> dense(n * k);
  W4A16Params p;
  p.codes = codes.get();
  p.d = d.get();
  p.mofs = m.get();
  p.z = z.get();
  p.n = n;
  p.k = k;
  p.x_stride = k;
  p.out_stride = n;
  p.dtype = DType::kBFloat16;
  check(w4a16_dequantize(p, dense.get(), nullptr), "dequantize");
  const double weight_bytes = static_cast<double>(codes.size() + z.size() + 4 * d.size());
  for (const int64_t rows : {1, 4, 8}) {
    DeviceBuffer<bf16> x(rows * k), out(rows * n);
    fill_random(x.get(), x.size(), 15);
    p.x = x.get();
    p.out = out.get();
    p.m = rows;
    const double io = static_cast<double>((x.size() + out.size()) * sizeof(bf16));
    const std::string shape = "m" + std::to_string(rows) + " n14336 k4096 bf16";
    report("w4a16_gemv", shape, time_ms([&] { return w4a16_gemv(p, nullptr); }), weight_bytes + io);
    GemmParams g;
    g.out = out.get();
    g.x = x.get();
    g.w = dense.get();
    g.bias = nullptr;
    g.workspace = nullptr;
    g.m = rows;
    g.n = n;
    g.k = k;
    g.out_stride = n;
    g.x_stride = k;
    g.w_stride = k;
    g.dtype = DType::kBFloat16;
    if (gemm_supported(g)) {
      report("gemm_bf16_dense", shape, time_ms([&] { return gemm(g, nullptr); }),
             static_cast<double>(dense.size() * sizeof(bf16)) + io);
    }
  }
}

// Sampling over rows x vocab float32 logits, every row with the same settings; its bytes are the
// logits read once, so pct_of_copy near 100% / (passes over the row) is the kernel's ceiling.
void bench_sampling(int64_t rows, int64_t vocab) {
  DeviceBuffer<float> logits(rows * vocab);
  fill_random(logits.get(), logits.size(), 13);
  struct Setting {
    const char* name;
    float t;
    int32_t k;
    float p;
    float min_p;
  };
  for (const Setting& c :
       {Setting{"greedy", 0.0f, -1, 1.0f, 0.0f}, Setting{"t0.8", 0.8f, -1, 1.0f, 0.0f},
        Setting{"t0.8 k50 p0.9", 0.8f, 50, 0.9f, 0.0f}, Setting{"t1 p0.95", 1.0f, -1, 0.95f, 0.0f},
        Setting{"t1 min_p0.05", 1.0f, -1, 1.0f, 0.05f}}) {
    const SampleBuffers buf(std::vector<RowSettings>(rows, {c.t, c.k, c.p, c.min_p, 0.37}), 5);
    const SampleParams p = buf.params(logits.get(), vocab, vocab);
    const std::string shape =
        "r" + std::to_string(rows) + " v" + std::to_string(vocab) + " " + c.name + " top5";
    report("sample", shape, time_ms([&] { return sample(p, nullptr); }),
           static_cast<double>(logits.size() * sizeof(float)));
  }
}

}  // namespace
}  // namespace taco::cuda::testing

int main() {
  using namespace taco::cuda::testing;
  if (!announce_device()) return 0;
  try {
    bench_decode_attention(64, 2048);
    bench_decode_attention(64, 8192);
    bench_decode_attention(1, 32768);
    bench_norms();
    bench_rotary_and_cache();
    bench_activation();
    bench_w4a16();
    bench_lora(64);
    bench_lora(4096);
    bench_sampling(64, 49152);    // SmolLM2's vocab at batch 64
    bench_sampling(256, 128256);  // Llama-3's vocab at batch 256
  } catch (const std::exception& e) {
    std::printf("bench failed: %s\n", e.what());
    return 1;
  }
  return 0;
}
