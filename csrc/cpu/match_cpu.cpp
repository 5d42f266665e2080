// CPU match: for every content patch, the style patch with the highest normalised
// cross-correlation, as a fused memory-tiled loop over the materialised patch bank. At stride 1
// match_patches goes to match_styles_cpu.cpp instead (the same match from the style maps, 1/k^2 of
// the multiply-adds); PatchBank does the same (styleswap_ext/ops/patch_bank.py).
//
// The style patches of the bank are materialised once per bank (n_s x D, D = C*k*k) with
// their inverse norms (prepare_bank; a caller that matches many contents against one style, e.g. the
// frames of a video, prepares it once and calls match_bank). Threads take tiles of tile_m content patches: each builds its tile's
// patch rows, multiplies them by tile_n style patches at a time with BLAS into a score buffer
// that stays in cache (a few MiB: L2/L3), scales by 1/||style patch|| and folds the tile into a running
// (max, argmax) per row. No n_c x n_s buffer ever exists.
//
// Scores are <c_i, s_j> * (1 / (||s_j|| + 1e-8)): the dot product is taken on the raw patches
// and scaled afterwards, so identical style patches get bit-identical scores and exact ties
// resolve to the lowest index (tiles are visited in ascending order, updates need '>').
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <tuple>
#include <vector>

#include "../match_controls.h"
#include "../patch_grid.h"
#include "match_styles.h"

namespace styleswap {
namespace {

constexpr double NORM_EPS = 1e-8;

// Tile shape: content patches per task (at most) x style patches per BLAS call. Measured on the
// 2-core dev machine (BENCHMARKS.md): 256 x 1024 (a 1 MiB fp32 score tile, L2-sized) beat
// 512 x 2048 by ~25% and 384 x 768 by ~15% at 128 x 128 maps. STYLESWAP_CPU_TILE="M,N" overrides.
struct TileShape {
  int64_t m = 256, n = 1024;
  TileShape() {
    if (const char* env = std::getenv("STYLESWAP_CPU_TILE")) {
      long long m_ = 0, n_ = 0;
      if (std::sscanf(env, "%lld,%lld", &m_, &n_) == 2 && m_ > 0 && n_ > 0) m = m_, n = n_;
    }
  }
};
const TileShape& tile_shape() {
  static const TileShape shape;
  return shape;
}

// Copies patch (py, px) of a (C, H, W) plane stack into row[C*k*k], ordered (c, dy, dx).
// Coordinates past the border are clamped (replicate padding of the content grid).
template <typename scalar_t>
inline void copy_patch(const scalar_t* src, int64_t C, int64_t H, int64_t W, int64_t y0, int64_t x0, int64_t k,
                       scalar_t* row) {
  for (int64_t c = 0; c < C; ++c) {
    const scalar_t* plane = src + c * H * W;
    for (int64_t dy = 0; dy < k; ++dy) {
      const scalar_t* line = plane + std::min(y0 + dy, H - 1) * W;
      if (x0 + k <= W) {
        for (int64_t dx = 0; dx < k; ++dx) *row++ = line[x0 + dx];
      } else {
        for (int64_t dx = 0; dx < k; ++dx) *row++ = line[std::min(x0 + dx, W - 1)];
      }
    }
  }
}

// Fills bank (n_s x D) with sample n's style patches and inv_norm (n_s) with 1/(||patch|| + eps).
template <typename scalar_t>
void build_bank(at::TensorList styles, const StyleBank& bank, int64_t n, int64_t k, int64_t s, at::Tensor& patches,
                at::Tensor& inv_norm) {  // patches (n_s, D) and inv_norm (n_s), contiguous
  const int64_t D = patches.size(1);
  scalar_t* out = patches.data_ptr<scalar_t>();
  scalar_t* inv = inv_norm.data_ptr<scalar_t>();
  for (size_t t = 0; t < styles.size(); ++t) {
    const auto& st = styles[t];
    const auto& e = bank.entries[t];
    const int64_t C = st.size(1), H = st.size(2), W = st.size(3);
    const scalar_t* src = st.data_ptr<scalar_t>() + style_batch_entry(st, n) * C * H * W;
    const int64_t count = inner_grid(H, k, s) * e.grid_w;
    at::parallel_for(0, count, 64, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        scalar_t* row = out + (e.first + p) * D;
        copy_patch(src, C, H, W, (p / e.grid_w) * s, (p % e.grid_w) * s, k, row);
        double sq = 0;
        for (int64_t d = 0; d < D; ++d) sq += double(row[d]) * double(row[d]);
        inv[e.first + p] = scalar_t(1.0 / (std::sqrt(sq) + NORM_EPS));
      }
    });
  }
}

