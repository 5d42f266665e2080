// CUDA rebuild of the swapped features from the chosen style patches (swap_gather), and its
// transpose (swap_gather_backward). Both are deterministic: no float atomics anywhere.
//
// Forward: one thread per output element (n, c, y, x). It sums the <= k^2 chosen patches covering
// (y, x) in the CPU kernel's order (grid row i, then column j, ascending) in the op-math type
// (float for half/bfloat16/float, double for double) and divides by the overlap count: the same
// operations as cpu/gather_cpu.cpp, so float32/float64 results are bit-identical to the CPU.
//
// Backward: one thread per style element (b, c, sy, sx) *gathers* every contribution to it. The
// content positions are bucketed by chosen patch (key = n * n_s + j) with a stable sort, so a
// bucket lists its positions in ascending order; a thread walks the <= k^2 style patches covering
// its element (ascending), for each the samples that may use it (all samples for a shared style,
// sample b for a per-sample one), and for each the positions in the bucket. The order is fixed,
// so the result is deterministic; it is not the CPU's summation order, so it matches the CPU to
// rounding (not bit for bit). A style patch chosen by very many positions makes its threads
// long (work per thread = k^2 x uses): fine for real features, slow for degenerate inputs.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <cstdint>
#include <vector>

#include "../patch_grid.h"
#include "cuda_common.cuh"
#include "ops_cuda.h"

namespace styleswap {
namespace {

using cuda_detail::blocks_for;
using cuda_detail::covering_range;

constexpr int MAX_STYLES = cuda_ops::MAX_STYLES;  // styles per bank (kernel-argument table)
constexpr int STYLE_BITS = 5;                      // the source packs the style t in 5 bits
static_assert((1 << STYLE_BITS) >= MAX_STYLES, "style number must fit STYLE_BITS");
constexpr int THREADS = 256;

// Per-style geometry, passed by value and staged in shared memory.
template <typename T>
struct StyleTable {
  const T* ptr[MAX_STYLES];      // data of the style tensor (contiguous)
  int64_t first[MAX_STYLES];     // global index of its first patch in the bank
  int64_t grid_w[MAX_STYLES];    // inner-grid positions per row
  int64_t height[MAX_STYLES];
  int64_t width[MAX_STYLES];
  int64_t sample_stride[MAX_STYLES];  // C*H*W for a per-sample style, 0 for a shared one
  int num;
};

template <typename T>
StyleTable<T> make_table(const std::vector<at::Tensor>& styles, const StyleBank& bank) {
  TORCH_INTERNAL_ASSERT(styles.size() <= static_cast<size_t>(MAX_STYLES), "make_table: ", styles.size(),
                        " styles were not rejected by ops_cuda.cpp");
  StyleTable<T> tab{};
  tab.num = static_cast<int>(styles.size());
  for (size_t t = 0; t < styles.size(); ++t) {
    const auto& st = styles[t];
    tab.ptr[t] = st.data_ptr<T>();
    tab.first[t] = bank.entries[t].first;
    tab.grid_w[t] = bank.entries[t].grid_w;
    tab.height[t] = st.size(2);
    tab.width[t] = st.size(3);
    tab.sample_stride[t] = st.size(0) == 1 ? 0 : st.size(1) * st.size(2) * st.size(3);
  }
  return tab;
}

// For every content-grid position (n, p): (offset of the chosen patch's top-left corner in channel
// 0 of its style tensor, sample entry included) << STYLE_BITS | style. Indices are validated on
// the host before this runs.
template <typename T>
__global__ void resolve_kernel(const int64_t* __restrict__ idx, int64_t total, int64_t n_c, int64_t s,
                               const StyleTable<T> tab, int64_t* __restrict__ src) {
  const int64_t q = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (q >= total) return;
  const int64_t j = idx[q], n = q / n_c;
  int t = tab.num - 1;
  while (t > 0 && tab.first[t] > j) --t;
  const int64_t local = j - tab.first[t];
  const int64_t off = n * tab.sample_stride[t] + (local / tab.grid_w[t]) * s * tab.width[t] + (local % tab.grid_w[t]) * s;
  src[q] = (off << STYLE_BITS) | t;
}

template <typename T>
__global__ void gather_kernel(const int64_t* __restrict__ src, const StyleTable<T> tab, int64_t C, int64_t H,
                              int64_t W, int64_t gh, int64_t gw, int64_t k, int64_t s, int64_t total,
                              T* __restrict__ out) {
  using acc_t = at::opmath_type<T>;
  __shared__ const T* s_ptr[MAX_STYLES];
  __shared__ int64_t s_plane[MAX_STYLES], s_width[MAX_STYLES];
  if (static_cast<int>(threadIdx.x) < tab.num) {
    s_ptr[threadIdx.x] = tab.ptr[threadIdx.x];
    s_plane[threadIdx.x] = tab.height[threadIdx.x] * tab.width[threadIdx.x];
    s_width[threadIdx.x] = tab.width[threadIdx.x];
  }
  __syncthreads();
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= total) return;
  const int64_t x = e % W, y = (e / W) % H, c = (e / (W * H)) % C, n = e / (W * H * C);
  int64_t ilo, ihi, jlo, jhi;
  covering_range(y, k, s, gh, ilo, ihi);
  covering_range(x, k, s, gw, jlo, jhi);
  const int64_t* row_src = src + n * gh * gw;
  acc_t acc = 0;
  for (int64_t i = ilo; i <= ihi; ++i) {
    for (int64_t j = jlo; j <= jhi; ++j) {
      const int64_t packed = row_src[i * gw + j];
      const int t = static_cast<int>(packed & ((1 << STYLE_BITS) - 1));
      const int64_t off = packed >> STYLE_BITS;
      acc += static_cast<acc_t>(s_ptr[t][off + c * s_plane[t] + (y - i * s) * s_width[t] + (x - j * s)]);
    }
  }
  out[e] = static_cast<T>(acc / static_cast<acc_t>((ihi - ilo + 1) * (jhi - jlo + 1)));
}

// Gradient of one style tensor (style t of the bank): one thread per element (b, c, sy, sx).
template <typename T>
__global__ void scatter_gather_kernel(const T* __restrict__ grad, const int64_t* __restrict__ perm,
                                      const int64_t* __restrict__ offsets, int64_t N, int64_t C, int64_t H, int64_t W,
                                      int64_t gh, int64_t gw, int64_t k, int64_t s, int64_t n_s, int64_t first,
                                      int64_t sgh, int64_t sgw, int64_t SB, int64_t SH, int64_t SW,
                                      T* __restrict__ out) {
  using acc_t = at::opmath_type<T>;
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= SB * C * SH * SW) return;
  const int64_t sx = e % SW, sy = (e / SW) % SH, c = (e / (SW * SH)) % C, b = e / (SW * SH * C);
  const int64_t n_c = gh * gw;
  const int64_t n_lo = SB == 1 ? 0 : b, n_hi = SB == 1 ? N - 1 : b;
  int64_t pylo, pyhi, pxlo, pxhi;
  covering_range(sy, k, s, sgh, pylo, pyhi);
  covering_range(sx, k, s, sgw, pxlo, pxhi);
  acc_t acc = 0;
  for (int64_t py = pylo; py <= pyhi; ++py) {
    const int64_t dy = sy - py * s;
    for (int64_t px = pxlo; px <= pxhi; ++px) {
      const int64_t dx = sx - px * s;
      const int64_t pj = first + py * sgw + px;
      for (int64_t n = n_lo; n <= n_hi; ++n) {
        const int64_t bucket = n * n_s + pj;
        const int64_t q_end = offsets[bucket + 1];
        for (int64_t q = offsets[bucket]; q < q_end; ++q) {
          const int64_t p = perm[q] - n * n_c;  // position inside sample n's grid
          const int64_t y = (p / gw) * s + dy, x = (p % gw) * s + dx;
          if (y < H && x < W) {
            int64_t ylo, yhi, xlo, xhi;
            covering_range(y, k, s, gh, ylo, yhi);
            covering_range(x, k, s, gw, xlo, xhi);
            acc += static_cast<acc_t>(grad[((n * C + c) * H + y) * W + x]) /
                   static_cast<acc_t>((yhi - ylo + 1) * (xhi - xlo + 1));
          }
        }
      }
    }
  }
  out[e] = static_cast<T>(acc);
}

}  // namespace

