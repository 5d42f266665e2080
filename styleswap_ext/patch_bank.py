"""The normalised style patch bank, prepared once and matched against many contents.

``style_swap(content, style)`` builds the bank of style patches and their inverse norms inside
every call. When one style serves many contents (the frames of a video, a collection of images),
:class:`PatchBank` builds it once::

    bank = PatchBank(style_features, patch_size=3, stride=1)
    for frame_features in frames:
        out = bank.swap(frame_features)   # == style_swap(frame_features, style_features, 3, 1)

The bank lives on the styles' device in the layout that device's kernel wants (on CUDA the rows
are padded for the tensor-core tiles; see ``csrc/styleswap.cpp``). It keeps a reference to the
style tensors, which the gather step reads, so gradients still flow to them through
:meth:`PatchBank.swap`.

Weights: ``PatchBank([s1, s2], weights=[1.0, 0.5])`` multiplies style i's normalised
cross-correlations by ``weights[i]`` before the argmax -- the way several styles are mixed in one
bank (``styleswap stylize --style-weights``).
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch

from . import ops  # noqa: F401  (loads the styleswap:: ops and their fake kernels)
from ._inputs import StyleArg, check_geometry, prepare, prepare_styles


def _inner_grid(n: int, k: int, s: int) -> int:
    return (n - k) // s + 1


class PatchBank:
    """Normalised style patches of ``style`` (see :func:`styleswap_ext.match_patches` for the forms
    ``style`` may take), ready to be matched against any number of contents.

    Args:
        style: ``(C, Hs, Ws)``, ``(1 | N, C, Hs, Ws)`` or a list of such tensors (one bank).
        patch_size, stride: as for :func:`styleswap_ext.style_swap`.
        weights: optional, one finite weight > 0 per style tensor (scales its scores).
    """

    def __init__(self, style: StyleArg, patch_size: int = 3, stride: int = 1,
                 weights: Optional[Sequence[float]] = None):
        self.patch_size, self.stride = check_geometry(patch_size, stride)
        self.styles: List[torch.Tensor] = prepare_styles(style, self.patch_size)
        self.weights = self._check_weights(weights, len(self.styles))
        self.num_patches = sum(_inner_grid(st.shape[2], self.patch_size, self.stride)
                               * _inner_grid(st.shape[3], self.patch_size, self.stride) for st in self.styles)
        with torch.no_grad():
            self.patches, self.inv_norm = torch.ops.styleswap.prepare_bank(
                [st.detach() for st in self.styles], self.patch_size, self.stride, self.weights)

    @staticmethod
    def _check_weights(weights, n: int) -> Optional[List[float]]:
        if weights is None:
            return None
        weights = [float(w) for w in weights]
        if len(weights) != n:
            raise ValueError(f"got {len(weights)} weights for {n} style tensors")
        if any(not (math.isfinite(w) and w > 0) for w in weights):
            raise ValueError(f"weights must be finite and > 0, got {weights}")
        return weights

    @property
    def device(self) -> torch.device:
        return self.styles[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.styles[0].dtype

    def match(self, content: torch.Tensor) -> torch.Tensor:
        """Indices of the chosen style patches, as :func:`styleswap_ext.match_patches`."""
        args = prepare(content, self.styles, self.patch_size, self.stride)
        idx = torch.ops.styleswap.match_bank(args.content, self.patches, self.inv_norm, self.num_patches,
                                             self.patch_size, self.stride)
        return idx[0] if args.squeeze else idx

    def swap(self, content: torch.Tensor) -> torch.Tensor:
        """Style-swapped ``content``, as :func:`styleswap_ext.style_swap` (same autograd)."""
        args = prepare(content, self.styles, self.patch_size, self.stride)
        idx = torch.ops.styleswap.match_bank(args.content, self.patches, self.inv_norm, self.num_patches,
                                             self.patch_size, self.stride)
        h, w = args.content.shape[-2:]
        out = torch.ops.styleswap.swap_gather(idx, self.styles, self.patch_size, self.stride, h, w)
        return out[0] if args.squeeze else out

    def __repr__(self) -> str:
        shapes = ", ".join("x".join(map(str, st.shape)) for st in self.styles)
        return (f"PatchBank({len(self.styles)} style tensor(s) [{shapes}], {self.num_patches} patches, "
                f"patch_size={self.patch_size}, stride={self.stride}, weights={self.weights}, "
                f"{self.dtype}, {self.device})")
