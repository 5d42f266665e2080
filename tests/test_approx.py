"""The approximate patch search (search="approximate": IVF clusters, csrc/approx_index.cpp and
csrc/cpu/approx_cpu.cpp) against the exact op: known answers, score ratios, determinism, argument
checks, gradients, the ATen formulation, and CUDA when a GPU is present."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import styleswap_ext as ss
from styleswap_ext import ops
from styleswap_ext.ops.patch_bank import PatchBank

CUDA = torch.cuda.is_available() and ss.CUDA_BUILT
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU and a CUDA build (FORCE_CUDA=1)")
# The search's hot loops are the ones STYLESWAP_CPU_ISA switches: .ci/run reruns the file under each ISA.
pytestmark = pytest.mark.exactness


def _smooth(c, h, w, seed, dtype=torch.float32):
    """Non-negative, spatially smooth features (like relu maps): upsampled noise through a relu."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, c, (h + 3) // 4 + 1, (w + 3) // 4 + 1, generator=g)
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return torch.relu(x + 0.3 * torch.randn(1, c, h, w, generator=g)).to(dtype)


def _scores(content, style, idx, k=3, s=1):
    """The op's score <c, s_j> / (||s_j|| + 1e-8) of the chosen patches, in float64 (no padded row)."""
    assert (content.shape[-2] - k) % s == 0 and (content.shape[-1] - k) % s == 0
    cols = F.unfold(content.double(), k, stride=s)[0].T
    rows = F.unfold(style.double(), k, stride=s)[0].T
    j = idx.flatten()
    return (cols * rows[j]).sum(1) / (rows[j].norm(dim=1) + 1e-8)


def _bank_scores(content, styles, weights, idx, k=3, s=1):
    """The op's score of the chosen patches of a weighted bank (per-sample styles too), in float64."""
    patches, inv = torch.ops.styleswap.prepare_bank([st.double() for st in styles], k, s, weights)
    out = []
    for n in range(content.shape[0]):
        b = n if patches.shape[0] > 1 else 0
        cols = F.unfold(content[n : n + 1].double(), k, stride=s)[0].T
        j = idx[n].flatten()
        out.append((cols * patches[b][j]).sum(1) * inv[b][j])
    return torch.cat(out)


def test_shifted_style_patches_are_found_exactly():
    """A content patch that is also a style patch has the same nearest centroid: it is always found."""
    x = _smooth(16, 40, 40, seed=0)
    content, style = x[..., 0:24, 0:24], x[..., 3:40, 2:40]  # the style holds the content shifted by (3, 2)
    idx = ss.match_patches(content, style, search="approximate", probes=1)
    grid_w = style.shape[-1] - 2
    ys, xs = torch.meshgrid(torch.arange(22), torch.arange(22), indexing="ij")
    inside = (ys >= 3) & (xs >= 2)
    expected = (ys - 3) * grid_w + (xs - 2)
    assert torch.equal(idx[0][inside], expected[inside])


def test_flipped_style_is_found_exactly():
    """k = 1: the style is the content mirrored, every content pixel has its twin."""
    content = _smooth(8, 20, 24, seed=1) + 0.05  # no all-zero pixel (those tie with everything)
    style = content.flip(-1)
    idx = ss.match_patches(content, style, 1, 1, search="approximate", probes=1)
    ys, xs = torch.meshgrid(torch.arange(20), torch.arange(24), indexing="ij")
    assert torch.equal(idx[0], ys * 24 + (23 - xs))


def test_repeated_tiles_tie_to_the_lowest_index_like_exact():
    """Every content patch has many identical copies in the style. Integer values: the exact op's scores
    of the copies are equal on any processor, so it takes the lowest index. The approximate search
    finds a copy; that its candidates hold the lowest one as well depends on the reduced GEMM giving
    the copies equal bits (BLAS, processor), so here it must pick the same patch values, not index."""
    tile = torch.randint(0, 4, (1, 8, 5, 6), generator=torch.Generator().manual_seed(2)).float()
    style = tile.repeat(1, 1, 4, 4)  # 20 x 24: every patch of the tiling appears many times
    content = tile.repeat(1, 1, 3, 3)[..., 1:14, 2:16]
    approx = ss.match_patches(content, style, search="approximate", probes=2)
    exact = ss.match_patches(content, style)
    patches, inv = torch.ops.styleswap.prepare_bank([style], 3, 1)
    scores = (patches[0] @ F.unfold(content, 3)[0]) * inv[0][:, None]  # the op's scores: exact dot, one scaling
    assert torch.equal(exact.flatten(), (scores == scores.max(dim=0).values).to(torch.int8).argmax(dim=0))
    rows = F.unfold(style, 3)[0].T
    assert torch.equal(rows[approx.flatten()], rows[exact.flatten()])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_features_meet_the_score_ratio(seed):
    content, style = _smooth(32, 30, 30, seed=10 + seed), _smooth(32, 36, 36, seed=20 + seed)
    best = _scores(content, style, ss.match_patches(content, style))
    ratios = {}
    for probes in (1, 4, 16):
        got = _scores(content, style, ss.match_patches(content, style, search="approximate", probes=probes))
        assert (got <= best * (1 + 1e-6)).all()
        ratios[probes] = (got / best).mean().item()
    # more probes rank more clusters: closer to the exact choice on the whole
    assert ratios[16] >= ratios[4] - 1e-3 and ratios[4] >= ratios[1] - 1e-3, ratios
    assert ratios[4] >= 0.97 and ratios[16] >= 0.99, ratios


