"""Encoder layout and weight loading; decoder architecture and loading."""

from __future__ import annotations

import hashlib
import urllib.error

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from styleswap_ext import models
from styleswap_ext.models import (
    Decoder,
    NoTrainedDecoderError,
    VGGEncoder,
    WeightsUnavailableError,
    load_decoder,
    load_encoder,
)

SHA256 = "2741b52c608aa31870cf69e4b050742d0447740426dfd8addea86ee9649b0507"


def test_shared_weights_sha256(vgg_weights):
    assert hashlib.sha256(vgg_weights.read_bytes()).hexdigest() == SHA256


def test_encoder_layout_matches_torchvision_vgg19_features():
    # torchvision vgg19().features[:12]
    expected = [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU, nn.MaxPool2d,
                nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Conv2d, nn.ReLU]
    enc = VGGEncoder("relu3_1")
    assert [type(m) for m in enc.features] == expected
    convs = [(i, m) for i, m in enumerate(enc.features) if isinstance(m, nn.Conv2d)]
    assert [i for i, _ in convs] == [0, 2, 5, 7, 10]
    assert [(m.in_channels, m.out_channels) for _, m in convs] == [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256)]
    for _, m in convs:
        assert m.kernel_size == (3, 3) and m.padding == (1, 1) and m.stride == (1, 1) and m.padding_mode == "zeros"
    for m in enc.features:
        if isinstance(m, nn.MaxPool2d):
            assert (m.kernel_size, m.stride, m.ceil_mode) == (2, 2, False)
    assert enc.downsampling == 4 and enc.out_channels == 256
    # the other layers stop at torchvision's indices
    assert len(VGGEncoder("relu1_1").features) == 2
    assert len(VGGEncoder("relu2_1").features) == 7
    assert len(VGGEncoder("relu4_1").features) == 21
    with pytest.raises(ValueError, match="layer must be one of"):
        VGGEncoder("relu9_9")


def test_strict_load_uses_every_tensor(vgg_weights, vgg_state_dict):
    enc = load_encoder(vgg_weights)
    sd = enc.features.state_dict()
    assert set(sd) == set(vgg_state_dict) == {f"{i}.{p}" for i in (0, 2, 5, 7, 10) for p in ("weight", "bias")}
    for k, v in vgg_state_dict.items():
        assert torch.equal(sd[k], v)
    assert not any(p.requires_grad for p in enc.parameters()) and not enc.training
    broken = dict(vgg_state_dict)
    broken["7.weight"] = broken["7.weight"][:, :64]
    with pytest.raises(RuntimeError):
        load_encoder(broken)
    missing = {k: v for k, v in vgg_state_dict.items() if not k.startswith("10.")}
    with pytest.raises(RuntimeError, match="missing 10.weight"):
        load_encoder(missing)


def _reference_features(image, sd):
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (image - mean) / std
    conv = lambda x, i: F.relu(F.conv2d(x, sd[f"{i}.weight"], sd[f"{i}.bias"], padding=1))  # noqa: E731
    x = conv(conv(x, 0), 2)
    x = F.max_pool2d(x, 2)
    x = conv(conv(x, 5), 7)
    x = F.max_pool2d(x, 2)
    return conv(x, 10)


def test_features_of_fixed_image_match_independent_computation(encoder, vgg_state_dict):
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 36, 44, generator=g)
    out = encoder(image)
    assert out.shape == (2, 256, 9, 11)
    ref = _reference_features(image, vgg_state_dict)
    # relative to the largest feature (~85 here): the CPU path's Winograd convolutions
    # (styleswap_ext/models/cpu_layers.py) round to ~4e-6 of it on this noise image, a direct convolution to ~1e-6
    assert ((out - ref).abs().max() / ref.abs().max()).item() < 2e-5
    assert out.abs().sum() > 0 and (out >= 0).all()


