// One instruction-set level's table of entry points (compiled once per level, see isa.h).
#include "cpu/activation.h"
#include "cpu/isa.h"
#include "cpu/kv_cache.h"
#include "cpu/norm.h"
#include "cpu/paged_attention.h"
#include "cpu/rotary.h"
#include "cpu/skinny_gemm.h"

#define TACO_CPU_STR2(x) #x
#define TACO_CPU_STR(x) TACO_CPU_STR2(x)

namespace taco::cpu::TACO_CPU_ISA {

const KernelTable& kernel_table() {
  static const KernelTable table = {// "isa_avx2" -> "avx2"
                                    TACO_CPU_STR(TACO_CPU_ISA) + 4,
#define TACO_CPU_TABLE_ENTRY(name, ret, params, args) &name,
                                    TACO_CPU_ENTRY_POINTS(TACO_CPU_TABLE_ENTRY)
#undef TACO_CPU_TABLE_ENTRY
  };
  return table;
}

}  // namespace taco::cpu::TACO_CPU_ISA
