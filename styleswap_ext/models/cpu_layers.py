"""The encoder's and decoder's layers on the CPU, without autograd: the same results up to float
rounding, in about half the time.

:class:`~styleswap_ext.models.VGGEncoder`, :class:`~styleswap_ext.models.Decoder` and the tiled
decoder (:mod:`styleswap_ext.pipeline.tiling`) run their layers through :func:`run` / :func:`apply`. Where a
layer's input is a float32 CPU tensor and no gradient is wanted (``torch.no_grad()``, or nothing
that requires one), a layer takes the faster kernel below; anywhere else (training, the
optimisation method's encoder, GPUs, other dtypes, ``torch.compile``) it runs as the module itself.

* **3×3 convolutions** with at least :data:`MIN_CHANNELS` input and output channels (stride 1, no
  dilation or groups, zero padding): NNPACK's Winograd kernels (``torch._nnpack_spatial_convolution``,
  part of PyTorch's CPU builds), which do fewer multiplications than the direct/GEMM convolution
  oneDNN runs for a batch of one (PyTorch picks NNPACK by itself only for batches of 16 or more).
  The first encoder layer (3 input channels) and the decoder's last (3 outputs) stay with oneDNN:
  there NNPACK is slower. Float error: 3e-6 of the largest relu3_1 value against float64, where
  oneDNN's is 1e-6 (BENCHMARKS.md, "Encoder and decoder on the CPU", has the measurements).
* **ReLU** in place, on a tensor this run made (never on the caller's input).
* **2×2 max-pooling, stride 2**: the larger of two strided views, twice; ``max_pool2d`` on the CPU
  also computes the argmax indices and took 5× longer. The same values (a maximum is exact).
"""

from __future__ import annotations

import contextlib
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["apply", "run", "fast_path", "reference", "MIN_CHANNELS"]

# NNPACK for convolutions with at least this many input and output channels (measured: 3 -> 64 and
# 64 -> 3 are faster in oneDNN; 64 -> 64 and up ~2x faster in NNPACK).
MIN_CHANNELS = 16
# Input elements per NNPACK call: a larger input is convolved in strips of rows. NNPACK's workspace
# (the Winograd transforms, kept by PyTorch per thread for the life of the process) is ~3.6x the
# input of the largest call: 690 MB after one 64-channel 1024 x 768 layer, ~230 MB with strips of
# 2^24 elements, which took the same time (strips of 2^22 were 1.3x slower).
MAX_CALL_ELEMENTS = 1 << 24

_nnpack = None  # whether NNPACK is usable: torch._nnpack_available() also initialises it, once
_enabled = True


@contextlib.contextmanager
def reference():
    """Inside, every layer runs as its module (the path before this file existed): for comparisons
    and benchmarks of the two paths in one process."""
    global _enabled
    old, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = old


def _nnpack_ready() -> bool:
    global _nnpack
    if _nnpack is None:
        try:
            _nnpack = bool(torch._nnpack_available())
        except (AttributeError, RuntimeError):
            _nnpack = False
    return _nnpack


def fast_path(m: nn.Module, x: torch.Tensor) -> bool:
    """Whether layer ``m`` may take the fast CPU kernel on ``x``: a float32 CPU tensor, no gradient
    wanted, not while ``torch.compile`` traces."""
    if not _enabled or x.device.type != "cpu" or x.dtype != torch.float32 or torch.compiler.is_compiling():
        return False
    if not torch.is_grad_enabled():
        return True
    return not x.requires_grad and not any(p.requires_grad for p in m.parameters(recurse=False))


def _nnpack_conv(m: nn.Conv2d) -> bool:
    return (m.kernel_size == (3, 3) and m.stride == (1, 1) and m.dilation == (1, 1) and m.groups == 1
            and m.padding_mode == "zeros" and isinstance(m.padding, tuple) and m.padding[0] == m.padding[1]
            and min(m.in_channels, m.out_channels) >= MIN_CHANNELS and _nnpack_ready())


def _nnpack_strips(x: torch.Tensor, weight: torch.Tensor, bias, pad: int) -> torch.Tensor:
    """A 3x3, stride-1 convolution with zero padding ``pad`` by NNPACK, in strips of output rows when
    the input has more than :data:`MAX_CALL_ELEMENTS` elements per image."""
    n, c, h, w = x.shape
    rows = max(1, MAX_CALL_ELEMENTS // (c * (w + 2 * pad)))
    out_h = h + 2 * pad - 2
    if n > 1 or rows >= out_h:
        return torch._nnpack_spatial_convolution(x, weight, bias, [pad, pad])
    # NNPACK pads both sides of an axis alike: the columns are padded there, the rows here (a zero row
    # above the first strip and below the last; the others read their neighbours' rows in place)
    out = x.new_empty(n, weight.shape[0], out_h, w + 2 * pad - 2)
    for r0 in range(0, out_h, rows):
        r1 = min(out_h, r0 + rows)
        a, b = r0 - pad, r1 + 2 - pad  # input rows of output rows [r0, r1), in unpadded coordinates
        strip = x[:, :, max(a, 0):min(b, h)]
        if a < 0 or b > h:
            strip = F.pad(strip, (0, 0, max(-a, 0), max(b - h, 0)))
        out[:, :, r0:r1] = torch._nnpack_spatial_convolution(strip, weight, bias, [0, pad])
    return out


def apply(m: nn.Module, x: torch.Tensor, owned: bool = False) -> torch.Tensor:
    """``m(x)``, with the fast CPU kernel where one applies. ``owned``: ``x`` was made by this run
    (an earlier layer's output), so a ReLU may overwrite it."""
    if not fast_path(m, x):
        return m(x)
    kind = type(m)
    if kind is nn.Conv2d and _nnpack_conv(m):
        try:
            return _nnpack_strips(x, m.weight, m.bias, m.padding[0])
        except RuntimeError:  # a shape NNPACK refuses: the module's own convolution
            return m(x)
    if kind is nn.ReLU and owned:
        return x.relu_()
    if (kind is nn.MaxPool2d and m.kernel_size in (2, (2, 2)) and m.stride in (2, (2, 2))
            and m.padding in (0, (0, 0)) and m.dilation in (1, (1, 1)) and not m.ceil_mode
            and not m.return_indices and x.dim() == 4 and min(x.shape[-2:]) >= 2):
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2  # floor mode: an odd last row/column is left out
        rows = torch.maximum(x[..., 0:h:2, :w], x[..., 1:h:2, :w])
        return torch.maximum(rows[..., 0::2], rows[..., 1::2])
    return m(x)


def run(layers: Iterable[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """The layers in order, each through :func:`apply` (the input ``x`` itself is never changed)."""
    given = x.untyped_storage().data_ptr()
    for m in layers:
        x = apply(m, x, owned=x.untyped_storage().data_ptr() != given)
    return x
