// Approximate patch search, the parts that run on any device (ATen ops only).
//
//   ivf_build      a prepared bank -> an inverted-file (IVF) index of its style patches:
//                  spherical k-means of the patch directions (trained on a seeded sample), every patch
//                  assigned to its nearest centroid, the bank rows sorted by cluster. The bank rows may be
//                  split into groups (styleswap_ext/ops.py: build_index makes one per style and label):
//                  each group then gets its own clusters, so that every cluster holds one style and one
//                  label, and a group's centroids carry its weight (see "Controls" below). The search
//                  builds it over the bank of the styles reduced to their principal channels.
//   match_ivf_aten content, styles, an index -> indices: the same search as the CPU kernel of match_ivf
//                  (csrc/cpu/approx_cpu.cpp), written with ATen ops so that it runs on every device;
//                  it is match_ivf's CUDA kernel and, on the CPU, a second implementation to test against.
//
// Search (the score is the exact op's, w * <c, s> / (||s|| + 1e-8)):
//  1. each content patch, projected on the basis, ranks the centroids by <c, centroid>, takes the `probes`
//     best clusters and ranks every style patch in them by the reduced score; each probe keeps its best
//     few (SLOT);
//  2. the `candidates` best of those get the exact score (full content patch against the style's pixels);
//     the best wins;
//  3. `refine` passes: each patch also tries its 8 grid neighbours' choices shifted back by the
//     neighbour's offset (PatchMatch's propagation) with the exact score.
// Ties everywhere: the best score, then the lowest index (cluster id in step 1's ranking of clusters,
// bank index elsewhere), on every device.
// Work per content patch, in full-patch dot products (D = C k^2, reduced rows dims k^2):
// (K + probes * n_s / K) * dims / C + candidates + 8 * refine, instead of n_s.
//
// Controls (those of match_bank, csrc/match_controls.h), so that the approximate search chooses like the
// exact one:
//  * style weights: the bank's inv_norm carries them (w / w_max), so the reduced rows and the exact scores
//    are weighted; the centroids of a group carry its style's weight too (group_weights), so that a content
//    patch ranks the clusters of a style weighted down as low as their patches will score.
//  * labels: every cluster holds one label (the index is built per label); a content patch only ranks the
//    clusters of its label (the others score -inf), and the refinement skips a neighbour's choice of another
//    label.
//  * temporal: the previous frame's choice is always one more candidate of step 2, and every exact score of
//    it (steps 2 and 3) gets the bonus temporal_weight * ||c||.
//
// Index layout (B = the bank's batch, K clusters, Dr = the reduced bank's row length):
//   sorted    (B, n_s, Dr) the reduced bank rows grouped by cluster, each times its inv_norm (so that a
//                          row times a reduced content patch is the reduced score)
//   order     (B, n_s)     int64, the bank index of each sorted row (ascending within a cluster)
//   offsets   (B, K + 1)   int64, cluster c is sorted rows [offsets[c], offsets[c + 1])
//   centroids (B, K, Dr)   unit vectors times their group's weight
// The compute dtype is float32 (float64 for float64 inputs).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <tuple>
#include <vector>

#include "approx_index.h"
#include "patch_grid.h"

