// Shared by the approximate search's kernels (csrc/approx_index.cpp, csrc/cpu/approx_cpu.cpp).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>

#include "match_controls.h"

namespace styleswap {

// The index and the search run in float32 (float64 for float64 inputs), like the CPU bank.
inline at::ScalarType approx_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// match_ivf's arguments, checked (see approx_index.cpp for the layout): content (N, C, H, W) and its
// styles as for match_patches, the bank's inv_norm (B, n_s), the IVF index of ivf_build over the reduced
// bank with its basis (B, C, dims), and the controls of match_bank (match_controls.h); all on the content's
// device. The kernels' first step.
struct IvfArgs {
  at::Tensor content;         // in the index's dtype, contiguous, refused if it holds NaN or Inf
  MatchControls controls;     // check_controls' (flattened, contiguous)
  at::Tensor cluster_labels;  // (B, K) int64, the label of each cluster's rows, when labels are on
};
IvfArgs checked_ivf_args(const char* op, const at::Tensor& content, at::TensorList styles, const at::Tensor& inv_norm,
                         const at::Tensor& basis, const at::Tensor& sorted, const at::Tensor& order,
                         const at::Tensor& offsets, const at::Tensor& centroids, int64_t k, int64_t s, int64_t probes,
                         int64_t candidates, int64_t refine, const std::optional<at::Tensor>& content_labels,
                         const std::optional<at::Tensor>& bank_labels, const std::optional<at::Tensor>& previous,
                         double temporal_weight);

// The styles as one table of pixels, for the exact scores of the rerank and the refinement: a style
// patch is then k runs of k*C contiguous values (no n_s x C k^2 bank needed).
struct StyleTable {
  at::Tensor pixels;                    // (B, P, C), compute dtype: each style's pixels (y, x), styles in bank order
  std::vector<int64_t> grids;           // per style: first bank row, grid_h, grid_w (flat)
  std::vector<int64_t> pixel0, width;   // per style: its first pixel in the table, its width Ws
  int64_t T = 0;
  int64_t style_of(int64_t m) const {   // the style that holds bank row m
    int64_t t = T - 1;
    while (t > 0 && grids[3 * t] > m) --t;
    return t;
  }
  // The refinement step's candidate: a content patch whose grid neighbour at offset (dy, dx) chose bank
  // row `m` is offered the style patch at the same offset back, (y - dy, x - dx) in m's style grid (the
  // coherence of PatchMatch), or `m` itself where that leaves the grid.
  int64_t shifted(int64_t m, int64_t dy, int64_t dx) const {
    const int64_t t = style_of(m), first = grids[3 * t], gh = grids[3 * t + 1], gw = grids[3 * t + 2];
    const int64_t y = (m - first) / gw - dy, x = (m - first) % gw - dx;
    return (y >= 0 && y < gh && x >= 0 && x < gw) ? first + y * gw + x : m;
  }
};
StyleTable style_table(at::TensorList styles, int64_t k, int64_t s, int64_t batch, at::ScalarType dtype);

// One content sample (C, H, W) as (Hp, Wp, C), replicate-padded to its covering grid's extent, so that
// the patch at grid (gy, gx) is k runs of k*C contiguous values from pixel (gy*s, gx*s).
at::Tensor padded_pixels(const at::Tensor& sample, int64_t k, int64_t s);

// Candidates each (content patch, probed cluster) keeps by the reduced score for the exact rerank (at
// 1024 px, 16 probes: 2 gave the PSNR of 8 within 0.25 dB at a fraction of the selection's cost; 1 gave
// 0.5-0.7 dB less).
constexpr int64_t SLOT = 2;

// The 8 grid neighbours (dy, dx) the refinement step looks at.
constexpr int64_t NEIGHBOURS = 8;
constexpr int64_t NEIGHBOUR_DY[NEIGHBOURS] = {-1, -1, -1, 0, 0, 1, 1, 1};
constexpr int64_t NEIGHBOUR_DX[NEIGHBOURS] = {-1, 0, 1, -1, 1, -1, 0, 1};

}  // namespace styleswap