def test_fewer_channels_than_the_features_still_find_the_best():
    """64 reduced channels of 96: the ranking is approximate, the exact rerank and refinement keep the
    chosen score close to the best, and every chosen score is a real (exact) score."""
    content, style = _smooth(96, 24, 24, seed=12), _smooth(96, 26, 26, seed=13)
    assert ops.REDUCED_CHANNELS < 96
    best = _scores(content, style, ss.match_patches(content, style))
    idx = ss.match_patches(content, style, search="approximate")
    assert PatchBank(style, search="approximate").index.basis.shape == (1, 96, ops.REDUCED_CHANNELS)
    got = _scores(content, style, idx)
    assert (got <= best * (1 + 1e-6)).all() and (got / best).mean() >= 0.98


def test_refinement_and_rerank_only_raise_the_chosen_score():
    content, style = _smooth(16, 28, 28, seed=14), _smooth(16, 30, 30, seed=15)
    inv = ops.bank_inv_norm([style], 3, 1)
    index = ops.build_index([style], inv, 3, 1)

    def scores(candidates, refine):
        idx = torch.ops.styleswap.match_ivf(content, [style], inv, *index, 3, 1, 2, candidates, refine)
        return _scores(content, style, idx)

    one, eight, refined = scores(1, 0), scores(8, 0), scores(8, 2)
    assert (eight >= one - 1e-5).all() and (refined >= eight - 1e-5).all()
    assert refined.mean() > one.mean()


def test_all_clusters_probed_is_exact():
    content, style = _smooth(8, 14, 15, seed=3), _smooth(8, 16, 13, seed=4)
    n_s = 14 * 11
    idx = ss.match_patches(content, style, search="approximate", probes=ops.default_clusters(n_s))
    # exact up to rounding: another summation order may take the other patch of a near-tie
    exact = ss.match_patches(content, style)
    torch.testing.assert_close(_scores(content, style, idx), _scores(content, style, exact), rtol=1e-6, atol=0)


def test_deterministic_for_a_seed():
    content, style = _smooth(16, 26, 26, seed=5), _smooth(16, 30, 30, seed=6)
    a = ss.match_patches(content, style, search="approximate", seed=7)
    assert torch.equal(a, ss.match_patches(content, style, search="approximate", seed=7))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one_thread = ss.match_patches(content, style, search="approximate", seed=7)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(a, one_thread)
    # another seed: other clusters (the same quality, not the same choices)
    other = PatchBank(style, search="approximate", seed=8).index
    assert not torch.equal(other[2], PatchBank(style, search="approximate", seed=7).index[2])


def test_bank_batch_weights_and_stride():
    """Per-sample styles, several styles with weights and stride > 1 go through the same search."""
    content = torch.cat([_smooth(8, 17, 17, seed=s) for s in (30, 31)])
    styles = [torch.cat([_smooth(8, 15, 16, seed=s) for s in (32, 33)]), _smooth(8, 12, 12, seed=34)]
    bank = PatchBank(styles, 3, 2, [1.0, 0.5], search="approximate", probes=10_000)  # every cluster: exact
    got, exact = bank.match(content), PatchBank(styles, 3, 2, [1.0, 0.5]).match(content)
    torch.testing.assert_close(_bank_scores(content, styles, [1.0, 0.5], got, s=2),
                               _bank_scores(content, styles, [1.0, 0.5], exact, s=2), rtol=1e-6, atol=0)
    few = PatchBank(styles, 3, 2, [1.0, 0.5], search="approximate", probes=2)
    assert few.match(content).shape == (2, 8, 8)
    assert few.swap(content).shape == content.shape


