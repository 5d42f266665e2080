// EXPERIMENTAL, opt-in: the fused match kernel on Hopper's warpgroup MMA (wgmma), for the
// bf16/fp16/TF32 modes, in two variants that share the MMA and the epilogue:
//   STYLESWAP_MATCH_KERNEL=wgmma  cp.async staging by every thread (run and tested on an H200,
//                                 2026-11-27: 1.6-1.9x the bare GEMM);
//   STYLESWAP_MATCH_KERNEL=tma    TMA staging by one producer warp, mbarrier pipeline, persistent
//                                 CTAs (written 2026-11-27 without a GPU; not yet run).
// Same contract as match_tile_kernel (match_tile.cuh): A = content patches, B = style patches, both
// row-major "patch x Dpad" in global memory; the output is the per-row packed (score, index) key,
// merged with atomicMax, so results are deterministic and ties go to the lowest index.
//
// Why: on H100/H200 the legacy mma.sync path (WMMA) peaks at about half the tensor-core rate that
// wgmma reaches, so the WMMA kernel cannot come within 1.25x of cuBLAS (which uses wgmma).
//
// Common to both (one output tile = 128 content rows x 256 style rows, two consumer warpgroups of
// 64 rows each):
//   * K advances in 128-byte slices (64 bf16/fp16 or 32 fp32 per row), staged in shared memory in
//     the K-major 128-byte-swizzle layout that wgmma reads: 8-row atoms of 1024 B, 16-byte chunk c
//     of row r stored at chunk (c ^ r % 8); 4 slots of 48 KiB.
//   * Per slice, each warpgroup issues 4 wgmma m64n256k16 (k8 for TF32) on its 64 rows; the
//     descriptor's start address advances by 32 B per k-step inside the swizzled row.
//   * Epilogue straight from the accumulator registers (argmax_epilogue): thread (warp w of its
//     warpgroup, lane l) holds rows 16w + l/4 and 16w + l/4 + 8 of its warpgroup's 64, columns
//     8i + 2(l%4) + {0,1} for i = 0..31 (registers 4i + {0,1} and 4i + {2,3}). Score = acc *
//     inv_norm[j], -0 -> +0, ascending columns with strict '>', then a reduction over the 4 lanes
//     that share a row, then atomicMax.
//   * TF32: wgmma truncates the fp32 operands to TF32 (PTX ISA, wgmma.mma_async), the WMMA path
//     rounds them (cvt.rna). Both are within TF32's tolerance of the exact scores; at near-ties
//     they may pick different indices. Rounding in shared memory first would make them agree but
//     costs a read and a write of every staged slice, so it is not done.
//
// "wgmma" (one tile per CTA, 256 threads that all copy and compute):
//   * each slice of the A tile (128 rows) and B tile (256 rows) is copied with cp.async (16-byte
//     chunks, zero-filled past the row end); prefetch distance 2: while slice kt is multiplied,
//     slice kt+1 is landing and slice kt+2 is being copied into the slot slice kt-2 used (whose
//     wgmma every warpgroup has waited for: wgmma.wait_group 1 at the end of iteration kt-1, then
//     the barrier);
//   * cp.async writes are generic-proxy; wgmma reads through the async proxy, hence
//     fence.proxy.async after the copies land and before the barrier.
//
// "tma" (what cuBLAS/CUTLASS Hopper GEMMs do, minus clusters): 288 threads = the two consumer
// warpgroups + one producer warp; one CTA per SM, persistent over the tiles t = blockIdx.x,
// blockIdx.x + gridDim.x, ... (the same swizzled order as the other kernels, tile_coords):
//   * one producer thread walks the same (tile, slice) sequence as the consumers; per slice it
//     waits until the slot is empty, arms the slot's "full" mbarrier with the 48 KiB it expects
//     and issues two TMA loads (A box 128 rows, B box 256 rows, 128 B each; the tensor maps of
//     tensor_map.cpp swizzle them and zero-fill past the row end) that complete on that barrier;
//   * consumers wait on "full", issue the slice's wgmma, and after wgmma.wait_group 1 (the
//     previous slice's MMAs are done reading) arrive on the previous slot's "empty" mbarrier (lane 0
//     of each of the 8 consumer warps: 8 arrivals complete it); the first MMA of a tile clears the
//     accumulators (scale-d = 0);
//   * no block-wide barrier in the main loop, and the producer runs up to 4 slices ahead, across
//     tile boundaries, so the next tile's first slices load during the epilogue;
//   * parity protocol: slot s's barriers complete one phase per use; the consumer waits "full"
//     with parity ph, the producer "empty" with ph ^ 1 (a fresh barrier counts its preceding
//     phase as complete, so the first pass through the slots does not wait); ph flips when s
//     wraps. Before exiting, the producer waits until every slot is released once more.
//
// Compiled for sm_90a only (wgmma needs the arch-specific target; setup.py builds a 9.0 entry of
// TORCH_CUDA_ARCH_LIST as -gencode arch=compute_90a,code=sm_90a instead of sm_90). A probe kernel
// in this file reports whether the loaded cubin has it, so the dispatcher falls back to WMMA
// otherwise (e.g. a build where torch chose plain sm_90).
#include "match_wgmma.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>

