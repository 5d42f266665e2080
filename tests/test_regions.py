"""Regions: content_labels / style_labels restrict each content patch to the style patches of its label.

Checked on every CPU path (the CPU kernel through match_patches / PatchBank, the tiled driver through
``_match_bank_tiled`` with small tiles, the way CUDA runs a labelled match) against the reference, and
through the pipeline and the CLI with mask images.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from styleswap_ext import StyleSwap, match_patches, style_swap
from styleswap_ext.ops import reference
from styleswap_ext.ops import match_controls
from styleswap_ext.ops.patch_bank import PatchBank

tiled = torch.ops.styleswap._match_bank_tiled


def _materialised(bank):
    """The bank's patch rows and inverse norms as prepare_bank makes them (the CPU's PatchBank at stride 1
    reads the style maps and keeps no rows): the input of match_bank and the tiled driver."""
    return torch.ops.styleswap.prepare_bank([st.detach() for st in bank.styles], bank.patch_size, bank.stride,
                                            bank.weights)


def _patch_labels(labels, grid_h, grid_w, k, s):
    """The label at each patch centre, computed here independently: (y0 + (k-1)//2, x0 + (k-1)//2), clamped."""
    h, w = labels.shape[-2:]
    ys = [min(i * s + (k - 1) // 2, h - 1) for i in range(grid_h)]
    xs = [min(j * s + (k - 1) // 2, w - 1) for j in range(grid_w)]
    return labels[..., ys, :][..., xs]


def _bank_labels(style_labels, styles, k, s):
    rows = []
    for lab, st in zip(style_labels, styles):
        gh, gw = (st.shape[-2] - k) // s + 1, (st.shape[-1] - k) // s + 1
        rows.append(_patch_labels(lab, gh, gw, k, s).reshape(-1))
    return torch.cat(rows)


def _modified_scores(content, styles, k, s, clab=None, blab=None):
    """(N, n_c, n_s) scores <c, p> / (||p|| + 1e-8) in float64 with other labels at -inf, independent of the op."""
    import torch.nn.functional as F

    n, _, h, w = content.shape
    gh, gw = -(-(h - k) // s) + 1, -(-(w - k) // s) + 1
    pad = (0, (gw - 1) * s + k - w, 0, (gh - 1) * s + k - h)
    cp = F.unfold(F.pad(content.double(), pad, mode="replicate"), k, stride=s).transpose(1, 2)  # (N, n_c, D)
    bank = torch.cat([F.unfold(st.double().expand(n, -1, -1, -1), k, stride=s).transpose(1, 2) for st in styles], 1)
    scores = cp @ bank.transpose(1, 2) / (bank.norm(dim=2) + 1e-8)[:, None, :]
    if clab is not None:
        scores = scores.masked_fill(clab.reshape(n, -1, 1) != blab.reshape(1, 1, -1), float("-inf"))
    return scores


def _random_case(seed, n=2, c=3, k=3, s=1, n_labels=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    h, w = 6 + seed % 5, 7 + seed % 4
    content = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    styles = [torch.randn(1, c, 5 + seed % 3, 6, generator=g, dtype=dtype),
              torch.randn(1, c, 6, 5 + seed % 2, generator=g, dtype=dtype)]
    styles[1][..., :3, :3] = 0  # zero-norm patches
    style_labels = [torch.randint(0, n_labels, st.shape[-2:], generator=g) for st in styles]
    have = torch.unique(_bank_labels(style_labels, styles, k, s))
    content_labels = have[torch.randint(0, have.numel(), (n, h, w), generator=g)]
    return content, styles, content_labels, style_labels


# op and bank: match_styles on the CPU at stride 1 (match_bank at other strides); match_bank: the fused
# CPU kernel on the materialised bank; tiled: the tiled driver (CUDA's path for controlled matches)
PATHS = ["op", "bank", "match_bank", "tiled_small", "tiled_default"]


def _match(path, content, styles, k, s, content_labels, style_labels, **temporal):
    if path == "op":
        return match_patches(content, styles, k, s, content_labels, style_labels, **temporal)
    bank = PatchBank(styles, k, s, style_labels=style_labels)
    if path == "bank":
        return bank.match(content, content_labels=content_labels, **temporal)
    kw = match_controls(content, bank.styles, k, s, content_labels=content_labels,
                        bank_labels=bank.bank_labels, **temporal)
    if path == "match_bank":
        return torch.ops.styleswap.match_bank(content, *_materialised(bank), bank.num_patches, k, s, **kw)
    rows, cols = (5, 7) if path == "tiled_small" else (0, 0)
    return tiled(content, *_materialised(bank), bank.num_patches, k, s, rows, cols, False, **kw)


@pytest.mark.exactness
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("seed,k,s", [(0, 3, 1), (1, 2, 1), (2, 3, 2), (3, 4, 3), (4, 1, 1), (5, 3, 3)])
def test_no_patch_crosses_labels_and_matches_reference(path, seed, k, s):
    content, styles, clab, slab = _random_case(seed, k=k, s=s)
    idx = _match(path, content, styles, k, s, clab, slab)
    gh, gw = idx.shape[1:]
    patch_clab = _patch_labels(clab, gh, gw, k, s)
    blab = _bank_labels(slab, styles, k, s)
    assert torch.equal(blab[idx], patch_clab), "a content patch took a style patch of another label"
    scores = _modified_scores(content, styles, k, s, patch_clab, blab)
    chosen = scores.gather(2, idx.reshape(idx.shape[0], -1, 1))[..., 0]
    torch.testing.assert_close(chosen, scores.max(2).values, rtol=0, atol=1e-9)
    assert torch.equal(idx, reference.match_patches(content, styles, k, s, clab, slab))
    # and the labels change the answer (else the test would not show they act)
    assert not torch.equal(idx, match_patches(content, styles, k, s))


@pytest.mark.exactness
@pytest.mark.parametrize("path", PATHS)
def test_two_styles_by_region_and_ties_to_the_lowest_index(path):
    """A bank of the same style twice, labelled 1 and 2 (every patch tied with its copy): label-1 patches
    take the first copy, label-2 ones the second, and the plain match (ties to the lowest index) the first.
    Integer values: the copies' dot products are equal wherever they sit in the bank, on any processor."""
    g = torch.Generator().manual_seed(7)
    content = torch.randint(-3, 4, (1, 4, 8, 9), generator=g).float()
    st = torch.randint(-3, 4, (1, 4, 6, 6), generator=g).float()
    n_one = 16
    clab = torch.ones(8, 9, dtype=torch.long)
    clab[:, 5:] = 2
    slab = [torch.ones(6, 6, dtype=torch.long), torch.full((6, 6), 2, dtype=torch.long)]
    idx = _match(path, content, [st, st], 3, 1, clab, slab)
    plain = match_patches(content, [st, st], 3, 1)
    assert (plain < n_one).all()
    left = _patch_labels(clab, 6, 7, 3, 1)[None] == 1
    assert torch.equal(idx[left], plain[left]) and torch.equal(idx[~left], plain[~left] + n_one)


def test_batch_of_label_maps_and_style_swap_output():
    content, styles, clab, slab = _random_case(11, n=3)
    out = style_swap(content, styles, 3, 1, clab, slab)
    idx = match_patches(content, styles, 3, 1, clab, slab)
    torch.testing.assert_close(out, reference.rebuild(content, styles, idx, 3, 1))
    assert torch.equal(StyleSwap(3, 1)(content, styles, clab, slab), out)
    # a 2-D label map is shared by the batch
    idx0 = match_patches(content, styles, 3, 1, clab[0], slab)
    assert torch.equal(idx0[0], idx[0])


def test_labels_keep_style_gradient():
    content, styles, clab, slab = _random_case(12, n=1)
    styles = [st.clone().requires_grad_() for st in styles]
    style_swap(content, styles, 3, 1, clab, slab).square().sum().backward()
    ref = [st.detach().clone().requires_grad_() for st in styles]
    idx = match_patches(content, styles, 3, 1, clab, slab)
    reference.rebuild(content, ref, idx, 3, 1).square().sum().backward()
    for a, b in zip(styles, ref):
        torch.testing.assert_close(a.grad, b.grad)


def test_match_bank_with_controls_passes_opcheck():
    content, styles, clab, slab = _random_case(13, n=2, dtype=torch.float32)
    bank = PatchBank(styles, 3, 1, style_labels=slab)
    kw = match_controls(content, bank.styles, 3, 1, content_labels=clab,
                        bank_labels=bank.bank_labels)
    prev = torch.zeros_like(kw["content_labels"])
    prev[:] = torch.nonzero(bank.bank_labels == kw["content_labels"][0, 0, 0])[0, 0]
    controls = {**kw, "previous": prev, "temporal_weight": 0.2}
    torch.library.opcheck(torch.ops.styleswap.match_bank.default,
                          (content, *_materialised(bank), bank.num_patches, 3, 1), controls)
    torch.library.opcheck(torch.ops.styleswap.match_styles.default, (content, styles, bank.inv_norm, 3, 1), controls)


# --- errors --------------------------------------------------------------------------------------


def test_bad_labels_are_rejected_naming_the_argument():
    content, styles, clab, slab = _random_case(14, n=2)
    with pytest.raises(ValueError, match="content_labels must be"):
        match_patches(content, styles, 3, 1, clab[:, :-1], slab)
    with pytest.raises(TypeError, match="content_labels must be an integer tensor"):
        match_patches(content, styles, 3, 1, clab.float(), slab)
    with pytest.raises(ValueError, match=r"style_labels\[1\] must be"):
        match_patches(content, styles, 3, 1, clab, [slab[0], slab[1][:, :-2]])
    with pytest.raises(ValueError, match="style_labels has 1 map"):
        match_patches(content, styles, 3, 1, clab, [slab[0]])
    with pytest.raises(ValueError, match="content_labels needs style_labels"):
        match_patches(content, styles, 3, 1, clab)
    with pytest.raises(ValueError, match="style_labels needs content_labels"):
        match_patches(content, styles, 3, 1, style_labels=slab)
    # a bank with labels matched without content labels: the plain match
    assert torch.equal(PatchBank(styles, 3, 1, style_labels=slab).match(content), match_patches(content, styles, 3, 1))
    with pytest.raises(ValueError, match="content_labels has label 9, which no style patch has"):
        match_patches(content, styles, 3, 1, torch.full_like(clab, 9), slab)
    with pytest.raises(ValueError, match="content_labels has label 9"):
        reference.match_patches(content, styles, 3, 1, torch.full_like(clab, 9), slab)
    with pytest.raises(ValueError, match="content_labels needs a bank built with style_labels"):
        PatchBank(styles, 3, 1).match(content, content_labels=clab)


def test_op_checks_labels_itself():
    """The C++ checks (second line of defence) name the argument and the missing label too."""
    content, styles, _, _ = _random_case(15, n=1)
    bank = PatchBank(styles, 3, 1)
    grid = torch.zeros(1, content.shape[2] - 2, content.shape[3] - 2, dtype=torch.long)
    op = torch.ops.styleswap.match_bank
    blab = torch.zeros(bank.num_patches, dtype=torch.long)
    with pytest.raises(ValueError, match="content label 3 has no style patch"):
        op(content, *_materialised(bank), bank.num_patches, 3, 1, grid + 3, blab)
    with pytest.raises(ValueError, match="content_labels must be"):
        op(content, *_materialised(bank), bank.num_patches, 3, 1, grid[:, 1:], blab)
    with pytest.raises(ValueError, match="bank_labels must be"):
        op(content, *_materialised(bank), bank.num_patches, 3, 1, grid, blab[1:])
    with pytest.raises(ValueError, match="go together"):
        op(content, *_materialised(bank), bank.num_patches, 3, 1, grid)
    with pytest.raises(ValueError, match="content label 3"):
        tiled(content, *_materialised(bank), bank.num_patches, 3, 1, 0, 0, False, grid + 3, blab)
    maps = torch.ops.styleswap.match_styles
    with pytest.raises(ValueError, match="content label 3 has no style patch"):
        maps(content, styles, bank.inv_norm, 3, 1, grid + 3, blab)
    with pytest.raises(ValueError, match="bank_labels must be"):
        maps(content, styles, bank.inv_norm, 3, 1, grid, blab[1:])


# --- masks, pipeline, CLI ------------------------------------------------------------------------


def _two_region_masks(tmp_path, content_size=(48, 36), style_size=(48, 48)):
    """Content: left third red, the rest blue. Style A all red, style B all blue."""
    cw, ch = content_size
    cm = np.zeros((ch, cw, 3), np.uint8)
    cm[:, : cw // 3] = (255, 0, 0)
    cm[:, cw // 3:] = (0, 0, 255)
    paths = {"content": tmp_path / "cmask.png", "a": tmp_path / "amask.png", "b": tmp_path / "bmask.png"}
    Image.fromarray(cm).save(paths["content"])
    Image.new("RGB", style_size, (255, 0, 0)).save(paths["a"])
    Image.new("RGB", style_size, (0, 0, 255)).save(paths["b"])
    return paths


def test_masks_colours_become_shared_labels(tmp_path):
    from styleswap_ext.pipeline import masks

    paths = _two_region_masks(tmp_path)
    c, s, colours = masks.load_masks(paths["content"], [paths["a"], paths["b"]], 2)
    assert colours and set(torch.unique(c).tolist()) == {0xFF0000, 0x0000FF}
    assert torch.unique(s[0]).tolist() == [0xFF0000] and torch.unique(s[1]).tolist() == [0x0000FF]
    small = masks.resize_labels(c, (9, 12))
    assert small.shape == (9, 12) and (small[:, :4] == 0xFF0000).all() and (small[:, 4:] == 0x0000FF).all()
    with pytest.raises(masks.MaskError, match="colour #0000ff, which no style mask has"):
        masks.check_regions(paths["content"], [paths["a"]], (36, 48), [(48, 48)], patch_size=3, stride=1,
                            downsampling=4)
    with pytest.raises(masks.MaskError, match="one per style"):
        masks.load_masks(paths["content"], [paths["a"]], 2)
    with pytest.raises(masks.MaskError, match="aspect ratio"):
        masks.check_aspect(c, (36, 36), "content mask")
    Image.fromarray(np.array([[1, 2], [2, 1]], np.uint16)).save(tmp_path / "int.png")
    lab, col = masks.load_labels(tmp_path / "int.png", "m")
    assert not col and lab.tolist() == [[1, 2], [2, 1]]


def masks_resized(path, grid):
    from styleswap_ext.pipeline import masks

    return masks.resize_labels(masks.load_labels(path, "m")[0], tuple(grid))


def test_pipeline_two_styles_by_region(encoder, content_pil, tmp_path):
    """Content left third -> a red style, the rest -> a blue style: every left feature patch takes a red
    style patch and every other one a blue one, and the picture (optimised from noise) is red on the left
    and blue on the right, where the same bank without masks gives a reddish right side too."""
    from styleswap_ext.pipeline import StyleBank, stylize

    paths = _two_region_masks(tmp_path)
    rng = np.random.default_rng(0)
    texture = 0.8 + 0.2 * rng.random((48, 48, 1))  # VGG features need some structure
    red = Image.fromarray((np.array([220, 30, 30]) * texture).astype(np.uint8))
    blue = Image.fromarray((np.array([30, 30, 220]) * texture).astype(np.uint8))
    torch.manual_seed(0)
    kw = dict(method="optimize", iters=30, lr=0.1, init="random", encoder=encoder, progress=False)
    out = np.asarray(stylize(content_pil, [red, blue], content_mask=paths["content"],
                             style_masks=[paths["a"], paths["b"]], **kw)).astype(np.float32)
    plain = np.asarray(stylize(content_pil, [red, blue], **kw)).astype(np.float32)

    def blueness(a):
        return float((a[..., 2] - a[..., 0]).mean())

    # measured: right 26 (masked) vs -13 (plain), left -27 vs -26 (blue - red, 0-255)
    assert blueness(out[:, 20:]) > max(0.0, blueness(plain[:, 20:]) + 20), "the blue region did not take the blue style"
    assert blueness(out[:, :12]) < -10, "the red region did not take the red style"
    bank = StyleBank([red, blue], encoder, style_masks=[paths["a"], paths["b"]])
    assert [lab.shape for lab in bank.style_labels] == [f.shape[-2:] for f in bank.features]
    n_red = bank.patch_bank.num_patches // 2
    c = torch.from_numpy(np.array(content_pil)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        cf = encoder(c[..., :36, :48])
    idx = bank.match(cf, content_labels=masks_resized(paths["content"], cf.shape[-2:]))
    assert (idx[..., :3] < n_red).all() and (idx[..., 5:] >= n_red).all()
    with pytest.raises(ValueError, match="give style_masks when building the bank"):
        stylize(content_pil, bank, encoder=encoder, method="optimize", iters=1, content_mask=paths["content"],
                style_masks=[paths["a"], paths["b"]], progress=False)
    with pytest.raises(ValueError, match="content_mask needs style masks"):
        stylize(content_pil, StyleBank([red], encoder), encoder=encoder, method="optimize", iters=1,
                content_mask=paths["content"], progress=False)


def test_pipeline_rejects_masks_before_loading_models(content_pil, style_pil, tmp_path, monkeypatch):
    from styleswap_ext.pipeline import masks
    from styleswap_ext.pipeline import stylization as pipeline

    paths = _two_region_masks(tmp_path)

    def no_models(*a, **k):
        raise AssertionError("models loaded before the masks were checked")

    monkeypatch.setattr(pipeline, "load_encoder", no_models)
    with pytest.raises(masks.MaskError, match="colour #0000ff, which no style mask has"):
        pipeline.stylize(content_pil, [style_pil], method="optimize", content_mask=paths["content"],
                         style_masks=[paths["a"]], progress=False)
    with pytest.raises(masks.MaskError, match="a content mask needs style masks"):
        pipeline.stylize(content_pil, [style_pil], method="optimize", content_mask=paths["content"], progress=False)


def test_cli_masks(image_files, tmp_path, vgg_weights, monkeypatch, capsys):
    from styleswap_ext.apps.cli import main

    content, style = image_files
    paths = _two_region_masks(tmp_path)
    out = tmp_path / "out.png"
    base = ["stylize", str(content), str(style), str(style), "-o", str(out), "--method", "optimize", "--iters", "2",
            "--vgg-weights", str(vgg_weights), "-q", "--device", "cpu"]
    assert main(base + ["--content-mask", str(paths["content"]), "--style-mask", str(paths["a"]),
                        str(paths["b"])]) == 0
    assert out.is_file()
    out.unlink()
    capsys.readouterr()
    rc = main(base + ["--content-mask", str(paths["content"]), "--style-mask", str(paths["a"]), str(paths["a"])])
    err = capsys.readouterr().err
    assert rc == 2 and "styleswap: error:" in err and "#0000ff" in err and not out.exists()
    rc = main(base + ["--content-mask", str(paths["content"]), "--style-mask", str(paths["a"])])
    assert rc == 2 and "one per style" in capsys.readouterr().err and not out.exists()
    rc = main(base + ["--content-mask", str(paths["content"])])
    assert rc == 2 and "--style-mask" in capsys.readouterr().err and not out.exists()
    Image.new("RGB", (10, 40), (255, 0, 0)).save(tmp_path / "tall.png")
    rc = main(base + ["--content-mask", str(tmp_path / "tall.png"), "--style-mask", str(paths["a"]), str(paths["b"])])
    assert rc == 2 and "aspect ratio" in capsys.readouterr().err and not out.exists()


def test_match_bank_with_controls_compiles_fullgraph():
    st = torch.randn(1, 4, 6, 6)
    bank = PatchBank([st, st], 3, 1, style_labels=[torch.zeros(6, 6, dtype=torch.long),
                                                     torch.ones(6, 6, dtype=torch.long)])
    content = torch.randn(1, 4, 8, 9)
    clab = torch.zeros(1, 6, 7, dtype=torch.long)
    clab[..., 3:] = 1
    prev = torch.full((1, 6, 7), 20, dtype=torch.long)

    patches, inv_norm = _materialised(bank)

    def f(c, labels, previous):
        return torch.ops.styleswap.match_bank(c, patches, inv_norm, bank.num_patches, 3, 1, labels,
                                              bank.bank_labels, previous, 0.1)

    out = torch.compile(f, fullgraph=True)(content, clab, prev)
    assert torch.equal(out, f(content, clab, prev))
    assert (out[clab == 0] < 16).all() and (out[clab == 1] >= 16).all()


def _cuda_ready():
    from styleswap_ext import ops

    return torch.cuda.is_available() and ops.CUDA_BUILT


@pytest.mark.skipif(not _cuda_ready(), reason="needs a CUDA GPU and a CUDA build")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_controlled_match_takes_the_tiled_driver_and_agrees(dtype):
    """On CUDA a match with labels / previous runs the tiled driver (cuBLAS + ATen reduce): same indices as
    the reference in float64; in float32 (TF32 allowed or not) the chosen scores are the best up to rounding."""
    content, styles, clab, slab = _random_case(21, n=2, dtype=dtype)
    prev = torch.randint(0, 20, (2, content.shape[2] - 2, content.shape[3] - 2))
    blab = _bank_labels(slab, styles, 3, 1)
    prev = torch.where(blab[prev] == _patch_labels(clab, *prev.shape[1:], 3, 1), prev, 0)
    want = reference.match_patches(content, styles, 3, 1, clab, slab, prev, 0.05)
    bank = PatchBank([st.cuda() for st in styles], 3, 1, style_labels=[m.cuda() for m in slab])
    got = bank.match(content.cuda(), content_labels=clab.cuda(), previous=prev.cuda(), temporal_weight=0.05).cpu()
    assert torch.equal(blab[got], _patch_labels(clab, *got.shape[1:], 3, 1))
    if dtype == torch.float64:
        assert torch.equal(got, want)
    else:
        assert (got == want).float().mean() > 0.97


def test_controls_work_with_the_approximate_search(tmp_path, image_files, vgg_weights, monkeypatch, capsys):
    """Labels and the temporal bonus with search='approximate' (tests/test_approx.py has the search's own
    tests): the API and the CLI take them, and `styleswap video --search approximate` has the exact
    search's default temporal weight."""
    from styleswap_ext import PatchBank, pipeline
    from styleswap_ext.apps import cli

    content, styles, clab, slab = _random_case(3, dtype=torch.float32)
    blab = _bank_labels(slab, styles, 3, 1)
    idx = match_patches(content, styles, 3, 1, clab, slab, search="approximate")
    assert torch.equal(blab[idx], _patch_labels(clab, *idx.shape[1:], 3, 1))
    bank = PatchBank(styles, 3, 1, search="approximate")
    previous = bank.match(content)
    assert torch.equal(bank.match(content, previous=previous, temporal_weight=3.0), previous)
    c_file, s_file = image_files
    paths = _two_region_masks(tmp_path)
    out = tmp_path / "out.png"
    rc = cli.main(["stylize", str(c_file), str(s_file), str(s_file), "-o", str(out), "--search", "approximate",
                   "--content-mask", str(paths["content"]), "--style-mask", str(paths["a"]), str(paths["b"]),
                   "--method", "optimize", "--iters", "2", "--vgg-weights", str(vgg_weights), "-q", "--device", "cpu"])
    assert rc == 0 and out.exists(), capsys.readouterr().err
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.new("RGB", (44, 36), (90 + i, 90, 90)).save(frames / f"f{i:04d}.png")
    seen = []
    op = torch.ops.styleswap.match_ivf

    def recording(*a, **k):
        seen.append(k.get("temporal_weight") if k.get("previous") is not None else None)
        return op(*a, **k)

    monkeypatch.setattr(torch.ops.styleswap, "match_ivf", recording)
    rc = cli.main(["video", str(frames), str(s_file), "-o", str(tmp_path / "styled"), "--search", "approximate",
                   "--method", "optimize", "--iters", "1", "--vgg-weights", str(vgg_weights), "-q", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    assert seen == [None] + [pipeline.DEFAULT_TEMPORAL_WEIGHT] * 2
