// CPU exact match read from the style maps (stride 1): patch scores as sums of shifted pixel scores.
//
// The score of content patch p against style patch j is <c_p, s_j> over the C*k*k values of the two
// patches, which is the sum over the k*k offsets d of the pixel dot products <x(p + d), y(j + d)> (C
// values each). So the exact match needs only G = the dot products of content pixels with style pixels,
// a GEMM over C (k = 3: 1/9 of the multiply-adds of the patch GEMM of match_cpu.cpp), each entry of
// which is then read by the k*k patch pairs it belongs to. Nothing is approximated: the same products,
// summed in another order (k*k partial sums of C products each, added in a fixed order).
//
// Tiles (no n_c x n_s buffer, as in match_cpu.cpp): threads take content tiles of R x Wt patches, whose
// (R + k - 1) x (Wt + k - 1) pixels are packed as X (C x P). Per style, per chunk of style patch columns,
// the style's pixel rows go through a ring of k - 1 + g rows: g rows at a time, G rows = Y (g*cols x C)
// x X (one GEMM), and once the k pixel rows of a style patch row are in the ring, every patch of that row
// gets its scores for the whole tile (k*k shifted reads of the ring, summed) folded into the tile's
// running (max, lowest index). The content halo of a tile (its k - 1 extra pixel rows and columns) is
// the only work done twice: ~10-15 % at the default tile of ~4,096 pixels.
//
// Scores are (sum_d G) * inv_norm[j] with the bank's inv_norm (weight / (||s_j|| + 1e-8)), as in
// match_cpu.cpp: identical style patches get bit-identical scores (the same products in the same order)
// and ties go to the lowest index (an explicit (score, index) order: tiles are not visited in index order).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

#include "../match_controls.h"
#include "../patch_grid.h"
#include "isa.h"
#include "match_styles.h"

