// Experimental wgmma (Hopper) variant of the fused match kernel; see match_wgmma.cu.
#pragma once

#include <ATen/ATen.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace styleswap {
namespace match_detail {

enum class Mode;

// Runs the wgmma kernel over A (content patches) x B (style patches) like launch_match_tiles and
// returns true; returns false (nothing launched) when it cannot: 3xTF32 mode, a GPU other than
// compute capability 9.x, or a build without the sm_90a target.
// Whether the kernel can run on `device` (asks the GPU once per device).
bool wgmma_available(int device);

bool launch_match_wgmma(Mode mode, const at::Tensor& A, const at::Tensor& B, const at::Tensor& inv_norm, int64_t rows,
                        int64_t n_s, unsigned long long* keys, cudaStream_t stream);

}  // namespace match_detail
}  // namespace styleswap
