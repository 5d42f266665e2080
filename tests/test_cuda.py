"""CUDA kernels of styleswap against the float64 reference and the CPU kernels.

Every test here needs a CUDA GPU and an extension built with its CUDA kernels; without them the
whole module is skipped with a visible reason (``pytest -rs`` lists it).

What is checked (issue 3, "Correctness"):
* match_patches: the chosen style patch's float64 score is within a precision-dependent tolerance
  of the best float64 score, for random shapes (odd sizes, patch 1-7, stride 1-3, batches, banks of
  several styles, shared and per-sample styles), for float32 "highest" (3xTF32), float32 TF32,
  bfloat16 and float16; in "highest" the index equals the reference's wherever the reference's
  winner is clear;
* exact ties (identical style patches) resolve to the lowest index (small-integer data where the
  cuBLAS paths run: what the guarantee covers there, benchmarks/CUDA_NOTES.md §8 "Ties");
* the tiled cuBLAS paths at the real size of a 1024 px image (several row and column tiles, a narrow
  last column tile) against the default kernel;
* swap_gather / swap_gather_backward equal the CPU kernels (forward bit-exact, backward to rounding);
* non-contiguous inputs, a non-default stream, NaN/Inf and bad-index errors, content chunking.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

import styleswap_ext
from styleswap_ext.ops import reference

_HAVE_GPU = torch.cuda.is_available()
_REASON = "needs a CUDA GPU" if not _HAVE_GPU else "styleswap_ext was built without its CUDA kernels (FORCE_CUDA=1)"
pytestmark = pytest.mark.skipif(not (_HAVE_GPU and styleswap_ext.CUDA_BUILT), reason=_REASON)

DEV = "cuda"

# Mode name -> (dtype, float32 matmul precision, tolerance on the score gap relative to ||content patch||).
MODES = {
    "highest": (torch.float32, "highest", 1e-5),
    "tf32": (torch.float32, "high", 2e-3),
    "bf16": (torch.bfloat16, "highest", 2e-2),
    "fp16": (torch.float16, "highest", 5e-3),
}


@pytest.fixture
def precision():
    old = torch.get_float32_matmul_precision()
    yield torch.set_float32_matmul_precision
    torch.set_float32_matmul_precision(old)


def _content_patches(content: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """(N, n_c, D) float64 patches of the covering grid (replicate padding), ordered (c, dy, dx)."""
    x = reference._pad_to_grid(content.double(), k, s)
    return F.unfold(x, k, stride=s).transpose(1, 2)


def _scores64(content, styles, k, s):
    """float64 scores (N, n_c, n_s) = <c_i, p_j> / (||p_j|| + 1e-8), from the inputs as given."""
    c = content.detach().cpu().double()
    sts = [st.detach().cpu().double() for st in styles]
    args = reference.SwapArgs(c, sts, k, s, False)
    cp = _content_patches(c, k, s)
    out = []
    for n in range(c.shape[0]):
        bank = reference._bank(args, n).flatten(1)  # (n_s, D)
        inv = 1.0 / (bank.norm(dim=1) + reference.NORM_EPS)
        out.append((cp[n] @ bank.T) * inv)
    return torch.stack(out), cp.norm(dim=2)


def _check_scores(idx, content, styles, k, s, tol, exact_where_clear=False):
    scores, cnorm = _scores64(content, styles, k, s)
    idx = idx.cpu().reshape(scores.shape[0], -1)
    chosen = scores.gather(2, idx[..., None])[..., 0]
    best = scores.max(dim=2).values
    gap = (best - chosen) / (cnorm + 1e-12)
    assert gap.max().item() <= tol, f"worst score gap {gap.max().item():.3g} > {tol:g}"
    if exact_where_clear:
        top2 = scores.topk(min(2, scores.shape[2]), dim=2).values
        clear = (top2[..., 0] - top2[..., -1]) / (cnorm + 1e-12) > 10 * tol
        ref_idx = scores.argmax(dim=2)
        assert torch.equal(idx[clear], ref_idx[clear])


def _random_case(rng: random.Random, dtype):
    k = rng.randint(1, 7)
    s = rng.randint(1, min(3, k))
    n = rng.choice([1, 2])
    c = rng.choice([1, 3, 8, 17, 64])
    h, w = rng.randint(k, k + 21), rng.randint(k, k + 21)
    content = torch.randn(n, c, h, w, dtype=dtype)
    styles = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        sh, sw = rng.randint(k, k + 17), rng.randint(k, k + 17)
        styles.append(torch.randn(rng.choice([1, n]), c, sh, sw, dtype=dtype))
    return content, styles, k, s


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("seed", range(12))
def test_match_random_shapes(mode, seed, precision):
    dtype, prec, tol = MODES[mode]
    precision(prec)
    content, styles, k, s = _random_case(random.Random(1000 + seed), dtype)
    idx = torch.ops.styleswap.match_patches(content.to(DEV), [st.to(DEV) for st in styles], k, s)
    assert idx.dtype == torch.long and idx.device.type == torch.device(DEV).type
    h, w = content.shape[-2:]
    assert idx.shape == (content.shape[0], (h - k + s - 1) // s + 1, (w - k + s - 1) // s + 1)
    _check_scores(idx, content, styles, k, s, tol, exact_where_clear=(mode == "highest"))


@pytest.mark.parametrize("mode", list(MODES))
def test_style_swap_matches_cpu_gather_of_same_indices(mode, precision):
    dtype, prec, tol = MODES[mode]
    precision(prec)
    g = torch.Generator().manual_seed(7)
    content = torch.randn(2, 32, 19, 23, generator=g).to(dtype)
    styles = [torch.randn(1, 32, 17, 15, generator=g).to(dtype), torch.randn(2, 32, 9, 12, generator=g).to(dtype)]
    k, s = 3, 2
    dc, ds = content.to(DEV), [st.to(DEV) for st in styles]
    idx = torch.ops.styleswap.match_patches(dc, ds, k, s)
    _check_scores(idx, content, styles, k, s, tol)
    out = torch.ops.styleswap.style_swap(dc, ds, k, s)
    expected = torch.ops.styleswap.swap_gather(idx.cpu(), styles, k, s, 19, 23)
    assert torch.equal(out.cpu(), expected)


def test_highest_equals_reference_style_swap(precision):
    """float32 'highest' against the paper's conv formulation in float64 (same indices -> same output)."""
    precision("highest")
    g = torch.Generator().manual_seed(3)
    content = torch.randn(1, 16, 21, 17, generator=g)
    style = torch.randn(1, 16, 15, 18, generator=g)
    for k, s in [(1, 1), (3, 1), (4, 3), (5, 2), (7, 3)]:
        ours = styleswap_ext.style_swap(content.to(DEV), style.to(DEV), k, s).cpu().double()
        ref = reference.style_swap(content.double(), style.double(), k, s)
        idx_ours = styleswap_ext.match_patches(content.to(DEV), style.to(DEV), k, s).cpu()
        idx_ref = reference.match_patches(content.double(), style.double(), k, s)
        if torch.equal(idx_ours, idx_ref):
            torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
        else:  # a genuine near-tie: the scores must still agree to the tolerance
            _check_scores(idx_ours, content, [style], k, s, 1e-5)