namespace styleswap {

IvfArgs checked_ivf_args(const char* op, const at::Tensor& content, at::TensorList styles, const at::Tensor& inv_norm,
                         const at::Tensor& basis, const at::Tensor& sorted, const at::Tensor& order,
                         const at::Tensor& offsets, const at::Tensor& centroids, int64_t k, int64_t s, int64_t probes,
                         int64_t candidates, int64_t refine, const std::optional<at::Tensor>& content_labels,
                         const std::optional<at::Tensor>& bank_labels, const std::optional<at::Tensor>& previous,
                         double temporal_weight) {
  check_swap_args(op, content, /*is_indices=*/false, styles, k, s);
  TORCH_CHECK_VALUE(sorted.dim() == 3 && order.dim() == 2 && offsets.dim() == 2 && centroids.dim() == 3 &&
                        basis.dim() == 3,
                    op, ": not an IVF index (see ivf_build): ", basis.sizes(), sorted.sizes(), order.sizes(),
                    offsets.sizes(), centroids.sizes());
  const int64_t B = sorted.size(0), n_s = sorted.size(1), K = centroids.size(1), C = content.size(1);
  TORCH_CHECK_VALUE(order.size(0) == B && offsets.size(0) == B && centroids.size(0) == B && basis.size(0) == B &&
                        order.size(1) == n_s && offsets.size(1) == K + 1 && centroids.size(2) == sorted.size(2) &&
                        K >= 1 && n_s >= 1,
                    op, ": the IVF index tensors do not fit together");
  TORCH_CHECK_VALUE(B == 1 || B == content.size(0), op, ": the index has batch ", B, "; expected 1 or ",
                    content.size(0));
  TORCH_CHECK_VALUE(basis.size(1) == C, op, ": the index's basis is for ", basis.size(1),
                    "-channel features, content has ", C);
  TORCH_CHECK_VALUE(sorted.size(2) >= basis.size(2) * k * k, op, ": index rows hold ", sorted.size(2), " values, a ",
                    basis.size(2), "-channel reduced ", k, "x", k, " patch needs ", basis.size(2) * k * k);
  const StyleBank bank(styles, k, s);
  TORCH_CHECK_VALUE(bank.num_patches == n_s, op, ": the index holds ", n_s, " patches, the styles ", bank.num_patches);
  TORCH_CHECK_VALUE(inv_norm.dim() == 2 && inv_norm.size(0) == B && inv_norm.size(1) >= n_s, op, ": inv_norm ",
                    inv_norm.sizes(), " does not fit the index (batch ", B, ", ", n_s, " patches)");
  TORCH_CHECK_VALUE(probes >= 1, op, ": probes must be >= 1, got ", probes);
  TORCH_CHECK_VALUE(candidates >= 1, op, ": candidates must be >= 1, got ", candidates);
  TORCH_CHECK_VALUE(refine >= 0, op, ": refine must be >= 0, got ", refine);
  for (const auto* t : {&inv_norm, &basis, &sorted, &order, &offsets, &centroids})
    TORCH_CHECK_VALUE(t->device() == content.device(), op, ": the index is on ", t->device(), ", content on ",
                      content.device());
  const auto dtype = approx_dtype(content.scalar_type());
  TORCH_CHECK_TYPE(sorted.scalar_type() == dtype && centroids.scalar_type() == dtype && basis.scalar_type() == dtype,
                   op, ": a ", content.scalar_type(), " content needs a ", dtype, " index, got ", sorted.scalar_type());
  TORCH_CHECK_TYPE(order.scalar_type() == at::kLong && offsets.scalar_type() == at::kLong, op,
                   ": order and offsets must be int64");
  IvfArgs a;
  a.content = content.to(dtype).contiguous();
  TORCH_CHECK_VALUE(at::isfinite(a.content).all().item<bool>(), "match_patches: content contains NaN or Inf");
  a.controls = check_controls(op, content, n_s, covering_grid(content.size(2), k, s),
                              covering_grid(content.size(3), k, s), content_labels, bank_labels, previous,
                              temporal_weight);
  if (a.controls.labels()) {
    // Each cluster's label is that of its rows, which must all have it (build_index makes the clusters per
    // label): then ranking only the clusters of a content patch's label is the label filter of step 1.
    const at::Tensor row_labels = a.controls.bank_labels.index_select(0, order.flatten()).view({B, n_s});
    const at::Tensor rows = at::arange(n_s, order.options()).expand({B, n_s}).contiguous();
    const at::Tensor cluster_of_row =
        at::searchsorted(offsets.narrow(1, 1, K).contiguous(), rows, /*out_int32=*/false, /*right=*/true);
    a.cluster_labels = at::zeros({B, K}, order.options()).scatter_(1, cluster_of_row, row_labels);
    TORCH_CHECK_VALUE(at::equal(a.cluster_labels.gather(1, cluster_of_row), row_labels), op,
                      ": a cluster of the index holds patches of several labels: build the index with these "
                      "bank_labels (styleswap_ext.ops.build_index(..., bank_labels=...))");
  }
  return a;
}

StyleTable style_table(at::TensorList styles, int64_t k, int64_t s, int64_t batch, at::ScalarType dtype) {
  StyleTable table;
  std::vector<at::Tensor> parts;
  int64_t row = 0, pixel = 0;
  for (const auto& st : styles) {
    const int64_t H = st.size(2), W = st.size(3), gh = inner_grid(H, k, s), gw = inner_grid(W, k, s);
    table.grids.insert(table.grids.end(), {row, gh, gw});
    table.pixel0.push_back(pixel);
    table.width.push_back(W);
    parts.push_back(st.detach().to(dtype).expand({batch, -1, -1, -1}).permute({0, 2, 3, 1}).reshape({batch, H * W, -1}));
    row += gh * gw;
    pixel += H * W;
  }
  table.T = static_cast<int64_t>(styles.size());
  // one style (the common case): its permuted copy is the table; at::cat would copy it again
  table.pixels = parts.size() == 1 ? parts[0].contiguous() : at::cat(parts, 1).contiguous();
  return table;
}

at::Tensor padded_pixels(const at::Tensor& sample, int64_t k, int64_t s) {
  const int64_t H = sample.size(1), W = sample.size(2);
  const int64_t pad_h = (covering_grid(H, k, s) - 1) * s + k - H, pad_w = (covering_grid(W, k, s) - 1) * s + k - W;
  at::Tensor x = sample.unsqueeze(0);
  if (pad_h > 0 || pad_w > 0) x = at::pad(x, {0, pad_w, 0, pad_h}, "replicate");
  return x[0].permute({1, 2, 0}).contiguous();
}

namespace {

constexpr double NORM_EPS = 1e-8;
// k-means trains on this many style patches per cluster (a seeded random sample), for this many
// Lloyd iterations. Measured at 1024 px (n_s = 64,516, K = 254, 4 probes, docs/approximate_search.md):
// 32 per cluster x 8 iterations gave a mean score ratio of 0.9871 and cost 4x the training time of
// 16 x 5 (0.9854); 8 x 4 gave 0.9850. 16 x 5 keeps the training near 5 % of the whole search.
constexpr int64_t SAMPLE_PER_CLUSTER = 16;
constexpr int KMEANS_ITERS = 5;
constexpr int64_t ASSIGN_CHUNK = 32768;  // rows per GEMM when assigning every patch (bounds the n_s x K scores)

at::Tensor unit_rows(const at::Tensor& x) {
  return x / (at::linalg_vector_norm(x, 2, at::IntArrayRef{1}, /*keepdim=*/true) + NORM_EPS);
}

// Nearest centroid (largest <x, c>; the row norm of x does not change the argmax) of every row of x.
// One score buffer serves every chunk: a fresh one per chunk (tens of MB) would be mapped and
// page-faulted anew each time.
at::Tensor nearest_centroid(const at::Tensor& x, const at::Tensor& centroids) {
  const int64_t n = x.size(0), K = centroids.size(0);
  at::Tensor assign = at::empty({n}, x.options().dtype(at::kLong));
  at::Tensor scores = at::empty({std::min(ASSIGN_CHUNK, n), K}, x.options());
  for (int64_t r0 = 0; r0 < n; r0 += ASSIGN_CHUNK) {
    const int64_t m = std::min(ASSIGN_CHUNK, n - r0);
    at::Tensor sc = scores.narrow(0, 0, m);
    at::mm_out(sc, x.narrow(0, r0, m), centroids.t());
    at::Tensor out = assign.narrow(0, r0, m);
    at::argmax_out(out, sc, 1);
  }
  return assign;
}

// Spherical k-means (Lloyd) on a seeded sample of the rows of x: K unit centroids. Deterministic:
// the sample comes from a CPU generator seeded with `seed`; centroid sums are an index_add_ on the
// CPU (a serial sum per cluster) and a one-hot GEMM on other devices (no atomics).
at::Tensor train_centroids(const at::Tensor& x, int64_t K, int64_t seed) {
  const int64_t n = x.size(0), m = std::min(n, SAMPLE_PER_CLUSTER * K);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed));
  const at::Tensor pick = at::randperm(n, gen, at::TensorOptions().dtype(at::kLong)).narrow(0, 0, m).to(x.device());
  const at::Tensor sample = unit_rows(x.index_select(0, pick));
  at::Tensor centroids = sample.narrow(0, 0, K).clone();
  for (int it = 0; it < KMEANS_ITERS; ++it) {
    const at::Tensor assign = at::mm(sample, centroids.t()).argmax(1);
    at::Tensor sums;
    if (x.is_cpu()) {
      sums = at::zeros_like(centroids).index_add_(0, assign, sample);
    } else {
      sums = at::mm(at::one_hot(assign, K).to(sample.scalar_type()).t(), sample);
    }
    const at::Tensor norms = at::linalg_vector_norm(sums, 2, at::IntArrayRef{1}, /*keepdim=*/true);
    // An empty cluster keeps its centroid (it may win members back next iteration).
    centroids = at::where(norms > 0, sums / norms.clamp_min(1e-30), centroids);
  }
  return centroids;
}

