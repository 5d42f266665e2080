"""The fused CPU operator against the paper's reference formulation."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import styleswap_ext as ss
from styleswap_ext.ops import reference as ref

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def _style_list(style):
    return list(style) if isinstance(style, (list, tuple)) else [style]


def exact_scores(content, style, k, s):
    """float64 normalised correlations (N, n_c, n_s), computed independently of both implementations."""
    content = content.double()
    if content.dim() == 3:
        content = content[None]
    h, w = content.shape[-2:]
    content = F.pad(content, (0, (-(w - k)) % s, 0, (-(h - k)) % s), mode="replicate")
    out = []
    for n in range(content.shape[0]):
        cols = F.unfold(content[n : n + 1], k, stride=s)[0].T  # (n_c, D)
        bank = []
        for st_ in _style_list(style):
            st4 = st_.double() if st_.dim() == 4 else st_.double()[None]
            bank.append(F.unfold(st4[0 if st4.shape[0] == 1 else n][None], k, stride=s)[0].T)
        bank = torch.cat(bank)
        out.append(cols @ bank.T / (bank.norm(dim=1) + 1e-8))
    return torch.stack(out)


def assert_best(indices, content, style, k, s, rtol):
    """The chosen patch's score equals the best score within rtol (relative to the row's score scale)."""
    scores = exact_scores(content, style, k, s)
    idx = indices.reshape(scores.shape[0], -1)
    chosen = scores.gather(2, idx[..., None])[..., 0]
    best = scores.max(dim=2).values
    scale = scores.abs().amax(dim=2).clamp_min(1e-30)
    gap = ((best - chosen) / scale).max().item()
    assert gap <= rtol, f"chosen patch scores {gap:.3g} (relative) below the best"


def small_ints(*shape, generator):
    """Integer values in [-3, 3] as float32: every dot product is exact in any summation order, so two
    computations of the op (other strides, batches, banks) give equal scores on every processor."""
    return torch.randint(-3, 4, shape, generator=generator).float()


def random_case(draw_shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, c, h, w, k, s, kind, n_styles = draw_shape
    content = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    styles = []
    for i in range(n_styles):
        hs, ws = max(k, h - 3 * i), max(k, w + 2 * i - 1)
        b = n if kind == "per_sample" else 1
        styles.append(torch.randn(b, c, hs, ws, generator=g, dtype=dtype))
    style = styles if n_styles > 1 else (styles[0][0] if kind == "shared3d" else styles[0])
    return content, style, k, s


@st.composite
def shapes(draw):
    k = draw(st.integers(1, 7))
    s = draw(st.integers(1, min(3, k)))
    c = draw(st.sampled_from([1, 2, 3, 8, 17, 64]))
    h = draw(st.integers(k, 40))
    w = draw(st.integers(k, 40))
    n = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["shared", "shared3d", "per_sample"]))
    n_styles = draw(st.integers(1, 3))
    return n, c, h, w, k, s, kind, n_styles


@settings(max_examples=120, **SETTINGS)
@given(shapes(), st.integers(0, 2**16))
def test_fused_matches_reference(shape, seed):
    content, style, k, s = random_case(shape, seed=seed)
    idx = ss.match_patches(content, style, k, s)
    ref_idx = ref.match_patches(content, style, k, s)
    assert idx.shape == ref_idx.shape and idx.dtype == torch.long
    assert_best(idx, content, style, k, s, rtol=1e-5)
    assert_best(ref_idx, content, style, k, s, rtol=1e-5)
    out = ss.style_swap(content, style, k, s)
    assert out.shape == content.shape
    # Where the choices agree the features agree; rebuild the reference from our choice to compare all.
    torch.testing.assert_close(out, ref.rebuild(content, style, idx, k, s), rtol=1e-5, atol=1e-6)
    if torch.equal(idx, ref_idx):
        torch.testing.assert_close(out, ref.style_swap(content, style, k, s), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k,s", [(3, 1), (4, 3), (5, 2), (2, 2)])
def test_uncovered_border_replicates(k, s):
    """(H - k) not a multiple of s: the last patch row reads replicated rows; every pixel is covered.
    Compared by score (the reference divides where the op multiplies: near-ties may go either way)."""
    g = torch.Generator().manual_seed(1)
    content, style = torch.randn(1, 4, 11, 10, generator=g), torch.randn(1, 4, 9, 9, generator=g)
    idx = ss.match_patches(content, style, k, s)
    assert idx.shape[1:] == ((11 - k + s - 1) // s + 1, (10 - k + s - 1) // s + 1)
    assert_best(idx, content, style, k, s, rtol=1e-5)  # exact_scores pads by replication too
    out = ss.style_swap(content, style, k, s)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref.rebuild(content, style, idx, k, s))


def test_agrees_with_reference_on_relu31_like_features():
    """Non-negative, sparse features like VGG's relu3_1 (many near-ties): compare by score."""
    g = torch.Generator().manual_seed(3)
    content = torch.relu(torch.randn(2, 64, 24, 20, generator=g))
    style = torch.relu(torch.randn(64, 18, 22, generator=g))
    idx = ss.match_patches(content, style)
    assert_best(idx, content, style, 3, 1, rtol=1e-5)
    torch.testing.assert_close(ss.style_swap(content, style), ref.rebuild(content, style, idx))


def _no_parallel_distinct_patches(style, k, s):
    """True if no two different patches are positive multiples of each other (their NCC would tie in exact
    arithmetic but not in floating point, so no implementation can promise a tie-break for them)."""
    p = torch.nn.functional.unfold(style[None], k, stride=s)[0].T.to(torch.int64).unique(dim=0)
    dots = p @ p.T
    sq = dots.diagonal()
    parallel = (dots * dots == sq[:, None] * sq[None, :]) & (dots > 0)
    return parallel.sum() == p.shape[0]  # only each patch with itself


