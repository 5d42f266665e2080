"""No silently wrong picture, no lost or overwritten file (issue 30): each case below once gave a
wrong result with exit 0, destroyed a file, or failed late with an unclear message."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import styleswap_ext as ss
from styleswap_ext import PatchBank, models
from styleswap_ext.apps import cli
from styleswap_ext.pipeline import image_io
from styleswap_ext.pipeline import stylize, swap_features

FAST = ["--method", "optimize", "--iters", "2", "-q"]
MISSING_WEIGHTS = "/nonexistent/vgg.pth"  # a run that got as far as loading the models would fail on these


@pytest.fixture(autouse=True)
def _no_packaged_decoder(monkeypatch):
    monkeypatch.setattr(models.loading, "packaged_decoder_path", lambda: None)


def run(capsys, argv):
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def one_error_line(err, *needles):
    # stage lines ("styleswap: 2.1 s ...", stderr not a terminal: styleswap_ext/_util/stages.py) may come first
    lines = [line for line in err.strip().splitlines() if not re.match(r"styleswap: \d+\.\d s ", line)]
    assert len(lines) == 1 and lines[0].startswith("styleswap: error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not (torch.cuda.is_available() and ss.CUDA_BUILT), reason="needs a CUDA GPU and a CUDA build"))]


def _features(seed, shape):
    """Positive, like relu3_1 features (every score > 0), and multiples of 1/8: every dot product is exact
    in any summation order, so two banks holding the same patches give the same picks on any processor."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 9, shape, generator=g) / 8


# --- 1. style weights: only their ratios matter -------------------------------------------------------------------


@pytest.mark.exactness
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("huge", [1e37, 1e38, 1e39])
def test_huge_weights_are_their_ratios(huge, dtype, device):
    s1, s2 = _features(1, (1, 8, 10, 10)).to(device, dtype), _features(2, (1, 8, 10, 10)).to(device, dtype)
    c = _features(3, (1, 8, 9, 9)).to(device, dtype)
    idx = PatchBank([s1, s2], weights=[huge, 1.0]).match(c)
    assert torch.equal(idx, PatchBank([s1, s2], weights=[1.0, 1.0 / huge]).match(c))
    # every score is positive, so a weight 1e37+ times smaller never wins: the result is style 1 alone
    # (before: float32 weight / ||s|| overflowed to inf and every position took patch 0)
    assert torch.equal(idx, PatchBank([s1]).match(c))
    assert idx.unique().numel() > 10


def test_huge_style_weights_in_the_pipeline():
    s1, s2, cf = _features(1, (1, 16, 12, 12)), _features(2, (1, 16, 12, 12)), _features(3, (1, 16, 10, 10))
    torch.testing.assert_close(swap_features(cf, [s1, s2], [1e38, 1.0]), swap_features(cf, [s1, s2], [1.0, 1e-38]))
    torch.testing.assert_close(swap_features(cf, [s1, s2], [1e38, 1.0]), swap_features(cf, [s1]))


@pytest.mark.parametrize("device", DEVICES)
def test_a_weight_ratio_that_is_zero_in_float32_is_refused(device):
    s1, s2, c = (_features(i, shape).to(device) for i, shape in
                 ((1, (1, 8, 10, 10)), (2, (1, 8, 10, 10)), (3, (1, 8, 9, 9))))
    with pytest.raises(ValueError, match=r"weights\[1\] \(1e-46\) is too small next to the largest"):
        PatchBank([s1, s2], weights=[1.0, 1e-46])
    # float64 banks keep the ratio
    PatchBank([s1.double(), s2.double()], weights=[1.0, 1e-46]).match(c.double())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scale", [1e20, 1e30, 1e38])
def test_a_style_too_large_for_float32_is_refused(scale, device):
    s, c = _features(1, (1, 8, 10, 10)).to(device), _features(3, (1, 8, 9, 9)).to(device)
    for call in (lambda: ss.style_swap(c, s * scale), lambda: ss.match_patches(c, s * scale),
                 lambda: PatchBank(s * scale)):
        with pytest.raises(ValueError, match=r"styles\[0\] has a patch of norm .* too large for float32"):
            call()
    out = ss.style_swap(c, s * 1e17)  # large but representable: works, finite
    assert torch.isfinite(out).all()
    assert torch.isfinite(ss.style_swap(c.double(), s.double() * 1e38)).all()  # float64 has the room


