"""Region masks: images (or integer maps) whose distinct values are labels, for region-to-region style swap.

A mask is given per image: ``--content-mask`` for the content, one ``--style-mask`` per style
(``stylize(..., content_mask=..., style_masks=[...])``). A content patch only takes style patches of
its own label (see :func:`styleswap_ext.match_patches` and docs/regions.md).

What a label is:

* an RGB(A)/palette/greyscale image: each distinct colour (alpha ignored; a greyscale value v is the
  colour (v, v, v)) is one label, the colour packed as ``r << 16 | g << 8 | b`` -- the same colour means
  the same label in every mask, so a red region of the content takes the red region(s) of the styles;
* a 32-bit or 16-bit integer PNG (PIL modes ``I``, ``I;16``): each value is a label;
* a tensor or array ``(H, W)`` of integers (the Python API): the labels themselves.

Draw masks without anti-aliasing (every blended edge colour would be a label of its own). A mask must
have its image's aspect ratio (within 2 %); it is resized to the feature grid (1/4 of the image size
at relu3_1) with nearest neighbour.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from . import image_io

INTEGER_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
ASPECT_TOLERANCE = 0.02


class MaskError(ValueError):
    """A mask that cannot be used (unreadable, wrong aspect ratio, a label no style has)."""


def _labels_of_image(img: Image.Image) -> Tuple[np.ndarray, bool]:
    """-> (H, W) int64 labels, and whether they are colours (True) or integer values (False)."""
    if img.mode in INTEGER_MODES:
        return np.asarray(img, dtype=np.int64), False
    rgb = np.asarray(img.convert("RGB"), dtype=np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2], True


def load_labels(mask, name: str) -> Tuple[torch.Tensor, bool]:
    """A mask (path, PIL image, integer tensor/array (H, W)) -> ((H, W) int64 labels, colours?)."""
    if isinstance(mask, (str, Path)):
        path = Path(mask)
        if not path.is_file():
            raise image_io.ImageLoadError(f"{name}: mask file not found: {path}")
        try:
            with Image.open(path) as img:
                img.load()
                arr, colours = _labels_of_image(img)
        except (OSError, ValueError) as e:
            raise image_io.ImageLoadError(f"{name}: cannot read {path} as an image: {e}") from e
        return torch.from_numpy(arr), colours
    if isinstance(mask, Image.Image):
        arr, colours = _labels_of_image(mask)
        return torch.from_numpy(arr), colours
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    if isinstance(mask, torch.Tensor):
        if mask.dtype == torch.bool or mask.is_floating_point() or mask.is_complex() or mask.dim() != 2:
            raise TypeError(f"{name} must be an (H, W) integer tensor, got {mask.dtype} of shape {tuple(mask.shape)}")
        return mask.to(torch.long).cpu(), False
    raise TypeError(f"{name} must be a path, a PIL image or an (H, W) integer tensor, got {type(mask).__name__}")


def describe(label: int, colours: bool) -> str:
    return f"colour #{label:06x}" if colours else f"label {label}"


def check_aspect(labels: torch.Tensor, size: Tuple[int, int], name: str) -> None:
    """The mask (H, W) must have the aspect ratio of its image ``size`` = (h, w), within 2 %."""
    mh, mw = labels.shape
    h, w = size
    if abs((mh * w) / (mw * h) - 1) > ASPECT_TOLERANCE:
        raise MaskError(f"{name} is {mw}x{mh} px but its image is {w}x{h} px: a mask must have its image's "
                        "aspect ratio (draw it on the image, or at the image's size)")


def resize_labels(labels: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of an (H, W) label map to ``size`` = (h, w) (pixel centres)."""
    mh, mw = labels.shape
    h, w = size
    ys = ((torch.arange(h, dtype=torch.float64) + 0.5) * mh / h).long().clamp_(max=mh - 1)
    xs = ((torch.arange(w, dtype=torch.float64) + 0.5) * mw / w).long().clamp_(max=mw - 1)
    return labels[ys][:, xs]


def check_covered(content: torch.Tensor, styles: Sequence[torch.Tensor], colours: bool,
                  content_name: str = "--content-mask") -> None:
    """Every label of the content mask must be in some style mask: MaskError naming the first that is not."""
    have = set()
    for st in styles:
        have.update(torch.unique(st).tolist())
    missing = [v for v in torch.unique(content).tolist() if v not in have]
    if missing:
        names = ", ".join(describe(v, colours) for v in sorted(have))
        raise MaskError(f"{content_name} has {describe(missing[0], colours)}, which no style mask has "
                        f"(they have: {names}); every content region needs a style region of its label")


def load_masks(content_mask, style_masks: Optional[Sequence], n_styles: int,
               ) -> Tuple[Optional[torch.Tensor], Optional[List[torch.Tensor]], bool]:
    """Loads the masks of a run -> (content labels or None, style labels or None, colours?). The content
    mask needs style masks, one per style; masks mixing colour images and integer maps are refused."""
    if content_mask is None and style_masks is None:
        return None, None, False
    if style_masks is None:
        raise MaskError("a content mask needs style masks (one per style): --style-mask PATH ...")
    style_masks = list(style_masks)
    if len(style_masks) != n_styles:
        raise MaskError(f"got {len(style_masks)} style mask(s) for {n_styles} style(s): give one per style")
    styles = [load_labels(m, f"style mask {i}") for i, m in enumerate(style_masks)]
    content = load_labels(content_mask, "content mask") if content_mask is not None else None
    kinds = {c for _, c in styles} | ({content[1]} if content is not None else set())
    if len(kinds) > 1:
        raise MaskError("the masks mix colour images and integer label maps: labels would not match; use one kind")
    colours = kinds.pop()
    style_labels = [lab for lab, _ in styles]
    if content is not None:
        check_covered(content[0], style_labels, colours)
    return (content[0] if content is not None else None), style_labels, colours


def feature_labels(labels: torch.Tensor, image_size: Tuple[int, int], grid: Tuple[int, int], name: str,
                   device) -> torch.Tensor:
    """A mask's labels for an image of ``image_size`` (h, w) on its feature grid ``grid``: aspect checked,
    nearest-neighbour resized, on ``device``."""
    check_aspect(labels, image_size, name)
    return resize_labels(labels, grid).to(device)

