"""The encoder/decoder layers' CPU path without autograd (styleswap_ext/models/cpu_layers.py): faster kernels,
the same results to float rounding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from styleswap_ext.models import cpu_layers
from styleswap_ext.pipeline import tiling
from styleswap_ext.models import Decoder, load_decoder


def _smooth_image(h, w, seed=0):
    """A photo-like image: smooth colour fields plus a little texture, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    low = F.interpolate(torch.rand(1, 3, h // 16, w // 16, generator=g), size=(h, w), mode="bicubic",
                        align_corners=False)
    return (low + 0.05 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)


@pytest.fixture
def nnpack_calls(monkeypatch):
    """Counts the NNPACK convolutions run (so that a comparison cannot compare the reference with itself)."""
    calls = []
    real = torch._nnpack_spatial_convolution
    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", lambda *a: calls.append(a[0].shape) or real(*a))
    return calls


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_encoder_and_decoder_equal_the_modules_to_float_rounding(encoder, nnpack_calls, monkeypatch):
    pools = []
    real_pool = F.max_pool2d
    monkeypatch.setattr(F, "max_pool2d", lambda *a, **k: pools.append(1) or real_pool(*a, **k))
    image = _smooth_image(96, 128)
    decoder = load_decoder()
    with torch.no_grad():
        with cpu_layers.reference():
            ref = encoder(image)
            ref_img = decoder(ref)
        assert not nnpack_calls and len(pools) == 2  # the reference: the modules themselves
        out = encoder(image)
        img = decoder(ref)
    # NNPACK ran the 64->64, 64->128, 128->128, 128->256 encoder convs and 4 of the decoder's 5; no max_pool2d
    assert len(nnpack_calls) == 8 and len(pools) == 2, (nnpack_calls, pools)
    assert out.shape == ref.shape and _rel(out, ref) < 1e-4  # measured 2-4e-6
    assert img.shape == ref_img.shape and (img - ref_img).abs().max().item() < 1e-4
    # the same features go through the rest of the pipeline (layout, dtype)
    assert out.is_contiguous() and out.dtype == torch.float32


@pytest.mark.parametrize("pad", [1, 0])
def test_large_inputs_are_convolved_in_strips(monkeypatch, nnpack_calls, pad):
    """Strips of rows bound NNPACK's workspace; they give the one call's result to float rounding."""
    conv = nn.Conv2d(32, 48, 3, padding=pad)
    x = torch.randn(1, 32, 29, 23)
    with torch.no_grad():
        whole = cpu_layers.apply(conv, x)
        assert len(nnpack_calls) == 1
        monkeypatch.setattr(cpu_layers, "MAX_CALL_ELEMENTS", 32 * 25 * 4)  # 4 output rows per call
        strips = cpu_layers.apply(conv, x)
        ref = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=pad)
    assert len(nnpack_calls) == 1 + -(-(29 + 2 * pad - 2) // 4)
    assert strips.shape == whole.shape == ref.shape
    assert _rel(strips, ref) < 1e-5 and _rel(whole, ref) < 1e-5


def test_autograd_and_other_dtypes_run_the_modules(encoder, nnpack_calls):
    image = _smooth_image(32, 40).requires_grad_(True)
    out = encoder(image)
    out.sum().backward()
    assert not nnpack_calls and image.grad is not None and image.grad.abs().sum() > 0
    with torch.no_grad():
        encoder.double()
        try:
            encoder(image.detach().double())
        finally:
            encoder.float()
    assert not nnpack_calls
    decoder = Decoder(instance_norm=False)  # trainable parameters: training runs the modules
    decoder(torch.rand(1, 256, 6, 6)).mean().backward()
    assert not nnpack_calls and decoder.body[1].weight.grad is not None


def test_the_input_is_never_changed_in_place():
    x = torch.randn(1, 16, 8, 8)
    keep = x.clone()
    with torch.no_grad():
        y = cpu_layers.run([nn.ReLU(), nn.MaxPool2d(2, 2)], x)
        assert torch.equal(x, keep) and torch.equal(y, F.max_pool2d(F.relu(keep), 2, 2))
        feats = torch.randn(1, 256, 10, 12)
        keep = feats.clone()
        decoder = load_decoder()
        decoder(feats)
        tiling.decode_tiled(decoder, feats, 16)  # tiles are views of the caller's features
        assert torch.equal(feats, keep)
        # a ReLU after a layer that returns its input (Identity) must not overwrite the input either
        keep = x.clone()
        cpu_layers.run([nn.Identity(), nn.ReLU()], x)
        assert torch.equal(x, keep) and (keep < 0).any()


@pytest.mark.parametrize("shape", [(1, 3, 8, 10), (2, 5, 7, 9), (1, 4, 3, 6), (1, 64, 33, 2)])
def test_max_pool_is_exact(shape):
    x = torch.randn(shape)
    with torch.no_grad():
        out = cpu_layers.apply(nn.MaxPool2d(2, 2), x)
    assert torch.equal(out, F.max_pool2d(x, 2, 2))  # a maximum rounds nothing: bit for bit (odd sizes floor)
