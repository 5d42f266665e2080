// Shared by the approximate search's kernels (csrc/approx_index.cpp, csrc/cpu/approx_cpu.cpp).
#pragma once

#include <ATen/ATen.h>

namespace styleswap {

// The index and the search run in float32 (float64 for float64 inputs), like the CPU bank.
inline at::ScalarType approx_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// match_ivf's arguments: content (N, C, H, W) and an IVF index of ivf_build (see approx_index.cpp) that fit
// together, on the content's device, probes >= 1.
void check_ivf_index(const char* op, const at::Tensor& content, const at::Tensor& sorted, const at::Tensor& sorted_inv,
                     const at::Tensor& order, const at::Tensor& offsets, const at::Tensor& centroids, int64_t k,
                     int64_t s, int64_t probes);

}  // namespace styleswap
