// CPU kernel of match_ivf: the approximate search of csrc/approx_index.cpp, its heavy part as BLAS GEMMs.
//
// Per sample, the three steps of approx_index.cpp:
//  1. Candidates. Content patches go in chunks of CHUNK rows. For a chunk: its reduced patch rows (from
//     the content projected on the basis), one GEMM of the rows by the centroids, each row's `probes`
//     best clusters, then the probes grouped by cluster (a counting sort) so that every cluster is one
//     GEMM: the rows that probe it (gathered) times the cluster's reduced style rows (contiguous in the
//     index, pre-scaled, so the GEMM gives the reduced scores). Threads take whole clusters, largest
//     work first; each (row, probe) keeps its SLOT best patches, in its own place.
//  2. Rerank. Each row's `candidates` best of those get the exact score, from the content's and the
//     styles' pixels (k runs of k*C contiguous values each); the best wins.
//  3. Refine (`refine` passes, each over the whole grid from the last pass's choices): a patch also
//     tries its 8 neighbours' choices shifted back by the neighbour's offset (StyleTable::shifted).
// Controls (approx_index.cpp): step 1 ranks only the clusters of the row's label (a row may then have
// fewer probes), step 3 skips a choice of another label, and the previous choice is one more candidate of
// step 2; every exact score of a row's previous choice carries the bonus temporal_weight * ||c||.
// Ties everywhere: the lowest bank index. Every result is written by the one thread that owns its row
// or its (row, probe) entry, so the indices are the same for any thread count given the index.
//
// Memory: the chunk's reduced rows (CHUNK x dims k^2), its centroid scores (CHUNK x K) and candidates
// (CHUNK x probes x SLOT), one choice and score per content patch, the content's and the styles' pixels
// in (y, x, c) order, per-thread tiles, and the index: O(n_c + n_s * dims k^2), no n_c x n_s anything.
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
#include "isa.h"

