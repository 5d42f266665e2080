"""One checked settings object for a stylisation (issue 42): stylize() checks its keyword arguments once
into a CheckedSettings and passes that object down (the memory plan, the style bank, the inversion);
a front end's StylizeSettings converts into the same object."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image


def test_the_bank_does_not_read_the_masks_again(encoder, content_pil, tmp_path, monkeypatch):
    """The checks read the masks, and the style bank takes their labels from the checked object: each mask
    file is read by the checks and by the region check (masks.check_regions, on the loaded images' grids),
    not a third time by the bank (before, the bank read the style masks again)."""
    from styleswap_ext.pipeline import masks, stylize

    cm, sm = tmp_path / "cm.png", tmp_path / "sm.png"
    Image.fromarray(np.full((36, 48, 3), 200, np.uint8)).save(cm)
    Image.fromarray(np.full((48, 48, 3), 200, np.uint8)).save(sm)
    read = []
    real = masks.load_labels
    monkeypatch.setattr(masks, "load_labels", lambda mask, name: read.append(str(mask)) or real(mask, name))
    style = Image.fromarray((np.random.default_rng(0).random((48, 48, 3)) * 255).astype(np.uint8))
    out = stylize(content_pil, style, method="optimize", iters=1, encoder=encoder, progress=False,
                  content_mask=cm, style_masks=[sm])
    assert out.size == (48, 36)
    assert sorted(read) == sorted([str(cm), str(sm)] * 2)


def test_stylize_passes_one_checked_object_down(encoder, content_pil, style_pil, monkeypatch):
    """The memory plan, the bank and the inversion see the object stylize checked (defaults resolved:
    the device, its tile size), not values checked again on the way."""
    from styleswap_ext.pipeline import memory_plan, stylization

    seen = {}
    real_plan, real_of, real_invert = memory_plan.check_settings, stylization.StyleBank.of, stylization._invert

    def plan(settings, content):
        seen["plan"] = settings
        return real_plan(settings, content)

    def of(settings, encoder, progress=False):
        seen["bank"] = settings
        return real_of(settings, encoder, progress)

    def invert(target, c, settings, *rest):
        seen["invert"] = settings
        return real_invert(target, c, settings, *rest)

    monkeypatch.setattr(memory_plan, "check_settings", plan)
    monkeypatch.setattr(stylization.StyleBank, "of", staticmethod(of))
    monkeypatch.setattr(stylization, "_invert", invert)
    stylization.stylize(content_pil, style_pil, method="optimize", iters=2, lr=0.1, alpha=0.5, encoder=encoder,
                        progress=False)
    s = seen["plan"]
    assert isinstance(s, stylization.CheckedSettings) and seen["invert"] is s
    assert (s.method, s.iters, s.lr, s.alpha, s.device, s.tile_size) == \
        ("optimize", 2, 0.1, 0.5, torch.device("cpu"), 1024)
    # the bank's: the same settings, with the styles as loaded (their size already applied)
    bank = seen["bank"]
    assert bank.style_size is None and len(bank.styles) == 1 and isinstance(bank.styles[0], torch.Tensor)
    for f in dataclasses.fields(s):
        if f.name not in ("styles", "style_size"):
            assert getattr(bank, f.name) is getattr(s, f.name), f.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.alpha = 1.0


def test_front_end_settings_convert_into_the_checked_object():
    from styleswap_ext.pipeline.settings import StylizeSettings
    from styleswap_ext.pipeline.stylization import CheckedSettings

    front = StylizeSettings(method="optimize", iters=7, lr=0.2, patch_size=5, stride=2, style_weights=(1.0, 3.0),
                            alpha=0.25, device="cpu", tile_size=0, search="exact").check(2)
    checked = front.checked(["a.png", "b.png"])
    assert isinstance(checked, CheckedSettings)
    for f in ("method", "iters", "lr", "patch_size", "stride", "alpha", "tile_size", "search", "precision", "init"):
        assert getattr(checked, f) == getattr(front, f), f
    assert checked.style_weights == [1.0, 3.0] and checked.styles == ["a.png", "b.png"]
    assert checked.device == torch.device("cpu")
    # what a run adds wins over the settings' own (the CLI's resolved device)
    assert front.checked(["a.png", "b.png"], device=torch.device("cpu"), tile_size=512).tile_size == 512
    # the pipeline's rules, with its messages
    with pytest.raises(ValueError, match="style weights"):
        front.checked(["a.png"])