@pytest.mark.parametrize("channels, size, stride", [(8, (40, 30), 1), (96, (61, 47), 1), (16, (52, 45), 2)])
def test_patch_bank_progress_slabs_and_style_swap_agree(monkeypatch, channels, size, stride):
    """With progress=True the content is matched in slabs of grid rows, each with the rows its
    refinement reads: the same indices as one call."""
    import styleswap_ext.ops.patch_bank as pb

    content, style = _smooth(channels, *size, seed=40), _smooth(channels, 20, 20, seed=41)
    monkeypatch.setattr(pb, "PROGRESS_MIN_PATCHES", 10)
    monkeypatch.setattr(pb, "PROGRESS_MIN_SLAB", 50)
    bank = PatchBank(style, 3, stride, search="approximate", probes=3, seed=1)
    idx = ss.match_patches(content, style, 3, stride, search="approximate", probes=3, seed=1)
    assert torch.equal(bank.match(content, progress=True), idx)
    torch.testing.assert_close(bank.swap(content), ss.style_swap(content, style, 3, stride, search="approximate",
                                                                 probes=3, seed=1), rtol=0, atol=0)
    assert "search='approximate', probes=3, seed=1" in repr(bank)


def test_progress_slabs_carry_the_controls(monkeypatch):
    """With progress=True each slab takes its grid rows of the labels and the previous choices (and the
    refinement's extra rows): the same indices as one call."""
    import styleswap_ext.ops.patch_bank as pb

    content, styles, clab, slab = _label_case(21, size=(47, 33))
    monkeypatch.setattr(pb, "PROGRESS_MIN_PATCHES", 10)
    monkeypatch.setattr(pb, "PROGRESS_MIN_SLAB", 60)
    bank = PatchBank(styles, weights=[0.4, 1.0], style_labels=slab, search="approximate", probes=3)
    prev = bank.match(content, content_labels=clab).roll(1, 1)
    kw = {"content_labels": clab, "previous": prev, "temporal_weight": 0.05}
    assert torch.equal(bank.match(content, progress=True, **kw), bank.match(content, **kw))


def test_gradients_equal_the_exact_ops_given_the_same_indices():
    content = _smooth(8, 16, 16, seed=50)
    style = _smooth(8, 18, 18, seed=51).requires_grad_(True)
    upstream = torch.randn(1, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    (ss.style_swap(content, style, search="approximate") * upstream).sum().backward()
    g_approx = style.grad.clone()
    idx = ss.match_patches(content, style, search="approximate")
    style.grad = None
    (torch.ops.styleswap.swap_gather(idx, [style], 3, 1, 16, 16) * upstream).sum().backward()
    torch.testing.assert_close(g_approx, style.grad, rtol=0, atol=0)
    module = ss.StyleSwap(3, 1, search="approximate")
    assert "search='approximate'" in repr(module)
    torch.testing.assert_close(module(content, style), torch.ops.styleswap.swap_gather(idx, [style], 3, 1, 16, 16))


@pytest.mark.parametrize("batch", [None, "1"])
def test_aten_formulation_equals_the_cpu_kernel(monkeypatch, batch):
    """match_ivf_aten (what CUDA runs) and the CPU kernel choose the same patches (or, on a rounding
    tie of two GEMMs, patches of the same score); STYLESWAP_IVF_BATCH=1: every tile of (row, probe)
    entries its own batched GEMM, the same choices as a few large batches."""
    if batch is not None:
        monkeypatch.setenv("STYLESWAP_IVF_BATCH", batch)
    content, style = _smooth(16, 33, 29, seed=60), _smooth(16, 25, 27, seed=61)
    styles = [style, _smooth(16, 12, 14, seed=62)]  # two styles: the refinement's shifts stay in each grid
    inv = ops.bank_inv_norm(styles, 3, 1, [1.0, 0.7])
    index = ops.build_index(styles, inv, 3, 1, weights=[1.0, 0.7])
    for probes, candidates, refine in ((1, 1, 0), (3, 8, 1), (5, 4, 2)):
        a = torch.ops.styleswap.match_ivf(content, styles, inv, *index, 3, 1, probes, candidates, refine)
        b = torch.ops.styleswap.match_ivf_aten(content, styles, inv, *index, 3, 1, probes, candidates, refine)
        assert (a == b).float().mean() > 0.99
        torch.testing.assert_close(_bank_scores(content, styles, [1.0, 0.7], b),
                                   _bank_scores(content, styles, [1.0, 0.7], a), rtol=1e-5, atol=1e-5)
    # the index: rows grouped by cluster, a permutation of the bank, an orthonormal basis; one group of
    # clusters per style, in proportion to its patches, whose centroids have its weight as norm
    basis, sorted_rows, order, offsets, centroids = index
    n_s, n_0 = ops.num_style_patches(styles, 3, 1), 23 * 25
    assert torch.equal(order[0].sort().values, torch.arange(n_s))
    assert offsets[0, 0] == 0 and offsets[0, -1] == n_s and (offsets.diff() >= 0).all()
    torch.testing.assert_close(basis[0].T @ basis[0], torch.eye(16), rtol=0, atol=1e-5)
    k0 = round(ops.default_clusters(n_s) * n_0 / n_s)
    assert index.clusters == k0 + round(ops.default_clusters(n_s) * (n_s - n_0) / n_s)
    want = torch.cat([torch.ones(k0), torch.full((index.clusters - k0,), 0.7)])
    torch.testing.assert_close(centroids[0].norm(dim=1), want)
    for c in range(index.clusters):
        o = order[0, offsets[0, c]:offsets[0, c + 1]]
        assert (o.diff() > 0).all()  # within a cluster the rows keep the bank order (the kernels' ties)
        assert ((o < n_0) == (c < k0)).all()  # and belong to the cluster's style
    # the bank's inv_norm without the bank: prepare_bank's, to rounding
    torch.testing.assert_close(inv, torch.ops.styleswap.prepare_bank(styles, 3, 1, [1.0, 0.7])[1], rtol=1e-5, atol=0)


def test_opcheck_and_compile():
    content, style = _smooth(4, 11, 9, seed=70), _smooth(4, 8, 8, seed=71)
    patches, inv = torch.ops.styleswap.prepare_bank([style], 3, 1)
    tests = ("test_schema", "test_faketensor")
    torch.library.opcheck(torch.ops.styleswap.ivf_build.default, (patches, inv, 36, [6], 0), test_utils=tests)
    groups = (torch.arange(36) % 2)
    torch.library.opcheck(torch.ops.styleswap.ivf_build.default, (patches, inv, 36, [3, 2], 0, groups, [1.0, 0.5]),
                          test_utils=tests)
    labels = torch.arange(36) // 18
    index = ops.build_index([style], inv, 3, 1, bank_labels=labels)
    controls = {"content_labels": torch.randint(0, 2, (1, 9, 7)), "bank_labels": labels,
                "previous": torch.randint(0, 36, (1, 9, 7)), "temporal_weight": 0.1}
    for op in (torch.ops.styleswap.match_ivf.default, torch.ops.styleswap.match_ivf_aten.default):
        torch.library.opcheck(op, (content, [style], inv, *index, 3, 1, 2, 8, 1), test_utils=tests)
        torch.library.opcheck(op, (content, [style], inv, *index, 3, 1, 2, 8, 1), controls, test_utils=tests)
    f = torch.compile(lambda c, s: ss.style_swap(c, s, search="approximate"), fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(f(content, style), ss.style_swap(content, style, search="approximate"), rtol=0, atol=0)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"search": "fast"}, ValueError, "search must be one of"),
    ({"search": None}, ValueError, "search must be one of"),
    ({"search": "approximate", "probes": 0}, ValueError, "probes must be >= 1"),
    ({"search": "approximate", "probes": 2.0}, TypeError, "probes must be an int"),
    ({"search": "approximate", "probes": True}, TypeError, "probes must be an int"),
    ({"search": "approximate", "seed": -1}, ValueError, "seed must be >= 0"),
    ({"search": "exact", "probes": 4}, ValueError, "leave them None"),
    ({"seed": 1}, ValueError, "leave them None"),
])
def test_bad_search_arguments(kwargs, exc, match):
    content, style = _smooth(4, 8, 8, seed=0), _smooth(4, 8, 8, seed=1)
    for call in (lambda: ss.match_patches(content, style, **kwargs), lambda: ss.style_swap(content, style, **kwargs),
                 lambda: PatchBank(style, **kwargs), lambda: ss.StyleSwap(**kwargs)):
        with pytest.raises(exc, match=match):
            call()


