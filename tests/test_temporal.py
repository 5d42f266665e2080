"""Temporal coherence: ``previous`` (the last frame's indices) gets a bonus of temporal_weight * ||c_i||,
so it is kept unless another style patch beats its normalised cross-correlation by more than the weight.
Checked on the CPU kernel, the tiled driver (CUDA's path for controlled matches) and the reference."""

from __future__ import annotations

import math

import pytest
import torch

from styleswap_ext import match_patches, style_swap
from styleswap_ext.ops import reference
from styleswap_ext.ops import match_controls
from styleswap_ext.ops.patch_bank import PatchBank

tiled = torch.ops.styleswap._match_bank_tiled


def _materialised(bank):
    """The bank's patch rows and inverse norms as prepare_bank makes them (the CPU's PatchBank at stride 1
    reads the style maps and keeps no rows): the input of match_bank and the tiled driver."""
    return torch.ops.styleswap.prepare_bank([st.detach() for st in bank.styles], bank.patch_size, bank.stride,
                                            bank.weights)


def _case(seed, n=2, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    content = torch.randn(n, 3, 7 + seed % 3, 8, generator=g, dtype=dtype)
    content[:, :, :3, :4] = 0  # zero-norm content patches (top-left (0, 0) and (0, 1)): no bonus there
    styles = [torch.randn(1, 3, 6, 7, generator=g, dtype=dtype), torch.randn(1, 3, 5, 6, generator=g, dtype=dtype)]
    n_s = 4 * 5 + 3 * 4
    return content, styles, n_s, g


def _all_paths(content, styles, previous, weight, k=3, **labels):
    bank = PatchBank(styles, k, 1, style_labels=labels.get("style_labels"))
    kw = match_controls(content, bank.styles, k, 1, content_labels=labels.get("content_labels"),
                        bank_labels=bank.bank_labels, previous=previous, temporal_weight=weight)
    return {
        "op": match_patches(content, styles, k, 1, previous=previous, temporal_weight=weight, **labels),
        "bank": bank.match(content, content_labels=labels.get("content_labels"), previous=previous,
                           temporal_weight=weight),
        "match_bank": torch.ops.styleswap.match_bank(content, *_materialised(bank), bank.num_patches, k, 1, **kw),
        "tiled": tiled(content, *_materialised(bank), bank.num_patches, k, 1, 4, 5, False, **kw),
        "reference": reference.match_patches(content, styles, k, 1, previous=previous, temporal_weight=weight,
                                             **labels),
    }


@pytest.mark.exactness
def test_weight_zero_is_the_plain_match():
    content, styles, n_s, g = _case(0)
    plain = match_patches(content, styles, 3, 1)
    prev = torch.randint(0, n_s, plain.shape, generator=g)
    for name, idx in _all_paths(content, styles, prev, 0.0).items():
        assert torch.equal(idx, plain), name
    assert torch.equal(style_swap(content, styles, 3, 1, previous=prev, temporal_weight=0.0),
                       style_swap(content, styles, 3, 1))


def test_huge_weight_keeps_previous_except_where_the_content_is_zero():
    content, styles, n_s, g = _case(1)
    plain = match_patches(content, styles, 3, 1)
    prev = torch.randint(0, n_s, plain.shape, generator=g)
    zero = torch.zeros_like(plain, dtype=torch.bool)
    zero[:, :1, :2] = True  # patches entirely inside the zero block: ||c|| = 0, no bonus, ties -> index 0
    for name, idx in _all_paths(content, styles, prev, 1e6).items():
        assert torch.equal(idx[~zero], prev[~zero]), name
        assert (idx[zero] == 0).all(), name


@pytest.mark.exactness
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("weight", [0.02, 0.1, 0.3])
def test_paths_agree_with_the_reference_on_random_cases(seed, weight):
    content, styles, n_s, g = _case(seed + 2, n=1 + seed % 2)
    plain = match_patches(content, styles, 3, 1)
    prev = torch.randint(0, n_s, plain.shape, generator=g)
    prev[..., ::2] = plain[..., ::2]  # some positions already at their best
    out = _all_paths(content, styles, prev, weight)
    for name, idx in out.items():
        assert torch.equal(idx, out["reference"]), name
    kept, before = (out["op"] == prev).float().mean(), (plain == prev).float().mean()
    assert before <= kept < 1 and (weight < 0.3 or kept > before)  # the bonus acts, but does not freeze all


@pytest.mark.exactness
def test_with_labels_the_previous_patch_of_another_label_gets_no_bonus():
    content, styles, n_s, g = _case(7)
    clab = torch.randint(0, 2, content.shape[-2:], generator=g)
    slab = [torch.zeros(6, 7, dtype=torch.long), torch.ones(5, 6, dtype=torch.long)]
    prev = torch.zeros(content.shape[0], content.shape[2] - 2, content.shape[3] - 2, dtype=torch.long)  # label 0
    out = _all_paths(content, styles, prev, 1e6, content_labels=clab, style_labels=slab)
    for name, idx in out.items():
        assert torch.equal(idx, out["reference"]), name
    centre = clab[1:-1, 1:-1].expand_as(prev)
    assert (out["op"][centre == 0] == 0).all() and (out["op"][centre == 1] >= 20).all()


def _unit(angle, scale=1.0):
    return [scale * math.cos(angle), scale * math.sin(angle)]


def test_moderate_weight_on_a_known_case():
    """k = 1, one content vector at angle 0; style patches at angles 0.2 (NCC 0.980) and 0.5 (NCC 0.878),
    different norms. Previous = the second: kept for W > 0.103 (the NCC gap), not below; the content's
    scale does not matter (the bonus is in NCC units)."""
    style = torch.tensor([_unit(0.2, 2.0), _unit(0.5, 0.5), _unit(1.4, 3.0)], dtype=torch.float64).t()[:, None, :]
    prev = torch.ones(1, 1, dtype=torch.long)
    gap = math.cos(0.2) - math.cos(0.5)
    for scale in (1.0, 1e-3, 1e3):
        content = torch.tensor([[[scale]], [[0.0]]], dtype=torch.float64)
        for w, expect in ((0.0, 0), (gap - 0.01, 0), (gap + 0.01, 1), (5.0, 1)):
            for name, idx in _all_paths(content[None], [style[None]], prev[None], w, k=1).items():
                assert idx.item() == expect, (name, scale, w)
            bank = PatchBank(style, 1, 1)
            assert bank.match(content, previous=prev, temporal_weight=w).item() == expect


def test_bad_previous_and_weight_are_rejected():
    content, styles, n_s, _ = _case(9)
    plain = match_patches(content, styles, 3, 1)
    with pytest.raises(ValueError, match="temporal_weight must be finite and >= 0"):
        match_patches(content, styles, 3, 1, previous=plain, temporal_weight=-1)
    with pytest.raises(TypeError, match="temporal_weight must be a number"):
        match_patches(content, styles, 3, 1, previous=plain, temporal_weight="1")
    with pytest.raises(ValueError, match="previous must have the shape"):
        match_patches(content, styles, 3, 1, previous=plain[:, 1:], temporal_weight=0.1)
    with pytest.raises(TypeError, match="previous must be an int64 tensor"):
        match_patches(content, styles, 3, 1, previous=plain.float(), temporal_weight=0.1)
    with pytest.raises(ValueError, match=r"previous holds indices outside \[0, 32\)"):
        match_patches(content, styles, 3, 1, previous=plain + 100, temporal_weight=0.1)


# --- video -------------------------------------------------------------------------------------


def test_video_frames_prefer_the_previous_frame(tmp_path, vgg_weights, image_files, monkeypatch):
    """styleswap video: the default weight is on (every frame after the first passes `previous`), a huge one
    freezes the patches of a noisy static clip (identical output frames), 0 passes none."""
    import numpy as np
    from PIL import Image

    from styleswap_ext.apps import cli
    from styleswap_ext import pipeline
    from styleswap_ext.models import Decoder

    torch.manual_seed(0)
    ckpt = tmp_path / "decoder.pth"
    torch.save(Decoder().state_dict(), ckpt)
    src = tmp_path / "frames"
    src.mkdir()
    rng = np.random.default_rng(0)
    base = np.asarray(Image.open(image_files[0]).convert("RGB"), np.float32)
    for i in range(4):
        Image.fromarray(np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)).save(src / f"f{i}.png")
    seen = []
    op = torch.ops.styleswap.match_styles  # the CPU's exact match at stride 1

    def recording(*a, **k):
        seen.append(k.get("temporal_weight") if k.get("previous") is not None else None)
        return op(*a, **k)

    monkeypatch.setattr(torch.ops.styleswap, "match_styles", recording)

    def run(extra, out):
        seen.clear()
        rc = cli.main(["video", str(src), str(image_files[1]), "-o", str(tmp_path / out), "--method", "decoder",
                       "--decoder-weights", str(ckpt), "--vgg-weights", str(vgg_weights), "--device", "cpu", "-q"]
                      + extra)
        assert rc == 0
        return [np.asarray(Image.open(tmp_path / out / f"f{i}.png")) for i in range(4)], list(seen)

    _, calls = run([], "default")
    assert calls == [None] + [pipeline.DEFAULT_TEMPORAL_WEIGHT] * 3
    frozen, calls = run(["--temporal-weight", "1000"], "frozen")
    assert calls == [None, 1000.0, 1000.0, 1000.0]
    assert all(np.array_equal(frozen[1], f) for f in frozen[2:])
    free, calls = run(["--temporal-weight", "0"], "free")
    assert calls == [None] * 4
    assert not all(np.array_equal(free[1], f) for f in free[2:])
    assert cli.main(["video", str(src), str(image_files[1]), "-o", str(tmp_path / "x"), "--temporal-weight",
                     "-1"]) == 2