@pytest.mark.parametrize("mode", list(MODES))
def test_exact_ties_pick_lowest_index(mode, precision):
    """Small integers (exact products and sums in every mode and summation order): gpu_check.sh reruns
    this module on the cuBLAS paths, where only exact arithmetic makes twins' scores equal (CUDA_NOTES §8)."""
    dtype, prec, _ = MODES[mode]
    precision(prec)
    g = torch.Generator().manual_seed(11)
    # integer values (exact in every mode): the twins' dot products are equal wherever they sit in the GEMM
    half = torch.randint(-3, 4, (1, 16, 10, 9), generator=g).float()
    style = torch.cat([half, half], dim=3).to(dtype)  # patch (y, x) == patch (y, x + 9) where both fit
    k = 3
    gw = style.shape[3] - k + 1
    # Content = a copy of right-half patches: each one's best score is tied with its left twin.
    content = style[:, :, 2:7, 9:16].contiguous()
    idx = torch.ops.styleswap.match_patches(content.to(DEV), [style.to(DEV)], k, 1).cpu()[0]
    for i in range(idx.shape[0]):
        for j in range(idx.shape[1]):
            y, x = 2 + i, 9 + j
            twin = y * gw + (x - 9)  # the left copy has the lower index
            assert idx[i, j].item() == twin, (i, j, idx[i, j].item(), twin)
    # Two identical style tensors in a bank: the first one's patches win.
    idx2 = torch.ops.styleswap.match_patches(content.to(DEV), [style.to(DEV), style.to(DEV)], k, 1).cpu()
    assert torch.equal(idx2[0], idx)