namespace cuda_ops {

at::Tensor swap_gather(const at::Tensor& indices, const std::vector<at::Tensor>& styles, int64_t k, int64_t s,
                       int64_t H, int64_t W) {
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const StyleBank bank(styles, k, s);
  const int64_t N = indices.size(0), C = styles[0].size(1), gh = indices.size(1), gw = indices.size(2);
  at::Tensor out = at::empty({N, C, H, W}, styles[0].options());
  at::Tensor src = at::empty({N * gh * gw}, indices.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "swap_gather_cuda", [&] {
    const auto tab = make_table<scalar_t>(styles, bank);
    const int64_t positions = src.numel();
    resolve_kernel<scalar_t><<<blocks_for(positions, THREADS), THREADS, 0, stream>>>(
        indices.data_ptr<int64_t>(), positions, gh * gw, s, tab, src.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const int64_t total = out.numel();
    gather_kernel<scalar_t><<<blocks_for(total, THREADS), THREADS, 0, stream>>>(
        src.data_ptr<int64_t>(), tab, C, H, W, gh, gw, k, s, total, out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::vector<at::Tensor> swap_gather_backward(const at::Tensor& grad, const at::Tensor& indices,
                                             const std::vector<at::Tensor>& styles, int64_t k, int64_t s) {
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const StyleBank bank(styles, k, s);
  const int64_t n_s = bank.num_patches;
  const int64_t N = grad.size(0), C = grad.size(1), H = grad.size(2), W = grad.size(3);
  const int64_t gh = indices.size(1), gw = indices.size(2);
  // Buckets: key = n * n_s + j; the stable sort keeps positions ascending inside a bucket.
  const at::Tensor keys =
      (indices + at::arange(N, indices.options()).mul_(n_s).view({N, 1, 1})).view({N * gh * gw});
  const auto sorted = at::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  const at::Tensor& perm = std::get<1>(sorted);
  const at::Tensor offsets = at::searchsorted(std::get<0>(sorted), at::arange(N * n_s + 1, indices.options()));

  std::vector<at::Tensor> grads;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "swap_gather_backward_cuda", [&] {
    for (size_t t = 0; t < styles.size(); ++t) {
      const auto& st = styles[t];
      at::Tensor g = at::empty(st.sizes(), st.options());
      const int64_t SB = st.size(0), SH = st.size(2), SW = st.size(3);
      scatter_gather_kernel<scalar_t><<<blocks_for(g.numel(), THREADS), THREADS, 0, stream>>>(
          grad.data_ptr<scalar_t>(), perm.data_ptr<int64_t>(), offsets.data_ptr<int64_t>(), N, C, H, W, gh, gw, k, s,
          n_s, bank.entries[t].first, inner_grid(SH, k, s), bank.entries[t].grid_w, SB, SH, SW,
          g.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      grads.push_back(g);
    }
  });
  return grads;
}

}  // namespace cuda_ops
}  // namespace styleswap