// The controls of one sample (match_controls.h): per-patch labels and preferred rows of its covering
// grid (null = none), the bank rows' labels.
struct SampleControls {
  const int64_t* content_labels = nullptr;
  const int64_t* bank_labels = nullptr;
  const int64_t* previous = nullptr;
  double temporal_weight = 0;
};

template <typename scalar_t>
void match_sample(const scalar_t* content, int64_t C, int64_t H, int64_t W, int64_t k, int64_t s,
                  const at::Tensor& patches, const at::Tensor& inv_norm, int64_t* indices_out,
                  const SampleControls& ctl = {}) {
  const int64_t grid_h = covering_grid(H, k, s), grid_w = covering_grid(W, k, s);
  const int64_t n_c = grid_h * grid_w, n_s = patches.size(0), D = patches.size(1);
  const scalar_t* inv = inv_norm.data_ptr<scalar_t>();
  // Equal tiles, a multiple of the thread count of them, so that no thread idles on a short tail.
  const int64_t threads = at::get_num_threads();
  const int64_t n_tiles = ((n_c + tile_shape().m - 1) / tile_shape().m + threads - 1) / threads * threads;
  const int64_t tile_m = (n_c + n_tiles - 1) / n_tiles, tile_n = tile_shape().n;

  at::parallel_for(0, n_tiles, 1, [&](int64_t tile_begin, int64_t tile_end) {
    // Per-task buffers: one content tile, one score tile, the running best per row.
    at::Tensor tile = at::empty({tile_m, D}, patches.options());
    at::Tensor score_buf = at::empty({tile_m * std::min(tile_n, n_s)}, patches.options());  // in cache
    std::vector<scalar_t> best(tile_m), bonus(ctl.previous ? tile_m : 0);
    std::vector<int64_t> arg(tile_m);
    constexpr scalar_t NEG_INF = -std::numeric_limits<scalar_t>::infinity();

    for (int64_t tile_i = tile_begin; tile_i < tile_end; ++tile_i) {
      const int64_t p0 = tile_i * tile_m, m = std::min(tile_m, n_c - p0);
      if (m <= 0) continue;
      scalar_t* rows = tile.data_ptr<scalar_t>();
      for (int64_t r = 0; r < m; ++r) {
        const int64_t p = p0 + r;
        copy_patch(content, C, H, W, (p / grid_w) * s, (p % grid_w) * s, k, rows + r * D);
      }
      std::fill(best.begin(), best.end(), NEG_INF);
      std::fill(arg.begin(), arg.end(), 0);
      const at::Tensor content_rows = tile.narrow(0, 0, m);
      for (int64_t r = 0; r < static_cast<int64_t>(bonus.size()) && r < m; ++r) {  // temporal_weight * ||c_i||
        double sq = 0;
        for (int64_t d = 0; d < D; ++d) sq += double(rows[r * D + d]) * double(rows[r * D + d]);
        bonus[r] = scalar_t(ctl.temporal_weight * std::sqrt(sq));
      }

      for (int64_t j0 = 0; j0 < n_s; j0 += tile_n) {
        const int64_t nt = std::min(tile_n, n_s - j0);
        at::Tensor scores = score_buf.narrow(0, 0, m * nt).view({m, nt});
        at::mm_out(scores, content_rows, patches.narrow(0, j0, nt).t());
        const scalar_t* sc = scores.data_ptr<scalar_t>();
        const scalar_t* iv = inv + j0;
        const int64_t* lab = ctl.bank_labels ? ctl.bank_labels + j0 : nullptr;
        for (int64_t r = 0; r < m; ++r) {
          const scalar_t* row = sc + r * nt;
          // Vectorisable max first; the (rarer) index search only when the row improves.
          scalar_t row_max = NEG_INF;
          if (lab == nullptr) {
#pragma omp simd reduction(max : row_max)
            for (int64_t j = 0; j < nt; ++j) row_max = std::max(row_max, row[j] * iv[j]);
            if (row_max > best[r]) {
              int64_t j = 0;
              while (row[j] * iv[j] != row_max) ++j;
              best[r] = row_max;
              arg[r] = j0 + j;
            }
          } else {  // rows of another label score -inf (never win: the first tile's -inf keeps index 0)
            const int64_t a = ctl.content_labels[p0 + r];
#pragma omp simd reduction(max : row_max)
            for (int64_t j = 0; j < nt; ++j) row_max = std::max(row_max, lab[j] == a ? row[j] * iv[j] : NEG_INF);
            if (row_max > best[r]) {
              int64_t j = 0;
              while (lab[j] != a || row[j] * iv[j] != row_max) ++j;
              best[r] = row_max;
              arg[r] = j0 + j;
            }
          }
          if (!bonus.empty()) {
            // The preferred row's score with its bonus: the running (max, lowest index) of the modified
            // scores takes it if it is larger, or equal at a lower index.
            const int64_t q = ctl.previous[p0 + r] - j0;
            if (q >= 0 && q < nt && (lab == nullptr || lab[q] == ctl.content_labels[p0 + r])) {
              const scalar_t v = row[q] * iv[q] + bonus[r];
              if (v > best[r] || (v == best[r] && j0 + q < arg[r])) {
                best[r] = v;
                arg[r] = j0 + q;
              }
            }
          }
        }
      }
      std::copy(arg.begin(), arg.begin() + m, indices_out + p0);
    }
  });
}

