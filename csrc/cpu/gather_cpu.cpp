// CPU rebuild of the swapped features from the chosen style patches, and its transpose.
//
// Forward (gather): out[n,c,y,x] = mean over the content-grid positions (i,j) whose patch covers
// (y,x) of style[c, sy(i,j) + y - i*s, sx(i,j) + x - j*s], where (sy,sx) is the top-left corner
// of the style patch chosen at (i,j). Each output element is written once: no atomics, and the
// summation order is fixed (i then j ascending), so results are deterministic.
//
// Backward (scatter-add): the transpose of that linear map. Threads own whole channels, so
// every gradient element is accumulated by one thread in a fixed order: deterministic too.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../patch_grid.h"

namespace styleswap {
namespace {

// Where the chosen patch of each content-grid position of one sample lives.
struct Source {
  int64_t style;   // index into the styles list
  int64_t offset;  // offset of the patch's top-left corner inside one channel plane
};

std::vector<Source> resolve_sources(const int64_t* idx, int64_t count, const StyleBank& bank, int64_t s) {
  std::vector<Source> src(count);
  for (int64_t p = 0; p < count; ++p) {
    const int64_t j = idx[p];
    TORCH_CHECK_INDEX(j >= 0 && j < bank.num_patches, "swap_gather: index ", j, " out of range [0, ",
                      bank.num_patches, ")");
    const int64_t t = bank.style_of(j);
    const auto& e = bank.entries[t];
    const int64_t local = j - e.first;
    src[p] = {t, (local / e.grid_w) * s * e.width + (local % e.grid_w) * s};
  }
  return src;
}

// Range of grid positions whose patch covers coordinate y: i*s <= y < i*s + k, 0 <= i < grid.
inline void covering_range(int64_t y, int64_t k, int64_t s, int64_t grid, int64_t& lo, int64_t& hi) {
  lo = y >= k ? (y - k) / s + 1 : 0;
  hi = std::min(y / s, grid - 1);
}

std::vector<int64_t> coverage(int64_t n, int64_t k, int64_t s, int64_t grid) {
  std::vector<int64_t> cnt(n);
  for (int64_t y = 0; y < n; ++y) {
    int64_t lo, hi;
    covering_range(y, k, s, grid, lo, hi);
    cnt[y] = hi - lo + 1;
  }
  return cnt;
}

template <typename scalar_t>
void gather_kernel(const at::Tensor& indices, const std::vector<at::Tensor>& styles, const StyleBank& bank, int64_t k,
                   int64_t s, at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = out.size(0), C = out.size(1), H = out.size(2), W = out.size(3);
  const int64_t gh = indices.size(1), gw = indices.size(2);
  const auto cy = coverage(H, k, s, gh), cx = coverage(W, k, s, gw);
  for (int64_t n = 0; n < N; ++n) {
    const auto src = resolve_sources(indices.data_ptr<int64_t>() + n * gh * gw, gh * gw, bank, s);
    std::vector<const scalar_t*> base(styles.size());
    std::vector<int64_t> plane(styles.size()), width(styles.size());
    for (size_t t = 0; t < styles.size(); ++t) {
      const auto& st = styles[t];
      plane[t] = st.size(2) * st.size(3);
      width[t] = st.size(3);
      base[t] = st.data_ptr<scalar_t>() + style_batch_entry(st, n) * C * plane[t];
    }
    scalar_t* o = out.data_ptr<scalar_t>() + n * C * H * W;
    at::parallel_for(0, C, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        for (int64_t y = 0; y < H; ++y) {
          int64_t ilo, ihi;
          covering_range(y, k, s, gh, ilo, ihi);
          for (int64_t x = 0; x < W; ++x) {
            int64_t jlo, jhi;
            covering_range(x, k, s, gw, jlo, jhi);
            acc_t acc = 0;
            for (int64_t i = ilo; i <= ihi; ++i) {
              for (int64_t j = jlo; j <= jhi; ++j) {
                const Source& sr = src[i * gw + j];
                acc += acc_t(base[sr.style][c * plane[sr.style] + sr.offset + (y - i * s) * width[sr.style] +
                                            (x - j * s)]);
              }
            }
            o[(c * H + y) * W + x] = scalar_t(acc / acc_t(cy[y] * cx[x]));
          }
        }
      }
    });
  }
}

