// The oneDNN ops are looked up once in the dispatcher: ATen has no C++ header for them.
#include "ops/linear.h"

#include <ATen/Config.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstdlib>
#include <cstring>
#include <optional>

#include "cpu/fp8_linear.h"
#include "cpu/quant_linear.h"
#include "cpu/skinny_gemm.h"
#include "ops/ops_cuda.h"

namespace taco::ops {
namespace {

// The batch size oneDNN lays packed weights out for: a decode step of a full batch. Prefill's
// larger batches run as fast on that layout (measured at 512 and 2048 rows).
constexpr int64_t kOnednnBatchHint = 64;

bool packing_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("TACO_GEMM");
    return !(v && std::strcmp(v, "aten") == 0) && __builtin_cpu_supports("avx512bf16");
  }();
  return enabled;
}

at::Tensor onednn_pack(const at::Tensor& w) {
  if (!at::hasMKLDNN()) return {};
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("mkldnn::_reorder_linear_weight", "")
                             .typed<at::Tensor(const at::Tensor&, std::optional<int64_t>)>();
  return op.call(w, kOnednnBatchHint);
}

at::Tensor onednn_linear(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& bias) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                            c10::string_view, c10::List<std::optional<at::Scalar>>,
                            std::optional<c10::string_view>)>();
  const std::optional<at::Tensor> b =
      bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt;
  return op.call(x.contiguous(), packed, b, "none", c10::List<std::optional<at::Scalar>>(),
                 std::nullopt);
}

at::Tensor skinny_pack(const at::Tensor& w) {
  if (!cpu::skinny_gemm_supported(w.size(1))) return {};
  at::Tensor packed = at::empty({cpu::skinny_packed_elems(w.size(0), w.size(1))}, w.options());
  cpu::pack_skinny_weight(w.data_ptr(), packed.data_ptr(), w.size(0), w.size(1));
  return packed;
}

at::Tensor skinny_linear(const at::Tensor& x, const LinearWeight& w, bool float_out) {
  at::Tensor out = at::empty({x.size(0), w.out_features},
                             x.options().dtype(float_out ? at::kFloat : at::kBFloat16));
  cpu::SkinnyGemmParams p{out.data_ptr(), x.data_ptr(),   w.skinny.data_ptr(),
                          x.size(0),      w.out_features, x.size(1),
                          x.stride(0),    out.stride(0),  float_out};
  cpu::skinny_gemm_bf16(p);
  return out;
}

// From this many rows a bf16 batch runs faster as oneDNN's GEMM over the weight widened to bf16
// for the call (TACO_QUANT_DENSE_ROWS overrides, for measurements).
int64_t quant_dense_rows() {
  static const int64_t rows = [] {
    const char* v = std::getenv("TACO_QUANT_DENSE_ROWS");
    return v ? std::atoll(v) : int64_t{32};
  }();
  return rows;
}

// x [T, in] float32 or bfloat16 (anything else computed in float32) against a weight kept
// compressed on the CPU (block-quantized or FP8). From quant_dense_rows() bf16 rows, widen(dense)
// writes the weight into a bf16 buffer for oneDNN's GEMM; below, kernel(p) runs with p's x and
// output fields filled (its weight fields set by the caller).
template <typename Params, typename Widen, typename Kernel>
at::Tensor compressed_linear(const at::Tensor& x_in, const LinearWeight& w, bool float_out,
                             Params p, const Widen& widen, const Kernel& kernel) {
  if (x_in.scalar_type() == at::kBFloat16 && x_in.size(0) >= quant_dense_rows() &&
      packing_enabled()) {
    at::Tensor dense = at::empty({w.out_features, w.in_features}, x_in.options());
    widen(dense.data_ptr());
    at::Tensor y = at::linear(x_in, dense);
    return float_out ? y.to(at::kFloat) : y;
  }
  const bool keep = x_in.scalar_type() == at::kBFloat16 && !float_out;
  at::Tensor x = keep ? x_in : x_in.to(at::kFloat);
  if (x.stride(1) != 1) x = x.contiguous();
  at::Tensor out = at::empty({x.size(0), w.out_features}, x.options());
  p.out = out.data_ptr();
  p.x = x.data_ptr();
  p.m = x.size(0);
  p.n = w.out_features;
  p.k = w.in_features;
  p.x_stride = x.stride(0);
  p.out_stride = out.stride(0);
  p.dtype = keep ? kernels::DType::kBFloat16 : kernels::DType::kFloat32;
  kernel(p);
  if (float_out || x_in.scalar_type() == at::kFloat) return out;
  return out.to(x_in.scalar_type());
}

