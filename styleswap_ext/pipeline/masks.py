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

:func:`check_regions` is the one place that checks a run's labels, before any model loads, on the
grids the match uses: the patch centres of the content's and each style's feature grid. A small
region can vanish there; a content label that no (weighted) style patch has is an error naming it
as a colour, with the size that would keep it; a content label that vanishes is a warning.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from . import image_io
from ..ops.checks import _centres, covering_grid

INTEGER_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
ASPECT_TOLERANCE = 0.02


class MaskError(ValueError):
    """A mask that cannot be used (unreadable, wrong aspect ratio, a label no style has)."""


class MaskWarning(UserWarning):
    """A content label that no patch of the content keeps at the feature resolution (it has no effect)."""


class Names(NamedTuple):
    """What messages call the masks and the options behind them: the Python API's arguments
    (``API_NAMES``) or the command line's flags (``CLI_NAMES``), every mask numbered as its
    user numbers it (``style_masks[0]`` in Python is the first ``--style-mask``, ``--style-mask 1``)."""

    content_mask: str
    style_masks: str
    style_mask: str  # one of them: a format string of i (0-based) and n (1-based)
    content_size: str
    style_size: str
    style_weights: str

    def content(self, mask=None) -> str:
        return _with_path(self.content_mask, mask)

    def style(self, i: int, mask=None) -> str:
        return _with_path(self.style_mask.format(i=i, n=i + 1), mask)


API_NAMES = Names("content_mask", "style_masks", "style_masks[{i}]", "content_size", "style_size", "style_weights")
CLI_NAMES = Names("--content-mask", "--style-mask", "--style-mask {n}", "--content-size", "--style-size",
                  "--style-weights")


def _with_path(name: str, mask) -> str:
    return f"{name} ({mask})" if isinstance(mask, (str, os.PathLike)) else name


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
        return _not_empty(torch.from_numpy(arr), name), colours
    if isinstance(mask, Image.Image):
        arr, colours = _labels_of_image(mask)
        return _not_empty(torch.from_numpy(arr), name), colours
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    if isinstance(mask, torch.Tensor):
        if mask.dtype == torch.bool or mask.is_floating_point() or mask.is_complex() or mask.dim() != 2:
            raise TypeError(f"{name} must be an (H, W) integer tensor, got {mask.dtype} of shape {tuple(mask.shape)}")
        return _not_empty(mask.to(torch.long).cpu(), name), False
    raise TypeError(f"{name} must be a path, a PIL image or an (H, W) integer tensor, got {type(mask).__name__}")


def _not_empty(labels: torch.Tensor, name: str) -> torch.Tensor:
    if labels.numel() == 0:
        h, w = labels.shape
        raise MaskError(f"{name} is empty ({w}x{h}): a mask needs at least one pixel, at its image's aspect ratio")
    return labels


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


def check_given(content_mask, style_masks, names: Names = API_NAMES) -> None:
    """A run's masks come as a content mask with style masks: either alone does nothing, so it is refused."""
    if content_mask is not None and style_masks is None:
        raise MaskError(f"a content mask needs style masks (one per style): {names.content_mask} needs "
                        f"{names.style_masks}")
    if style_masks is not None and content_mask is None:
        raise MaskError(f"style masks need a content mask: {names.style_masks} without {names.content_mask} would "
                        f"be ignored (each content region takes the style patches of its label)")