def test_the_usual_argument_checks_apply():
    content, style = _smooth(4, 8, 8, seed=0), _smooth(4, 8, 8, seed=1)
    with pytest.raises(ValueError, match="channels"):
        ss.match_patches(content, style[:, :3], search="approximate")
    with pytest.raises(TypeError, match="dtype"):
        ss.match_patches(content, style.double(), search="approximate")
    with pytest.raises(ValueError, match="NaN or Inf"):
        ss.match_patches(content.clone().fill_(float("nan")), style, search="approximate")
    with pytest.raises(ValueError, match="NaN or Inf"):
        ss.match_patches(content, style.clone().fill_(float("inf")), search="approximate")
    patches, inv = torch.ops.styleswap.prepare_bank([style], 3, 1)
    with pytest.raises(ValueError, match=r"clusters\[0\] must be in \[1, 36\]"):
        torch.ops.styleswap.ivf_build(patches, inv, 36, [0], 0)
    with pytest.raises(ValueError, match=r"clusters\[0\] must be in \[1, 36\]"):
        torch.ops.styleswap.ivf_build(patches, inv, 36, [37], 0)
    groups = torch.arange(36) // 30
    with pytest.raises(ValueError, match=r"clusters\[1\] must be in \[1, 6\]"):
        torch.ops.styleswap.ivf_build(patches, inv, 36, [4, 7], 0, groups)
    with pytest.raises(ValueError, match="groups must be in"):
        torch.ops.styleswap.ivf_build(patches, inv, 36, [4], 0, groups)
    with pytest.raises(ValueError, match="2 cluster counts but no groups"):
        torch.ops.styleswap.ivf_build(patches, inv, 36, [4, 2], 0)
    with pytest.raises(ValueError, match="group_weights"):
        torch.ops.styleswap.ivf_build(patches, inv, 36, [4, 2], 0, groups, [1.0])
    inv = ops.bank_inv_norm([style], 3, 1)
    index = ops.build_index([style], inv, 3, 1)
    for op in (torch.ops.styleswap.match_ivf, torch.ops.styleswap.match_ivf_aten):
        with pytest.raises(ValueError, match="probes must be >= 1"):
            op(content, [style], inv, *index, 3, 1, 0, 8, 1)
        with pytest.raises(ValueError, match="candidates must be >= 1"):
            op(content, [style], inv, *index, 3, 1, 2, 0, 1)
        with pytest.raises(ValueError, match="refine must be >= 0"):
            op(content, [style], inv, *index, 3, 1, 2, 8, -1)
        with pytest.raises(ValueError, match="channels"):
            op(_smooth(8, 8, 8, seed=0), [style], inv, *index, 3, 1, 2, 8, 1)
        with pytest.raises(ValueError, match="the index holds 36 patches, the styles 49"):
            op(content, [_smooth(4, 9, 9, seed=2)], inv, *index, 3, 1, 2, 8, 1)
        with pytest.raises(ValueError, match="inv_norm"):
            op(content, [style], inv[:, :5], *index, 3, 1, 2, 8, 1)


