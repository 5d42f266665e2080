"""The tiled match driver (csrc/match_tiled.cpp) on CPU tensors, through the private op
``styleswap::_match_bank_tiled``. On a GPU the same code runs with cuBLAS GEMMs
(``STYLESWAP_MATCH_KERNEL=cublas|cublas_fused``, tests/test_cuda.py); here CI checks its logic.

Against an independent float64 computation of the scores (F.unfold of each style, norms + 1e-8,
weights), the reference (a hypothesis property test in float64) and the CPU op ``match_bank`` on the
same bank: random shapes with tiles that force
many ragged row and column tiles, exact ties, zero-norm style patches, banks of several weighted
styles, per-sample styles, non-contiguous inputs, the padded CUDA bank layout (padding must never
win), NaN / -inf scores, float64, bfloat16 / float16 (scores compared by value, DESIGN.md §3).
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import styleswap_ext  # noqa: F401  (registers the ops)
from styleswap_ext.ops import reference

tiled = torch.ops.styleswap._match_bank_tiled
prepare_bank = torch.ops.styleswap.prepare_bank
match_bank = torch.ops.styleswap.match_bank


def small_ints(*shape, generator, dtype=torch.float32):
    """Integer values in [-3, 3]: every dot product of such patches is exact in any summation order
    (BLAS kernels sum in an order that depends on the processor and on where a row sits in the GEMM),
    so equal scores are equal on every machine and a test may compare indices exactly."""
    return torch.randint(-3, 4, shape, generator=generator).to(dtype)


def grid(n: int, k: int, s: int) -> int:
    return (n - k + s - 1) // s + 1


def scores64(content, styles, k, s, weights=None):
    """(N, n_c, n_s) float64 weighted scores w_t <c_i, p_j> / (||p_j|| + 1e-8) and (N, n_c) ||c_i||."""
    c = content.detach().double()
    x = reference._pad_to_grid(c, k, s)
    cp = F.unfold(x, k, stride=s).transpose(1, 2)  # (N, n_c, D), ordered (c, dy, dx)
    out = []
    for n in range(c.shape[0]):
        cols = []
        for t, st in enumerate(styles):
            xs = st[0 if st.shape[0] == 1 else n].detach().double()[None]
            p = F.unfold(xs, k, stride=s)[0].t()  # (n_s_t, D): inner grid (floor)
            w = 1.0 if weights is None else weights[t]
            cols.append((cp[n] @ p.t()) * (w / (p.norm(dim=1) + 1e-8)))
        out.append(torch.cat(cols, dim=1))
    return torch.stack(out), cp.norm(dim=2)


def check_scores(idx, content, styles, k, s, tol, weights=None, exact_where_clear=False):
    """The chosen patch's float64 score is within tol * ||c_i|| of the best; where the best is ahead of
    the second by more than 10 tol, the index is the best one."""
    sc, cnorm = scores64(content, styles, k, s, weights)
    idx = idx.reshape(sc.shape[0], -1)
    assert idx.dtype == torch.long and int(idx.min()) >= 0 and int(idx.max()) < sc.shape[2]
    chosen = sc.gather(2, idx[..., None])[..., 0]
    gap = (sc.max(dim=2).values - chosen) / (cnorm + 1e-12)
    assert gap.max().item() <= tol, f"worst score gap {gap.max().item():.3g} > {tol:g}"
    if exact_where_clear and sc.shape[2] > 1:
        top2 = sc.topk(2, dim=2).values
        clear = (top2[..., 0] - top2[..., 1]) / (cnorm + 1e-12) > 10 * tol
        assert torch.equal(idx[clear], sc.argmax(dim=2)[clear])
        return clear.float().mean().item()
    return 1.0


def same_or_near_tie(a, b, content, styles, k, s, tol, weights=None):
    """Two index maps agree, except where both picks score within tol * ||c_i|| of each other (a near
    tie that another summation order may break the other way)."""
    sc, cnorm = scores64(content, styles, k, s, weights)
    a, b = a.reshape(sc.shape[0], -1), b.reshape(sc.shape[0], -1)
    diff = a != b
    if diff.any():
        sa, sb = sc.gather(2, a[..., None])[..., 0], sc.gather(2, b[..., None])[..., 0]
        gap = ((sa - sb).abs() / (cnorm + 1e-12))[diff]
        assert gap.max().item() <= tol, f"{int(diff.sum())} picks differ, by up to {gap.max().item():.3g}"


def cuda_layout(patches, inv, dtype=None):
    """The CUDA bank layout on CPU tensors: rows padded to a multiple of 256, row length to a multiple
    of 32, zeros (inv_norm 0), optionally cast (exact for a float32 bank built from bf16/fp16 styles)."""
    b, r, d = patches.shape
    rp, dp = -(-r // 256) * 256, -(-d // 32) * 32
    p = torch.zeros(b, rp, dp, dtype=dtype or patches.dtype)
    p[:, :r, :d] = patches
    iv = torch.zeros(b, rp, dtype=inv.dtype)
    iv[:, :r] = inv
    return p, iv


def random_case(rng: random.Random, dtype):
    k = rng.randint(1, 5)
    s = rng.randint(1, min(3, k))
    n = rng.choice([1, 2])
    c = rng.choice([1, 3, 8, 17])
    h, w = rng.randint(k, k + 14), rng.randint(k, k + 14)
    content = torch.randn(n, c, h, w).to(dtype)
    styles = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        styles.append(torch.randn(rng.choice([1, n]), c, rng.randint(k, k + 11), rng.randint(k, k + 11)).to(dtype))
    weights = [rng.choice([0.5, 1.0, 2.0]) for _ in styles] if rng.random() < 0.5 else None
    return content, styles, k, s, weights


def tiles_for(rng: random.Random, n_c: int, n_s: int):
    """(0, 0) = the defaults, or small ragged tiles: many row and column tiles, short last ones."""
    return rng.choice([(0, 0), (rng.randint(1, n_c + 2), rng.randint(1, n_s + 2)), (rng.randint(1, 7), rng.randint(1, 9))])


@pytest.mark.exactness
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("seed", range(16))
def test_random_shapes_equal_reference_and_cpu_op(dtype, tol, seed):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    content, styles, k, s, weights = random_case(rng, dtype)
    patches, inv = prepare_bank(styles, k, s, weights)
    n_s = inv.shape[1]
    n_c = grid(content.shape[2], k, s) * grid(content.shape[3], k, s)
    tr, tc = tiles_for(rng, n_c, n_s)
    idx = tiled(content, patches, inv, n_s, k, s, tr, tc)
    assert idx.shape == (content.shape[0], grid(content.shape[2], k, s), grid(content.shape[3], k, s))
    check_scores(idx, content, styles, k, s, tol, weights, exact_where_clear=True)
    # The CPU op on the same bank, one tile holding everything, and one patch per tile: the same picks.
    for other in (match_bank(content, patches, inv, n_s, k, s), tiled(content, patches, inv, n_s, k, s, n_c, n_s),
                  tiled(content, patches, inv, n_s, k, s, 1, 1)):
        same_or_near_tie(idx, other, content, styles, k, s, tol, weights)


@st.composite
def tiled_cases(draw):
    """A float64 case (shapes, batch, shared / per-sample styles, weights, ReLU-like features with many
    near-ties) and a tile shape from 1 x 1 up to past the whole problem."""
    k = draw(st.integers(1, 5))
    s = draw(st.integers(1, min(3, k)))
    n, c = draw(st.integers(1, 2)), draw(st.sampled_from([1, 3, 8, 17]))
    h, w = draw(st.integers(k, k + 12)), draw(st.integers(k, k + 12))
    sizes = draw(st.lists(st.tuples(st.integers(k, k + 9), st.integers(k, k + 9), st.sampled_from([1, n])),
                          min_size=1, max_size=3))
    weighted, relu, seed = draw(st.booleans()), draw(st.booleans()), draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    act = torch.relu if relu else (lambda x: x)
    content = act(torch.randn(n, c, h, w, generator=g, dtype=torch.float64))
    styles = [act(torch.randn(b, c, hs, ws, generator=g, dtype=torch.float64)) for hs, ws, b in sizes]
    weights = [draw(st.sampled_from([0.25, 1.0, 3.0])) for _ in styles] if weighted else None
    n_c = grid(h, k, s) * grid(w, k, s)
    n_s = sum(((hs - k) // s + 1) * ((ws - k) // s + 1) for hs, ws, _ in sizes)
    tiles = (draw(st.integers(1, n_c + 2)), draw(st.integers(1, n_s + 2)))
    return content, styles, k, s, weights, tiles


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(tiled_cases())
def test_property_equals_reference(case):
    """Property test (float64): the driver's pick is the reference's best score on every case, the
    reference's own index wherever its winner is clear, and the CPU op's pick but for near-ties."""
    content, styles, k, s, weights, (tr, tc) = case
    patches, inv = prepare_bank(styles, k, s, weights)
    n_s = inv.shape[1]
    idx = tiled(content, patches, inv, n_s, k, s, tr, tc)
    check_scores(idx, content, styles, k, s, 1e-12, weights, exact_where_clear=True)
    if weights is None:
        ref = reference.match_patches(content, styles, k, s)
        same_or_near_tie(idx, ref, content, styles, k, s, 1e-12)
    same_or_near_tie(idx, match_bank(content, patches, inv, n_s, k, s), content, styles, k, s, 1e-12, weights)


@pytest.mark.exactness
def test_many_ragged_tiles_equal_one_tile():
    """Integer-valued data makes every score independent of the tile shape (exact dot products, one
    scaling), so every tiling must give exactly the indices of the untiled search, ties included."""
    g = torch.Generator().manual_seed(1)
    f64 = dict(generator=g, dtype=torch.float64)
    content = small_ints(2, 6, 17, 13, **f64)
    styles = [small_ints(1, 6, 11, 9, **f64), small_ints(2, 6, 7, 8, **f64)]
    patches, inv = prepare_bank(styles, 3, 1, [1.0, 1.5])
    n_s = inv.shape[1]
    expected = tiled(content, patches, inv, n_s, 3, 1, 10_000, 10_000)
    check_scores(expected, content, styles, 3, 1, 1e-12, [1.0, 1.5], exact_where_clear=True)
    for tr, tc in [(1, 1), (7, 5), (13, 64), (64, 13), (150, 104), (2, n_s - 1)]:
        assert torch.equal(tiled(content, patches, inv, n_s, 3, 1, tr, tc), expected), (tr, tc)


@pytest.mark.exactness
@pytest.mark.parametrize("bank_dtype", [None, torch.float64, torch.bfloat16])
def test_exact_ties_pick_lowest_index(bank_dtype):
    """Identical style patches: the lowest index wins, whether the twins share a column tile or not.
    Integer values (exact in bf16 too): the twins' dot products are equal wherever they sit in the bank
    (with random floats MKL on an AMD AVX2 CPU gave float64 twins different last bits)."""
    dtype = torch.float64 if bank_dtype == torch.float64 else torch.float32
    g = torch.Generator().manual_seed(11)
    half = small_ints(1, 8, 10, 9, generator=g, dtype=dtype)
    style = torch.cat([half, half], dim=3)  # patch (y, x) == patch (y, x + 9) where both fit
    k = 3
    gw = style.shape[3] - k + 1
    content = style[:, :, 2:7, 9:16].contiguous()  # right-half patches, each tied with its left twin
    patches, inv = prepare_bank([style], k, 1)
    n_s = inv.shape[1]
    if bank_dtype == torch.bfloat16:
        patches, inv = cuda_layout(patches, inv, torch.bfloat16)
        content = content.bfloat16()
    expected = torch.tensor([[(2 + i) * gw + j for j in range(5)] for i in range(3)])  # 3 x 5 grid
    for tr, tc in [(0, 0), (3, 5), (1, 1), (15, 7), (4, gw)]:
        idx = tiled(content, patches, inv, n_s, k, 1, tr, tc)[0]
        assert torch.equal(idx, expected), (tr, tc, idx)
    # Two identical style tensors in a bank: the first one's patches win.
    patches2, inv2 = prepare_bank([style, style], k, 1)
    if bank_dtype == torch.bfloat16:
        patches2, inv2 = cuda_layout(patches2, inv2, torch.bfloat16)
    assert torch.equal(tiled(content, patches2, inv2, 2 * n_s, k, 1, 5, 11)[0], expected)


@pytest.mark.exactness
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("tiles", [(0, 2048), (50, 0)])
def test_column_tiles_of_a_1024px_style_with_identical_patches(dtype, tiles):
    """The column tiling of a 1024 px match (issue 37): a 256 x 256 style map, k = 3, so n_s = 64,516 bank
    rows, in the GPU's 2,048-wide column tiles (31 full ones and a last one of 1,028) or the CPU's
    default 1,024 (63 and a last one of 4). A flat region (identical patches) spans column tiles 12-17
    of 2,048 and appears again in the narrow last tile. With small integers every product and partial
    sum is exact, so the narrower tile's GEMM (another BLAS kernel, another summation order) cannot
    change a score: the picks equal the CPU op's bit for bit and every flat content patch takes the
    lowest flat index. tests/test_cuda.py::test_experimental_tiled_path_at_1024px is the GPU twin."""
    g = torch.Generator().manual_seed(37)
    gw = 254
    style = torch.randint(-3, 4, (1, 4, 256, 256), generator=g).float()
    style[:, :, 100:140, 30:200] = 2.0  # patches (100..137, 30..197): indices 25,430 .. 34,995
    style[:, :, 252:256, 10:60] = 2.0  # patches (252..253, 10..57): indices >= 64,018, in the last tile
    first_flat, last_tile_start = 100 * gw + 30, 31 * 2048
    assert first_flat // 2048 == 12 and (137 * gw + 197) // 2048 == 17 and 252 * gw + 10 >= last_tile_start
    content = torch.randint(-3, 4, (1, 4, 6, 40), generator=g).float()
    content[:, :, :, :10] = 1.0  # content patches with x <= 7 are flat: their best is any flat style patch
    patches, inv = prepare_bank([style], 3, 1)
    n_s = inv.shape[1]
    assert n_s == 64_516 and n_s - last_tile_start == 1028
    expected = match_bank(content, patches, inv, n_s, 3, 1)
    if dtype == torch.bfloat16:  # the GPU's bf16 bank layout (padded, bf16 values: exact for these integers)
        patches, inv = cuda_layout(patches, inv, torch.bfloat16)
        content = content.bfloat16()
    idx = tiled(content, patches, inv, n_s, 3, 1, *tiles)
    assert torch.equal(idx, expected)
    assert (idx[0, :, :8] == first_flat).all(), idx[0, :, :8]


@pytest.mark.exactness
def test_zero_norm_style_patches_and_zero_content():
    g = torch.Generator().manual_seed(12)
    flat = torch.zeros(1, 4, 9, 9)  # every patch has norm 0: eps keeps the scores finite (all 0)
    content = small_ints(1, 4, 6, 7, generator=g)  # exact scores: the two ops' picks may be compared
    patches, inv = prepare_bank([flat], 3, 1)
    assert torch.isfinite(inv).all()
    assert torch.count_nonzero(tiled(content, patches, inv, 49, 3, 1, 5, 6)) == 0
    # A bank whose zero patches score 0: they win only where every real score is below 0.
    style = small_ints(1, 4, 9, 9, generator=g)
    style[..., :4, :] = 0  # the first rows of patches are all zero
    patches, inv = prepare_bank([style], 3, 1)
    for c in (content, torch.zeros(1, 4, 6, 7)):
        idx = tiled(c, patches, inv, 49, 3, 1, 4, 9)
        assert torch.equal(idx, match_bank(c, patches, inv, 49, 3, 1))
        check_scores(idx, c, [style], 3, 1, 1e-6)


@pytest.mark.exactness
def test_padded_cuda_layout_never_picks_padding():
    """Padded bank rows score exactly 0 (zero patch, inv_norm 0); with every real score negative they
    would win if the reduce read them. Integer values: the padded GEMM (longer rows) and the CPU op's
    give the same scores, so the picks are compared exactly."""
    g = torch.Generator().manual_seed(4)
    style = torch.randint(1, 4, (1, 5, 8, 11), generator=g).float()  # positive
    content = -torch.randint(1, 4, (2, 5, 9, 7), generator=g).float()  # negative: every real score < 0
    patches, inv = prepare_bank([style], 3, 1)
    n_s = inv.shape[1]
    pp, piv = cuda_layout(patches, inv)
    assert pp.shape[1] == 256 and pp.shape[2] == 64
    cpu = match_bank(content, patches, inv, n_s, 3, 1)
    for tr, tc in [(0, 0), (5, 8), (7, n_s), (63, 3), (1, 53)]:
        idx = tiled(content, pp, piv, n_s, 3, 1, tr, tc)
        assert int(idx.max()) < n_s
        assert torch.equal(idx, cpu), (tr, tc)


def _raw_bank_k1(style: torch.Tensor):
    """The CPU bank of a (1, C, H, W) style for k = 1, made by hand: prepare_bank refuses styles whose
    patch norms would overflow float32 matching (tests/test_reliability.py), and these tests need
    exactly such scores to reach the match."""
    patches = style[0].reshape(style.shape[1], -1).t().contiguous()  # (n_s, C), row-major over the grid
    inv = (1.0 / (patches.double().norm(dim=1) + 1e-8)).float()
    return patches[None], inv[None]


@pytest.mark.exactness
def test_nan_and_minus_inf_scores_follow_the_cpu_kernel():
    """Finite inputs can still overflow a dot product: a NaN score never wins, a row whose scores are
    all NaN or all -inf gets index 0 (the CPU kernel's '>' comparisons)."""
    big = 3e38
    style = torch.tensor([[[[big, 1.0, 0.0]], [[-big, 0.0, 1.0]]]])  # k=1: p0 = (big, -big), p1 = e0, p2 = e1
    content = torch.tensor([[[[big, 1.0]], [[big, 2.0]]]])  # c0: NaN vs p0, big vs p1 and p2 (tie); c1: p2
    patches, inv = _raw_bank_k1(style)
    cpu = match_bank(content, patches, inv, 3, 1, 1)
    assert cpu.flatten().tolist() == [1, 2]
    for tr, tc in [(0, 0), (1, 1), (2, 2), (1, 3)]:
        assert torch.equal(tiled(content, patches, inv, 3, 1, 1, tr, tc), cpu)
    p0, i0 = _raw_bank_k1(style[..., :1])  # p0 alone: c0's only score is NaN
    assert tiled(content, p0, i0, 1, 1, 1)[0, 0, 0].item() == 0
    neg = torch.tensor([[[[-big]], [[-big]]]])  # c = (-big, -big) against (big, big): -inf
    pb, ib = _raw_bank_k1(torch.full((1, 2, 1, 3), big))
    assert torch.equal(tiled(neg, pb, ib, 3, 1, 1, 1, 1), match_bank(neg, pb, ib, 3, 1, 1))
    assert tiled(neg, pb, ib, 3, 1, 1, 1, 1).item() == 0


@pytest.mark.exactness
def test_non_contiguous_inputs():
    g = torch.Generator().manual_seed(23)  # integer values: other strides may not change a pick
    content = small_ints(2, 18, 16, 24, generator=g)[:, ::2]  # channel stride 2
    style1 = small_ints(1, 9, 24, 13, generator=g).transpose(2, 3)
    style2 = small_ints(2, 9, 13, 17, generator=g).to(memory_format=torch.channels_last)
    patches, inv = prepare_bank([style1, style2], 3, 2)
    n_s = inv.shape[1]
    wide = torch.zeros(2, n_s, patches.shape[2] + 5)
    wide[:, :, 2 : 2 + patches.shape[2]] = patches
    view = wide[:, :, 2 : 2 + patches.shape[2]]  # a non-contiguous bank view
    assert not content.is_contiguous() and not view.is_contiguous()
    expected = tiled(content.contiguous(), patches, inv, n_s, 3, 2, 9, 10)
    assert torch.equal(tiled(content, view, inv, n_s, 3, 2, 9, 10), expected)
    check_scores(expected, content, [style1, style2], 3, 2, 1e-5, exact_where_clear=True)


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 1e-4), (torch.float16, 1e-4)])
@pytest.mark.parametrize("layout", ["cpu", "cuda"])
@pytest.mark.parametrize("seed", range(4))
def test_reduced_precision_float32_scores(dtype, tol, layout, seed):
    """bf16/fp16 inputs: the products are exact and accumulated in float32 into float32 scores, so the
    chosen patch's score (float64 of the rounded inputs) is within float32 accuracy of the best. The
    CPU layout is a float32 bank (prepare_bank on the CPU); the CUDA layout a padded bank in the input
    dtype (the driver's float32-output GEMM; on the CPU an exact upcast)."""
    rng = random.Random(100 + seed)
    torch.manual_seed(100 + seed)
    content, styles, k, s, weights = random_case(rng, dtype)
    patches, inv = prepare_bank(styles, k, s, weights)
    assert patches.dtype == torch.float32
    n_s = inv.shape[1]
    if layout == "cuda":
        patches, inv = cuda_layout(patches, inv, dtype)
    n_c = grid(content.shape[2], k, s) * grid(content.shape[3], k, s)
    idx = tiled(content, patches, inv, n_s, k, s, *tiles_for(rng, n_c, n_s))
    check_scores(idx, content, styles, k, s, tol, weights)
    # The CPU op (float32 bank, float32 GEMM of the same exact values): the same picks but near-ties.
    cpu_patches, cpu_inv = prepare_bank(styles, k, s, weights)
    same_or_near_tie(idx, match_bank(content, cpu_patches, cpu_inv, n_s, k, s), content, styles, k, s, tol, weights)


