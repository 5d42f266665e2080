// Approximate patch search, the parts that run on any device (ATen ops only).
//
//   ivf_build      a prepared bank -> an inverted-file (IVF) index of its style patches:
//                  spherical k-means of the patch directions (trained on a seeded sample), every patch
//                  assigned to its nearest centroid, the bank rows sorted by cluster. The search builds
//                  it over the bank of the styles reduced to their principal channels
//                  (styleswap_ext/ops.py: build_index).
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
// Ties: the lowest style index (the CPU kernel everywhere; this formulation in steps 2 and 3).
// Work per content patch, in full-patch dot products (D = C k^2, reduced rows dims k^2):
// (K + probes * n_s / K) * dims / C + candidates + 8 * refine, instead of n_s.
//
// Index layout (B = the bank's batch, K clusters, Dr = the reduced bank's row length):
//   sorted    (B, n_s, Dr) the reduced bank rows grouped by cluster, each times its inv_norm (so that a
//                          row times a reduced content patch is the reduced score)
//   sorted_inv(B, n_s)     their weight / (||s|| + 1e-8), of the full patches
//   order     (B, n_s)     int64, the bank index of each sorted row
//   offsets   (B, K + 1)   int64, cluster c is sorted rows [offsets[c], offsets[c + 1])
//   centroids (B, K, Dr)   unit vectors
// The compute dtype is float32 (float64 for float64 inputs).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

#include "approx_index.h"
#include "patch_grid.h"

