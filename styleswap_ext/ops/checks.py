"""Argument checking shared by the fused op and the reference.

Every public entry point funnels its arguments through :func:`prepare`, which turns the accepted
forms into one canonical form: content ``(N, C, H, W)`` and a list of style tensors, each
``(1 or N, C, Hs, Ws)`` (batch 1 = shared by every sample, batch N = one per sample). All checks
here look at shapes, dtypes and devices only, so they cost nothing under ``torch.compile``; the
NaN/Inf check reads the data and lives in the kernels (and in :func:`check_finite` for the
reference).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple, Sequence, Union

import torch

StyleArg = Union[torch.Tensor, Sequence[torch.Tensor]]


class SwapArgs(NamedTuple):
    content: torch.Tensor  # (N, C, H, W)
    styles: list  # of (1 | N, C, Hs, Ws)
    patch_size: int
    stride: int
    squeeze: bool  # content came as (C, H, W): drop the batch dim of results


def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_floating(name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32/float64/bfloat16/float16), got {t.dtype}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(t.shape)}")


def real_list(name: str, values) -> list:
    """A sequence of real numbers (Python, NumPy or one-element tensors) -> floats; a TypeError
    naming ``name[i]`` otherwise."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a sequence of numbers, got {type(values).__name__}")
    values = list(values)
    for i, v in enumerate(values):
        if isinstance(v, torch.Tensor) and v.numel() == 1 and v.dtype != torch.bool:
            v = values[i] = v.item()  # a 0-d tensor, e.g. from iterating over a tensor of weights
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{name}[{i}] must be a number, got {type(v).__name__} {v!r}")
    return [float(v) for v in values]


def check_weight_ratios(name: str, weights) -> None:
    """Weights are divided by the largest before they reach a float32 bank (csrc/styleswap.cpp,
    apply_bank_weights); a positive one whose ratio is 0 in float32 would act as 0: ValueError
    naming it here, by the caller's own index (the kernel sees only the styles kept)."""
    largest = max(weights, default=0.0)
    for i, w in enumerate(weights):
        if w > 0 and torch.tensor(w / largest, dtype=torch.float32).item() == 0:
            raise ValueError(f"{name}[{i}] ({w:g}) is too small next to the largest weight ({largest:g}): "
                             "only their ratio counts, and it is 0 in float32; give 0 to leave that style out")


def check_geometry(patch_size, stride) -> tuple:
    """patch_size >= 1 and 1 <= stride <= patch_size (a larger stride leaves gaps no patch covers)."""
    k = _check_int("patch_size", patch_size)
    s = _check_int("stride", stride)
    if s > k:
        raise ValueError(
            f"stride ({s}) must not exceed patch_size ({k}): the patches would leave uncovered gaps between them"
        )
    return k, s


def _style_items(style: StyleArg):
    """The style tensors of ``style`` (one tensor or a non-empty list) and their names for errors."""
    if isinstance(style, torch.Tensor):
        return [style], ["style"]
    if isinstance(style, (list, tuple)):
        if len(style) == 0:
            raise ValueError("style is an empty list: give at least one style tensor")
        return list(style), [f"style[{i}]" for i in range(len(style))]
    raise TypeError(f"style must be a tensor or a list of tensors, got {type(style).__name__}")


def _style4(name: str, st, k: int) -> torch.Tensor:
    """One style tensor, checked on its own (floating point, 3-D or 4-D, at least k x k) -> 4-D."""
    _check_floating(name, st)
    if st.dim() == 3:
        st = st.unsqueeze(0)
    elif st.dim() != 4:
        raise ValueError(f"{name} must be (C, Hs, Ws), (1, C, Hs, Ws) or (N, C, Hs, Ws), got shape {tuple(st.shape)}")
    if st.shape[2] < k or st.shape[3] < k:
        raise ValueError(f"{name} ({st.shape[2]}x{st.shape[3]}) is smaller than patch_size {k}")
    return st


