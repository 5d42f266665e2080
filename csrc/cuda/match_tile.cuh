// The fused "GEMM + row-wise argmax" kernel of match_patches (see match_cuda.cu for the pipeline).
//
// Instantiated once per compute mode in match_tile_{bf16,fp16,tf32,tf32x3}.cu, so that the four
// (slow to compile) instantiations build in parallel; match_cuda.cu only calls
// launch_match_tiles<MODE>().
//
// Tiling. Both operands are row-major "patch x D" matrices in global memory: A = content patches,
// B = style patches (so B is the col-major K x N operand of A * B^T). A block computes a BM x BN
// tile with 8 warps laid out 2 (M) x 4 (N); a warp owns a 64 x (BN/4) sub-tile of 16x16 WMMA
// accumulators. Two block shapes are compiled: BN = 128 (64x32 warp tiles, 2 blocks/SM) and
// BN = 256 (64x64 warp tiles, 1 block/SM: half the shared-memory traffic per MMA); the default is
// chosen at run time (STYLESWAP_MATCH_TILE=128|256 overrides; see match_cuda.cu).
//
// One pipeline stage holds a 64-byte K-slice of every row of the A and B tiles: 32 bf16/fp16
// elements or 16 fp32 (TF32) elements. Shared-memory rows are padded to 80 bytes, which keeps the
// 16-byte cp.async destinations aligned, WMMA fragment pointers 32-byte aligned (16 rows x 80 B =
// 1280 B; K offsets of 16 bf16 / 8 fp32 = 32 B) and the 8 rows of a fragment load on distinct
// banks (80 B = 20 words: rows start at banks 0,20,8,28,16,4,24,12).
//
// Epilogue. The fp32 accumulators go through shared memory (reusing the pipeline buffers); each
// warp then takes BM/8 rows: lane l scans columns l, l+32, ... (ascending, strict '>'), score =
// acc * inv_norm[j], padded columns (j >= n_s) skipped; a shuffle butterfly gives the row's (max,
// lowest j); lane 0 merges it into the row's packed 64-bit key with atomicMax (after a plain read
// that skips hopeless updates: keys only grow, so a stale read is a safe filter).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <cstdint>
#include <cstring>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>