def load_masks(content_mask, style_masks: Optional[Sequence], n_styles: int, names: Names = API_NAMES,
               ) -> Tuple[Optional[torch.Tensor], Optional[List[torch.Tensor]], bool]:
    """Loads the masks of a run -> (content labels or None, style labels or None, colours?). The content
    mask needs style masks, one per style; masks mixing colour images and integer maps are refused.
    Which labels are covered is :func:`check_regions`'s question (on the feature grids)."""
    if content_mask is None and style_masks is None:
        return None, None, False
    if style_masks is None:
        check_given(content_mask, style_masks, names)
    style_masks = list(style_masks)
    if len(style_masks) != n_styles:
        raise MaskError(f"got {len(style_masks)} style mask(s) for {n_styles} style(s): give one per style")
    styles = [load_labels(m, names.style(i)) for i, m in enumerate(style_masks)]
    content = load_labels(content_mask, names.content()) if content_mask is not None else None
    kinds = {c for _, c in styles} | ({content[1]} if content is not None else set())
    if len(kinds) > 1:
        raise MaskError("the masks mix colour images and integer label maps: labels would not match; use one kind")
    colours = kinds.pop()
    style_labels = [lab for lab, _ in styles]
    return (content[0] if content is not None else None), style_labels, colours


# --- the labels on the grids the match uses ---------------------------------------------------------


def _mask_index(centres: torch.Tensor, grid: int, mask: int) -> torch.Tensor:
    """The mask rows (or columns) that :func:`resize_labels` to ``grid`` puts at the feature positions ``centres``."""
    return ((centres.to(torch.float64) + 0.5) * mask / grid).long().clamp_(max=mask - 1)


def _centre_index(labels: torch.Tensor, grid: Tuple[int, int], k: int, s: int, covering: bool):
    """The mask rows and columns under the patch centres of a feature grid: the content's covering grid
    (``covering``, as csrc/patch_grid.h) or a style's valid patches (as _inputs.bank_patch_labels)."""
    index = []
    for n, m in zip(grid, labels.shape):
        count = covering_grid(n, k, s) if covering else (n - k) // s + 1
        index.append(torch.unique(_mask_index(_centres(n, count, k, s, "cpu"), n, m)))
    return index


def _patch_labels(labels: torch.Tensor, grid, k: int, s: int, covering: bool) -> set:
    """The labels of the patches on ``grid`` (= those of ``resize_labels(labels, grid)`` at the patch centres)."""
    rows, cols = _centre_index(labels, grid, k, s, covering)
    return set(torch.unique(labels[rows][:, cols]).tolist())


def _grid(hw, size, step: int) -> Tuple[int, int]:
    h, w = image_io.resized_size(tuple(hw), size)
    return h // step, w // step


def _keeping_size(labels: torch.Tensor, label: int, hw, size, k: int, s: int, step: int,
                  covering: bool) -> Optional[int]:
    """The first longest side above the current one at which some patch centre of the image's feature
    grid falls on ``label`` (searched in 5 % steps, then px by px within the step that found it); None if
    even a grid several times the mask's size misses it."""
    hit = (labels == label).numpy()

    def keeps(side: int) -> bool:
        grid = _grid(hw, side, step)
        if min(grid) < k:
            return False
        rows, cols = _centre_index(labels, grid, k, s, covering)
        return bool(hit[np.ix_(rows.numpy(), cols.numpy())].any())

    current = max(image_io.resized_size(tuple(hw), size))
    cap = step * ((k + s) * max(labels.shape) + k)  # there every mask pixel is under some centre
    while current < cap:
        below, current = current, max(current + 1, math.ceil(current * 1.05))
        if keeps(current):
            return next(side for side in range(below + 1, current + 1) if keeps(side))
    return None