// groups (n_s) int64 in [0, G) (none: one group), clusters[g] of them for group g, whose centroids are
// scaled by group_weights[g] (none: 1).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> ivf_build(const at::Tensor& patches,
                                                                     const at::Tensor& inv_norm, int64_t n_s,
                                                                     at::IntArrayRef clusters, int64_t seed,
                                                                     const std::optional<at::Tensor>& groups,
                                                                     std::optional<at::ArrayRef<double>> group_weights) {
  const char* op = "ivf_build";
  TORCH_CHECK_VALUE(patches.dim() == 3 && inv_norm.dim() == 2 && patches.size(0) == inv_norm.size(0) &&
                        patches.size(1) == inv_norm.size(1),
                    op, ": patches (B, R, Dp) and inv_norm (B, R) do not fit together: ", patches.sizes(), " and ",
                    inv_norm.sizes());
  TORCH_CHECK_VALUE(n_s >= 1 && n_s <= patches.size(1), op, ": num_patches ", n_s, " does not fit a bank of ",
                    patches.size(1), " rows");
  TORCH_CHECK_VALUE(seed >= 0, op, ": seed must be >= 0, got ", seed);
  TORCH_CHECK_TYPE(at::isFloatingType(patches.scalar_type()), op, ": patches must be floating point");
  const int64_t G = static_cast<int64_t>(clusters.size());
  TORCH_CHECK_VALUE(G >= 1, op, ": clusters must hold one count per group, got none");
  // The rows of each group (ascending) and their count.
  std::vector<at::Tensor> members;
  std::vector<int64_t> sizes;
  if (groups.has_value()) {
    const at::Tensor& g = *groups;
    TORCH_CHECK_TYPE(g.scalar_type() == at::kLong, op, ": groups must be int64, got ", g.scalar_type());
    TORCH_CHECK_VALUE(g.dim() == 1 && g.size(0) == n_s, op, ": groups must be (", n_s, ",) (one per bank row), got ",
                      g.sizes());
    TORCH_CHECK_VALUE(g.device() == patches.device(), op, ": groups is on ", g.device(), ", patches on ",
                      patches.device());
    const auto [lo, hi] = at::aminmax(g);
    TORCH_CHECK_VALUE(lo.item<int64_t>() >= 0 && hi.item<int64_t>() < G, op, ": groups must be in [0, ", G,
                      ") (one cluster count per group)");
    const at::Tensor host = g.cpu();
    for (int64_t i = 0; i < G; ++i) members.push_back(at::nonzero(host == i).flatten().to(g.device()));
  } else {
    TORCH_CHECK_VALUE(G == 1, op, ": ", G, " cluster counts but no groups");
  }
  for (int64_t i = 0; i < G; ++i) {
    sizes.push_back(groups.has_value() ? members[i].size(0) : n_s);
    TORCH_CHECK_VALUE(clusters[i] >= 1 && clusters[i] <= sizes[i], op, ": clusters[", i, "] must be in [1, ",
                      sizes[i], "] (the rows of group ", i, "), got ", clusters[i]);
  }
  if (group_weights.has_value()) {
    TORCH_CHECK_VALUE(static_cast<int64_t>(group_weights->size()) == G, op, ": ", group_weights->size(),
                      " group_weights for ", G, " groups");
    for (int64_t i = 0; i < G; ++i)
      TORCH_CHECK_VALUE(std::isfinite((*group_weights)[i]) && (*group_weights)[i] > 0, op, ": group_weights[", i,
                        "] must be finite and > 0, got ", (*group_weights)[i]);
  }
  const auto dtype = approx_dtype(patches.scalar_type());
  const int64_t B = patches.size(0), K = std::accumulate(clusters.begin(), clusters.end(), int64_t{0});
  std::vector<at::Tensor> sorted, orders, offsets, centroids;
  for (int64_t b = 0; b < B; ++b) {
    const at::Tensor x = patches[b].narrow(0, 0, n_s).to(dtype);
    // k-means per group; cluster ids of group g follow those of the groups before it
    at::Tensor assign = groups.has_value() ? at::empty({n_s}, x.options().dtype(at::kLong)) : at::Tensor();
    std::vector<at::Tensor> cents;
    int64_t first = 0;
    for (int64_t i = 0; i < G; ++i) {
      const at::Tensor xg = groups.has_value() ? x.index_select(0, members[i]) : x;
      at::Tensor c = train_centroids(xg, clusters[i], seed);
      const at::Tensor a = nearest_centroid(xg, c) + first;
      if (groups.has_value()) {
        assign.index_copy_(0, members[i], a);
      } else {
        assign = a;
      }
      cents.push_back(group_weights.has_value() ? c * (*group_weights)[i] : c);
      first += clusters[i];
    }
    const at::Tensor c = at::cat(cents);
    // stable: a cluster's rows keep the bank order (the kernels' ties rely on it)
    const at::Tensor order = std::get<1>(at::sort(assign, /*stable=*/true, /*dim=*/0, /*descending=*/false));
    const at::Tensor counts = at::bincount(assign, {}, K);
    offsets.push_back(at::cat({at::zeros({1}, counts.options()), counts.cumsum(0)}));
    // Rows pre-scaled by their inv_norm: a row times a content patch is the (reduced) score itself.
    sorted.push_back(x.index_select(0, order).mul_(
        inv_norm[b].narrow(0, 0, n_s).to(dtype).index_select(0, order).unsqueeze(1)));
    orders.push_back(order);
    centroids.push_back(c);
  }
  // a bank of batch 1 (one shared style): a view, not a copy of the sorted rows (n_s x Dr, ~150 MB at 1024 px)
  const auto batched = [](const std::vector<at::Tensor>& v) { return v.size() == 1 ? v[0].unsqueeze(0) : at::stack(v); };
  return {batched(sorted), batched(orders), batched(offsets), batched(centroids)};
}

