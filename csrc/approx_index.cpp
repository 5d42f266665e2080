// Approximate patch search, the parts that run on any device (ATen ops only).
//
//   ivf_build      a prepared bank -> an inverted-file (IVF) index of its style patches:
//                  spherical k-means of the patch directions (trained on a seeded sample), every patch
//                  assigned to its nearest centroid, the bank rows sorted by cluster.
//   match_ivf_aten content, an index -> indices: the same search as the CPU kernel of match_ivf
//                  (csrc/cpu/approx_cpu.cpp), written with ATen ops so that it runs on every device;
//                  it is match_ivf's CUDA kernel and, on the CPU, a second implementation to test against.
//
// Search (the score is the exact op's, w * <c, s> / (||s|| + 1e-8)): each content patch ranks the
// centroids by <c, centroid>, takes the `probes` best clusters and scores every style patch in them
// exactly; the best of those wins (ties: lowest style index). Work per content patch:
// K + probes * n_s / K dot products instead of n_s (K ~ sqrt(n_s)).
//
// Index layout (B = the bank's batch, K clusters, Dp = the bank's row length):
//   sorted    (B, n_s, Dp) the bank rows grouped by cluster (compute dtype: float32, float64 for float64)
//   sorted_inv(B, n_s)     their weight / (||s|| + 1e-8)
//   order     (B, n_s)     int64, the bank index of each sorted row
//   offsets   (B, K + 1)   int64, cluster c is sorted rows [offsets[c], offsets[c + 1])
//   centroids (B, K, Dp)   unit vectors
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