def test_a_zero_ratio_through_the_cli_names_the_users_index(capsys, image_files):
    content, style = image_files
    code, err = run(capsys, ["stylize", content, style, style, style, "-o", "out.png", "--style-weights", "0", "1",
                             "1e-46", "--vgg-weights", MISSING_WEIGHTS, *FAST])
    assert code == 2
    one_error_line(err, "--style-weights[2] (1e-46) is too small")


def test_huge_style_weights_through_the_cli(capsys, image_files, vgg_weights, tmp_path):
    content, style = image_files
    other = tmp_path / "other.png"
    Image.fromarray(np.asarray(Image.open(style))[:, ::-1].copy()).save(other)
    outs = {}
    for name, weights in (("huge", ["1e38", "1"]), ("tiny", ["1", "1e-38"]), ("one", None)):
        out = tmp_path / f"{name}.png"
        extra = ["--style-weights", *weights] if weights else []
        styles = [style, other] if weights else [style]
        code, err = run(capsys, ["stylize", content, *styles, "-o", out, "--vgg-weights", vgg_weights, *FAST, *extra])
        assert code == 0, err
        outs[name] = np.asarray(Image.open(out)).astype(int)
    assert np.abs(outs["huge"] - outs["tiny"]).max() <= 1
    assert np.abs(outs["huge"] - outs["one"]).max() <= 1


# --- 2. directory mode: two inputs, one output name ------------------------------------------------------------------


@pytest.mark.parametrize("names", [("x.png", "x.PNG"), ("x.png", "x.xbm")])
def test_colliding_output_names_are_refused_before_any_work(capsys, tmp_path, content_pil, style_pil, names):
    src = tmp_path / "in"
    src.mkdir()
    for name in names:
        img = content_pil.convert("1") if name.endswith(".xbm") else content_pil
        img.save(src / name)
    style = tmp_path / "style.png"
    style_pil.save(style)
    out = tmp_path / "out"
    code, err = run(capsys, ["stylize", src, style, "-o", out, "--vgg-weights", MISSING_WEIGHTS, *FAST])
    assert code == 2
    one_error_line(err, names[0], names[1], "x_stylized.png", "would both be written")
    assert not out.exists()


def test_an_output_format_that_cannot_hold_rgb_falls_back_to_png(tmp_path):
    assert cli.runners._output_for(Path("a/x.xbm"), tmp_path) == tmp_path / "x_stylized.png"
    assert cli.runners._output_for(Path("a/x.jpg"), tmp_path) == tmp_path / "x_stylized.jpg"


# --- 3. the output must not be an input ------------------------------------------------------------------------------


def _output_spellings(content, style, tmp_path):
    link = tmp_path / "link.png"
    link.symlink_to(content)
    return {
        "content": content,
        "style": style,
        "other spelling": tmp_path / "sub" / ".." / content.name,
        "symlink to the content": link,
    }


@pytest.mark.parametrize("which", ["content", "style", "other spelling", "symlink to the content"])
def test_an_output_that_is_an_input_is_refused(capsys, image_files, tmp_path, which):
    content, style = image_files
    (tmp_path / "sub").mkdir()
    out = _output_spellings(content, style, tmp_path)[which]
    before = {p: p.read_bytes() for p in (content, style)}
    code, err = run(capsys, ["stylize", content, style, "-o", out, "--vgg-weights", MISSING_WEIGHTS, *FAST])
    assert code == 2, err
    one_error_line(err, str(out), "is an input")
    assert {p: p.read_bytes() for p in (content, style)} == before
    if which.startswith("symlink"):
        assert (tmp_path / "link.png").is_symlink()


def test_directory_mode_into_its_own_folder_would_overwrite_an_input(capsys, tmp_path, content_pil, style_pil):
    src = tmp_path / "in"
    src.mkdir()
    content_pil.save(src / "x.png")
    content_pil.save(src / "x_stylized.png")  # a result of an earlier run, now an input
    style_pil.save(tmp_path / "style.png")
    code, err = run(capsys, ["stylize", src, tmp_path / "style.png", "-o", src, "--vgg-weights", MISSING_WEIGHTS,
                             *FAST])
    assert code == 2
    one_error_line(err, "x_stylized.png", "is an input")