namespace styleswap {

at::Tensor checked_ivf_content(const char* op, const at::Tensor& content, at::TensorList styles,
                               const at::Tensor& inv_norm, const at::Tensor& basis, const at::Tensor& sorted,
                               const at::Tensor& sorted_inv, const at::Tensor& order, const at::Tensor& offsets,
                               const at::Tensor& centroids, int64_t k, int64_t s, int64_t probes, int64_t candidates,
                               int64_t refine) {
  check_swap_args(op, content, /*is_indices=*/false, styles, k, s);
  TORCH_CHECK_VALUE(sorted.dim() == 3 && sorted_inv.dim() == 2 && order.dim() == 2 && offsets.dim() == 2 &&
                        centroids.dim() == 3 && basis.dim() == 3,
                    op, ": not an IVF index (see ivf_build): ", basis.sizes(), sorted.sizes(), sorted_inv.sizes(),
                    order.sizes(), offsets.sizes(), centroids.sizes());
  const int64_t B = sorted.size(0), n_s = sorted.size(1), K = centroids.size(1), C = content.size(1);
  TORCH_CHECK_VALUE(sorted_inv.size(0) == B && order.size(0) == B && offsets.size(0) == B && centroids.size(0) == B &&
                        basis.size(0) == B && sorted_inv.size(1) == n_s && order.size(1) == n_s &&
                        offsets.size(1) == K + 1 && centroids.size(2) == sorted.size(2) && K >= 1 && n_s >= 1,
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
  for (const auto* t : {&inv_norm, &basis, &sorted, &sorted_inv, &order, &offsets, &centroids})
    TORCH_CHECK_VALUE(t->device() == content.device(), op, ": the index is on ", t->device(), ", content on ",
                      content.device());
  const auto dtype = approx_dtype(content.scalar_type());
  TORCH_CHECK_TYPE(sorted.scalar_type() == dtype && centroids.scalar_type() == dtype &&
                       sorted_inv.scalar_type() == dtype && basis.scalar_type() == dtype,
                   op, ": a ", content.scalar_type(), " content needs a ", dtype, " index, got ", sorted.scalar_type());
  TORCH_CHECK_TYPE(order.scalar_type() == at::kLong && offsets.scalar_type() == at::kLong, op,
                   ": order and offsets must be int64");
  const at::Tensor checked = content.to(dtype).contiguous();
  TORCH_CHECK_VALUE(at::isfinite(checked).all().item<bool>(), "match_patches: content contains NaN or Inf");
  return checked;
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
  table.pixels = at::cat(parts, 1).contiguous();
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
at::Tensor nearest_centroid(const at::Tensor& x, const at::Tensor& centroids) {
  std::vector<at::Tensor> parts;
  for (int64_t r0 = 0; r0 < x.size(0); r0 += ASSIGN_CHUNK)
    parts.push_back(at::mm(x.narrow(0, r0, std::min(ASSIGN_CHUNK, x.size(0) - r0)), centroids.t()).argmax(1));
  return at::cat(parts);
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

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> ivf_build(const at::Tensor& patches,
                                                                                 const at::Tensor& inv_norm,
                                                                                 int64_t n_s, int64_t clusters,
                                                                                 int64_t seed) {
  const char* op = "ivf_build";
  TORCH_CHECK_VALUE(patches.dim() == 3 && inv_norm.dim() == 2 && patches.size(0) == inv_norm.size(0) &&
                        patches.size(1) == inv_norm.size(1),
                    op, ": patches (B, R, Dp) and inv_norm (B, R) do not fit together: ", patches.sizes(), " and ",
                    inv_norm.sizes());
  TORCH_CHECK_VALUE(n_s >= 1 && n_s <= patches.size(1), op, ": num_patches ", n_s, " does not fit a bank of ",
                    patches.size(1), " rows");
  TORCH_CHECK_VALUE(clusters >= 1 && clusters <= n_s, op, ": clusters must be in [1, num_patches = ", n_s, "], got ",
                    clusters);
  TORCH_CHECK_VALUE(seed >= 0, op, ": seed must be >= 0, got ", seed);
  TORCH_CHECK_TYPE(at::isFloatingType(patches.scalar_type()), op, ": patches must be floating point");
  const auto dtype = approx_dtype(patches.scalar_type());
  const int64_t B = patches.size(0), K = clusters;
  std::vector<at::Tensor> sorted, sorted_inv, orders, offsets, centroids;
  for (int64_t b = 0; b < B; ++b) {
    const at::Tensor x = patches[b].narrow(0, 0, n_s).to(dtype);
    const at::Tensor c = train_centroids(x, K, seed);
    const at::Tensor assign = nearest_centroid(x, c);
    const at::Tensor order = std::get<1>(at::sort(assign, /*stable=*/true, /*dim=*/0, /*descending=*/false));
    const at::Tensor counts = at::bincount(assign, {}, K);
    offsets.push_back(at::cat({at::zeros({1}, counts.options()), counts.cumsum(0)}));
    sorted_inv.push_back(inv_norm[b].narrow(0, 0, n_s).to(dtype).index_select(0, order));
    // Rows pre-scaled by their inv_norm: a row times a content patch is the (reduced) score itself.
    sorted.push_back(x.index_select(0, order) * sorted_inv.back().unsqueeze(1));
    orders.push_back(order);
    centroids.push_back(c);
  }
  return {at::stack(sorted), at::stack(sorted_inv), at::stack(orders), at::stack(offsets), at::stack(centroids)};
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
// (L, r; `big` = none), from the padded content pixels (Hp, Wp, C) and the style table, in chunks that
// bound the gathered pixels.
at::Tensor exact_scores(const at::Tensor& content_px, const at::Tensor& cells, int64_t grid_w, const StyleTable& table,
                        const at::Tensor& table_b, const at::Tensor& inv, const at::Tensor& cand, int64_t k, int64_t s,
                        int64_t big) {
  const int64_t L = cand.size(0), r = cand.size(1), C = content_px.size(2), Wp = content_px.size(1);
  const at::Tensor firsts = at::tensor(at::IntArrayRef(table.grids), at::kLong).view({table.T, 3}).to(cand.device());
  const at::Tensor starts = firsts.select(1, 0).contiguous(), gws = firsts.select(1, 2).contiguous();
  const at::Tensor pixel0 = at::tensor(at::IntArrayRef(table.pixel0), at::kLong).to(cand.device());
  const at::Tensor widths = at::tensor(at::IntArrayRef(table.width), at::kLong).to(cand.device());
  const at::Tensor content_flat = content_px.view({-1, C}), table_flat = table_b.view({-1, C});
  const int64_t step = std::max<int64_t>(1, (int64_t{1} << 24) / std::max<int64_t>(1, (r + 1) * k * k * C));
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
                               .view({l, -1, 1});
    const at::Tensor v = at::bmm(style, cpx).squeeze(2) * inv.index_select(0, m.flatten()).view({l, r});
    out.narrow(0, a, l).copy_(at::where(valid, v, -std::numeric_limits<double>::infinity()));
  }
  return out;
}

// Of each row's (score, index) pairs: the best score, then the lowest index.
std::tuple<at::Tensor, at::Tensor> best_of(const at::Tensor& scores, const at::Tensor& ids, int64_t big) {
  const at::Tensor mx = std::get<0>(scores.max(1));
  return {mx, at::where(scores == mx.unsqueeze(1), ids, big).amin(1)};
}

at::Tensor match_ivf_aten(const at::Tensor& content_in, at::TensorList styles, const at::Tensor& inv_norm,
                          const at::Tensor& basis, const at::Tensor& sorted, const at::Tensor& sorted_inv,
                          const at::Tensor& order, const at::Tensor& offsets, const at::Tensor& centroids, int64_t k,
                          int64_t s, int64_t probes, int64_t candidates, int64_t refine) {
  const at::Tensor content = checked_ivf_content("match_ivf", content_in, styles, inv_norm, basis, sorted, sorted_inv,
                                                 order, offsets, centroids, k, s, probes, candidates, refine);
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
  at::Tensor indices = at::empty({N, n_c}, long_opts);
  for (int64_t n = 0; n < N; ++n) {
    const int64_t b = sorted.size(0) == 1 ? 0 : n;
    const at::Tensor off = offsets[b].cpu();
    const int64_t* o = off.data_ptr<int64_t>();
    const at::Tensor inv = inv_norm[b].to(dtype), table_b = table.pixels[b], px = padded_pixels(content[n], k, s);
    const at::Tensor reduced = at::mm(basis[b].t(), content[n].view({C, H * W})).view({-1, H, W});
    at::Tensor choice = at::empty({n_c}, long_opts), score = at::empty({n_c}, content.options());
    // Steps 1 and 2, a slab of grid rows at a time.
    for (int64_t i0 = 0; i0 < grid_h; i0 += slab_rows) {
      const int64_t i1 = std::min(grid_h, i0 + slab_rows);
      const at::Tensor q = content_rows(reduced, k, s, grid_h, grid_w, i0, i1, Dr);
      const int64_t L = q.size(0);
      // Empty clusters are never probed (p <= the number of non-empty ones).
      const at::Tensor top =
          std::get<1>(at::mm(q, centroids[b].t()).masked_fill_(empty[b], -INFINITY).topk(p, 1));  // (L, p)
      // Probes grouped by cluster: the entries (row * p + slot) that probe each cluster.
      const auto [cl, entries] = at::sort(top.flatten(), /*stable=*/true, 0, false);
      const at::Tensor counts = at::bincount(cl, {}, K).cpu();
      const int64_t* cnt = counts.data_ptr<int64_t>();
      at::Tensor cand_s = at::full({L * p, S}, neg_inf, q.options());
      at::Tensor cand_i = at::full({L * p, S}, big, long_opts);
      int64_t start = 0;
      for (int64_t c = 0; c < K; ++c) {
        const int64_t m = cnt[c], size = o[c + 1] - o[c];
        if (m == 0) continue;
        const at::Tensor e = entries.narrow(0, start, m);
        start += m;
        const at::Tensor scores = at::mm(q.index_select(0, e.div(p, "floor")), sorted[b].narrow(0, o[c], size).t());
        const int64_t rr = std::min(S, size);
        const auto [v, a] = scores.topk(rr, 1);
        cand_s.narrow(1, 0, rr).index_copy_(0, e, v);
        cand_i.narrow(1, 0, rr).index_copy_(
            0, e, order[b].narrow(0, o[c], size).index_select(0, a.flatten()).view(a.sizes()));
      }
      // Rerank each row's R best candidates by the exact score.
      const auto [v, a] = cand_s.view({L, p * S}).topk(std::min(R, p * S), 1);
      const at::Tensor cand = cand_i.view({L, p * S}).gather(1, a);
      const at::Tensor cells = at::arange(i0 * grid_w, i0 * grid_w + L, long_opts);
      const auto [best, arg] = best_of(exact_scores(px, cells, grid_w, table, table_b, inv, cand, k, s, big), cand, big);
      score.narrow(0, i0 * grid_w, L).copy_(best);
      choice.narrow(0, i0 * grid_w, L).copy_(arg);
    }
    // Step 3: refinement passes from the neighbours' shifted choices (each pass reads the last one's).
    const at::Tensor g = at::tensor(at::IntArrayRef(table.grids), at::kLong).view({table.T, 3}).to(content.device());
    const at::Tensor starts = g.select(1, 0).contiguous(), ghs = g.select(1, 1), gws = g.select(1, 2);
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
      const at::Tensor cand = at::stack(cands, 1);  // (n_c, 8)
      const at::Tensor cells = at::arange(n_c, long_opts);
      const at::Tensor all = at::cat({score.unsqueeze(1), exact_scores(px, cells, grid_w, table, table_b, inv, cand, k, s, big)}, 1);
      const auto [best, arg] = best_of(all, at::cat({choice.unsqueeze(1), cand}, 1), big);
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