@pytest.mark.exactness
def test_exact_ties_go_to_lowest_index():
    """A style made of a repeated tile has many identical patches: the lowest index must win.

    Integer-valued features make every dot product exact, so identical patches tie exactly in both
    implementations; the best distinct score is checked to be well clear of the tie (no rounding of
    either implementation can reorder them)."""
    g = torch.Generator().manual_seed(4)
    tile = torch.randint(0, 50, (3, 4, 5), generator=g).float()
    style = tile.repeat(1, 4, 3)  # (3, 16, 15): patch (y, x) == patch (y + 4, x) == patch (y, x + 5)
    content = torch.randint(0, 50, (2, 3, 12, 13), generator=g).float()
    for k, s in [(3, 1), (2, 1), (1, 1), (3, 2)]:
        assert _no_parallel_distinct_patches(style, k, s)
        idx = ss.match_patches(content, style, k, s)
        assert torch.equal(idx, ref.match_patches(content, style, k, s))
        scores = exact_scores(content, style, k, s)
        best = scores.max(dim=2, keepdim=True).values
        lowest = (scores == best).to(torch.int8).argmax(dim=2)  # first index reaching the maximum
        assert torch.equal(idx.reshape(2, -1), lowest)
        assert (scores == best).sum(dim=2).min() >= 2  # the test really has ties
        runner_up = scores.masked_fill(scores == best, float("-inf")).max(dim=2, keepdim=True).values
        # each implementation rounds a score a few float32 ulps (~2e-7) from the exact one: 1e-6 is clear
        assert ((best - runner_up) / best.abs()).min() > 1e-6


def test_zero_norm_style_patches_give_no_nan():
    style = torch.zeros(1, 8, 10, 10)
    style[..., 5:, 5:] = torch.rand(1, 8, 5, 5)  # a flat black region plus some texture
    content = torch.randn(1, 8, 9, 9)
    content[..., :4, :4] = 0  # zero content patches: every score 0, lowest index
    out = ss.style_swap(content, style)
    assert torch.isfinite(out).all()
    idx = ss.match_patches(content, style)
    assert_best(idx, content, style, 3, 1, rtol=1e-5)
    assert idx[0, :2, :2].eq(0).all()
    assert ss.match_patches(torch.zeros(1, 8, 5, 5), style).eq(0).all()


def test_identity_when_style_is_content():
    """Each content patch is its own best match (k=1, positive features: NCC is 1 only for parallel vectors)."""
    x = torch.rand(1, 16, 9, 7) + 0.1
    torch.testing.assert_close(ss.style_swap(x, x, 1, 1), x)


@pytest.mark.exactness
def test_batch_semantics():
    """Batches and banks of several styles give what each sample or style gives alone. Integer values:
    a patch's score does not depend on where it sits in the GEMM, so the picks can be compared."""
    g = torch.Generator().manual_seed(5)
    content = small_ints(3, 6, 12, 12, generator=g)
    styles = small_ints(3, 6, 10, 11, generator=g)
    per_sample = ss.style_swap(content, styles)
    for n in range(3):
        torch.testing.assert_close(per_sample[n], ss.style_swap(content[n], styles[n]))
    shared = ss.style_swap(content, styles[1])
    torch.testing.assert_close(shared, ss.style_swap(content, styles[1:2]))
    # A bank of two styles numbers the second style's patches after the first's.
    a, b = styles[0], styles[2]
    idx = ss.match_patches(content, [a, b])
    n_a = (10 - 2) * (11 - 2)
    only_b = ss.match_patches(content, b)
    assert torch.equal(idx[idx >= n_a] - n_a, only_b[idx >= n_a])


def test_3d_content_returns_3d():
    content, style = torch.randn(4, 8, 8), torch.randn(4, 6, 6)
    assert ss.style_swap(content, style).shape == (4, 8, 8)
    assert ss.match_patches(content, style).shape == (6, 6)


@pytest.mark.exactness
def test_non_contiguous_inputs():
    g = torch.Generator().manual_seed(6)  # integer values: other strides may not change a pick
    content = small_ints(2, 10, 13, 5, generator=g)
    style = small_ints(1, 10, 9, 6, generator=g)
    c_nc = content.transpose(1, 2).contiguous().transpose(1, 2)  # same values, other strides
    s_nc = style.contiguous(memory_format=torch.channels_last)
    assert not c_nc.is_contiguous() and not s_nc.is_contiguous()
    torch.testing.assert_close(ss.style_swap(c_nc, s_nc), ss.style_swap(content, style), rtol=0, atol=0)


@pytest.mark.exactness
def test_deterministic():
    g = torch.Generator().manual_seed(7)
    content, style = torch.randn(2, 32, 30, 30, generator=g), torch.randn(32, 30, 30, generator=g)
    a, b = ss.style_swap(content, style), ss.style_swap(content, style)
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_other_dtypes(dtype):
    g = torch.Generator().manual_seed(8)
    content, style = torch.randn(2, 8, 12, 12, generator=g), torch.randn(8, 11, 11, generator=g)
    out = ss.style_swap(content.to(dtype), style.to(dtype))
    assert out.dtype == dtype
    idx = ss.match_patches(content.to(dtype), style.to(dtype))
    # Reduced precision matches in float32 on the CPU (on its rounded inputs): compare by score.
    assert_best(idx, content.to(dtype), style.to(dtype), 3, 1, rtol=1e-5)
    tol = {torch.float64: 1e-12, torch.bfloat16: 1e-2, torch.float16: 1e-3}[dtype]
    torch.testing.assert_close(out.double(), ref.rebuild(content.double(), style.double(), idx).double(), rtol=tol,
                               atol=tol)