namespace styleswap {
namespace match_detail {

using namespace nvcuda;

enum class Mode { BF16, FP16, TF32, TF32X3 };

constexpr int BM = 128;          // content patches per block tile
constexpr int THREADS = 256;     // 8 warps: 2 (M) x 4 (N)
constexpr int WARPS_M = 2, WARPS_N = 4;
constexpr int WARP_M = BM / WARPS_M;  // 64
constexpr int FRAG_M = WARP_M / 16;   // 4
constexpr int SLICE_BYTES = 64;  // bytes of one row per stage
constexpr int SROW_BYTES = 80;   // shared-memory row stride (64 + 16 pad)
constexpr int STAGES = 4;
constexpr int GROUP_M = 16;      // block swizzle: GROUP_M content tiles walk each style tile together (L2 reuse)
constexpr int D_MULTIPLE = 32;   // D is padded so that a row is a whole number of 64-byte slices
constexpr int BN_MAX = 256;      // the wider block shape: B is padded to a multiple of this

template <int BN>
struct TileShape {
  static constexpr int WARP_N = BN / WARPS_N;  // 32 or 64
  static constexpr int FRAG_N = WARP_N / 16;   // 2 or 4
  static constexpr int A_BYTES = BM * SROW_BYTES;
  static constexpr int B_BYTES = BN * SROW_BYTES;
  static constexpr int STAGE_BYTES = A_BYTES + B_BYTES;
  static constexpr int PIPE_BYTES = STAGES * STAGE_BYTES;
  static constexpr int LDC = BN + 4;  // epilogue fp32 tile stride (multiple of 4 for WMMA)
  static constexpr int EPI_BYTES = BM * LDC * 4;
  static constexpr int SMEM_BYTES = PIPE_BYTES > EPI_BYTES ? PIPE_BYTES : EPI_BYTES;
  static constexpr int MIN_BLOCKS = BN == 128 ? 2 : 1;  // register budget: 128 or 255 per thread
  static constexpr int CHUNKS = (BM + BN) * (SLICE_BYTES / 16);  // 16-byte cp.async per stage
  static_assert(CHUNKS % THREADS == 0, "cp.async chunks must split evenly over the threads");
  static_assert(BN % 32 == 0 && WARP_N % 16 == 0, "tile shape");
  static_assert((LDC * 4 * 16) % 32 == 0 && SMEM_BYTES <= 227 * 1024, "shared memory");
};
static_assert(BM % (THREADS / 32) == 0, "epilogue rows per warp");

template <Mode M>
struct Traits;
template <>
struct Traits<Mode::BF16> {
  using elem = __nv_bfloat16;
  using frag = __nv_bfloat16;
  static constexpr int K = 16;
};
template <>
struct Traits<Mode::FP16> {
  using elem = __half;
  using frag = __half;
  static constexpr int K = 16;
};
template <>
struct Traits<Mode::TF32> {
  using elem = float;
  using frag = wmma::precision::tf32;
  static constexpr int K = 8;
};
template <>
struct Traits<Mode::TF32X3> : Traits<Mode::TF32> {};

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned int dst = static_cast<unsigned int>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Fragment loads from shared memory. wmma::load_matrix_sync takes a generic pointer and compiles to
// the generic-state-space wmma.load: for bf16 and tf32 that is generic LD.E in SASS (no LDS/LDSM;
// f16 happened to get LDSM); LLVM's address-space inference (even with
// __builtin_assume(__isShared(p))) does not rewrite the wmma intrinsics. So these issue the .shared
// form on the 32-bit shared address. The PTX ISA defines the fragment layout independently of the
// state space: the fragments, and every result, are the same as with load_matrix_sync. One overload
// per fragment type the kernel uses (Traits<MODE> / FragA / FragB); registers per the PTX ISA: bf16
// m16n16k16 4 x .b32, f16 m16n16k16 8 x .f16x2, tf32 m16n16k8 4 x .b32. ldm is in elements, as for
// load_matrix_sync; p must be 32-byte aligned. The bits go into f.x by memcpy (no type punning).
// volatile + "memory": the asm reads shared memory written by cp.async, so it must stay between
// the cp.async.wait_group / __syncthreads that publish a stage and the next stage's refill.
#define STYLESWAP_LOAD_FRAG_SHARED_X4(FRAG, ELEM, INSTR)                                             \
  __device__ __forceinline__ void load_frag_shared(FRAG& f, const ELEM* p, unsigned ldm) {           \
    static_assert(sizeof(f.x) == 4 * sizeof(uint32_t), "fragment storage: 4 x 32-bit registers");   \
    const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(p));                        \
    uint32_t r[4];                                                                                   \
    asm volatile(INSTR " {%0, %1, %2, %3}, [%4], %5;\n"                                             \
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])                                    \
                 : "r"(addr), "r"(ldm)                                                               \
                 : "memory");                                                                        \
    memcpy(&f.x[0], r, sizeof(r));                                                                   \
  }
#define STYLESWAP_LOAD_FRAG_SHARED_X8(FRAG, ELEM, INSTR)                                             \
  __device__ __forceinline__ void load_frag_shared(FRAG& f, const ELEM* p, unsigned ldm) {           \
    static_assert(sizeof(f.x) == 8 * sizeof(uint32_t), "fragment storage: 8 x 32-bit registers");   \
    const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(p));                        \
    uint32_t r[8];                                                                                   \
    asm volatile(INSTR " {%0, %1, %2, %3, %4, %5, %6, %7}, [%8], %9;\n"                             \
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]), "=r"(r[4]), "=r"(r[5]), "=r"(r[6]), \
                   "=r"(r[7])                                                                        \
                 : "r"(addr), "r"(ldm)                                                               \
                 : "memory");                                                                        \
    memcpy(&f.x[0], r, sizeof(r));                                                                   \
  }