def prepare_styles(style: StyleArg, patch_size) -> list:
    """Styles without a content (for a :class:`~styleswap_ext.PatchBank`): each ``(1 | B, C, Hs, Ws)``
    with B the largest batch among them, one channel count, dtype and device (those of the first)."""
    k = _check_int("patch_size", patch_size)
    items, names = _style_items(style)
    styles = [_style4(name, st, k) for name, st in zip(names, items)]
    first, batch = styles[0], max(st.shape[0] for st in styles)
    for name, st in zip(names, styles):
        if st.shape[0] not in (1, batch):
            raise ValueError(f"{name} has batch {st.shape[0]}; per-sample styles must all have batch {batch} "
                             "(or batch 1 to be shared)")
        if st.shape[1] != first.shape[1]:
            raise ValueError(f"{name} has {st.shape[1]} channels but {names[0]} has {first.shape[1]}")
        if st.dtype != first.dtype:
            raise TypeError(f"{name} has dtype {st.dtype} but {names[0]} has {first.dtype}; they must match")
        if st.device != first.device:
            raise ValueError(f"{name} is on {st.device} but {names[0]} is on {first.device}; they must match")
    return styles


def prepare(content, style: StyleArg, patch_size, stride) -> SwapArgs:
    k, s = check_geometry(patch_size, stride)

    _check_floating("content", content)
    if content.dim() not in (3, 4):
        raise ValueError(f"content must be (N, C, H, W) or (C, H, W), got shape {tuple(content.shape)}")
    squeeze = content.dim() == 3
    content4 = content.unsqueeze(0) if squeeze else content
    n, c, h, w = content4.shape
    if h < k or w < k:
        raise ValueError(f"content ({h}x{w}) is smaller than patch_size {k}")

    items, names = _style_items(style)
    styles = []
    for name, st in zip(names, items):
        st = _style4(name, st, k)
        if st.shape[0] not in (1, n):
            raise ValueError(
                f"{name} has batch {st.shape[0]} but content has batch {n}: a per-sample style batch must equal "
                "the content batch (or use batch 1 to share one style)"
            )
        if st.shape[1] != c:
            raise ValueError(f"{name} has {st.shape[1]} channels but content has {c}")
        if st.dtype != content.dtype:
            raise TypeError(f"{name} has dtype {st.dtype} but content has {content.dtype}; they must match")
        if st.device != content.device:
            raise ValueError(f"{name} is on {st.device} but content is on {content.device}; they must match")
        styles.append(st)
    return SwapArgs(content4, styles, k, s, squeeze)


def check_finite(args: SwapArgs) -> None:
    """Data check used by the reference (the kernels do the same in C++)."""
    if not torch.isfinite(args.content).all():
        raise ValueError("content contains NaN or Inf")
    for i, st in enumerate(args.styles):
        if not torch.isfinite(st).all():
            raise ValueError(f"style[{i}] contains NaN or Inf")


def covering_grid(n: int, k: int, s: int) -> int:
    """Content-grid positions along a side of n: ceil((n - k) / s) + 1 (see csrc/patch_grid.h)."""
    return (n - k + s - 1) // s + 1


# --- labels (regions) ---------------------------------------------------------------------------
#
# A label map gives every position of a feature map an integer label. A patch's label is the label at
# its centre: for a k x k patch whose top-left is (y0, x0) that is (y0 + (k - 1) // 2, x0 + (k - 1) // 2)
# -- the middle for odd k, the upper-left of the four middle positions for even k. The content grid's
# replicate-padded last row/column of patches (covering_grid) reads past the border; its centre is
# clamped to the map the same way, so it takes the label of the last row/column it covers.


