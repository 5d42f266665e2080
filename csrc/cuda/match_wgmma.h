// Experimental wgmma (Hopper) variants of the fused match kernel; see match_wgmma.cu.
#pragma once

#include <ATen/ATen.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace styleswap {
namespace match_detail {

enum class Mode;

// CpAsync: STYLESWAP_MATCH_KERNEL=wgmma; Tma: STYLESWAP_MATCH_KERNEL=tma (match_wgmma.cu).
enum class WgmmaKernel { CpAsync, Tma };

// Whether the wgmma kernels can run on `device` (asks the GPU once per device).
bool wgmma_available(int device);

// Runs the chosen wgmma kernel over A (content patches) x B (style patches) like
// launch_match_tiles and returns true; returns false (nothing launched) when it cannot: 3xTF32
// mode, a GPU other than compute capability 9.x, a build without the sm_90a target, or (Tma) a
// tensor map the driver cannot encode.
bool launch_match_wgmma(WgmmaKernel which, Mode mode, const at::Tensor& A, const at::Tensor& B,
                        const at::Tensor& inv_norm, int64_t rows, int64_t n_s, unsigned long long* keys,
                        cudaStream_t stream);

}  // namespace match_detail
}  // namespace styleswap