using FragABf16 = wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
using FragBBf16 = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major>;
using FragAF16 = wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major>;
using FragBF16 = wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major>;
using FragATf32 = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using FragBTf32 = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
static_assert(FragABf16::num_elements == 8 && FragBBf16::num_elements == 8, "bf16 fragment: 8 elements");
static_assert(FragAF16::num_elements == 16 && FragBF16::num_elements == 16, "f16 fragment: 16 elements");
static_assert(FragATf32::num_elements == 4 && FragBTf32::num_elements == 4, "tf32 fragment: 4 elements");
STYLESWAP_LOAD_FRAG_SHARED_X4(FragABf16, __nv_bfloat16, "wmma.load.a.sync.aligned.row.m16n16k16.shared.bf16")
STYLESWAP_LOAD_FRAG_SHARED_X4(FragBBf16, __nv_bfloat16, "wmma.load.b.sync.aligned.col.m16n16k16.shared.bf16")
STYLESWAP_LOAD_FRAG_SHARED_X8(FragAF16, __half, "wmma.load.a.sync.aligned.row.m16n16k16.shared.f16")
STYLESWAP_LOAD_FRAG_SHARED_X8(FragBF16, __half, "wmma.load.b.sync.aligned.col.m16n16k16.shared.f16")
STYLESWAP_LOAD_FRAG_SHARED_X4(FragATf32, float, "wmma.load.a.sync.aligned.row.m16n16k8.shared.tf32")
STYLESWAP_LOAD_FRAG_SHARED_X4(FragBTf32, float, "wmma.load.b.sync.aligned.col.m16n16k8.shared.tf32")
#undef STYLESWAP_LOAD_FRAG_SHARED_X4
#undef STYLESWAP_LOAD_FRAG_SHARED_X8

// Order-preserving map float -> uint32 (finite values and +-inf; NaN never reaches it).
__device__ __forceinline__ uint32_t ordered_bits(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// The packed per-row key of (score, style index j): high word the ordered score bits, low word
// 0xFFFFFFFF - j, so the max of keys is the max score and, among equal scores, the lowest j.
__device__ __forceinline__ unsigned long long pack_key(float score, int64_t j) {
  return (static_cast<unsigned long long>(ordered_bits(score)) << 32) |
         static_cast<unsigned long long>(0xFFFFFFFFu - static_cast<uint32_t>(j));
}

// Warp-wide (max score, lowest index) of each lane's (best, bj); every lane ends with the result.
__device__ __forceinline__ void warp_argmax(float& best, int64_t& bj) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const float ob = __shfl_xor_sync(0xffffffffu, best, off);
    const int64_t oj = __shfl_xor_sync(0xffffffffu, bj, off);
    if (ob > best || (ob == best && oj < bj)) {
      best = ob;
      bj = oj;
    }
  }
}

// Tile t's (content tile, style tile) in a 1-D order of tiles_m * tiles_n tiles. Swizzle:
// consecutive tiles walk GROUP_M content tiles for each style tile (L2 reuse of the style tile;
// the last group may be narrower). Bijective onto [0, tiles_m) x [0, tiles_n).
__device__ __forceinline__ void tile_coords(int t, int tiles_m, int tiles_n, int& tm, int& tn) {
  const int per_group = GROUP_M * tiles_n;
  const int first_m = (t / per_group) * GROUP_M;
  const int gsize = min(tiles_m - first_m, GROUP_M);
  const int within = t % per_group;
  tm = first_m + within % gsize;
  tn = within / gsize;
}

// This block's tile in a 1-D grid of tiles_m * tiles_n blocks (one tile per block).
__device__ __forceinline__ void block_tile(int tiles_m, int tiles_n, int& tm, int& tn) {
  tile_coords(blockIdx.x, tiles_m, tiles_n, tm, tn);
}