namespace styleswap {
namespace {

// Content tile of about `pixels` pixels, style chunks of `cols` patch columns, GEMMs of at least
// `gemm_rows` style pixels. Measured on the 2-core dev machine (BENCHMARKS.md, "Exact match from the
// style maps"). STYLESWAP_CPU_MAPS_TILE="PIXELS,COLS,GEMM_ROWS" overrides.
struct MapsTiles {
  int64_t pixels = 4096, cols = 64, gemm_rows = 512;
  MapsTiles() {
    if (const char* env = std::getenv("STYLESWAP_CPU_MAPS_TILE")) {
      long long p = 0, c = 0, g = 0;
      if (std::sscanf(env, "%lld,%lld,%lld", &p, &c, &g) == 3 && p > 0 && c > 0 && g > 0) pixels = p, cols = c, gemm_rows = g;
    }
  }
};
const MapsTiles& maps_tiles() {
  static const MapsTiles t;
  return t;
}

// The controls of one content tile, gathered per patch (null = off).
template <typename scalar_t>
struct TileControls {
  const int64_t* labels = nullptr;       // the tile's patches' labels
  const int64_t* bank_labels = nullptr;  // per bank row
  const int64_t* previous = nullptr;     // the tile's patches' preferred bank rows
  const scalar_t* bonus = nullptr;       // temporal_weight * ||c_p||
};

// acc[x] = sum over the kk streams src[i][x], left to right (the same order for every k and ISA copy).
template <typename scalar_t>
STYLESWAP_ALWAYS_INLINE void shifted_sum(const scalar_t* const* src, int64_t kk, int64_t n, scalar_t* acc) {
  if (kk == 9) {  // k = 3, the paper's patch: one pass
    const scalar_t *s0 = src[0], *s1 = src[1], *s2 = src[2], *s3 = src[3], *s4 = src[4], *s5 = src[5],
                   *s6 = src[6], *s7 = src[7], *s8 = src[8];
#pragma omp simd
    for (int64_t x = 0; x < n; ++x)
      acc[x] = ((((((((s0[x] + s1[x]) + s2[x]) + s3[x]) + s4[x]) + s5[x]) + s6[x]) + s7[x]) + s8[x]);
    return;
  }
  std::copy(src[0], src[0] + n, acc);
  for (int64_t i = 1; i < kk; ++i) {
    const scalar_t* s = src[i];
#pragma omp simd
    for (int64_t x = 0; x < n; ++x) acc[x] += s[x];
  }
}

// Folds style patch j's scores acc[x] * iv of n content patches into their running (best, arg):
// the larger score wins, an equal one at a lower index. Branch-free, vectorised.
template <typename scalar_t, bool LABELS, bool TEMPORAL>
STYLESWAP_ALWAYS_INLINE void fold_scores(const scalar_t* acc, int64_t n, scalar_t iv, int64_t j, int64_t label_j,
                                         const int64_t* labels, const int64_t* previous, const scalar_t* bonus,
                                         scalar_t* best, int64_t* arg) {
#pragma omp simd
  for (int64_t x = 0; x < n; ++x) {
    scalar_t v = acc[x] * iv;
    if (TEMPORAL) v = previous[x] == j ? v + bonus[x] : v;
    bool take = v > best[x] || (v == best[x] && j < arg[x]);
    if (LABELS) take = take && labels[x] == label_j;
    best[x] = take ? v : best[x];
    arg[x] = take ? j : arg[x];
  }
}

template <typename scalar_t, bool LABELS, bool TEMPORAL>
STYLESWAP_ALWAYS_INLINE void score_row_body(std::integral_constant<bool, LABELS>, std::integral_constant<bool, TEMPORAL>,
                                            const scalar_t* const* src, int64_t kk, int64_t n, scalar_t* acc,
                                            scalar_t iv, int64_t j, int64_t label_j, const int64_t* labels,
                                            const int64_t* previous, const scalar_t* bonus, scalar_t* best,
                                            int64_t* arg) {
  shifted_sum(src, kk, n, acc);
  fold_scores<scalar_t, LABELS, TEMPORAL>(acc, n, iv, j, label_j, labels, previous, bonus, best, arg);
}
STYLESWAP_ISA_CLONES(score_row, score_row_body)

// One content tile (patches [ty, ty + R) x [tx, tx + Wt) of the grid) against every style patch.
template <typename scalar_t>
class TileMatcher {
 public:
  TileMatcher(int64_t C, int64_t k, int64_t max_rows, int64_t max_cols, const at::TensorOptions& opts)
      : C_(C), k_(k) {
    const MapsTiles& t = maps_tiles();
    const int64_t P = (max_rows + k - 1) * (max_cols + k - 1);
    X_ = at::empty({C * P}, opts);  // viewed as (C, P) of each tile's P
    const int64_t cols = t.cols + k - 1;
    g_ = std::max<int64_t>(1, (t.gemm_rows + cols - 1) / cols);
    ring_rows_ = k - 1 + std::max(g_, k);
    A_ = at::empty({std::max(g_, k) * cols, C}, opts);
    ring_ = at::empty({ring_rows_ * cols * P}, opts);
    best_.resize(max_rows * max_cols);
    arg_.resize(max_rows * max_cols);
    acc_.resize(max_cols);
    src_.resize(k * k);
  }

