// CUDA match: for every content patch, the style patch of highest normalised cross-correlation,
// as one fused tensor-core GEMM whose only output is a row-wise argmax.
//
// The drivers of two ops (all on the current stream; ops_cuda.cpp checks the arguments, the
// NaN/Inf flags computed here included, and calls them; match_patches = prepare_bank then match_bank):
//   build_bank (prepare_bank): per bank (one, or one per sample when a style has batch N): im2col
//      of the style patches into B (Npad x Dpad, the input dtype, zero padded; Npad a multiple of
//      256, Dpad of 32) and inv_norm[j] = 1/(||p_j|| + 1e-8) computed in double from the unrounded
//      input (as the CPU does), stored in float. A bank is prepared once and reused for any number
//      of contents (the frames of a video).
//   match_bank: per sample:
//   1. Content patches, CHUNK_ROWS at a time: im2col into A (rows x Dpad, zero padded; replicate
//      padding of the covering grid by clamping), then the fused kernel (match_tile.cuh) over
//      (content tile x style tile) blocks: a 128x256 (or 128x128) tile of <a_i, b_j> on tensor
//      cores (WMMA, fp32 accumulate, 4-stage cp.async pipeline), then the epilogue: score = acc *
//      inv_norm[j], per row the (max, lowest j) of the tile, merged into a per-row packed 64-bit
//      key with atomicMax. The n_c x n_s score matrix never exists; extra memory is
//      (CHUNK_ROWS + n_s) * Dpad elements + 8 bytes per content patch.
//   2. The keys are unpacked in place into the int64 indices.
//
// Packed key: high 32 bits = the score mapped to an order-preserving uint32, low 32 bits =
// 0xFFFFFFFF - j. Max of keys = max score, ties to the lowest j; atomicMax is order-independent, so
// the result is deterministic. Scores are computed as (raw dot product) * inv_norm[j] by the same
// instruction sequence for every column, so identical style patches get bit-identical scores and
// exact ties resolve to the lowest index (like the CPU kernel and the reference). -0.0 is mapped
// to +0.0 before packing (the CPU compares with '>', where -0 == +0).
//
// Precision (compute mode):
//   float32, torch.backends.cuda.matmul.allow_tf32 (= float32_matmul_precision "high"/"medium"): TF32
//   float32, "highest": 3xTF32 (a = hi + lo; acc += lo*hi + hi*lo + hi*hi), float32-level accuracy
//   bfloat16 / float16: bf16 / fp16 tensor cores, fp32 accumulate
//   float64: no tensor-core path; chunked at::mm (cuBLAS DGEMM) + scale + argmax on the GPU, the
//            CPU kernel's algorithm (score buffer capped at 256 MiB).
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../patch_grid.h"
#include "cuda_common.cuh"
#include "match_tile.cuh"
#include "match_wgmma.h"
#include "ops_cuda.h"