// Grid: 1-D over tiles_m * tiles_n blocks (swizzled, block_tile). keys[r] belongs to the r-th content row of
// this launch; rows >= `rows` are zero padding and never written. B has tiles_n * BN rows.
template <Mode MODE, int BN>
__global__ void __launch_bounds__(THREADS, TileShape<BN>::MIN_BLOCKS)
    match_tile_kernel(const typename Traits<MODE>::elem* __restrict__ A,
                      const typename Traits<MODE>::elem* __restrict__ B, const float* __restrict__ inv_norm,
                      int64_t rows, int64_t n_s, int64_t row_bytes, int tiles_m, int tiles_n,
                      unsigned long long* __restrict__ keys) {
  using T = Traits<MODE>;
  using S = TileShape<BN>;
  using elem = typename T::elem;
  constexpr int KF = T::K;
  constexpr int LDS = SROW_BYTES / static_cast<int>(sizeof(elem));           // 40 or 20 elements
  constexpr int KSTEPS = SLICE_BYTES / static_cast<int>(sizeof(elem)) / KF;  // 2 in every mode
  constexpr int FRAG_N = S::FRAG_N, WARP_N = S::WARP_N, LDC = S::LDC;
  using FragA = wmma::fragment<wmma::matrix_a, 16, 16, KF, typename T::frag, wmma::row_major>;
  using FragB = wmma::fragment<wmma::matrix_b, 16, 16, KF, typename T::frag, wmma::col_major>;
  using FragC = wmma::fragment<wmma::accumulator, 16, 16, KF, float>;

  extern __shared__ __align__(128) unsigned char smem[];

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;

  int tm, tn;
  block_tile(tiles_m, tiles_n, tm, tn);

  const char* Ag = reinterpret_cast<const char*>(A) + static_cast<size_t>(tm) * BM * row_bytes;
  const char* Bg = reinterpret_cast<const char*>(B) + static_cast<size_t>(tn) * BN * row_bytes;
  const int KT = static_cast<int>(row_bytes / SLICE_BYTES);

  // Stage kt -> slot: rows [0, BM) of A then rows [0, BN) of B, 4 x 16-byte chunks per row.
  auto load_stage = [&](int kt, int slot) {
    unsigned char* st = smem + slot * S::STAGE_BYTES;
    const size_t koff = static_cast<size_t>(kt) * SLICE_BYTES;
#pragma unroll
    for (int c = tid; c < S::CHUNKS; c += THREADS) {
      const int r = c / (SLICE_BYTES / 16), ch = c % (SLICE_BYTES / 16);
      const char* g = r < BM ? Ag + static_cast<size_t>(r) * row_bytes : Bg + static_cast<size_t>(r - BM) * row_bytes;
      cp_async16(st + r * SROW_BYTES + ch * 16, g + koff + ch * 16);  // B rows follow A rows in the slot
    }
  };

  FragC acc[FRAG_M][FRAG_N];
#pragma unroll
  for (int i = 0; i < FRAG_M; ++i)
#pragma unroll
    for (int j = 0; j < FRAG_N; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

#pragma unroll
  for (int st = 0; st < STAGES - 1; ++st) {
    if (st < KT) load_stage(st, st);
    cp_async_commit();  // always commit, so that the group count stays uniform
  }

  for (int kt = 0; kt < KT; ++kt) {
    cp_async_wait<STAGES - 2>();  // this thread's copies of stage kt have landed ...
    __syncthreads();              // ... everyone's have; and everyone is done reading stage kt-1
    const int next = kt + STAGES - 1;
    if (next < KT) load_stage(next, next % STAGES);  // refills the slot stage kt-1 used
    cp_async_commit();

    const elem* As = reinterpret_cast<const elem*>(smem + (kt % STAGES) * S::STAGE_BYTES);
    const elem* Bs = reinterpret_cast<const elem*>(smem + (kt % STAGES) * S::STAGE_BYTES + S::A_BYTES);
#pragma unroll
    for (int ks = 0; ks < KSTEPS; ++ks) {
      FragB b[FRAG_N];
      FragB b_lo[MODE == Mode::TF32X3 ? FRAG_N : 1];
#pragma unroll
      for (int j = 0; j < FRAG_N; ++j) {
        load_frag_shared(b[j], Bs + (wn * WARP_N + j * 16) * LDS + ks * KF, LDS);
        if constexpr (MODE == Mode::TF32) {
#pragma unroll
          for (int e = 0; e < b[j].num_elements; ++e) b[j].x[e] = wmma::__float_to_tf32(b[j].x[e]);
        } else if constexpr (MODE == Mode::TF32X3) {
#pragma unroll
          for (int e = 0; e < b[j].num_elements; ++e) {
            const float v = b[j].x[e];
            const float hi = wmma::__float_to_tf32(v);
            b[j].x[e] = hi;
            b_lo[j].x[e] = wmma::__float_to_tf32(v - hi);
          }
        }
      }
#pragma unroll
      for (int i = 0; i < FRAG_M; ++i) {
        FragA a;
        load_frag_shared(a, As + (wm * WARP_M + i * 16) * LDS + ks * KF, LDS);
        if constexpr (MODE == Mode::TF32) {
#pragma unroll
          for (int e = 0; e < a.num_elements; ++e) a.x[e] = wmma::__float_to_tf32(a.x[e]);
#pragma unroll
          for (int j = 0; j < FRAG_N; ++j) wmma::mma_sync(acc[i][j], a, b[j], acc[i][j]);
        } else if constexpr (MODE == Mode::TF32X3) {
          FragA a_lo;
#pragma unroll
          for (int e = 0; e < a.num_elements; ++e) {
            const float v = a.x[e];
            const float hi = wmma::__float_to_tf32(v);
            a.x[e] = hi;
            a_lo.x[e] = wmma::__float_to_tf32(v - hi);
          }
#pragma unroll
          for (int j = 0; j < FRAG_N; ++j) {
            // 3xTF32: small terms first; lo*lo (~2^-22 relative) is dropped. Every column runs
            // the same sequence, so identical style patches still get identical scores.
            wmma::mma_sync(acc[i][j], a_lo, b[j], acc[i][j]);
            wmma::mma_sync(acc[i][j], a, b_lo[j], acc[i][j]);
            wmma::mma_sync(acc[i][j], a, b[j], acc[i][j]);
          }
        } else {
#pragma unroll
          for (int j = 0; j < FRAG_N; ++j) wmma::mma_sync(acc[i][j], a, b[j], acc[i][j]);
        }
      }
    }
  }

  // Epilogue: the fp32 tile goes through shared memory (the pipeline buffers are free now:
  // the trailing cp.async groups are empty, and the barrier ends every warp's last reads).
  cp_async_wait<0>();
  __syncthreads();
  float* Cs = reinterpret_cast<float*>(smem);
#pragma unroll
  for (int i = 0; i < FRAG_M; ++i)
#pragma unroll
    for (int j = 0; j < FRAG_N; ++j)
      wmma::store_matrix_sync(Cs + (wm * WARP_M + i * 16) * LDC + wn * WARP_N + j * 16, acc[i][j], LDC,
                              wmma::mem_row_major);
  __syncthreads();

  constexpr int COLS_PER_LANE = BN / 32;
  float inv[COLS_PER_LANE];
  int64_t col[COLS_PER_LANE];
#pragma unroll
  for (int t = 0; t < COLS_PER_LANE; ++t) {
    col[t] = static_cast<int64_t>(tn) * BN + lane + 32 * t;
    inv[t] = col[t] < n_s ? inv_norm[col[t]] : 0.0f;
  }
  constexpr int ROWS_PER_WARP = BM / (THREADS / 32);
  for (int rr = 0; rr < ROWS_PER_WARP; ++rr) {
    const int r = warp * ROWS_PER_WARP + rr;
    const int64_t grow = static_cast<int64_t>(tm) * BM + r;
    if (grow >= rows) break;  // warp-uniform; padded rows are the last ones
    float best = -INFINITY;
    int64_t bj = INT64_MAX;
#pragma unroll
    for (int t = 0; t < COLS_PER_LANE; ++t) {  // ascending columns, strict '>': lowest j on ties
      if (col[t] < n_s) {
        float sc = Cs[r * LDC + lane + 32 * t] * inv[t];  // same rounding as the CPU: dot * inv
        if (sc == 0.0f) sc = 0.0f;                       // -0 -> +0 (the CPU's '>' treats them equal)
        if (sc > best) {
          best = sc;
          bj = col[t];
        }
      }
    }
    warp_argmax(best, bj);
    if (lane == 0 && bj != INT64_MAX) {
      const unsigned long long key = pack_key(best, bj);
      const unsigned long long cur = *reinterpret_cast<volatile unsigned long long*>(keys + grow);
      if (key > cur) atomicMax(keys + grow, key);
    }
  }
}

template <Mode MODE, int BN>
void launch_match_tiles_bn(const at::Tensor& A, const at::Tensor& B, const at::Tensor& inv_norm, int64_t rows,
                           int64_t n_s, unsigned long long* keys, cudaStream_t stream) {
  using elem = typename Traits<MODE>::elem;
  using S = TileShape<BN>;
  const int64_t row_bytes = A.size(1) * A.element_size();
  TORCH_INTERNAL_ASSERT(row_bytes % SLICE_BYTES == 0 && B.size(1) == A.size(1) && B.size(0) % BN == 0 &&
                        A.element_size() == static_cast<int64_t>(sizeof(elem)));
  const int64_t tiles_m = (rows + BM - 1) / BM, tiles_n = B.size(0) / BN;
  TORCH_INTERNAL_ASSERT(tiles_m * BM <= A.size(0) && tiles_n * BN >= n_s);
  TORCH_CHECK(tiles_m * tiles_n <= INT32_MAX && tiles_n * GROUP_M <= INT32_MAX, "match_patches: too many tiles");
  auto kernel = match_tile_kernel<MODE, BN>;
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, S::SMEM_BYTES));
  kernel<<<static_cast<unsigned int>(tiles_m * tiles_n), THREADS, S::SMEM_BYTES, stream>>>(
      reinterpret_cast<const elem*>(A.data_ptr()), reinterpret_cast<const elem*>(B.data_ptr()),
      inv_norm.data_ptr<float>(), rows, n_s, row_bytes, static_cast<int>(tiles_m), static_cast<int>(tiles_n), keys);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// A: (>= round_up(rows, BM)) x Dpad, B: (multiple of BN_MAX) x Dpad, both in the mode's element