#include <cuda.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <vector>

#include "match_tile.cuh"
#include "tensor_map.h"

namespace styleswap {
namespace match_detail {
namespace {

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define STYLESWAP_WGMMA_DEVICE 1
#endif

constexpr int WG_BM = 128, WG_BN = 256, WG_THREADS = 256, WG_STAGES = 4, WG_SLICE = 128;
constexpr int WG_A_BYTES = WG_BM * WG_SLICE, WG_B_BYTES = WG_BN * WG_SLICE;
constexpr int WG_STAGE_BYTES = WG_A_BYTES + WG_B_BYTES;               // 48 KiB
constexpr int WG_SMEM_BYTES = WG_STAGES * WG_STAGE_BYTES + 1024;      // + alignment slack
constexpr int WG_CHUNKS = (WG_BM + WG_BN) * (WG_SLICE / 16);          // 3072 per slice
static_assert(WG_CHUNKS % WG_THREADS == 0, "chunks split evenly");
static_assert(WG_SMEM_BYTES <= 227 * 1024, "shared memory");
// "tma": + one producer warp; the 2 x WG_STAGES mbarriers (8 B each) after the slots.
constexpr int TMA_THREADS = WG_THREADS + 32;
constexpr int TMA_BAR_OFFSET = WG_STAGES * WG_STAGE_BYTES;
constexpr int TMA_SMEM_BYTES = TMA_BAR_OFFSET + 2 * WG_STAGES * 8 + 1024;
static_assert(TMA_SMEM_BYTES <= 227 * 1024, "shared memory");

__global__ void wgmma_probe_kernel(int* out) {
#ifdef STYLESWAP_WGMMA_DEVICE
  *out = 1;
#else
  *out = 0;
#endif
}

#ifdef STYLESWAP_WGMMA_DEVICE

// Byte offset of 16-byte chunk c of row r in a K-major, 128-byte-swizzled tile.
__device__ __forceinline__ uint32_t swizzled(int r, int c) {
  return static_cast<uint32_t>((r >> 3) * 1024 + (r & 7) * 128 + ((c ^ (r & 7)) << 4));
}

__device__ __forceinline__ void cp_async16_zfill(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}

// Shared-memory matrix descriptor: K-major, 128-byte swizzle, 8-row atoms 1024 B apart.
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr) {
  uint64_t d = static_cast<uint64_t>((addr & 0x3FFFF) >> 4);
  d |= static_cast<uint64_t>(1) << 16;            // leading byte offset: unused for swizzled K-major
  d |= static_cast<uint64_t>(1024 >> 4) << 32;    // stride byte offset: next 8-row atom
  d |= static_cast<uint64_t>(1) << 62;            // 128-byte swizzle
  return d;
}

__device__ __forceinline__ void fence_operands(float (&d)[128]) {
#pragma unroll
  for (int i = 0; i < 128; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

template <Mode MODE>
__device__ __forceinline__ void wgmma_m64n256(float (&d)[128], uint64_t desc_a, uint64_t desc_b, int accumulate);

// One wgmma.mma_async: D (64 x 256, fp32, 128 registers per thread) = A (64 x K) * B (256 x K)^T
// + (accumulate ? D : 0), both operands read from shared memory through their descriptors.
// SHAPE_TYPES: the instruction's shape and operand types; TAIL: its scale/transpose immediates.
#define STYLESWAP_WGMMA_M64N256(SHAPE_TYPES, TAIL)                                                  \
  asm volatile(                                                                                   \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"                                              \
      "wgmma.mma_async.sync.aligned.m64n256" SHAPE_TYPES " "                                       \
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "                  \
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "         \
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "         \
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "         \
      "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "         \
      "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "         \
      "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
      "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, " \
      "%128, %129, p, " TAIL ";\n}\n"                                                            \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), \
        "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), \
        "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), \
        "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), \
        "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), \
        "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), \
        "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), \
        "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), \
        "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127]) \
      : "l"(desc_a), "l"(desc_b), "r"(accumulate))

