// Creative controls of the match: modifiers of the score inside the tiled argmax, shared by the CPU
// kernel (cpu/match_cpu.cpp) and the tiled driver (match_tiled.cpp). Both apply them per tile, after
// the scaling by the inverse norms, so there is never a copy of the bank per label.
//
// * Labels (regions): content patch i of label a may only take bank rows of label a. The other rows'
//   scores are -inf inside the tile. Labels are per patch: content_labels (N, H', W') on the covering
//   grid, bank_labels (n_s) per bank row; the Python layer samples the user's label maps at the patch
//   centres (styleswap_ext/_inputs.py, patch_labels).
// * Temporal (video): previous (N, H', W') is a preferred bank row per content patch (the last frame's
//   choice); its score gets a bonus of temporal_weight * ||c_i||. Scores are <c_i, s_j> / ||s_j||, the
//   NCC times ||c_i||, so the weight is in NCC units: the previous patch is kept unless another beats its
//   NCC by more than temporal_weight. A zero weight (or no `previous`) is the plain match, bit for bit.
//
// The winner is the argmax of the modified scores, ties to the lowest index, on every backend.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <optional>

namespace styleswap {

struct MatchControls {
  at::Tensor content_labels;  // (N * n_c) int64 contiguous, or undefined
  at::Tensor bank_labels;     // (n_s) int64 contiguous, or undefined
  at::Tensor previous;        // (N * n_c) int64 contiguous, or undefined
  double temporal_weight = 0;

  bool labels() const { return content_labels.defined(); }
  bool temporal() const { return previous.defined() && temporal_weight != 0; }
  bool any() const { return labels() || temporal(); }
};

// Checks the optional arguments of a match of `content` (N, C, H, W) against n_s bank rows with grid
// (grid_h, grid_w), and returns them flattened and contiguous on the content's device (ValueError /
// TypeError naming the argument). A content label that no bank row has is an error naming the label.
inline MatchControls check_controls(const char* op, const at::Tensor& content, int64_t n_s, int64_t grid_h,
                                    int64_t grid_w, const std::optional<at::Tensor>& content_labels,
                                    const std::optional<at::Tensor>& bank_labels,
                                    const std::optional<at::Tensor>& previous, double temporal_weight) {
  MatchControls c;
  const int64_t N = content.size(0);
  auto check_grid = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK_TYPE(t.scalar_type() == at::kLong, op, ": ", name, " must be int64, got ", t.scalar_type());
    TORCH_CHECK_VALUE(t.dim() == 3 && t.size(0) == N && t.size(1) == grid_h && t.size(2) == grid_w, op, ": ", name,
                      " must be (N, H', W') = (", N, ", ", grid_h, ", ", grid_w, ") (one per content patch), got ",
                      t.sizes());
    TORCH_CHECK_VALUE(t.device() == content.device(), op, ": ", name, " is on ", t.device(), ", content on ",
                      content.device());
    return t.contiguous().view({N * grid_h * grid_w});
  };
  TORCH_CHECK_VALUE(content_labels.has_value() == bank_labels.has_value(), op,
                    ": content_labels and bank_labels go together (got only ",
                    content_labels.has_value() ? "content_labels" : "bank_labels", ")");
  if (content_labels.has_value()) {
    c.content_labels = check_grid(*content_labels, "content_labels");
    const at::Tensor& bl = *bank_labels;
    TORCH_CHECK_TYPE(bl.scalar_type() == at::kLong, op, ": bank_labels must be int64, got ", bl.scalar_type());
    TORCH_CHECK_VALUE(bl.dim() == 1 && bl.size(0) == n_s, op, ": bank_labels must be (", n_s,
                      ",) (one per bank row), got ", bl.sizes());
    TORCH_CHECK_VALUE(bl.device() == content.device(), op, ": bank_labels is on ", bl.device(), ", content on ",
                      content.device());
    c.bank_labels = bl.contiguous();
    const at::Tensor missing = c.content_labels.masked_select(at::isin(c.content_labels, c.bank_labels).logical_not());
    TORCH_CHECK_VALUE(missing.numel() == 0, op, ": content label ",
                      missing.numel() ? missing.min().item<int64_t>() : 0,
                      " has no style patch of that label (content_labels / bank_labels)");
  }
  TORCH_CHECK_VALUE(std::isfinite(temporal_weight) && temporal_weight >= 0, op,
                    ": temporal_weight must be finite and >= 0, got ", temporal_weight);
  if (previous.has_value()) {
    c.previous = check_grid(*previous, "previous");
    if (c.previous.numel() > 0) {
      const auto [lo, hi] = at::aminmax(c.previous);
      TORCH_CHECK_VALUE(lo.item<int64_t>() >= 0 && hi.item<int64_t>() < n_s, op,
                        ": previous holds indices outside [0, ", n_s, ")");
    }
  }
  c.temporal_weight = temporal_weight;
  return c;
}

}  // namespace styleswap