void check_ivf_index(const char* op, const at::Tensor& content, const at::Tensor& sorted, const at::Tensor& sorted_inv,
                     const at::Tensor& order, const at::Tensor& offsets, const at::Tensor& centroids, int64_t k,
                     int64_t s, int64_t probes) {
  check_geometry(op, k, s);
  TORCH_CHECK_VALUE(content.dim() == 4 && content.numel() > 0, op, ": content must be a non-empty (N, C, H, W), got ",
                    content.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(content.scalar_type()), op, ": content must be floating point, got ",
                   content.scalar_type());
  TORCH_CHECK_VALUE(content.size(2) >= k && content.size(3) >= k, op, ": content (", content.size(2), "x",
                    content.size(3), ") is smaller than patch_size ", k);
  TORCH_CHECK_VALUE(sorted.dim() == 3 && sorted_inv.dim() == 2 && order.dim() == 2 && offsets.dim() == 2 &&
                        centroids.dim() == 3,
                    op, ": not an IVF index (see ivf_build): ", sorted.sizes(), sorted_inv.sizes(), order.sizes(),
                    offsets.sizes(), centroids.sizes());
  const int64_t B = sorted.size(0), n_s = sorted.size(1), K = centroids.size(1);
  TORCH_CHECK_VALUE(sorted_inv.size(0) == B && order.size(0) == B && offsets.size(0) == B && centroids.size(0) == B &&
                        sorted_inv.size(1) == n_s && order.size(1) == n_s && offsets.size(1) == K + 1 &&
                        centroids.size(2) == sorted.size(2) && K >= 1 && n_s >= 1,
                    op, ": the IVF index tensors do not fit together");
  TORCH_CHECK_VALUE(B == 1 || B == content.size(0), op, ": the index has batch ", B, "; expected 1 or ",
                    content.size(0));
  TORCH_CHECK_VALUE(sorted.size(2) >= content.size(1) * k * k, op, ": index rows hold ", sorted.size(2),
                    " values, a ", content.size(1), "-channel ", k, "x", k, " patch needs ", content.size(1) * k * k);
  TORCH_CHECK_VALUE(probes >= 1, op, ": probes must be >= 1, got ", probes);
  for (const auto* t : {&sorted, &sorted_inv, &order, &offsets, &centroids})
    TORCH_CHECK_VALUE(t->device() == content.device(), op, ": the index is on ", t->device(), ", content on ",
                      content.device());
  const auto dtype = approx_dtype(content.scalar_type());
  TORCH_CHECK_TYPE(sorted.scalar_type() == dtype && centroids.scalar_type() == dtype &&
                       sorted_inv.scalar_type() == dtype,
                   op, ": a ", content.scalar_type(), " content needs a ", dtype, " index, got ", sorted.scalar_type());
  TORCH_CHECK_TYPE(order.scalar_type() == at::kLong && offsets.scalar_type() == at::kLong, op,
                   ": order and offsets must be int64");
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
    sorted.push_back(x.index_select(0, order));
    sorted_inv.push_back(inv_norm[b].narrow(0, 0, n_s).to(dtype).index_select(0, order));
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

at::Tensor match_ivf_aten(const at::Tensor& content_in, const at::Tensor& sorted, const at::Tensor& sorted_inv,
                          const at::Tensor& order, const at::Tensor& offsets, const at::Tensor& centroids, int64_t k,
                          int64_t s, int64_t probes) {
  check_ivf_index("match_ivf", content_in, sorted, sorted_inv, order, offsets, centroids, k, s, probes);
  const at::Tensor content = content_in.to(sorted.scalar_type()).contiguous();
  TORCH_CHECK_VALUE(at::isfinite(content).all().item<bool>(), "match_patches: content contains NaN or Inf");
  const int64_t N = content.size(0), H = content.size(2), W = content.size(3);
  const int64_t grid_h = covering_grid(H, k, s), grid_w = covering_grid(W, k, s);
  const at::Tensor empty = offsets.narrow(1, 1, centroids.size(1)) == offsets.narrow(1, 0, centroids.size(1));
  const int64_t K = centroids.size(1), Dp = sorted.size(2);
  const int64_t p = std::min(probes, (~empty).sum(1).min().item<int64_t>());
  const int64_t slab_rows = std::max<int64_t>(1, 65536 / grid_w);
  at::Tensor indices = at::empty({N, grid_h * grid_w}, content.options().dtype(at::kLong));
  const auto big = std::numeric_limits<int64_t>::max();
  for (int64_t n = 0; n < N; ++n) {
    const int64_t b = sorted.size(0) == 1 ? 0 : n;
    const at::Tensor off = offsets[b].cpu();
    const int64_t* o = off.data_ptr<int64_t>();
    for (int64_t i0 = 0; i0 < grid_h; i0 += slab_rows) {
      const int64_t i1 = std::min(grid_h, i0 + slab_rows);
      const at::Tensor q = content_rows(content[n], k, s, grid_h, grid_w, i0, i1, Dp);
      const int64_t L = q.size(0);
      // Empty clusters are never probed (p <= the number of non-empty ones).
      const at::Tensor top =
          std::get<1>(at::mm(q, centroids[b].t()).masked_fill_(empty[b], -INFINITY).topk(p, 1));  // (L, p)
      // Probes grouped by cluster: row ids of the content patches that probe each cluster.
      const auto [cl, perm] = at::sort(top.flatten(), /*stable=*/true, 0, false);
      const at::Tensor rows_by_cluster = perm.div(p, "floor");
      const at::Tensor counts = at::bincount(cl, {}, K).cpu();
      const int64_t* cnt = counts.data_ptr<int64_t>();
      at::Tensor best = at::full({L}, -std::numeric_limits<double>::infinity(), q.options());
      at::Tensor arg = at::full({L}, big, indices.options());
      int64_t start = 0;
      for (int64_t c = 0; c < K; ++c) {
        const int64_t m = cnt[c], size = o[c + 1] - o[c];
        if (m == 0) continue;
        const at::Tensor r = rows_by_cluster.narrow(0, start, m);
        start += m;
        if (size == 0) continue;
        const at::Tensor scores =
            at::mm(q.index_select(0, r), sorted[b].narrow(0, o[c], size).t()) * sorted_inv[b].narrow(0, o[c], size);
        const at::Tensor mx = std::get<0>(scores.max(1));
        // Among equal maxima, the lowest bank index.
        const at::Tensor ids = order[b].narrow(0, o[c], size).unsqueeze(0).expand_as(scores);
        const at::Tensor gi = at::where(scores == mx.unsqueeze(1), ids, big).amin(1);
        const at::Tensor cur = best.index_select(0, r), cur_arg = arg.index_select(0, r);
        const at::Tensor better = (mx > cur).logical_or((mx == cur).logical_and(gi < cur_arg));
        best.index_copy_(0, r, at::where(better, mx, cur));
        arg.index_copy_(0, r, at::where(better, gi, cur_arg));
      }
      indices[n].narrow(0, i0 * grid_w, L).copy_(arg);
    }
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
