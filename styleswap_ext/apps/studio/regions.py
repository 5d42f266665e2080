"""Regions painted with a brush on the content -> the masks of ``--content-mask`` / ``--style-mask``.

Each style has a brush colour (:data:`PALETTE`, style 1 first). A painted pixel belongs to the style
whose colour is nearest to it (the brush's anti-aliased edges are blends of a colour with nothing,
so the nearest palette colour is the one painted); a later layer paints over an earlier one; what is
not painted takes style 1. The content mask is an RGB image of the content's size in those colours,
each style's mask its style's colour all over (:mod:`styleswap_ext.pipeline.masks` reads colours as labels),
so the masks can be saved and given to ``styleswap stylize`` as they are.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

__all__ = ["PALETTE", "COLOUR_NAMES", "painted_labels", "resized", "content_mask", "style_mask"]

# distinct at a glance and far apart in RGB (nearest-colour matching); style i paints PALETTE[i]
PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (230, 25, 75), (0, 130, 200), (60, 180, 75), (255, 225, 25), (145, 30, 180), (245, 130, 48),
    (70, 240, 240), (240, 50, 230),
)
COLOUR_NAMES = ("red", "blue", "green", "yellow", "purple", "orange", "cyan", "magenta")
PAINTED_ALPHA = 128  # a layer pixel at least this opaque is painted


def hex_colour(rgb: Sequence[int]) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb)


def painted_labels(layers: Sequence[np.ndarray], n_styles: int, size: Optional[Tuple[int, int]] = None,
                   ) -> Optional[np.ndarray]:
    """(H, W) int array of style indices (0-based) from RGBA brush layers, or None when nothing is
    painted. ``size`` (w, h): resize the labels to it (nearest; the editor's canvas may differ)."""
    if n_styles < 1:
        raise ValueError(f"n_styles must be >= 1, got {n_styles}")
    labels = None
    palette = np.asarray(PALETTE[:n_styles], np.int32)
    for layer in layers:
        layer = np.asarray(layer)
        if layer.ndim != 3 or layer.shape[2] != 4:
            continue  # a layer without alpha is no brush layer
        painted = layer[..., 3] >= PAINTED_ALPHA
        if not painted.any():
            continue
        if labels is None:
            labels = np.zeros(layer.shape[:2], np.int64)
        if layer.shape[:2] != labels.shape:
            raise ValueError(f"brush layers of different sizes: {layer.shape[:2]} and {labels.shape}")
        rgb = layer[painted][:, :3].astype(np.int32)
        dist = ((rgb[:, None, :] - palette[None, :, :]) ** 2).sum(-1)
        labels[painted] = dist.argmin(1)
    if labels is None or size is None:
        return labels
    return resized(labels, size)


def resized(labels: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Labels resized (nearest) to ``size`` (w, h)."""
    if (labels.shape[1], labels.shape[0]) == tuple(size):
        return labels
    img = Image.fromarray(labels.astype(np.uint8), "L").resize(tuple(size), Image.NEAREST)
    return np.asarray(img).astype(np.int64)


def content_mask(labels: np.ndarray) -> Image.Image:
    """The labels as an RGB image in the styles' colours (``--content-mask``)."""
    palette = np.asarray(PALETTE, np.uint8)
    return Image.fromarray(palette[labels], "RGB")


def style_mask(index: int, size: Tuple[int, int]) -> Image.Image:
    """Style ``index``'s mask (``--style-mask``): its colour all over, at the style image's ``size`` (w, h)."""
    return Image.new("RGB", tuple(size), PALETTE[index])


def used_styles(labels: np.ndarray) -> List[int]:
    return sorted(int(v) for v in np.unique(labels))
