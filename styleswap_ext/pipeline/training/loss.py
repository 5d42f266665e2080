"""The training targets (the style swaps of every content x style pair) and the decoder's loss.

Loss, exactly (``H``: the targets ``(T, 256, h, w)``, ``f``: the decoder, ``n = T·256·h·w``)::

    L = [ Σ (Φ(f(H)) − H)²  +  tv_weight · TV(255·f(H)) ] / n   (+ pixel_weight · MSE on real targets)

with ``TV(x) = Σ (x[i+1,j] − x[i,j])² + Σ (x[i,j+1] − x[i,j])²`` summed over channels and images.
So the feature term is the mean squared error per feature element (the paper's
``mean_i ‖Φ(f(H_i)) − H_i‖²_F`` divided by the constant 256·h·w), and the TV term is the paper's
sum on a 0–255 image under the *same* division: ``tv_weight`` is the paper's λ in the paper's
units, default **1e-6** as in the paper. One difference remains and cannot be removed: our Φ is
torchvision's VGG-19 (input normalised by the ImageNet std), whose relu3_1 activations are smaller
than Caffe's, so the TV term weighs relatively more than in the paper. Measured (128 px crops, a
barely trained decoder): feature MSE ≈ 7, TV(255·f(H))/n ≈ 12, so λ = 1e-6 makes the TV term ≈ 2e-6
of the loss — as in the paper, practically no regularisation; λ ≈ 6e-3 would make it ≈ 1 %. The optional pixel loss (``--pixel-weight``, default 0 =
off) adds ``pixel_weight · mean((f(H_real) − x)²)`` on the 2B real crops ``x`` ([0, 1] images).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

DEFAULT_TV_WEIGHT = 1e-6  # the paper's λ, in the paper's units (see the module docstring)


def swap_function(kind: str, device: torch.device):
    """``ext``: the fused kernels; ``reference``: the paper's conv formulation in plain PyTorch (fast
    enough at training crop sizes: ~1 ms per 256 px pair on an H200); ``auto``: ext unless the device
    is CUDA and the extension was built without CUDA kernels."""
    from ...ops import swap as ops, reference

    if kind == "auto":
        kind = "ext" if device.type != "cuda" or ops.CUDA_BUILT else "reference"
    if kind not in ("ext", "reference"):
        raise ValueError(f"swap must be auto, ext or reference, got {kind!r}")
    return ops.style_swap if kind == "ext" else reference.style_swap


@torch.no_grad()
def make_targets(encoder, content: torch.Tensor, style: torch.Tensor, all_pairs: bool = True,
                 patch_size: int = 3, stride: int = 1, swap=None) -> torch.Tensor:
    """Φ(content), Φ(style) and their style swaps: every content × style pair (``all_pairs``,
    2B + B² targets, the authors' recipe) or content i with style i (2B + B targets).
    ``swap``: the style-swap function (default: the extension's ``style_swap``)."""
    from ...ops.swap import style_swap as _ext_swap

    style_swap = swap or _ext_swap
    hc, hs = encoder(content), encoder(style)
    if all_pairs:
        swaps = [style_swap(hc, hs[j:j + 1], patch_size, stride) for j in range(hs.shape[0])]
    else:
        swaps = [style_swap(hc, hs, patch_size, stride)]
    return torch.cat([hc, hs, *swaps]).contiguous()


def decoder_loss(encoder, decoder, targets: torch.Tensor, tv_weight: float = DEFAULT_TV_WEIGHT,
                 images: Optional[torch.Tensor] = None, pixel_weight: float = 0.0
                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, feature MSE, TV term) — the loss of the module docstring.

    ``images``: the real crops whose features are the first ``len(images)`` targets (pixel loss).
    """
    from ..stylization import total_variation

    out = decoder(targets)
    feats = encoder(out)
    n = targets.numel()
    feat = (feats - targets).pow(2).sum() / n
    tv = total_variation(out) * (255.0 ** 2) / n
    loss = feat + tv_weight * tv
    if pixel_weight and images is not None:
        loss = loss + pixel_weight * (out[:images.shape[0]] - images).pow(2).mean()
    return loss, feat.detach(), tv.detach()