// type; keys: `rows` packed keys. tile_n: 128 or 256.
template <Mode MODE>
void launch_match_tiles(const at::Tensor& A, const at::Tensor& B, const at::Tensor& inv_norm, int64_t rows,
                        int64_t n_s, unsigned long long* keys, int tile_n, cudaStream_t stream);

// Defined in match_tile_<mode>.cu (one translation unit per mode, compiled in parallel).
template <>
void launch_match_tiles<Mode::BF16>(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t,
                                    unsigned long long*, int, cudaStream_t);
template <>
void launch_match_tiles<Mode::FP16>(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t,
                                    unsigned long long*, int, cudaStream_t);
template <>
void launch_match_tiles<Mode::TF32>(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t,
                                    unsigned long long*, int, cudaStream_t);
template <>
void launch_match_tiles<Mode::TF32X3>(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t,
                                      unsigned long long*, int, cudaStream_t);

#define STYLESWAP_INSTANTIATE_MATCH_TILES(MODE)                                                                   \
  template <>                                                                                                     \
  void launch_match_tiles<MODE>(const at::Tensor& A, const at::Tensor& B, const at::Tensor& inv_norm,             \
                                int64_t rows, int64_t n_s, unsigned long long* keys, int tile_n,                  \
                                cudaStream_t stream) {                                                            \
    if (tile_n == 128) {                                                                                          \
      launch_match_tiles_bn<MODE, 128>(A, B, inv_norm, rows, n_s, keys, stream);                                  \
    } else {                                                                                                      \
      launch_match_tiles_bn<MODE, 256>(A, B, inv_norm, rows, n_s, keys, stream);                                  \
    }                                                                                                             \
  }

}  // namespace match_detail
}  // namespace styleswap
