// Per-ISA copies of the CPU hot loops and the one switch that picks among them.
//
// The extension is built for the baseline x86-64; a hot loop written once (an always-inline function
// template) is compiled again for AVX-512 and AVX2 by STYLESWAP_ISA_CLONES, and every call goes to the
// copy cpu_isa() names: the best this CPU runs, or the one STYLESWAP_CPU_ISA=avx512|avx2|baseline asks
// for (read once per process). That variable is what lets CI run an AVX2 machine's path (or the
// baseline) on an AVX-512 machine, as MKL_ENABLE_INSTRUCTIONS and ATEN_CPU_CAPABILITY do for MKL and
// ATen; GCC's target_clones, used before, picks by CPU alone and cannot be overridden. One process
// always runs one copy, so results stay deterministic there.
#pragma once

#include <cstdint>

namespace styleswap {

enum class CpuIsa : int { baseline = 0, avx2 = 1, avx512 = 2 };

const char* cpu_isa_name(CpuIsa isa);

// STYLESWAP_CPU_ISA if set (an error naming the variable if the value is unknown or this CPU cannot
// run it), else the best ISA this CPU supports. csrc/cpu/isa.cpp.
CpuIsa detect_cpu_isa();

inline CpuIsa cpu_isa() {
  static const CpuIsa isa = detect_cpu_isa();  // an error is thrown again on the next call
  return isa;
}

}  // namespace styleswap

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define STYLESWAP_X86_CLONES 1
#define STYLESWAP_TARGET_AVX512 __attribute__((target("avx512f")))
#define STYLESWAP_TARGET_AVX2 __attribute__((target("avx2")))
#define STYLESWAP_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define STYLESWAP_X86_CLONES 0
#define STYLESWAP_ALWAYS_INLINE inline
#endif

// STYLESWAP_ISA_CLONES(name, body): `name(args...)` calls `body(args...)` compiled for the ISA that
// cpu_isa() picks. `body` must be STYLESWAP_ALWAYS_INLINE, so that each copy inlines it and is
// vectorised for its own target (an always-inline baseline function may be inlined into a function
// of a larger ISA, not the other way round).
#if STYLESWAP_X86_CLONES
#define STYLESWAP_ISA_CLONES(name, body)                                                         \
  template <typename... Args>                                                                    \
  STYLESWAP_TARGET_AVX512 auto name##_avx512(Args... args) {                                     \
    return body(args...);                                                                        \
  }                                                                                              \
  template <typename... Args>                                                                    \
  STYLESWAP_TARGET_AVX2 auto name##_avx2(Args... args) {                                         \
    return body(args...);                                                                        \
  }                                                                                              \
  template <typename... Args>                                                                    \
  auto name##_baseline(Args... args) {                                                           \
    return body(args...);                                                                        \
  }                                                                                              \
  template <typename... Args>                                                                    \
  inline auto name(Args... args) {                                                               \
    switch (::styleswap::cpu_isa()) {                                                            \
      case ::styleswap::CpuIsa::avx512:                                                          \
        return name##_avx512(args...);                                                           \
      case ::styleswap::CpuIsa::avx2:                                                            \
        return name##_avx2(args...);                                                             \
      default:                                                                                   \
        return name##_baseline(args...);                                                         \
    }                                                                                            \
  }
#else
#define STYLESWAP_ISA_CLONES(name, body) \
  template <typename... Args>            \
  inline auto name(Args... args) {       \
    return body(args...);                \
  }
#endif