def test_zero_content_and_flat_style_pick_index_zero(precision):
    precision("highest")
    content = torch.zeros(1, 8, 6, 7, device=DEV)
    style = torch.randn(1, 8, 9, 9, device=DEV)  # scores are +0 and -0: all equal, lowest index wins
    assert torch.count_nonzero(torch.ops.styleswap.match_patches(content, [style], 3, 1)).item() == 0
    flat = torch.zeros(1, 8, 9, 9, device=DEV)  # zero-norm style patches: eps keeps it finite
    assert torch.count_nonzero(torch.ops.styleswap.match_patches(torch.randn(1, 8, 6, 7, device=DEV), [flat], 3, 1)) == 0


def test_float64_match_equals_cpu():
    g = torch.Generator().manual_seed(5)
    content = torch.randn(2, 5, 13, 11, generator=g, dtype=torch.float64)
    styles = [torch.randn(2, 5, 9, 10, generator=g, dtype=torch.float64), torch.randn(1, 5, 7, 7, generator=g, dtype=torch.float64)]
    for k, s in [(1, 1), (3, 2), (5, 3)]:
        ours = torch.ops.styleswap.match_patches(content.to(DEV), [st.to(DEV) for st in styles], k, s).cpu()
        cpu = torch.ops.styleswap.match_patches(content, styles, k, s)
        _check_scores(ours, content, styles, k, s, 1e-12)
        assert (ours == cpu).float().mean() > 0.99


