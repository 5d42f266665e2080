"""The CPU's exact match from the style maps (``match_styles``, csrc/cpu/match_styles_cpu.cpp): the same
match as the patch bank's kernel (``match_bank``), from pixel dot products summed over the k*k offsets.

Integer-valued features make every dot product exact in any order, so there the two kernels must agree
bit for bit, ties to the lowest index included; on real-valued features they are compared by score."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from styleswap_ext import ops

match_styles = torch.ops.styleswap.match_styles
match_bank = torch.ops.styleswap.match_bank


def _bank(styles, k, weights=None):
    patches, inv = torch.ops.styleswap.prepare_bank(styles, k, 1, weights)
    return patches, inv, ops.num_style_patches(styles, k, 1)


def _float64_scores(content, styles, k, n, inv):
    cols = F.unfold(content[n:n + 1].double(), k)[0].T
    rows = torch.cat([F.unfold(st[0 if st.shape[0] == 1 else n][None].double(), k)[0].T for st in styles])
    return cols @ rows.T * inv[0 if inv.shape[0] == 1 else n].double()


@pytest.mark.exactness
@pytest.mark.parametrize("seed", range(6))
def test_real_valued_features_choose_the_best_score(seed):
    g = torch.Generator().manual_seed(seed)
    k = 1 + seed % 4
    n, c = 1 + seed % 2, [3, 16, 64][seed % 3]
    content = torch.relu(torch.randn(n, c, 19 + seed, 23, generator=g))
    styles = [torch.relu(torch.randn(1 if seed % 2 else n, c, 17 - i, 21 + 3 * i, generator=g)) for i in range(1 + seed % 3)]
    weights = [1.0 + i for i in range(len(styles))] if seed % 3 == 1 else None
    inv = ops.bank_inv_norm(styles, k, 1, weights)
    idx = match_styles(content, styles, inv, k, 1)
    patches, inv_b, n_s = _bank(styles, k, weights)
    torch.testing.assert_close(inv, inv_b, rtol=1e-6, atol=0)  # the pixel-norm route to the same norms
    same = (idx == match_bank(content, patches, inv_b, n_s, k, 1)).float().mean().item()
    assert same > 0.97, same  # only near-ties differ
    for i in range(n):
        scores = _float64_scores(content, styles, k, i, inv)
        best = scores.max(1).values
        chosen = scores.gather(1, idx[i].reshape(-1, 1))[:, 0]
        assert ((best - chosen) / scores.abs().amax(1).clamp_min(1e-30)).max() <= 1e-5


SMALL_TILES_SCRIPT = textwrap.dedent("""
    import torch
    from styleswap_ext import ops
    torch.manual_seed(0)
    checked = 0
    for k in (1, 2, 3, 4):
        for per_sample in (False, True):
            g = torch.Generator().manual_seed(10 * k + per_sample)
            tile = torch.randint(0, 4, (2, 3, 4), generator=g).float()
            n = 2
            content = torch.randint(0, 4, (n, 2, 13, 17), generator=g).float()
            # repeated tiles: many identical style patches, so exact ties in every tile and chunk
            styles = [tile.repeat(1, 4, 3)[None].expand(n if per_sample else 1, -1, -1, -1).contiguous(),
                      torch.randint(0, 4, (1, 2, 7, 9), generator=g).float()]
            patches, inv = torch.ops.styleswap.prepare_bank(styles, k, 1, [1.0, 0.5])
            n_s = ops.num_style_patches(styles, k, 1)
            gh, gw = 13 - k + 1, 17 - k + 1
            blab = torch.randint(0, 2, (n_s,), generator=g)
            clab = torch.randint(0, 2, (n, gh, gw), generator=g)
            prev = torch.randint(0, n_s, (n, gh, gw), generator=g)
            for kw in ({}, dict(content_labels=clab, bank_labels=blab),
                       dict(previous=prev, temporal_weight=0.25),
                       dict(content_labels=clab, bank_labels=blab, previous=prev, temporal_weight=0.25)):
                a = torch.ops.styleswap.match_styles(content, styles, inv, k, 1, **kw)
                b = torch.ops.styleswap.match_bank(content, patches, inv, n_s, k, 1, **kw)
                assert torch.equal(a, b), (k, per_sample, list(kw))
                checked += 1
    print("checked", checked)
