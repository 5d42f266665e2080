// The CUDA kernels of the ops: their entry points, compiled by the host compiler. Every check
// of the arguments and of the inputs (shapes, dtypes, NaN/Inf, index range, bank layout) runs and
// raises here, before any nvcc-compiled host code is on the stack; only then are the drivers of
// match_cuda.cu / gather_cuda.cu (ops_cuda.h) called. Why (benchmarks/CUDA_NOTES.md): on an H200
// (2026-11-27) a c10::ValueError thrown from inside prepare_bank's nvcc-compiled host code killed
// the process with SIGSEGV instead of raising, while the same check thrown from match_bank's did
// not; keeping errors out of .cu host code is the layout of pytorch/extension-cpp.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "../match_tiled.h"
#include "../patch_grid.h"
#include "ops_cuda.h"

namespace styleswap {
namespace {

// The dtypes the CUDA kernels are built for (at::isFloatingType also admits float8).
void check_cuda_dtype(const char* op, at::ScalarType t) {
  TORCH_CHECK_TYPE(t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16, op,
                   ": CUDA supports float32, float64, float16 and bfloat16, got ", t);
}

std::vector<at::Tensor> contiguous_all(at::TensorList ts) {
  std::vector<at::Tensor> out;
  for (const auto& t : ts) out.push_back(t.contiguous());
  return out;
}

// One host sync for all tensors; the error names `what` (`what[i]` when indexed).
void check_finite(const std::vector<at::Tensor>& tensors, const std::string& what, bool indexed) {
  const at::Tensor host = cuda_ops::nonfinite_flags(tensors).cpu();
  const int* f = host.data_ptr<int>();
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (!indexed) {
      TORCH_CHECK_VALUE(f[i] == 0, what, " contains NaN or Inf");
    } else {
      TORCH_CHECK_VALUE(f[i] == 0, what, "[", i, "] contains NaN or Inf");
    }
  }
}

// Same check as the CPU's resolve_sources (TORCH_CHECK_INDEX), with one host sync.
void check_indices(const char* op, const at::Tensor& indices, int64_t n_s) {
  const auto mm = at::aminmax(indices);
  const at::Tensor host = at::stack({std::get<0>(mm), std::get<1>(mm)}).cpu();
  const int64_t lo = host.data_ptr<int64_t>()[0], hi = host.data_ptr<int64_t>()[1];
  TORCH_CHECK_INDEX(lo >= 0 && hi < n_s, op, ": index ", lo < 0 ? lo : hi, " out of range [0, ", n_s, ")");
}

void check_style_count(const char* op, size_t n) {
  TORCH_CHECK_VALUE(n <= static_cast<size_t>(cuda_ops::MAX_STYLES), op, " (CUDA): at most ", cuda_ops::MAX_STYLES,
                    " style tensors per bank are supported, got ", n);
}

std::tuple<at::Tensor, at::Tensor> prepare_bank_cuda(at::TensorList styles_in, int64_t k, int64_t s,
                                                     std::optional<at::ArrayRef<double>> weights) {
  const int64_t batch = check_prepare_args(styles_in, k, s, weights);
  check_cuda_dtype("prepare_bank", styles_in[0].scalar_type());
  const c10::cuda::CUDAGuard guard(styles_in[0].device());
  const auto styles = contiguous_all(styles_in);
  check_finite(styles, "prepare_bank: styles", /*indexed=*/true);
  const StyleBank bank(styles, k, s);
  TORCH_CHECK_VALUE(bank.num_patches < (int64_t{1} << 31), "prepare_bank: ", bank.num_patches,
                    " style patches; at most 2^31 - 1 are supported");
  auto [patches, inv_norm] = cuda_ops::build_bank(styles, batch, k, s);
  apply_bank_weights(inv_norm, bank, weights);
  return {patches, inv_norm};
}

// The fused reduce (match_reduce.cu) as the tiled driver's reducer: per row tile, one packed key per
// row, zeroed, folded by one kernel per score tile, unpacked at the end. Host-compiled on purpose: the
// allocations may throw, and the launches' errors are raised here, not in the .cu (top of this file).
class FusedReducer final : public tiled::TileReducer {
 public:
  explicit FusedReducer(const at::TensorOptions& options) : options_(options.dtype(at::kLong)) {}

  void begin(int64_t rows) override {
    if (!keys_.defined() || keys_.numel() < rows) keys_ = at::empty({rows}, options_);
    rows_ = rows;
    keys_.narrow(0, 0, rows).zero_();  // below every real key
  }

  void fold(const at::Tensor& scores, const at::Tensor& inv, int64_t j0) override {
    // What the driver hands every reducer (match_tiled.h): float32 tiles (m, nt) with unit column stride
    // (float64 banks never take this reducer) and a contiguous inv (check_tiled_args: inv_norm rows have
    // unit stride). Not reachable from the ops' arguments.
    TORCH_INTERNAL_ASSERT(scores.scalar_type() == at::kFloat && scores.stride(1) == 1 && inv.is_contiguous() &&
                          scores.size(0) == rows_);
    C10_CUDA_CHECK(cuda_ops::fold_score_tile(scores.data_ptr<float>(), scores.stride(0), scores.size(0),
                                             scores.size(1), inv.data_ptr<float>(), j0, keys_.data_ptr<int64_t>(),
                                             at::cuda::getCurrentCUDAStream()));
  }

