// The exact CPU match read from the style maps (match_styles_cpu.cpp), for stride 1.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace styleswap {

// Indices (N, H - k + 1, W - k + 1) of content (N, C, H, W) against the patches of `styles` (stride 1),
// scored with `inv_norm` (1 | N, >= n_s): the op match_styles (csrc/styleswap.cpp).
at::Tensor match_styles_cpu(const at::Tensor& content, at::TensorList styles, const at::Tensor& inv_norm, int64_t k,
                            int64_t s, const std::optional<at::Tensor>& content_labels,
                            const std::optional<at::Tensor>& bank_labels, const std::optional<at::Tensor>& previous,
                            double temporal_weight);

}  // namespace styleswap