// Content patch rows [r0, r1) of the covering grid of one (C, H, W) sample as an (r1 - r0, Dp)
// matrix, values ordered (c, dy, dx) like the bank's rows, columns past C*k*k zero.
at::Tensor content_rows(const at::Tensor& x, int64_t k, int64_t s, int64_t grid_h, int64_t grid_w, int64_t i0,
                        int64_t i1, int64_t Dp) {
  const int64_t H = x.size(1), W = x.size(2);
  // Replicate padding up to the covering grid's extent, then the slab of grid rows [i0, i1).
  const int64_t pad_h = (grid_h - 1) * s + k - H, pad_w = (grid_w - 1) * s + k - W;
  at::Tensor slab = x.narrow(1, i0 * s, std::min(H, (i1 - 1) * s + k) - i0 * s).unsqueeze(0);
  const int64_t slab_pad = (i1 - 1) * s + k - (i0 * s + slab.size(2));
  if (slab_pad > 0 || pad_w > 0) slab = at::pad(slab, {0, pad_w, 0, slab_pad}, "replicate");
  (void)pad_h;
  at::Tensor cols = at::im2col(slab, {k, k}, {1, 1}, {0, 0}, {s, s})[0].t();  // (L, C*k*k)
  if (Dp > cols.size(1)) cols = at::constant_pad_nd(cols, {0, Dp - cols.size(1)});
  return cols.contiguous();
}


// Flat pixel indices (into a (P, C) table) of the k x k patches whose first pixel is `origin`, in a
// picture `width` pixels wide: origin (...) -> (..., k * k), ordered (dy, dx).
at::Tensor patch_pixels(const at::Tensor& origin, const at::Tensor& width, int64_t k) {
  const at::Tensor d = at::arange(k, origin.options());
  const at::Tensor rows = width.unsqueeze(-1).unsqueeze(-1) * d.view({k, 1});  // (..., k, 1)
  return (origin.unsqueeze(-1).unsqueeze(-1) + rows + d.view({1, k})).flatten(-2, -1);
}

