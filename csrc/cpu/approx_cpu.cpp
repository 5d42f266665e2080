// CPU kernel of match_ivf: the approximate search of csrc/approx_index.cpp as BLAS GEMMs.
//
// Content patches go in chunks of CHUNK rows. For a chunk: its patch rows (one buffer), one GEMM of
// the rows by the centroids, each row's `probes` best clusters, then the probes grouped by cluster
// (a counting sort) so that every cluster is one GEMM: the rows that probe it (gathered) times the
// cluster's style rows (contiguous in the sorted bank). Threads take whole clusters, largest work
// first; each GEMM writes a per-(row, probe) candidate, and each row's best candidate wins at the end
// (ties: lowest bank index). No result depends on which thread did what, so the indices are the same
// for any thread count given the index (the index itself: see ivf_build).
//
// Memory: the chunk's rows (CHUNK x D), its centroid scores (CHUNK x K) and per-thread tiles, besides
// the index (n_s x D): O(n_s * D) whatever the content size.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "../approx_index.h"
#include "../patch_grid.h"

namespace styleswap {
namespace {

constexpr int64_t CHUNK = 65536;    // content patches per chunk (~600 MB of rows at D = 2304; not tuned)
constexpr int64_t ROW_TILE = 1024;  // gathered content rows per GEMM
constexpr int64_t COL_TILE = 1024;  // style rows per GEMM (a cluster larger than this takes several)

// Patch (y0, x0) of a (C, H, W) stack into row[C*k*k] ordered (c, dy, dx), clamping past the border
// (the covering grid's replicate padding), as csrc/cpu/match_cpu.cpp does.
template <typename scalar_t>
void copy_patch(const scalar_t* src, int64_t C, int64_t H, int64_t W, int64_t y0, int64_t x0, int64_t k,
                scalar_t* row) {
  for (int64_t c = 0; c < C; ++c)
    for (int64_t dy = 0; dy < k; ++dy) {
      const scalar_t* line = src + (c * H + std::min(y0 + dy, H - 1)) * W;
      for (int64_t dx = 0; dx < k; ++dx) *row++ = line[std::min(x0 + dx, W - 1)];
    }
}

template <typename scalar_t>
struct Index {  // one sample's view of the IVF index
  const scalar_t* sorted;  // (n_s, Dp)
  const scalar_t* inv;     // (n_s)
  const int64_t* order;    // (n_s)
  const int64_t* offsets;  // (K + 1)
  at::Tensor sorted_t, centroids;
  int64_t K, Dp;
};

template <typename scalar_t>
void match_sample(const scalar_t* content, int64_t C, int64_t H, int64_t W, int64_t k, int64_t s,
                  const Index<scalar_t>& ix, int64_t probes, int64_t* out) {
  const int64_t grid_w = covering_grid(W, k, s), n_c = covering_grid(H, k, s) * grid_w;
  const int64_t K = ix.K, Dp = ix.Dp, chunk = std::min(CHUNK, n_c);
  const int64_t p = probes;
  const scalar_t neg_inf = -std::numeric_limits<scalar_t>::infinity();
  const int64_t no_index = std::numeric_limits<int64_t>::max();

  at::Tensor rows = at::zeros({chunk, Dp}, ix.sorted_t.options());  // columns past C*k*k stay 0
  scalar_t* rows_p = rows.data_ptr<scalar_t>();
  std::vector<int64_t> probe(chunk * p), start(K + 1), members(chunk * p), schedule(K);
  std::vector<scalar_t> cand_score(chunk * p);
  std::vector<int64_t> cand_idx(chunk * p);

  for (int64_t p0 = 0; p0 < n_c; p0 += chunk) {
    const int64_t m = std::min(chunk, n_c - p0);
    at::parallel_for(0, m, 256, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        copy_patch(content, C, H, W, ((p0 + r) / grid_w) * s, ((p0 + r) % grid_w) * s, k, rows_p + r * Dp);
    });
    // Each row's p best clusters (score, then lowest cluster id); empty clusters never.
    const at::Tensor cs = at::mm(rows.narrow(0, 0, m), ix.centroids.t()).contiguous();
    const scalar_t* cs_p = cs.data_ptr<scalar_t>();
    at::parallel_for(0, m, 256, [&](int64_t r0, int64_t r1) {
      std::vector<int64_t> top(p);
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* sc = cs_p + r * K;
        int64_t filled = 0;
        for (int64_t c = 0; c < K; ++c) {
          if (ix.offsets[c + 1] == ix.offsets[c]) continue;
          if (filled == p && !(sc[c] > sc[top[p - 1]])) continue;
          int64_t pos = filled < p ? filled++ : p - 1;
          while (pos > 0 && sc[c] > sc[top[pos - 1]]) top[pos] = top[pos - 1], --pos;
          top[pos] = c;
        }
        std::copy(top.begin(), top.end(), probe.begin() + r * p);
      }
    });
    // Counting sort of the probes by cluster: members[start[c] .. start[c+1]) are the entries
    // (row * p + slot) that probe cluster c, rows ascending.
    std::fill(start.begin(), start.end(), 0);
    for (int64_t e = 0; e < m * p; ++e) ++start[probe[e] + 1];
    for (int64_t c = 0; c < K; ++c) start[c + 1] += start[c];
    {
      std::vector<int64_t> fill(start.begin(), start.end() - 1);
      for (int64_t e = 0; e < m * p; ++e) members[fill[probe[e]]++] = e;
    }
    // Largest GEMMs first, so that the threads finish together.
    std::iota(schedule.begin(), schedule.end(), 0);
    std::stable_sort(schedule.begin(), schedule.end(), [&](int64_t a, int64_t b) {
      return (start[a + 1] - start[a]) * (ix.offsets[a + 1] - ix.offsets[a]) >
             (start[b + 1] - start[b]) * (ix.offsets[b + 1] - ix.offsets[b]);
    });
    std::atomic<int64_t> next{0};
    at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
      at::Tensor buf = at::empty({ROW_TILE, Dp}, rows.options());
      at::Tensor score_buf = at::empty({ROW_TILE * COL_TILE}, rows.options());
      scalar_t* buf_p = buf.data_ptr<scalar_t>();
      std::vector<scalar_t> best(ROW_TILE);
      std::vector<int64_t> arg(ROW_TILE);
      for (int64_t q = next++; q < K; q = next++) {
        const int64_t c = schedule[q], mc = start[c + 1] - start[c];
        const int64_t first = ix.offsets[c], size = ix.offsets[c + 1] - first;
        if (mc == 0) break;  // the schedule is sorted: only unprobed clusters remain
        for (int64_t e0 = 0; e0 < mc; e0 += ROW_TILE) {
          const int64_t mr = std::min(ROW_TILE, mc - e0);
          const int64_t* ent = members.data() + start[c] + e0;
          for (int64_t r = 0; r < mr; ++r)
            std::memcpy(buf_p + r * Dp, rows_p + (ent[r] / p) * Dp, Dp * sizeof(scalar_t));
          std::fill(best.begin(), best.begin() + mr, neg_inf);
          std::fill(arg.begin(), arg.begin() + mr, no_index);
          for (int64_t j0 = 0; j0 < size; j0 += COL_TILE) {
            const int64_t nt = std::min(COL_TILE, size - j0);
            at::Tensor scores = score_buf.narrow(0, 0, mr * nt).view({mr, nt});
            at::mm_out(scores, buf.narrow(0, 0, mr), ix.sorted_t.narrow(0, first + j0, nt).t());
            const scalar_t* iv = ix.inv + first + j0;
            const int64_t* ord = ix.order + first + j0;
            for (int64_t r = 0; r < mr; ++r) {
              const scalar_t* row = scores.data_ptr<scalar_t>() + r * nt;
              scalar_t row_max = neg_inf;
#pragma omp simd reduction(max : row_max)
              for (int64_t j = 0; j < nt; ++j) row_max = std::max(row_max, row[j] * iv[j]);
              if (row_max < best[r]) continue;
              // Sorted rows are not in bank order: among equal maxima take the lowest bank index.
              int64_t lowest = no_index;
              for (int64_t j = 0; j < nt; ++j)
                if (row[j] * iv[j] == row_max) lowest = std::min(lowest, ord[j]);
              if (row_max > best[r] || lowest < arg[r]) best[r] = row_max, arg[r] = lowest;
            }
          }
          for (int64_t r = 0; r < mr; ++r) cand_score[ent[r]] = best[r], cand_idx[ent[r]] = arg[r];
        }
      }
    });
    at::parallel_for(0, m, 1024, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        scalar_t b = neg_inf;
        int64_t a = no_index;
        for (int64_t t = r * p; t < (r + 1) * p; ++t)
          if (cand_score[t] > b || (cand_score[t] == b && cand_idx[t] < a)) b = cand_score[t], a = cand_idx[t];
        out[p0 + r] = a;
      }
    });
  }
}