template <>
__device__ __forceinline__ void wgmma_m64n256<Mode::BF16>(float (&d)[128], uint64_t desc_a, uint64_t desc_b,
                                                          int accumulate) {
  STYLESWAP_WGMMA_M64N256("k16.f32.bf16.bf16", "1, 1, 0, 0");
}
template <>
__device__ __forceinline__ void wgmma_m64n256<Mode::FP16>(float (&d)[128], uint64_t desc_a, uint64_t desc_b,
                                                          int accumulate) {
  STYLESWAP_WGMMA_M64N256("k16.f32.f16.f16", "1, 1, 0, 0");
}
template <>
__device__ __forceinline__ void wgmma_m64n256<Mode::TF32>(float (&d)[128], uint64_t desc_a, uint64_t desc_b,
                                                          int accumulate) {
  STYLESWAP_WGMMA_M64N256("k8.f32.tf32.tf32", "1, 1");  // tf32 has no transpose immediates
}
#undef STYLESWAP_WGMMA_M64N256


// mbarrier and TMA primitives (PTX ISA 8.0, sm_90), as CUTLASS's cutlass/arch/barrier.h and
// cute/arch/copy_sm90_tma.hpp issue them.
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Returns once the phase of `bar` with this parity has completed.
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}
// Box (x = element along the row, y = row) of `map` into shared memory at `dst`, completing
// its bytes on `bar`.
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap* map, int x, int y, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(x), "r"(y), "r"(bar)
      : "memory");
}

// The argmax of this thread's accumulator rows, merged into keys (see the comment at the top).
__device__ __forceinline__ void argmax_epilogue(const float (&acc)[128], int tm, int tn, int wg, int warp_in_wg,
                                                int lane, const float* __restrict__ inv_norm, int64_t rows,
                                                int64_t n_s, unsigned long long* __restrict__ keys) {
  // Rows r0 and r0 + 8 of this thread, 64 columns each.
  const int64_t r0 = static_cast<int64_t>(tm) * WG_BM + wg * 64 + warp_in_wg * 16 + (lane >> 2);
  float best[2] = {-INFINITY, -INFINITY};
  int64_t bj[2] = {INT64_MAX, INT64_MAX};
#pragma unroll
  for (int i = 0; i < 32; ++i) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {  // ascending columns, strict '>': lowest j on ties
      const int64_t col = static_cast<int64_t>(tn) * WG_BN + 8 * i + 2 * (lane & 3) + e;
      if (col < n_s) {
        const float iv = inv_norm[col];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          float sc = acc[4 * i + 2 * h + e] * iv;
          if (sc == 0.0f) sc = 0.0f;  // -0 -> +0
          if (sc > best[h]) {
            best[h] = sc;
            bj[h] = col;
          }
        }
      }
    }
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {  // the 4 lanes of a quad share the row
      const float ob = __shfl_xor_sync(0xffffffffu, best[h], off);
      const int64_t oj = __shfl_xor_sync(0xffffffffu, bj[h], off);
      if (ob > best[h] || (ob == best[h] && oj < bj[h])) {
        best[h] = ob;
        bj[h] = oj;
      }
    }
    const int64_t grow = r0 + 8 * h;
    if ((lane & 3) == 0 && grow < rows && bj[h] != INT64_MAX) {
      const unsigned long long key = (static_cast<unsigned long long>(ordered_bits(best[h])) << 32) |
                                     static_cast<unsigned long long>(0xFFFFFFFFu - static_cast<uint32_t>(bj[h]));
      const unsigned long long cur = *reinterpret_cast<volatile unsigned long long*>(keys + grow);
      if (key > cur) atomicMax(keys + grow, key);
    }
  }
}
#endif  // STYLESWAP_WGMMA_DEVICE

