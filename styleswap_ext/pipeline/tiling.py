"""Run the encoder and the decoder over overlapping tiles, so that memory stays bounded at any size.

Geometry (computed from the layers by :func:`context`, never guessed)
---------------------------------------------------------------------
A stack of 3x3 convolutions, pointwise layers, max-pools and nearest upsamplings maps an input
*block* (the input pixels that correspond to one output unit: 4x4 image px -> 1 relu3_1 feature
for the encoder, 1 feature -> 4x4 px for the decoder) to outputs that depend on the input only
within a window around that block. :func:`context` walks the layers backwards and returns how far
that window reaches beyond the block on each side:

* VGG-19 to relu3_1: 10 px left/top and 10 px right/bottom of each 4 px block (receptive field
  24 px). The halo is rounded up to a multiple of the downsampling (4), so every tile starts at a
  coordinate aligned to the pooling grid: **12 px**;
* the decoder: 3 features on each side.

A tile is the output region ``[a, b)`` plus the halo on each side, clipped to the image. Inside
the image the halo supplies the real neighbours, so the tile's own (zero or reflection) padding
only corrupts values in the halo, which are cropped away; at the true image border the tile's
edge *is* the image's edge, so the padding is the same as in the untiled run. Hence the tiled
encoder equals the untiled one up to float rounding (the convolution algorithms sum in another
order on other shapes).

Instance normalisation (decoder)
--------------------------------
An ``InstanceNorm2d`` normalises with the mean and variance of each channel over the *whole* map,
so per-tile statistics would differ from tile to tile (visible seams) and from the untiled run.
:func:`decode_tiled` therefore computes the global statistics first: for the i-th norm layer it
runs every tile up to that layer, normalising the earlier norm layers with their already known
global statistics, and sums each channel's values and squares over the tile interiors (float64);
then the last pass applies all global statistics per tile. With n norm layers that is n partial
passes plus one full pass (the partial ones stop early, so about 3x the work of one untiled pass
for our decoder); the result equals the untiled decoder up to float rounding.
"""

from __future__ import annotations

import math
import sys
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import nn
from tqdm.auto import tqdm

from ..models import cpu_layers

__all__ = ["context", "encoder_halo", "decoder_halo", "tile_ranges", "encode_tiled", "decode_tiled",
           "default_tile_size", "encode", "decode"]

_POINTWISE = (nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Identity, nn.InstanceNorm2d, nn.BatchNorm2d)


def _pair(v) -> int:
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            raise ValueError(f"tiling needs square kernels/strides/paddings, got {v}")
        return int(v[0])
    return int(v)


def context(layers: Sequence[nn.Module]) -> Tuple[float, int, int]:
    """-> (scale, before, after) of a layer stack, along one axis.

    ``scale`` = output px per input px (1/4 for VGG to relu3_1, 4 for the decoder). The output
    values of one input block (``max(1, 1/scale)`` input px) depend on the input from ``before`` px
    before that block to ``after`` px after it (negative values mean less than the block).
    """
    layers = list(layers)
    up = 1
    down = 1
    for m in layers:
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            down *= _pair(m.stride)
        elif isinstance(m, nn.Conv2d):
            down *= _pair(m.stride)
        elif isinstance(m, nn.Upsample):
            up *= int(m.scale_factor if not isinstance(m.scale_factor, tuple) else _pair(m.scale_factor))
    if up > 1 and down > 1:
        raise ValueError("tiling supports stacks that only downsample or only upsample")
    # the output units belonging to input block [0, in_block): [0, out_block)
    in_block = down if down > 1 else 1
    out_block = up if up > 1 else 1
    lo, hi = 0, out_block - 1
    for m in reversed(layers):
        if isinstance(m, nn.Conv2d):
            k, s, p, d = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding), _pair(m.dilation)
            if m.padding_mode != "zeros" and p:
                pass  # same reach as zero padding
            lo, hi = s * lo - p, s * hi - p + d * (k - 1)
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            k, s, p = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding)
            if getattr(m, "ceil_mode", False):
                raise ValueError("tiling does not support ceil-mode pooling")
            lo, hi = s * lo - p, s * hi - p + k - 1
        elif isinstance(m, (nn.ReflectionPad2d, nn.ZeroPad2d, nn.ReplicationPad2d, nn.ConstantPad2d)):
            pads = m.padding if isinstance(m.padding, (tuple, list)) else (m.padding,) * 4
            lo, hi = lo - int(pads[0]), hi - int(pads[0])
        elif isinstance(m, nn.Upsample):
            if m.mode != "nearest":
                raise ValueError(f"tiling supports nearest upsampling only, got {m.mode!r}")
            f = int(m.scale_factor if not isinstance(m.scale_factor, tuple) else _pair(m.scale_factor))
            lo, hi = lo // f, hi // f
        elif isinstance(m, _POINTWISE):
            pass
        else:
            raise ValueError(f"tiling does not know the geometry of {type(m).__name__}")
    return out_block / in_block, -lo, hi - (in_block - 1)