at::Tensor quant_linear(const at::Tensor& x, const LinearWeight& w, bool float_out) {
  kernels::QuantLinearParams p;
  p.w = w.quant.data_ptr();
  p.wtype = w.quant_type;
  return compressed_linear(
      x, w, float_out, p,
      [&](void* dense) {
        cpu::unpack_quant_weight(w.quant_type, w.quant.data_ptr(), dense, true, w.out_features,
                                 w.in_features);
      },
      [](const kernels::QuantLinearParams& q) { cpu::quant_linear(q); });
}

at::Tensor fp8_linear(const at::Tensor& x, const LinearWeight& w, bool float_out) {
  kernels::Fp8LinearParams p;
  p.w = w.fp8.data_ptr();
  p.scale = w.fp8_scale.data_ptr<float>();
  return compressed_linear(
      x, w, float_out, p,
      [&](void* dense) {
        cpu::unpack_fp8_weight(w.fp8.data_ptr(), w.fp8_scale.data_ptr<float>(), dense, true,
                               w.out_features, w.in_features);
      },
      [](const kernels::Fp8LinearParams& q) { cpu::fp8_linear(q); });
}

// x's columns in the order perm gives (act-order weights): advanced indexing, whose parallel
// gather runs about twice as fast as index_select along dim 1 on the CPU.
at::Tensor permute_columns(const at::Tensor& x, const at::Tensor& perm) {
  return at::index(x, {c10::optional<at::Tensor>(), c10::optional<at::Tensor>(perm)});
}

// The weight as given, no packed forms.
LinearWeight plain_weight(const at::Tensor& w) {
  TORCH_CHECK(w.dim() == 2, "linear: weight must be [out, in]");
  LinearWeight lw;
  lw.plain = w;
  lw.out_features = w.size(0);
  lw.in_features = w.size(1);
  return lw;
}

}  // namespace

LinearWeight prepare_linear_weight(const at::Tensor& w) {
  LinearWeight lw = plain_weight(w.contiguous());
  if (!w.device().is_cpu() || w.scalar_type() != at::kBFloat16 || !packing_enabled()) return lw;
  lw.skinny = skinny_pack(lw.plain);
  lw.onednn = onednn_pack(lw.plain);
  if (lw.skinny.defined() && lw.onednn.defined()) lw.plain = at::Tensor();
  return lw;
}

at::Tensor dequantize_rows(const QuantizedRows& q) {
  const kernels::QuantType t = q.type;
  TORCH_CHECK(q.rows.dim() == 2 && q.rows.scalar_type() == at::kByte && q.rows.is_cpu() &&
                  q.cols > 0 && q.cols % kernels::quant_block_values(t) == 0 &&
                  q.rows.size(1) == kernels::quant_row_bytes(t, q.cols),
              "dequantize_rows: rows must be uint8 [n, ", kernels::quant_row_bytes(t, q.cols),
              "]: ", q.cols, " values of ", kernels::quant_type_name(t));
  const at::Tensor raw = q.rows.contiguous();
  at::Tensor out = at::empty({raw.size(0), q.cols}, at::kFloat);
  cpu::dequantize_quant(t, raw.data_ptr(), out.data_ptr<float>(), raw.size(0), q.cols);
  if (!q.in_perm.defined()) return out;
  TORCH_CHECK(
      q.in_perm.dim() == 1 && q.in_perm.size(0) == q.cols && q.in_perm.scalar_type() == at::kLong,
      "dequantize_rows: in_perm must be int64 [", q.cols, "]");
  // Stored column j is column in_perm[j].
  at::Tensor ordered = at::empty_like(out);
  ordered.index_copy_(1, q.in_perm, out);
  return ordered;
}

namespace {

// A 4-bit block type the W4A16 layout holds exactly.
bool w4_type(kernels::QuantType t) {
  return t == kernels::QuantType::kQ4_0 || t == kernels::QuantType::kQ4_1 ||
         t == kernels::QuantType::kQ4_Z;
}

}  // namespace