def _fake_full_checkpoint(sd):
    """A torchvision-style vgg19 checkpoint: features.* keys incl. conv3_2..conv4_1, plus classifier."""
    full = {f"features.{k}": v for k, v in sd.items()}
    g = torch.Generator().manual_seed(1)
    for i, (cin, cout) in {12: (256, 256), 14: (256, 256), 16: (256, 256), 19: (256, 512)}.items():
        full[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * 0.01
        full[f"features.{i}.bias"] = torch.zeros(cout)
    full["classifier.0.weight"] = torch.zeros(4, 4)
    return full


def test_full_checkpoint_is_sliced_and_relu4_1_needs_it(vgg_weights, vgg_state_dict, tmp_path):
    full = _fake_full_checkpoint(vgg_state_dict)
    path = tmp_path / "vgg19-full.pth"
    torch.save(full, path)
    image = torch.rand(1, 3, 32, 32)
    a = load_encoder(path)(image)
    b = load_encoder(vgg_weights)(image)
    assert torch.equal(a, b)
    deep = load_encoder(path, layer="relu4_1")
    assert deep(image).shape == (1, 512, 4, 4)
    with pytest.raises(RuntimeError, match="full torchvision checkpoint"):
        load_encoder(vgg_weights, layer="relu4_1")


def test_weights_lookup_order_env_then_cache(vgg_weights, monkeypatch, tmp_path):
    def no_download(*a, **k):
        raise AssertionError("must not download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setenv("STYLESWAP_VGG19_WEIGHTS", str(vgg_weights))
    assert torch.equal(load_encoder().features[0].weight, load_encoder(vgg_weights).features[0].weight)
    # a bad env path is reported, not silently skipped
    monkeypatch.setenv("STYLESWAP_VGG19_WEIGHTS", str(tmp_path / "nope.pth"))
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_encoder()
    # the cache is used when there is no argument and no env var
    monkeypatch.delenv("STYLESWAP_VGG19_WEIGHTS")
    cache = models.cache_dir() / "vgg19_conv1_1-conv3_1_torchvision.pth"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(vgg_weights.read_bytes())
    assert torch.equal(load_encoder().features[10].bias, load_encoder(vgg_weights).features[10].bias)


def test_download_path_slices_and_caches(vgg_state_dict, monkeypatch):
    calls = []

    def fake_download(url, **kwargs):
        calls.append((url, kwargs))
        return _fake_full_checkpoint(vgg_state_dict)

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    enc = load_encoder(progress=False)
    assert len(calls) == 1
    url, kwargs = calls[0]
    assert url == "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
    assert kwargs.get("check_hash") is True
    cached = models.cache_dir() / "vgg19_conv1_1-conv3_1_torchvision.pth"
    assert cached.is_file()
    sliced = torch.load(cached, weights_only=True)
    assert set(sliced) == set(vgg_state_dict)  # only conv1_1..conv3_1 kept
    assert torch.equal(enc.features[7].weight, vgg_state_dict["7.weight"])
    load_encoder()  # second time: from the cache
    assert len(calls) == 1


def test_offline_without_weights_gives_one_clear_error(monkeypatch):
    def offline(url, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        load_encoder()
    msg = str(info.value)
    assert "vgg19-dcbb9e9d.pth" in msg and "--vgg-weights" in msg and "STYLESWAP_VGG19_WEIGHTS" in msg
    assert "\n" not in msg


def test_corrupt_weights_file(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(RuntimeError, match="cannot read VGG-19 weights"):
        load_encoder(bad)
    # a text file reaches the unpickler: one short line, no advice to turn weights_only off
    text = tmp_path / "notes.md"
    text.write_text("# not weights\n")
    for load, what in ((load_encoder, "VGG-19 weights"), (load_decoder, "decoder weights")):
        with pytest.raises(RuntimeError, match=f"cannot read {what} file .*not a PyTorch weights file") as info:
            load(text)
        assert "\n" not in str(info.value) and "weights_only=False" not in str(info.value)


def test_decoder_architecture_and_range():
    dec = Decoder()
    convs = [m for m in dec.body if isinstance(m, nn.Conv2d)]
    assert [(m.in_channels, m.out_channels) for m in convs] == [(256, 128), (128, 128), (128, 64), (64, 64), (64, 3)]
    ups = [m for m in dec.body if isinstance(m, nn.Upsample)]
    assert len(ups) == 2 and all(u.mode == "nearest" and u.scale_factor == 2 for u in ups)
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in dec.body) == 5
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in dec.body) == 4
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in Decoder(instance_norm=False).body)
    out = dec(torch.randn(2, 256, 5, 7) * 3)
    assert out.shape == (2, 3, 20, 28)
    assert out.min() >= 0 and out.max() <= 1


def test_no_trained_decoder_error(monkeypatch):
    monkeypatch.setattr(models.loading, "packaged_decoder_path", lambda: None)
    with pytest.raises(NoTrainedDecoderError, match='method optimize') as info:
        load_decoder()
    assert isinstance(info.value, RuntimeError)


def test_packaged_decoder_matches_its_model_card():
    """The shipped weights: present, small, safe to load, and what MODEL_CARD.md says they are."""
    import re
    from pathlib import Path

    path = models.packaged_decoder_path()
    assert path is not None and path.name == "decoder.pth"
    assert path.stat().st_size <= 10 * 2**20
    raw = torch.load(path, map_location="cpu", weights_only=True)
    meta = raw["meta"]
    card = (path.parent / "MODEL_CARD.md").read_text()
    # the card's schedule line names the iteration count; the file's meta must agree
    schedule = re.search(r"\| schedule \| ([\d,]+) Adam iterations", card)
    assert schedule and int(schedule.group(1).replace(",", "")) == meta["iteration"]
    n_params = sum(v.numel() for v in raw["state_dict"].values())
    assert f"{n_params:,} parameters" in card
    assert f"{meta['last_val']['val_feat']:.2f} at {meta['last_val']['iteration']:,}" in card
    # exported from the committed training checkpoint the card names
    source_name = re.search(r"\| source checkpoint \| `([^`]+)`", card)
    assert source_name
    ckpt = Path(__file__).resolve().parents[1] / source_name.group(1)
    source = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert source["iteration"] == meta["iteration"]
    for k, v in source["state_dict"].items():
        assert torch.equal(raw["state_dict"][k], v.float()), k
    decoder = load_decoder()
    assert decoder.instance_norm is False and not decoder.training
    out = decoder(torch.randn(1, 256, 6, 5) * 3)
    assert out.shape == (1, 3, 24, 20) and torch.isfinite(out).all()


@pytest.mark.parametrize("instance_norm", [True, False])
def test_decoder_save_load_roundtrip(tmp_path, monkeypatch, instance_norm):
    torch.manual_seed(0)
    dec = Decoder(instance_norm=instance_norm).eval()
    x = torch.randn(1, 256, 4, 6)
    plain = tmp_path / "plain.pth"
    torch.save(dec.state_dict(), plain)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": dec.state_dict(), "config": {"instance_norm": instance_norm}}, wrapped)
    for path in (plain, wrapped):
        loaded = load_decoder(path)
        assert loaded.instance_norm == instance_norm
        torch.testing.assert_close(loaded(x), dec(x))
    # a file in the package's weights/ directory is what weights=None picks up
    monkeypatch.setattr(models.loading, "packaged_decoder_path", lambda: plain)
    torch.testing.assert_close(load_decoder()(x), dec(x))
    with pytest.raises(FileNotFoundError):
        load_decoder(tmp_path / "missing.pth")
