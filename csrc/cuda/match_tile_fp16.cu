// The fused match kernel for Mode::FP16 (see match_tile.cuh); one mode per file so they build in parallel.
#include "match_tile.cuh"

namespace styleswap {
namespace match_detail {
STYLESWAP_INSTANTIATE_MATCH_TILES(Mode::FP16)
}  // namespace match_detail
}  // namespace styleswap
