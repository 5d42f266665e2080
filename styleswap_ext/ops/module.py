"""nn.Module wrapper of the style-swap operator."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .checks import StyleArg, check_geometry
from .swap import check_search, style_swap


class StyleSwap(nn.Module):
    """``StyleSwap(patch_size, stride)(content, style)`` == ``style_swap(content, style, patch_size, stride)``
    (and ``search``, ``probes``, ``seed`` passed on the same way)."""

    def __init__(self, patch_size: int = 3, stride: int = 1, *, search: str = "exact",
                 probes: Optional[int] = None, seed: Optional[int] = None):
        super().__init__()
        self.patch_size, self.stride = check_geometry(patch_size, stride)
        check_search(search, probes, seed)
        self.search, self.probes, self.seed = search, probes, seed

    def forward(self, content: torch.Tensor, style: StyleArg, content_labels=None, style_labels=None) -> torch.Tensor:
        """``content_labels`` / ``style_labels``: the region controls of :func:`~styleswap_ext.style_swap`."""
        return style_swap(content, style, self.patch_size, self.stride, content_labels, style_labels,
                          search=self.search, probes=self.probes, seed=self.seed)

    def extra_repr(self) -> str:
        extra = "" if self.search == "exact" else f", search='approximate', probes={self.probes}, seed={self.seed}"
        return f"patch_size={self.patch_size}, stride={self.stride}" + extra