namespace styleswap {
namespace {

constexpr int64_t CHUNK = 65536;    // content patches per chunk of step 1
constexpr int64_t ROW_TILE = 4096;  // gathered content rows per GEMM (a whole cluster's at 1024 px)
constexpr int64_t COL_TILE = 1024;  // style rows per GEMM (a cluster larger than this takes several)
constexpr int64_t RANK_ROWS = 8192;  // content rows per centroid-ranking GEMM (8192 x K scores, 16 MB at K = 508)

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

// The hot loops are built for AVX-512, AVX2 and the baseline, the one to run picked once per process
// (csrc/cpu/isa.h: the best this CPU runs, or STYLESWAP_CPU_ISA). The extension is otherwise built for
// the baseline x86-64. Each process always runs the same one, so the results stay deterministic there.

// <a, b> over n values, four independent contiguous streams (vectorised, fixed order: deterministic).
template <typename scalar_t>
STYLESWAP_ALWAYS_INLINE scalar_t dot_body(const scalar_t* a, const scalar_t* b, int64_t n) {
  const int64_t q = n / 4;
  scalar_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
  for (int64_t i = 0; i < q; ++i) {
    s0 += a[i] * b[i];
    s1 += a[i + q] * b[i + q];
    s2 += a[i + 2 * q] * b[i + 2 * q];
    s3 += a[i + 3 * q] * b[i + 3 * q];
  }
  for (int64_t i = 4 * q; i < n; ++i) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}
STYLESWAP_ISA_CLONES(dot, dot_body)

// One style row's scores v[0..n) against n content rows' best (b1, i1) and second best (b2, i2), `id`
// its place: a strict > keeps the earlier place among equal scores. Branch-free, one type: vectorised.
template <typename scalar_t>
STYLESWAP_ALWAYS_INLINE void keep_top2_body(const scalar_t* v, int64_t n, scalar_t id, scalar_t* b1, scalar_t* b2,
                                            scalar_t* i1, scalar_t* i2) {
#pragma omp simd
  for (int64_t r = 0; r < n; ++r) {
    const bool gt1 = v[r] > b1[r], gt2 = v[r] > b2[r];
    b2[r] = gt1 ? b1[r] : (gt2 ? v[r] : b2[r]);
    i2[r] = gt1 ? i1[r] : (gt2 ? id : i2[r]);
    b1[r] = gt1 ? v[r] : b1[r];
    i1[r] = gt1 ? id : i1[r];
  }
}
STYLESWAP_ISA_CLONES(keep_top2, keep_top2_body)

// (score, bank index) ordered by score, then the lower index.
template <typename scalar_t>
inline bool beats(scalar_t v, int64_t i, scalar_t w, int64_t j) {
  return v > w || (v == w && i < j);
}

// Insert (v, i) into the descending list (vals, ids) of length r if it beats the last entry.
template <typename scalar_t>
inline void keep_best(scalar_t* vals, int64_t* ids, int64_t r, scalar_t v, int64_t i) {
  if (!beats(v, i, vals[r - 1], ids[r - 1])) return;
  int64_t pos = r - 1;
  while (pos > 0 && beats(v, i, vals[pos - 1], ids[pos - 1])) vals[pos] = vals[pos - 1], ids[pos] = ids[pos - 1], --pos;
  vals[pos] = v, ids[pos] = i;
}

template <typename scalar_t>
struct Sample {  // one content sample and its view of the styles and the index
  // the content's padded pixels (Hp, Wp, C) and the content on the reduced basis (dims, H, W)
  const scalar_t* pixels;
  const scalar_t* reduced;
  int64_t C, H, W, Wp, dims, grid_h, grid_w;
  // the reduced index
  const int64_t* order;    // (n_s)
  const int64_t* offsets;  // (K + 1)
  at::Tensor sorted, centroids;  // (n_s, Dr), (K, Dr)
  int64_t K, Dr;
  // the styles: pixel table (P, C), inv_norm (n_s), grids
  const StyleTable* table;
  const scalar_t* style_pixels;
  const scalar_t* inv;
  // the controls (null = off): the content patches' labels (n_c), the bank rows' (n_s), the clusters' (K);
  // the previous choices (n_c) and their bonus (n_c)
  const int64_t* content_labels = nullptr;
  const int64_t* bank_labels = nullptr;
  const int64_t* cluster_labels = nullptr;
  const int64_t* previous = nullptr;
  const scalar_t* bonus = nullptr;