def _label_map(name: str, labels, shape, device, batch_ok: bool) -> torch.Tensor:
    """``labels`` checked as an integer map of ``shape`` = (H, W) (or (N, H, W) when ``batch_ok`` is the
    batch N) -> (N or 1, H, W) int64 on ``device``."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} must be an integer torch.Tensor, got {type(labels).__name__}")
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"{name} must be an integer tensor (int64), got {labels.dtype}")
    h, w = shape
    ok_shapes = [(h, w)] + ([(batch_ok, h, w)] if batch_ok else [])
    if tuple(labels.shape) not in ok_shapes:
        want = " or ".join(str(s) for s in ok_shapes)
        raise ValueError(f"{name} must be {want} (one label per feature position), got shape {tuple(labels.shape)}")
    labels = labels.to(device=device, dtype=torch.long)
    return labels if labels.dim() == 3 else labels.unsqueeze(0)


def _centres(n: int, grid: int, k: int, s: int, device) -> torch.Tensor:
    return (torch.arange(grid, device=device) * s + (k - 1) // 2).clamp_(max=n - 1)


def content_patch_labels(content_labels, content: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """Labels of the content's covering-grid patches: (N, H', W') int64 from an (H, W) or (N, H, W) map."""
    n, _, h, w = content.shape
    lab = _label_map("content_labels", content_labels, (h, w), content.device, n)
    ys = _centres(h, covering_grid(h, k, s), k, s, lab.device)
    xs = _centres(w, covering_grid(w, k, s), k, s, lab.device)
    return lab[:, ys][:, :, xs].expand(n, -1, -1).contiguous()


def bank_patch_labels(style_labels, styles: list, k: int, s: int) -> torch.Tensor:
    """Labels of the bank rows, (n_s,) int64: one (Hs, Ws) map per style tensor (a tensor for a single
    style, a list for a bank), sampled at the centres of its patches in bank order."""
    maps = [style_labels] if isinstance(style_labels, torch.Tensor) else style_labels
    if not isinstance(maps, (list, tuple)):
        raise TypeError(f"style_labels must be a tensor or a list of tensors, got {type(style_labels).__name__}")
    if len(maps) != len(styles):
        raise ValueError(f"style_labels has {len(maps)} map(s) for {len(styles)} style tensor(s): give one per style")
    rows = []
    for i, (m, st) in enumerate(zip(maps, styles)):
        hs, ws = st.shape[-2:]
        name = "style_labels" if isinstance(style_labels, torch.Tensor) else f"style_labels[{i}]"
        lab = _label_map(name, m, (hs, ws), st.device, False)[0]
        ys = _centres(hs, (hs - k) // s + 1, k, s, lab.device)
        xs = _centres(ws, (ws - k) // s + 1, k, s, lab.device)
        rows.append(lab[ys][:, xs].reshape(-1))
    return torch.cat(rows)


def check_labels_covered(patch_labels: torch.Tensor, bank_labels: torch.Tensor) -> None:
    """Every content label must be some style patch's label: ValueError naming the first that is not."""
    missing = torch.unique(patch_labels[~torch.isin(patch_labels, bank_labels)])
    if missing.numel():
        have = sorted(torch.unique(bank_labels).tolist())
        raise ValueError(f"content_labels has label {int(missing[0])}, which no style patch has "
                         f"(style_labels give {have}): every content region needs a style region of its label")


def check_previous(previous, indices_shape, device) -> torch.Tensor:
    """``previous`` (the last frame's indices) checked against this match's shape -> (N, H', W') int64 on
    ``device`` (the op checks the values: in [0, num_patches))."""
    if not isinstance(previous, torch.Tensor) or previous.dtype != torch.long:
        got = previous.dtype if isinstance(previous, torch.Tensor) else type(previous).__name__
        raise TypeError(f"previous must be an int64 tensor of indices (a match's result), got {got}")
    prev = previous.unsqueeze(0) if previous.dim() == 2 else previous
    if tuple(prev.shape) != tuple(indices_shape):
        raise ValueError(f"previous must have the shape of this match's indices {tuple(indices_shape)} "
                         f"(or without the batch dim), got {tuple(previous.shape)}")
    return prev.to(device)


def check_temporal_weight(temporal_weight) -> float:
    if isinstance(temporal_weight, bool) or not isinstance(temporal_weight, numbers.Real):
        raise TypeError(f"temporal_weight must be a number, got {type(temporal_weight).__name__}")
    w = float(temporal_weight)
    if not (w >= 0 and w < float("inf")):
        raise ValueError(f"temporal_weight must be finite and >= 0, got {temporal_weight}")
    return w
