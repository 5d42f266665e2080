"""nn.Module wrapper of the style-swap operator."""

from __future__ import annotations

import torch
from torch import nn

from ._inputs import StyleArg, check_geometry
from .ops import style_swap


class StyleSwap(nn.Module):
    """``StyleSwap(patch_size, stride)(content, style)`` == ``style_swap(content, style, patch_size, stride)``."""

    def __init__(self, patch_size: int = 3, stride: int = 1):
        super().__init__()
        self.patch_size, self.stride = check_geometry(patch_size, stride)

    def forward(self, content: torch.Tensor, style: StyleArg, content_labels=None, style_labels=None) -> torch.Tensor:
        """``content_labels`` / ``style_labels``: the region controls of :func:`~styleswap_ext.style_swap`."""
        return style_swap(content, style, self.patch_size, self.stride, content_labels, style_labels)

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}, stride={self.stride}"
