// Helpers shared by the CUDA kernels of styleswap (match_cuda.cu, gather_cuda.cu).
#pragma once

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <cstdint>

#include "../patch_grid.h"

namespace styleswap {
namespace cuda_detail {

// Range [lo, hi] of grid positions whose patch covers coordinate y (i*s <= y < i*s + k,
// 0 <= i < grid). Same arithmetic as covering_range() in cpu/gather_cpu.cpp.
__host__ __device__ inline void covering_range(int64_t y, int64_t k, int64_t s, int64_t grid, int64_t& lo,
                                               int64_t& hi) {
  lo = y >= k ? (y - k) / s + 1 : 0;
  hi = y / s < grid - 1 ? y / s : grid - 1;
}

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Blocks of `threads` (or rows per block) for n items: at least 1; 0 where the grid would exceed
// 2^31 - 1 blocks, so that the launch itself fails with cudaErrorInvalidConfiguration and the caller's
// launch check reports it. Nothing is thrown here: this is host code compiled by nvcc, and an exception
// thrown through it once killed the process (benchmarks/CUDA_NOTES.md §6).
inline unsigned int blocks_for(int64_t n, int threads) {
  const int64_t b = (n + threads - 1) / threads;
  return b > INT32_MAX ? 0u : static_cast<unsigned int>(b < 1 ? 1 : b);
}

}  // namespace cuda_detail
}  // namespace styleswap
