// The tiled match driver (match_tiled.h), ATen calls only.
//
// Per sample, per row tile of `tiles.rows` content patches:
//   1. im2col of the tile: the grid rows it touches are cut out of the content with clamped row and
//      column indices (the replicate padding of the covering grid, patch_grid.h), at::im2col, and the
//      tile's patches copied into the workspace A (tile.rows x D, the bank's dtype);
//   2. per column tile of `tiles.cols` bank rows, ascending: one GEMM A x B_tile^T into the float32
//      score workspace (float64 for a float64 bank), then the reducer folds it into the running
//      (max, lowest index) of each row. The GEMM covers the column tile rounded up to a multiple of
//      8 bank rows where the bank has them (padded CUDA banks: aligned shapes for tensor cores); the
//      reducer only ever sees the first nt columns, so padding rows and columns never win.
// Extra memory: A + one score tile + the im2col of <= tile.rows + 2 grid rows: O(tile), never n_c x n_s.
//
// Precision: at::mm follows torch's float32 matmul precision (cuBLAS TF32 for "high"/"medium");
// bfloat16/float16 banks get float32 accumulation and float32 scores: on CUDA at::mm_out with
// out_dtype float32 (cuBLAS bf16/fp16 tensor cores, fp32 compute and output: a bf16 score tile would
// round the argmax away), elsewhere an upcast of both operands to float32, which is exact (every
// bf16/fp16 value is a float32) and keeps float32 accumulation; only the CPU tests take that path.
//
// Ties: identical bank rows give bit-identical dot products (same GEMM, same K order) and the same
// inv_norm, so their scores are equal; at::max returns the first maximum of a row and tiles are
// merged with a strict '>', so the lowest index wins, as in the CPU kernel and the reference.
#include "match_tiled.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "patch_grid.h"

namespace styleswap {
namespace tiled {
namespace {

constexpr int64_t GEMM_COL_ALIGN = 8;  // bank rows per GEMM rounded up to this where the bank has them

class AtenReducer final : public TileReducer {
 public:
  void begin(int64_t) override { best_.reset(); }
  // The controls of the next row tile (match_controls.h): its rows' labels (m) with the bank's labels
  // (n_s), its rows' preferred bank rows (m) with their bonus (m, the score dtype); undefined = none.
  void set_controls(at::Tensor row_labels, at::Tensor bank_labels, at::Tensor previous, at::Tensor bonus) {
    row_labels_ = std::move(row_labels);
    bank_labels_ = std::move(bank_labels);
    previous_ = std::move(previous);
    bonus_ = std::move(bonus);
  }
  void fold(const at::Tensor& scores, const at::Tensor& inv, int64_t j0) override {
    constexpr double NEG_INF = -std::numeric_limits<double>::infinity();
    // Scaled in place (the score tile is the driver's workspace). NaN -> -inf: a NaN never wins and a
    // row of NaN keeps index 0, as the CPU kernel's '>' comparisons do (+-inf stay as they are).
    at::Tensor sc = scores.mul_(inv.unsqueeze(0));
    sc.nan_to_num_(NEG_INF, std::numeric_limits<double>::infinity(), NEG_INF);
    const int64_t nt = sc.size(1);
    if (row_labels_.defined())  // another label's rows never win
      sc.masked_fill_(bank_labels_.narrow(0, j0, nt).unsqueeze(0) != row_labels_.unsqueeze(1), NEG_INF);
    if (previous_.defined()) {  // the preferred row's bonus (0 added to column 0 where it is in another tile)
      const at::Tensor local = previous_ - j0;
      const at::Tensor here = (local >= 0).logical_and_(local < nt);
      sc.scatter_add_(1, local.clamp(0, nt - 1).unsqueeze(1), at::where(here, bonus_, 0).unsqueeze(1));
    }
    auto [val, idx] = at::max(sc, 1);  // first maximum of each row: the lowest index on ties
    if (!best_.defined()) {  // the first tile (j0 = 0); a row of -inf keeps index 0, like the CPU
      best_ = val;
      arg_ = idx;
      return;
    }
    const at::Tensor better = val > best_;  // strict: an equal score in a later tile has a higher index
    best_ = at::where(better, val, best_);
    arg_ = at::where(better, idx + j0, arg_);
  }
  void finish(at::Tensor indices) override { indices.copy_(arg_); }