std::vector<at::Tensor> w4a16_layout(const QuantizedRows& q) {
  TORCH_CHECK(w4_type(q.type) && q.rows.dim() == 2 && q.cols % kernels::kQuantBlock == 0 &&
                  q.rows.size(1) == kernels::quant_row_bytes(q.type, q.cols),
              "w4a16_layout: rows must be Q4_0, Q4_1 or Q4_Z blocks of ", q.cols, " columns");
  const int64_t n = q.rows.size(0), nb = q.cols / kernels::kQuantBlock;
  const int64_t bytes = kernels::quant_block_bytes(q.type);
  const at::Tensor blk = q.rows.contiguous().view({n, nb, bytes});
  auto half_at = [&](int64_t off) {
    return blk.slice(2, off, off + 2).contiguous().view(at::kHalf).view({n, nb});
  };
  const int64_t qs_off = bytes - 16;  // the 16 code bytes end every 4-bit block
  const at::Tensor qs = blk.slice(2, qs_off, bytes);
  // Stored: byte j holds column j (low nibble) and j + 16 (high). Wanted: column 2j low, 2j + 1
  // high.
  const at::Tensor cols = at::cat({at::bitwise_and(qs, 15), at::bitwise_right_shift(qs, 4)}, 2);
  const at::Tensor codes =
      at::bitwise_or(cols.slice(2, 0, 32, 2), at::bitwise_left_shift(cols.slice(2, 1, 32, 2), 4))
          .reshape({n, q.cols / 2});
  const at::Tensor d = half_at(0);
  at::Tensor m = at::zeros({n, nb}, at::kHalf), z;
  if (q.type == kernels::QuantType::kQ4_0) {
    z = at::full({n, nb}, 8, at::kByte);
  } else if (q.type == kernels::QuantType::kQ4_1) {
    m = half_at(2);
    z = at::zeros({n, nb}, at::kByte);
  } else {
    z = half_at(2).to(at::kByte);
  }
  return {codes, d, m, z};
}

LinearWeight prepare_quant_linear_weight(const std::vector<QuantizedRows>& parts, int64_t in,
                                         at::ScalarType dtype, const at::Device& device) {
  TORCH_CHECK(!parts.empty(), "prepare_quant_linear_weight: no parts");
  kernels::QuantType layout = kernels::quant_layout(parts[0].type);
  const at::Tensor& perm = parts[0].in_perm;
  // Every part's columns in one order (act-order weights: the same permutation of x).
  bool one_order = true;
  bool tiled = true;
  bool w4 = device.is_cuda() && (dtype == at::kBFloat16 || dtype == at::kHalf) &&
            in % kernels::kQuantBlock == 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    TORCH_CHECK(parts[i].cols == in, "prepare_quant_linear_weight: part ", i, " has ",
                parts[i].cols, " columns, not ", in);
    tiled &= kernels::quant_can_share(layout, parts[i].type);
    if (tiled) layout = kernels::quant_common_layout(layout, parts[i].type);
    tiled &= i + 1 == parts.size() || parts[i].rows.size(0) % kernels::kQuantTileRows == 0;
    w4 &= w4_type(parts[i].type);
    const at::Tensor& p = parts[i].in_perm;
    one_order &= p.defined() == perm.defined() && (!p.defined() || at::equal(p, perm));
  }
  tiled &= one_order;
  w4 &= one_order;
  if (w4) {
    std::vector<std::vector<at::Tensor>> fields(4);
    for (const QuantizedRows& q : parts) {
      const std::vector<at::Tensor> f = w4a16_layout(q);
      for (size_t i = 0; i < 4; ++i) fields[i].push_back(f[i]);
    }
    auto stacked = [&](size_t i) {
      return (fields[i].size() == 1 ? fields[i][0] : at::cat(fields[i], 0)).contiguous().to(device);
    };
    LinearWeight lw;
    lw.w4_codes = stacked(0);
    lw.w4_d = stacked(1);
    lw.w4_m = stacked(2);
    lw.w4_z = stacked(3);
    lw.out_features = lw.w4_codes.size(0);
    lw.in_features = in;
    if (perm.defined()) lw.in_perm = perm.to(device);
    return lw;
  }
  if (!device.is_cpu() || !tiled) {
    std::vector<at::Tensor> ws;
    for (const QuantizedRows& p : parts) ws.push_back(dequantize_rows(p).to(device, dtype));
    return prepare_linear_weight(ws.size() == 1 ? ws[0] : at::cat(ws, 0));
  }
  LinearWeight lw;
  lw.in_features = in;
  lw.quant_type = layout;
  lw.in_perm = perm;
  std::vector<at::Tensor> packed;
  for (const QuantizedRows& p : parts) {
    const at::Tensor raw = p.rows.contiguous();
    TORCH_CHECK(raw.size(1) == kernels::quant_row_bytes(p.type, in),
                "prepare_quant_linear_weight: rows do not hold ", in, " ",
                kernels::quant_type_name(p.type), " values each");
    at::Tensor out = at::empty({kernels::quant_packed_bytes(layout, raw.size(0), in)}, at::kByte);
    cpu::pack_quant_weight(p.type, layout, raw.data_ptr(), out.data_ptr(), raw.size(0), in);
    packed.push_back(out);
    lw.out_features += raw.size(0);
  }
  lw.quant = packed.size() == 1 ? packed[0] : at::cat(packed, 0);
  return lw;
}