def test_frames_directory_into_itself_is_refused(capsys, tmp_path, content_pil, style_pil):
    frames = tmp_path / "frames"
    frames.mkdir()
    content_pil.save(frames / "0001.png")
    style_pil.save(tmp_path / "style.png")
    before = (frames / "0001.png").read_bytes()
    code, err = run(capsys, ["video", frames, tmp_path / "style.png", "-o", frames, "--vgg-weights",
                             MISSING_WEIGHTS, *FAST])
    assert code == 2
    one_error_line(err, "0001.png", "is an input")
    assert (frames / "0001.png").read_bytes() == before


# --- 4. output formats Pillow cannot write as RGB -----------------------------------------------------------------


@pytest.mark.parametrize("ext", [".xbm", ".msp", ".palm", ".blp", ".bufr", ".grib", ".h5"])
def test_unwritable_output_formats_are_refused_before_any_work(capsys, image_files, tmp_path, ext, monkeypatch):
    content, style = image_files
    out = tmp_path / f"out{ext}"
    monkeypatch.setattr(image_io, "probe_image", lambda p: pytest.fail("an input was opened before the check"))
    code, err = run(capsys, ["stylize", content, style, "-o", out, "--vgg-weights", MISSING_WEIGHTS, *FAST])
    assert code == 2
    one_error_line(err, str(out), "cannot write an RGB image")
    assert not out.exists()


def test_save_image_refuses_them_too(tmp_path):
    with pytest.raises(ValueError, match="out.xbm"):
        image_io.save_image(Image.new("RGB", (4, 4)), tmp_path / "out.xbm")
    assert list(tmp_path.iterdir()) == []


# --- 5. messages ---------------------------------------------------------------------------------------------------


def test_unwritable_output_folder_is_named_before_any_work(capsys, image_files, tmp_path, monkeypatch):
    from styleswap_ext._util import outputs as _outputs

    content, style = image_files
    out = tmp_path / "out.png"

    def refuse(*a, dir=None, **k):
        raise PermissionError(13, "Permission denied", str(dir))

    monkeypatch.setattr(_outputs.tempfile, "mkstemp", refuse)
    code, err = run(capsys, ["stylize", content, style, "-o", out, "--vgg-weights", MISSING_WEIGHTS, *FAST])
    assert code == 2
    one_error_line(err, str(out), "not writable", "Permission denied")
    assert ".part" not in err


def test_unwritable_real_folder(capsys, image_files):
    content, style = image_files  # /sys refuses new files even to root
    code, err = run(capsys, ["stylize", content, style, "-o", "/sys/out.png", "--vgg-weights", MISSING_WEIGHTS,
                             *FAST])
    assert code == 2
    one_error_line(err, "/sys/out.png", "not writable")