namespace styleswap {
namespace {

using cuda_detail::blocks_for;
using cuda_detail::round_up;

constexpr double NORM_EPS = 1e-8;

using match_detail::BM;
using match_detail::BN_MAX;
using match_detail::D_MULTIPLE;
using match_detail::launch_match_tiles;
using match_detail::Mode;

constexpr int64_t CHUNK_ROWS = 16384;  // content patches materialised at a time (multiple of BM)
static_assert(CHUNK_ROWS % BM == 0, "chunk of whole tiles");

// Block tile width of the fused kernel: 256 (64x64 warp tiles, 1 block/SM) unless
// STYLESWAP_MATCH_TILE=128 (64x32 warp tiles, 2 blocks/SM). Read per call, so a benchmark can
// compare both in one process.
int match_tile_width() {
  const char* v = std::getenv("STYLESWAP_MATCH_TILE");
  if (v != nullptr && std::string(v) == "128") return 128;
  return 256;
}

// STYLESWAP_MATCH_KERNEL=wgmma|tma: try that experimental Hopper kernel (match_wgmma.cu) first;
// it falls back to the WMMA kernel where it cannot run. Read per call, like the tile width.
std::optional<match_detail::WgmmaKernel> wgmma_kernel() {
  const char* v = std::getenv("STYLESWAP_MATCH_KERNEL");
  if (v == nullptr) return std::nullopt;
  if (std::string(v) == "wgmma") return match_detail::WgmmaKernel::CpAsync;
  if (std::string(v) == "tma") return match_detail::WgmmaKernel::Tma;
  return std::nullopt;
}

// Launches of each match kernel since the process started (one per content chunk), for tests
// that must know which kernel ran: an experimental kernel falls back to WMMA quietly.
enum class Launched { Wmma, Wgmma, Tma, Float64, Cublas, CublasFused };
constexpr const char* LAUNCHED_NAMES[] = {"wmma", "wgmma", "tma", "float64", "cublas", "cublas_fused"};  // enum order
std::array<std::atomic<int64_t>, std::size(LAUNCHED_NAMES)> launch_counts{};
void count_launch(Launched k) { launch_counts[static_cast<int>(k)].fetch_add(1, std::memory_order_relaxed); }

// Unpacks keys in place: int64 index = 0xFFFFFFFF - low bits; key 0 (no finite score ever won:
// every score NaN) gives index 0, as the CPU kernel does.
__global__ void unpack_keys_kernel(int64_t* data, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const unsigned long long key = static_cast<unsigned long long>(data[i]);
  data[i] = key == 0ull ? 0 : static_cast<int64_t>(0xFFFFFFFFull - (key & 0xFFFFFFFFull));
}

// One warp per patch row: row r of dst holds patch (first + r) of the image's grid (grid_w
// positions per row, corners at multiples of s, coordinates clamped = replicate padding), laid
// out (c, dy, dx), zero padded to Dpad; rows r >= count are all zeros. With inv != nullptr also
// inv[r] = 1 / (||patch|| + 1e-8), the norm summed in double from the unrounded input.
template <typename scalar_t, typename inv_t>
__global__ void im2col_kernel(const scalar_t* __restrict__ src, int64_t C, int64_t H, int64_t W, int64_t k, int64_t s,
                              int64_t grid_w, int64_t first, int64_t count, int64_t total_rows, int64_t D, int64_t Dpad,
                              scalar_t* __restrict__ dst, inv_t* __restrict__ inv) {
  const int lane = threadIdx.x & 31;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + (threadIdx.x >> 5);
  if (r >= total_rows) return;  // warp-uniform
  scalar_t* out = dst + r * Dpad;
  double sq = 0.0;
  if (r < count) {
    const int64_t p = first + r;
    const int64_t y0 = (p / grid_w) * s, x0 = (p % grid_w) * s;
    const int64_t kk = k * k;
    for (int64_t d = lane; d < Dpad; d += 32) {
      scalar_t v = scalar_t(0);
      if (d < D) {
        const int64_t c = d / kk, rem = d - c * kk, dy = rem / k, dx = rem - dy * k;
        const int64_t y = min(y0 + dy, H - 1), x = min(x0 + dx, W - 1);
        v = src[(c * H + y) * W + x];
        double f;
        if constexpr (std::is_same_v<scalar_t, double>) {
          f = v;
        } else {
          f = static_cast<double>(static_cast<float>(v));  // exact: every float is a double
        }
        sq += f * f;
      }
      out[d] = v;
    }
  } else {
    for (int64_t d = lane; d < Dpad; d += 32) out[d] = scalar_t(0);
  }
  if (inv != nullptr) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) sq += __shfl_xor_sync(0xffffffffu, sq, off);
    if (lane == 0) inv[r] = r < count ? static_cast<inv_t>(1.0 / (sqrt(sq) + NORM_EPS)) : inv_t(0);
  }
}

