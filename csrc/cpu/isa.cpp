// The ISA switch of csrc/cpu/isa.h: STYLESWAP_CPU_ISA, checked against what this CPU supports.
#include "isa.h"

#include <c10/util/Exception.h>

#include <cstdlib>
#include <string>

namespace styleswap {

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::avx512:
      return "avx512";
    case CpuIsa::avx2:
      return "avx2";
    default:
      return "baseline";
  }
}

namespace {

bool cpu_supports(CpuIsa isa) {
#if STYLESWAP_X86_CLONES
  __builtin_cpu_init();
  switch (isa) {
    case CpuIsa::avx512:
      return __builtin_cpu_supports("avx512f");
    case CpuIsa::avx2:
      return __builtin_cpu_supports("avx2");
    default:
      return true;
  }
#else
  return isa == CpuIsa::baseline;
#endif
}

}  // namespace

CpuIsa detect_cpu_isa() {
  const char* env = std::getenv("STYLESWAP_CPU_ISA");
  if (env == nullptr || *env == '\0') {
    for (CpuIsa isa : {CpuIsa::avx512, CpuIsa::avx2})
      if (cpu_supports(isa)) return isa;
    return CpuIsa::baseline;
  }
  const std::string want(env);
  for (CpuIsa isa : {CpuIsa::avx512, CpuIsa::avx2, CpuIsa::baseline}) {
    if (want != cpu_isa_name(isa)) continue;
    if (!cpu_supports(isa)) {
      std::string runs;
      for (CpuIsa other : {CpuIsa::avx512, CpuIsa::avx2, CpuIsa::baseline})
        if (cpu_supports(other)) runs += std::string(runs.empty() ? "" : ", ") + cpu_isa_name(other);
      TORCH_CHECK_VALUE(false, "STYLESWAP_CPU_ISA=", want, ": this CPU does not support it (it runs ", runs, ")");
    }
    return isa;
  }
  TORCH_CHECK_VALUE(false, "STYLESWAP_CPU_ISA must be one of avx512, avx2, baseline (got '", want, "')");
  return CpuIsa::baseline;  // not reached
}

}  // namespace styleswap
