// TMA tensor maps (Hopper's bulk tensor copies) for the wgmma match kernel; host code, compiled by
// the host compiler (tensor_map.cpp), so that none of its failures is thrown through nvcc-compiled
// frames (benchmarks/CUDA_NOTES.md §6).
#pragma once

#include <ATen/ATen.h>
#include <cuda.h>

namespace styleswap {
namespace match_detail {

// Describes the row-major 2-D tensor `t` (rows x row length; float32, bfloat16 or float16, row
// stride and data pointer 16-byte aligned) for TMA loads of `box_rows` rows x 128 bytes, written
// to shared memory in the 128-byte-swizzled K-major layout that wgmma reads (8-row atoms of
// 1024 B, 16-byte chunk c of row r at chunk c ^ (r % 8)); elements past the row end are loaded as
// zeros. Returns false (with a warning, once) where the driver cannot encode it; nothing throws.
bool make_kmajor_tensor_map(const at::Tensor& t, int box_rows, CUtensorMap* out) noexcept;

}  // namespace match_detail
}  // namespace styleswap