template <typename scalar_t>
__global__ void nonfinite_kernel(const scalar_t* __restrict__ p, int64_t n, int* __restrict__ flag) {
  using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
  bool bad = false;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    bad |= !isfinite(static_cast<acc_t>(p[i]));
  }
  if (bad) *flag = 1;  // benign race: every writer writes 1
}

constexpr int IM2COL_THREADS = 256;  // 8 rows per block

template <typename scalar_t, typename inv_t>
void launch_im2col(const scalar_t* src, int64_t C, int64_t H, int64_t W, int64_t k, int64_t s, int64_t grid_w,
                   int64_t first, int64_t count, int64_t total_rows, int64_t D, int64_t Dpad, scalar_t* dst,
                   inv_t* inv, cudaStream_t stream) {
  if (total_rows <= 0) return;
  im2col_kernel<scalar_t, inv_t><<<blocks_for(total_rows, IM2COL_THREADS / 32), IM2COL_THREADS, 0, stream>>>(
      src, C, H, W, k, s, grid_w, first, count, total_rows, D, Dpad, dst, inv);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Style patches of sample n's bank into rows [e.first, e.first + count) of `patches`.
template <typename scalar_t, typename inv_t>
void fill_bank(const std::vector<at::Tensor>& styles, const StyleBank& bank, int64_t n, int64_t k, int64_t s,
                int64_t D, int64_t Dpad, at::Tensor patches, at::Tensor inv_norm, cudaStream_t stream) {
  for (size_t t = 0; t < styles.size(); ++t) {
    const auto& st = styles[t];
    const auto& e = bank.entries[t];
    const int64_t C = st.size(1), H = st.size(2), W = st.size(3);
    const int64_t count = inner_grid(H, k, s) * e.grid_w;
    const scalar_t* src = st.data_ptr<scalar_t>() + style_batch_entry(st, n) * C * H * W;
    launch_im2col<scalar_t, inv_t>(src, C, H, W, k, s, e.grid_w, 0, count, count, D, Dpad,
                                   patches.data_ptr<scalar_t>() + e.first * Dpad,
                                   inv_norm.data_ptr<inv_t>() + e.first, stream);
  }
}

// Tensor-core path (float32 / bfloat16 / float16): B = patches (1 | N, Npad, Dpad), inv_norm (1 | N, Npad).
template <typename scalar_t>
void match_tensor_core(const at::Tensor& content, const at::Tensor& patches, const at::Tensor& inv_norm, int64_t n_s,
                       int64_t k, int64_t s, Mode mode, at::Tensor& indices, cudaStream_t stream) {
  const int64_t N = content.size(0), C = content.size(1), H = content.size(2), W = content.size(3);
  const int64_t gw = covering_grid(W, k, s), n_c = covering_grid(H, k, s) * gw;
  const int64_t D = C * k * k, Dpad = patches.size(2);
  int tile_n = match_tile_width();
  // 128x256 tiles need ~130 KiB of shared memory per block: GPUs with a smaller opt-in limit
  // (sm_86/sm_89: 99 KiB) get the 128x128 tiles (80 KiB) instead of a launch error.
  if (tile_n == 256 && at::cuda::getCurrentDeviceProperties()->sharedMemPerBlockOptin <
                           static_cast<size_t>(match_detail::TileShape<256>::SMEM_BYTES)) {
    tile_n = 128;
  }
  const auto wgmma = wgmma_kernel();
  const int64_t chunk = std::min(CHUNK_ROWS, round_up(n_c, BM));

  at::Tensor A = at::empty({chunk, Dpad}, content.options());
  indices.zero_();  // packed keys start at 0 (below every real key)
  auto* keys = reinterpret_cast<unsigned long long*>(indices.data_ptr<int64_t>());

  for (int64_t n = 0; n < N; ++n) {
    const int64_t b = patches.size(0) == 1 ? 0 : n;
    const at::Tensor B = patches[b], inv = inv_norm[b];
    const scalar_t* src = content.data_ptr<scalar_t>() + n * C * H * W;
    for (int64_t r0 = 0; r0 < n_c; r0 += chunk) {
      const int64_t rows = std::min(chunk, n_c - r0);
      launch_im2col<scalar_t, float>(src, C, H, W, k, s, gw, r0, rows, round_up(rows, BM), D, Dpad,
                                     A.data_ptr<scalar_t>(), nullptr, stream);
      unsigned long long* kp = keys + n * n_c + r0;
      if (wgmma && match_detail::launch_match_wgmma(*wgmma, mode, A, B, inv, rows, n_s, kp, stream)) {
        count_launch(*wgmma == match_detail::WgmmaKernel::Tma ? Launched::Tma : Launched::Wgmma);
        continue;
      }
      count_launch(Launched::Wmma);
      switch (mode) {
        case Mode::BF16: launch_match_tiles<Mode::BF16>(A, B, inv, rows, n_s, kp, tile_n, stream); break;
        case Mode::FP16: launch_match_tiles<Mode::FP16>(A, B, inv, rows, n_s, kp, tile_n, stream); break;
        case Mode::TF32: launch_match_tiles<Mode::TF32>(A, B, inv, rows, n_s, kp, tile_n, stream); break;
        case Mode::TF32X3: launch_match_tiles<Mode::TF32X3>(A, B, inv, rows, n_s, kp, tile_n, stream); break;
      }
    }
  }
  const int64_t total = indices.numel();
  unpack_keys_kernel<<<blocks_for(total, 256), 256, 0, stream>>>(indices.data_ptr<int64_t>(), total);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// float64: the CPU kernel's algorithm on the GPU (cuBLAS DGEMM on chunks, scale, argmax).
void match_float64(const at::Tensor& content, const at::Tensor& patches, const at::Tensor& inv_norm, int64_t n_s,
                   int64_t k, int64_t s, at::Tensor& indices, cudaStream_t stream) {
  const int64_t N = content.size(0), C = content.size(1), H = content.size(2), W = content.size(3);
  const int64_t gw = covering_grid(W, k, s), n_c = covering_grid(H, k, s) * gw;
  const int64_t D = C * k * k;
  // <= 256 MiB of scores and of content patches (a small bank must not make the patch chunk huge)
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(n_c, (int64_t{1} << 25) / std::max(n_s, D)));
  at::Tensor A = at::empty({chunk, D}, content.options());
  at::Tensor flat = indices.view({N * n_c});
  for (int64_t n = 0; n < N; ++n) {
    const int64_t b = patches.size(0) == 1 ? 0 : n;
    const at::Tensor B = patches[b].narrow(0, 0, n_s).narrow(1, 0, D), inv = inv_norm[b].narrow(0, 0, n_s);
    const double* src = content.data_ptr<double>() + n * C * H * W;
    for (int64_t r0 = 0; r0 < n_c; r0 += chunk) {
      const int64_t rows = std::min(chunk, n_c - r0);
      launch_im2col<double, double>(src, C, H, W, k, s, gw, r0, rows, rows, D, D, A.data_ptr<double>(), nullptr,
                                    stream);
      at::Tensor scores = at::mm(A.narrow(0, 0, rows), B.t());
      scores.mul_(inv);
      flat.narrow(0, n * n_c + r0, rows).copy_(scores.argmax(1));  // first maximum = lowest index
      count_launch(Launched::Float64);
    }
  }
}

}  // namespace