  void finish(at::Tensor indices) override {
    at::Tensor out = indices.is_contiguous() ? indices : at::empty({rows_}, options_);
    C10_CUDA_CHECK(cuda_ops::keys_to_indices(keys_.data_ptr<int64_t>(), rows_, out.data_ptr<int64_t>(),
                                             at::cuda::getCurrentCUDAStream()));
    if (!out.is_same(indices)) indices.copy_(out);
  }

 private:
  at::TensorOptions options_;
  at::Tensor keys_;
  int64_t rows_ = 0;
};

// The tiled driver (../match_tiled.h: cuBLAS GEMMs on bounded tiles) with the fused reduce kernel, or
// with the ATen reduce; float64 scores always take the ATen reduce (the kernel reads float32).
// A match with controls (labels, a preferred row: match_controls.h) always takes the ATen reduce.
at::Tensor match_tiled_cuda(const at::Tensor& content, const at::Tensor& patches, const at::Tensor& inv_norm,
                            int64_t n_s, int64_t k, int64_t s, tiled::Tiles tiles, bool fused,
                            const MatchControls* controls = nullptr) {
  fused = fused && patches.scalar_type() != at::kDouble && !(controls != nullptr && controls->any());
  std::unique_ptr<tiled::TileReducer> reducer = fused ? std::make_unique<FusedReducer>(content.options()) : nullptr;
  int64_t row_tiles = 0;
  at::Tensor indices =
      tiled::match_bank_tiled(content, patches, inv_norm, n_s, k, s, tiles, reducer.get(), &row_tiles, controls);
  cuda_ops::count_tiled_launches(fused, row_tiles);
  return indices;
}

// Match paths: 0 = the kernels of match_cuda.cu (WMMA, or wgmma/tma when asked for; float64: chunked
// DGEMM), 1 = the tiled driver with the ATen reduce, 2 = with the fused reduce kernel.
// The path used when STYLESWAP_MATCH_KERNEL names none, one line per precision: the GPU run of
// docs/gpu_session.md sets these to the fastest path whose tests pass (unchanged until then).
constexpr int DEFAULT_PATH_FLOAT32 = 0;  // TF32 and "highest"
constexpr int DEFAULT_PATH_REDUCED = 0;  // bfloat16, float16
constexpr int DEFAULT_PATH_FLOAT64 = 0;

// STYLESWAP_MATCH_KERNEL=cublas | cublas_fused selects the tiled driver, wmma | wgmma | tma the
// kernels of match_cuda.cu; unset (or another value) = the default above. Read per call.
int match_path(at::ScalarType dtype) {
  if (const char* v = std::getenv("STYLESWAP_MATCH_KERNEL")) {
    const std::string name(v);
    if (name == "cublas") return 1;
    if (name == "cublas_fused") return 2;
    if (name == "wmma" || name == "wgmma" || name == "tma") return 0;
  }
  return dtype == at::kDouble ? DEFAULT_PATH_FLOAT64 : dtype == at::kFloat ? DEFAULT_PATH_FLOAT32 : DEFAULT_PATH_REDUCED;
}

at::Tensor match_bank_cuda(const at::Tensor& content_in, const at::Tensor& patches, const at::Tensor& inv_norm,
                           int64_t n_s, int64_t k, int64_t s, const std::optional<at::Tensor>& content_labels,
                           const std::optional<at::Tensor>& bank_labels, const std::optional<at::Tensor>& previous,
                           double temporal_weight) {
  const auto dtype = content_in.scalar_type();
  check_match_bank_args(content_in, patches, inv_norm, n_s, k, s, dtype);
  check_cuda_dtype("match_bank", dtype);
  const int64_t D = content_in.size(1) * k * k;
  TORCH_CHECK_VALUE(patches.is_contiguous() && inv_norm.is_contiguous() &&
                        patches.size(1) == cuda_ops::bank_rows(patches.size(1), dtype) &&
                        patches.size(2) == cuda_ops::bank_row_length(D, dtype),
                    "match_bank: patches ", patches.sizes(), " are not a CUDA bank for ", D,
                    "-value patches (rows padded to a multiple of ", cuda_ops::bank_rows(1, dtype), ", row length ",
                    cuda_ops::bank_row_length(D, dtype), ", contiguous); prepare the bank with prepare_bank on this "
                    "device");
  TORCH_CHECK_VALUE(n_s < (int64_t{1} << 31), "match_bank: at most 2^31 - 1 style patches are supported");
  // The kernels copy 16-byte chunks of bank rows (cp.async); a bank from prepare_bank always is aligned.
  TORCH_CHECK_VALUE(reinterpret_cast<uintptr_t>(patches.data_ptr()) % 16 == 0,
                    "match_bank: patches must start at a 16-byte aligned address (a view at an odd offset is not a "
                    "bank); prepare the bank with prepare_bank");
  const c10::cuda::CUDAGuard guard(content_in.device());
  const at::Tensor content = content_in.contiguous();
  check_finite({content}, "match_patches: content", /*indexed=*/false);
  const MatchControls controls =
      check_controls("match_bank", content, n_s, covering_grid(content.size(2), k, s),
                     covering_grid(content.size(3), k, s), content_labels, bank_labels, previous, temporal_weight);
  if (controls.any()) {  // labels / a preferred row: the tiled driver (cuBLAS GEMMs) with the ATen reduce
    return match_tiled_cuda(content, patches, inv_norm, n_s, k, s, tiled::default_tiles(content.device()), false,
                            &controls);
  }
  if (const int path = match_path(content.scalar_type())) {
    return match_tiled_cuda(content, patches, inv_norm, n_s, k, s, tiled::default_tiles(content.device()), path == 2);
  }
  return cuda_ops::match_bank(content, patches, inv_norm, n_s, k, s);
}

at::Tensor match_patches_cuda(const at::Tensor& content, at::TensorList styles, int64_t k, int64_t s) {
  check_swap_args("match_patches", content, /*is_indices=*/false, styles, k, s);
  std::vector<at::Tensor> detached(styles.begin(), styles.end());
  for (auto& st : detached) st = st.detach();
  const auto [patches, inv_norm] = prepare_bank_cuda(detached, k, s, std::nullopt);
  return match_bank_cuda(content.detach(), patches, inv_norm, StyleBank(styles, k, s).num_patches, k, s, std::nullopt,
                         std::nullopt, std::nullopt, 0.0);
}

at::Tensor swap_gather_cuda(const at::Tensor& indices_in, at::TensorList styles_in, int64_t k, int64_t s, int64_t H,
                            int64_t W) {
  check_gather_args(indices_in, styles_in, k, s, H, W);  // devices too
  check_cuda_dtype("swap_gather", styles_in[0].scalar_type());
  check_style_count("swap_gather", styles_in.size());
  const c10::cuda::CUDAGuard guard(indices_in.device());
  const auto styles = contiguous_all(styles_in);
  const at::Tensor indices = indices_in.contiguous();
  check_indices("swap_gather", indices, StyleBank(styles, k, s).num_patches);
  return cuda_ops::swap_gather(indices, styles, k, s, H, W);
}

std::vector<at::Tensor> swap_gather_backward_cuda(const at::Tensor& grad_in, const at::Tensor& indices_in,
                                                  at::TensorList styles_in, int64_t k, int64_t s) {
  check_gather_backward_args(grad_in, indices_in, styles_in, k, s);  // devices too
  check_cuda_dtype("swap_gather_backward", styles_in[0].scalar_type());
  check_style_count("swap_gather_backward", styles_in.size());
  const c10::cuda::CUDAGuard guard(indices_in.device());
  const auto styles = contiguous_all(styles_in);
  const at::Tensor grad = grad_in.to(styles[0].scalar_type()).contiguous();
  const at::Tensor indices = indices_in.contiguous();
  check_indices("swap_gather_backward", indices, StyleBank(styles, k, s).num_patches);
  return cuda_ops::swap_gather_backward(grad, indices, styles, k, s);
}

// The private op (styleswap.cpp): the tiled driver on any bank of the accepted dtypes.
at::Tensor match_bank_tiled_cuda(const at::Tensor& content, const at::Tensor& patches, const at::Tensor& inv_norm,
                                 int64_t n_s, int64_t k, int64_t s, int64_t tile_rows, int64_t tile_cols, bool fused,
                                 const std::optional<at::Tensor>& content_labels,
                                 const std::optional<at::Tensor>& bank_labels,
                                 const std::optional<at::Tensor>& previous, double temporal_weight) {
  tiled::check_tiled_args(content, patches, inv_norm, n_s, k, s, tile_rows, tile_cols);
  check_cuda_dtype("_match_bank_tiled", content.scalar_type());
  TORCH_CHECK_VALUE(n_s < (int64_t{1} << 31), "_match_bank_tiled: at most 2^31 - 1 style patches are supported");
  const c10::cuda::CUDAGuard guard(content.device());
  const MatchControls controls =
      check_controls("_match_bank_tiled", content, n_s, covering_grid(content.size(2), k, s),
                     covering_grid(content.size(3), k, s), content_labels, bank_labels, previous, temporal_weight);
  return match_tiled_cuda(content, patches, inv_norm, n_s, k, s,
                          tiled::resolve_tiles(content.device(), tile_rows, tile_cols), fused, &controls);
}

}  // namespace

TORCH_LIBRARY_IMPL(styleswap, CUDA, m) {
  m.impl("_match_bank_tiled", &match_bank_tiled_cuda);
  m.impl("prepare_bank", &prepare_bank_cuda);
  m.impl("match_bank", &match_bank_cuda);
  m.impl("match_patches", &match_patches_cuda);
  m.impl("swap_gather", &swap_gather_cuda);
  m.impl("swap_gather_backward", &swap_gather_backward_cuda);
}

}  // namespace styleswap
