#include "model/group_quant.h"

#include <stdexcept>

namespace taco {

namespace {

// Values of `bits` bits packed in int32s along `dim` (0: rows, 1: columns) of t, in order.
at::Tensor unpack_int32(const at::Tensor& t, int64_t bits, int64_t dim) {
  const int64_t per = 32 / bits;
  const at::Tensor shifts = at::arange(0, 32, bits, at::kInt);
  const int64_t mask = (int64_t{1} << bits) - 1;
  if (dim == 1) {  // [r, c] -> [r, c * per]
    return at::bitwise_and(at::bitwise_right_shift(t.unsqueeze(-1), shifts), mask)
        .reshape({t.size(0), t.size(1) * per});
  }
  // [r, c] -> [r * per, c]
  return at::bitwise_and(at::bitwise_right_shift(t.unsqueeze(1), shifts.view({1, per, 1})), mask)
      .reshape({t.size(0) * per, t.size(1)});
}

// fp16 values of t [r, c] as bytes [r, c, 2].
at::Tensor half_bytes(const at::Tensor& t) {
  return t.to(at::kHalf).contiguous().view(at::kByte).view({t.size(0), t.size(1), 2});
}

}  // namespace

GroupQuantCheckpoint::GroupQuantCheckpoint(WeightStore store, const QuantConfig& quant)
    : store_(std::move(store)), quant_(quant) {}

void GroupQuantCheckpoint::fail(const std::string& p, const std::string& what) const {
  throw std::invalid_argument(quant_.method + " checkpoint: \"" + p + "\": " + what);
}

std::string GroupQuantCheckpoint::prefix(const std::string& name) const {
  const std::string suffix = ".weight";
  if (name.size() <= suffix.size() || !name.ends_with(suffix)) return "";
  const std::string p = name.substr(0, name.size() - suffix.size());
  return store_.has(p + ".qweight") ? p : "";
}

bool GroupQuantCheckpoint::has(const std::string& name) const {
  return store_.has(name) || !prefix(name).empty();
}

std::vector<int64_t> GroupQuantCheckpoint::shape(const std::string& name) const {
  const std::string p = prefix(name);
  if (p.empty()) return store_.shape(name);
  const std::vector<int64_t> s = store_.shape(p + ".qweight");
  if (s.size() != 2) fail(p, "qweight must be 2-D");
  if (quant_.method == "awq") return {s[1] * 8, s[0]};
  return {s[1], s[0] * 32 / quant_.bits};
}

GroupQuantCheckpoint::Unpacked GroupQuantCheckpoint::unpack(const std::string& p) const {
  auto int32 = [&](const std::string& n) {
    at::Tensor t = store_.view(p + "." + n);
    if (t.scalar_type() != at::kInt || t.dim() != 2) fail(p, n + " must be a 2-D int32 tensor");
    return t;
  };
  const at::Tensor qweight = int32("qweight"), qzeros = int32("qzeros");
  at::Tensor scales = store_.view(p + ".scales");
  if (!at::isFloatingType(scales.scalar_type()) || scales.dim() != 2) {
    fail(p, "scales must be a 2-D float tensor");
  }
  const bool awq = quant_.method == "awq";
  const int64_t bits = quant_.bits;
  Unpacked u;
  if (awq) {
    // Output column 8 c + j is nibble kInverse[j] of int32 c (AWQ packs in order 0 2 4 6 1 3 5 7).
    const at::Tensor inverse = at::tensor(std::vector<int64_t>{0, 4, 1, 5, 2, 6, 3, 7});
    auto awq_unpack = [&](const at::Tensor& t) {
      return unpack_int32(t, 4, 1)
          .view({t.size(0), t.size(1), 8})
          .index_select(2, inverse)
          .reshape({t.size(0), t.size(1) * 8});
    };
    u.q = awq_unpack(qweight).t().contiguous();  // [out, in]
    u.z = awq_unpack(qzeros).to(at::kFloat);
  } else {
    u.q = unpack_int32(qweight, bits, 0).t().contiguous();
    u.z = unpack_int32(qzeros, bits, 1).to(at::kFloat) + 1;  // stored as z - 1
  }
  const int64_t out = u.q.size(0), in = u.q.size(1);
  const int64_t groups = scales.size(0);
  if (scales.size(1) != out || u.z.size(0) != groups || u.z.size(1) != out) {
    fail(p, "qweight, qzeros and scales disagree on the output or group count");
  }
  u.s = scales.to(at::kFloat);
  const int64_t g = quant_.group_size == -1 ? in : quant_.group_size;
  if (!awq && store_.has(p + ".g_idx")) {
    at::Tensor gi = store_.view(p + ".g_idx");
    if (gi.scalar_type() != at::kInt || gi.dim() != 1 || gi.size(0) != in) {
      fail(p, "g_idx must be int32 [" + std::to_string(in) + "]");
    }
    u.group = gi.to(at::kLong);
    if (in > 0 && (u.group.min().item<int64_t>() < 0 || u.group.max().item<int64_t>() >= groups)) {
      fail(p, "g_idx names a group past the " + std::to_string(groups) + " scales");
    }
  } else {
    if (in % g != 0 || in / g != groups) {
      fail(p, std::to_string(in) + " inputs in groups of " + std::to_string(g) + " need " +
                  std::to_string(in / g) + " scale rows, not " + std::to_string(groups));
    }
    u.group = at::arange(in, at::kLong).div(g, "floor");
  }
  return u;
}

std::optional<ops::QuantizedRows> GroupQuantCheckpoint::quantized(const std::string& name) const {
  const std::string p = prefix(name);
  if (p.empty()) return std::nullopt;
  const Unpacked u = unpack(p);
  const int64_t out = u.q.size(0), in = u.q.size(1);
  if (in % 32 != 0) return std::nullopt;
  // Columns sorted by group (act-order); each 32-column block must then lie in one group.
  at::Tensor perm;
  at::Tensor q = u.q, group = u.group;
  if (in > 1 && !at::all(group.slice(0, 1).ge(group.slice(0, 0, in - 1))).item<bool>()) {
    perm = std::get<1>(group.sort(/*stable=*/true, 0, false));
    q = q.index_select(1, perm);
    group = group.index_select(0, perm);
  }
  const int64_t nb = in / 32;
  const at::Tensor blocks = group.view({nb, 32});
  if (!at::all(blocks.eq(blocks.select(1, 0).unsqueeze(1))).item<bool>()) return std::nullopt;
  const at::Tensor bg = blocks.select(1, 0).contiguous();
  const at::Tensor d = u.s.index_select(0, bg).t().contiguous();  // [out, nb]
  const at::Tensor z = u.z.index_select(0, bg).t().contiguous();
  const at::Tensor codes = q.view({out, nb, 32});
  ops::QuantizedRows r;
  r.cols = in;
  r.in_perm = perm;
  if (quant_.bits == 8) {
    if (at::all(z.eq(128)).item<bool>()) {
      r.type = kernels::QuantType::kQ8_0;  // w = d (q - 128), exactly
      const at::Tensor q8 = (codes - 128).to(at::kChar).view(at::kByte);
      r.rows = at::cat({half_bytes(d), q8}, 2).reshape({out, nb * 34});
    } else {
      r.type = kernels::QuantType::kQ8_Z;  // w = d (q - z), exactly
      r.rows =
          at::cat({half_bytes(d), half_bytes(z), codes.to(at::kByte)}, 2).reshape({out, nb * 36});
    }
    return r;
  }
  const at::Tensor c = codes.to(at::kByte);
  const at::Tensor nibbles =
      at::bitwise_or(c.slice(2, 0, 16), at::bitwise_left_shift(c.slice(2, 16, 32), 4));
  if (at::all(z.eq(8)).item<bool>()) {
    r.type = kernels::QuantType::kQ4_0;  // w = d (q - 8), exactly
    r.rows = at::cat({half_bytes(d), nibbles}, 2).reshape({out, nb * 18});
  } else {
    r.type = kernels::QuantType::kQ4_Z;  // w = d (q - z), exactly
    r.rows = at::cat({half_bytes(d), half_bytes(z), nibbles}, 2).reshape({out, nb * 20});
  }
  return r;
}

at::Tensor GroupQuantCheckpoint::load(const std::string& name, at::ScalarType dtype) const {
  const std::string p = prefix(name);
  if (p.empty()) return store_.load(name, dtype);
  const Unpacked u = unpack(p);
  const at::Tensor s = u.s.index_select(0, u.group).t();  // [out, in]
  const at::Tensor z = u.z.index_select(0, u.group).t();
  return ((u.q.to(at::kFloat) - z) * s).to(dtype).contiguous();
}

}  // namespace taco