 private:
  at::Tensor best_, arg_;
  at::Tensor row_labels_, bank_labels_, previous_, bonus_;
};

// Reads "ROWS,COLS" from the environment; false where unset or malformed.
bool tiles_from_env(Tiles& t) {
  const char* env = std::getenv("STYLESWAP_TILED_TILE");
  if (env == nullptr) return false;
  long long r = 0, c = 0;
  if (std::sscanf(env, "%lld,%lld", &r, &c) != 2 || r <= 0 || c <= 0) return false;
  t = {r, c};
  return true;
}

// The dtype of the score tile and of the GEMM operands for a bank dtype.
bool reduced(at::ScalarType t) { return t == at::kBFloat16 || t == at::kHalf; }

// Rows [p0, p0 + m) of sample n's covering grid as patches, written into A (m x D, A's dtype).
void fill_content_tile(const at::Tensor& sample, int64_t k, int64_t s, int64_t grid_w, int64_t p0, int64_t m,
                       at::Tensor A) {
  const int64_t H = sample.size(1), W = sample.size(2);
  const int64_t gy0 = p0 / grid_w, gy1 = (p0 + m - 1) / grid_w;
  const auto index_opts = sample.options().dtype(at::kLong);
  // Image rows gy0*s .. gy1*s + k - 1 and every column of the padded grid, clamped to the image.
  const at::Tensor rows = at::arange(gy0 * s, gy1 * s + k, index_opts).clamp_max_(H - 1);
  const at::Tensor cols = at::arange((grid_w - 1) * s + k, index_opts).clamp_max_(W - 1);
  const at::Tensor band = sample.index_select(1, rows).index_select(2, cols).unsqueeze(0);
  // (1, C*k*k, band patches), values ordered (c, dy, dx) like the bank rows.
  const at::Tensor cols_mat = at::im2col(band, {k, k}, {1, 1}, {0, 0}, {s, s});
  A.copy_(cols_mat[0].narrow(1, p0 - gy0 * grid_w, m).t());
}

}  // namespace

Tiles default_tiles(const at::Device& device) {
  Tiles t = device.is_cpu() ? Tiles{256, 1024} : Tiles{4096, 2048};
  tiles_from_env(t);
  return t;
}

Tiles resolve_tiles(const at::Device& device, int64_t tile_rows, int64_t tile_cols) {
  const Tiles d = default_tiles(device);
  return {tile_rows > 0 ? tile_rows : d.rows, tile_cols > 0 ? tile_cols : d.cols};
}

std::unique_ptr<TileReducer> make_aten_reducer() { return std::make_unique<AtenReducer>(); }

at::Tensor match_bank_tiled(const at::Tensor& content_in, const at::Tensor& patches, const at::Tensor& inv_norm,
                            int64_t n_s, int64_t k, int64_t s, Tiles tiles, TileReducer* reducer,
                            int64_t* row_tiles, const MatchControls* controls) {
  // Indices are piecewise constant: no autograd through the GEMMs (inputs that require grad included).
  const at::NoGradGuard no_grad;
  const auto bank_dtype = patches.scalar_type();
  const int64_t N = content_in.size(0), C = content_in.size(1), H = content_in.size(2), W = content_in.size(3);
  const int64_t D = C * k * k, R = patches.size(1);
  const int64_t grid_w = covering_grid(W, k, s), n_c = covering_grid(H, k, s) * grid_w;
  // Content in the bank's dtype: the same dtype, or an exact upcast of bf16/fp16 to a float32 bank.
  const at::Tensor content = content_in.to(bank_dtype);
  const bool upcast = reduced(bank_dtype) && !content.is_cuda();  // see the header comment: exact
  const auto score_dtype = bank_dtype == at::kDouble ? at::kDouble : at::kFloat;

  const bool controlled = controls != nullptr && controls->any();
  TORCH_CHECK(!controlled || reducer == nullptr, "match_bank_tiled: a match with controls takes the ATen reducer");
  std::unique_ptr<TileReducer> own;
  AtenReducer* aten = nullptr;
  if (reducer == nullptr) {
    auto r = std::make_unique<AtenReducer>();
    aten = r.get();
    own = std::move(r);
    reducer = own.get();
  }
  const int64_t tile_m = std::min(tiles.rows, n_c);
  const int64_t tile_n = std::min(tiles.cols, n_s);
  const int64_t ld_max = std::min((tile_n + GEMM_COL_ALIGN - 1) / GEMM_COL_ALIGN * GEMM_COL_ALIGN, R);
  at::Tensor A = at::empty({tile_m, D}, content.options());
  at::Tensor score_buf = at::empty({tile_m * ld_max}, content.options().dtype(score_dtype));
  at::Tensor indices = at::empty({N, covering_grid(H, k, s), grid_w}, content.options().dtype(at::kLong));
  at::Tensor flat = indices.view({N * n_c});
  int64_t count = 0;

  for (int64_t n = 0; n < N; ++n) {
    const int64_t b = patches.size(0) == 1 ? 0 : n;
    const at::Tensor bank = patches[b].narrow(1, 0, D);  // (R, D), row stride Dp
    const at::Tensor inv = inv_norm[b];
    const at::Tensor sample = content[n];
    for (int64_t p0 = 0; p0 < n_c; p0 += tile_m) {
      const int64_t m = std::min(tile_m, n_c - p0);
      at::Tensor a = A.narrow(0, 0, m);
      fill_content_tile(sample, k, s, grid_w, p0, m, a);
      const at::Tensor a_gemm = upcast ? a.to(at::kFloat) : a;
      if (controlled) {
        const int64_t first = n * n_c + p0;
        at::Tensor bonus;
        if (controls->temporal())  // temporal_weight * ||c_i||, in the score dtype
          bonus = at::linalg_vector_norm(a_gemm.to(score_dtype), 2, {1}).mul_(controls->temporal_weight);
        aten->set_controls(controls->labels() ? controls->content_labels.narrow(0, first, m) : at::Tensor(),
                           controls->bank_labels,
                           controls->temporal() ? controls->previous.narrow(0, first, m) : at::Tensor(), bonus);
      }
      reducer->begin(m);
      for (int64_t j0 = 0; j0 < n_s; j0 += tile_n) {
        const int64_t nt = std::min(tile_n, n_s - j0);
        // Rounded up where the bank has the rows (padding or the next tile's rows: computed, never read).
        const int64_t ld = std::min((nt + GEMM_COL_ALIGN - 1) / GEMM_COL_ALIGN * GEMM_COL_ALIGN, R - j0);
        at::Tensor scores = score_buf.narrow(0, 0, m * ld).view({m, ld});
        const at::Tensor bt = bank.narrow(0, j0, ld).t();
        if (upcast) {
          at::mm_out(scores, a_gemm, bt.to(at::kFloat));
        } else if (reduced(bank_dtype)) {
          at::mm_out(scores, a_gemm, bt, at::kFloat);  // cuBLAS: fp32 accumulation, fp32 scores
        } else {
          at::mm_out(scores, a_gemm, bt);
        }
        // Only the first nt columns: contiguous when ld == nt, else a strided view of the same tile.
        reducer->fold(ld == nt ? scores : scores.narrow(1, 0, nt), inv.narrow(0, j0, nt), j0);
      }
      reducer->finish(flat.narrow(0, n * n_c + p0, m));
      ++count;
    }
  }
  if (row_tiles != nullptr) *row_tiles = count;
  return indices;
}

void check_tiled_args(const at::Tensor& content, const at::Tensor& patches, const at::Tensor& inv_norm, int64_t n_s,
                      int64_t k, int64_t s, int64_t tile_rows, int64_t tile_cols) {
  TORCH_CHECK_VALUE(tile_rows >= 0, "_match_bank_tiled: tile_rows must be >= 0 (0 = default), got ", tile_rows);
  TORCH_CHECK_VALUE(tile_cols >= 0, "_match_bank_tiled: tile_cols must be >= 0 (0 = default), got ", tile_cols);
  // The bank's dtype is the compute dtype: the content's, or float32 for a bf16/fp16 content (the CPU
  // bank layout). Anything else gets match_bank's error for the content's own dtype.
  const auto ct = content.scalar_type(), pt = patches.scalar_type();
  const bool ok = pt == ct || (reduced(ct) && pt == at::kFloat);
  check_match_bank_args(content, patches, inv_norm, n_s, k, s, ok ? pt : ct);
  // The reducers read a column tile's inverse norms as one contiguous run (the fused CUDA reduce loads
  // them as float4): a (B, R) inv_norm must have unit stride along R, as prepare_bank returns it.
  TORCH_CHECK_VALUE(inv_norm.size(1) <= 1 || inv_norm.stride(1) == 1,
                    "_match_bank_tiled: inv_norm must have unit stride along its rows (the (B, R) layout of "
                    "prepare_bank), got strides ", inv_norm.strides(), "; pass inv_norm.contiguous()");
  TORCH_CHECK_VALUE(at::isfinite(content).all().item<bool>(), "_match_bank_tiled: content contains NaN or Inf");
}

namespace {

at::Tensor match_bank_tiled_cpu(const at::Tensor& content, const at::Tensor& patches, const at::Tensor& inv_norm,
                                int64_t n_s, int64_t k, int64_t s, int64_t tile_rows, int64_t tile_cols,
                                bool fused, const std::optional<at::Tensor>& content_labels,
                                const std::optional<at::Tensor>& bank_labels, const std::optional<at::Tensor>& previous,
                                double temporal_weight) {
  check_tiled_args(content, patches, inv_norm, n_s, k, s, tile_rows, tile_cols);
  TORCH_CHECK_VALUE(!fused, "_match_bank_tiled: fused=True needs CUDA tensors (the fused reduce is a CUDA kernel)");
  const MatchControls controls =
      check_controls("_match_bank_tiled", content, n_s, covering_grid(content.size(2), k, s),
                     covering_grid(content.size(3), k, s), content_labels, bank_labels, previous, temporal_weight);
  return match_bank_tiled(content, patches, inv_norm, n_s, k, s, resolve_tiles(content.device(), tile_rows, tile_cols),
                          nullptr, nullptr, &controls);
}

}  // namespace
}  // namespace tiled

TORCH_LIBRARY_IMPL(styleswap, CPU, m) { m.impl("_match_bank_tiled", &tiled::match_bank_tiled_cpu); }

}  // namespace styleswap