  // The exact score of content grid cell i against bank row m.
  scalar_t exact(int64_t i, int64_t m, int64_t k, int64_t s) const {
    const int64_t t = table->style_of(m), local = m - table->grids[3 * t], gw = table->grids[3 * t + 2];
    const int64_t sw = table->width[t];
    const scalar_t* sp = style_pixels + (table->pixel0[t] + (local / gw) * s * sw + (local % gw) * s) * C;
    const scalar_t* cp = pixels + ((i / grid_w) * s * Wp + (i % grid_w) * s) * C;
    scalar_t acc = 0;
    for (int64_t dy = 0; dy < k; ++dy) acc += dot(cp + dy * Wp * C, sp + dy * sw * C, k * C);
    return acc * inv[m];
  }
  // The score the choice maximises (match_controls.h): the exact score, plus the bonus for the previous choice.
  scalar_t controlled(int64_t i, int64_t m, int64_t k, int64_t s) const {
    const scalar_t v = exact(i, m, k, s);
    return previous != nullptr && previous[i] == m ? v + bonus[i] : v;
  }
  // Whether content cell i may take bank row m (its label).
  bool allowed(int64_t i, int64_t m) const { return content_labels == nullptr || bank_labels[m] == content_labels[i]; }
  // ||c|| of content cell i.
  scalar_t content_norm(int64_t i, int64_t k, int64_t s) const {
    const scalar_t* cp = pixels + ((i / grid_w) * s * Wp + (i % grid_w) * s) * C;
    scalar_t acc = 0;
    for (int64_t dy = 0; dy < k; ++dy) acc += dot(cp + dy * Wp * C, cp + dy * Wp * C, k * C);
    return std::sqrt(acc);
  }
};

struct Params {
  int64_t k, s, probes, candidates, refine;
};

// Steps 1 and 2 for content patches [p0, p0 + m): the choice and exact score of each.
template <typename scalar_t>
void search_chunk(const Sample<scalar_t>& x, const Params& P, int64_t p0, int64_t m, at::Tensor& rows,
                  int64_t* choice, scalar_t* score) {
  const int64_t K = x.K, Dr = x.Dr, p = P.probes, R = P.candidates, k = P.k, s = P.s;
  const scalar_t neg_inf = -std::numeric_limits<scalar_t>::infinity();
  const int64_t no_index = std::numeric_limits<int64_t>::max();
  scalar_t* rows_p = rows.data_ptr<scalar_t>();
  at::parallel_for(0, m, 256, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      copy_patch(x.reduced, x.dims, x.H, x.W, ((p0 + r) / x.grid_w) * s, ((p0 + r) % x.grid_w) * s, k,
                 rows_p + r * Dr);
  });
  // Each row's p best clusters (score, then lowest cluster id); empty clusters never, nor (with labels)
  // those of another label: a row with fewer clusters of its label keeps fewer probes (-1 = none).
  // The centroid scores are made RANK_ROWS rows at a time in one reused buffer (a chunk's all at once
  // would be m x K, 130 MB at 1024 px, mapped and page-faulted afresh by every search).
  std::vector<int64_t> probe(m * p);
  at::Tensor cs = at::empty({std::min(RANK_ROWS, m), K}, rows.options());
  for (int64_t q0 = 0; q0 < m; q0 += RANK_ROWS) {
    const int64_t mq = std::min(RANK_ROWS, m - q0);
    at::Tensor cs_q = cs.narrow(0, 0, mq);
    at::mm_out(cs_q, rows.narrow(0, q0, mq), x.centroids.t());
    const scalar_t* cs_p = cs_q.data_ptr<scalar_t>();
    at::parallel_for(q0, q0 + mq, 256, [&](int64_t r0, int64_t r1) {
      std::vector<int64_t> top(p);
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* sc = cs_p + (r - q0) * K;
        const int64_t label = x.content_labels ? x.content_labels[p0 + r] : 0;
        int64_t filled = 0;
        for (int64_t c = 0; c < K; ++c) {
          if (x.offsets[c + 1] == x.offsets[c] || (x.cluster_labels && x.cluster_labels[c] != label)) continue;
          if (filled == p && !(sc[c] > sc[top[p - 1]])) continue;
          int64_t pos = filled < p ? filled++ : p - 1;
          while (pos > 0 && sc[c] > sc[top[pos - 1]]) top[pos] = top[pos - 1], --pos;
          top[pos] = c;
        }
        std::fill(top.begin() + filled, top.end(), int64_t{-1});
        std::copy(top.begin(), top.end(), probe.begin() + r * p);
      }
    });
  }
  // Counting sort of the probes by cluster: members[start[c] .. start[c+1]) are the entries
  // (row * p + slot) that probe cluster c, rows ascending; where[e] is entry e's place there (-1: none).
  std::vector<int64_t> start(K + 1, 0), members(m * p), where(m * p, -1), schedule(K);
  for (int64_t e = 0; e < m * p; ++e)
    if (probe[e] >= 0) ++start[probe[e] + 1];
  for (int64_t c = 0; c < K; ++c) start[c + 1] += start[c];
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t e = 0; e < m * p; ++e)
      if (probe[e] >= 0) where[e] = fill[probe[e]], members[fill[probe[e]]++] = e;
  }
  // Largest GEMMs first, so that the threads finish together.
  std::iota(schedule.begin(), schedule.end(), 0);
  std::stable_sort(schedule.begin(), schedule.end(), [&](int64_t a, int64_t b) {
    return (start[a + 1] - start[a]) * (x.offsets[a + 1] - x.offsets[a]) >
           (start[b + 1] - start[b]) * (x.offsets[b + 1] - x.offsets[b]);
  });
  // Each entry keeps its SLOT = 2 best (reduced score, bank index) in cand_*[where[e] * 2 ...]: a
  // cluster's entries are contiguous there, so no thread writes next to another's.
  static_assert(SLOT == 2, "step 1 keeps a best and a second best per (row, probe)");
  std::vector<scalar_t> cand_score(m * p * 2, neg_inf);
  std::vector<int64_t> cand_idx(m * p * 2, no_index);
  std::atomic<int64_t> next{0};
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    at::Tensor buf = at::zeros({ROW_TILE, Dr}, rows.options());  // columns past dims*k*k stay 0
    at::Tensor score_buf = at::empty({ROW_TILE * COL_TILE}, rows.options());
    scalar_t* buf_p = buf.data_ptr<scalar_t>();
    // best, second best and their places in the cluster, as scalar_t so that the loop is one type
    // (vectorised); a place is exact in float up to 2^24 (the cluster sizes are checked)
    std::vector<scalar_t> b1(ROW_TILE), b2(ROW_TILE), i1(ROW_TILE), i2(ROW_TILE);
    for (int64_t q = next++; q < K; q = next++) {
      const int64_t c = schedule[q], mc = start[c + 1] - start[c];
      const int64_t first = x.offsets[c], size = x.offsets[c + 1] - first;
      if (mc == 0) break;  // the schedule is sorted: only unprobed clusters remain
      for (int64_t e0 = 0; e0 < mc; e0 += ROW_TILE) {
        const int64_t mr = std::min(ROW_TILE, mc - e0);
        const int64_t* ent = members.data() + start[c] + e0;
        for (int64_t r = 0; r < mr; ++r) std::memcpy(buf_p + r * Dr, rows_p + (ent[r] / p) * Dr, Dr * sizeof(scalar_t));
        std::fill(b1.begin(), b1.begin() + mr, neg_inf);
        std::fill(b2.begin(), b2.begin() + mr, neg_inf);
        std::fill(i1.begin(), i1.begin() + mr, scalar_t(-1));
        std::fill(i2.begin(), i2.begin() + mr, scalar_t(-1));
        for (int64_t j0 = 0; j0 < size; j0 += COL_TILE) {
          const int64_t nt = std::min(COL_TILE, size - j0);
          // scores (nt, mr): style rows by content rows (the wide side last, where the GEMM is fastest)
          at::Tensor scores = score_buf.narrow(0, 0, nt * mr).view({nt, mr});
          at::mm_out(scores, x.sorted.narrow(0, first + j0, nt), buf.narrow(0, 0, mr).t());
          const scalar_t* tile = scores.data_ptr<scalar_t>();
          // Best and second best per content row; a cluster's rows are in ascending bank order, so the
          // earlier place is the lower bank index.
          for (int64_t j = 0; j < nt; ++j)
            keep_top2(tile + j * mr, mr, static_cast<scalar_t>(j0 + j), b1.data(), b2.data(), i1.data(), i2.data());
        }
        for (int64_t r = 0; r < mr; ++r) {
          const int64_t at = (start[c] + e0 + r) * 2;
          cand_score[at] = b1[r], cand_score[at + 1] = b2[r];
          cand_idx[at] = i1[r] < 0 ? no_index : x.order[first + static_cast<int64_t>(i1[r])];
          cand_idx[at + 1] = i2[r] < 0 ? no_index : x.order[first + static_cast<int64_t>(i2[r])];
        }
      }
    }
  });
  // Rerank: each row's R best candidates over its probes, and its previous choice, by the controlled score.
  at::parallel_for(0, m, 64, [&](int64_t r0, int64_t r1) {
    std::vector<scalar_t> vals(R);
    std::vector<int64_t> ids(R);
    for (int64_t r = r0; r < r1; ++r) {
      std::fill(vals.begin(), vals.end(), neg_inf);
      std::fill(ids.begin(), ids.end(), no_index);
      for (int64_t e = r * p; e < (r + 1) * p && where[e] >= 0; ++e)
        for (int64_t t = where[e] * 2; t < (where[e] + 1) * 2 && cand_idx[t] != no_index; ++t)
          keep_best(vals.data(), ids.data(), R, cand_score[t], cand_idx[t]);
      scalar_t best = neg_inf;
      int64_t arg = no_index;
      for (int64_t t = 0; t < R && ids[t] != no_index; ++t) {
        const scalar_t v = x.controlled(p0 + r, ids[t], k, s);
        if (beats(v, ids[t], best, arg)) best = v, arg = ids[t];
      }
      if (x.previous != nullptr && x.allowed(p0 + r, x.previous[p0 + r])) {
        const int64_t prev = x.previous[p0 + r];
        const scalar_t v = x.controlled(p0 + r, prev, k, s);
        if (beats(v, prev, best, arg)) best = v, arg = prev;
      }
      choice[p0 + r] = arg, score[p0 + r] = best;
    }
  });
}