  // content: (C, H, W) contiguous; styles: per style, (Hs * Ws, C) channel-last pixels of this sample;
  // inv: the sample's inv_norm; out: the sample's indices (grid_h x grid_w).
  void run(const scalar_t* content, int64_t H, int64_t W, int64_t ty, int64_t tx, int64_t R, int64_t Wt,
           const std::vector<at::Tensor>& styles, const StyleBank& bank, const scalar_t* inv, bool labels,
           bool temporal, const TileControls<scalar_t>& ctl, int64_t* out) {
    const int64_t k = k_, pr = R + k - 1, pc = Wt + k - 1, P = pr * pc, gw = W - k + 1;
    pack_content(content, H, W, ty, tx, pr, pc);
    std::fill(best_.begin(), best_.begin() + R * Wt, -std::numeric_limits<scalar_t>::infinity());
    std::fill(arg_.begin(), arg_.begin() + R * Wt, 0);
    const at::Tensor X = X_.narrow(0, 0, C_ * P).view({C_, P});
    for (size_t t = 0; t < styles.size(); ++t) {
      const auto& e = bank.entries[t];
      const int64_t Hs = e.height, Ws = e.width, gh_s = Hs - k + 1, gw_s = Ws - k + 1;
      const scalar_t* Y = styles[t].data_ptr<scalar_t>();
      for (int64_t u0 = 0; u0 < gw_s; u0 += maps_tiles().cols) {
        const int64_t wu = std::min(maps_tiles().cols, gw_s - u0), cols = wu + k - 1;
        int64_t base = 0, have = 0;  // the ring holds style pixel rows [base, base + have)
        for (int64_t v = 0; v < gh_s; ++v) {
          if (v + k > base + have) {  // bring in rows up to v + k - 1 (and a few more), keep the last k - 1
            const int64_t keep = std::max<int64_t>(0, base + have - v);
            scalar_t* ring = ring_.data_ptr<scalar_t>();
            if (keep > 0) std::memmove(ring, ring + (v - base) * cols * P, keep * cols * P * sizeof(scalar_t));
            base = v;
            have = keep;
            const int64_t cnt = std::min(std::max(g_, k - keep), Hs - base - have);
            scalar_t* a = A_.data_ptr<scalar_t>();
            for (int64_t i = 0; i < cnt; ++i)
              std::memcpy(a + i * cols * C_, Y + ((base + have + i) * Ws + u0) * C_, cols * C_ * sizeof(scalar_t));
            at::Tensor g_out = ring_.narrow(0, have * cols * P, cnt * cols * P).view({cnt * cols, P});
            at::mm_out(g_out, A_.narrow(0, 0, cnt * cols), X);
            have += cnt;
          }
          const scalar_t* ring = ring_.data_ptr<scalar_t>();
          for (int64_t uu = 0; uu < wu; ++uu) {
            const int64_t j = e.first + v * gw_s + u0 + uu;
            const int64_t label_j = labels ? ctl.bank_labels[j] : 0;
            for (int64_t yy = 0; yy < R; ++yy) {
              // style pixel (v + dy, u + dx) x content pixel (yy + dy, x + dx) of the tile, x = 0..Wt-1
              for (int64_t dy = 0; dy < k; ++dy)
                for (int64_t dx = 0; dx < k; ++dx)
                  src_[dy * k + dx] = ring + ((v + dy - base) * cols + uu + dx) * P + (yy + dy) * pc + dx;
              const int64_t r = yy * Wt;
              score(labels, temporal, j, label_j, inv[j], Wt, ctl, r);
            }
          }
        }
      }
    }
    for (int64_t yy = 0; yy < R; ++yy)
      std::copy(arg_.begin() + yy * Wt, arg_.begin() + (yy + 1) * Wt, out + (ty + yy) * gw + tx);
  }

 private:
  void score(bool labels, bool temporal, int64_t j, int64_t label_j, scalar_t iv, int64_t n,
             const TileControls<scalar_t>& c, int64_t r) {
    const scalar_t* const* src = src_.data();
    const int64_t kk = k_ * k_;
    const int64_t* lab = labels ? c.labels + r : nullptr;
    const int64_t* prev = temporal ? c.previous + r : nullptr;
    const scalar_t* bonus = temporal ? c.bonus + r : nullptr;
    scalar_t* best = best_.data() + r;
    int64_t* arg = arg_.data() + r;
    using T = std::true_type;
    using F = std::false_type;
    if (labels && temporal)
      score_row(T{}, T{}, src, kk, n, acc_.data(), iv, j, label_j, lab, prev, bonus, best, arg);
    else if (labels)
      score_row(T{}, F{}, src, kk, n, acc_.data(), iv, j, label_j, lab, prev, bonus, best, arg);
    else if (temporal)
      score_row(F{}, T{}, src, kk, n, acc_.data(), iv, j, label_j, lab, prev, bonus, best, arg);
    else
      score_row(F{}, F{}, src, kk, n, acc_.data(), iv, j, label_j, lab, prev, bonus, best, arg);
  }