def test_inputs_that_require_grad():
    g = torch.Generator().manual_seed(9)
    content = torch.randn(1, 3, 9, 8, generator=g).requires_grad_()
    style = torch.randn(1, 3, 7, 7, generator=g).requires_grad_()
    patches, inv = prepare_bank([style.detach()], 3, 1)
    args = (patches.requires_grad_(), inv.requires_grad_(), 25, 3, 1, 4, 6)
    idx = tiled(content, *args)
    assert not idx.requires_grad
    assert torch.equal(idx, tiled(content.detach(), patches.detach(), inv.detach(), 25, 3, 1, 4, 6))


@pytest.mark.exactness
def test_default_tiles_from_environment(monkeypatch):
    g = torch.Generator().manual_seed(8)  # integer values: other tiles may not change a pick
    content = small_ints(1, 3, 12, 11, generator=g, dtype=torch.float64)
    style = small_ints(1, 3, 10, 9, generator=g, dtype=torch.float64)
    patches, inv = prepare_bank([style], 3, 1)
    expected = tiled(content, patches, inv, 56, 3, 1)
    for env in ["3,5", "1,1", "1000,1000", "bad", "0,4"]:  # malformed values keep the defaults
        monkeypatch.setenv("STYLESWAP_TILED_TILE", env)
        assert torch.equal(tiled(content, patches, inv, 56, 3, 1), expected), env