""")


@pytest.mark.exactness
def test_small_tiles_and_chunks_give_the_bank_kernels_indices_bit_for_bit():
    """Tiles of 40 content pixels, style chunks of 3 patch columns, GEMMs of 5 style pixels
    (STYLESWAP_CPU_MAPS_TILE, read once per process): many content tiles, ring refills and column
    chunks visited out of index order, on exact integer scores full of ties, with labels, a temporal
    bonus and style weights: the same indices as match_bank."""
    env = dict(os.environ, STYLESWAP_CPU_MAPS_TILE="40,3,5")
    out = subprocess.run([sys.executable, "-c", SMALL_TILES_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["checked", "32"]


def test_float64_and_reduced_precision_inputs():
    g = torch.Generator().manual_seed(3)
    content = torch.randn(1, 8, 12, 11, generator=g, dtype=torch.float64)
    style = torch.randn(1, 8, 10, 9, generator=g, dtype=torch.float64)
    idx = match_styles(content, [style], ops.bank_inv_norm([style], 3, 1), 3, 1)
    assert torch.equal(idx.flatten(), _float64_scores(content, [style], 3, 0, ops.bank_inv_norm([style], 3, 1)).argmax(1))
    bf = match_styles(content.bfloat16(), [style.bfloat16()], ops.bank_inv_norm([style.bfloat16()], 3, 1), 3, 1)
    assert bf.shape == idx.shape and bf.dtype == torch.long


def test_bad_arguments_are_named():
    content, style = torch.rand(1, 4, 8, 8), torch.rand(1, 4, 6, 6)
    inv = ops.bank_inv_norm([style], 3, 1)
    with pytest.raises(ValueError, match="match_styles: stride must be 1"):
        match_styles(content, [style], inv, 3, 2)
    with pytest.raises(ValueError, match=r"inv_norm must be \(1 \| N, >= 16\)"):
        match_styles(content, [style], inv[:, :5], 3, 1)
    with pytest.raises(TypeError, match="needs a Float inv_norm"):
        match_styles(content, [style], inv.double(), 3, 1)
    bad = style.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"match_styles: styles\[0\] contains NaN or Inf"):
        match_styles(content, [bad], inv, 3, 1)
    nan_content = content.clone()
    nan_content[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="content contains NaN or Inf"):
        match_styles(nan_content, [style], inv, 3, 1)


def test_opcheck_and_compile():
    g = torch.Generator().manual_seed(5)
    content, style = torch.rand(2, 4, 9, 10, generator=g), torch.rand(1, 4, 7, 8, generator=g)
    inv = ops.bank_inv_norm([style], 3, 1)
    torch.library.opcheck(torch.ops.styleswap.match_styles.default, (content, [style], inv, 3, 1))
    f = torch.compile(lambda c: match_styles(c, [style], inv, 3, 1), fullgraph=True)
    assert torch.equal(f(content), match_styles(content, [style], inv, 3, 1))


def test_the_cpu_patch_bank_keeps_no_rows_at_stride_1():
    style = torch.rand(1, 4, 7, 8)
    assert ops.PatchBank(style).patches is None  # only the inverse norms
    assert ops.PatchBank(style, 3, 2).patches is not None  # other strides: the patch bank
    assert ops.matches_from_maps(torch.device("cpu"), 1) and not ops.matches_from_maps(torch.device("cpu"), 2)
    assert not ops.matches_from_maps(torch.device("cuda"), 1)
