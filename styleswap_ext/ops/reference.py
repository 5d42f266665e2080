"""The paper's style swap in plain PyTorch: the reference the fused kernels are tested against.

Chen & Schmidt (2016), section 3.2: style patches become the filters of a conv2d whose output
channel j is the correlation with style patch j; a channel-wise argmax gives a one-hot map; a
conv_transpose2d with the raw style patches as filters pastes the chosen patches back, and
dividing by the overlap count (the same transposed conv applied to ones) averages the overlaps.

The scores are ``conv2d(content, raw patches) / (||patch|| + 1e-8)`` (the authors' epsilon):
dividing after the correlation rather than normalising the filters first is the same score
mathematically, and gives identical style patches bit-identical scores, so exact ties resolve to
the lowest index as ``argmax`` (first maximum) does.

Memory grows as n_content_patches x n_style_patches (the score and one-hot tensors): this is the
formulation that does not scale, kept for clarity and testing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import StyleArg, SwapArgs, check_finite, prepare

# The controls (csrc/match_controls.h) come in through ``_match(..., controls)`` as the keyword
# arguments of match_bank (ops.match_controls): per-patch content labels (N, H', W') and bank labels
# (n_s), previous (N, H', W') with temporal_weight. Here they act on the full score tensor.

NORM_EPS = 1e-8


def _pad_to_grid(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """Replicate-pad bottom/right so that the stride-s grid of k x k patches covers every pixel."""
    h, w = x.shape[-2:]
    pad_h, pad_w = (-(h - k)) % s, (-(w - k)) % s
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


def _bank(args: SwapArgs, n: int) -> torch.Tensor:
    """Sample n's style patches as conv filters (n_s, C, k, k), numbered row-major per style."""
    k, s = args.patch_size, args.stride
    filters = []
    for st in args.styles:
        x = st[0 if st.shape[0] == 1 else n]
        p = x.unfold(1, k, s).unfold(2, k, s)  # (C, gh, gw, k, k)
        filters.append(p.permute(1, 2, 0, 3, 4).reshape(-1, x.shape[0], k, k))
    return torch.cat(filters)


def _match(args: SwapArgs, n: int, filters: torch.Tensor, controls: dict = None) -> torch.Tensor:
    content = _pad_to_grid(args.content[n : n + 1], args.patch_size, args.stride)
    norms = filters.detach().flatten(1).norm(dim=1)
    scores = F.conv2d(content.detach(), filters.detach(), stride=args.stride) / (norms + NORM_EPS)[None, :, None, None]
    controls = controls or {}
    if "content_labels" in controls:  # another label's patches never win
        same = controls["bank_labels"][None, :, None, None] == controls["content_labels"][n][None, None]
        scores = scores.masked_fill(~same, float("-inf"))
    if controls.get("temporal_weight", 0.0) != 0.0:  # the previous patch's bonus: W * ||content patch||
        k, s = args.patch_size, args.stride
        c_norm = F.unfold(content.detach(), k, stride=s).norm(dim=1).view(scores.shape[2:])
        bonus = (controls["temporal_weight"] * c_norm).to(scores.dtype)
        scores = scores.scatter_add(1, controls["previous"][n][None, None], bonus[None, None])
    return scores.argmax(dim=1)[0]  # (H', W'): the first maximum, the lowest index on ties


def match_patches(content: torch.Tensor, style: StyleArg, patch_size: int = 3, stride: int = 1,
                  content_labels=None, style_labels=None, previous=None, temporal_weight: float = 0.0) -> torch.Tensor:
    """Reference of :func:`styleswap_ext.match_patches` (same arguments, controls included, and result)."""
    from .swap import match_controls  # the same checks and per-patch labels as the op

    args = prepare(content, style, patch_size, stride)
    check_finite(args)
    controls = match_controls(args.content, args.styles, args.patch_size, args.stride, content_labels=content_labels,
                              style_labels=style_labels, previous=previous, temporal_weight=temporal_weight)
    idx = torch.stack([_match(args, n, _bank(args, n), controls) for n in range(args.content.shape[0])])
    return idx[0] if args.squeeze else idx


def _rebuild(args: SwapArgs, filters: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Paste the chosen patches with a transposed conv and average the overlaps: (1, C, H, W)."""
    s = args.stride
    h, w = args.content.shape[-2:]
    one_hot = F.one_hot(idx, filters.shape[0]).permute(2, 0, 1)[None].to(filters.dtype)
    pasted = F.conv_transpose2d(one_hot, filters, stride=s)
    count = F.conv_transpose2d(torch.ones_like(one_hot[:, :1]), torch.ones_like(filters[:1, :1]), stride=s)
    return (pasted / count)[..., :h, :w]


def style_swap(content: torch.Tensor, style: StyleArg, patch_size: int = 3, stride: int = 1) -> torch.Tensor:
    """Reference of :func:`styleswap_ext.style_swap`: conv2d -> argmax -> one-hot -> conv_transpose2d -> / count.

    Differentiable with respect to the style through the transposed convolution (autograd).
    """
    return rebuild(content, style, None, patch_size, stride)


def rebuild(content: torch.Tensor, style: StyleArg, indices, patch_size: int = 3, stride: int = 1) -> torch.Tensor:
    """The second half of the reference: features rebuilt from given ``indices`` (as returned by
    ``match_patches``; None = match here). Lets tests compare rebuilds for the same choice."""
    args = prepare(content, style, patch_size, stride)
    check_finite(args)
    if indices is not None and args.squeeze:
        indices = indices[None]
    outs = []
    for n in range(args.content.shape[0]):
        filters = _bank(args, n)
        idx = _match(args, n, filters) if indices is None else indices[n]
        outs.append(_rebuild(args, filters, idx))
    out = torch.cat(outs)
    return out[0] if args.squeeze else out
