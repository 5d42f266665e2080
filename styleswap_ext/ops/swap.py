"""The fused style-swap operator: Python API over the compiled ``styleswap::`` ops.

Loading this module loads the C++ library (``styleswap_ext._C``, which registers the op schemas and
the CPU/CUDA kernels) and adds what torch needs around them:

* fake (meta) kernels, so the ops trace under ``torch.compile`` and FakeTensor;
* autograd for ``swap_gather``.  Gradients:

  - d/d(content) = 0. The content only chooses *which* style patches are used; the indices are
    piecewise constant in it, so no gradient flows to the content (its ``.grad`` stays None).
  - d/d(style): given the indices the output is linear in the style features (each output element
    is a mean of style elements), so the gradient is the transpose of the gather: the incoming
    gradient, divided by each position's overlap count, scatter-added into the chosen style
    patches (``swap_gather_backward``). The normalisation only enters the argmax, so it does not
    appear in the gradient.

``styleswap::style_swap`` is a CompositeImplicitAutograd op (match_patches then swap_gather), so
autograd and ``torch.compile`` see those two ops.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

from .. import _C  # noqa: F401  (registers the styleswap:: ops)
from .._util import choices as _choices
from .checks import StyleArg, _check_int, bank_patch_labels, check_labels_covered, check_previous, check_temporal_weight, content_patch_labels, covering_grid, prepare

CUDA_BUILT: bool = bool(_C.cuda_built)


# --- fake kernels -------------------------------------------------------------------------------


@torch.library.register_fake("styleswap::match_patches")
def _match_patches_fake(content, styles, patch_size, stride):
    n, _, h, w = content.shape
    return content.new_empty((n, covering_grid(h, patch_size, stride), covering_grid(w, patch_size, stride)),
                             dtype=torch.long)


def num_style_patches(styles, k: int, s: int) -> int:
    """Patches of a bank of (., C, Hs, Ws) styles: each style's (Hs-k)//s+1 x (Ws-k)//s+1 grid (no padding)."""
    return sum(((st.shape[2] - k) // s + 1) * ((st.shape[3] - k) // s + 1) for st in styles)


def bank_layout(styles, patch_size: int, stride: int):
    """Shapes and dtypes of ``prepare_bank``'s outputs, as each backend lays them out:
    ``((B, R, Dp), dtype, (B, R), inv_dtype)``. Rows j < n_s hold patch j; R >= n_s and
    Dp >= C*k*k are padding (zeros). The CPU matches in float32 (float64 for float64) with no
    padding; CUDA keeps the input dtype and pads rows to a multiple of 256, Dp to a multiple of 32
    (float64: no padding) for its tensor-core tiles (csrc/cuda/match_cuda.cu)."""
    k, s = patch_size, stride
    n_s = num_style_patches(styles, k, s)
    batch = max(st.shape[0] for st in styles)
    dim = styles[0].shape[1] * k * k
    dtype = styles[0].dtype
    if styles[0].device.type == "cuda":
        rows, row_len = (n_s, dim) if dtype == torch.float64 else (-(-n_s // 256) * 256, -(-dim // 32) * 32)
    else:
        dtype = torch.float64 if dtype == torch.float64 else torch.float32
        rows, row_len = n_s, dim
    inv_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    return (batch, rows, row_len), dtype, (batch, rows), inv_dtype


@torch.library.register_fake("styleswap::prepare_bank")
def _prepare_bank_fake(styles, patch_size, stride, weights=None):
    shape, dtype, inv_shape, inv_dtype = bank_layout(styles, patch_size, stride)
    return styles[0].new_empty(shape, dtype=dtype), styles[0].new_empty(inv_shape, dtype=inv_dtype)


@torch.library.register_fake("styleswap::match_bank")
def _match_bank_fake(content, patches, inv_norm, num_patches, patch_size, stride, content_labels=None,
                     bank_labels=None, previous=None, temporal_weight=0.0):
    n, _, h, w = content.shape
    return content.new_empty((n, covering_grid(h, patch_size, stride), covering_grid(w, patch_size, stride)),
                             dtype=torch.long)


@torch.library.register_fake("styleswap::swap_gather")
def _swap_gather_fake(indices, styles, patch_size, stride, height, width):
    return styles[0].new_empty((indices.shape[0], styles[0].shape[1], height, width))


@torch.library.register_fake("styleswap::swap_gather_backward")
def _swap_gather_backward_fake(grad, indices, styles, patch_size, stride):
    return [torch.empty_like(st, memory_format=torch.contiguous_format) for st in styles]


def _approx_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.library.register_fake("styleswap::ivf_build")
def _ivf_build_fake(patches, inv_norm, num_patches, clusters, seed, groups=None, group_weights=None):
    b, _, dp = patches.shape
    dtype = _approx_dtype(patches.dtype)
    k = sum(clusters)
    return (patches.new_empty((b, num_patches, dp), dtype=dtype), patches.new_empty((b, num_patches), dtype=torch.long),
            patches.new_empty((b, k + 1), dtype=torch.long), patches.new_empty((b, k, dp), dtype=dtype))


@torch.library.register_fake("styleswap::match_ivf")
def _match_ivf_fake(content, styles, inv_norm, basis, sorted, order, offsets, centroids, patch_size, stride, probes,
                    candidates, refine, content_labels=None, bank_labels=None, previous=None, temporal_weight=0.0):
    return _match_bank_fake(content, sorted, inv_norm, 0, patch_size, stride)


torch.library.register_fake("styleswap::match_ivf_aten")(_match_ivf_fake)


@torch.library.register_fake("styleswap::match_styles")
def _match_styles_fake(content, styles, inv_norm, patch_size, stride, content_labels=None, bank_labels=None,
                       previous=None, temporal_weight=0.0):
    return _match_bank_fake(content, None, inv_norm, 0, patch_size, stride)


# --- autograd -----------------------------------------------------------------------------------


def _gather_setup(ctx, inputs, output):
    indices, styles, patch_size, stride, height, width = inputs
    ctx.save_for_backward(indices, *styles)
    ctx.geometry = (patch_size, stride, height, width)


def _gather_backward(ctx, grad):
    indices, *styles = ctx.saved_tensors
    patch_size, stride, _, _ = ctx.geometry
    grads = torch.ops.styleswap.swap_gather_backward(grad.contiguous(), indices, styles, patch_size, stride)
    return None, list(grads), None, None, None, None


torch.library.register_autograd("styleswap::swap_gather", _gather_backward, setup_context=_gather_setup)


def _gather_backward_setup(ctx, inputs, output):
    grad, indices, styles, patch_size, stride = inputs
    ctx.save_for_backward(indices, *styles)
    ctx.geometry = (patch_size, stride, grad.shape[2], grad.shape[3])


def _gather_backward_backward(ctx, grad_grads):
    # swap_gather_backward is linear in `grad`; its transpose is swap_gather itself.
    indices, *styles = ctx.saved_tensors
    patch_size, stride, height, width = ctx.geometry
    grad_grads = [g if g is not None else torch.zeros_like(st) for g, st in zip(grad_grads, styles)]
    out = torch.ops.styleswap.swap_gather(indices, grad_grads, patch_size, stride, height, width)
    return out, None, [None] * len(styles), None, None


torch.library.register_autograd(
    "styleswap::swap_gather_backward", _gather_backward_backward, setup_context=_gather_backward_setup
)


# --- search -------------------------------------------------------------------------------------

SEARCHES = ("exact", "approximate")  # the op's searches; the pipeline adds "auto" (styleswap_ext.pipeline.search_choice)
# The approximate search (docs/approximate_search.md has the measurements behind each number):
# clusters searched per content patch, the reduced feature channels its candidates are ranked on, the
# candidates per content patch scored exactly, and the refinement passes from the neighbours' choices.
DEFAULT_PROBES = 16
REDUCED_CHANNELS = _choices.REDUCED_CHANNELS
CANDIDATES = 8
REFINE = 1
MAX_SEED = 2 ** 63 - 1


class SearchArgs(NamedTuple):
    approximate: bool
    probes: int
    seed: int


def check_search(search, probes=None, seed=None) -> SearchArgs:
    """``search`` is "exact" or "approximate"; ``probes`` (int >= 1, default :data:`DEFAULT_PROBES`) and
    ``seed`` (int >= 0, default 0) tune the approximate search and must stay None with the exact one."""
    if not isinstance(search, str) or search not in SEARCHES:
        raise ValueError(f"search must be one of {', '.join(map(repr, SEARCHES))}, got {search!r}")
    if search == "exact":
        if probes is not None or seed is not None:
            raise ValueError("probes and seed tune search='approximate'; leave them None for the exact search")
        return SearchArgs(False, 0, 0)
    probes = DEFAULT_PROBES if probes is None else _check_int("probes", probes)
    seed = 0 if seed is None else _check_int("seed", seed, minimum=0)
    if seed > MAX_SEED:  # the ops take an int64
        raise ValueError(f"seed must be an int in [0, 2**63 - 1], got {seed}")
    return SearchArgs(True, probes, seed)


def default_clusters(num_patches: int) -> int:
    """K ~ 2 sqrt(n_s) clusters (measured with 16 probes on the reduced channels: closer to the exact
    choice than sqrt(n_s) clusters for the same work, docs/approximate_search.md)."""
    return max(1, min(num_patches, round(2 * math.sqrt(num_patches))))


class IvfIndex(NamedTuple):
    """The approximate search's index of a bank: the basis of its ``REDUCED_CHANNELS`` principal
    feature channels (B, C, dims), then ``styleswap::ivf_build`` over the bank reduced to them (sorted
    rows, order, offsets, centroids)."""
    basis: torch.Tensor
    sorted: torch.Tensor
    order: torch.Tensor
    offsets: torch.Tensor
    centroids: torch.Tensor

    @property
    def clusters(self) -> int:
        return self.centroids.shape[1]


def principal_basis(styles, dims: int) -> torch.Tensor:
    """(B, C, min(dims, C)): the leading eigenvectors of the style pixels' second moment (the sum of
    x x^T over every pixel of every style), one basis per bank batch entry: the channels that carry
    most of the styles' energy, on which <c, s> is ranked cheaply."""
    dtype = _approx_dtype(styles[0].dtype)
    batch = max(st.shape[0] for st in styles)
    c = styles[0].shape[1]
    moment = torch.zeros(batch, c, c, dtype=dtype, device=styles[0].device)
    for st in styles:
        x = st.detach().to(dtype).flatten(2)
        moment += x @ x.transpose(1, 2)
    _, vectors = torch.linalg.eigh(moment)  # ascending eigenvalues
    return vectors.flip(-1)[..., :min(dims, c)].contiguous()


def bank_inv_norm(styles, k: int, s: int, weights=None) -> torch.Tensor:
    """The bank's inv_norm (weight / (||patch|| + 1e-8), with prepare_bank's weight and overflow rules)
    without the bank: a patch's norm is the norm of its pixels' norms, so prepare_bank of the
    one-channel maps of pixel norms gives it at 1 / (C) of the cost. The approximate search and the
    exact match from the style maps (:func:`matches_from_maps`) score with it."""
    dtype = _approx_dtype(styles[0].dtype)
    norms = [_pixel_norms(st.detach(), dtype) for st in styles]
    return torch.ops.styleswap.prepare_bank(norms, k, s, weights)[1]


def matches_from_maps(device: torch.device, stride: int) -> bool:
    """Whether the exact search runs ``match_styles`` (the style maps and :func:`bank_inv_norm`, no
    materialised bank): on the CPU at stride 1, where it is the same match at a fraction of the
    multiply-adds (csrc/cpu/match_styles_cpu.cpp). Elsewhere prepare_bank + match_bank."""
    return _choices.matches_from_maps(device.type, stride)


def match_styles(content: torch.Tensor, styles, inv_norm: torch.Tensor, k: int, s: int, **controls) -> torch.Tensor:
    """Indices of the exact search of ``content`` in ``styles`` from the style maps (``inv_norm``:
    :func:`bank_inv_norm`, with the bank's weights); ``controls``: :func:`match_controls`'."""
    return torch.ops.styleswap.match_styles(content.detach(), [st.detach() for st in styles], inv_norm, k, s,
                                            **controls)


def _pixel_norms(st: torch.Tensor, dtype) -> torch.Tensor:
    """The (B, 1, H, W) norms of a style's pixels in ``dtype``. Where the sum of squares overflows it
    (a finite pixel of norm above ~1.8e19 in float32), they are taken in float64 and capped at the
    dtype's largest value, so that prepare_bank refuses the style as too large for float32 matching,
    as the exact search does, rather than as holding NaN or Inf, which it does not. (Not under
    torch.compile, where the test would be a data-dependent branch: there such a style keeps the
    NaN-or-Inf message.)"""
    norms = torch.linalg.vector_norm(st.to(dtype), dim=1, keepdim=True)
    if dtype == torch.float64 or torch.compiler.is_compiling() or bool(torch.isfinite(norms).all()):
        return norms
    wide = torch.linalg.vector_norm(st.to(torch.float64), dim=1, keepdim=True)
    return torch.where(torch.isfinite(wide), wide.clamp(max=torch.finfo(dtype).max), wide).to(dtype)


def index_groups(styles, k: int, s: int, weights=None, bank_labels=None):
    """How :func:`build_index` splits the bank: one group of rows per style and (with ``bank_labels``) per
    label, each clustered apart with a share of the clusters in proportion to its rows (at least one), and
    the centroids of a style's groups scaled by its weight / the largest (so that clusters of a style
    weighted down rank as low as their patches will score). Returns (groups (n_s,) int64 or None for one
    group, clusters per group, group weights or None)."""
    sizes = [((st.shape[2] - k) // s + 1) * ((st.shape[3] - k) // s + 1) for st in styles]
    n_s = sum(sizes)
    total = default_clusters(n_s)
    if len(styles) == 1 and bank_labels is None:
        return None, [total], None
    device = styles[0].device
    style_of_row = torch.repeat_interleave(torch.arange(len(styles), device=device), torch.tensor(sizes, device=device))
    if bank_labels is None:
        groups, counts, style_of_group = style_of_row, sizes, list(range(len(styles)))
    else:
        labels, label = torch.unique(bank_labels, return_inverse=True)
        keys, groups = torch.unique(style_of_row * labels.numel() + label, return_inverse=True)
        counts = torch.bincount(groups, minlength=keys.numel()).tolist()
        style_of_group = (keys // labels.numel()).tolist()
    clusters = [max(1, min(n, round(total * n / n_s))) for n in counts]
    group_weights = None
    if weights is not None:
        largest = max(weights)
        group_weights = [weights[t] / largest for t in style_of_group]
    return groups, clusters, group_weights


def build_index(styles, inv_norm: torch.Tensor, patch_size: int, stride: int, seed: int = 0, weights=None,
                bank_labels=None) -> IvfIndex:
    """The approximate search's index of the bank of ``styles`` (``inv_norm``: :func:`bank_inv_norm`, with
    the same ``weights``); ``bank_labels`` (the bank rows' labels) makes every cluster hold one label, which
    a search with labels needs (:func:`index_groups`)."""
    k, s = patch_size, stride
    basis = principal_basis(styles, REDUCED_CHANNELS)
    batch = basis.shape[0]
    reduced = [torch.einsum("bchw,bcd->bdhw", st.detach().to(basis.dtype).expand(batch, -1, -1, -1), basis)
               for st in styles]
    rows, _ = torch.ops.styleswap.prepare_bank(reduced, k, s, None)
    n_s = num_style_patches(styles, k, s)
    groups, clusters, group_weights = index_groups(styles, k, s, weights, bank_labels)
    return IvfIndex(basis, *torch.ops.styleswap.ivf_build(rows, inv_norm, n_s, clusters, seed, groups, group_weights))


def match_ivf(content: torch.Tensor, styles, inv_norm: torch.Tensor, index: IvfIndex, k: int, s: int,
              probes: int, **controls) -> torch.Tensor:
    """Indices of the approximate search of ``content`` in ``styles`` with their :class:`IvfIndex`;
    ``controls``: :func:`match_controls`' (the index built with its ``bank_labels``)."""
    return torch.ops.styleswap.match_ivf(content.detach(), [st.detach() for st in styles], inv_norm, *index, k, s,
                                         probes, CANDIDATES, REFINE, **controls)


def _match_approximate(args, search: SearchArgs, controls: dict) -> torch.Tensor:
    k, s = args.patch_size, args.stride
    styles = [st.detach() for st in args.styles]
    inv_norm = bank_inv_norm(styles, k, s)
    index = build_index(styles, inv_norm, k, s, search.seed, bank_labels=controls.get("bank_labels"))
    return match_ivf(args.content, styles, inv_norm, index, k, s, search.probes, **controls)


# --- public API ---------------------------------------------------------------------------------


def match_controls(content: torch.Tensor, styles: list, patch_size: int, stride: int, *,
                   content_labels=None, style_labels=None, bank_labels=None, previous=None,
                   temporal_weight=0.0) -> dict:
    """The optional keyword arguments of ``match_bank`` (csrc/match_controls.h) for a match of the 4-D
    ``content`` against ``styles``, checked here (errors name the argument): per-patch labels from the
    label maps (``bank_labels`` = the bank rows' labels, when already known), ``previous`` with its
    ``temporal_weight``. An empty dict when no control is on."""
    k, s = patch_size, stride
    kw = {}
    # a bank with labels (bank_labels) matched without content_labels is the plain match
    if content_labels is not None and style_labels is None and bank_labels is None:
        raise ValueError("content_labels needs style_labels: a content region takes the style patches of its label")
    if style_labels is not None and content_labels is None:
        raise ValueError("style_labels needs content_labels: a content region takes the style patches of its label")
    if content_labels is not None:
        if bank_labels is None:
            bank_labels = bank_patch_labels(style_labels, styles, k, s)
        kw["content_labels"] = content_patch_labels(content_labels, content, k, s)
        kw["bank_labels"] = bank_labels.to(content.device)
        check_labels_covered(kw["content_labels"], kw["bank_labels"])
    weight = check_temporal_weight(temporal_weight)
    if previous is not None:
        n, _, h, w = content.shape
        shape = (n, covering_grid(h, k, s), covering_grid(w, k, s))
        previous = check_previous(previous, shape, content.device)
        if weight != 0.0:  # weight 0 is the plain match: the op need not see `previous`
            kw["previous"] = previous
            kw["temporal_weight"] = weight
    return kw


def _indices(args, search: SearchArgs, content_labels, style_labels, previous, temporal_weight) -> torch.Tensor:
    """The chosen style patch of every content patch, exact or approximate, with the controls that are on."""
    controls = {}
    if content_labels is not None or style_labels is not None or previous is not None:
        controls = match_controls(args.content, args.styles, args.patch_size, args.stride,
                                  content_labels=content_labels, style_labels=style_labels, previous=previous,
                                  temporal_weight=temporal_weight)
    else:
        check_temporal_weight(temporal_weight)
    if search.approximate:
        return _match_approximate(args, search, controls)
    if not controls:
        return torch.ops.styleswap.match_patches(args.content, args.styles, args.patch_size, args.stride)
    # the match_patches op takes no controls: match_styles, or prepare_bank + match_bank
    if matches_from_maps(args.content.device, args.stride):
        styles = [st.detach() for st in args.styles]
        inv_norm = bank_inv_norm(styles, args.patch_size, args.stride)
        return match_styles(args.content, styles, inv_norm, args.patch_size, args.stride, **controls)
    patches, inv_norm = torch.ops.styleswap.prepare_bank([st.detach() for st in args.styles], args.patch_size,
                                                         args.stride)
    n_s = num_style_patches(args.styles, args.patch_size, args.stride)
    return torch.ops.styleswap.match_bank(args.content.detach(), patches, inv_norm, n_s, args.patch_size, args.stride,
                                          **controls)


def match_patches(content: torch.Tensor, style: StyleArg, patch_size: int = 3, stride: int = 1,
                  content_labels=None, style_labels=None, previous=None, temporal_weight: float = 0.0, *,
                  search: str = "exact", probes: Optional[int] = None, seed: Optional[int] = None) -> torch.Tensor:
    """Index of the best-matching style patch for every content patch position.

    Args:
        content: ``(N, C, H, W)`` or ``(C, H, W)`` features.
        style: ``(C, Hs, Ws)`` or ``(1, C, Hs, Ws)`` shared by the batch, ``(N, C, Hs, Ws)`` one per
            sample, or a list of such tensors whose patches form one bank.
        patch_size: k, the side of the square patches.
        stride: step of both patch grids.
        search: ``"exact"`` (default) or ``"approximate"``: an inverted-file search on the styles'
            64 principal channels (spherical k-means clusters of the reduced style patches,
            ~2 sqrt(n_s) of them; each content patch ranks the patches of its ``probes`` nearest
            clusters, the best few get the exact score, then one pass tries the neighbours' choices).
            Far less work for large maps, a chosen score close to the best
            (docs/approximate_search.md).
        probes: clusters searched per content patch (approximate only; default
            :data:`DEFAULT_PROBES`): more is slower and closer to exact.
        seed: seeds the k-means sample (approximate only; default 0). The indices are the same
            for a given seed and thread count.

    Returns:
        int64 ``(N, H', W')`` (``(H', W')`` for 3-D content) with ``H' = ceil((H - k) / stride) + 1``.
        Style patches are numbered row-major over each style's grid, styles of a bank in order.
        The best patch maximises ``<content patch, style patch> / ||style patch||``; ties go to
        the lowest index.

    Controls (optional, see docs/regions.md and docs/video.md):
        content_labels: ``(H, W)`` or ``(N, H, W)`` integer label map on the content's feature grid, with
            style_labels: one ``(Hs, Ws)`` integer map per style tensor (a tensor, or a list for a bank).
            A content patch only takes style patches of its own label (a patch's label is the label at
            its centre, ``(y0 + (k-1)//2, x0 + (k-1)//2)``, clamped to the map for the replicate-padded
            border patches). A content label that no style patch has is a ValueError naming it.
        previous: indices of the last frame (this function's result for it), with temporal_weight W >= 0
            (NCC units): the previous patch's score gets a bonus of ``W * ||content patch||``, so it is
            kept unless another patch beats its normalised cross-correlation by more than W. 0 = off.
    """
    args = prepare(content, style, patch_size, stride)
    idx = _indices(args, check_search(search, probes, seed), content_labels, style_labels, previous, temporal_weight)
    return idx[0] if args.squeeze else idx


def style_swap(content: torch.Tensor, style: StyleArg, patch_size: int = 3, stride: int = 1,
               content_labels=None, style_labels=None, previous=None, temporal_weight: float = 0.0, *,
               search: str = "exact", probes: Optional[int] = None, seed: Optional[int] = None) -> torch.Tensor:
    """Style swap (Chen & Schmidt 2016): rebuild ``content`` from its best-matching style patches.

    Each k x k content patch is replaced by the style patch of highest normalised
    cross-correlation; overlapping patches are averaged. Accepts the same arguments as
    :func:`match_patches` (``search="approximate"``: see there) and returns features shaped like ``content``.

    When ``(H - k)`` is not a multiple of ``stride``, the content grid takes one more row/column
    of patches that reads past the border by repeating the last row/column (replicate
    padding), so every position is covered by at least one patch.

    Differentiable with respect to ``style`` (see the module docstring); the gradient with
    respect to ``content`` is zero. The controls (labels, ``previous``) are those of
    :func:`match_patches`.
    """
    args = prepare(content, style, patch_size, stride)
    search = check_search(search, probes, seed)
    if search.approximate or content_labels is not None or style_labels is not None or previous is not None:
        # the same gather (and autograd) as the exact op, on the chosen indices
        h, w = args.content.shape[-2:]
        idx = _indices(args, search, content_labels, style_labels, previous, temporal_weight)
        out = torch.ops.styleswap.swap_gather(idx, args.styles, args.patch_size, args.stride, h, w)
    else:
        check_temporal_weight(temporal_weight)
        out = torch.ops.styleswap.style_swap(args.content, args.styles, args.patch_size, args.stride)
    return out[0] if args.squeeze else out