// The exact score w * <c, s> / (||s|| + 1e-8) of content grid cells `cells` (L) against style rows `cand`
// (L, r; `big` = none, scored -inf), from the padded content pixels (Hp, Wp, C) and the style table, in chunks
// that bound the gathered pixels. The dot products are a product and a sum, not a GEMM: they stay float32
// (float64) whatever torch's float32 matmul precision says (cuBLAS would run a GEMM in TF32 under "high"),
// since these scores decide the choice; only the ranking GEMMs of step 1 follow that setting.
at::Tensor exact_scores(const at::Tensor& content_px, const at::Tensor& cells, int64_t grid_w, const StyleTable& table,
                        const at::Tensor& table_b, const at::Tensor& inv, const at::Tensor& cand, int64_t k, int64_t s,
                        int64_t big) {
  const int64_t L = cand.size(0), r = cand.size(1), C = content_px.size(2), Wp = content_px.size(1);
  const at::Tensor firsts = at::tensor(at::IntArrayRef(table.grids), at::kLong).view({table.T, 3}).to(cand.device());
  const at::Tensor starts = firsts.select(1, 0).contiguous(), gws = firsts.select(1, 2).contiguous();
  const at::Tensor pixel0 = at::tensor(at::IntArrayRef(table.pixel0), at::kLong).to(cand.device());
  const at::Tensor widths = at::tensor(at::IntArrayRef(table.width), at::kLong).to(cand.device());
  const at::Tensor content_flat = content_px.view({-1, C}), table_flat = table_b.view({-1, C});
  // gathered values per chunk: 2^24 on the CPU (64 MB in float32), 2^27 on a GPU, where each chunk costs a
  // dozen kernel launches (a 4096 px refinement is then ~160 chunks, not ~1,300)
  const int64_t budget = int64_t{1} << (content_px.is_cpu() ? 24 : 27);
  const int64_t step = std::max<int64_t>(1, budget / std::max<int64_t>(1, (r + 1) * k * k * C));
  at::Tensor out = at::empty({L, r}, content_px.options());
  for (int64_t a = 0; a < L; a += step) {
    const int64_t l = std::min(step, L - a);
    const at::Tensor c = cand.narrow(0, a, l);
    const at::Tensor valid = c != big;
    const at::Tensor m = at::where(valid, c, 0);
    const at::Tensor t = at::searchsorted(starts, m, /*out_int32=*/false, /*right=*/true) - 1;
    const at::Tensor local = m - starts.index_select(0, t.flatten()).view(m.sizes());
    const at::Tensor gw = gws.index_select(0, t.flatten()).view(m.sizes());
    const at::Tensor w = widths.index_select(0, t.flatten()).view(m.sizes());
    const at::Tensor origin = pixel0.index_select(0, t.flatten()).view(m.sizes()) + local.div(gw, "floor") * s * w +
                              local.remainder(gw) * s;
    const at::Tensor style = table_flat.index_select(0, patch_pixels(origin, w, k).flatten()).view({l, r, -1});
    const at::Tensor cell = cells.narrow(0, a, l);
    const at::Tensor corigin = cell.div(grid_w, "floor") * s * Wp + cell.remainder(grid_w) * s;
    const at::Tensor cpx = content_flat.index_select(0, patch_pixels(corigin, at::full_like(corigin, Wp), k).flatten())
                               .view({l, 1, -1});
    const at::Tensor v = (style * cpx).sum(2) * inv.index_select(0, m.flatten()).view({l, r});
    out.narrow(0, a, l).copy_(at::where(valid, v, -std::numeric_limits<double>::infinity()));
  }
  return out;
}

// One sample's controls (match_controls.h) on its covering grid, flat (n_c); undefined = off.
struct GridControls {
  at::Tensor labels, bank_labels;  // the content patches' labels (n_c), the bank rows' (n_s)
  at::Tensor previous, bonus;      // the previous choice (n_c) and its bonus temporal_weight * ||c|| (n_c)
};

// The controlled scores of cells (L) against candidates (L, r): a candidate of another label becomes `big`
// (none, -inf), and one that is the cell's previous choice gets the bonus. Returns (scores, candidates).
std::tuple<at::Tensor, at::Tensor> controlled_scores(const at::Tensor& px, const at::Tensor& cells, int64_t grid_w,
                                                     const StyleTable& table, const at::Tensor& table_b,
                                                     const at::Tensor& inv, at::Tensor cand, int64_t k, int64_t s,
                                                     int64_t big, const GridControls& g) {
  if (g.labels.defined()) {
    const at::Tensor lab = g.bank_labels.index_select(0, at::where(cand == big, 0, cand).flatten()).view(cand.sizes());
    cand = at::where(lab == g.labels.index_select(0, cells).unsqueeze(1), cand, big);
  }
  at::Tensor v = exact_scores(px, cells, grid_w, table, table_b, inv, cand, k, s, big);
  if (g.previous.defined())
    v.add_(at::where(cand == g.previous.index_select(0, cells).unsqueeze(1), g.bonus.index_select(0, cells).unsqueeze(1),
                     0));
  return {v, cand};
}