at::Tensor dequantize_fp8(const Fp8Rows& f) {
  TORCH_CHECK(f.codes.dim() == 2 && f.codes.scalar_type() == at::kByte && f.codes.is_cpu() &&
                  f.scale.dim() == 1 && f.scale.scalar_type() == at::kFloat &&
                  f.scale.size(0) == f.codes.size(0),
              "dequantize_fp8: codes must be uint8 [n, k] and scale float32 [n]");
  return f.codes.contiguous().view(at::kFloat8_e4m3fn).to(at::kFloat) * f.scale.unsqueeze(1);
}

LinearWeight prepare_fp8_linear_weight(const std::vector<Fp8Rows>& parts, int64_t in,
                                       at::ScalarType dtype, const at::Device& device) {
  TORCH_CHECK(!parts.empty(), "prepare_fp8_linear_weight: no parts");
  for (size_t i = 0; i < parts.size(); ++i) {
    TORCH_CHECK(parts[i].codes.dim() == 2 && parts[i].codes.size(1) == in,
                "prepare_fp8_linear_weight: part ", i, " is not [n, ", in, "]");
  }
  if (!device.is_cpu() || in % kernels::kFp8Step != 0) {
    std::vector<at::Tensor> ws;
    for (const Fp8Rows& p : parts) ws.push_back(dequantize_fp8(p).to(device, dtype));
    return prepare_linear_weight(ws.size() == 1 ? ws[0] : at::cat(ws, 0));
  }
  std::vector<at::Tensor> codes, scales;
  for (const Fp8Rows& p : parts) {
    codes.push_back(p.codes);
    scales.push_back(p.scale);
  }
  const at::Tensor all = (codes.size() == 1 ? codes[0] : at::cat(codes, 0)).contiguous();
  LinearWeight lw;
  lw.out_features = all.size(0);
  lw.in_features = in;
  lw.fp8 = at::empty({kernels::fp8_packed_bytes(lw.out_features, in)}, at::kByte);
  cpu::pack_fp8_weight(all.data_ptr(), lw.fp8.data_ptr(), lw.out_features, in);
  lw.fp8_scale = (scales.size() == 1 ? scales[0] : at::cat(scales, 0)).contiguous();
  return lw;
}

at::Tensor linear(const at::Tensor& x, const LinearWeight& w, const at::Tensor& bias,
                  bool float_out) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == w.in_features, "linear: x must be [T, ", w.in_features,
              "], got ", x.sizes());
#if TACO_WITH_CUDA
  if (x.is_cuda() && w.w4_codes.defined()) {
    at::Tensor y = cuda_impl::w4a16_linear(w.in_perm.defined() ? permute_columns(x, w.in_perm) : x,
                                           w.w4_codes, w.w4_d, w.w4_m, w.w4_z, w.out_features);
    if (bias.defined()) y.add_(bias);
    return float_out ? y.to(at::kFloat) : y;
  }
  if (x.is_cuda()) {
    TORCH_CHECK(w.plain.defined() && w.plain.device() == x.device() &&
                    (!bias.defined() || bias.device() == x.device()),
                "linear: x, weight and bias on different devices");
    at::Tensor y = cuda_impl::linear(x, w.plain, bias);
    return float_out ? y.to(at::kFloat) : y;
  }
#endif
  TORCH_CHECK(x.device().is_cpu(), "linear: expected a CPU or CUDA tensor, got ", x.device());
  if (w.quant.defined()) {
    at::Tensor y =
        quant_linear(w.in_perm.defined() ? permute_columns(x, w.in_perm) : x, w, float_out);
    if (bias.defined()) y.add_(bias);
    return y;
  }
  if (w.fp8.defined()) {
    at::Tensor y = fp8_linear(x, w, float_out);
    if (bias.defined()) y.add_(bias);
    return y;
  }
  const bool bf16 = x.scalar_type() == at::kBFloat16;
  if (w.skinny.defined() && bf16 && !bias.defined() && x.size(0) <= kSkinnyRows &&
      x.stride(1) == 1) {
    return skinny_linear(x, w, float_out);
  }
  at::Tensor y;
  if (w.onednn.defined() && bf16) {
    y = onednn_linear(x, w.onednn, bias);
  } else {
    TORCH_CHECK(w.plain.defined(), "linear: no layout of this weight takes a ", x.scalar_type(),
                " input");
    y = bias.defined() ? at::linear(x, w.plain, bias) : at::linear(x, w.plain);
  }
  return float_out ? y.to(at::kFloat) : y;
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                  bool float_out) {
  return linear(x, plain_weight(weight), bias, float_out);
}

}  // namespace taco::ops