namespace cuda_ops {

int64_t bank_rows(int64_t n_s, at::ScalarType t) { return t == at::kDouble ? n_s : round_up(n_s, BN_MAX); }
int64_t bank_row_length(int64_t D, at::ScalarType t) { return t == at::kDouble ? D : round_up(D, D_MULTIPLE); }

at::Tensor nonfinite_flags(const std::vector<at::Tensor>& tensors) {
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  at::Tensor flags = at::zeros({static_cast<int64_t>(tensors.size())}, tensors[0].options().dtype(at::kInt));
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    const int64_t n = t.numel();
    const unsigned int blocks = blocks_for(std::min<int64_t>(n, 1024 * 256), 256);  // grid-stride: <= 1024 blocks
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.scalar_type(), "styleswap_nonfinite_flags", [&] {
      nonfinite_kernel<scalar_t><<<blocks, 256, 0, stream>>>(t.data_ptr<scalar_t>(), n, flags.data_ptr<int>() + i);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return flags;
}

std::tuple<at::Tensor, at::Tensor> build_bank(const std::vector<at::Tensor>& styles, int64_t batch, int64_t k,
                                              int64_t s) {
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const StyleBank bank(styles, k, s);
  const auto dtype = styles[0].scalar_type();
  const int64_t D = styles[0].size(1) * k * k, Dpad = bank_row_length(D, dtype);
  const int64_t R = bank_rows(bank.num_patches, dtype);
  const auto inv_dtype = dtype == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor patches = at::zeros({batch, R, Dpad}, styles[0].options());  // padding stays zero
  at::Tensor inv_norm = at::zeros({batch, R}, styles[0].options().dtype(inv_dtype));
  for (int64_t b = 0; b < batch; ++b) {
    switch (dtype) {
      case at::kFloat: fill_bank<float, float>(styles, bank, b, k, s, D, Dpad, patches[b], inv_norm[b], stream); break;
      case at::kBFloat16:
        fill_bank<at::BFloat16, float>(styles, bank, b, k, s, D, Dpad, patches[b], inv_norm[b], stream);
        break;
      case at::kHalf: fill_bank<at::Half, float>(styles, bank, b, k, s, D, Dpad, patches[b], inv_norm[b], stream); break;
      case at::kDouble:
        fill_bank<double, double>(styles, bank, b, k, s, D, Dpad, patches[b], inv_norm[b], stream);
        break;
      default: TORCH_INTERNAL_ASSERT(false, "build_bank: dtype ", dtype, " was not rejected by ops_cuda.cpp");
    }
  }
  return {patches, inv_norm};
}

at::Tensor match_bank(const at::Tensor& content, const at::Tensor& patches, const at::Tensor& inv_norm, int64_t n_s,
                      int64_t k, int64_t s) {
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t N = content.size(0), H = content.size(2), W = content.size(3);
  at::Tensor indices =
      at::empty({N, covering_grid(H, k, s), covering_grid(W, k, s)}, content.options().dtype(at::kLong));
  switch (content.scalar_type()) {
    case at::kFloat: {
      // Follows torch.set_float32_matmul_precision / torch.backends.cuda.matmul.allow_tf32, like cuBLAS.
      const Mode mode = at::globalContext().allowTF32CuBLAS() ? Mode::TF32 : Mode::TF32X3;
      match_tensor_core<float>(content, patches, inv_norm, n_s, k, s, mode, indices, stream);
      break;
    }
    case at::kBFloat16:
      match_tensor_core<at::BFloat16>(content, patches, inv_norm, n_s, k, s, Mode::BF16, indices, stream);
      break;
    case at::kHalf:
      match_tensor_core<at::Half>(content, patches, inv_norm, n_s, k, s, Mode::FP16, indices, stream);
      break;
    case at::kDouble:
      match_float64(content, patches, inv_norm, n_s, k, s, indices, stream);
      break;
    default:
      TORCH_INTERNAL_ASSERT(false, "match_bank: dtype ", content.scalar_type(), " was not rejected by ops_cuda.cpp");
  }
  return indices;
}

void count_tiled_launches(bool fused, int64_t row_tiles) {
  launch_counts[static_cast<int>(fused ? Launched::CublasFused : Launched::Cublas)].fetch_add(
      row_tiles, std::memory_order_relaxed);
}

std::map<std::string, int64_t> match_kernel_launches() {
  std::map<std::string, int64_t> counts;
  for (size_t i = 0; i < launch_counts.size(); ++i) counts[LAUNCHED_NAMES[i]] = launch_counts[i].load();
  return counts;
}

}  // namespace cuda_ops
}  // namespace styleswap
