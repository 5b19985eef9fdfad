// One instruction-set level's table of entry points (compiled once per level, see isa.h), the
// only symbol its library exports.
#include "cpu/activation.h"
#include "cpu/fp8_linear.h"
#include "cpu/isa.h"
#include "cpu/kv_cache.h"
#include "cpu/lora.h"
#include "cpu/norm.h"
#include "cpu/paged_attention.h"
#include "cpu/quant_linear.h"
#include "cpu/rotary.h"
#include "cpu/skinny_gemm.h"

#define TACO_CPU_STR2(x) #x
#define TACO_CPU_STR(x) TACO_CPU_STR2(x)
#define TACO_CPU_CAT2(a, b) a##b
#define TACO_CPU_CAT(a, b) TACO_CPU_CAT2(a, b)

extern "C" __attribute__((visibility("default"))) const taco::cpu::KernelTable& TACO_CPU_CAT(
    taco_cpu_kernels_, TACO_CPU_LEVEL)() {
  using namespace taco::cpu::TACO_CPU_ISA;  // NOLINT(google-build-using-namespace)
  static const taco::cpu::KernelTable table = {TACO_CPU_STR(TACO_CPU_LEVEL),
#define TACO_CPU_TABLE_ENTRY(name, ret, params, args) &name,
                                               TACO_CPU_ENTRY_POINTS(TACO_CPU_TABLE_ENTRY)
#undef TACO_CPU_TABLE_ENTRY
  };
  return table;
}