// Step 3: one refinement pass over the whole grid, from (choice, score) into (out, out_score).
template <typename scalar_t>
void refine_pass(const Sample<scalar_t>& x, const Params& P, const int64_t* choice, const scalar_t* score,
                 int64_t* out, scalar_t* out_score) {
  const int64_t grid_h = x.grid_h, grid_w = x.grid_w;
  at::parallel_for(0, grid_h * grid_w, 256, [&](int64_t i0, int64_t i1) {
    int64_t tried[NEIGHBOURS];
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t gy = i / grid_w, gx = i % grid_w;
      scalar_t best = score[i];
      int64_t arg = choice[i], n_tried = 0;
      for (int64_t q = 0; q < NEIGHBOURS; ++q) {
        const int64_t ny = gy + NEIGHBOUR_DY[q], nx = gx + NEIGHBOUR_DX[q];
        if (ny < 0 || ny >= grid_h || nx < 0 || nx >= grid_w) continue;
        const int64_t cand = x.table->shifted(choice[ny * grid_w + nx], NEIGHBOUR_DY[q], NEIGHBOUR_DX[q]);
        if (cand == choice[i] || !x.allowed(i, cand) || std::find(tried, tried + n_tried, cand) != tried + n_tried)
          continue;
        tried[n_tried++] = cand;
        const scalar_t v = x.controlled(i, cand, P.k, P.s);
        if (beats(v, cand, best, arg)) best = v, arg = cand;
      }
      out[i] = arg, out_score[i] = best;
    }
  });
}

