// The public CPU kernel entry points: each calls the best instruction-set level the CPU supports
// (see isa.h). Compiled once, for the baseline target.
#include "cpu/isa.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cpu/activation.h"
#include "cpu/fp8_linear.h"
#include "cpu/kv_cache.h"
#include "cpu/lora.h"
#include "cpu/norm.h"
#include "cpu/paged_attention.h"
#include "cpu/quant_linear.h"
#include "cpu/rotary.h"
#include "cpu/skinny_gemm.h"

#if defined(__x86_64__)
#define TACO_CPU_LEVELS(X) TACO_CPU_ISA_LIST_X86(X)
#else
#define TACO_CPU_LEVELS(X) X(generic)
#endif

namespace taco::cpu {}  // namespace taco::cpu

// Each level's table, exported by its library (isa_table.cpp).
#define TACO_CPU_DECLARE_TABLE(isa) \
  extern "C" const taco::cpu::KernelTable& taco_cpu_kernels_##isa();
TACO_CPU_LEVELS(TACO_CPU_DECLARE_TABLE)
#undef TACO_CPU_DECLARE_TABLE

namespace taco::cpu {
namespace {

bool cpu_supports(const std::string& isa) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("f16c");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512cd");
  if (isa == "avx512bf16") {
    return avx512 && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vnni");
  }
  if (isa == "avx512") return avx512;
  if (isa == "avx2") return avx2;
#endif
  return isa == "generic";
}

const KernelTable* choose() {
  const KernelTable* levels[] = {
#define TACO_CPU_TABLE_ENTRY(isa) &taco_cpu_kernels_##isa(),
      TACO_CPU_LEVELS(TACO_CPU_TABLE_ENTRY)
#undef TACO_CPU_TABLE_ENTRY
  };
  const char* forced = std::getenv("TACO_CPU_ISA");
  if (forced != nullptr && *forced != '\0') {
    for (const KernelTable* t : levels) {
      if (std::strcmp(t->isa, forced) == 0 && cpu_supports(t->isa)) return t;
    }
    std::string known;
    for (const KernelTable* t : levels) known += std::string(known.empty() ? "" : ", ") + t->isa;
    std::fprintf(stderr,
                 "taco: TACO_CPU_ISA=%s is not a level this CPU supports (levels: %s); choosing "
                 "automatically\n",
                 forced, known.c_str());
  }
  for (const KernelTable* t : levels) {
    if (cpu_supports(t->isa)) return t;
  }
  return levels[sizeof(levels) / sizeof(levels[0]) - 1];
}

}  // namespace

const KernelTable& active_kernels() {
  static const KernelTable* table = choose();
  return *table;
}

std::string active_isa() { return active_kernels().isa; }

inline namespace TACO_CPU_NS {

#define TACO_CPU_FORWARD(name, ret, params, args) \
  ret name params { return active_kernels().name args; }
TACO_CPU_ENTRY_POINTS(TACO_CPU_FORWARD)
#undef TACO_CPU_FORWARD

}  // namespace TACO_CPU_NS

}  // namespace taco::cpu
