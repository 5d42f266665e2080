// Operator schemas of the styleswap library and the composite style_swap.
//
//   match_patches        content (N,C,H,W), styles [ (1|N, C, Hs, Ws) ... ] -> indices (N, H', W') int64
//   swap_gather          indices, styles -> features (N,C,H,W): each element the mean of the chosen
//                        style patches covering it
//   swap_gather_backward grad (N,C,H,W), indices, styles -> one gradient per style tensor
//                        (the transpose of swap_gather: scatter-add into the chosen patches)
//   style_swap           match_patches then swap_gather (CompositeImplicitAutograd, so autograd and
//                        torch.compile see the two ops above)
//
// Backends register kernels in cpu/ and cuda/. Autograd and fake kernels live in styleswap_ext/ops.py.
#include <torch/extension.h>
#include <torch/library.h>

#include "patch_grid.h"

namespace styleswap {

void check_swap_args(const char* op, const at::Tensor& first, bool is_indices, at::TensorList styles, int64_t k,
                     int64_t s) {
  TORCH_CHECK_VALUE(k >= 1, op, ": patch_size must be >= 1, got ", k);
  TORCH_CHECK_VALUE(s >= 1, op, ": stride must be >= 1, got ", s);
  TORCH_CHECK_VALUE(s <= k, op, ": stride (", s, ") must not exceed patch_size (", k, "): the patches would leave gaps");
  TORCH_CHECK_VALUE(!styles.empty(), op, ": styles must hold at least one tensor");
  const auto& st0 = styles[0];
  if (is_indices) {
    TORCH_CHECK_VALUE(first.dim() == 3, op, ": indices must be (N, H', W'), got ", first.sizes());
    TORCH_CHECK_TYPE(first.scalar_type() == at::kLong, op, ": indices must be int64, got ", first.scalar_type());
  } else {
    TORCH_CHECK_VALUE(first.dim() == 4, op, ": content must be (N, C, H, W), got ", first.sizes());
    TORCH_CHECK_VALUE(first.numel() > 0, op, ": content is empty: ", first.sizes());
    TORCH_CHECK_TYPE(at::isFloatingType(first.scalar_type()), op, ": content must be floating point, got ",
                     first.scalar_type());
    TORCH_CHECK_VALUE(first.size(2) >= k && first.size(3) >= k, op, ": content (", first.size(2), "x",
                      first.size(3), ") is smaller than patch_size ", k);
  }
  const int64_t n = first.size(0);
  for (size_t t = 0; t < styles.size(); ++t) {
    const auto& st = styles[t];
    TORCH_CHECK_VALUE(st.dim() == 4, op, ": styles[", t, "] must be (1 or N, C, Hs, Ws), got ", st.sizes());
    TORCH_CHECK_VALUE(st.numel() > 0, op, ": styles[", t, "] is empty: ", st.sizes());
    TORCH_CHECK_TYPE(at::isFloatingType(st.scalar_type()), op, ": styles[", t, "] must be floating point, got ",
                     st.scalar_type());
    TORCH_CHECK_TYPE(st.scalar_type() == st0.scalar_type(), op, ": styles[", t, "] has dtype ", st.scalar_type(),
                     ", styles[0] has ", st0.scalar_type());
    TORCH_CHECK_VALUE(st.device() == first.device(), op, ": styles[", t, "] is on ", st.device(), ", expected ",
                      first.device());
    TORCH_CHECK_VALUE(st.size(0) == 1 || st.size(0) == n, op, ": styles[", t, "] has batch ", st.size(0),
                      "; expected 1 (shared) or ", n, " (one per sample)");
    TORCH_CHECK_VALUE(st.size(1) == st0.size(1), op, ": styles[", t, "] has ", st.size(1),
                      " channels, styles[0] has ", st0.size(1));
    TORCH_CHECK_VALUE(st.size(2) >= k && st.size(3) >= k, op, ": styles[", t, "] (", st.size(2), "x", st.size(3),
                      ") is smaller than patch_size ", k);
  }
  if (!is_indices) {
    TORCH_CHECK_TYPE(first.scalar_type() == st0.scalar_type(), op, ": content is ", first.scalar_type(),
                     " but styles are ", st0.scalar_type());
    TORCH_CHECK_VALUE(first.size(1) == st0.size(1), op, ": content has ", first.size(1),
                      " channels, styles have ", st0.size(1));
  }
}

void check_gather_args(const at::Tensor& indices, at::TensorList styles, int64_t k, int64_t s, int64_t H, int64_t W) {
  check_swap_args("swap_gather", indices, /*is_indices=*/true, styles, k, s);
  TORCH_CHECK_VALUE(H >= k && W >= k && indices.size(1) == covering_grid(H, k, s) &&
                        indices.size(2) == covering_grid(W, k, s),
                    "swap_gather: indices ", indices.sizes(), " do not match a ", H, "x", W,
                    " content with patch_size ", k, " and stride ", s);
}

void check_gather_backward_args(const at::Tensor& grad, const at::Tensor& indices, at::TensorList styles, int64_t k,
                                int64_t s) {
  check_swap_args("swap_gather_backward", indices, /*is_indices=*/true, styles, k, s);
  TORCH_CHECK_VALUE(grad.dim() == 4 && grad.size(0) == indices.size(0) && grad.size(1) == styles[0].size(1) &&
                        indices.size(1) == covering_grid(grad.size(2), k, s) &&
                        indices.size(2) == covering_grid(grad.size(3), k, s),
                    "swap_gather_backward: grad ", grad.sizes(), " does not match indices ", indices.sizes());
  TORCH_CHECK_VALUE(grad.device() == indices.device(), "swap_gather_backward: grad is on ", grad.device(),
                    ", indices on ", indices.device());
}

namespace {

at::Tensor style_swap_composite(const at::Tensor& content, at::TensorList styles, int64_t patch_size,
                                int64_t stride) {
  static auto match = c10::Dispatcher::singleton()
                          .findSchemaOrThrow("styleswap::match_patches", "")
                          .typed<at::Tensor(const at::Tensor&, at::TensorList, int64_t, int64_t)>();
  static auto gather =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("styleswap::swap_gather", "")
          .typed<at::Tensor(const at::Tensor&, at::TensorList, int64_t, int64_t, c10::SymInt, c10::SymInt)>();
  TORCH_CHECK_VALUE(content.dim() == 4, "style_swap: content must be (N, C, H, W), got ", content.sizes());
  at::Tensor indices = match.call(content, styles, patch_size, stride);
  return gather.call(indices, styles, patch_size, stride, content.sym_size(2), content.sym_size(3));
}

}  // namespace

TORCH_LIBRARY(styleswap, m) {
  m.def("match_patches(Tensor content, Tensor[] styles, int patch_size, int stride) -> Tensor");
  m.def(
      "swap_gather(Tensor indices, Tensor[] styles, int patch_size, int stride, SymInt height, SymInt width) "
      "-> Tensor");
  m.def(
      "swap_gather_backward(Tensor grad, Tensor indices, Tensor[] styles, int patch_size, int stride) "
      "-> Tensor[]");
  m.def("style_swap(Tensor content, Tensor[] styles, int patch_size, int stride) -> Tensor");
}

TORCH_LIBRARY_IMPL(styleswap, CompositeImplicitAutograd, m) { m.impl("style_swap", &style_swap_composite); }

}  // namespace styleswap

// The module only carries the registrations above; importing it is what matters.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.attr("cuda_built") = pybind11::bool_(
#ifdef STYLESWAP_WITH_CUDA
      true
#else
      false
#endif
  );
}