def _halo(layers: Sequence[nn.Module], align: int) -> int:
    _, before, after = context(layers)
    reach = max(before, after, 0)
    return int(math.ceil(reach / align) * align)


def encoder_halo(encoder) -> int:
    """Halo in image px (a multiple of the downsampling): 12 for VGG-19 to relu3_1."""
    return _halo(list(encoder.features), encoder.downsampling)


def decoder_halo(decoder) -> int:
    """Halo in feature px: 3 for :class:`~styleswap_ext.models.Decoder`."""
    return _halo(list(decoder.body), 1)


def min_tile_size(encoder) -> int:
    """Smallest tile side (image px) the CLI accepts: 8 encoder halos, 96 px for VGG-19 to relu3_1.
    A tile of t px is encoded from (t + 2·halo)² px, so the encoder's work grows as (1 + 2·halo/t)²
    (1.56x at 8 halos, 49x for a 1 px tile: one 4 px feature from 28 x 28 px), and the decoder's
    statistics passes multiply the per-tile overhead. Measured, a 192 px encode + decode on the
    2-core CPU: 1.4 s untiled, 3.1 s in 96 px tiles, 8.2 s in 48 px tiles, > 10 min in 1 px tiles."""
    return 8 * encoder_halo(encoder)


def tile_ranges(n: int, tile: int) -> List[Tuple[int, int]]:
    """``[0, n)`` split into consecutive ranges of ``tile`` (the last one may be shorter)."""
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    return [(a, min(a + tile, n)) for a in range(0, n, tile)]


