// Operator schemas of the styleswap library and the composite style_swap.
//
//   prepare_bank         styles [ (1|N, C, Hs, Ws) ... ] (+ optional weight per style) -> the normalised style
//                        patch bank: patches (B, R, Dp) and inv_norm (B, R), B = 1 (shared) or N; row j < n_s
//                        is patch j (C*k*k values, zero padded to Dp), inv_norm[j] = (weight / largest weight) /
//                        (||patch|| + 1e-8).
//                        The padding (R >= n_s, Dp >= C*k*k) and dtype are the backend's (see its kernel).
//   match_bank           content (N,C,H,W), a prepared bank -> indices (N, H', W') int64; optional controls
//                        (match_controls.h): content_labels (N,H',W') + bank_labels (n_s) restrict each content
//                        patch to the bank rows of its label; previous (N,H',W') gets a bonus of
//                        temporal_weight * ||content patch|| (NCC units)
//   match_patches        content, styles -> indices: prepare_bank then match_bank, in each backend (not a
//                        composite: its fake kernel needs no bank geometry, so it traces with symbolic shapes)
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

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cpu/isa.h"
#include "patch_grid.h"

namespace styleswap {

void check_geometry(const char* op, int64_t k, int64_t s) {
  TORCH_CHECK_VALUE(k >= 1, op, ": patch_size must be >= 1, got ", k);
  TORCH_CHECK_VALUE(s >= 1, op, ": stride must be >= 1, got ", s);
  TORCH_CHECK_VALUE(s <= k, op, ": stride (", s, ") must not exceed patch_size (", k, "): the patches would leave gaps");
}

namespace {

void check_content(const char* op, const at::Tensor& content, int64_t k) {
  TORCH_CHECK_VALUE(content.dim() == 4, op, ": content must be (N, C, H, W), got ", content.sizes());
  TORCH_CHECK_VALUE(content.numel() > 0, op, ": content is empty: ", content.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(content.scalar_type()), op, ": content must be floating point, got ",
                   content.scalar_type());
  TORCH_CHECK_VALUE(content.size(2) >= k && content.size(3) >= k, op, ": content (", content.size(2), "x",
                    content.size(3), ") is smaller than patch_size ", k);
}

// Each style (1 or n, C, Hs, Ws), floating point, one dtype, one device (`device`), one channel count.
void check_styles(const char* op, at::TensorList styles, int64_t n, const at::Device& device, int64_t k) {
  TORCH_CHECK_VALUE(!styles.empty(), op, ": styles must hold at least one tensor");
  const auto& st0 = styles[0];
  for (size_t t = 0; t < styles.size(); ++t) {
    const auto& st = styles[t];
    TORCH_CHECK_VALUE(st.dim() == 4, op, ": styles[", t, "] must be (1 or N, C, Hs, Ws), got ", st.sizes());
    TORCH_CHECK_VALUE(st.numel() > 0, op, ": styles[", t, "] is empty: ", st.sizes());
    TORCH_CHECK_TYPE(at::isFloatingType(st.scalar_type()), op, ": styles[", t, "] must be floating point, got ",
                     st.scalar_type());
    TORCH_CHECK_TYPE(st.scalar_type() == st0.scalar_type(), op, ": styles[", t, "] has dtype ", st.scalar_type(),
                     ", styles[0] has ", st0.scalar_type());
    TORCH_CHECK_VALUE(st.device() == device, op, ": styles[", t, "] is on ", st.device(), ", expected ", device);
    TORCH_CHECK_VALUE(st.size(0) == 1 || st.size(0) == n, op, ": styles[", t, "] has batch ", st.size(0),
                      "; expected 1 (shared) or ", n, " (one per sample)");
    TORCH_CHECK_VALUE(st.size(1) == st0.size(1), op, ": styles[", t, "] has ", st.size(1),
                      " channels, styles[0] has ", st0.size(1));
    TORCH_CHECK_VALUE(st.size(2) >= k && st.size(3) >= k, op, ": styles[", t, "] (", st.size(2), "x", st.size(3),
                      ") is smaller than patch_size ", k);
  }
}

}  // namespace

void check_swap_args(const char* op, const at::Tensor& first, bool is_indices, at::TensorList styles, int64_t k,
                     int64_t s) {
  check_geometry(op, k, s);
  TORCH_CHECK_VALUE(!styles.empty(), op, ": styles must hold at least one tensor");
  const auto& st0 = styles[0];
  if (is_indices) {
    TORCH_CHECK_VALUE(first.dim() == 3, op, ": indices must be (N, H', W'), got ", first.sizes());
    TORCH_CHECK_TYPE(first.scalar_type() == at::kLong, op, ": indices must be int64, got ", first.scalar_type());
  } else {
    check_content(op, first, k);
  }
  check_styles(op, styles, first.size(0), first.device(), k);
  if (!is_indices) {
    TORCH_CHECK_TYPE(first.scalar_type() == st0.scalar_type(), op, ": content is ", first.scalar_type(),
                     " but styles are ", st0.scalar_type());
    TORCH_CHECK_VALUE(first.size(1) == st0.size(1), op, ": content has ", first.size(1),
                      " channels, styles have ", st0.size(1));
  }
}

int64_t check_prepare_args(at::TensorList styles, int64_t k, int64_t s, std::optional<at::ArrayRef<double>> weights) {
  const char* op = "prepare_bank";
  check_geometry(op, k, s);
  TORCH_CHECK_VALUE(!styles.empty(), op, ": styles must hold at least one tensor");
  int64_t batch = 1;
  for (const auto& st : styles) batch = st.dim() == 4 ? std::max(batch, st.size(0)) : batch;
  check_styles(op, styles, batch, styles[0].device(), k);
  if (weights.has_value()) {
    TORCH_CHECK_VALUE(weights->size() == styles.size(), op, ": ", weights->size(), " weights for ", styles.size(),
                      " styles");
    for (size_t t = 0; t < weights->size(); ++t)
      TORCH_CHECK_VALUE(std::isfinite((*weights)[t]) && (*weights)[t] > 0, op, ": weights[", t,
                        "] must be finite and > 0, got ", (*weights)[t]);
  }
  return batch;
}

void check_match_bank_args(const at::Tensor& content, const at::Tensor& patches, const at::Tensor& inv_norm,
                           int64_t num_patches, int64_t k, int64_t s, at::ScalarType bank_dtype) {
  const char* op = "match_bank";
  check_geometry(op, k, s);
  check_content(op, content, k);
  const int64_t D = content.size(1) * k * k;
  TORCH_CHECK_VALUE(patches.dim() == 3 && inv_norm.dim() == 2 && patches.size(0) == inv_norm.size(0) &&
                        patches.size(1) == inv_norm.size(1),
                    op, ": patches (B, R, Dp) and inv_norm (B, R) do not fit together: ", patches.sizes(), " and ",
                    inv_norm.sizes());
  TORCH_CHECK_VALUE(patches.size(0) == 1 || patches.size(0) == content.size(0), op, ": the bank has batch ",
                    patches.size(0), "; expected 1 (shared) or ", content.size(0), " (one per sample)");
  TORCH_CHECK_VALUE(num_patches >= 1 && num_patches <= patches.size(1), op, ": num_patches ", num_patches,
                    " does not fit a bank of ", patches.size(1), " rows");
  TORCH_CHECK_VALUE(patches.size(2) >= D, op, ": bank rows hold ", patches.size(2), " values, a ", content.size(1),
                    "-channel ", k, "x", k, " patch needs ", D, " (was the bank prepared for this patch_size?)");
  TORCH_CHECK_VALUE(patches.device() == content.device() && inv_norm.device() == content.device(), op,
                    ": the bank is on ", patches.device(), ", content on ", content.device(),
                    "; prepare the bank on the content's device");
  TORCH_CHECK_TYPE(patches.scalar_type() == bank_dtype, op, ": a ", content.scalar_type(), " content needs a ",
                   bank_dtype, " bank on ", content.device(), ", got ", patches.scalar_type(),
                   " (prepare the bank from styles of the content's dtype, on its device)");
  const auto inv_dtype = bank_dtype == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK_TYPE(inv_norm.scalar_type() == inv_dtype, op, ": inv_norm must be ", inv_dtype, ", got ",
                   inv_norm.scalar_type());
}

// Both backends call this right after building the bank, so the two rules below hold on every device.
//
// Overflow: every score is <c, p> * inv_norm and every swapped value a mean of style patch values, computed in
// float32 (float64 for a float64 bank). A style patch of norm above sqrt(max) of that type (about 1.8e19 in
// float32) leaves no room for the content's half of the product: the scores overflow to inf, every position takes
// the same patch, and the averaged output can itself overflow. inv_norm = 1 / (||p|| + eps) tells the norms, so
// such a style is refused here with its index, instead of giving a wrong picture.
//
// Weights only matter relative to each other, so each is divided by the largest (in double) before it touches
// inv_norm: [1e38, 1] gives the same bank as [1, 1e-38], and no product overflows. A ratio that rounds to 0 in
// inv_norm's dtype (below ~1.4e-45 in float32) would silently act as a weight of 0, so it is refused.
void apply_bank_weights(at::Tensor& inv_norm, const StyleBank& bank, std::optional<at::ArrayRef<double>> weights) {
  const bool is_double = inv_norm.scalar_type() == at::kDouble;
  const double max_norm = std::sqrt(is_double ? std::numeric_limits<double>::max()
                                              : static_cast<double>(std::numeric_limits<float>::max()));
  const char* type_name = is_double ? "float64" : "float32";
  auto rows = [&](size_t t) {
    const int64_t end = t + 1 < bank.entries.size() ? bank.entries[t + 1].first : bank.num_patches;
    return inv_norm.narrow(1, bank.entries[t].first, end - bank.entries[t].first);
  };
  // one reduction and one host read for the whole bank; the style is looked up only when one fails
  const bool fits = inv_norm.narrow(1, 0, bank.num_patches).min().item<double>() >= 1.0 / max_norm;
  for (size_t t = 0; t < bank.entries.size() && !fits; ++t) {
    const double smallest_inv = rows(t).min().item<double>();
    TORCH_CHECK_VALUE(smallest_inv >= 1.0 / max_norm, "prepare_bank: styles[", t, "] has a patch of norm ",
                      smallest_inv > 0 ? 1.0 / smallest_inv : std::numeric_limits<double>::infinity(),
                      ", too large for ", type_name, " matching (at most ", max_norm,
                      ": the scores and the swapped values would overflow); scale the style down");
  }
  if (!weights.has_value()) return;
  const double largest = *std::max_element(weights->begin(), weights->end());
  for (size_t t = 0; t < bank.entries.size(); ++t) {
    const double ratio = (*weights)[t] / largest;
    TORCH_CHECK_VALUE(is_double || static_cast<float>(ratio) > 0.0f, "prepare_bank: weights[", t, "] (",
                      (*weights)[t], ") is too small next to the largest weight (", largest,
                      "): the ratio ", ratio, " is 0 in float32; leave that style out instead");
    rows(t).mul_(ratio);
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
  m.def("prepare_bank(Tensor[] styles, int patch_size, int stride, float[]? weights=None) -> (Tensor, Tensor)");
  m.def(
      "match_bank(Tensor content, Tensor patches, Tensor inv_norm, int num_patches, int patch_size, int stride, "
      "Tensor? content_labels=None, Tensor? bank_labels=None, Tensor? previous=None, float temporal_weight=0.0) "
      "-> Tensor");
  m.def("match_patches(Tensor content, Tensor[] styles, int patch_size, int stride) -> Tensor");
  m.def(
      "swap_gather(Tensor indices, Tensor[] styles, int patch_size, int stride, SymInt height, SymInt width) "
      "-> Tensor");
  m.def(
      "swap_gather_backward(Tensor grad, Tensor indices, Tensor[] styles, int patch_size, int stride) "
      "-> Tensor[]");
  m.def("style_swap(Tensor content, Tensor[] styles, int patch_size, int stride) -> Tensor");
  // Private: the tiled match driver (match_tiled.h) on any bank, for tests and benchmarks; tiles 0 =
  // default, fused = the CUDA fused reduce kernel.
  m.def(
      "_match_bank_tiled(Tensor content, Tensor patches, Tensor inv_norm, int num_patches, int patch_size, "
      "int stride, int tile_rows=0, int tile_cols=0, bool fused=False, Tensor? content_labels=None, "
      "Tensor? bank_labels=None, Tensor? previous=None, float temporal_weight=0.0) -> Tensor");
}

// Approximate search (csrc/approx_index.cpp: the IVF index and its ATen search; csrc/cpu/approx_cpu.cpp):
//   ivf_build      a (reduced) prepared bank -> (sorted rows, order, offsets, centroids); optional groups of
//                  bank rows (one per style and label) each clustered apart, clusters[g] clusters for group g,
//                  whose centroids are scaled by group_weights[g] (the style's weight)
//   match_ivf      content, styles, their inv_norm, the basis and index -> indices (N, H', W'):
//                  `probes` clusters per content patch, `candidates` reranked exactly, `refine` passes; the
//                  controls of match_bank (labels: the index must be built with the bank's labels as groups)
//   match_ivf_aten the same search in ATen ops on any device (match_ivf's CUDA kernel)
TORCH_LIBRARY_FRAGMENT(styleswap, m) {
  m.def(
      "ivf_build(Tensor patches, Tensor inv_norm, int num_patches, int[] clusters, int seed, Tensor? groups=None, "
      "float[]? group_weights=None) -> (Tensor, Tensor, Tensor, Tensor)");
  const char* match_args =
      "(Tensor content, Tensor[] styles, Tensor inv_norm, Tensor basis, Tensor sorted, Tensor order, "
      "Tensor offsets, Tensor centroids, int patch_size, int stride, int probes, int candidates, int refine, "
      "Tensor? content_labels=None, Tensor? bank_labels=None, Tensor? previous=None, float temporal_weight=0.0) "
      "-> Tensor";
  m.def((std::string("match_ivf") + match_args).c_str());
  m.def((std::string("match_ivf_aten") + match_args).c_str());
  // The exact match read from the style maps, stride 1 (CPU: csrc/cpu/match_styles_cpu.cpp): the indices of
  // match_bank without the materialised bank; inv_norm as prepare_bank's (styleswap_ext.ops.swap.bank_inv_norm).
  m.def(
      "match_styles(Tensor content, Tensor[] styles, Tensor inv_norm, int patch_size, int stride, "
      "Tensor? content_labels=None, Tensor? bank_labels=None, Tensor? previous=None, float temporal_weight=0.0) "
      "-> Tensor");
}

TORCH_LIBRARY_IMPL(styleswap, CompositeImplicitAutograd, m) {
  m.impl("style_swap", &style_swap_composite);
}

}  // namespace styleswap

#ifdef STYLESWAP_WITH_CUDA
namespace styleswap::match_detail {
bool wgmma_available(int device);  // csrc/cuda/match_wgmma.cu
}
namespace styleswap::cuda_ops {
std::map<std::string, int64_t> match_kernel_launches();  // csrc/cuda/match_cuda.cu
}
#endif

// The module carries the registrations above (importing it is what matters), two build facts, the
// CPU kernels' ISA and the match-kernel launch counts.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.attr("cuda_built") = pybind11::bool_(
#ifdef STYLESWAP_WITH_CUDA
      true
#else
      false
#endif
  );
  // Whether STYLESWAP_MATCH_KERNEL=wgmma can use the experimental Hopper kernel on this device
  // (a compute capability 9.x GPU and a build with the sm_90a target); otherwise it falls back.
  m.def("wgmma_available", [](int device) {
#ifdef STYLESWAP_WITH_CUDA
    return styleswap::match_detail::wgmma_available(device);
#else
    (void)device;
    return false;
#endif
  }, pybind11::arg("device") = 0);
  // The ISA the CPU hot loops run (csrc/cpu/isa.h): "avx512", "avx2" or "baseline"; ValueError for a
  // bad STYLESWAP_CPU_ISA.
  m.def("cpu_isa", []() {
    try {
      return std::string(styleswap::cpu_isa_name(styleswap::cpu_isa()));
    } catch (const c10::ValueError& e) {
      throw pybind11::value_error(e.what_without_backtrace());
    }
  });
  // Launches of each CUDA match kernel in this process ("wmma", "wgmma", "tma", "float64"; one per
  // content chunk): lets a test check which kernel ran, since the experimental ones fall back quietly.
  m.def("match_kernel_launches", []() {
#ifdef STYLESWAP_WITH_CUDA
    return styleswap::cuda_ops::match_kernel_launches();
#else
    return std::map<std::string, int64_t>{};
#endif
  });
}
