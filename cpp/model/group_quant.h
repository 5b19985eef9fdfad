// AWQ and GPTQ checkpoints (int4 / int8 weights quantized in groups along the input, with
// per-group scales and zero points) as block-quantized rows the quantized linears take. A
// projection `P` is stored as P.qweight, P.qzeros, P.scales (and for GPTQ P.g_idx) instead of
// P.weight; this checkpoint serves "P.weight" from them:
//   AWQ (GEMM):  qweight int32 [in, out / 8], eight 4-bit values of consecutive outputs per
//                int32 in AWQ's order (0, 2, 4, 6, 1, 3, 5, 7); qzeros int32 [groups, out / 8]
//                likewise; scales [groups, out]. w[o, i] = (q - z) * s of group i / group_size.
//   GPTQ:        qweight int32 [in * bits / 32, out], values of consecutive inputs per int32;
//                qzeros int32 [groups, out * bits / 32] holding z - 1; scales [groups, out];
//                g_idx int32 [in], the group of each input (act-order when not i / group_size).
// Each 32-input block of a row lies in one group (group sizes are multiples of 32), so a weight
// becomes, exactly, Q4_Z / Q8_Z blocks (d = s and the zero point z), or for symmetric GPTQ
// (z = 2^(bits-1)) Q4_0 / Q8_0 blocks. Act-order inputs are sorted by group, the rows carrying
// that column order (QuantizedRows::in_perm); a g_idx whose groups are not whole 32-input
// blocks in that order is served dequantized.
#pragma once

#include <string>

#include "model/checkpoint.h"
#include "model/model_config.h"
#include "model/safetensors.h"

namespace taco {

class GroupQuantCheckpoint : public Checkpoint {
 public:
  GroupQuantCheckpoint(WeightStore store, const QuantConfig& quant);

  bool has(const std::string& name) const override;
  std::vector<int64_t> shape(const std::string& name) const override;
  at::Tensor load(const std::string& name, at::ScalarType dtype) const override;
  std::optional<ops::QuantizedRows> quantized(const std::string& name) const override;

 private:
  // "P" when name is "P.weight" and P.qweight is stored, else "".
  std::string prefix(const std::string& name) const;
  // The integer values [out, in] (columns in the stored order), per-group scales and zero points
  // [groups, out] as float32, and each column's group.
  struct Unpacked {
    at::Tensor q;      // int32 [out, in]
    at::Tensor s, z;   // float32 [groups, out]
    at::Tensor group;  // int64 [in], group of each column in the weight's order
  };
  Unpacked unpack(const std::string& p) const;
  [[noreturn]] void fail(const std::string& p, const std::string& what) const;

  WeightStore store_;
  QuantConfig quant_;
};

}  // namespace taco