def test_float64_and_bf16_inputs():
    content, style = _smooth(8, 14, 14, seed=80), _smooth(8, 12, 12, seed=81)
    i64 = ss.match_patches(content.double(), style.double(), search="approximate", probes=100)
    exact = ss.match_patches(content.double(), style.double())
    torch.testing.assert_close(_scores(content, style, i64), _scores(content, style, exact), rtol=1e-12, atol=0)
    out = ss.style_swap(content.bfloat16(), style.bfloat16(), search="approximate")
    assert out.dtype == torch.bfloat16 and out.shape == content.shape


@needs_cuda
def test_cuda_matches_the_cpu_search():
    content, style = _smooth(32, 40, 44, seed=90), _smooth(32, 36, 38, seed=91)
    cpu = ss.match_patches(content, style, search="approximate", probes=4)
    gpu = ss.match_patches(content.cuda(), style.cuda(), search="approximate", probes=4).cpu()
    # float rounding of another GEMM may reorder near-ties: compare the chosen scores
    torch.testing.assert_close(_scores(content, style, gpu), _scores(content, style, cpu), rtol=1e-4, atol=1e-4)
    assert (gpu == cpu).float().mean() > 0.98
    best = _scores(content, style, ss.match_patches(content, style))
    assert (_scores(content, style, gpu) / best).mean() >= 0.97
    s = style.cuda().requires_grad_(True)
    ss.style_swap(content.cuda(), s, search="approximate").sum().backward()
    assert s.grad is not None and s.grad.is_cuda


@needs_cuda
def test_cuda_bf16_bank_and_all_probes_exact():
    content, style = _smooth(16, 20, 20, seed=92), _smooth(16, 18, 18, seed=93)
    bank = PatchBank(style.cuda(), search="approximate", probes=10_000)
    assert torch.equal(bank.match(content.cuda()).cpu(), ss.match_patches(content, style))
    out = ss.style_swap(content.cuda().bfloat16(), style.cuda().bfloat16(), search="approximate")
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_stylize_and_style_bank_take_search(encoder, content_pil, style_pil):
    from styleswap_ext.pipeline.image_io import pil_to_tensor
    from styleswap_ext.models import Decoder
    from styleswap_ext.pipeline import StyleBank, stylize

    torch.manual_seed(0)
    decoder = Decoder().eval()
    c, s = pil_to_tensor(content_pil), pil_to_tensor(style_pil)
    bank = StyleBank([s], encoder, search="approximate")
    assert bank.patch_bank.index is not None
    out = stylize(c, bank, method="decoder", encoder=encoder, decoder=decoder)
    # every cluster probed would be exact; with the default probes the picture is at least close
    exact = stylize(c, s, method="decoder", encoder=encoder, decoder=decoder)
    assert out.shape == exact.shape and (out - exact).abs().mean() < 0.05
    assert torch.equal(stylize(c, s, method="decoder", encoder=encoder, decoder=decoder, search="approximate"), out)
    with pytest.raises(ValueError, match="search must be one of"):
        stylize(c, s, encoder=encoder, decoder=decoder, search="fast")
    with pytest.raises(ValueError, match="differs from the StyleBank"):
        stylize(c, StyleBank([s], encoder), encoder=encoder, decoder=decoder, search="approximate")


# --- the controls: style weights, labels, temporal ------------------------------------------------


