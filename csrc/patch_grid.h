// Geometry shared by every backend: the patch grids and the style patch bank.
//
// A k x k patch grid with stride s over a side of length n has grid_size(n) positions.
// When (n - k) is not a multiple of s the last patch would stop short of the border; the
// content grid therefore takes one more position and reads past the border by repeating
// the last row/column (replicate padding, done by clamping coordinates), so every content
// pixel is covered. Style grids never need that: a style patch is only a candidate.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <vector>

namespace styleswap {

// Positions of the content grid (covers every pixel; ceil division).
inline int64_t covering_grid(int64_t n, int64_t k, int64_t s) { return (n - k + s - 1) / s + 1; }

// Positions of a style grid (patches that lie fully inside; floor division).
inline int64_t inner_grid(int64_t n, int64_t k, int64_t s) { return (n - k) / s + 1; }

// The style patch bank of one content sample: the patches of every style tensor, numbered
// row-major over each style's grid, styles in list order. A style tensor of batch 1 is
// shared by every sample; one of batch N gives sample n its entry n.
struct StyleBank {
  struct Entry {
    int64_t first;  // global index of this style's first patch
    int64_t grid_w;  // patches per grid row
    int64_t height, width;
  };
  std::vector<Entry> entries;
  int64_t num_patches = 0;

  StyleBank(at::TensorList styles, int64_t k, int64_t s) {
    for (const auto& st : styles) {
      Entry e{num_patches, inner_grid(st.size(3), k, s), st.size(2), st.size(3)};
      num_patches += inner_grid(st.size(2), k, s) * e.grid_w;
      entries.push_back(e);
    }
  }

  // Which style tensor holds global patch j (few styles: a linear scan is enough).
  int64_t style_of(int64_t j) const {
    int64_t t = static_cast<int64_t>(entries.size()) - 1;
    while (entries[t].first > j) --t;
    return t;
  }
};

// Sample n's batch entry in a style tensor (batch 1 = shared).
inline int64_t style_batch_entry(const at::Tensor& style, int64_t n) { return style.size(0) == 1 ? 0 : n; }

// Second line of defence behind the Python checks: shapes, dtypes, devices. Every backend's
// kernels call these first.
void check_geometry(const char* op, int64_t k, int64_t s);
// prepare_bank: the styles (batch 1 or B each, one dtype/device/channel count) and one finite weight > 0 per
// style if given. Returns B, the bank's batch.
int64_t check_prepare_args(at::TensorList styles, int64_t k, int64_t s, std::optional<at::ArrayRef<double>> weights);
// match_bank: content (N, C, H, W); patches (1 | N, R, Dp) of dtype bank_dtype (the backend's choice for the
// content's dtype) with R >= num_patches and Dp >= C*k*k; inv_norm (1 | N, R) float32 (float64 for a float64
// bank); all on the content's device.
void check_match_bank_args(const at::Tensor& content, const at::Tensor& patches, const at::Tensor& inv_norm,
                           int64_t num_patches, int64_t k, int64_t s, at::ScalarType bank_dtype);
// Multiplies each style's inv_norm entries (B, R) by its weight / the largest weight: weighted scores
// (w_t / w_max) * <c, p> / ||p||. Refuses styles whose patch norms would overflow the matching (see styleswap.cpp).
void apply_bank_weights(at::Tensor& inv_norm, const StyleBank& bank, std::optional<at::ArrayRef<double>> weights);
void check_swap_args(const char* op, const at::Tensor& content_or_indices, bool is_indices, at::TensorList styles,
                     int64_t k, int64_t s);
// swap_gather: the styles check above, and indices (N, H', W') of the grid of an H x W content.
void check_gather_args(const at::Tensor& indices, at::TensorList styles, int64_t k, int64_t s, int64_t H, int64_t W);
// swap_gather_backward: the same, grad (N, C, H, W) matching them, all on one device.
void check_gather_backward_args(const at::Tensor& grad, const at::Tensor& indices, at::TensorList styles, int64_t k,
                                int64_t s);

}  // namespace styleswap
