// The tiled match driver: the match as vendor GEMMs on bounded tiles plus a running argmax, written
// with ATen calls only, so one implementation runs on every device (CPU tensors in CI, cuBLAS on a
// GPU). See match_tiled.cpp for the algorithm and benchmarks/CUDA_NOTES.md §8 for why.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>

#include "match_controls.h"

namespace styleswap {
namespace tiled {

// Content patches per row tile x style patches per column tile. The float32 score tile is
// rows x cols x 4 bytes: the only buffer that grows with the tile.
struct Tiles {
  int64_t rows, cols;
};

// Default tiles on `device`, or STYLESWAP_TILED_TILE="ROWS,COLS" (read per call, so one process can
// sweep them). CPU 256 x 1024 (the CPU kernel's measured shape); CUDA 4096 x 2048 (a 32 MiB fp32
// score tile: stays in the 50-60 MB L2 of an H100/H200 between the GEMM that writes it and the
// reduce that reads it; 256 CTAs of 128 x 256 per GEMM, ~2 full waves on 132 SMs).
Tiles default_tiles(const at::Device& device);

// Folds score tiles into a running (max, lowest index) per content row. The driver calls begin(m)
// for each row tile of m rows, fold() for its column tiles in ascending order, then finish().
class TileReducer {
 public:
  virtual ~TileReducer() = default;
  virtual void begin(int64_t rows) = 0;
  // scores: (m, nt) raw dot products with unit column stride (float32, or float64 for a float64 bank); inv:
  // (nt) contiguous inverse norms of columns j0 .. j0 + nt - 1. Score = dot * inv; NaN scores never win.
  virtual void fold(const at::Tensor& scores, const at::Tensor& inv, int64_t j0) = 0;
  // Writes the m chosen indices (int64; 0 where no score ever won, e.g. every score NaN).
  virtual void finish(at::Tensor indices) = 0;
};

// The reduce as ATen calls (scale, NaN -> -inf, max over the row, strict '>' merge): any device.
std::unique_ptr<TileReducer> make_aten_reducer();

// indices (N, H', W') of the best bank row for every patch of the covering grid of `content`
// (N, C, H, W); patches (1 | N, R, Dp) with R >= n_s, Dp >= C*k*k (padding is never read as a
// winner), inv_norm (1 | N, R). The bank's dtype is the compute dtype: float64 -> float64 scores;
// float32 -> float32 (matmul precision as torch's); bfloat16/float16 -> float32 accumulation and
// float32 scores. `reducer` null = the ATen reducer. `row_tiles` (optional) receives the number of
// row tiles run. Arguments are not checked here (check_tiled_args).
// `controls` (match_controls.h, checked by check_controls; null or none = the plain match): the scores
// are masked by label and the preferred rows get their bonus per tile, before the ATen reduce; a match
// with controls always takes the ATen reducer (`reducer` must be null).
at::Tensor match_bank_tiled(const at::Tensor& content, const at::Tensor& patches, const at::Tensor& inv_norm,
                            int64_t n_s, int64_t k, int64_t s, Tiles tiles, TileReducer* reducer = nullptr,
                            int64_t* row_tiles = nullptr, const MatchControls* controls = nullptr);

// The private op's checks (ValueError / TypeError naming the argument): the match_bank checks with
// the bank dtype the driver takes for this content, tile sizes >= 0 (0 = default), an inv_norm with
// unit stride along its rows (what every reducer's fold() is given), finite content.
void check_tiled_args(const at::Tensor& content, const at::Tensor& patches, const at::Tensor& inv_norm, int64_t n_s,
                      int64_t k, int64_t s, int64_t tile_rows, int64_t tile_cols);

// Tile sizes of the private op: 0 = default_tiles(device).
Tiles resolve_tiles(const at::Device& device, int64_t tile_rows, int64_t tile_cols);

}  // namespace tiled
}  // namespace styleswap