  // The tile's pixels [ty, ty + pr) x [tx, tx + pc) as X (C x pr*pc), row-major per channel.
  void pack_content(const scalar_t* content, int64_t H, int64_t W, int64_t ty, int64_t tx, int64_t pr, int64_t pc) {
    scalar_t* x = X_.data_ptr<scalar_t>();
    const int64_t P = pr * pc;
    for (int64_t c = 0; c < C_; ++c)
      for (int64_t y = 0; y < pr; ++y)
        std::memcpy(x + c * P + y * pc, content + (c * H + ty + y) * W + tx, pc * sizeof(scalar_t));
  }

  int64_t C_, k_, g_, ring_rows_;
  at::Tensor X_, A_, ring_;
  std::vector<scalar_t> best_, acc_;
  std::vector<int64_t> arg_;
  std::vector<const scalar_t*> src_;
};

// The content tiles of a grid_h x grid_w grid: (rows, cols) per tile, of about maps_tiles().pixels pixels.
// Full grid rows where that gives 8 patch rows or more (long inner loops: 64-column tiles measured
// 1.4x slower at 128-wide maps), else the columns split evenly into the fewest tiles of >= 8 rows (the
// k - 1 halo rows are work done twice: full rows of a 1024-wide map would be 2 rows high and double
// the GEMM); then at least 2 tiles per thread.
std::pair<int64_t, int64_t> tile_shape(int64_t grid_h, int64_t grid_w, int64_t k) {
  constexpr int64_t MIN_ROWS = 8;
  const int64_t pixels = maps_tiles().pixels, threads = at::get_num_threads();
  const int64_t widest = std::max<int64_t>(1, pixels / (MIN_ROWS + k - 1) - (k - 1));  // columns at MIN_ROWS rows
  const int64_t nx = (grid_w + widest - 1) / widest;
  const int64_t cols = (grid_w + nx - 1) / nx;
  int64_t rows = std::max<int64_t>(1, pixels / (cols + k - 1) - (k - 1));
  const int64_t want_ny = (2 * threads + nx - 1) / nx;  // rows of tiles for 2 tiles per thread
  rows = std::max<int64_t>(1, std::min(rows, (grid_h + want_ny - 1) / want_ny));
  return {rows, cols};
}

}  // namespace

at::Tensor match_styles_cpu(const at::Tensor& content_in, at::TensorList styles_in, const at::Tensor& inv_norm_in,
                            int64_t k, int64_t s, const std::optional<at::Tensor>& content_labels,
                            const std::optional<at::Tensor>& bank_labels, const std::optional<at::Tensor>& previous,
                            double temporal_weight) {
  check_swap_args("match_styles", content_in, /*is_indices=*/false, styles_in, k, s);
  TORCH_CHECK_VALUE(s == 1, "match_styles: stride must be 1 (other strides: prepare_bank + match_bank), got ", s);
  const auto dtype = content_in.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t N = content_in.size(0), C = content_in.size(1), H = content_in.size(2), W = content_in.size(3);
  const StyleBank bank(styles_in, k, s);
  const int64_t n_s = bank.num_patches;
  TORCH_CHECK_VALUE(inv_norm_in.dim() == 2 && (inv_norm_in.size(0) == 1 || inv_norm_in.size(0) == N) &&
                        inv_norm_in.size(1) >= n_s,
                    "match_styles: inv_norm must be (1 | N, >= ", n_s, ") for these styles, got ", inv_norm_in.sizes());
  TORCH_CHECK_TYPE(inv_norm_in.scalar_type() == dtype, "match_styles: a ", content_in.scalar_type(),
                   " content needs a ", dtype, " inv_norm, got ", inv_norm_in.scalar_type());
  TORCH_CHECK_VALUE(inv_norm_in.device() == content_in.device(), "match_styles: inv_norm is on ",
                    inv_norm_in.device(), ", content on ", content_in.device());
  const at::Tensor content = content_in.to(dtype).contiguous();
  TORCH_CHECK_VALUE(at::isfinite(content).all().item<bool>(), "match_patches: content contains NaN or Inf");
  std::vector<at::Tensor> styles;
  for (size_t t = 0; t < styles_in.size(); ++t) {
    styles.push_back(styles_in[t].detach().to(dtype));
    TORCH_CHECK_VALUE(at::isfinite(styles.back()).all().item<bool>(), "match_styles: styles[", t,
                      "] contains NaN or Inf");
  }
  const int64_t grid_h = H - k + 1, grid_w = W - k + 1, n_c = grid_h * grid_w;
  at::Tensor indices = at::empty({N, grid_h, grid_w}, content.options().dtype(at::kLong));
  const MatchControls ctl = check_controls("match_styles", content, n_s, grid_h, grid_w, content_labels, bank_labels,
                                           previous, temporal_weight);
  const auto [R, Wt] = tile_shape(grid_h, grid_w, k);
  const int64_t ny = (grid_h + R - 1) / R, nx = (grid_w + Wt - 1) / Wt;

  AT_DISPATCH_FLOATING_TYPES(dtype, "match_styles_cpu", [&] {
    at::Tensor bonus_all;
    if (ctl.temporal()) {  // temporal_weight * ||c_p|| per content patch: the window sums of pixel norms^2
      const at::Tensor sq = content.to(at::kDouble).square().sum(1, /*keepdim=*/true);
      bonus_all = at::avg_pool2d(sq, {k, k}, {1, 1}, {0, 0}, false, true, /*divisor_override=*/1)  // window sums
                      .sqrt_().mul_(ctl.temporal_weight).to(dtype).contiguous();
    }
    for (int64_t n = 0; n < N; ++n) {
      std::vector<at::Tensor> pixels;  // this sample's styles as (Hs * Ws, C) channel-last
      for (const auto& st : styles)
        pixels.push_back(st[style_batch_entry(st, n)].permute({1, 2, 0}).contiguous().view({-1, C}));
      const at::Tensor inv_t = inv_norm_in[inv_norm_in.size(0) == 1 ? 0 : n].narrow(0, 0, n_s).contiguous();
      const scalar_t* inv = inv_t.data_ptr<scalar_t>();
      const scalar_t* src = content.data_ptr<scalar_t>() + n * C * H * W;
      int64_t* out = indices.data_ptr<int64_t>() + n * n_c;
      at::parallel_for(0, ny * nx, 1, [&](int64_t t0, int64_t t1) {
        TileMatcher<scalar_t> matcher(C, k, R, Wt, content.options());
        std::vector<int64_t> labels(ctl.labels() ? R * Wt : 0), prev(ctl.temporal() ? R * Wt : 0);
        std::vector<scalar_t> bonus(ctl.temporal() ? R * Wt : 0);
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t ty = (t / nx) * R, tx = (t % nx) * Wt;
          const int64_t rows = std::min(R, grid_h - ty), cols = std::min(Wt, grid_w - tx);
          TileControls<scalar_t> tc;
          for (int64_t yy = 0; yy < rows; ++yy) {
            const int64_t p = n * n_c + (ty + yy) * grid_w + tx;
            if (ctl.labels())
              std::copy_n(ctl.content_labels.data_ptr<int64_t>() + p, cols, labels.begin() + yy * cols);
            if (ctl.temporal()) {
              std::copy_n(ctl.previous.data_ptr<int64_t>() + p, cols, prev.begin() + yy * cols);
              std::copy_n(bonus_all.data_ptr<scalar_t>() + p, cols, bonus.begin() + yy * cols);
            }
          }
          if (ctl.labels()) {
            tc.labels = labels.data();
            tc.bank_labels = ctl.bank_labels.data_ptr<int64_t>();
          }
          if (ctl.temporal()) {
            tc.previous = prev.data();
            tc.bonus = bonus.data();
          }
          matcher.run(src, H, W, ty, tx, rows, cols, pixels, bank, inv, ctl.labels(), ctl.temporal(), tc, out);
        }
      });
    }
  });
  return indices;
}

TORCH_LIBRARY_IMPL(styleswap, CPU, m) { m.impl("match_styles", &match_styles_cpu); }

}  // namespace styleswap
