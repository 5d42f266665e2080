// The fused reduce of the tiled match driver (csrc/match_tiled.h) on CUDA, STYLESWAP_MATCH_KERNEL=
// cublas_fused: one kernel per float32 score tile (written by cuBLAS) that reads it ONCE, scales each
// column by its inverse norm and folds the tile into a running per-row packed 64-bit key, replacing
// the ATen reduce's passes (scale, NaN -> -inf, max, merge). Only the kernels and their launchers
// are here; the reducer object that owns the keys is host-compiled (FusedReducer, ops_cuda.cpp).
//
// One warp per content row: lanes walk the row's columns in ascending order (float4 loads where the
// tile's row stride and pointers allow), keep (max, lowest column) with a strict '>' (NaN and -inf
// never win), merge by a butterfly that prefers the lower column on equal scores, and lane 0 updates
// the row's key = (order-preserving score bits << 32) | (0xFFFFFFFF - j) if larger. A row belongs to
// one warp and the tiles are folded in stream order, so no atomics are needed and the result is
// deterministic. Same key as the WMMA kernel (match_cuda.cu): -0 is mapped to +0 first, key 0 (no
// score ever won) unpacks to index 0, the CPU kernel's result for such a row.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_common.cuh"
#include "match_tile.cuh"
#include "ops_cuda.h"

namespace styleswap {
namespace {

using cuda_detail::blocks_for;
using match_detail::pack_key;
using match_detail::warp_argmax;

constexpr int REDUCE_THREADS = 256;  // 8 warps = 8 rows per block

__device__ __forceinline__ void consider(float sc, int64_t j, float& best, int64_t& bj) {
  if (sc == 0.0f) sc = 0.0f;  // -0 -> +0: equal under '>' (the CPU), but not as key bits
  if (sc > best) {            // ascending j and strict '>': the lowest j of equal scores
    best = sc;
    bj = j;
  }
}

// scores: rows x nt, row stride ld (floats); inv: nt inverse norms; j0: global index of column 0.
template <bool VEC>
__global__ void fold_scores_kernel(const float* __restrict__ scores, int64_t ld, int64_t rows, int64_t nt,
                                   const float* __restrict__ inv, int64_t j0, unsigned long long* __restrict__ keys) {
  const int lane = threadIdx.x & 31;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + (threadIdx.x >> 5);
  if (r >= rows) return;  // warp-uniform
  const float* row = scores + r * ld;
  float best = -INFINITY;
  int64_t bj = INT64_MAX;
  if constexpr (VEC) {
    for (int64_t j = 4 * lane; j < nt; j += 128) {
      if (j + 4 <= nt) {
        const float4 v = *reinterpret_cast<const float4*>(row + j);
        const float4 w = __ldg(reinterpret_cast<const float4*>(inv + j));
        consider(v.x * w.x, j, best, bj);
        consider(v.y * w.y, j + 1, best, bj);
        consider(v.z * w.z, j + 2, best, bj);
        consider(v.w * w.w, j + 3, best, bj);
      } else {
        for (int64_t q = j; q < nt; ++q) consider(row[q] * inv[q], q, best, bj);
      }
    }
  } else {
    for (int64_t j = lane; j < nt; j += 32) consider(row[j] * inv[j], j, best, bj);
  }
  warp_argmax(best, bj);
  if (lane == 0 && bj != INT64_MAX) {
    const unsigned long long key = pack_key(best, j0 + bj);
    if (key > keys[r]) keys[r] = key;
  }
}

__global__ void keys_to_indices_kernel(const unsigned long long* __restrict__ keys, int64_t n,
                                       int64_t* __restrict__ out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const unsigned long long key = keys[i];
  out[i] = key == 0ull ? 0 : static_cast<int64_t>(0xFFFFFFFFull - (key & 0xFFFFFFFFull));
}

}  // namespace

namespace cuda_ops {

// No ATen call and no throw here (host code compiled by nvcc; benchmarks/CUDA_NOTES.md §6): the
// launch's error code goes back to FusedReducer in ops_cuda.cpp, which raises it. A grid too large
// for one launch is a zero-block launch (blocks_for), i.e. cudaErrorInvalidConfiguration.
cudaError_t fold_score_tile(const float* scores, int64_t ld, int64_t rows, int64_t nt, const float* inv, int64_t j0,
                            int64_t* keys, cudaStream_t stream) {
  if (rows <= 0 || nt <= 0) return cudaSuccess;
  auto* kp = reinterpret_cast<unsigned long long*>(keys);
  const unsigned int blocks = blocks_for(rows, REDUCE_THREADS / 32);
  const bool vec = ld % 4 == 0 && reinterpret_cast<uintptr_t>(scores) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(inv) % 16 == 0;
  if (vec) {
    fold_scores_kernel<true><<<blocks, REDUCE_THREADS, 0, stream>>>(scores, ld, rows, nt, inv, j0, kp);
  } else {
    fold_scores_kernel<false><<<blocks, REDUCE_THREADS, 0, stream>>>(scores, ld, rows, nt, inv, j0, kp);
  }
  return cudaGetLastError();
}

cudaError_t keys_to_indices(const int64_t* keys, int64_t n, int64_t* out, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  keys_to_indices_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(reinterpret_cast<const unsigned long long*>(keys), n,
                                                                  out);
  return cudaGetLastError();
}

}  // namespace cuda_ops
}  // namespace styleswap