// Reduced precision has no fast CPU GEMM here: banks and matching are float32 for float32/bf16/fp16
// inputs, float64 for float64.
at::ScalarType compute_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

void check_finite(const at::Tensor& t, const char* what, int64_t index = -1) {
  if (index < 0) {
    TORCH_CHECK_VALUE(at::isfinite(t).all().item<bool>(), what, " contains NaN or Inf");
  } else {
    TORCH_CHECK_VALUE(at::isfinite(t).all().item<bool>(), what, "[", index, "] contains NaN or Inf");
  }
}

// The bank of every sample b < B (B = 1 when every style is shared): patches (B, n_s, D) in the
// compute dtype, inv_norm (B, n_s) = weight / (||patch|| + 1e-8). No padding on the CPU.
std::tuple<at::Tensor, at::Tensor> prepare_bank_cpu(at::TensorList styles_in, int64_t k, int64_t s,
                                                    std::optional<at::ArrayRef<double>> weights) {
  const int64_t B = check_prepare_args(styles_in, k, s, weights);
  const auto dtype = compute_dtype(styles_in[0].scalar_type());
  std::vector<at::Tensor> styles;
  for (size_t t = 0; t < styles_in.size(); ++t) {
    styles.push_back(styles_in[t].to(dtype).contiguous());
    check_finite(styles.back(), "prepare_bank: styles", static_cast<int64_t>(t));
  }
  const StyleBank bank(styles, k, s);
  const int64_t D = styles[0].size(1) * k * k;
  at::Tensor patches = at::empty({B, bank.num_patches, D}, styles[0].options());
  at::Tensor inv_norm = at::empty({B, bank.num_patches}, styles[0].options());
  AT_DISPATCH_FLOATING_TYPES(dtype, "prepare_bank_cpu", [&] {
    for (int64_t b = 0; b < B; ++b) {
      at::Tensor p = patches[b], iv = inv_norm[b];
      build_bank<scalar_t>(styles, bank, b, k, s, p, iv);
    }
  });
  apply_bank_weights(inv_norm, bank, weights);
  return {patches, inv_norm};
}

