"""stylize() end to end on small images (CPU), the optimisation, alpha, preserve_color, style banks,
and the image I/O rules."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from styleswap_ext.pipeline import image_io
from styleswap_ext import models, style_swap
from styleswap_ext.pipeline.image_io import ImageLoadError, load_image, save_image
from styleswap_ext.models import Decoder, NoTrainedDecoderError
from styleswap_ext.pipeline import objective, optimize_image, preserve_colors, stylize, swap_features


@pytest.fixture
def decoder():
    torch.manual_seed(0)
    return Decoder().eval()


def _t(img):
    return image_io.pil_to_tensor(img)


def test_optimize_end_to_end_pil_in_pil_out(encoder, content_pil, style_pil):
    out, hist = stylize(content_pil, style_pil, method="optimize", iters=4, encoder=encoder, device="cpu",
                        progress=False, return_history=True)
    assert isinstance(out, Image.Image) and out.mode == "RGB"
    assert out.size == content_pil.size  # 48x36: already a multiple of 4
    assert len(hist) == 1 and len(hist[0]) == 5
    assert not np.array_equal(np.asarray(out), np.asarray(content_pil))


def test_decoder_end_to_end_paths_and_sizes(encoder, decoder, image_files):
    content, style = image_files
    out = stylize(content, style, method="decoder", encoder=encoder, decoder=decoder, device="cpu",
                  content_size=50, style_size=48)
    # longest side 50 -> 50x38 (rounded), cropped to multiples of 4 -> 48x36
    assert isinstance(out, Image.Image) and out.size == (48, 36)


def test_tensor_in_tensor_out(encoder, decoder, content_pil, style_pil):
    c, s = _t(content_pil), _t(style_pil)
    out3 = stylize(c, s, method="decoder", encoder=encoder, decoder=decoder)
    assert isinstance(out3, torch.Tensor) and out3.shape == c.shape
    batch = torch.stack([c, c.flip(-1)])
    out4 = stylize(batch, s[None], method="decoder", encoder=encoder, decoder=decoder)
    assert out4.shape == batch.shape
    torch.testing.assert_close(out4[0], out3)
    assert out4.min() >= 0 and out4.max() <= 1


def test_decoder_method_without_trained_decoder(encoder, content_pil, style_pil, monkeypatch):
    monkeypatch.setattr(models.loading, "packaged_decoder_path", lambda: None)
    with pytest.raises(NoTrainedDecoderError, match="optimize"):
        stylize(content_pil, style_pil, encoder=encoder)


def test_optimisation_lowers_its_objective(encoder, content_pil, style_pil):
    c, s = _t(content_pil)[None], _t(style_pil)[None]
    with torch.no_grad():
        target = style_swap(encoder(c), encoder(s))
    image, history = optimize_image(encoder, target, c, iters=12, progress=False)
    assert len(history) == 13 and all(np.isfinite(history))
    assert history[-1] < 0.8 * history[0]
    assert image.shape == c.shape and image.min() >= 0 and image.max() <= 1
    # history[-1] is the objective of the returned image (same fixed normaliser as at the start)
    _, norm = objective(encoder, c, target)
    final, _ = objective(encoder, image, target, feature_norm=norm)
    assert final.item() == pytest.approx(history[-1], rel=1e-4)
    # the feature term is normalised: its gradient w.r.t. the features has L1 norm 1 at the start
    feats = encoder(c).requires_grad_(True)
    ((feats - target).pow(2).sum() / norm).backward()
    assert feats.grad.abs().sum().item() == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize("init", ["random", "decoder"])
def test_optimize_inits(encoder, decoder, content_pil, style_pil, init):
    c, s = _t(content_pil), _t(style_pil)
    torch.manual_seed(0)
    out, hist = stylize(c, s, method="optimize", init=init, iters=3, encoder=encoder, decoder=decoder,
                        progress=False, return_history=True)
    assert out.shape == c.shape and hist[0][-1] < hist[0][0]


def test_alpha_zero_is_the_decoders_reconstruction(encoder, decoder, content_pil, style_pil):
    c, s = _t(content_pil), _t(style_pil)
    out = stylize(c, s, method="decoder", alpha=0.0, encoder=encoder, decoder=decoder)
    with torch.no_grad():
        expected = decoder(encoder(c[None]))[0]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    full = stylize(c, s, method="decoder", alpha=1.0, encoder=encoder, decoder=decoder)
    assert (full - expected).abs().mean() > 1e-3


def test_alpha_blends_features(encoder, content_pil, style_pil):
    cf, sf = encoder(_t(content_pil)[None]), encoder(_t(style_pil)[None])
    swapped = style_swap(cf, sf)
    torch.testing.assert_close(swap_features(cf, [sf], alpha=0.25), 0.25 * swapped + 0.75 * cf)
    torch.testing.assert_close(swap_features(cf, [sf], alpha=1.0), swapped)


def _mean_rgb_distance(a, b):
    return (a.mean(dim=(-2, -1)) - b.mean(dim=(-2, -1))).norm().item()


@pytest.mark.parametrize("method", ["decoder", "optimize"])
def test_preserve_color_keeps_content_mean_colour_closer(encoder, decoder, content_pil, style_pil, method):
    c, s = _t(content_pil), _t(style_pil)
    kw = dict(method=method, encoder=encoder, decoder=decoder, iters=5, progress=False)
    plain = stylize(c, s, **kw)
    kept = stylize(c, s, preserve_color=True, **kw)
    d_plain, d_kept = _mean_rgb_distance(plain, c), _mean_rgb_distance(kept, c)
    assert d_kept < d_plain
    assert d_kept < 0.5 * d_plain or d_plain < 0.02


def test_preserve_colors_takes_luma_from_result_and_chroma_from_content():
    torch.manual_seed(0)
    stylized, content = torch.rand(1, 3, 8, 8) * 0.5 + 0.25, torch.rand(1, 3, 8, 8) * 0.5 + 0.25
    out = preserve_colors(stylized, content)
    luma = lambda x: 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]  # noqa: E731
    torch.testing.assert_close(luma(out), luma(stylized), atol=1e-5, rtol=0)
    # same chroma as content: out - luma(out) == content - luma(content) per channel
    torch.testing.assert_close(out - luma(out)[:, None], content - luma(content)[:, None], atol=1e-5, rtol=0)


def test_style_bank_weights(encoder, content_pil, style_pil):
    cf = encoder(_t(content_pil)[None])
    s1 = encoder(_t(style_pil)[None])
    s2 = encoder(_t(style_pil.transpose(Image.Transpose.ROTATE_90).convert("L").convert("RGB"))[None])
    bank = style_swap(cf, [s1, s2])
    torch.testing.assert_close(swap_features(cf, [s1, s2], [2.0, 2.0]), bank)
    # weight 0 removes a style from the bank; the weighted path agrees with the fused op
    torch.testing.assert_close(swap_features(cf, [s1, s2], [1.0, 0.0]), style_swap(cf, s1))
    torch.testing.assert_close(swap_features(cf, [s1, s2], [0.0, 1.0]), style_swap(cf, s2))
    torch.testing.assert_close(swap_features(cf, [s1, s2], [1.0, 1e-3], stride=2), style_swap(cf, s1, 3, 2))


def test_bf16_precision_runs(encoder, decoder, content_pil, style_pil):
    c, s = _t(content_pil), _t(style_pil)
    out = stylize(c, s, method="decoder", precision="bf16", encoder=encoder, decoder=decoder)
    assert out.dtype == torch.float32 and out.shape == c.shape


@pytest.mark.parametrize("kwargs, match", [
    (dict(alpha=7), "alpha"),
    (dict(alpha=-0.1), "alpha"),
    (dict(patch_size=0), "patch_size"),
    (dict(patch_size=3, stride=4), "stride"),
    (dict(method="magic"), "method"),
    (dict(init="zeros", method="optimize"), "init"),
    (dict(precision="fp8"), "precision"),
    (dict(content_size=0), "content_size"),
    (dict(style_weights=[1.0, 2.0]), "got 2 style weights for 1 style$"),
    (dict(style_weights=[0.0]), "style weights"),
    (dict(method="optimize", iters=-1), "iters"),
    (dict(patch_size=5, content_size=16), "too small"),
])
def test_bad_arguments(encoder, decoder, content_pil, style_pil, kwargs, match):
    with pytest.raises(ValueError, match=match):
        stylize(content_pil, style_pil, encoder=encoder, decoder=decoder, progress=False, **kwargs)


# --- image I/O ----------------------------------------------------------------------------------


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif.tobytes())
    assert load_image(path).size == (20, 40)


def test_rgba_is_composited_over_white(tmp_path):
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., 0] = 255  # red ...
    arr[:2, ..., 3] = 0  # ... transparent on top
    arr[2:, ..., 3] = 255
    path = tmp_path / "rgba.png"
    Image.fromarray(arr, "RGBA").save(path)
    out = np.asarray(load_image(path))
    assert out.shape == (4, 4, 3)
    assert (out[:2] == 255).all() and (out[2:] == (255, 0, 0)).all()


def test_greyscale_and_16bit(tmp_path):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((5, 6), 77, np.uint8), "L").save(grey)
    g = load_image(grey)
    assert g.mode == "RGB" and (np.asarray(g) == 77).all()
    arr16 = np.array([[0, 32896, 65535]], np.uint16)
    path16 = tmp_path / "sixteen.png"
    Image.fromarray(arr16).save(path16)
    assert Image.open(path16).mode.startswith("I")
    out = np.asarray(load_image(path16))
    assert out.shape == (1, 3, 3) and list(out[0, :, 0]) == [0, 128, 255]


@pytest.mark.parametrize("kind", ["missing", "directory", "text", "truncated", "empty"])
def test_load_errors(tmp_path, content_pil, kind):
    path = tmp_path / "x.jpg"
    if kind == "directory":
        path.mkdir()
    elif kind == "text":
        path.write_text("hello, I am not a picture\n")
    elif kind == "truncated":
        content_pil.save(path, quality=95)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "empty":
        path.write_bytes(b"")
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_save_is_atomic_and_format_follows_extension(tmp_path, content_pil, monkeypatch):
    for name, fmt in [("a.png", "PNG"), ("b.JPG", "JPEG"), ("c.webp", "WEBP"), ("d.bmp", "BMP")]:
        save_image(content_pil, tmp_path / name)
        assert Image.open(tmp_path / name).format == fmt
    with pytest.raises(ValueError, match="extension"):
        save_image(content_pil, tmp_path / "e.unknown")
    umask = os.umask(0o022)
    try:
        save_image(content_pil, tmp_path / "mode.png")
    finally:
        os.umask(umask)
    assert (tmp_path / "mode.png").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"partial data")
        raise OSError("disk full")

    before = sorted(p.name for p in tmp_path.iterdir())
    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(content_pil, tmp_path / "f.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temp file


def test_png_is_saved_fast_and_lossless(tmp_path, content_pil, monkeypatch):
    """PNG output uses zlib level 1 (speed at high resolution) and still round-trips bit for bit."""
    levels = []
    real_save = Image.Image.save

    def spy(self, fp, format=None, **kwargs):
        levels.append(kwargs.get("compress_level"))
        return real_save(self, fp, format=format, **kwargs)

    monkeypatch.setattr(Image.Image, "save", spy)
    save_image(content_pil, tmp_path / "out.png")
    assert levels == [1]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png").convert("RGB")),
                          np.asarray(content_pil.convert("RGB")))


def test_uint8_pixels_convert_to_the_same_floats(content_pil):
    """stylize() keeps an image content in uint8 until it is on the device; the float conversion
    there gives exactly what pil_to_tensor gives, also for a non-RGB image."""
    from styleswap_ext.pipeline.stylization import _load_as_tensor

    for img in (content_pil, content_pil.convert("L"), content_pil.convert("RGBA")):
        rgb = image_io.to_rgb(img)
        u8 = image_io.pil_to_uint8(rgb)
        assert u8.dtype == torch.uint8 and u8.shape == (3, rgb.height, rgb.width)
        assert torch.equal(image_io.uint8_to_float(u8), image_io.pil_to_tensor(rgb))
    t, was_tensor = _load_as_tensor(content_pil, None, "content", uint8=True)
    assert t.dtype == torch.uint8 and not was_tensor
    t2, _ = _load_as_tensor(content_pil, 20, "content", uint8=True)
    assert t2.dtype == torch.uint8 and max(t2.shape[-2:]) == 20
    tensor_in, was_tensor = _load_as_tensor(torch.rand(3, 8, 8), None, "content", uint8=True)
    assert tensor_in.dtype == torch.float32 and was_tensor  # tensors are never turned into uint8


def test_stylize_is_exported_from_the_package():
    import styleswap_ext
    from styleswap_ext import pipeline

    assert styleswap_ext.stylize is pipeline.stylize
