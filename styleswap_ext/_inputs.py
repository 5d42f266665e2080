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
