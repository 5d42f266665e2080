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
import sys
from typing import List, Optional, Sequence

import torch
from tqdm.auto import tqdm

from . import swap as ops  # noqa: F401  (loads the styleswap:: ops and their fake kernels)
from .checks import StyleArg, bank_patch_labels, check_geometry, covering_grid, prepare, prepare_styles, real_list
from .._util.text import plural

# With progress=True, contents of more patches than this, or matches of more content x style patch
# pairs than PROGRESS_MIN_PAIRS (the work: ~2 s on a 2-core CPU; a 512 px photo against a 1024 px
# style is 16x that), are matched in row slabs (~2 % each) so that a bar can move; smaller ones take
# one call.
PROGRESS_MIN_PATCHES = 1 << 16
PROGRESS_MIN_PAIRS = 1 << 26
PROGRESS_MIN_SLAB = 8192  # patches per slab at least (keeps every thread / SM busy)


class PatchBank:
    """Normalised style patches of ``style`` (see :func:`styleswap_ext.match_patches` for the forms
    ``style`` may take), ready to be matched against any number of contents.

    Args:
        style: ``(C, Hs, Ws)``, ``(1 | N, C, Hs, Ws)`` or a list of such tensors (one bank).
        patch_size, stride: as for :func:`styleswap_ext.style_swap`.
        weights: optional, one finite weight > 0 per style tensor (scales its scores). Only their
            ratios matter: each is divided by the largest before it reaches the float32 bank, so
            ``[1e38, 1]`` is ``[1, 1e-38]``; a ratio that is 0 in float32 (< ~1.4e-45) is an error.
        search, probes, seed: as for :func:`styleswap_ext.match_patches`; ``"approximate"`` builds the
            search's index (clusters of the style patches on their principal channels) here, once,
            instead of the bank (``patches`` is then None: the search reads the styles). The exact
            search on the CPU at stride 1 needs no bank either (``patches`` None: it reads the styles'
            maps; ``styleswap_ext.ops.matches_from_maps``).
        style_labels: optional, one ``(Hs, Ws)`` integer label map per style tensor (a tensor for one,
            a list for a bank): then :meth:`match` / :meth:`swap` take ``content_labels`` and a content
            patch only takes style patches of its label (see :func:`styleswap_ext.match_patches`).
            The bank rows' labels are kept in ``bank_labels`` ((num_patches,) int64); the bank itself is
            one for all labels (with ``search="approximate"`` its index clusters each label apart).
    """

    def __init__(self, style: StyleArg, patch_size: int = 3, stride: int = 1,
                 weights: Optional[Sequence[float]] = None, style_labels=None, *, search: str = "exact",
                 probes: Optional[int] = None, seed: Optional[int] = None):
        self.patch_size, self.stride = check_geometry(patch_size, stride)
        self.search = search
        self._search = ops.check_search(search, probes, seed)
        self.styles: List[torch.Tensor] = prepare_styles(style, self.patch_size)
        self.weights = self._check_weights(weights, len(self.styles))
        self.num_patches = ops.num_style_patches(self.styles, self.patch_size, self.stride)
        self.bank_labels: Optional[torch.Tensor] = None
        if style_labels is not None:
            self.bank_labels = bank_patch_labels(style_labels, self.styles, self.patch_size, self.stride)
        with torch.no_grad():
            if self._search.approximate:
                # its index (a reduced, clustered copy of the bank), built once; the search reads the
                # full patches from the styles themselves, so there is no full bank (patches is None)
                self.patches = None
                self.inv_norm = ops.bank_inv_norm(self.styles, self.patch_size, self.stride, self.weights)
                self.index = ops.build_index(self.styles, self.inv_norm, self.patch_size, self.stride,
                                             self._search.seed, self.weights, self.bank_labels)
            elif ops.matches_from_maps(self.device, self.stride):
                # the CPU's exact match reads the styles' maps: only the inverse norms are prepared
                self.patches = None
                self.inv_norm = ops.bank_inv_norm(self.styles, self.patch_size, self.stride, self.weights)
                self.index = None
            else:
                self.patches, self.inv_norm = torch.ops.styleswap.prepare_bank(
                    [st.detach() for st in self.styles], self.patch_size, self.stride, self.weights)
                self.index = None

    @staticmethod
    def _check_weights(weights, n: int) -> Optional[List[float]]:
        if weights is None:
            return None
        weights = real_list("weights", weights)
        if len(weights) != n:
            raise ValueError(f"got {plural(len(weights), 'weight')} for {plural(n, 'style tensor')}")
        if any(not (math.isfinite(w) and w > 0) for w in weights):
            raise ValueError(f"weights must be finite and > 0, got {weights}")
        return weights

    @property
    def device(self) -> torch.device:
        return self.styles[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.styles[0].dtype

    def match(self, content: torch.Tensor, progress: bool = False, content_labels=None, previous=None,
              temporal_weight: float = 0.0) -> torch.Tensor:
        """Indices of the chosen style patches, as :func:`styleswap_ext.match_patches`.

        ``progress=True`` shows a bar (stderr) for large contents: they are then matched in slabs of
        patch-grid rows, which gives the same indices (each slab is cut where its grid rows start;
        with the approximate search each slab carries the grid rows its refinement reads).
        ``content_labels`` (a bank built with ``style_labels``), ``previous`` and ``temporal_weight``:
        the controls of :func:`styleswap_ext.match_patches`; for a video, ``previous`` is the last
        frame's ``match`` result.
        """
        args = prepare(content, self.styles, self.patch_size, self.stride)
        idx = self._match(args.content, progress, self._controls(args.content, content_labels, previous,
                                                                 temporal_weight))
        return idx[0] if args.squeeze else idx

    def swap(self, content: torch.Tensor, progress: bool = False, content_labels=None, previous=None,
             temporal_weight: float = 0.0, return_indices: bool = False):
        """Style-swapped ``content``, as :func:`styleswap_ext.style_swap` (same autograd; same controls
        as :meth:`match`). ``return_indices=True``: ``(swapped, indices)`` (a video's next ``previous``)."""
        args = prepare(content, self.styles, self.patch_size, self.stride)
        idx = self._match(args.content, progress, self._controls(args.content, content_labels, previous,
                                                                 temporal_weight))
        h, w = args.content.shape[-2:]
        out = torch.ops.styleswap.swap_gather(idx, self.styles, self.patch_size, self.stride, h, w)
        if return_indices:
            return (out[0], idx[0]) if args.squeeze else (out, idx)
        return out[0] if args.squeeze else out

    def _controls(self, content: torch.Tensor, content_labels, previous, temporal_weight) -> dict:
        if content_labels is not None and self.bank_labels is None:
            raise ValueError("content_labels needs a bank built with style_labels (PatchBank(..., style_labels=...))")
        return ops.match_controls(content, self.styles, self.patch_size, self.stride,
                                  content_labels=content_labels, bank_labels=self.bank_labels,
                                  previous=previous, temporal_weight=temporal_weight)

    def _match(self, content: torch.Tensor, progress: bool, controls: Optional[dict] = None) -> torch.Tensor:
        k, s = self.patch_size, self.stride
        h, w = content.shape[-2:]
        grid_h, grid_w = covering_grid(h, k, s), covering_grid(w, k, s)
        controls = controls or {}

        def call(c, i0=0, i1=grid_h):  # grid rows [i0, i1) of the per-patch controls go with slab c
            kw = {key: (v[:, i0:i1] if key in ("content_labels", "previous") else v) for key, v in controls.items()}
            if self.index is not None:
                return ops.match_ivf(c, self.styles, self.inv_norm, self.index, k, s, self._search.probes, **kw)
            if self.patches is None:
                return ops.match_styles(c, self.styles, self.inv_norm, k, s, **kw)
            return torch.ops.styleswap.match_bank(c, self.patches, self.inv_norm, self.num_patches, k, s, **kw)

        n_c = content.shape[0] * grid_h * grid_w
        if not progress or (n_c <= PROGRESS_MIN_PATCHES and n_c * self.num_patches <= PROGRESS_MIN_PAIRS) or grid_h < 2:
            return call(content)
        # Slab of grid rows [i0, i1) = content rows [i0*s, (i1-1)*s + k); the last slab runs to the
        # bottom edge, so its covering grid takes the same replicate-padded extra row as the whole.
        # A last slab shorter than a patch (only that padded row) is merged into the one before.
        step = max(math.ceil(grid_h / 50), math.ceil(PROGRESS_MIN_SLAB / grid_w))
        bounds = list(range(0, grid_h, step)) + [grid_h]
        if len(bounds) > 2 and h - bounds[-2] * s < k:
            del bounds[-2]
        # The approximate search's refinement reads the neighbours' choices, REFINE grid rows away at
        # most: each slab is matched with that many rows more on each side, which are then dropped.
        halo = ops.REFINE if self.index is not None else 0
        parts = []
        with tqdm(total=grid_h, desc="matching", unit="row", file=sys.stderr, dynamic_ncols=True, leave=False) as bar:
            for i0, i1 in zip(bounds[:-1], bounds[1:]):
                a0, a1 = max(0, i0 - halo), min(grid_h, i1 + halo)
                bottom = h if a1 == grid_h else (a1 - 1) * s + k
                parts.append(call(content[:, :, a0 * s:bottom], a0, a1)[:, i0 - a0:i1 - a0])
                bar.update(i1 - i0)
        return torch.cat(parts, 1)

    def __repr__(self) -> str:
        shapes = ", ".join("x".join(map(str, st.shape)) for st in self.styles)
        return (f"PatchBank({len(self.styles)} style tensor(s) [{shapes}], {self.num_patches} patches, "
                f"patch_size={self.patch_size}, stride={self.stride}, weights={self.weights}, "
                + (f"search='approximate', probes={self._search.probes}, seed={self._search.seed}, "
                   if self._search.approximate else "") +
                f"{self.dtype}, {self.device})")