def test_an_image_above_the_pixel_limit_says_so(image_files, monkeypatch):
    content, _ = image_files  # 48 x 36 = 1728 px
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # error above 2x the limit
    with pytest.raises(image_io.ImageLoadError, match="larger than Pillow's safety limit") as info:
        image_io.load_image(content)
    assert "corrupt" not in str(info.value) and "STYLESWAP_MAX_IMAGE_PIXELS" in str(info.value)
    with pytest.raises(image_io.ImageLoadError, match="safety limit"):
        image_io.probe_image(content)
    monkeypatch.setenv("STYLESWAP_MAX_IMAGE_PIXELS", "0")  # the user means it: no limit
    assert image_io.load_image(content).size == (48, 36)
    monkeypatch.setenv("STYLESWAP_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match="STYLESWAP_MAX_IMAGE_PIXELS must be a whole number"):
        image_io.load_image(content)


@pytest.mark.parametrize("quiet", [True, False])
def test_decompression_bomb_warning_is_one_line_or_silent(capsys, image_files, vgg_weights, tmp_path, monkeypatch,
                                                         quiet):
    content, style = image_files  # 1728 px and 2304 px: above a limit of 1500, below twice it
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)
    argv = ["stylize", content, style, "-o", tmp_path / "out.png", "--vgg-weights", vgg_weights,
            "--method", "optimize", "--iters", "1"] + (["-q"] if quiet else [])
    with warnings.catch_warnings():  # as in a plain Python process, not pytest's warning recorder
        warnings.resetwarnings()
        warnings.simplefilter("default")
        warnings.showwarning = lambda m, c, f, n, file=None, line=None: sys.stderr.write(
            warnings.formatwarning(m, c, f, n, line))
        code, err = run(capsys, argv)
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.strip()]
    if quiet:
        assert err == ""
    else:
        warned = [line for line in lines if line.startswith("styleswap: warning: ")]
        assert warned and all("decompression bomb" in line for line in warned), err
        assert "DecompressionBombWarning" not in err and "warnings.warn" not in err


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(content=42), TypeError, r"^content must be a path"),
    (dict(content=torch.zeros(3, 8, 8, dtype=torch.uint8)), TypeError, r"^content tensor must be floating"),
    (dict(content=torch.zeros(4, 8, 8)), ValueError, r"^content tensor must be RGB"),
    (dict(style=[42]), TypeError, r"^style must be a path"),
    (dict(style=torch.zeros(1, 8, 8)), ValueError, r"^style tensor must be RGB"),
    (dict(content_size=0), ValueError, r"^content_size must be a positive int"),
    (dict(device="gpu"), ValueError, r"^device must be 'cpu', 'cuda'.*'gpu'"),
    (dict(device="meta"), ValueError, r"^device must be .*'meta'"),
    (dict(device=3.5), ValueError, r"^device must be"),
    (dict(alpha="0.5"), TypeError, r"^alpha must be a number"),
    (dict(style_weights=["x"]), TypeError, r"^style_weights\[0\] must be a number, got str"),
    (dict(style_weights=1.0), TypeError, r"^style_weights must be a sequence"),
    (dict(style=["a", "b", "c"], style_weights=[0, 1, 1e-46]), ValueError,
     r"^style_weights\[2\] \(1e-46\) is too small"),
])
def test_stylize_errors_name_the_argument(encoder, content_pil, style_pil, kwargs, exc, match):
    kw = dict(content=content_pil, style=style_pil, method="optimize", iters=1, encoder=encoder, progress=False)
    with pytest.raises(exc, match=match):
        stylize(**(kw | kwargs))


def test_numpy_scalars_are_numbers(encoder, content_pil, style_pil):
    kw = dict(method="optimize", iters=1, encoder=encoder, progress=False, device="cpu")
    out = stylize(content_pil, [style_pil, style_pil], alpha=np.float32(0.5),
                  style_weights=[np.float32(1), np.int64(2)], **kw)
    assert out.size == (48, 36)


def test_patch_bank_weights_name_the_argument():
    s = _features(1, (1, 4, 6, 6))
    with pytest.raises(TypeError, match=r"weights\[0\] must be a number"):
        PatchBank([s, s], weights=["x", 1])


@pytest.mark.parametrize("value, ok", [("0", True), ("96", True), ("1024", True), ("1", False), ("95", False),
                                       ("-1", False), ("big", False)])
def test_tile_size_minimum_is_tied_to_the_halo(capsys, value, ok):
    parser = cli.build_parser()
    argv = ["stylize", "c.png", "s.png", "-o", "o.png", "--tile-size", value]
    if ok:
        assert parser.parse_args(argv).tile_size == int(value)
        return
    with pytest.raises(SystemExit) as info:
        parser.parse_args(argv)
    assert info.value.code == 2
    one_error_line(capsys.readouterr().err, "--tile-size", ">= 96", "halo")


def test_the_minimum_is_eight_encoder_halos():
    from styleswap_ext.pipeline import tiling
    from styleswap_ext.models import VGGEncoder

    from styleswap_ext._util.choices import MIN_TILE_SIZE  # the CLI's constant (its parser imports no torch)

    assert tiling.min_tile_size(VGGEncoder()) == 8 * tiling.encoder_halo(VGGEncoder()) == MIN_TILE_SIZE == 96