template <typename scalar_t>
void match_sample(Sample<scalar_t>& x, const Params& P, double temporal_weight, int64_t* out) {
  const int64_t n_c = x.grid_h * x.grid_w, chunk = std::min(CHUNK, n_c);
  std::vector<scalar_t> bonus;
  if (x.previous != nullptr) {
    bonus.resize(n_c);
    at::parallel_for(0, n_c, 1024, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) bonus[i] = static_cast<scalar_t>(temporal_weight * x.content_norm(i, P.k, P.s));
    });
    x.bonus = bonus.data();
  }
  at::Tensor rows = at::zeros({chunk, x.Dr}, x.sorted.options());  // columns past dims*k*k stay 0
  std::vector<int64_t> choice(n_c), next_choice;
  std::vector<scalar_t> score(n_c), next_score;
  for (int64_t p0 = 0; p0 < n_c; p0 += chunk)
    search_chunk(x, P, p0, std::min(chunk, n_c - p0), rows, choice.data(), score.data());
  if (P.refine > 0) next_choice.resize(n_c), next_score.resize(n_c);
  for (int64_t it = 0; it < P.refine; ++it) {
    refine_pass(x, P, choice.data(), score.data(), next_choice.data(), next_score.data());
    choice.swap(next_choice), score.swap(next_score);
  }
  std::copy(choice.begin(), choice.end(), out);
}

