"""Masks that do not lie (issue 36, items 6, 7 and the mask parts of 9): labels are checked in one place
(masks.check_regions), on the feature grids the match uses, as colours, before any model loads (exit 2
through the CLI: every run here names weights that do not exist, so a check made after the models
load would fail on those instead). Masks are numbered as the user numbers them."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from cli_process import FAST, MISSING_WEIGHTS, error_line, styleswap

BLUE, RED = (0, 0, 255), (255, 0, 0)


def _mask(path, size, fill=BLUE, red=None):
    """A ``size`` = (w, h) mask of colour ``fill`` with the box ``red`` = (y0, y1, x0, x1) red."""
    m = np.zeros((size[1], size[0], 3), np.uint8)
    m[...] = fill
    if red is not None:
        y0, y1, x0, x1 = red
        m[y0:y1, x0:x1] = RED
    Image.fromarray(m).save(path)
    return path


def _run(content, styles, cmask, smasks, *extra):
    return styleswap("stylize", content, *styles, "-o", content.parent / "out.png", "--content-mask", cmask,
                     "--style-mask", *smasks, "--vgg-weights", MISSING_WEIGHTS, *FAST, *extra)


# --- 6. one check, on the grids that are used ---------------------------------------------------------------------------


def test_the_same_mask_for_content_and_style_where_the_style_grid_loses_a_label(tmp_path, content_pil):
    """Content 96x72 (grid 24x18) and style 48x36 (grid 12x9) share one 48x36 mask with a 2x2 px red box:
    the content's patches keep it, the style's do not. Before: "which no style mask has" (the content's
    labels at the mask's resolution against the style's on its feature grid), exit 1 after the models."""
    content, style = tmp_path / "c.png", tmp_path / "s.png"
    content_pil.resize((96, 72)).save(content)
    content_pil.save(style)
    mask = _mask(tmp_path / "m.png", (48, 36), red=(16, 18, 20, 22))
    proc = _run(content, [style], mask, [mask])
    assert proc.returncode == 2, proc.stderr
    error_line(proc, "--content-mask", "colour #ff0000", "--style-mask 1", "12x9 feature grid", "--style-size 53")
    assert _run(content, [style], mask, [mask], "--style-size", "53", "--vgg-weights", "x").returncode == 1  # passes


def test_a_label_only_in_a_style_masks_border_is_named_as_a_colour(tmp_path, image_files):
    """Red only in the style mask's 4 px border: on the 12x12 feature grid that is column 0, where no 3x3
    patch has its centre. Before: "content_labels has label 16711680 ... [255]", exit 1 after the models."""
    content, style = image_files
    cmask = _mask(tmp_path / "cm.png", (48, 36), red=(10, 26, 16, 32))
    smask = _mask(tmp_path / "sm.png", (48, 48), red=(0, 48, 0, 4))
    proc = _run(content, [style], cmask, [smask])
    assert proc.returncode == 2, proc.stderr
    line = error_line(proc, "colour #ff0000", "--style-mask 1 (", "too close to the border", "--style-size")
    assert "16711680" not in line and "[255]" not in line


def test_a_label_whose_only_style_has_weight_0_is_a_usage_error(tmp_path, image_files):
    content, style = image_files
    cmask = _mask(tmp_path / "cm.png", (48, 36), red=(10, 26, 16, 32))
    blue, red = _mask(tmp_path / "b.png", (48, 48)), _mask(tmp_path / "r.png", (48, 48), fill=RED)
    proc = _run(content, [style, style], cmask, [blue, red], "--style-weights", "1", "0")
    assert proc.returncode == 2, proc.stderr
    error_line(proc, "colour #ff0000", "--style-mask 2 (", "--style-weights", "weight 0")


def test_a_content_label_that_vanishes_is_one_warning_with_the_size_that_keeps_it(tmp_path, image_files, vgg_weights):
    content, style = image_files
    cmask = _mask(tmp_path / "cm.png", (48, 36), red=(16, 18, 20, 22))
    blue, red = _mask(tmp_path / "b.png", (48, 48)), _mask(tmp_path / "r.png", (48, 48), fill=RED)
    proc = styleswap("stylize", content, style, style, "-o", tmp_path / "out.png", "--content-mask", cmask,
                     "--style-mask", blue, red, "--vgg-weights", vgg_weights, "--method", "optimize", "--iters", "1")
    assert proc.returncode == 0, proc.stderr
    warned = [line for line in proc.stderr.splitlines() if line.startswith("styleswap: warning:")]
    assert len(warned) == 1 and "colour #ff0000" in warned[0] and "--content-size 53" in warned[0], proc.stderr


def test_the_api_checks_on_the_same_grids_before_loading_models(tmp_path, content_pil, monkeypatch):
    from styleswap_ext.pipeline import masks
    from styleswap_ext.pipeline import stylization as pipeline

    def no_models(*a, **k):
        raise AssertionError("models loaded before the masks were checked")

    monkeypatch.setattr(pipeline, "load_encoder", no_models)
    mask = _mask(tmp_path / "m.png", (48, 36), red=(16, 18, 20, 22))
    big = content_pil.resize((96, 72))
    with pytest.raises(masks.MaskError, match=r"content_mask \(.*m.png\) has colour #ff0000.*style_masks\[0\] "
                                              r"\(.*12x9 feature grid.*style_size 53"):
        pipeline.stylize(big, [content_pil], method="optimize", content_mask=mask, style_masks=[mask], progress=False)


# --- 7. masks come in pairs --------------------------------------------------------------------------------------------


def test_style_masks_without_a_content_mask_are_a_usage_error(tmp_path, image_files):
    content, style = image_files
    proc = styleswap("stylize", content, style, "-o", tmp_path / "out.png", "--style-mask",
                     _mask(tmp_path / "b.png", (48, 48)), "--vgg-weights", MISSING_WEIGHTS, *FAST)
    assert proc.returncode == 2, proc.stderr
    error_line(proc, "--style-mask without --content-mask")
    assert not (tmp_path / "out.png").exists()


def test_style_masks_without_a_content_mask_in_the_api(content_pil, style_pil, tmp_path):
    from styleswap_ext.pipeline import masks
    from styleswap_ext import pipeline

    with pytest.raises(masks.MaskError, match="style_masks without content_mask"):
        pipeline.stylize(content_pil, style_pil, method="optimize", style_masks=[_mask(tmp_path / "b.png", (48, 48))],
                         progress=False)


# --- 9. numbering, empty masks ------------------------------------------------------------------------------------------


def test_masks_are_numbered_as_typed(tmp_path, image_files):
    content, style = image_files
    cmask, blue = _mask(tmp_path / "cm.png", (48, 36)), _mask(tmp_path / "b.png", (48, 48))
    proc = _run(content, [style, style], cmask, [blue, tmp_path / "missing.png"])
    assert proc.returncode == 1
    error_line(proc, "--style-mask 2", "missing.png")
    wide = _mask(tmp_path / "wide.png", (96, 48))
    proc = _run(content, [style, style], cmask, [blue, wide])
    assert proc.returncode == 2
    error_line(proc, "--style-mask 2 (", "wide.png", "aspect ratio")


@pytest.mark.parametrize("which", ["content_mask", "style_masks[0]"])
def test_an_empty_mask_is_a_value_error_naming_it(content_pil, style_pil, which):
    from styleswap_ext.pipeline import stylize

    empty, full = torch.zeros(0, 0, dtype=torch.long), torch.zeros(48, 48, dtype=torch.long)
    kw = dict(content_mask=empty if which == "content_mask" else torch.zeros(36, 48, dtype=torch.long),
              style_masks=[empty if which != "content_mask" else full])
    with pytest.raises(ValueError, match="^" + re.escape(f"{which} is empty (0x0)")):
        stylize(content_pil, style_pil, method="optimize", progress=False, **kw)


def test_the_clis_feature_step_is_the_encoders():
    from styleswap_ext._util.choices import FEATURE_STEP  # the CLI checks masks before the encoder exists
    from styleswap_ext.models import VGGEncoder

    assert VGGEncoder().downsampling == FEATURE_STEP == 4