// Of each row's (score, index) pairs: the best score, then the lowest index.
std::tuple<at::Tensor, at::Tensor> best_of(const at::Tensor& scores, const at::Tensor& ids, int64_t big) {
  const at::Tensor mx = std::get<0>(scores.max(1));
  return {mx, at::where(scores == mx.unsqueeze(1), ids, big).amin(1)};
}

// The r best columns of each row of `scores` (L, n): the best score, then the lowest column. A stable
// descending sort keeps equal scores in column order on every device (topk promises no order of ties,
// and on CUDA does not return the lowest index).
std::tuple<at::Tensor, at::Tensor> top_lowest(const at::Tensor& scores, int64_t r) {
  const auto [v, i] = at::sort(scores, /*stable=*/true, /*dim=*/1, /*descending=*/true);
  return {v.narrow(1, 0, r), i.narrow(1, 0, r)};
}

// The ids of the r best (score, id) pairs of each row of (vals, ids) (L, n): the best score, then the lowest
// id (two stable sorts: by id, then by score).
at::Tensor top_by_id(const at::Tensor& vals, const at::Tensor& ids, int64_t r) {
  const auto [by_id, perm] = at::sort(ids, /*stable=*/true, /*dim=*/1, /*descending=*/false);
  const at::Tensor pos = std::get<1>(top_lowest(vals.gather(1, perm), r));
  return by_id.gather(1, pos);
}

// Step 1 in batched GEMMs: the (row, probe) entries grouped by cluster and cut into tiles of at most
// TILE_ENTRIES; a batch of tiles is one batched GEMM (bmm) of its entries' reduced rows by their clusters'
// rows, padded to the batch's largest cluster, as many tiles as fit batch_elements(). Tiles go by decreasing
// cluster size, so a batch's clusters are of similar size (little padding). At 1024 px (508 clusters, 16
// probes, 32k rows a slab) that is a few batches a slab instead of a GEMM, a topk and two copies per cluster.
constexpr int64_t TILE_ENTRIES = 256;
// Elements of a batch's A + B + scores at most (a batch takes one tile at least): 2^26 on the CPU (256 MB
// in float32), 2^28 on a GPU (a few batches a slab, so a few dozen launches). STYLESWAP_IVF_BATCH overrides
// it (the tests cut every tile into a batch of its own).
int64_t batch_elements(const at::Device& device) {
  const char* env = std::getenv("STYLESWAP_IVF_BATCH");
  const long long v = env != nullptr ? std::atoll(env) : 0;
  return v > 0 ? v : int64_t{1} << (device.is_cpu() ? 26 : 28);
}

