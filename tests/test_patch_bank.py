"""PatchBank: the normalised style patch bank prepared once (prepare_bank) and matched many times
(match_bank) gives what match_patches / style_swap give, on every device that is there."""

from __future__ import annotations

import pytest

# The whole file compares the picks of two computations exactly (on integer-valued data).
pytestmark = pytest.mark.exactness
import torch
import torch.nn.functional as F

import styleswap_ext as ss
from styleswap_ext import PatchBank
from styleswap_ext.ops import bank_layout

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not (torch.cuda.is_available() and ss.CUDA_BUILT), reason="needs a CUDA GPU and a CUDA build"))]


def _rand(*shape, seed, device="cpu", dtype=torch.float32):
    """Integer values in [-3, 3]: every dot product is exact in any summation order, so the bank and the
    ops (other GEMM shapes, slabs, padding) give equal scores on every processor and equal picks."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-3, 4, shape, generator=g).to(device=device, dtype=dtype)


CASES = [  # content (N, C, H, W), style shapes, k, s
    ((1, 8, 13, 11), [(1, 8, 9, 10)], 3, 1),
    ((2, 5, 12, 15), [(1, 5, 7, 7), (1, 5, 11, 6)], 3, 2),
    ((3, 4, 9, 9), [(3, 4, 8, 10)], 2, 1),  # per-sample bank
    ((2, 3, 10, 7), [(2, 3, 6, 6), (1, 3, 9, 5)], 1, 1),  # mixed per-sample and shared
    ((1, 64, 20, 17), [(1, 64, 15, 21)], 5, 3),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_bank_equals_match_patches_and_style_swap(case, dtype, device):
    cshape, sshapes, k, s = CASES[case]
    styles = [_rand(*sh, seed=10 + i, device=device, dtype=dtype) for i, sh in enumerate(sshapes)]
    style = styles if len(styles) > 1 else styles[0]
    bank = PatchBank(style, k, s)
    assert bank.num_patches == sum(((h - k) // s + 1) * ((w - k) // s + 1) for *_, h, w in sshapes)
    for seed in range(3):  # one bank, several contents
        content = _rand(*cshape, seed=seed, device=device, dtype=dtype)
        torch.testing.assert_close(bank.match(content), ss.match_patches(content, style, k, s), rtol=0, atol=0)
        torch.testing.assert_close(bank.swap(content), ss.style_swap(content, style, k, s), rtol=0, atol=0)
    # 3-D content with a shared bank
    if all(sh[0] == 1 for sh in sshapes):
        c3 = _rand(*cshape[1:], seed=7, device=device, dtype=dtype)
        torch.testing.assert_close(bank.swap(c3), ss.style_swap(c3, style, k, s), rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_shared_bank_serves_contents_of_any_batch_and_size(device):
    style = _rand(1, 6, 12, 12, seed=1, device=device)
    bank = PatchBank(style)
    for n, h, w in [(1, 5, 5), (4, 17, 9), (2, 30, 31)]:
        content = _rand(n, 6, h, w, seed=n + h, device=device)
        torch.testing.assert_close(bank.swap(content), ss.style_swap(content, style), rtol=0, atol=0)


def _weighted_argmax(content, styles, weights, k, s):
    """float64 reference: per style, conv2d scores / ||patch||, times the weight; argmax over the bank."""
    content = content.double()
    h, w = content.shape[-2:]
    padded = F.pad(content, (0, (-(w - k)) % s, 0, (-(h - k)) % s), mode="replicate")
    scores = []
    for st, wt in zip(styles, weights):
        st = st.double()
        kernels = F.unfold(st, k, stride=s)[0].T.reshape(-1, st.shape[1], k, k)
        norms = kernels.flatten(1).norm(dim=1) + 1e-8
        scores.append(F.conv2d(padded, kernels, stride=s) / norms[None, :, None, None] * wt)
    return torch.cat(scores, 1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("weights", [[1.0, 1.0], [2.0, 0.5], [0.05, 3.0], [1e-3, 1.0]])
def test_weights_scale_each_styles_scores(weights, device):
    content = _rand(1, 8, 14, 13, seed=3, device=device).relu()
    styles = [_rand(1, 8, 10, 9, seed=4, device=device).relu(), _rand(1, 8, 8, 12, seed=5, device=device).relu()]
    idx = PatchBank(styles, 3, 1, weights).match(content)
    scores = _weighted_argmax(content.cpu(), [s.cpu() for s in styles], weights, 3, 1)
    chosen = scores.flatten(2).gather(1, idx.cpu().flatten(1)[:, None])[:, 0]
    best = scores.flatten(2).max(1).values
    assert ((best - chosen) / best.abs().clamp_min(1e-12)).max() <= 1e-5
    # the weights matter: a large weight on one style takes (nearly) every position
    if max(weights) / min(weights) >= 100:
        strong = 0 if weights[0] > weights[1] else 1
        n0 = ((10 - 2) * (9 - 2))
        from_strong = (idx < n0) if strong == 0 else (idx >= n0)
        assert from_strong.float().mean() > 0.9
    if weights[0] == weights[1]:
        torch.testing.assert_close(idx, ss.match_patches(content, styles, 3, 1), rtol=0, atol=0)


def test_gradient_flows_to_styles_like_style_swap():
    content = _rand(2, 4, 9, 8, seed=0, dtype=torch.float64)
    style = _rand(1, 4, 7, 7, seed=1, dtype=torch.float64).requires_grad_()
    upstream = _rand(2, 4, 9, 8, seed=2, dtype=torch.float64)
    (PatchBank(style, 3, 2).swap(content) * upstream).sum().backward()
    g_bank, style.grad = style.grad.clone(), None
    (ss.style_swap(content, style, 3, 2) * upstream).sum().backward()
    torch.testing.assert_close(g_bank, style.grad, rtol=0, atol=0)
    # the bank itself is data, not part of the graph (on the CPU at stride 1 there are only the inverse norms)
    assert not PatchBank(style, 3, 2).patches.requires_grad
    assert PatchBank(style).patches is None and not PatchBank(style).inv_norm.requires_grad


def test_bank_layout_and_opcheck_on_cpu():
    styles = [_rand(1, 3, 6, 7, seed=0), _rand(1, 3, 5, 5, seed=1)]
    patches, inv = torch.ops.styleswap.prepare_bank(styles, 3, 1, [1.0, 2.0])
    (shape, dtype, inv_shape, inv_dtype) = bank_layout(styles, 3, 1)
    assert patches.shape == shape == (1, 4 * 5 + 3 * 3, 27) and patches.dtype == dtype == torch.float32
    assert inv.shape == inv_shape and inv.dtype == inv_dtype
    # rows are the patches, inv_norm = (weight / largest weight) / (||patch|| + 1e-8)
    ref_rows = torch.cat([F.unfold(st, 3)[0].T for st in styles])
    torch.testing.assert_close(patches[0], ref_rows)
    norms = ref_rows.double().norm(dim=1) + 1e-8
    torch.testing.assert_close(inv[0].double(), torch.cat([0.5 / norms[:20], 1 / norms[20:]]), rtol=1e-6, atol=0)
    # bf16 styles: the CPU bank is float32 (no reduced-precision GEMM on the CPU)
    p16, _ = torch.ops.styleswap.prepare_bank([styles[0].bfloat16()], 3, 1)
    assert p16.dtype == torch.float32 and bank_layout([styles[0].bfloat16()], 3, 1)[1] == torch.float32
    torch.library.opcheck(torch.ops.styleswap.prepare_bank.default, (styles, 3, 1, [1.0, 2.0]))
    torch.library.opcheck(torch.ops.styleswap.prepare_bank.default, (styles, 2, 2))
    content = _rand(2, 3, 9, 8, seed=5)
    torch.library.opcheck(torch.ops.styleswap.match_bank.default, (content, patches, inv, 29, 3, 1))


def test_bank_with_padding_rows_and_columns_matches_the_same():
    """A bank whose rows/row length carry zero padding (as CUDA lays it out) matches identically on the CPU."""
    style, content = _rand(1, 4, 8, 9, seed=0), _rand(1, 4, 10, 10, seed=1)
    patches, inv = torch.ops.styleswap.prepare_bank([style], 3, 1)
    padded = F.pad(patches, (0, 12, 0, 200))  # rows -> 242, row length 36 -> 48
    padded_inv = F.pad(inv, (0, 200))
    n_s = patches.shape[1]
    torch.testing.assert_close(torch.ops.styleswap.match_bank(content, padded, padded_inv, n_s, 3, 1),
                               ss.match_patches(content, style), rtol=0, atol=0)


def test_compile_fullgraph():
    style, content = _rand(1, 4, 8, 8, seed=0), _rand(2, 4, 11, 9, seed=1)
    bank = PatchBank(style, 3, 1)
    f = torch.compile(lambda c: bank.swap(c), fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(f(content), ss.style_swap(content, style), rtol=0, atol=0)


def test_bf16_bank_on_cpu_equals_bf16_style_swap():
    style, content = _rand(1, 8, 9, 9, seed=0, dtype=torch.bfloat16), _rand(1, 8, 12, 12, seed=1, dtype=torch.bfloat16)
    bank = PatchBank(style)
    torch.testing.assert_close(bank.swap(content), ss.style_swap(content, style), rtol=0, atol=0)
    assert bank.dtype == torch.bfloat16 and "PatchBank(1 style tensor(s)" in repr(bank)


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("make, exc, match", [
    (lambda s: PatchBank(s, 0), ValueError, "patch_size must be >= 1"),
    (lambda s: PatchBank(s, 3, 4), ValueError, "must not exceed patch_size"),
    (lambda s: PatchBank([]), ValueError, "empty list"),
    (lambda s: PatchBank("style"), TypeError, "tensor or a list"),
    (lambda s: PatchBank(s.long()), TypeError, "floating-point"),
    (lambda s: PatchBank(s[0, 0]), ValueError, "must be \\(C, Hs, Ws\\)"),
    (lambda s: PatchBank(s, 11), ValueError, "smaller than patch_size"),
    (lambda s: PatchBank([s, s[:, :2]]), ValueError, "channels"),
    (lambda s: PatchBank([s, s.double()]), TypeError, "dtype"),
    (lambda s: PatchBank([s.expand(2, -1, -1, -1), s.expand(3, -1, -1, -1)]), ValueError, "batch"),
    (lambda s: PatchBank([s, s], weights=[1.0]), ValueError, "1 weight for 2 style tensors"),
    (lambda s: PatchBank([s, s], weights=[1.0, 0.0]), ValueError, "finite and > 0"),
    (lambda s: PatchBank([s, s], weights=[1.0, -2.0]), ValueError, "finite and > 0"),
    (lambda s: PatchBank([s, s], weights=[1.0, float("nan")]), ValueError, "finite and > 0"),
    (lambda s: PatchBank(s * float("inf")), ValueError, "NaN or Inf"),
])
def test_bad_bank(make, exc, match):
    with pytest.raises(exc, match=match):
        make(_rand(1, 4, 8, 8, seed=0))


@pytest.mark.parametrize("content, exc, match", [
    (lambda: _rand(2, 5, 9, 9, seed=0), ValueError, "channels"),
    (lambda: _rand(2, 4, 9, 9, seed=0, dtype=torch.float64), TypeError, "dtype"),
    (lambda: _rand(3, 4, 9, 9, seed=0), ValueError, "batch"),
    (lambda: _rand(2, 4, 2, 9, seed=0), ValueError, "smaller than patch_size"),
    (lambda: _rand(2, 4, 9, 9, seed=0) * float("nan"), ValueError, "content contains NaN or Inf"),
])
def test_bad_content_for_a_bank(content, exc, match):
    bank = PatchBank(_rand(2, 4, 8, 8, seed=0))  # a per-sample bank of batch 2
    with pytest.raises(exc, match=match):
        bank.swap(content())


def test_raw_op_rejects_a_bank_that_does_not_fit():
    style, content = _rand(1, 4, 8, 8, seed=0), _rand(1, 4, 9, 9, seed=1)
    patches, inv = torch.ops.styleswap.prepare_bank([style], 3, 1)
    op = torch.ops.styleswap.match_bank
    with pytest.raises(ValueError, match="was the bank prepared for this patch_size"):
        op(content, patches, inv, 36, 5, 1)  # bank of 3x3 patches, matched as 5x5
    with pytest.raises(ValueError, match="num_patches"):
        op(content, patches, inv, 37, 3, 1)
    with pytest.raises(ValueError, match="do not fit together"):
        op(content, patches, inv[:, :5], 36, 3, 1)
    with pytest.raises(TypeError, match="needs a Float bank"):
        op(content, patches.double(), inv.double(), 36, 3, 1)
    with pytest.raises(ValueError, match="bank has batch 3"):
        op(content, patches.expand(3, -1, -1), inv.expand(3, -1), 36, 3, 1)


@pytest.mark.skipif(not (torch.cuda.is_available() and ss.CUDA_BUILT), reason="needs a CUDA GPU and a CUDA build")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_cuda_bank_layout_fake_and_values(dtype):
    styles = [_rand(1, 5, 9, 8, seed=0, device="cuda", dtype=dtype), _rand(1, 5, 6, 7, seed=1, device="cuda", dtype=dtype)]
    patches, inv = torch.ops.styleswap.prepare_bank(styles, 3, 1, [1.0, 0.5])
    shape, bdtype, inv_shape, inv_dtype = bank_layout(styles, 3, 1)
    assert (patches.shape, patches.dtype, inv.shape, inv.dtype) == (shape, bdtype, inv_shape, inv_dtype)
    n_s, D = 7 * 6 + 4 * 5, 45
    rows = torch.cat([F.unfold(st.cpu().double(), 3)[0].T for st in styles])
    torch.testing.assert_close(patches[0, :n_s, :D].cpu().double(), rows, rtol=0, atol=0)
    assert (patches[0, n_s:] == 0).all() and (patches[0, :, D:] == 0).all() and (inv[0, n_s:] == 0).all()
    norms = rows.norm(dim=1) + 1e-8
    expect = torch.cat([1 / norms[:42], 0.5 / norms[42:]])
    torch.testing.assert_close(inv[0, :n_s].cpu().double(), expect, rtol=1e-6, atol=0)
    torch.library.opcheck(torch.ops.styleswap.prepare_bank.default, (styles, 3, 1, [1.0, 0.5]))
    content = _rand(2, 5, 10, 9, seed=2, device="cuda", dtype=dtype)
    torch.library.opcheck(torch.ops.styleswap.match_bank.default, (content, patches, inv, n_s, 3, 1))
    if dtype != torch.float64:  # float64 banks are unpadded; the others must carry the tile padding
        with pytest.raises(ValueError, match="not a CUDA bank"):
            torch.ops.styleswap.match_bank(content, patches[:, :n_s, :D].contiguous(), inv[:, :n_s].contiguous(),
                                           n_s, 3, 1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("h, k, s", [(23, 3, 1), (24, 3, 2), (25, 3, 2), (30, 5, 3), (31, 4, 4), (9, 1, 1), (7, 7, 1)])
def test_progress_slabs_give_the_same_indices(h, k, s, device, monkeypatch, capsys):
    """With progress=True a large content is matched in slabs of grid rows: same indices, a bar on stderr."""
    from styleswap_ext.ops import patch_bank

    monkeypatch.setattr(patch_bank, "PROGRESS_MIN_PATCHES", 0)
    monkeypatch.setattr(patch_bank, "PROGRESS_MIN_SLAB", 1)  # slabs of ceil(grid_h / 50) rows: many slabs
    style = _rand(1, 6, 10, 9, seed=1, device=device)
    content = _rand(2, 6, h, 13, seed=2, device=device)
    bank = PatchBank(style, k, s)
    torch.testing.assert_close(bank.match(content, progress=True), ss.match_patches(content, style, k, s),
                               rtol=0, atol=0)
    torch.testing.assert_close(bank.swap(content, progress=True), ss.style_swap(content, style, k, s), rtol=0, atol=0)
    if (h - k) // s + 1 >= 2:
        assert "matching" in capsys.readouterr().err
    monkeypatch.setattr(patch_bank, "PROGRESS_MIN_SLAB", 13 * 2)  # two grid rows per slab
    torch.testing.assert_close(bank.match(content, progress=True), ss.match_patches(content, style, k, s),
                               rtol=0, atol=0)


def test_progress_slabs_every_geometry(monkeypatch):
    """Every (k, s, H) with small sizes and every slab height: slabbed == one call."""
    from styleswap_ext.ops import patch_bank

    monkeypatch.setattr(patch_bank, "PROGRESS_MIN_PATCHES", 0)
    style = _rand(1, 3, 8, 8, seed=1)
    for k in range(1, 6):
        for s in range(1, k + 1):
            bank = PatchBank(style, k, s)
            for h in range(k, k + 3 * s + 4):
                content = _rand(1, 3, h, 7, seed=h)
                expect = ss.match_patches(content, style, k, s)
                for rows in (1, 2, 3):
                    monkeypatch.setattr(patch_bank, "PROGRESS_MIN_SLAB", rows * expect.shape[2])
                    got = bank.match(content, progress=True)
                    assert torch.equal(got, expect), (k, s, h, rows)
