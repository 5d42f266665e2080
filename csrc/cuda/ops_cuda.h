// The CUDA drivers behind the ops (match_cuda.cu, gather_cuda.cu), called by the entry points in
// ops_cuda.cpp once every argument and input check has passed. They launch kernels on the current
// stream of the current device and do not validate what they are given.
#pragma once

#include <ATen/ATen.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace styleswap {
namespace cuda_ops {

// Style tensors per bank that swap_gather / swap_gather_backward take (their kernel-argument table).
constexpr int MAX_STYLES = 32;

// The CUDA bank layout: float32/bf16/fp16 banks padded for the tile kernel (rows to a multiple of
// the widest style tile, row length to the tensor-core k step; zeros), float64 banks unpadded.
int64_t bank_rows(int64_t n_s, at::ScalarType dtype);
int64_t bank_row_length(int64_t D, at::ScalarType dtype);

// One int32 flag per tensor, on the tensors' device: nonzero where that tensor holds a NaN or an
// Inf. No host sync: the caller reads the flags.
at::Tensor nonfinite_flags(const std::vector<at::Tensor>& tensors);

// The bank (patches (B, R, Dp), inv_norm (B, R) = 1 / (||patch|| + 1e-8), unweighted) of contiguous,
// finite styles of one supported dtype; B = batch (1 = shared).
std::tuple<at::Tensor, at::Tensor> build_bank(const std::vector<at::Tensor>& styles, int64_t batch, int64_t k,
                                              int64_t s);

// Indices (N, H', W') of the best bank row for every patch of a contiguous, finite content.
at::Tensor match_bank(const at::Tensor& content, const at::Tensor& patches, const at::Tensor& inv_norm, int64_t n_s,
                      int64_t k, int64_t s);

// Launches of each match kernel so far in this process, by name ("wmma", "wgmma", "tma", "float64",
// "cublas", "cublas_fused": the last two count row tiles of the tiled driver).
std::map<std::string, int64_t> match_kernel_launches();
void count_tiled_launches(bool fused, int64_t row_tiles);

// The tiled driver's fused reduce (match_reduce.cu), on `stream`: folds a float32 score tile (rows x
// nt, row stride ld; inv = nt inverse norms of columns j0..) into `rows` packed keys (zeroed before
// the first tile), read once; then keys_to_indices unpacks n keys (key 0 -> index 0). They throw
// nothing: the launch's error code is returned for the caller (ops_cuda.cpp) to raise.
cudaError_t fold_score_tile(const float* scores, int64_t ld, int64_t rows, int64_t nt, const float* inv, int64_t j0,
                            int64_t* keys, cudaStream_t stream);
cudaError_t keys_to_indices(const int64_t* keys, int64_t n, int64_t* out, cudaStream_t stream);

// swap_gather / swap_gather_backward on contiguous styles (<= MAX_STYLES) and contiguous indices
// that are all in [0, n_s).
at::Tensor swap_gather(const at::Tensor& indices, const std::vector<at::Tensor>& styles, int64_t k, int64_t s,
                       int64_t H, int64_t W);
std::vector<at::Tensor> swap_gather_backward(const at::Tensor& grad, const at::Tensor& indices,
                                             const std::vector<at::Tensor>& styles, int64_t k, int64_t s);

}  // namespace cuda_ops
}  // namespace styleswap