template <Mode MODE>
__global__ void __launch_bounds__(WG_THREADS, 1)
    wgmma_match_kernel(const char* __restrict__ A, const char* __restrict__ B, const float* __restrict__ inv_norm,
                       int64_t rows, int64_t n_s, int64_t row_bytes, int tiles_m, int tiles_n,
                       unsigned long long* __restrict__ keys) {
#ifdef STYLESWAP_WGMMA_DEVICE
  extern __shared__ unsigned char smem_raw[];
  const uint32_t raw = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw));
  const uint32_t base = (raw + 1023u) & ~1023u;  // swizzle atoms need 1024-byte alignment

  const int tid = threadIdx.x, wg = tid >> 7, warp_in_wg = (tid & 127) >> 5, lane = tid & 31;

  int tm, tn;
  block_tile(tiles_m, tiles_n, tm, tn);  // the WMMA kernel's block swizzle

  const char* Ag = A + static_cast<size_t>(tm) * WG_BM * row_bytes;
  const char* Bg = B + static_cast<size_t>(tn) * WG_BN * row_bytes;
  const int KT = static_cast<int>((row_bytes + WG_SLICE - 1) / WG_SLICE);

  auto load_slice = [&](int kt, int slot) {
    const uint32_t st = base + slot * WG_STAGE_BYTES;
    const int64_t koff = static_cast<int64_t>(kt) * WG_SLICE;
#pragma unroll
    for (int q = tid; q < WG_CHUNKS; q += WG_THREADS) {
      const int r = q >> 3, c = q & 7;
      const bool is_a = r < WG_BM;
      const int rr = is_a ? r : r - WG_BM;
      const char* row = (is_a ? Ag : Bg) + static_cast<size_t>(rr) * row_bytes;
      const int64_t off = koff + c * 16;
      const bool inside = off < row_bytes;
      cp_async16_zfill(st + (is_a ? 0u : static_cast<uint32_t>(WG_A_BYTES)) + swizzled(rr, c), inside ? row + off : row,
                       inside ? 16 : 0);
    }
  };

  float acc[128];
#pragma unroll
  for (int i = 0; i < 128; ++i) acc[i] = 0.0f;

#pragma unroll
  for (int s = 0; s < WG_STAGES - 2; ++s) {
    if (s < KT) load_slice(s, s);
    cp_async_commit();
  }
  for (int kt = 0; kt < KT; ++kt) {
    cp_async_wait<WG_STAGES - 3>();  // slice kt has landed (slice kt+1 may still be in flight)
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    const int next = kt + WG_STAGES - 2;
    if (next < KT) load_slice(next, next % WG_STAGES);  // the slot of slice kt-2: its wgmma are done
    cp_async_commit();

    const uint32_t st = base + (kt % WG_STAGES) * WG_STAGE_BYTES;
    const uint64_t da = smem_desc(st + wg * 64 * WG_SLICE);
    const uint64_t db = smem_desc(st + WG_A_BYTES);
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
    fence_operands(acc);
#pragma unroll
    for (int j = 0; j < 4; ++j) wgmma_m64n256<MODE>(acc, da + 2 * j, db + 2 * j, 1);  // +32 B per k-step
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
    fence_operands(acc);
  }
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
  fence_operands(acc);
  cp_async_wait<0>();

  argmax_epilogue(acc, tm, tn, wg, warp_in_wg, lane, inv_norm, rows, n_s, keys);
#endif  // STYLESWAP_WGMMA_DEVICE
}