def test_content_chunking_and_many_tiles(precision):
    """More content patches than one chunk (16384) and a style bank of several partial tiles."""
    precision("high")
    g = torch.Generator().manual_seed(2)
    content = torch.randn(1, 4, 131, 130, generator=g)  # k=1: 17030 content patches
    style = torch.randn(1, 4, 23, 29, generator=g)  # 667 style patches
    idx = torch.ops.styleswap.match_patches(content.to(DEV), [style.to(DEV)], 1, 1)
    _check_scores(idx, content, [style], 1, 1, MODES["tf32"][2])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_gather_equals_cpu(dtype):
    g = torch.Generator().manual_seed(13)
    for k, s, n in [(1, 1, 1), (3, 1, 2), (4, 3, 2), (7, 2, 1), (5, 5, 2)]:
        styles = [torch.randn(1, 6, 12, 14, generator=g).to(dtype), torch.randn(n, 6, k + 3, k + 5, generator=g).to(dtype)]
        n_s = sum(((st.shape[2] - k) // s + 1) * ((st.shape[3] - k) // s + 1) for st in styles)
        h, w = 2 * k + 5, 3 * k + 2
        gh, gw = (h - k + s - 1) // s + 1, (w - k + s - 1) // s + 1
        idx = torch.randint(0, n_s, (n, gh, gw), generator=g)
        cpu = torch.ops.styleswap.swap_gather(idx, styles, k, s, h, w)
        gpu = torch.ops.styleswap.swap_gather(idx.to(DEV), [st.to(DEV) for st in styles], k, s, h, w)
        assert gpu.dtype == dtype
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_backward_equals_cpu(dtype):
    g = torch.Generator().manual_seed(17)
    tol = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 2e-2, torch.float16: 2e-3}[dtype]
    for k, s, n in [(1, 1, 2), (3, 1, 2), (3, 2, 1), (6, 4, 2), (7, 3, 3)]:
        styles = [torch.randn(1, 5, 11, 13, generator=g).to(dtype), torch.randn(n, 5, k + 2, k + 4, generator=g).to(dtype)]
        n_s = sum(((st.shape[2] - k) // s + 1) * ((st.shape[3] - k) // s + 1) for st in styles)
        h, w = 2 * k + 6, 2 * k + 3
        gh, gw = (h - k + s - 1) // s + 1, (w - k + s - 1) // s + 1
        idx = torch.randint(0, min(n_s, 7), (n, gh, gw), generator=g)  # few patches: many repeats per bucket
        grad = torch.randn(n, 5, h, w, generator=g).to(dtype)
        cpu = torch.ops.styleswap.swap_gather_backward(grad, idx, styles, k, s)
        gpu = torch.ops.styleswap.swap_gather_backward(grad.to(DEV), idx.to(DEV), [st.to(DEV) for st in styles], k, s)
        assert len(gpu) == len(styles)
        for a, b in zip(gpu, cpu):
            assert a.dtype == dtype and a.shape == b.shape
            torch.testing.assert_close(a.cpu().double(), b.double(), rtol=tol, atol=tol)
        # Deterministic: a second run is bit-identical.
        again = torch.ops.styleswap.swap_gather_backward(grad.to(DEV), idx.to(DEV), [st.to(DEV) for st in styles], k, s)
        for a, b in zip(gpu, again):
            assert torch.equal(a, b)


def test_autograd_through_style_swap(precision):
    precision("highest")
    g = torch.Generator().manual_seed(19)
    content = torch.randn(2, 8, 14, 13, generator=g)
    style = torch.randn(1, 8, 12, 12, generator=g)
    sd = style.detach().clone().to(DEV).requires_grad_()
    out = styleswap_ext.style_swap(content.to(DEV), sd, 3, 1)
    w = torch.randn(out.shape, generator=g)
    (out * w.to(DEV)).sum().backward()
    idx = styleswap_ext.match_patches(content.to(DEV), style.to(DEV), 3, 1).cpu()
    sc = style.detach().clone().requires_grad_()
    (torch.ops.styleswap.swap_gather(idx, [sc], 3, 1, 14, 13) * w).sum().backward()
    torch.testing.assert_close(sd.grad.cpu(), sc.grad, rtol=1e-5, atol=1e-5)


def test_non_contiguous_inputs(precision):
    precision("highest")
    g = torch.Generator().manual_seed(23)
    content = torch.randn(2, 18, 16, 24, generator=g).to(DEV)[:, ::2]  # (2, 9, 16, 24), channel stride 2
    style1 = torch.randn(1, 9, 24, 13, generator=g).to(DEV).transpose(2, 3)  # (1, 9, 13, 24)
    style2 = torch.randn(2, 9, 13, 17, generator=g).to(DEV).to(memory_format=torch.channels_last)
    grad = torch.randn(2, 24, 16, 9, generator=g).to(DEV).permute(0, 3, 2, 1)  # (2, 9, 16, 24)
    styles = [style1, style2]
    assert not any(t.is_contiguous() for t in (content, style1, style2, grad))
    contig = [st.contiguous() for st in styles]
    idx = torch.ops.styleswap.match_patches(content, styles, 3, 2)
    assert torch.equal(idx, torch.ops.styleswap.match_patches(content.contiguous(), contig, 3, 2))
    out = torch.ops.styleswap.swap_gather(idx, styles, 3, 2, 16, 24)
    assert torch.equal(out, torch.ops.styleswap.swap_gather(idx, contig, 3, 2, 16, 24))
    gb = torch.ops.styleswap.swap_gather_backward(grad, idx, styles, 3, 2)
    gb_c = torch.ops.styleswap.swap_gather_backward(grad.contiguous(), idx, contig, 3, 2)
    for a, b in zip(gb, gb_c):
        assert torch.equal(a, b)


def test_non_default_stream(precision):
    precision("high")
    g = torch.Generator().manual_seed(29)
    content = torch.randn(2, 32, 30, 28, generator=g)
    style = torch.randn(1, 32, 26, 31, generator=g)
    expected_idx = torch.ops.styleswap.match_patches(content.to(DEV), [style.to(DEV)], 3, 1)
    expected = torch.ops.styleswap.swap_gather(expected_idx, [style.to(DEV)], 3, 1, 30, 28)
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        c = content.to(DEV, non_blocking=False)
        st = style.to(DEV)
        for _ in range(3):  # queue work back to back on the side stream
            idx = torch.ops.styleswap.match_patches(c, [st], 3, 1)
            out = torch.ops.styleswap.swap_gather(idx, [st], 3, 1, 30, 28)
            grads = torch.ops.styleswap.swap_gather_backward(out, idx, [st], 3, 1)
    stream.synchronize()
    assert torch.equal(idx, expected_idx)
    assert torch.equal(out, expected)
    assert torch.isfinite(grads[0]).all()


def test_nan_inf_and_bad_indices_raise():
    c = torch.randn(1, 4, 8, 8, device=DEV)
    st = torch.randn(1, 4, 8, 8, device=DEV)
    bad = c.clone()
    bad[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="content contains NaN or Inf"):
        torch.ops.styleswap.match_patches(bad, [st], 3, 1)
    bad_s = st.clone()
    bad_s[0, 0, 7, 7] = float("inf")  # outside every stride-3 patch: still rejected, like the CPU
    with pytest.raises(ValueError, match=r"styles\[1\] contains NaN or Inf"):
        torch.ops.styleswap.match_patches(c, [st, bad_s], 3, 3)
    idx = torch.zeros(1, 6, 6, dtype=torch.long, device=DEV)
    idx[0, 2, 2] = 36
    with pytest.raises(IndexError, match="out of range"):
        torch.ops.styleswap.swap_gather(idx, [st], 3, 1, 8, 8)
    idx[0, 2, 2] = -1
    with pytest.raises(IndexError, match="out of range"):
        torch.ops.styleswap.swap_gather_backward(torch.randn(1, 4, 8, 8, device=DEV), idx, [st], 3, 1)


def test_misaligned_bank_view_is_rejected():
    """The kernels read bank rows 16 bytes at a time: a bank view at an odd element offset is refused
    with a clear error instead of a misaligned-address fault."""
    c = torch.randn(1, 4, 8, 8, device=DEV)
    st = torch.randn(1, 4, 8, 8, device=DEV)
    patches, inv = torch.ops.styleswap.prepare_bank([st], 3, 1)
    shifted = torch.empty(patches.numel() + 1, device=DEV)[1:].view_as(patches)
    shifted.copy_(patches)
    with pytest.raises(ValueError, match="16-byte aligned"):
        torch.ops.styleswap.match_bank(c, shifted, inv, 36, 3, 1)
    torch.testing.assert_close(torch.ops.styleswap.match_bank(c, patches, inv, 36, 3, 1),
                               torch.ops.styleswap.match_patches(c, [st], 3, 1), rtol=0, atol=0)


def test_float64_small_bank_large_content():
    """float64 with a one-patch bank against 16k content patches: every patch picks it (the chunk of
    content patches is sized by max(n_s, D), so a tiny bank does not make it huge)."""
    c = torch.randn(1, 16, 130, 130, dtype=torch.float64)
    st = torch.randn(1, 16, 3, 3, dtype=torch.float64)
    idx = torch.ops.styleswap.match_patches(c.to(DEV), [st.to(DEV)], 3, 1)
    assert idx.shape == (1, 128, 128) and int(idx.abs().sum()) == 0


def test_match_kernel_launch_counts(precision, monkeypatch):
    """_C.match_kernel_launches() counts one launch per content chunk and kernel: the default
    kernel under "wmma", float64 under "float64" (the experimental kernels' test reads "wgmma"/"tma")."""
    from styleswap_ext import _C

    monkeypatch.delenv("STYLESWAP_MATCH_KERNEL", raising=False)
    precision("high")
    st = torch.randn(1, 8, 10, 10, device=DEV)
    c = torch.randn(2, 8, 12, 12, device=DEV)
    before = _C.match_kernel_launches()
    torch.ops.styleswap.match_patches(c, [st], 3, 1)
    mid = _C.match_kernel_launches()
    torch.ops.styleswap.match_patches(c.double(), [st.double()], 3, 1)
    after = _C.match_kernel_launches()
    assert mid["wmma"] - before["wmma"] == 2 and mid["float64"] == before["float64"], (before, mid)  # one per sample
    assert after["float64"] - mid["float64"] == 2 and after["wmma"] == mid["wmma"], (mid, after)


def test_compile_fullgraph_on_cuda(precision):
    precision("high")
    # aot_eager: traces with the fake kernels (what fullgraph needs) without depending on Triton.
    f = torch.compile(lambda c, s: styleswap_ext.style_swap(c, s, 3, 1), fullgraph=True, backend="aot_eager")
    c = torch.randn(1, 8, 12, 12, device=DEV)
    s = torch.randn(1, 8, 10, 10, device=DEV)
    torch.testing.assert_close(f(c, s), styleswap_ext.style_swap(c, s, 3, 1))


@pytest.mark.parametrize("kernel", ["wgmma", "tma"])
@pytest.mark.parametrize("mode", ["bf16", "fp16", "tf32"])
def test_experimental_hopper_kernel(kernel, mode, precision, monkeypatch):
    """STYLESWAP_MATCH_KERNEL=wgmma|tma (csrc/cuda/match_wgmma.cu, Hopper only): scores within the
    mode's tolerance, the exact argmax wherever the best score is clearly ahead, and (bf16/fp16) the
    same indices as the WMMA kernel almost everywhere, over row lengths that end mid-slice
    (zero-filled tail), several content and style tiles, and a bank of two styles. The cases with
    more tiles than the GPU has SMs make the persistent "tma" kernel walk several tiles per CTA.
    benchmarks/gpu_check.sh also reruns this whole module with the variable set."""
    from styleswap_ext import _C

    if not _C.wgmma_available(torch.cuda.current_device()):
        pytest.skip("wgmma kernel not available: needs a compute capability 9.x GPU and an sm_90a build "
                    "(TORCH_CUDA_ARCH_LIST=9.0, see setup.py)")
    dtype, prec, tol = MODES[mode]
    precision(prec)
    g = torch.Generator().manual_seed(21)
    cases = [(17, 3, 1, 30, 19), (64, 3, 1, 24, 21), (1, 1, 1, 40, 33), (8, 5, 2, 37, 26)]
    # 38 content x 36 style tiles per sample (more than the GPU's SMs): several tiles per persistent CTA.
    cases.append((16, 3, 1, 70, 70))
    for c, k, s, hc, hs in cases:
        content = torch.randn(2, c, hc, hc + 3, generator=g).to(dtype)
        styles = [torch.randn(1, c, hs, hs + 1, generator=g).to(dtype), torch.randn(2, c, hs - 2, hs, generator=g).to(dtype)]
        args = (content.to(DEV), [st.to(DEV) for st in styles], k, s)
        monkeypatch.delenv("STYLESWAP_MATCH_KERNEL", raising=False)
        wmma = torch.ops.styleswap.match_patches(*args)
        monkeypatch.setenv("STYLESWAP_MATCH_KERNEL", kernel)
        before = _C.match_kernel_launches()
        wg = torch.ops.styleswap.match_patches(*args)
        after = _C.match_kernel_launches()
        # The kernel under test ran (a fallback to WMMA, e.g. a tensor map the driver refused, is quiet).
        assert after[kernel] > before[kernel] and after["wmma"] == before["wmma"], (kernel, before, after)
        _check_scores(wg, content, styles, k, s, tol, exact_where_clear=True)
        if mode != "tf32":
            # Same operands, fp32 accumulation in another order: near-ties aside, the same picks. (TF32:
            # wgmma truncates the operands, WMMA rounds them, so with c = 1, k = 1, where every score is
            # a near-tie, most picks differ; both are within the tolerance checked above.)
            assert (wg == wmma).float().mean().item() > 0.97, (c, k, s)


TILED_MODES = dict(MODES, float64=(torch.float64, "highest", 1e-12))


@pytest.mark.parametrize("path", ["cublas", "cublas_fused"])
@pytest.mark.parametrize("mode", list(TILED_MODES))
def test_experimental_tiled_path(path, mode, precision, monkeypatch):
    """STYLESWAP_MATCH_KERNEL=cublas|cublas_fused: the tiled driver (csrc/match_tiled.cpp, cuBLAS GEMMs)
    with the ATen reduce or the fused reduce kernel (csrc/cuda/match_reduce.cu; float64 always takes
    the ATen reduce). It ran (launch counts), its scores are within the mode's tolerance and exact
    where the best is clear; through the private op, small tiles (many ragged row and column tiles)
    stay within the tolerance and the two reduces give bit-identical picks on the same tiles; padded
    bank rows never win; exact ties go to the lowest index across column tiles; extra memory stays
    O(tile). benchmarks/gpu_check.sh also reruns this whole module with the variable set."""
    from styleswap_ext import _C

    dtype, prec, tol = TILED_MODES[mode]
    precision(prec)
    counted = "cublas" if dtype == torch.float64 else path
    g = torch.Generator().manual_seed(31)
    for c, k, s, hc, hs in [(17, 3, 1, 30, 19), (64, 3, 1, 24, 21), (1, 1, 1, 40, 33), (8, 5, 2, 37, 26)]:
        content = torch.randn(2, c, hc, hc + 3, generator=g).to(dtype)
        styles = [torch.randn(1, c, hs, hs + 1, generator=g).to(dtype), torch.randn(2, c, hs - 2, hs, generator=g).to(dtype)]
        dc, ds = content.to(DEV), [st.to(DEV) for st in styles]
        monkeypatch.setenv("STYLESWAP_MATCH_KERNEL", path)
        before = _C.match_kernel_launches()
        idx = torch.ops.styleswap.match_patches(dc, ds, k, s)
        after = _C.match_kernel_launches()
        assert after[counted] > before[counted] and after["wmma"] == before["wmma"], (path, before, after)
        _check_scores(idx, content, styles, k, s, tol, exact_where_clear=True)
        patches, inv = torch.ops.styleswap.prepare_bank(ds, k, s)
        n_s = sum(((st.shape[2] - k) // s + 1) * ((st.shape[3] - k) // s + 1) for st in styles)
        small = [torch.ops.styleswap._match_bank_tiled(dc, patches, inv, n_s, k, s, 37, 45, fused) for fused in (False, True)]
        assert torch.equal(small[0], small[1])
        _check_scores(small[1], content, styles, k, s, tol, exact_where_clear=True)

    # Every real score negative: a padded bank row (score exactly 0) would win if it were read.
    style = (torch.rand(1, 8, 12, 15, generator=g) + 0.1).to(dtype)
    content = (-(torch.rand(1, 8, 11, 9, generator=g) + 0.1)).to(dtype)
    idx = torch.ops.styleswap.match_patches(content.to(DEV), [style.to(DEV)], 3, 1)
    assert int(idx.max()) < 130
    _check_scores(idx, content, [style], 3, 1, tol)

    # Exact ties across column tiles: twin patches 9 columns apart, tiles of 5 bank rows; small integers,
    # so a narrower tile's GEMM cannot round the twins apart (test_experimental_tiled_path_at_1024px).
    half = torch.randint(-3, 4, (1, 16, 10, 9), generator=g).float()
    tw = torch.cat([half, half], dim=3).to(dtype).to(DEV)
    patches, inv = torch.ops.styleswap.prepare_bank([tw], 3, 1)
    ct = tw[:, :, 2:7, 9:16].contiguous()
    for fused in (False, True):
        got = torch.ops.styleswap._match_bank_tiled(ct, patches, inv, 8 * 16, 3, 1, 4, 5, fused).cpu()[0]
        assert torch.equal(got, torch.tensor([[(2 + i) * 16 + j for j in range(5)] for i in range(3)])), got

    if mode == "tf32":
        # O(tile) memory: 16,129 x 16,129 patches would be 1 GiB of float32 scores.
        c = torch.randn(1, 64, 129, 129, device=DEV)
        st = torch.randn(1, 64, 129, 129, device=DEV)
        patches, inv = torch.ops.styleswap.prepare_bank([st], 3, 1)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        torch.ops.styleswap.match_bank(c, patches, inv, 127 * 127, 3, 1)
        torch.cuda.synchronize()
        extra = torch.cuda.max_memory_allocated() - base
        assert extra < 160 * 2**20, f"{extra / 2**20:.0f} MiB extra"


def _flat_patch_indices(regions, grid_w: int, k: int) -> torch.Tensor:
    """Indices of the stride-1 patches that lie wholly inside the rectangles (y0, y1, x0, x1) (exclusive ends)."""
    out = [y * grid_w + x for y0, y1, x0, x1 in regions for y in range(y0, y1 - k + 1) for x in range(x0, x1 - k + 1)]
    return torch.tensor(sorted(out))


def _scores64_rows(content, style, rows, k):
    """float64 scores (len(rows), n_s) of the given content patches (stride 1, inner grid) on the GPU, and
    their norms: from the inputs as given (bf16/fp16 values exactly)."""
    cp = F.unfold(content.double(), k)[0].t()[rows]  # (m, D)
    bank = F.unfold(style.double(), k)[0]  # (D, n_s)
    inv = 1.0 / (bank.norm(dim=0) + reference.NORM_EPS)
    return torch.cat([(cp[i:i + 1024] @ bank) * inv for i in range(0, len(rows), 1024)]), cp.norm(dim=1)


@pytest.mark.parametrize("path", ["cublas", "cublas_fused"])
def test_experimental_tiled_path_at_1024px(path, precision, monkeypatch):
    """Issue 37: the tiled paths at the real size of a 1024 px image -- 256 x 256 relu3_1 maps of 256
    channels, k = 3: n_c = n_s = 64,516, D = 2,304 -- with the default 4,096 x 2,048 tiles: 16 row tiles
    (the last of 3,076 rows) and 32 column tiles (the last of 1,028), against the default kernel, in
    every precision.

    What "ties go to the lowest index" guarantees on the GPU (benchmarks/CUDA_NOTES.md §8, "Ties"):
    equal computed scores go to the lowest index on every path. Identical style patches get equal
    computed scores on the hand-written kernels (one kernel and one K order for every tile), but on the
    cuBLAS paths only where the arithmetic is exact: cuBLAS may run a narrower tile (the last column or
    row tile) with another kernel, or split K (split-K / stream-K) differently, and sum in another
    order. So this test asserts bit equality only on small-integer data (every product and partial sum
    exact in TF32, 3xTF32/FP32, bf16 and fp16, in any order):
    * small integers: the indices equal the default kernel's, and every flat content patch takes the
      lowest index of a flat style region that spans column tiles 12-17 and reappears in the last one;
    * Gaussian data: the indices equal the default kernel's or, where they differ, both picks' float64
      scores are within the precision's rounding of each other and of the best; a flat content patch
      takes one of the identical flat style patches."""
    from styleswap_ext import _C

    monkeypatch.delenv("STYLESWAP_TILED_TILE", raising=False)
    k, side, grid_w = 3, 256, 254
    regions = [(100, 140, 30, 200), (252, 256, 10, 60)]  # flat style: patches 25,430.. and 64,018.. (last tile)
    flat = _flat_patch_indices(regions, grid_w, k).to(DEV)
    assert int(flat[0]) // 2048 == 12 and 31 * 2048 <= int(flat[-1]) and grid_w**2 - 31 * 2048 == 1028
    flat_content = torch.zeros(grid_w, grid_w, dtype=torch.bool, device=DEV)
    flat_content[:18, :18] = True  # content[..., :20, :20] is flat
    g = torch.Generator().manual_seed(37)
    for data in ("integers", "gaussian"):
        if data == "integers":
            content = torch.randint(-3, 4, (1, 256, side, side), generator=g).float().to(DEV)
            style = torch.randint(-3, 4, (1, 256, side, side), generator=g).float().to(DEV)
            fc, fs = 1.0, 2.0
        else:
            content = torch.randn(1, 256, side, side, generator=g).to(DEV)
            style = torch.randn(1, 256, side, side, generator=g).to(DEV)
            fc, fs = 0.37, 0.71  # not exact in TF32 / bf16
        content[..., :20, :20] = fc
        for y0, y1, x0, x1 in regions:
            style[..., y0:y1, x0:x1] = fs
        for mode, (dtype, prec, tol) in MODES.items():
            precision(prec)
            c, st = content.to(dtype), style.to(dtype)
            monkeypatch.delenv("STYLESWAP_MATCH_KERNEL", raising=False)
            default = torch.ops.styleswap.match_patches(c, [st], k, 1)[0]
            monkeypatch.setenv("STYLESWAP_MATCH_KERNEL", path)
            before = _C.match_kernel_launches()
            got = torch.ops.styleswap.match_patches(c, [st], k, 1)[0]
            after = _C.match_kernel_launches()
            assert after[path] - before[path] == 16 and after["wmma"] == before["wmma"], (path, before, after)
            if data == "integers":
                assert torch.equal(got, default), (mode, int((got != default).sum()))
                assert (got[flat_content] == flat[0]).all(), (mode, got[flat_content].unique()[:8])
                continue
            assert torch.isin(got[flat_content], flat).all(), (mode, got[flat_content].unique()[:8])
            # Where the picks differ (and on a sample of rows), float64 scores of both against the best.
            diff = (got != default).flatten().nonzero()[:, 0]
            rows = torch.cat([diff, torch.randperm(grid_w**2, generator=g)[:2048].to(DEV)])
            sc, cnorm = _scores64_rows(c, st, rows, k)
            pick = lambda idx: sc.gather(1, idx.flatten()[rows][:, None])[:, 0]  # noqa: E731
            best = sc.max(dim=1).values
            for name, idx in (("path", got), ("default", default)):
                gap = ((best - pick(idx)) / (cnorm + 1e-12)).max().item()
                assert gap <= tol, f"{mode} {name}: worst score gap {gap:.3g} > {tol:g}"
            assert diff.numel() <= 0.01 * grid_w**2, (mode, diff.numel())
