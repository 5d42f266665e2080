// The fused match kernel for Mode::TF32X3 (see match_tile.cuh); one mode per file so they build in parallel.
#include "match_tile.cuh"

namespace styleswap {
namespace match_detail {
STYLESWAP_INSTANTIATE_MATCH_TILES(Mode::TF32X3)
}  // namespace match_detail
}  // namespace styleswap