def test_errors_name_the_argument():
    c = torch.randn(1, 4, 8, 8)
    patches, inv = prepare_bank([torch.randn(1, 4, 8, 8)], 3, 1)
    with pytest.raises(ValueError, match="tile_rows"):
        tiled(c, patches, inv, 36, 3, 1, -1, 0)
    with pytest.raises(ValueError, match="tile_cols"):
        tiled(c, patches, inv, 36, 3, 1, 0, -2)
    with pytest.raises(ValueError, match="fused"):
        tiled(c, patches, inv, 36, 3, 1, 0, 0, True)
    with pytest.raises(TypeError, match="bank"):
        tiled(c, patches.bfloat16(), inv, 36, 3, 1)  # float32 content, bf16 bank
    with pytest.raises(TypeError, match="bank"):
        tiled(c.double(), patches, inv, 36, 3, 1)
    with pytest.raises(ValueError, match="num_patches"):
        tiled(c, patches, inv, 37, 3, 1)
    # Every reducer reads a column tile's inverse norms as one run (the fused CUDA reduce: float4 loads;
    # before this check a strided inv_norm reached an internal assert there, issue 37).
    strided = torch.stack([inv, inv], dim=-1)[..., 0]  # (1, 36), stride 2 along the rows
    assert strided.stride(1) == 2 and torch.equal(strided, inv)
    with pytest.raises(ValueError, match=r"inv_norm must have unit stride along its rows .*inv_norm.contiguous\(\)"):
        tiled(c, patches, strided, 36, 3, 1)
    assert torch.equal(tiled(c, patches, strided.contiguous(), 36, 3, 1), tiled(c, patches, inv, 36, 3, 1))
    bad = c.clone()
    bad[0, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        tiled(bad, patches, inv, 36, 3, 1)