// q (L, Dr) the slab's reduced rows, probe (L * p) each entry's cluster (K = none), off (K + 1) and by_size
// (the clusters by decreasing size) on the host. Writes each entry's SLOT best (reduced score, bank index),
// the best score then the lowest index, into cand_s / cand_i (L * p + 1, S): row L * p takes the padding.
void cluster_candidates(const at::Tensor& q, const at::Tensor& probe, int64_t p, const at::Tensor& sorted_b,
                        const at::Tensor& order_b, const std::vector<int64_t>& off, const std::vector<int64_t>& by_size,
                        at::Tensor& cand_s, at::Tensor& cand_i, int64_t big) {
  const int64_t E = probe.size(0), K = static_cast<int64_t>(off.size()) - 1, Dr = q.size(1), S = cand_s.size(1);
  const auto lopt = probe.options();
  const double neg_inf = -std::numeric_limits<double>::infinity();
  const int64_t bound = batch_elements(q.device());
  const auto [cl, entries] = at::sort(probe, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  const at::Tensor counts = at::bincount(cl, {}, K + 1).cpu();  // the slab's one device-to-host read
  const int64_t* cnt = counts.data_ptr<int64_t>();
  std::vector<int64_t> start(K + 1, 0);
  for (int64_t c = 0; c < K; ++c) start[c + 1] = start[c] + cnt[c];
  struct Tile {
    int64_t cluster, first, rows;
  };
  std::vector<Tile> tiles;
  for (const int64_t c : by_size)
    for (int64_t e0 = 0; e0 < cnt[c]; e0 += TILE_ENTRIES) tiles.push_back({c, start[c] + e0, std::min(TILE_ENTRIES, cnt[c] - e0)});
  for (size_t t0 = 0; t0 < tiles.size();) {
    const int64_t width = off[tiles[t0].cluster + 1] - off[tiles[t0].cluster];  // the batch's largest cluster
    int64_t M = 0;
    size_t t1 = t0;
    for (; t1 < tiles.size(); ++t1) {
      const int64_t m = std::max(M, tiles[t1].rows), nb = static_cast<int64_t>(t1 - t0) + 1;
      if (nb > 1 && nb * (m * Dr + width * Dr + m * width) > bound) break;
      M = m;
    }
    const int64_t nb = static_cast<int64_t>(t1 - t0);
    // each tile's first entry, entries, cluster offset and cluster size: one host-to-device copy
    std::vector<int64_t> h(4 * nb);
    for (int64_t t = 0; t < nb; ++t) {
      const Tile& tile = tiles[t0 + t];
      h[t] = tile.first, h[nb + t] = tile.rows, h[2 * nb + t] = off[tile.cluster];
      h[3 * nb + t] = off[tile.cluster + 1] - off[tile.cluster];
    }
    const at::Tensor desc = at::tensor(at::IntArrayRef(h), at::kLong).view({4, nb}).to(q.device());
    const at::Tensor first = desc[0], rows = desc[1], cl_off = desc[2], size = desc[3];
    const at::Tensor i = at::arange(M, lopt), j = at::arange(width, lopt);
    const at::Tensor row_ok = i.unsqueeze(0) < rows.unsqueeze(1);   // (nb, M)
    const at::Tensor col_ok = j.unsqueeze(0) < size.unsqueeze(1);   // (nb, width)
    const at::Tensor e = entries.index_select(0, at::where(row_ok, first.unsqueeze(1) + i, 0).flatten());
    const at::Tensor A = q.index_select(0, e.div(p, "floor")).view({nb, M, Dr});
    const at::Tensor Bm = sorted_b.index_select(0, at::where(col_ok, cl_off.unsqueeze(1) + j, 0).flatten())
                              .view({nb, width, Dr});
    at::Tensor sc = at::bmm(A, Bm.transpose(1, 2)).masked_fill_(col_ok.logical_not().unsqueeze(1), neg_inf);
    // The S best of each entry by rounds of (max, its first position): a cluster's rows are in bank order,
    // so the first position is the lowest bank index.
    std::vector<at::Tensor> vals, ids;
    for (int64_t t = 0; t < S; ++t) {
      const at::Tensor v = at::amax(sc, {2}, /*keepdim=*/true);                          // (nb, M, 1)
      const at::Tensor pos = at::where(sc == v, j.view({1, 1, width}), width).amin(2, /*keepdim=*/true);
      const at::Tensor at_pos = pos.clamp_max(width - 1);
      const at::Tensor bank = order_b.index_select(0, (cl_off.view({nb, 1, 1}) + at_pos).flatten()).view(pos.sizes());
      vals.push_back(v);
      ids.push_back(at::where(v == neg_inf, big, bank));  // a cluster of fewer than S rows: none
      if (t + 1 < S) sc.scatter_(2, at_pos, neg_inf);
    }
    const at::Tensor dest = at::where(row_ok.flatten(), e, E);
    cand_s.index_copy_(0, dest, at::cat(vals, 2).view({nb * M, S}));
    cand_i.index_copy_(0, dest, at::cat(ids, 2).view({nb * M, S}));
    t0 = t1;
  }
}

at::Tensor match_ivf_aten(const at::Tensor& content_in, at::TensorList styles, const at::Tensor& inv_norm,
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
  const auto dtype = content.scalar_type();
  const int64_t N = content.size(0), C = content.size(1), H = content.size(2), W = content.size(3);
  const int64_t grid_h = covering_grid(H, k, s), grid_w = covering_grid(W, k, s), n_c = grid_h * grid_w;
  const at::Tensor empty = offsets.narrow(1, 1, centroids.size(1)) == offsets.narrow(1, 0, centroids.size(1));
  const int64_t K = centroids.size(1), Dr = sorted.size(2), R = candidates;
  const int64_t p = std::min(probes, (~empty).sum(1).min().item<int64_t>()), S = std::min(R, SLOT);
  const int64_t slab_rows = std::max<int64_t>(1, 32768 / grid_w);
  const auto big = std::numeric_limits<int64_t>::max();
  const double neg_inf = -std::numeric_limits<double>::infinity();
  const auto long_opts = content.options().dtype(at::kLong);
  const StyleTable table = style_table(styles, k, s, sorted.size(0), dtype);
  const at::Tensor offsets_host = offsets.cpu();
  at::Tensor indices = at::empty({N, n_c}, long_opts);
  for (int64_t n = 0; n < N; ++n) {
    const int64_t b = sorted.size(0) == 1 ? 0 : n;
    const int64_t* o = offsets_host[b].data_ptr<int64_t>();
    const std::vector<int64_t> off(o, o + K + 1);
    std::vector<int64_t> by_size(K);
    std::iota(by_size.begin(), by_size.end(), 0);
    std::stable_sort(by_size.begin(), by_size.end(),
                     [&](int64_t x, int64_t y) { return off[x + 1] - off[x] > off[y + 1] - off[y]; });
    const at::Tensor inv = inv_norm[b].to(dtype), table_b = table.pixels[b], px = padded_pixels(content[n], k, s);
    const at::Tensor reduced = at::mm(basis[b].t(), content[n].view({C, H * W})).view({-1, H, W});
    GridControls g;
    if (ctl.labels()) g.labels = ctl.content_labels.narrow(0, n * n_c, n_c), g.bank_labels = ctl.bank_labels;
    if (ctl.temporal()) {
      g.previous = ctl.previous.narrow(0, n * n_c, n_c);
      // ||c|| of every grid cell: the sum of its pixels' squared norms over the k x k window
      const at::Tensor sq = (px * px).sum(2).unsqueeze(0).unsqueeze(0);
      g.bonus = at::avg_pool2d(sq, {k, k}, {s, s}, {0, 0}, false, true, /*divisor_override=*/1).sqrt().flatten() *
                ctl.temporal_weight;
    }
    at::Tensor choice = at::empty({n_c}, long_opts), score = at::empty({n_c}, content.options());
    // Steps 1 and 2, a slab of grid rows at a time.
    for (int64_t i0 = 0; i0 < grid_h; i0 += slab_rows) {
      const int64_t i1 = std::min(grid_h, i0 + slab_rows);
      const at::Tensor q = content_rows(reduced, k, s, grid_h, grid_w, i0, i1, Dr);
      const int64_t L = q.size(0);
      const at::Tensor cells = at::arange(i0 * grid_w, i0 * grid_w + L, long_opts);
      // Each row's p best clusters; empty ones and (with labels) those of another label never.
      at::Tensor cs = at::mm(q, centroids[b].t()).masked_fill_(empty[b], neg_inf);
      if (g.labels.defined())
        cs.masked_fill_(args.cluster_labels[b].unsqueeze(0) != g.labels.narrow(0, i0 * grid_w, L).unsqueeze(1),
                        neg_inf);
      const auto [top_v, top_c] = top_lowest(cs, p);
      const at::Tensor probe = at::where(top_v == neg_inf, K, top_c).flatten();  // fewer clusters of its label
      at::Tensor cand_s = at::full({L * p + 1, S}, neg_inf, q.options());
      at::Tensor cand_i = at::full({L * p + 1, S}, big, long_opts);
      cluster_candidates(q, probe, p, sorted[b], order[b], off, by_size, cand_s, cand_i, big);
      // Rerank each row's R best candidates (and its previous choice) by the exact score.
      at::Tensor cand = top_by_id(cand_s.narrow(0, 0, L * p).view({L, p * S}), cand_i.narrow(0, 0, L * p).view({L, p * S}),
                                  std::min(R, p * S));
      if (g.previous.defined()) cand = at::cat({cand, g.previous.narrow(0, i0 * grid_w, L).unsqueeze(1)}, 1);
      const auto [v, c] = controlled_scores(px, cells, grid_w, table, table_b, inv, cand, k, s, big, g);
      const auto [best, arg] = best_of(v, c, big);
      score.narrow(0, i0 * grid_w, L).copy_(best);
      choice.narrow(0, i0 * grid_w, L).copy_(arg);
    }
    // Step 3: refinement passes from the neighbours' shifted choices (each pass reads the last one's).
    const at::Tensor gr = at::tensor(at::IntArrayRef(table.grids), at::kLong).view({table.T, 3}).to(content.device());
    const at::Tensor starts = gr.select(1, 0).contiguous(), ghs = gr.select(1, 1), gws = gr.select(1, 2);
    for (int64_t it = 0; it < refine; ++it) {
      const at::Tensor cg = choice.view({grid_h, grid_w});
      std::vector<at::Tensor> cands;
      for (int64_t q = 0; q < NEIGHBOURS; ++q) {
        const int64_t dy = NEIGHBOUR_DY[q], dx = NEIGHBOUR_DX[q];
        at::Tensor nb = at::full({grid_h, grid_w}, big, long_opts);
        const int64_t h = grid_h - std::abs(dy), w = grid_w - std::abs(dx);
        if (h > 0 && w > 0) {
          const at::Tensor m = cg.narrow(0, std::max<int64_t>(dy, 0), h).narrow(1, std::max<int64_t>(dx, 0), w);
          const at::Tensor t = (at::searchsorted(starts, m, /*out_int32=*/false, /*right=*/true) - 1).flatten();
          const at::Tensor first = starts.index_select(0, t).view(m.sizes());
          const at::Tensor gw = gws.index_select(0, t).view(m.sizes()), gh = ghs.index_select(0, t).view(m.sizes());
          const at::Tensor y = (m - first).div(gw, "floor") - dy, x = (m - first).remainder(gw) - dx;
          const at::Tensor inside = (y >= 0) & (y < gh) & (x >= 0) & (x < gw);
          nb.narrow(0, std::max<int64_t>(-dy, 0), h)
              .narrow(1, std::max<int64_t>(-dx, 0), w)
              .copy_(at::where(inside, first + y * gw + x, m));
        }
        cands.push_back(nb.flatten());
      }
      const at::Tensor cells = at::arange(n_c, long_opts);
      const auto [v, c] = controlled_scores(px, cells, grid_w, table, table_b, inv, at::stack(cands, 1), k, s, big, g);
      const auto [best, arg] = best_of(at::cat({score.unsqueeze(1), v}, 1), at::cat({choice.unsqueeze(1), c}, 1), big);
      score = best, choice = arg;
    }
    indices[n].copy_(choice);
  }
  return indices.view({N, grid_h, grid_w});
}

}  // namespace

TORCH_LIBRARY_IMPL(styleswap, CompositeExplicitAutograd, m) {
  m.impl("ivf_build", &ivf_build);
  m.impl("match_ivf_aten", &match_ivf_aten);
}

#ifdef STYLESWAP_WITH_CUDA
TORCH_LIBRARY_IMPL(styleswap, CUDA, m) { m.impl("match_ivf", &match_ivf_aten); }
#endif

}  // namespace styleswap