def _weighted_case():
    """A content, a style whose patches resemble it (`near`, a crop of the same field) and one that
    does not (`far`: other channel proportions, so the k-means keeps the two styles apart)."""
    big = _smooth(32, 60, 60, seed=3)
    content, near = big[..., :30, :30], big[..., 20:50, 20:50]
    far = _smooth(32, 30, 30, seed=4) * torch.linspace(0.1, 1.5, 32).view(1, 32, 1, 1)
    return content, [far, near]


@pytest.mark.parametrize("weights", [[1.0, 1 / 3], [1.0, 0.01], [3.0, 1.0]])
def test_style_weights_steer_the_clusters(weights):
    """The clusters of a style weighted down rank as low as its patches score: with `near` weighted down
    the exact search takes `far`'s patches, and so must the approximate one (before the weights reached
    the centroids, its probes went to `near`'s clusters: ratio 0.96 / 0.95 at 1 : 3 / 1 : 100)."""
    content, styles = _weighted_case()
    n_far = 28 * 28
    exact = PatchBank(styles, 3, 1, weights).match(content)
    approx = PatchBank(styles, 3, 1, weights, search="approximate", probes=4).match(content)
    best, got = _bank_scores(content, styles, weights, exact), _bank_scores(content, styles, weights, approx)
    assert (got <= best * (1 + 1e-6)).all()
    assert (got / best).mean() >= 0.98, (got / best).mean()
    share = lambda idx: (idx >= n_far).double().mean().item()  # noqa: E731  (from `near`)
    assert abs(share(approx) - share(exact)) <= 0.02, (share(approx), share(exact))