at::Tensor match_ivf_cpu(const at::Tensor& content_in, at::TensorList styles, const at::Tensor& inv_norm,
                         const at::Tensor& basis, const at::Tensor& sorted, const at::Tensor& order,
                         const at::Tensor& offsets, const at::Tensor& centroids, int64_t k, int64_t s, int64_t probes,
                         int64_t candidates, int64_t refine, const std::optional<at::Tensor>& content_labels,
                         const std::optional<at::Tensor>& bank_labels, const std::optional<at::Tensor>& previous,
                         double temporal_weight) {
  const IvfArgs args = checked_ivf_args("match_ivf", content_in, styles, inv_norm, basis, sorted, order, offsets,
                                        centroids, k, s, probes, candidates, refine, content_labels, bank_labels,
                                        previous, temporal_weight);
  const at::Tensor& content = args.content;
  const MatchControls& ctl = args.controls;
  cpu_isa();  // a bad STYLESWAP_CPU_ISA fails here, before any thread starts
  const auto dtype = content.scalar_type();
  const int64_t N = content.size(0), C = content.size(1), H = content.size(2), W = content.size(3);
  const int64_t grid_h = covering_grid(H, k, s), grid_w = covering_grid(W, k, s), n_c = grid_h * grid_w;
  at::Tensor indices = at::empty({N, grid_h, grid_w}, content.options().dtype(at::kLong));
  const at::Tensor offs = offsets.contiguous(), ord = order.contiguous(), inv = inv_norm.to(dtype).contiguous();
  const StyleTable table = style_table(styles, k, s, sorted.size(0), dtype);
  AT_DISPATCH_FLOATING_TYPES(dtype, "match_ivf_cpu", [&] {
    for (int64_t n = 0; n < N; ++n) {
      const int64_t b = sorted.size(0) == 1 ? 0 : n;
      Sample<scalar_t> x;
      const at::Tensor pixels = padded_pixels(content[n], k, s);
      // The content on the reduced basis: (dims, H, W).
      const at::Tensor reduced = at::mm(basis[b].t(), content[n].view({C, H * W})).contiguous();
      x.pixels = pixels.data_ptr<scalar_t>();
      x.reduced = reduced.data_ptr<scalar_t>();
      x.C = C, x.H = H, x.W = W, x.Wp = pixels.size(1), x.dims = basis.size(2), x.grid_h = grid_h, x.grid_w = grid_w;
      x.sorted = sorted[b].contiguous();
      x.centroids = centroids[b].contiguous();
      x.order = ord[b].data_ptr<int64_t>();
      x.offsets = offs[b].data_ptr<int64_t>();
      x.K = centroids.size(1);
      x.Dr = sorted.size(2);
      x.table = &table;
      x.style_pixels = table.pixels[b].data_ptr<scalar_t>();
      x.inv = inv[b].data_ptr<scalar_t>();
      if (ctl.labels()) {
        x.content_labels = ctl.content_labels.data_ptr<int64_t>() + n * n_c;
        x.bank_labels = ctl.bank_labels.data_ptr<int64_t>();
        x.cluster_labels = args.cluster_labels[b].data_ptr<int64_t>();  // a row of a contiguous (B, K)
      }
      if (ctl.temporal()) x.previous = ctl.previous.data_ptr<int64_t>() + n * n_c;
      int64_t nonempty = 0;
      for (int64_t c = 0; c < x.K; ++c) {
        nonempty += x.offsets[c + 1] > x.offsets[c];
        TORCH_CHECK_VALUE(x.offsets[c + 1] - x.offsets[c] < (int64_t{1} << 24), "match_ivf: cluster ", c, " holds ",
                          x.offsets[c + 1] - x.offsets[c], " patches, more than the CPU kernel counts (2^24)");
      }
      const Params P{k, s, std::min(probes, nonempty), candidates, refine};
      match_sample<scalar_t>(x, P, ctl.temporal_weight, indices[n].data_ptr<int64_t>());
    }
  });
  return indices;
}

}  // namespace

TORCH_LIBRARY_IMPL(styleswap, CPU, m) { m.impl("match_ivf", &match_ivf_cpu); }

}  // namespace styleswap
