"""Tiled encoder/decoder (styleswap_ext.pipeline.tiling) against the untiled modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from styleswap_ext.pipeline import tiling
from styleswap_ext.models import Decoder


def _random_decoder(instance_norm=True, seed=0):
    torch.manual_seed(seed)
    d = Decoder(instance_norm=instance_norm).eval()
    for m in d.modules():  # non-trivial affine parameters, so the norm statistics matter
        if isinstance(m, torch.nn.InstanceNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return d


def test_geometry_is_derived_from_the_layers(encoder):
    # VGG-19 to relu3_1: receptive field 24 px = 10 px on each side of a 4 px block
    assert tiling.context(list(encoder.features)) == (0.25, 10, 10)
    assert tiling.encoder_halo(encoder) == 12  # rounded up to the pooling stride
    assert tiling.context(list(Decoder().body)) == (4.0, 3, 3)
    assert tiling.decoder_halo(Decoder()) == 3
    assert tiling.tile_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]


@pytest.mark.parametrize("size,tile", [((92, 76), 24), ((90, 70), 40)])  # ragged last tiles; H, W not /4
def test_encoder_tiled_equals_untiled(encoder, size, tile):
    torch.manual_seed(1)
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        ref = encoder(x)
    out = tiling.encode_tiled(encoder, x, tile)
    assert out.shape == ref.shape
    # float rounding: the CPU path's Winograd convolutions (cpu_layers) round differently where a tile
    # moves their 6 x 6 blocks, up to ~1e-5 of the largest feature on noise; a missing halo gives > 1e-3
    assert ((out - ref).abs().max() / ref.abs().max()).item() < 3e-5


def test_encoder_halo_is_needed(encoder, monkeypatch):
    """With a too-small halo the tiles disagree: the test above does see seams."""
    torch.manual_seed(1)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = encoder(x)
    monkeypatch.setattr(tiling, "encoder_halo", lambda enc: 4)
    out = tiling.encode_tiled(encoder, x, 24)
    assert ((out - ref).abs().max() / ref.abs().max()).item() > 1e-3


@pytest.mark.parametrize("instance_norm", [True, False])
def test_decoder_tiled_equals_untiled(instance_norm):
    d = _random_decoder(instance_norm)
    torch.manual_seed(2)
    f = torch.relu(torch.randn(1, 256, 22, 17))
    with torch.no_grad():
        ref = d(f)
    out = tiling.decode_tiled(d, f, 32)  # 8-feature tiles: 3 x 3 tiles, ragged last row/column
    assert out.shape == ref.shape == (1, 3, 88, 68)
    assert (out - ref).abs().max().item() < 3e-5  # float rounding (Winograd blocks moved by the tiles, as above)


def test_decoder_per_tile_statistics_would_show_seams():
    """Why the global statistics: normalising each tile on its own differs visibly."""
    d = _random_decoder(True)
    torch.manual_seed(2)
    f = torch.relu(torch.randn(1, 256, 24, 24)) * torch.linspace(0.2, 3, 24)  # statistics vary across the map
    with torch.no_grad():
        ref = d(f)
        naive = torch.cat([d(f[..., :12]), d(f[..., 12:])], dim=-1)
    assert (naive - ref).abs().max().item() > 1e-2
    assert (tiling.decode_tiled(d, f, 48) - ref).abs().max().item() < 3e-5


def test_stylize_tiled_matches_untiled(encoder, content_pil, style_pil):
    from styleswap_ext.pipeline import stylize

    d = _random_decoder(True)
    c = torch.from_numpy(np.array(content_pil.resize((96, 72)))).permute(2, 0, 1).float() / 255
    kw = dict(method="decoder", encoder=encoder, decoder=d, device="cpu", progress=False)
    untiled = stylize(c, style_pil, tile_size=0, **kw)
    tiled = stylize(c, style_pil, tile_size=32, **kw)
    assert tiled.shape == untiled.shape == (3, 72, 96)
    assert (tiled - untiled).abs().max().item() < 1e-4


def test_cli_tile_size_option(capsys):
    from styleswap_ext.apps import cli

    assert cli.main(["stylize", "a.png", "b.png", "-o", "o.png", "--tile-size", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--tile-size" in err
    args = cli.build_parser().parse_args(["stylize", "a.png", "b.png", "-o", "o.png", "--tile-size", "0"])
    assert args.tile_size == 0