def default_tile_size(device) -> int:
    """Tile side in image px used when the caller does not choose one.

    CPU: 1024 px (encoder/decoder peak below ~1.5 GiB per tile). CUDA: 4096 px on cards with at
    least 40 GiB (a 4096 px image runs untiled: faster, ~20 GiB), else 2048 px.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        total = torch.cuda.get_device_properties(dev).total_memory
        return 4096 if total >= 40 * 2**30 else 2048
    return 1024


def _bar(total: int, desc: str, progress: bool):
    return tqdm(total=total, desc=desc, unit="tile", file=sys.stderr, disable=not progress or total <= 1,
                dynamic_ncols=True, leave=False)


# --- encoder ---------------------------------------------------------------------------------------


@torch.no_grad()
def encode_tiled(encoder, image: torch.Tensor, tile_size: int, progress: bool = False) -> torch.Tensor:
    """``encoder(image)`` computed on tiles of ``tile_size`` image px (rounded to the downsampling).

    Exact up to float rounding (see the module docstring). ``image``: ``(N, 3, H, W)``.
    """
    step = encoder.downsampling
    halo = encoder_halo(encoder)
    n, _, H, W = image.shape
    fh, fw = H // step, W // step
    tf = max(1, tile_size // step)  # tile side in features
    rows, cols = tile_ranges(fh, tf), tile_ranges(fw, tf)
    out = None
    bar = _bar(len(rows) * len(cols), "encoding", progress)
    for a0, a1 in rows:
        y0, y1 = max(0, a0 * step - halo), min(H, a1 * step + halo)
        for b0, b1 in cols:
            x0, x1 = max(0, b0 * step - halo), min(W, b1 * step + halo)
            f = encoder(image[:, :, y0:y1, x0:x1])
            oy, ox = (a0 * step - y0) // step, (b0 * step - x0) // step
            f = f[:, :, oy:oy + a1 - a0, ox:ox + b1 - b0]
            if out is None:
                out = f.new_empty(n, f.shape[1], fh, fw)
            out[:, :, a0:a1, b0:b1] = f
            bar.update(1)
    bar.close()
    return out


def encode(encoder, image: torch.Tensor, tile_size: Optional[int], progress: bool = False) -> torch.Tensor:
    """Untiled when ``tile_size`` is 0/None or the image fits one tile, else :func:`encode_tiled`."""
    if not tile_size or max(image.shape[-2:]) <= tile_size:
        with torch.no_grad():
            return encoder(image)
    return encode_tiled(encoder, image, tile_size, progress)


# --- decoder ---------------------------------------------------------------------------------------


def _norm_layers(layers: Sequence[nn.Module]) -> List[int]:
    return [i for i, m in enumerate(layers) if isinstance(m, nn.InstanceNorm2d)]


def _apply_norm(m: nn.InstanceNorm2d, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    y = (x - mean[:, :, None, None]) * torch.rsqrt(var[:, :, None, None] + m.eps)
    if m.affine:
        y = y * m.weight[None, :, None, None] + m.bias[None, :, None, None]
    return y


def _run(layers, x, stats: dict, stop: Optional[int] = None) -> Tuple[torch.Tensor, int]:
    """Layers in order; InstanceNorm i uses ``stats[i]``; stops *before* layer ``stop``.

    -> (activation, upsampling factor reached so far)."""
    scale = 1
    given = x.untyped_storage().data_ptr()  # the caller's tensor: never changed in place
    for i, m in enumerate(layers):
        if i == stop:
            break
        if isinstance(m, nn.InstanceNorm2d):
            mean, var = stats[i]
            x = _apply_norm(m, x, mean.to(x.dtype), var.to(x.dtype))
        else:
            x = cpu_layers.apply(m, x, owned=x.untyped_storage().data_ptr() != given)
            if isinstance(m, nn.Upsample):
                scale *= int(m.scale_factor)
    return x, scale


@torch.no_grad()
def decode_tiled(decoder, features: torch.Tensor, tile_size: int, progress: bool = False,
                 final: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
    """``decoder(features)`` computed on tiles of ``tile_size`` output px, with global
    instance-norm statistics (see the module docstring). ``features``: ``(N, C, h, w)``.

    ``final`` is applied to the stack's output (default: ``decoder``'s own output activation,
    ``torch.sigmoid`` for :class:`~styleswap_ext.models.Decoder`).
    """
    layers = list(decoder.body)
    final = final or torch.sigmoid
    scale_total, _, _ = context(layers)
    up = int(round(scale_total))
    halo = decoder_halo(decoder)
    n, _, h, w = features.shape
    tf = max(1, tile_size // up)
    tiles = [(r, c) for r in tile_ranges(h, tf) for c in tile_ranges(w, tf)]
    norms = _norm_layers(layers)
    stats: dict = {}

    def crop(r, c):
        (a0, a1), (b0, b1) = r, c
        y0, y1 = max(0, a0 - halo), min(h, a1 + halo)
        x0, x1 = max(0, b0 - halo), min(w, b1 + halo)
        return features[:, :, y0:y1, x0:x1], (a0 - y0, a1 - a0, b0 - x0, b1 - b0)

    bar = _bar(len(tiles) * (len(norms) + 1), "decoding", progress)
    for i in norms:  # global statistics of norm layer i, given those of the earlier ones
        total = total_sq = None
        count = 0
        for r, c in tiles:
            x, (oy, th, ox, tw) = crop(r, c)
            y, s = _run(layers, x, stats, stop=i)
            y = y[:, :, oy * s:(oy + th) * s, ox * s:(ox + tw) * s].double()
            part, part_sq = y.sum(dim=(2, 3)), y.square().sum(dim=(2, 3))
            total = part if total is None else total + part
            total_sq = part_sq if total_sq is None else total_sq + part_sq
            count += y.shape[2] * y.shape[3]
            bar.update(1)
        mean = total / count
        var = (total_sq / count - mean.square()).clamp_min(0)  # biased, as InstanceNorm2d
        stats[i] = (mean, var)
    out = None
    for r, c in tiles:
        x, (oy, th, ox, tw) = crop(r, c)
        y, s = _run(layers, x, stats)
        y = final(y[:, :, oy * s:(oy + th) * s, ox * s:(ox + tw) * s])
        if out is None:
            out = y.new_empty(n, y.shape[1], h * up, w * up)
        out[:, :, r[0] * up:r[1] * up, c[0] * up:c[1] * up] = y
        bar.update(1)
    bar.close()
    return out


def decode(decoder, features: torch.Tensor, tile_size: Optional[int], progress: bool = False) -> torch.Tensor:
    """Untiled when ``tile_size`` is 0/None or the output fits one tile, else :func:`decode_tiled`."""
    up = 4
    if hasattr(decoder, "body"):
        up = int(round(context(list(decoder.body))[0]))
    if not tile_size or max(features.shape[-2:]) * up <= tile_size or not hasattr(decoder, "body"):
        with torch.no_grad():
            return decoder(features)
    return decode_tiled(decoder, features, tile_size, progress)
