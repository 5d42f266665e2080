"""Image-level style swap: encode, swap, and turn the swapped features back into an image.

``stylize(content, style)`` runs the paper's pipeline (Chen & Schmidt 2016):

1. Φ = VGG-19 to relu3_1 (:mod:`styleswap_ext.models`) on the content and on every style image;
2. Φ^SS = style swap of the content features against the patch bank of all styles
   (:func:`styleswap_ext.style_swap`), blended with the content features by ``alpha``;
3. image = f(Φ^SS) with the inverse network (``method="decoder"``), or
   argmin_I ‖Φ(I) − Φ^SS‖² + λ·TV(I) by Adam (``method="optimize"``, :func:`optimize_image`).

Choices, all documented in :func:`stylize`:

* **alpha**: the target is ``alpha·Φ^SS + (1−alpha)·Φ(content)`` (1 = full swap, 0 = the content's
  own features, i.e. a reconstruction of the content);
* **preserve_color**: luminance-only transfer (Gatys et al. 2017, "Controlling perceptual factors"):
  the result keeps its own luma Y and takes the chroma (Cb, Cr, BT.601 full range, as in JPEG) of the
  content, so the content's colours stay and the style contributes strokes and texture;
* **several styles** form one patch bank. With weights, a style's normalised cross-correlation
  scores are multiplied by its weight before the argmax across styles (weight 2 = its patches win
  matches they would otherwise narrowly lose; 0 = never used); equal weights are exactly the plain
  bank;
* the content is cropped (bottom/right, < 4 px) to a multiple of the encoder's downsampling (4 at
  relu3_1), as in the authors' code, so the output has the same size as the (resized) content.

Objective scaling (``method="optimize"``): the authors' Torch code optimises the image in [0, 1]
(its 1x1 "preprocess" conv, ×255 − mean, sits *inside* the network), so Adam's lr 0.05 applies to
a [0, 1] image unchanged and is our default. Their TV term (squared neighbour differences, summed)
sits *after* that conv, on 0–255 values: λ=1e-7 there is ``1e-7·255²`` ≈ 6.5e-3 on a [0, 1] image.
But their feature term is not a plain squared error: its gradient w.r.t. the relu3_1 features is
divided by its own L1 norm at every step (``ContentLossModule`` with ``normalize=true``), and it
flows back through Caffe's VGG-19, whose features (and Jacobian) are far larger than torchvision's.
So their λ has no exact equivalent here. Our objective is a fixed function (so that it can be
measured and compared)::

    L(I) = ‖Φ(I) − Φ^SS‖²_F / (2·‖Φ(I₀) − Φ^SS‖₁)  +  tv_weight · TV(I),   I in [0, 1]

The denominator (fixed at the initial image I₀) makes the feature gradient's L1 norm 1 at I₀, as
the authors' normalisation does, and makes the balance independent of the feature scale.
``tv_weight`` is in [0, 1]-image units. Measured on the bundled demo (cat, 256 px, init = content,
100 iterations, lr 0.05): the literal conversion 6.5e-3 smooths the image into a blurred wash with
no brush strokes; 0 gives the strongest strokes with some pixel-level noise; the default **1e-5**
(≈ the authors' 1e-7 after ×255², divided by ~650) keeps the strokes and removes most of that noise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import os
import sys
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from .._util import stages as _stages
from . import image_io, masks, memory_plan, search_choice, tiling
from .._util.choices import FEATURE_STEP, INITS, METHODS, PRECISIONS, TV_WEIGHT  # TV_WEIGHT: on a [0, 1] image
from ..ops.checks import check_weight_ratios, real_list
from .._util.text import plural
from ..models import Decoder, VGGEncoder, load_decoder, load_encoder
from ..ops.swap import num_style_patches
from ..ops.patch_bank import PatchBank

__all__ = ["stylize", "StyleBank", "CheckedSettings", "optimize_image", "objective", "swap_features",
           "preserve_colors", "PRECISIONS", "METHODS", "INITS", "TV_WEIGHT", "resolve_device", "total_variation"]

NORM_EPS = 1e-8  # the authors' epsilon in ||patch|| + eps

ImageLike = Union[str, os.PathLike, Image.Image, torch.Tensor]


# --- small helpers -----------------------------------------------------------------------------


def resolve_device(device) -> torch.device:
    """None / "auto" -> CUDA when available, else CPU; otherwise ``torch.device(device)``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):  # e.g. 'gpu'; 'meta' has no data to make a picture of
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N', 'auto' or None, got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but CUDA is not available (torch.cuda.is_available() is False)")
    return dev