template <Mode MODE>
__global__ void __launch_bounds__(TMA_THREADS, 1)
    wgmma_tma_match_kernel(const __grid_constant__ CUtensorMap map_a, const __grid_constant__ CUtensorMap map_b,
                           const float* __restrict__ inv_norm, int64_t rows, int64_t n_s, int k_slices, int tiles_m,
                           int tiles_n, unsigned long long* __restrict__ keys) {
#ifdef STYLESWAP_WGMMA_DEVICE
  extern __shared__ unsigned char smem_raw[];
  const uint32_t raw = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw));
  const uint32_t base = (raw + 1023u) & ~1023u;  // swizzle atoms need 1024-byte alignment
  const uint32_t full0 = base + TMA_BAR_OFFSET, empty0 = full0 + 8 * WG_STAGES;

  const int tid = threadIdx.x;
  if (tid == 0) {
#pragma unroll
    for (int s = 0; s < WG_STAGES; ++s) {
      mbar_init(full0 + 8 * s, 1);            // the producer's arrive (+ the TMA bytes)
      mbar_init(empty0 + 8 * s, WG_THREADS / 32);  // lane 0 of every consumer warp
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  const int tiles = tiles_m * tiles_n;
  constexpr int SLICE_ELEMS = WG_SLICE / (MODE == Mode::TF32 ? 4 : 2);

  if (tid >= WG_THREADS) {  // the producer warp; one thread issues everything
    if (tid == WG_THREADS) {
      asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(&map_a)) : "memory");
      asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(&map_b)) : "memory");
      int s = 0;
      uint32_t ph = 0;
      for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
        int tm, tn;
        tile_coords(t, tiles_m, tiles_n, tm, tn);
        for (int kt = 0; kt < k_slices; ++kt) {
          mbar_wait(empty0 + 8 * s, ph ^ 1u);
          const uint32_t st = base + s * WG_STAGE_BYTES, full = full0 + 8 * s;
          mbar_arrive_expect_tx(full, WG_STAGE_BYTES);
          tma_load_2d(st, &map_a, kt * SLICE_ELEMS, tm * WG_BM, full);
          tma_load_2d(st + WG_A_BYTES, &map_b, kt * SLICE_ELEMS, tn * WG_BN, full);
          if (++s == WG_STAGES) {
            s = 0;
            ph ^= 1u;
          }
        }
      }
      for (int i = 0; i < WG_STAGES; ++i) {  // drain: every slot released before this thread exits
        mbar_wait(empty0 + 8 * s, ph ^ 1u);
        if (++s == WG_STAGES) {
          s = 0;
          ph ^= 1u;
        }
      }
    }
    return;
  }

  const int wg = tid >> 7, warp_in_wg = (tid & 127) >> 5, lane = tid & 31;
  float acc[128];
#pragma unroll
  for (int i = 0; i < 128; ++i) acc[i] = 0.0f;
  int s = 0;
  uint32_t ph = 0;
  for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
    int tm, tn;
    tile_coords(t, tiles_m, tiles_n, tm, tn);
    int prev = -1;  // the slot whose MMAs were issued in the previous iteration
    for (int kt = 0; kt < k_slices; ++kt) {
      mbar_wait(full0 + 8 * s, ph);
      const uint32_t st = base + s * WG_STAGE_BYTES;
      const uint64_t da = smem_desc(st + wg * 64 * WG_SLICE);
      const uint64_t db = smem_desc(st + WG_A_BYTES);
      asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
      fence_operands(acc);
#pragma unroll
      for (int j = 0; j < 4; ++j) wgmma_m64n256<MODE>(acc, da + 2 * j, db + 2 * j, (kt | j) != 0);
      asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
      asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");  // slice kt-1's MMAs are done
      fence_operands(acc);
      // One arrival per warp (CUTLASS's pipelines signal once per warpgroup): wait_group is
      // .sync.aligned, so every lane of this warp is past it when lane 0 arrives.
      if (prev >= 0 && lane == 0) mbar_arrive(empty0 + 8 * prev);
      prev = s;
      if (++s == WG_STAGES) {
        s = 0;
        ph ^= 1u;
      }
    }
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    fence_operands(acc);
    if (lane == 0) mbar_arrive(empty0 + 8 * prev);
    argmax_epilogue(acc, tm, tn, wg, warp_in_wg, lane, inv_norm, rows, n_s, keys);
  }
#endif  // STYLESWAP_WGMMA_DEVICE
}