def check_regions(content_mask, style_masks: Sequence, content_hw, style_hws: Sequence, *, patch_size: int,
                  stride: int, downsampling: int, style_weights: Optional[Sequence[float]] = None,
                  content_size: Optional[int] = None, style_size: Optional[int] = None, names: Names = API_NAMES,
                  loaded=None) -> None:
    """Every check of a run's masks, on the grids the match uses, before any model loads.

    ``content_hw`` / ``style_hws``: the images' (h, w), resized to ``content_size`` / ``style_size``
    (longest side, None = as they are) as the run will; their feature grids are ``downsampling``
    times smaller, the patches (``patch_size``, ``stride``) are labelled at their centres. Checks each
    mask's aspect ratio, then that every label of the content's patches is the label of some patch of a
    style whose weight is not 0: a MaskError names the first that is not, as a colour, and why (its
    style region vanishes at the feature resolution, with the size that keeps it; its only style has
    weight 0; no style mask has it). A content label that vanishes from the content's own patches is a
    :class:`MaskWarning` with the size that keeps it. ``loaded``: :func:`load_masks`'s result, if at hand.
    """
    c, styles, colours = loaded if loaded is not None else load_masks(content_mask, style_masks, len(style_hws), names)
    if c is None:
        return
    style_masks = list(style_masks)
    check_aspect(c, tuple(content_hw), names.content(content_mask))
    for i, (lab, hw) in enumerate(zip(styles, style_hws)):
        check_aspect(lab, tuple(hw), names.style(i, style_masks[i]))
    k, s, step = patch_size, stride, downsampling
    c_grid = _grid(content_hw, content_size, step)
    s_grids = [_grid(hw, style_size, step) for hw in style_hws]
    if min(c_grid) < k or any(min(g) < k for g in s_grids):
        return  # an image too small for the patches: refused, naming it, where it is encoded
    live = [w > 0 for w in style_weights] if style_weights is not None else [True] * len(styles)
    have = set()
    for lab, grid, ok in zip(styles, s_grids, live):
        if ok:
            have |= _patch_labels(lab, grid, k, s, covering=False)
    content_patches = _patch_labels(c, c_grid, k, s, covering=True)
    missing = sorted(content_patches - have)
    if missing:
        why = _why_uncovered(missing[0], c, styles, colours, live, s_grids, content_mask, style_masks, style_hws,
                             style_size, k, s, step, names)
        raise MaskError(f"{names.content(content_mask)} has {describe(missing[0], colours)}, {why}")
    for label in sorted(set(torch.unique(c).tolist()) - content_patches):
        keep = _keeping_size(c, label, content_hw, content_size, k, s, step, covering=True)
        h, w = c_grid
        warnings.warn(MaskWarning(
            f"{names.content(content_mask)}: {describe(label, colours)} is too small (or too close to the border) "
            f"to survive the resize to the content's {w}x{h} feature grid, so that region takes no part"
            + (f"; {names.content_size} {keep} would keep it" if keep else "")), stacklevel=2)


def _why_uncovered(label, content, styles, colours, live, s_grids, content_mask, style_masks, style_hws, style_size,
                   k, s, step, names) -> str:
    """The end of the message for a content label that no usable style patch has."""
    holders = [i for i, lab in enumerate(styles) if bool((lab == label).any())]
    used = [i for i in holders if live[i]]
    if used:
        i = used[0]
        keep = _keeping_size(styles[i], label, style_hws[i], style_size, k, s, step, covering=False)
        h, w = s_grids[i]
        return (f"but its region in {names.style(i, style_masks[i])} is too small (or too close to the border) to "
                f"survive the resize to that style's {w}x{h} feature grid: no style patch has it"
                + (f"; {names.style_size} {keep} would keep it" if keep else ""))
    if holders:
        i = holders[0]
        return (f"whose only style region is in {names.style(i, style_masks[i])}, but {names.style_weights} gives "
                f"that style weight 0: give it a weight above 0, or take {describe(label, colours)} out of the "
                "content mask")
    have = sorted(set().union(*(set(torch.unique(lab).tolist()) for lab in styles)))
    return (f"which no style mask has (they have: {', '.join(describe(v, colours) for v in have)}); "
            "every content region needs a style region of its label")


def feature_labels(labels: torch.Tensor, image_size: Tuple[int, int], grid: Tuple[int, int], name: str,
                   device) -> torch.Tensor:
    """A mask's labels for an image of ``image_size`` (h, w) on its feature grid ``grid``: aspect checked,
    nearest-neighbour resized, on ``device``."""
    check_aspect(labels, image_size, name)
    return resize_labels(labels, grid).to(device)