@contextlib.contextmanager
def _precision(precision: str):
    """fp32: true fp32 matmuls/convs; tf32 and bf16: TF32 allowed for the encoder/decoder convs."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    old_mm = torch.get_float32_matmul_precision()
    old_cudnn = torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest" if precision == "fp32" else "high")
    torch.backends.cudnn.allow_tf32 = precision != "fp32"
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old_mm)
        torch.backends.cudnn.allow_tf32 = old_cudnn


def _as_image_tensor(x: ImageLike, name: str, uint8: bool = False) -> Tuple[torch.Tensor, bool]:
    """-> ((1, 3, H, W) float in [0, 1] on its device, was_tensor); with ``uint8``, a path or PIL
    input comes as its uint8 pixels instead (the caller converts them on the compute device)."""
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            raise TypeError(f"{name} tensor must be floating point in [0, 1], got {x.dtype}")
        t = x.unsqueeze(0) if x.dim() == 3 else x
        if t.dim() != 4 or t.shape[1] != 3:
            raise ValueError(f"{name} tensor must be RGB (3, H, W) or (N, 3, H, W), got shape {tuple(x.shape)}")
        return t.float(), True
    if isinstance(x, Image.Image):
        img = image_io.to_rgb(x)
    elif isinstance(x, (str, os.PathLike)):
        img = image_io.load_image(x)
    else:
        raise TypeError(f"{name} must be a path, a PIL image or a tensor, got {type(x).__name__}")
    return (image_io.pil_to_uint8(img) if uint8 else image_io.pil_to_tensor(img)).unsqueeze(0), False


def _resize_longest(t: torch.Tensor, size: Optional[int], name: str) -> torch.Tensor:  # name: of the size
    if size is None:
        return t
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{name} must be a positive int (longest side in px) or None, got {size!r}")
    h, w = t.shape[-2:]
    scale = size / max(h, w)
    new = (max(1, round(h * scale)), max(1, round(w * scale)))
    if new == (h, w):
        return t
    return F.interpolate(t, size=new, mode="bicubic", antialias=True, align_corners=False).clamp_(0, 1)


def _load_as_tensor(x: ImageLike, size: Optional[int], name: str, uint8: bool = False) -> Tuple[torch.Tensor, bool]:
    """PIL/path inputs are resized in PIL (Lanczos), tensors with antialiased bicubic; ``uint8`` as
    for :func:`_as_image_tensor`. ``name``: the image's argument (``"content"``, ``"style"``); its
    size is ``name + "_size"``."""
    if isinstance(size, bool) or (size is not None and (not isinstance(size, int) or size < 1)):
        raise ValueError(f"{name}_size must be a positive int (longest side in px) or None, got {size!r}")
    if isinstance(x, (str, os.PathLike, Image.Image)) and size is not None:
        img = image_io.load_image(x) if not isinstance(x, Image.Image) else image_io.to_rgb(x)
        img = image_io.resize_longest(img, size)
        return (image_io.pil_to_uint8(img) if uint8 else image_io.pil_to_tensor(img)).unsqueeze(0), False
    t, was_tensor = _as_image_tensor(x, name, uint8)
    return _resize_longest(t, size, f"{name}_size"), was_tensor


def preserve_colors(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Luminance-only transfer: Y of ``stylized`` with Cb/Cr of ``content`` (BT.601 full range)."""
    def ycbcr(x):
        r, g, b = x.unbind(1)
        y = 0.299 * r + 0.587 * g + 0.114 * b
        cb = -0.168736 * r - 0.331264 * g + 0.5 * b
        cr = 0.5 * r - 0.418688 * g - 0.081312 * b
        return y, cb, cr

    y, _, _ = ycbcr(stylized)
    _, cb, cr = ycbcr(content)
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], dim=1)
    return rgb.clamp(0, 1)


# --- features ------------------------------------------------------------------------------------


def _bank_inputs(style_features: List[torch.Tensor], style_weights: Optional[Sequence[float]], precision: str,
                 style_labels: Optional[List[torch.Tensor]] = None):
    """What the patch bank of encoded styles is built from: ``(features, weights, labels)``, bf16 under
    ``precision="bf16"``; a style of weight 0 is left out (with its labels); unequal weights scale each
    style's scores (equal ones change nothing: None)."""
    feats = [f.bfloat16() if precision == "bf16" else f for f in style_features]
    weights = None
    if style_weights is not None:
        keep = [float(w) > 0 for w in style_weights]
        kept = [(f, float(w)) for f, w in zip(feats, style_weights) if float(w) > 0]
        feats = [f for f, _ in kept]
        if style_labels is not None:
            style_labels = [lab for lab, k in zip(style_labels, keep) if k]
        if len({w for _, w in kept}) > 1:
            weights = [w for _, w in kept]
    return feats, weights, style_labels


def _patch_bank(style_features: List[torch.Tensor], style_weights: Optional[Sequence[float]], patch_size: int,
                stride: int, precision: str, search: str = "exact",
                style_labels: Optional[List[torch.Tensor]] = None) -> PatchBank:
    """The normalised patch bank of encoded styles (see :func:`_bank_inputs`)."""
    feats, weights, style_labels = _bank_inputs(style_features, style_weights, precision, style_labels)
    return PatchBank(feats, patch_size, stride, weights, style_labels=style_labels, search=search)


def _blend(swapped: torch.Tensor, content_features: torch.Tensor, alpha: float) -> torch.Tensor:
    swapped = swapped.float()
    if alpha == 1.0:
        return swapped
    return alpha * swapped + (1.0 - alpha) * content_features.float()


def swap_features(content_features: torch.Tensor, style_features: List[torch.Tensor],
                  style_weights: Optional[Sequence[float]] = None, patch_size: int = 3, stride: int = 1,
                  alpha: float = 1.0, precision: str = "fp32") -> torch.Tensor:
    """``alpha·Φ^SS + (1−alpha)·Φ(content)`` for one content ``(1, C, h, w)`` and a bank of styles.

    ``precision="bf16"`` runs the swap (matching + gather) on bf16 features (fp32 accumulation in
    the kernels); the result is returned in fp32. Builds the patch bank for this one call; a
    :class:`StyleBank` builds it once for many contents.
    """
    bank = _patch_bank(style_features, style_weights, patch_size, stride, precision)
    feats = content_features.bfloat16() if precision == "bf16" else content_features
    return _blend(bank.swap(feats), content_features, alpha)