at::Tensor match_ivf_cpu(const at::Tensor& content_in, const at::Tensor& sorted, const at::Tensor& sorted_inv,
                         const at::Tensor& order, const at::Tensor& offsets, const at::Tensor& centroids, int64_t k,
                         int64_t s, int64_t probes) {
  check_ivf_index("match_ivf", content_in, sorted, sorted_inv, order, offsets, centroids, k, s, probes);
  const at::Tensor content = content_in.to(sorted.scalar_type()).contiguous();
  TORCH_CHECK_VALUE(at::isfinite(content).all().item<bool>(), "match_patches: content contains NaN or Inf");
  const int64_t N = content.size(0), C = content.size(1), H = content.size(2), W = content.size(3);
  at::Tensor indices =
      at::empty({N, covering_grid(H, k, s), covering_grid(W, k, s)}, content.options().dtype(at::kLong));
  const at::Tensor offs = offsets.contiguous(), ord = order.contiguous(), inv = sorted_inv.contiguous();
  AT_DISPATCH_FLOATING_TYPES(sorted.scalar_type(), "match_ivf_cpu", [&] {
    for (int64_t n = 0; n < N; ++n) {
      const int64_t b = sorted.size(0) == 1 ? 0 : n;
      Index<scalar_t> ix;
      ix.sorted_t = sorted[b].contiguous();
      ix.centroids = centroids[b].contiguous();
      ix.sorted = ix.sorted_t.template data_ptr<scalar_t>();
      ix.inv = inv[b].template data_ptr<scalar_t>();
      ix.order = ord[b].data_ptr<int64_t>();
      ix.offsets = offs[b].data_ptr<int64_t>();
      ix.K = centroids.size(1);
      ix.Dp = sorted.size(2);
      int64_t nonempty = 0;
      for (int64_t c = 0; c < ix.K; ++c) nonempty += ix.offsets[c + 1] > ix.offsets[c];
      match_sample<scalar_t>(content.data_ptr<scalar_t>() + n * C * H * W, C, H, W, k, s, ix,
                             std::min(probes, nonempty), indices[n].data_ptr<int64_t>());
    }
  });
  return indices;
}

}  // namespace

TORCH_LIBRARY_IMPL(styleswap, CPU, m) { m.impl("match_ivf", &match_ivf_cpu); }

}  // namespace styleswap