template <typename scalar_t>
std::vector<at::Tensor> scatter_kernel(const at::Tensor& grad, const at::Tensor& indices, at::TensorList styles,
                                       const StyleBank& bank, int64_t k, int64_t s) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = grad.size(0), C = grad.size(1), H = grad.size(2), W = grad.size(3);
  const int64_t gh = indices.size(1), gw = indices.size(2);
  const auto cy = coverage(H, k, s, gh), cx = coverage(W, k, s, gw);
  // Accumulate in the op-math type (float for half/bfloat16), convert at the end.
  std::vector<at::Tensor> acc;
  for (const auto& st : styles) acc.push_back(at::zeros(st.sizes(), st.options().dtype(c10::CppTypeToScalarType<acc_t>::value)));
  for (int64_t n = 0; n < N; ++n) {
    const auto src = resolve_sources(indices.data_ptr<int64_t>() + n * gh * gw, gh * gw, bank, s);
    std::vector<acc_t*> base(acc.size());
    std::vector<int64_t> plane(acc.size()), width(acc.size());
    for (size_t t = 0; t < acc.size(); ++t) {
      plane[t] = acc[t].size(2) * acc[t].size(3);
      width[t] = acc[t].size(3);
      base[t] = acc[t].data_ptr<acc_t>() + style_batch_entry(acc[t], n) * C * plane[t];
    }
    const scalar_t* g = grad.data_ptr<scalar_t>() + n * C * H * W;
    at::parallel_for(0, C, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        for (int64_t i = 0; i < gh; ++i) {
          for (int64_t j = 0; j < gw; ++j) {
            const Source& sr = src[i * gw + j];
            acc_t* dst = base[sr.style] + c * plane[sr.style] + sr.offset;
            for (int64_t dy = 0; dy < k && i * s + dy < H; ++dy) {
              const int64_t y = i * s + dy;
              for (int64_t dx = 0; dx < k && j * s + dx < W; ++dx) {
                const int64_t x = j * s + dx;
                dst[dy * width[sr.style] + dx] += acc_t(g[(c * H + y) * W + x]) / acc_t(cy[y] * cx[x]);
              }
            }
          }
        }
      }
    });
  }
  std::vector<at::Tensor> grads;
  for (const auto& a : acc) grads.push_back(a.to(grad.scalar_type()));
  return grads;
}

std::vector<at::Tensor> contiguous_all(at::TensorList ts) {
  std::vector<at::Tensor> out;
  for (const auto& t : ts) out.push_back(t.contiguous());
  return out;
}

at::Tensor swap_gather_cpu(const at::Tensor& indices_in, at::TensorList styles_in, int64_t k, int64_t s, int64_t H,
                           int64_t W) {
  check_gather_args(indices_in, styles_in, k, s, H, W);
  const auto styles = contiguous_all(styles_in);
  const at::Tensor indices = indices_in.contiguous();
  const StyleBank bank(styles, k, s);
  at::Tensor out = at::empty({indices.size(0), styles[0].size(1), H, W}, styles[0].options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "swap_gather_cpu",
                                  [&] { gather_kernel<scalar_t>(indices, styles, bank, k, s, out); });
  return out;
}

std::vector<at::Tensor> swap_gather_backward_cpu(const at::Tensor& grad_in, const at::Tensor& indices_in,
                                                 at::TensorList styles, int64_t k, int64_t s) {
  check_gather_backward_args(grad_in, indices_in, styles, k, s);
  const at::Tensor grad = grad_in.to(styles[0].scalar_type()).contiguous();
  const at::Tensor indices = indices_in.contiguous();
  const StyleBank bank(styles, k, s);
  std::vector<at::Tensor> grads;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "swap_gather_backward_cpu",
                                  [&] { grads = scatter_kernel<scalar_t>(grad, indices, styles, bank, k, s); });
  return grads;
}

}  // namespace

TORCH_LIBRARY_IMPL(styleswap, CPU, m) {
  m.impl("swap_gather", &swap_gather_cpu);
  m.impl("swap_gather_backward", &swap_gather_backward_cpu);
}

}  // namespace styleswap