at::Tensor match_bank_cpu(const at::Tensor& content_in, const at::Tensor& patches, const at::Tensor& inv_norm,
                          int64_t n_s, int64_t k, int64_t s, const std::optional<at::Tensor>& content_labels,
                          const std::optional<at::Tensor>& bank_labels, const std::optional<at::Tensor>& previous,
                          double temporal_weight) {
  const auto dtype = compute_dtype(content_in.scalar_type());
  check_match_bank_args(content_in, patches, inv_norm, n_s, k, s, dtype);
  const at::Tensor content = content_in.to(dtype).contiguous();
  check_finite(content, "match_patches: content");
  const int64_t N = content.size(0), C = content.size(1), H = content.size(2), W = content.size(3);
  const int64_t D = C * k * k;
  at::Tensor indices = at::empty({N, covering_grid(H, k, s), covering_grid(W, k, s)}, content.options().dtype(at::kLong));
  const MatchControls ctl = check_controls("match_bank", content, n_s, indices.size(1), indices.size(2),
                                           content_labels, bank_labels, previous, temporal_weight);
  const int64_t n_c = indices.size(1) * indices.size(2);
  AT_DISPATCH_FLOATING_TYPES(dtype, "match_bank_cpu", [&] {
    for (int64_t n = 0; n < N; ++n) {
      const int64_t b = patches.size(0) == 1 ? 0 : n;
      // Rows past n_s and columns past D are padding (a bank prepared elsewhere may carry some).
      const at::Tensor p = patches[b].narrow(0, 0, n_s).narrow(1, 0, D);
      const at::Tensor iv = inv_norm[b].narrow(0, 0, n_s).contiguous();
      SampleControls sc;
      if (ctl.labels()) {
        sc.content_labels = ctl.content_labels.data_ptr<int64_t>() + n * n_c;
        sc.bank_labels = ctl.bank_labels.data_ptr<int64_t>();
      }
      if (ctl.temporal()) {
        sc.previous = ctl.previous.data_ptr<int64_t>() + n * n_c;
        sc.temporal_weight = ctl.temporal_weight;
      }
      match_sample<scalar_t>(content.data_ptr<scalar_t>() + n * C * H * W, C, H, W, k, s, p, iv,
                             indices.data_ptr<int64_t>() + n * n_c, sc);
    }
  });
  return indices;
}

at::Tensor match_patches_cpu(const at::Tensor& content, at::TensorList styles, int64_t k, int64_t s) {
  check_swap_args("match_patches", content, /*is_indices=*/false, styles, k, s);
  std::vector<at::Tensor> detached(styles.begin(), styles.end());
  for (auto& st : detached) st = st.detach();
  if (s == 1) {
    // From the style maps (match_styles_cpu.cpp), inv_norm from the pixel norms as
    // styleswap_ext.ops.swap.bank_inv_norm computes it. Styles with NaN, Inf or pixel norms that overflow
    // take the bank below, which names the problem.
    std::vector<at::Tensor> norms;
    bool finite = true;
    for (const auto& st : detached) {
      norms.push_back(at::linalg_vector_norm(st.to(compute_dtype(st.scalar_type())), 2, {1}, /*keepdim=*/true));
      finite = finite && at::isfinite(norms.back()).all().item<bool>();
    }
    if (finite)
      return match_styles_cpu(content.detach(), detached, std::get<1>(prepare_bank_cpu(norms, k, s, std::nullopt)),
                              k, s, std::nullopt, std::nullopt, std::nullopt, 0.0);
  }
  const auto [patches, inv_norm] = prepare_bank_cpu(detached, k, s, std::nullopt);
  return match_bank_cpu(content.detach(), patches, inv_norm, StyleBank(styles, k, s).num_patches, k, s, std::nullopt,
                        std::nullopt, std::nullopt, 0.0);
}

}  // namespace

TORCH_LIBRARY_IMPL(styleswap, CPU, m) {
  m.impl("prepare_bank", &prepare_bank_cpu);
  m.impl("match_bank", &match_bank_cpu);
  m.impl("match_patches", &match_patches_cpu);
}

}  // namespace styleswap