def _label_case(seed, n_labels=3, size=(31, 27)):
    """A content and two styles with label maps of blocks (real regions, not noise), every label in a style."""
    g = torch.Generator().manual_seed(seed)
    content = _smooth(16, *size, seed=seed)
    styles = [_smooth(16, 24, 26, seed=seed + 1), _smooth(16, 20, 18, seed=seed + 2)]

    def blocks(h, w):
        lab = torch.randint(0, n_labels, ((h + 7) // 8, (w + 7) // 8), generator=g)
        return lab.repeat_interleave(8, 0).repeat_interleave(8, 1)[:h, :w].contiguous()

    clab = blocks(*size)
    slab = [blocks(24, 26), blocks(20, 18)]
    slab[0][:4, :4], slab[0][-4:, -4:], slab[1][:4, :4] = 0, 1, 2  # every label has style patches
    return content, styles, clab, slab


@pytest.mark.parametrize("seed", [0, 1])
def test_labels_are_never_crossed_and_meet_the_ratio(seed):
    content, styles, clab, slab = _label_case(100 + seed)
    kw = {"content_labels": clab, "style_labels": slab}
    exact = ss.match_patches(content, styles, **kw)
    approx = ss.match_patches(content, styles, **kw, search="approximate", probes=4)
    blab = torch.cat([m[1:-1, 1:-1].reshape(-1) for m in slab])  # k = 3: a patch's label is its centre's
    want = clab[1:-1, 1:-1]
    assert torch.equal(blab[exact[0]], want) and torch.equal(blab[approx[0]], want)
    best, got = _bank_scores(content, styles, None, exact), _bank_scores(content, styles, None, approx)
    assert (got <= best * (1 + 1e-6)).all() and (got / best).mean() >= 0.98, (got / best).mean()
    # a bank with labels: the same search
    bank = PatchBank(styles, style_labels=slab, search="approximate", probes=4)
    assert torch.equal(bank.match(content, content_labels=clab), approx)
    assert torch.equal(bank.swap(content, content_labels=clab), ss.style_swap(content, styles, **kw,
                                                                              search="approximate", probes=4))


def test_labels_errors_are_those_of_the_exact_search():
    content, styles, clab, slab = _label_case(7)
    clab = clab.clone()
    clab[5, 5] = 9
    with pytest.raises(ValueError, match="content_labels has label 9, which no style patch has"):
        ss.match_patches(content, styles, content_labels=clab, style_labels=slab, search="approximate")
    # an index whose clusters mix labels cannot filter by cluster: refused by name
    content, styles, clab, slab = _label_case(8)
    inv = ops.bank_inv_norm(styles, 3, 1)
    plain = ops.build_index(styles, inv, 3, 1)
    controls = ops.match_controls(content, styles, 3, 1, content_labels=clab, style_labels=slab)
    for op in (torch.ops.styleswap.match_ivf, torch.ops.styleswap.match_ivf_aten):
        with pytest.raises(ValueError, match="several labels: build the index with these bank_labels"):
            op(content, styles, inv, *plain, 3, 1, 4, 8, 1, **controls)


def test_previous_is_always_a_candidate():
    """With a bonus larger than any NCC difference (W = 3 > 2) the exact search keeps every previous
    choice; so must the approximate one, wherever it is (not only where the clusters lead), with labels
    too. With a small weight the modified scores stay close to the exact search's."""
    content, styles, clab, slab = _label_case(11)
    n_s = ops.num_style_patches(styles, 3, 1)
    g = torch.Generator().manual_seed(0)
    prev = torch.randint(0, n_s, (1, 29, 25), generator=g)
    got = ss.match_patches(content, styles, previous=prev, temporal_weight=3.0, search="approximate", probes=2)
    assert torch.equal(got, prev)
    blab = torch.cat([m[1:-1, 1:-1].reshape(-1) for m in slab])
    want_lab = clab[1:-1, 1:-1]
    got = ss.match_patches(content, styles, content_labels=clab, style_labels=slab, previous=prev,
                           temporal_weight=3.0, search="approximate", probes=2)
    same = blab[prev[0]] == want_lab
    assert torch.equal(got[0][same], prev[0][same]) and torch.equal(blab[got[0]], want_lab)
    # W = 0.02 against the exact search's choice: the modified score (score + W ||c|| if kept) close
    exact_prev = ss.match_patches(content, styles)
    kw = {"previous": exact_prev, "temporal_weight": 0.02}
    exact = ss.match_patches(content, styles, **kw)
    approx = ss.match_patches(content, styles, **kw, search="approximate", probes=4)
    norms = F.unfold(content.double(), 3)[0].norm(dim=0)

    def modified(idx):
        return _bank_scores(content, styles, None, idx) + 0.02 * norms * (idx == exact_prev).flatten()

    assert (modified(approx) <= modified(exact) + 1e-4).all()
    assert (modified(approx) / modified(exact)).mean() >= 0.99
    assert (approx == exact_prev).float().mean() >= (exact == exact_prev).float().mean() - 0.02


def _integer_case(seed, n_labels=2):
    """Exact arithmetic, so that ties are real ties on every machine: k = 1, each style pixel one-hot of
    value 1, 2 or 4 (its norm, so inv_norm is a power of two and every score an exact small integer),
    content pixels of integer norm (3, 4), (0, 5), (6, 8) in random channels; labels and a previous
    frame at random; temporal weight 0.25 (bonus 0.25 ||c||, exact)."""
    g = torch.Generator().manual_seed(seed)
    C, h, w = 8, 12, 13

    def one_hot(hs, ws):
        ch = torch.randint(0, C, (hs * ws,), generator=g)
        val = torch.tensor([1.0, 2.0, 4.0])[torch.randint(0, 3, (hs * ws,), generator=g)]
        return (F.one_hot(ch, C).float() * val[:, None]).T.reshape(1, C, hs, ws)

    styles = [one_hot(10, 11), one_hot(7, 9)]
    pairs = torch.tensor([[3.0, 4.0], [0.0, 5.0], [6.0, 8.0]])[torch.randint(0, 3, (h * w,), generator=g)]
    chans = torch.stack([torch.randperm(C, generator=g)[:2] for _ in range(h * w)])
    content = torch.zeros(h * w, C).scatter_(1, chans, pairs).T.reshape(1, C, h, w)
    clab = torch.randint(0, n_labels, (h, w), generator=g)
    slab = [torch.randint(0, n_labels, (10, 11), generator=g), torch.randint(0, n_labels, (7, 9), generator=g)]
    prev = torch.randint(0, 110 + 63, (1, h, w), generator=g)
    return content, styles, clab, slab, prev


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aten_formulation_equals_the_cpu_kernel_with_controls_and_ties(seed):
    """Controls and ties: on exact-arithmetic data (every score exact, ties everywhere) the CPU kernel and
    the ATen formulation choose the same patches with weights, labels and the temporal bonus, and with
    every cluster probed both are the exact search (the best modified score, then the lowest index)."""
    content, styles, clab, slab, prev = _integer_case(seed)
    weights = [1.0, 0.5]
    bank_labels = ops.bank_patch_labels(slab, styles, 1, 1)
    inv = ops.bank_inv_norm(styles, 1, 1, weights)
    index = ops.build_index(styles, inv, 1, 1, weights=weights, bank_labels=bank_labels)
    controls = ops.match_controls(content, styles, 1, 1, content_labels=clab, bank_labels=bank_labels,
                                  previous=prev, temporal_weight=0.25)
    for ctl in ({}, {"previous": controls["previous"], "temporal_weight": 0.25}, controls):
        for probes, candidates, refine in ((2, 4, 1), (index.clusters, 8, 1), (index.clusters, 3, 0)):
            args = (content, styles, inv, *index, 1, 1, probes, candidates, refine)
            a = torch.ops.styleswap.match_ivf(*args, **ctl)
            assert torch.equal(a, torch.ops.styleswap.match_ivf_aten(*args, **ctl)), (ctl.keys(), probes)
            if probes == index.clusters:
                exact = PatchBank(styles, 1, 1, weights, style_labels=slab).match(
                    content, content_labels=clab if "content_labels" in ctl else None,
                    previous=ctl.get("previous"), temporal_weight=ctl.get("temporal_weight", 0.0))
                assert torch.equal(a, exact), (ctl.keys(), candidates)


@pytest.fixture
def emulated_tf32():
    """aten::mm and aten::bmm on the CPU as cuBLAS runs them on a GPU: operands rounded to TF32 (10-bit
    mantissa) whenever torch's float32 matmul precision is not "highest" (read at the call, so it shows
    what the calling code set). Removed afterwards."""
    def tf32(x):
        bits = x.contiguous().view(torch.int32)
        return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)

    def matmul(a, b):
        if a.dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest":
            a, b = tf32(a), tf32(b)
        return (a.double().unsqueeze(-1) * b.double().unsqueeze(-3)).sum(-2).to(a.dtype)

    lib = torch.library.Library("aten", "IMPL")
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "overriding a previously registered kernel"
            lib.impl("mm", matmul, "CPU")
            lib.impl("bmm", matmul, "CPU")
        yield
    finally:
        lib._destroy()


def _tf32_case():
    """k = 1: style pixel 0 = e0, pixel 1 = e1, the others far; every content pixel (1, 1 + 2^-13, 0, 0):
    pixel 1 scores 1 + 2^-13 > 1 in float32, but TF32 rounds 1 + 2^-13 to 1 and ties it with pixel 0."""
    style = torch.zeros(1, 4, 3, 4)
    pixels = style.view(4, 12)
    pixels[0, 0] = pixels[1, 1] = 1.0
    pixels[2, 2::2] = pixels[3, 3::2] = 1.0
    content = torch.zeros(1, 4, 5, 6)
    content[0, 0], content[0, 1] = 1.0, 1.0 + 2.0 ** -13
    return content, style


@pytest.mark.parametrize("setting", ["precision", "allow_tf32"])
def test_exact_scores_are_float32_whatever_the_matmul_precision(emulated_tf32, setting):
    """The rerank and the refinement decide the choice: they score in float32 even where the user lets
    float32 matmuls run in TF32 (torch.set_float32_matmul_precision("high") or
    torch.backends.cuda.matmul.allow_tf32 = True; on the CPU, TF32 emulated in aten::mm / aten::bmm).
    Before, the rerank was a bmm: in TF32 it tied pixel 1 with pixel 0 and took 0."""
    content, style = _tf32_case()
    inv = ops.bank_inv_norm([style], 1, 1)
    index = ops.build_index([style], inv, 1, 1)
    args = (content, [style], inv, *index, 1, 1, index.clusters, 8, 1)
    before = torch.get_float32_matmul_precision()
    try:
        if setting == "precision":
            torch.set_float32_matmul_precision("high")
        else:
            torch.backends.cuda.matmul.allow_tf32 = True
        assert torch.get_float32_matmul_precision() != "highest"
        # the emulation is on: a bmm of these values ties them
        c = content[0, :, 0, 0].view(1, 1, 4)
        assert torch.bmm(c, style.view(1, 4, 12)[:, :, :2])[0, 0].unique().numel() == 1
        got = torch.ops.styleswap.match_ivf_aten(*args)
        assert (got == 1).all(), got
        assert (torch.ops.styleswap.match_ivf(*args) == 1).all()
    finally:
        torch.set_float32_matmul_precision(before)


@needs_cuda
def test_cuda_exact_scores_are_float32_under_tf32_and_ties_agree_with_the_cpu():
    content, style = _tf32_case()
    before = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        got = ss.match_patches(content.cuda(), style.cuda(), 1, 1, search="approximate", probes=100)
        assert (got.cpu() == 1).all()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    # ties: the lowest index on the GPU too (topk would return any of the tied patches there)
    for seed in range(3):
        content, styles, clab, slab, prev = _integer_case(seed)
        bank_labels = ops.bank_patch_labels(slab, styles, 1, 1)
        inv = ops.bank_inv_norm(styles, 1, 1, [1.0, 0.5])
        index = ops.build_index(styles, inv, 1, 1, weights=[1.0, 0.5], bank_labels=bank_labels)
        ctl = ops.match_controls(content, styles, 1, 1, content_labels=clab, bank_labels=bank_labels,
                                 previous=prev, temporal_weight=0.25)
        cpu = torch.ops.styleswap.match_ivf(content, styles, inv, *index, 1, 1, 3, 8, 1, **ctl)
        cuda = [t.cuda() for t in (content, inv, *index)]
        gpu = torch.ops.styleswap.match_ivf(cuda[0], [st.cuda() for st in styles], cuda[1], *cuda[2:], 1, 1, 3, 8, 1,
                                            **{k: (v.cuda() if torch.is_tensor(v) else v) for k, v in ctl.items()})
        assert torch.equal(gpu.cpu(), cpu)