# --- optimisation ---------------------------------------------------------------------------------


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Sum of squared differences between vertical and horizontal neighbours (the authors' TV)."""
    return (image[..., 1:, :] - image[..., :-1, :]).pow(2).sum() + (image[..., :, 1:] - image[..., :, :-1]).pow(2).sum()


def objective(encoder: VGGEncoder, image: torch.Tensor, target: torch.Tensor, tv_weight: float = TV_WEIGHT,
              feature_norm: Optional[float] = None) -> Tuple[torch.Tensor, float]:
    """The optimisation objective at ``image`` (see the module docstring for the scaling).

    ``feature_norm`` = ``2·‖Φ(I₀) − target‖₁``; None computes it at ``image`` (the value at the
    initial image is what :func:`optimize_image` uses throughout). Returns (loss, feature_norm).
    """
    feats = encoder(image)
    if feature_norm is None:
        feature_norm = max(2.0 * (feats.detach() - target).abs().sum().item(), NORM_EPS)
    loss = (feats - target).pow(2).sum() / feature_norm + tv_weight * total_variation(image)
    return loss, feature_norm


def optimize_image(encoder: VGGEncoder, target_features: torch.Tensor, init: torch.Tensor, iters: int = 100,
                   lr: float = 0.05, tv_weight: float = TV_WEIGHT, progress: bool = True,
                   callback: Optional[Callable[[int, torch.Tensor], None]] = None,
                   ) -> Tuple[torch.Tensor, List[float]]:
    """argmin_I ‖Φ(I) − target‖² (normalised) + tv_weight·TV(I) by Adam, I in [0, 1].

    Starts from ``init`` ``(1, 3, H, W)`` and clamps the image to [0, 1] after every step (as the
    authors do). Returns the final image and ``history``: the objective before each of the
    ``iters`` steps, plus its value at the returned image (``iters + 1`` floats).
    ``callback(step, image)``, if given, sees the image after each step (1-based; no grad).
    """
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
        raise ValueError(f"iters must be an int >= 0, got {iters!r}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if not (tv_weight >= 0 and math.isfinite(tv_weight)):
        raise ValueError(f"tv_weight must be >= 0, got {tv_weight!r}")
    target = target_features.detach().float()
    x = init.detach().float().clone().clamp_(0, 1).requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=lr)
    history: List[float] = []
    norm = None
    bar = tqdm(range(iters), desc="optimising", unit="it", file=sys.stderr, disable=not progress,
               dynamic_ncols=True, leave=False)
    for step in bar:
        optimizer.zero_grad(set_to_none=True)
        loss, norm = objective(encoder, x, target, tv_weight, norm)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            x.clamp_(0, 1)
            if callback is not None:
                callback(step + 1, x)
        history.append(loss.item())
        bar.set_postfix(loss=f"{history[-1]:.4g}", refresh=False)
    bar.close()
    with torch.no_grad():
        history.append(objective(encoder, x, target, tv_weight, norm)[0].item())
    return x.detach(), history


def _check_geometry(patch_size, stride) -> None:
    for name, v in (("patch_size", patch_size), ("stride", stride)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if stride > patch_size:
        raise ValueError(f"stride ({stride}) must not exceed patch_size ({patch_size})")


def _check_styles(style, style_weights) -> Tuple[list, Optional[List[float]]]:
    """One style or a list of them, and their weights (None = equal), checked."""
    styles_in = list(style) if isinstance(style, (list, tuple)) else [style]
    if not styles_in:
        raise ValueError("style is an empty list: give at least one style image")
    if style_weights is not None:
        style_weights = real_list("style_weights", style_weights)
        if len(style_weights) != len(styles_in):
            raise ValueError(f"got {plural(len(style_weights), 'style weight')} for {plural(len(styles_in), 'style')}")
        if any(not (w >= 0 and math.isfinite(w)) for w in style_weights) or not any(w > 0 for w in style_weights):
            raise ValueError(f"style weights must be finite, >= 0 and not all 0, got {style_weights}")
        check_weight_ratios("style_weights", style_weights)
    return styles_in, style_weights


# --- the style bank ------------------------------------------------------------------------------


class StyleBank:
    """The style images, encoded once and reused for every content image or video frame.

    Holds Φ(style) of every style (resized to ``style_size``, encoded on ``device`` under
    ``precision``; bf16 copies for ``precision="bf16"``, so no per-frame conversion either) and the
    swap settings (patch size, stride, style weights). ``stylize(content, bank, ...)`` and
    ``styleswap video`` use it so that a run encodes its styles once, not once per image/frame.

    It also holds the normalised style patch bank (:class:`~styleswap_ext.PatchBank`: the patch
    matrix and ``1/‖φ_j(S)‖``, scaled by the style weights), built once, so each content or frame
    costs only its own matching and gather.

    ``search``: ``"auto"`` (default; :mod:`styleswap_ext.pipeline.search_choice`) decides per content from its
    size and the bank's: the exact search where it is cheap on this device, else the approximate one.
    The bank of the chosen search is built at the first content that needs it and kept while the
    choice stays (a video's frames, images of one size). ``last_search`` is the last
    :class:`~styleswap_ext.pipeline.search_choice.SearchChoice`; ``on_search``, if set, is called with each
    new one (the command line prints its :meth:`~styleswap_ext.pipeline.search_choice.SearchChoice.line`).
    ``"exact"`` / ``"approximate"`` build that bank here.
    """

    def __init__(self, styles, encoder: VGGEncoder, *, style_size: Optional[int] = None,
                 style_weights: Optional[Sequence[float]] = None, patch_size: int = 3, stride: int = 1,
                 device=None, precision: str = "fp32", tile_size: Optional[int] = 0, progress: bool = False,
                 search: str = "auto", style_masks: Optional[Sequence] = None):
        # style_masks: one region mask per style (styleswap_ext.pipeline.masks: a path, PIL image or (H, W) integer
        # map at the style image's aspect ratio); then stylize() takes a content_mask.
        settings = _check(styles, for_bank=True, style_size=style_size, style_weights=style_weights,
                          patch_size=patch_size, stride=stride, device=device, precision=precision,
                          tile_size=tile_size or 0, search=search, style_masks=style_masks)
        memory_plan.check_settings(settings, None)
        self._setup(settings, encoder, progress)

    @classmethod
    def of(cls, settings: "CheckedSettings", encoder: VGGEncoder, progress: bool = False) -> "StyleBank":
        """The bank of ``settings.styles`` (checked: :meth:`CheckedSettings.of`; its memory plan too)."""
        bank = cls.__new__(cls)
        bank._setup(settings, encoder, progress)
        return bank

    def _setup(self, settings: "CheckedSettings", encoder: VGGEncoder, progress: bool) -> None:
        cfg = settings
        self.search = cfg.search
        self.last_search: Optional[search_choice.SearchChoice] = None
        self.on_search: Optional[Callable[[search_choice.SearchChoice], None]] = None
        self.device = cfg.device
        self.patch_size, self.stride, self.precision = cfg.patch_size, cfg.stride, cfg.precision
        self.style_weights = style_weights = cfg.style_weights
        patch_size, precision, tile_size, style_masks = cfg.patch_size, cfg.precision, cfg.tile_size, cfg.style_masks
        mask_labels, self.mask_colours = cfg.style_labels, cfg.mask_colours
        self.style_masks = style_masks  # as given: stylize checks regions
        style_ts = [_load_as_tensor(s, cfg.style_size, "style")[0] for s in cfg.styles]
        min_side = encoder.downsampling * patch_size
        feats = []
        with _precision(precision):
            for i, s in enumerate(style_ts):
                if s.shape[0] != 1:
                    raise ValueError(f"style {i} must be one image, got a batch of {s.shape[0]}")
                if min(s.shape[-2:]) < min_side:
                    raise ValueError(f"style image {i} is too small ({s.shape[-1]}x{s.shape[-2]} px): "
                                     f"needs at least {min_side} px per side for patch_size {patch_size}")
                f = tiling.encode(encoder.to(self.device).eval(), s.to(self.device), tile_size, progress)
                feats.append(f.bfloat16() if precision == "bf16" else f)
        self.features: List[torch.Tensor] = feats
        self.style_sizes = [tuple(st.shape[-2:]) for st in style_ts]  # (h, w) of each style image as encoded
        self.downsampling = encoder.downsampling
        # the style masks on each style's feature grid (None without masks)
        self.style_labels: Optional[List[torch.Tensor]] = None
        if mask_labels is not None:
            self.style_labels = [masks.feature_labels(lab, tuple(s.shape[-2:]), tuple(f.shape[-2:]),
                                                      masks.API_NAMES.style(i, style_masks[i]), self.device)
                                 for i, (lab, s, f) in enumerate(zip(mask_labels, style_ts, feats))]
        self._bank_args = _bank_inputs(feats, style_weights, precision, self.style_labels)
        self.num_patches = num_style_patches(self._bank_args[0], patch_size, self.stride)
        self._bank: Optional[PatchBank] = None  # the bank of the search last chosen
        if cfg.search != "auto":
            self._bank = self._build(cfg.search)

    def _build(self, search: str) -> PatchBank:
        feats, weights, labels = self._bank_args
        return PatchBank(feats, self.patch_size, self.stride, weights, style_labels=labels, search=search)

    @property
    def patch_bank(self) -> PatchBank:
        """The :class:`~styleswap_ext.PatchBank` of the last swap (with ``search="auto"`` and no swap
        yet: the exact one, built now)."""
        if self._bank is None:
            self._bank = self._build("exact")
        return self._bank

    def choose_search(self, content_features: torch.Tensor) -> search_choice.SearchChoice:
        """The search a swap of ``content_features`` runs (see ``search`` in the class docstring)."""
        n, c, h, w = content_features.shape
        k, s = self.patch_size, self.stride
        n_c = n * (-(-(h - k) // s) + 1) * (-(-(w - k) // s) + 1)  # the covering grid (ops.style_swap)
        return search_choice.choose(self.search, n_c, self.num_patches, c, k, s, self.device.type, self.precision)

    def _bank_for(self, content_features: torch.Tensor) -> PatchBank:
        """The patch bank of the search chosen for this content (built when the choice changes)."""
        if content_features.dim() == 3:
            content_features = content_features[None]
        choice = self.choose_search(content_features)
        if self.last_search is None or choice.search != self.last_search.search:
            if self.search == "auto" and self.on_search is not None:
                self.on_search(choice)
        self.last_search = choice
        if self._bank is None or self._bank.search != choice.search:
            self._bank = None  # at most one bank at a time (the memory plan counts one)
            self._bank = self._build(choice.search)
        return self._bank

    def swap(self, content_features: torch.Tensor, alpha: float = 1.0, progress: bool = False,
             content_labels: Optional[torch.Tensor] = None, previous: Optional[torch.Tensor] = None,
             temporal_weight: float = 0.0) -> torch.Tensor:
        """``alpha·Φ^SS + (1−alpha)·content_features`` against this bank (see :func:`swap_features`);
        ``progress`` shows a bar while a large content is matched. ``content_labels`` (a bank with
        style masks), ``previous`` and ``temporal_weight``: the controls of :meth:`PatchBank.match`."""
        feats = content_features.bfloat16() if self.precision == "bf16" else content_features
        swapped = self._bank_for(feats).swap(feats, progress, content_labels=content_labels,
                                                       previous=previous, temporal_weight=temporal_weight)
        return _blend(swapped, content_features, alpha)

    def swap_temporal(self, content_features: torch.Tensor, temporal: "TemporalState", alpha: float = 1.0,
                      progress: bool = False, content_labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """:meth:`swap` for the next frame of a video: prefers ``temporal.previous`` (when it has this
        frame's grid) by ``temporal.weight``, then stores this frame's choice in ``temporal``."""
        feats = content_features.bfloat16() if self.precision == "bf16" else content_features
        prev = temporal.previous
        k, s = self.patch_size, self.stride
        grid = (feats.shape[0], -(-(feats.shape[2] - k) // s) + 1, -(-(feats.shape[3] - k) // s) + 1)
        if prev is not None and tuple(prev.shape) != grid:
            prev = None  # a frame of another size: start afresh
        bank = self._bank_for(feats)
        swapped, idx = bank.swap(feats, progress, content_labels=content_labels, previous=prev,
                                 temporal_weight=temporal.weight, return_indices=True)
        temporal.previous = idx
        return _blend(swapped, content_features, alpha)

    def match(self, content_features: torch.Tensor, **controls) -> torch.Tensor:
        """The indices :meth:`swap` would paste (for a video's ``previous``), with the same controls."""
        feats = content_features.bfloat16() if self.precision == "bf16" else content_features
        return self._bank_for(feats).match(feats, **controls)

    def __repr__(self) -> str:
        shapes = ", ".join("x".join(map(str, f.shape[-2:])) for f in self.features)
        return (f"StyleBank({len(self.features)} style(s) [{shapes}], patch_size={self.patch_size}, "
                f"stride={self.stride}, precision={self.precision!r}, search={self.search!r}, device={self.device})")


# --- temporal coherence (video) -------------------------------------------------------------------

# `styleswap video --temporal-weight` default, in NCC units (docs/video.md: measured on the static clip of
# benchmarks/temporal_stability.py against the flicker and the objective).
DEFAULT_TEMPORAL_WEIGHT = 0.01  # the largest measured W whose worst frame stays within +5 % objective


class TemporalState:
    """The last frame's chosen style patches, for :func:`stylize` (``temporal=``) frame after frame.

    Each frame's match gives the patch chosen at the same position in the previous frame a bonus of
    ``weight`` x ||content patch|| -- ``weight`` in units of normalised cross-correlation (NCC): the
    previous patch is kept unless another beats its NCC by more than ``weight``. 0 = every frame on
    its own. Static regions keep their patches (no flicker from noise flipping near-ties); where the
    content moves, the NCC of the old patch drops and a better one wins.
    """

    def __init__(self, weight: float = DEFAULT_TEMPORAL_WEIGHT):
        from ..ops.checks import check_temporal_weight

        self.weight = check_temporal_weight(weight)
        self.previous: Optional[torch.Tensor] = None


# --- the pipeline ----------------------------------------------------------------------------------


def _check_number(name, value, lo, hi):
    """A real number in [lo, hi] (Python or NumPy: ``numbers.Real``, bool excluded) -> float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in [{lo}, {hi}], got {type(value).__name__}")
    if not (lo <= value <= hi):
        raise ValueError(f"{name} must be a number in [{lo}, {hi}], got {value!r}")
    return float(value)


def stylize(
    content: ImageLike,
    style: Union[ImageLike, Sequence[ImageLike]],
    *,
    method: str = "decoder",
    patch_size: int = 3,
    stride: int = 1,
    content_size: Optional[int] = None,
    style_size: Optional[int] = None,
    alpha: float = 1.0,
    preserve_color: bool = False,
    iters: int = 100,
    device=None,
    style_weights: Optional[Sequence[float]] = None,
    init: str = "content",
    lr: float = 0.05,
    tv_weight: float = TV_WEIGHT,
    precision: str = "fp32",
    encoder: Optional[VGGEncoder] = None,
    decoder: Optional[Decoder] = None,
    vgg_weights=None,
    decoder_weights=None,
    progress: bool = True,
    return_history: bool = False,
    tile_size: Optional[int] = None,
    search: str = "auto",
    content_mask=None,
    style_masks: Optional[Sequence] = None,
    temporal: Optional[TemporalState] = None,
    on_stage: Optional[Callable[[str, int, int], None]] = None,
):
    """Stylise ``content`` with ``style`` by style swap (Chen & Schmidt 2016).

    Args:
        content: a path, a PIL image, or a float tensor in [0, 1] ``(3, H, W)`` / ``(N, 3, H, W)``.
        style: the same kinds, or a list of them: all their patches form one bank; or a
            :class:`StyleBank` (styles already encoded: its patch size, stride, style weights and
            precision are used, and ``style_size`` / ``style_weights`` must be left at None).
        method: ``"decoder"`` (one pass through the inverse network) or ``"optimize"`` (Adam on the
            image; the paper's objective, see the module docstring).
        patch_size, stride: of the swap (paper: 3 and 1); ``stride <= patch_size``.
        content_size, style_size: longest side in px after resizing (None keeps the size).
        alpha: a real number in [0, 1] (a Python or NumPy scalar); target features =
            alpha·swapped + (1 − alpha)·content features.
        preserve_color: keep the content's colours (luminance-only transfer, see module docstring).
        iters: Adam iterations for ``method="optimize"`` (authors: 100).
        device: ``"cpu"``, ``"cuda"`` / ``"cuda:N"``, ``"auto"``/None (CUDA when available); other
            device types (``"meta"``, ``"gpu"``, ...) are a ValueError.
        style_weights: one non-negative weight per style (None = equal): multiplies that style's
            matching scores. Only their ratios matter (see :class:`~styleswap_ext.PatchBank`).
        init: start of the optimisation: ``"content"`` (authors' default), ``"random"`` or
            ``"decoder"`` (the decoder's output).
        lr: Adam learning rate on the [0, 1] image (authors: 0.05).
        tv_weight: weight of the TV term on the [0, 1] image (default 1e-5; see the module
            docstring for how it relates to the authors' 1e-7).
        precision: ``"fp32"`` (true fp32), ``"tf32"`` (TF32 convs/matmuls on GPUs that have it) or
            ``"bf16"`` (TF32 convs and the swap itself on bf16 features).
        encoder, decoder: modules to use instead of loading them (``vgg_weights`` / ``decoder_weights``
            say where to load from otherwise; see :func:`load_encoder`, :func:`load_decoder`).
        progress: show a progress bar (stderr) while optimising.
        return_history: also return the list of objective values per content image (optimize only).
        tile_size: encoder/decoder tile side in image px (:mod:`styleswap_ext.pipeline.tiling`): images
            larger than this are encoded and decoded on overlapping tiles (same result up to float
            rounding, bounded memory). None = :func:`styleswap_ext.pipeline.tiling.default_tile_size` for the
            device (1024 on the CPU); 0 = never tile. The optimisation's own encoder passes
            (with gradients) are not tiled.
        search: ``"auto"`` (default), ``"exact"`` or ``"approximate"`` patch search (see
            :func:`styleswap_ext.match_patches`; the approximate one is much faster for large images,
            docs/approximate_search.md). ``"auto"`` runs the exact search where it is estimated to take
            at most ~2 s on the device, else the approximate one (:mod:`styleswap_ext.pipeline.search_choice`);
            with ``progress`` one line on stderr says which and why, and a PIL result carries it in
            ``result.info["search"]``. A :class:`StyleBank` keeps its own.
        content_mask, style_masks: regions (:mod:`styleswap_ext.pipeline.masks`, docs/regions.md): a mask of the
            content and one per style (a path, PIL image or (H, W) integer map, at the image's aspect
            ratio; same colour = same label); each content region takes only style patches of its
            label. With a :class:`StyleBank`, give ``style_masks`` to the bank.
        temporal: a :class:`TemporalState` shared by the frames of a video (in order): each frame
            prefers the previous frame's style patches (docs/video.md). None = no temporal term.
        on_stage: ``on_stage(stage, done, total)`` as the work goes: ``"bank"`` (encoding the styles),
            then per content image ``"encode"``, ``"swap"``, ``"decode"``, and ``"optimize"`` with the
            steps done of ``iters``. An exception it raises stops the run there (the studio's cancel).

    Returns:
        A PIL image when ``content`` is a path or PIL image; a tensor shaped like ``content`` (on its
        device) when it is a tensor. With ``return_history``: ``(result, histories)``.
        Sizes are cropped to a multiple of 4 (the encoder's downsampling).

    Raises:
        NoTrainedDecoderError: ``method="decoder"`` (or ``init="decoder"``) and no decoder installed.
        styleswap_ext.pipeline.image_io.ImageLoadError: an input file cannot be read as an image.
        ValueError: bad argument values.
        TypeError: arguments of the wrong type.
    """
    settings = CheckedSettings.of(
        style, method=method, init=init, iters=iters, lr=lr, tv_weight=tv_weight, precision=precision, alpha=alpha,
        preserve_color=preserve_color, patch_size=patch_size, stride=stride, search=search, content_size=content_size,
        style_size=style_size, device=device, tile_size=tile_size, style_weights=style_weights,
        content_mask=content_mask, style_masks=style_masks, vgg_weights=vgg_weights, decoder_weights=decoder_weights)
    # refuse a plan that cannot fit before allocating it (MemoryPlanError names the options that fit)
    memory_plan.check_settings(settings, content)
    # inputs first, so that a bad file fails before any model is loaded
    content_t, content_was_tensor, style_ts = _load_inputs(content, settings.content_size, settings.styles,
                                                           settings.style_size)
    if settings.content_mask is not None:  # the labels on the grids of these images, before any model is loaded
        _check_regions(settings, tuple(content_t.shape[-2:]), style_ts, encoder)
    encoder, decoder = _models_on(settings, encoder, decoder)

    def stage(name, message=None, done=0, total=1):
        """One stage: to the caller's ``on_stage`` (the studio), and as a log line where the command line
        asked for them (styleswap_ext/_util/stages.py: stderr not a terminal)."""
        if message is not None:
            _stages.stage(message, detail=True)
        if on_stage is not None:
            on_stage(name, done, total)

    bank = settings.bank
    if bank is None:
        stage("bank")
        # the styles as loaded (resized: style_size done), their masks as read by the checks
        bank = StyleBank.of(dataclasses.replace(settings, styles=style_ts, style_size=None), encoder, progress)
        if progress:
            bank.on_search = _say_search
    results, histories = [], []
    with _precision(settings.precision):
        for n in range(content_t.shape[0]):
            c = _content_image(content_t[n:n + 1], settings.device, encoder.downsampling, settings.patch_size)
            with torch.no_grad():
                stage("encode", f"encoding the content ({c.shape[-1]}x{c.shape[-2]} px)")
                cf = tiling.encode(encoder, c, settings.tile_size, progress)
                labels = None if settings.content_labels is None else masks.feature_labels(
                    settings.content_labels, tuple(content_t.shape[-2:]), tuple(cf.shape[-2:]),
                    masks.API_NAMES.content(settings.content_mask), c.device)
                # choose_search: the name without building a bank (patch_bank would build the exact one)
                stage("swap", f"swapping the patches ({bank.choose_search(cf).search} search)")
                if temporal is None:
                    target = bank.swap(cf, settings.alpha, progress, content_labels=labels)
                else:
                    target = bank.swap_temporal(cf, temporal, settings.alpha, progress, content_labels=labels)
            out, hist = _invert(target, c, settings, encoder, decoder, progress, stage)
            if hist is not None:
                histories.append(hist)
            out = out.float().clamp(0, 1)
            if settings.preserve_color:
                out = preserve_colors(out, c)
            # a picture is made on the device (tensor_to_pil: uint8 there, a quarter of the bytes to copy)
            results.append(out.to(content_t.device) if content_was_tensor else out)
    result = _as_result(results, content, content_was_tensor)
    if isinstance(result, Image.Image) and bank.last_search is not None:
        result.info["search"] = bank.last_search.search  # which search made the picture
    return (result, histories) if return_history else result


def _say_search(choice: search_choice.SearchChoice) -> None:
    sys.stderr.write(choice.line() + "\n")
    sys.stderr.flush()


# The steps of stylize: check the settings -> load the inputs -> load the models -> (the style bank) ->
# per content image: crop, encode and swap, invert (decoder or optimisation), finish.


@dataclasses.dataclass(frozen=True, eq=False)
class CheckedSettings:
    """One stylisation's settings, checked once (:meth:`of`) and passed down whole: to the memory plan
    (``memory_plan.check_settings``), the style bank (:meth:`StyleBank.of`) and the inversion, instead of
    the loose values. :func:`stylize` builds it from its keyword arguments; a front end's settings
    (``pipeline.settings.StylizeSettings``, the CLI's and the studio's) convert into it with their
    ``checked`` method.

    ``bank`` is the StyleBank given as ``style`` (its geometry, precision and device win; ``styles`` is
    then empty), else None and ``styles`` / ``style_weights`` are the checked style inputs.
    ``content_labels`` / ``style_labels``: the masks' labels on the images' grids (None without masks),
    read once here; ``mask_colours``: whether the masks are colour images (not integer maps).
    """

    method: str = "decoder"
    init: str = "content"
    iters: int = 100
    lr: float = 0.05
    tv_weight: float = TV_WEIGHT
    precision: str = "fp32"
    alpha: float = 1.0
    preserve_color: bool = False
    patch_size: int = 3
    stride: int = 1
    search: str = "auto"
    content_size: Optional[int] = None
    style_size: Optional[int] = None
    device: torch.device = torch.device("cpu")
    tile_size: int = 0
    styles: list = dataclasses.field(default_factory=list)
    style_weights: Optional[List[float]] = None
    bank: Optional["StyleBank"] = None
    content_mask: object = None
    style_masks: Optional[list] = None
    content_labels: Optional[torch.Tensor] = None
    style_labels: Optional[List[torch.Tensor]] = None
    mask_colours: bool = False
    vgg_weights: object = None
    decoder_weights: object = None

    @classmethod
    def of(cls, style, **kwargs) -> "CheckedSettings":
        """:func:`stylize`'s checks of ``style`` and its keyword arguments (the same names and defaults,
        ``tile_size=None``: the device's default): every check that needs no model (masks included: a
        content label that no style mask has stops here), so a bad call fails at once."""
        return _check(style, for_bank=False, **kwargs)


def _check(style, *, for_bank: bool, method="decoder", init="content", iters=100, lr=0.05, tv_weight=TV_WEIGHT,
           precision="fp32", alpha=1.0, preserve_color=False, patch_size=3, stride=1, search="auto",
           content_size=None, style_size=None, device=None, tile_size=None, style_weights=None, content_mask=None,
           style_masks=None, vgg_weights=None, decoder_weights=None) -> CheckedSettings:
    """:meth:`CheckedSettings.of`; ``for_bank``: for a :class:`StyleBank` of its own (style masks without
    a content mask: the contents come later)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    alpha = _check_number("alpha", alpha, 0.0, 1.0)
    _check_geometry(patch_size, stride)
    search_choice.check(search)
    if method == "optimize" and (isinstance(iters, bool) or not isinstance(iters, int) or iters < 0):
        raise ValueError(f"iters must be an int >= 0, got {iters!r}")
    bank = style if isinstance(style, StyleBank) else None
    style_labels, colours = None, False
    if bank is not None:
        if style_weights is not None or style_size is not None:
            raise ValueError("style is a StyleBank: give style_weights / style_size when building the bank, not here")
        if (patch_size, stride) != (bank.patch_size, bank.stride):
            if (patch_size, stride) != (3, 1):
                raise ValueError(f"patch_size/stride ({patch_size}, {stride}) differ from the StyleBank's "
                                 f"({bank.patch_size}, {bank.stride})")
            patch_size, stride = bank.patch_size, bank.stride
        if search not in ("auto", bank.search):
            raise ValueError(f"search {search!r} differs from the StyleBank's ({bank.search!r})")
        precision = bank.precision
        styles_in = []
        if style_masks is not None:
            raise ValueError("style is a StyleBank: give style_masks when building the bank, not here")
        if content_mask is not None and bank.style_labels is None:
            raise ValueError("content_mask needs style masks: build the StyleBank with style_masks")
    else:
        styles_in, style_weights = _check_styles(style, style_weights)
    # masks read before any heavy work (unreadable, mixed kinds); their labels are checked on the feature
    # grids once the images' sizes are known (_check_regions)
    if bank is not None and content_mask is not None:
        content_labels, colours = masks.load_labels(content_mask, masks.API_NAMES.content())
        if colours != bank.mask_colours:
            raise masks.MaskError("the content mask and the style masks mix colour images and integer label maps")
    else:
        if not for_bank and (style_masks is not None or content_mask is not None):
            masks.check_given(content_mask, style_masks)
        content_labels, style_labels, colours = masks.load_masks(content_mask, style_masks, len(styles_in))
    dev = bank.device if bank is not None else resolve_device(device)
    if tile_size is None:
        tile_size = tiling.default_tile_size(dev)
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 0:
        raise ValueError(f"tile_size must be an int >= 0 (0 = never tile) or None, got {tile_size!r}")
    return CheckedSettings(method=method, init=init, iters=iters, lr=lr, tv_weight=tv_weight, precision=precision,
                           alpha=alpha, preserve_color=preserve_color, patch_size=patch_size, stride=stride,
                           search=search, content_size=content_size, style_size=style_size, device=dev,
                           tile_size=tile_size, styles=styles_in, style_weights=style_weights, bank=bank,
                           content_mask=content_mask, style_masks=None if style_masks is None else list(style_masks),
                           content_labels=content_labels, style_labels=style_labels, mask_colours=colours,
                           vgg_weights=vgg_weights, decoder_weights=decoder_weights)


def _check_regions(settings: CheckedSettings, content_hw, style_ts, encoder) -> None:
    """masks.check_regions for this content (loaded, resized) against the styles (loaded, or the bank's)."""
    bank = settings.bank
    if bank is not None:
        style_masks, style_hws, weights = bank.style_masks, bank.style_sizes, bank.style_weights
        step = bank.downsampling
    else:
        style_masks, style_hws, weights = settings.style_masks, [tuple(st.shape[-2:]) for st in style_ts], \
            settings.style_weights
        step = encoder.downsampling if encoder is not None else FEATURE_STEP  # load_encoder's relu3_1
    masks.check_regions(settings.content_mask, style_masks, content_hw, style_hws, patch_size=settings.patch_size,
                        stride=settings.stride, downsampling=step, style_weights=weights)


def _load_inputs(content, content_size, styles, style_size) -> Tuple[torch.Tensor, bool, List[torch.Tensor]]:
    """The content as a batch (an image stays uint8 until it is on the device: 4x fewer bytes to
    copy, no CPU pass), whether it was given as a tensor, and each style as one image."""
    content_t, content_was_tensor = _load_as_tensor(content, content_size, "content", uint8=True)
    style_ts = [_load_as_tensor(s, style_size, "style")[0] for s in styles]
    for i, s in enumerate(style_ts):
        if s.shape[0] != 1:
            raise ValueError(f"style {i} must be one image, got a batch of {s.shape[0]}")
    return content_t, content_was_tensor, style_ts


def _models_on(settings: CheckedSettings, encoder, decoder):
    """The encoder, and the decoder when the method needs one, loaded if not given, in eval mode on the device."""
    s = settings
    if decoder is None and (s.method == "decoder" or (s.method == "optimize" and s.init == "decoder")):
        decoder = load_decoder(s.decoder_weights)  # raises NoTrainedDecoderError when none is installed
    if encoder is None:
        encoder = load_encoder(s.vgg_weights)
    encoder = encoder.to(s.device).eval()
    if decoder is not None:
        decoder = decoder.to(s.device).eval()
    return encoder, decoder


def _content_image(c: torch.Tensor, dev, step: int, patch_size: int) -> torch.Tensor:
    """One content image on ``dev`` as float in [0, 1], cropped to a multiple of the encoder's step."""
    c = c.to(dev)
    if c.dtype == torch.uint8:
        c = image_io.uint8_to_float(c)
    h, w = (c.shape[-2] // step) * step, (c.shape[-1] // step) * step
    if min(h, w) < step * patch_size:
        raise ValueError(f"content image is too small ({c.shape[-1]}x{c.shape[-2]} px): "
                         f"needs at least {step * patch_size} px per side for patch_size {patch_size}")
    return c[..., :h, :w]


def _invert(target, c, settings: CheckedSettings, encoder, decoder, progress, stage):
    """The image whose features are ``target``: one decoder pass, or the optimisation from ``settings.init``;
    ``(image, objective history or None)``. ``stage(name, message, done, total)`` hears of each step."""
    s = settings
    if s.method == "decoder" or s.init == "decoder":
        stage("decode", "decoding")
        decoded = tiling.decode(decoder, target, s.tile_size, progress)
        if s.method == "decoder":
            return decoded, None
    if s.init == "content":
        x0 = c
    elif s.init == "random":
        x0 = torch.rand_like(c)
    else:
        x0 = decoded
    stage("optimize", f"optimising the image ({s.iters} iterations)", 0, s.iters)
    return optimize_image(encoder, target, x0, s.iters, s.lr, s.tv_weight, progress,
                          callback=lambda step, _image: stage("optimize", None, step, s.iters))


def _as_result(results: List[torch.Tensor], content, content_was_tensor: bool):
    """A tensor shaped like the content tensor given, or a PIL image for an image input."""
    if not content_was_tensor:
        return image_io.tensor_to_pil(results[0])
    result = torch.cat(results)
    if isinstance(content, torch.Tensor) and content.dim() == 3:
        result = result[0]
    return result