// Whether the cubin loaded on `device` was built for sm_90a (asked once per device).
bool wgmma_loaded(int device) {
  static std::mutex mu;
  static std::vector<int> cache;  // -1 unknown, 0 no, 1 yes
  std::lock_guard<std::mutex> lock(mu);
  // torch's -1 = "current device" (reachable through _C.wgmma_available(-1)); indexing the cache
  // with it would read out of bounds.
  if (device < 0) device = c10::cuda::current_device();
  if (cache.size() <= static_cast<size_t>(device)) cache.resize(device + 1, -1);
  if (cache[device] < 0) {
    const auto* prop = at::cuda::getDeviceProperties(device);
    if (prop->major != 9) {
      cache[device] = 0;
    } else {
      const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
      at::Tensor flag = at::zeros({1}, at::TensorOptions().device(at::kCUDA, device).dtype(at::kInt));
      wgmma_probe_kernel<<<1, 1, 0, at::cuda::getCurrentCUDAStream()>>>(flag.data_ptr<int>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      cache[device] = flag.item<int>();
    }
  }
  return cache[device] == 1;
}

}  // namespace

bool wgmma_available(int device) { return wgmma_loaded(device); }

bool launch_match_wgmma(WgmmaKernel which, Mode mode, const at::Tensor& A, const at::Tensor& B,
                        const at::Tensor& inv_norm, int64_t rows, int64_t n_s, unsigned long long* keys,
                        cudaStream_t stream) {
  if (mode == Mode::TF32X3 || !wgmma_loaded(A.get_device())) return false;
  const int64_t row_bytes = A.size(1) * A.element_size();
  TORCH_INTERNAL_ASSERT(row_bytes % 16 == 0 && B.size(1) == A.size(1) && B.size(0) % WG_BN == 0);
  const int64_t tiles_m = (rows + WG_BM - 1) / WG_BM, tiles_n = B.size(0) / WG_BN;
  TORCH_INTERNAL_ASSERT(tiles_m * WG_BM <= A.size(0) && tiles_n * WG_BN >= n_s);
  TORCH_CHECK(tiles_m * tiles_n <= INT32_MAX && tiles_n * GROUP_M <= INT32_MAX, "match_patches: too many tiles");
  const float* inv = inv_norm.data_ptr<float>();

  if (which == WgmmaKernel::Tma) {
    CUtensorMap map_a, map_b;
    if (!make_kmajor_tensor_map(A, WG_BM, &map_a) || !make_kmajor_tensor_map(B, WG_BN, &map_b)) return false;
    const int64_t k_slices = (row_bytes + WG_SLICE - 1) / WG_SLICE;
    // The consumers release "the previous slot" of a tile; with no slice there is none (and no tile
    // means an empty grid): neither can happen for a non-empty bank, asserted all the same.
    TORCH_INTERNAL_ASSERT(k_slices >= 1 && tiles_m * tiles_n >= 1);
    const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
    const auto grid = static_cast<unsigned int>(std::min(tiles_m * tiles_n, sms));  // persistent: 1 CTA per SM
    auto launch = [&](auto kernel) {
      C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, TMA_SMEM_BYTES));
      kernel<<<grid, TMA_THREADS, TMA_SMEM_BYTES, stream>>>(map_a, map_b, inv, rows, n_s, static_cast<int>(k_slices),
                                                            static_cast<int>(tiles_m), static_cast<int>(tiles_n), keys);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    switch (mode) {
      case Mode::BF16: launch(wgmma_tma_match_kernel<Mode::BF16>); break;
      case Mode::FP16: launch(wgmma_tma_match_kernel<Mode::FP16>); break;
      case Mode::TF32: launch(wgmma_tma_match_kernel<Mode::TF32>); break;
      default: return false;
    }
    return true;
  }

  const auto* a = static_cast<const char*>(A.data_ptr());
  const auto* b = static_cast<const char*>(B.data_ptr());
  auto launch = [&](auto kernel) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, WG_SMEM_BYTES));
    kernel<<<static_cast<unsigned int>(tiles_m * tiles_n), WG_THREADS, WG_SMEM_BYTES, stream>>>(
        a, b, inv, rows, n_s, row_bytes, static_cast<int>(tiles_m), static_cast<int>(tiles_n), keys);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  };
  switch (mode) {
    case Mode::BF16: launch(wgmma_match_kernel<Mode::BF16>); break;
    case Mode::FP16: launch(wgmma_match_kernel<Mode::FP16>); break;
    case Mode::TF32: launch(wgmma_match_kernel<Mode::TF32>); break;
    default: return false;
  }
  return true;
}

}  // namespace match_detail
}  // namespace styleswap
