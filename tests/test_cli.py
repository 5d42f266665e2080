"""The styleswap command line: success paths and every error path (exit code, one stderr line,
no output file left behind)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from styleswap_ext.apps import cli
from styleswap_ext import models, pipeline

REPO = Path(__file__).resolve().parents[1]
FAST = ["--method", "optimize", "--iters", "2", "-q"]


@pytest.fixture(autouse=True)
def _no_packaged_decoder(monkeypatch):
    monkeypatch.setattr(models.loading, "packaged_decoder_path", lambda: None)


def run(capsys, argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.err


def assert_one_error_line(err, *needles):
    # stage lines ("styleswap: 2.1 s ...", stderr not a terminal: styleswap_ext/_util/stages.py) may come first
    lines = [line for line in err.strip().splitlines() if not re.match(r"styleswap: \d+\.\d s ", line)]
    assert len(lines) == 1, err
    assert lines[0].startswith("styleswap: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_stylize_file_success(capsys, image_files, vgg_weights, tmp_path):
    content, style = image_files
    out = tmp_path / "out.jpg"
    code, err = run(capsys, ["stylize", content, style, "-o", out, "--vgg-weights", vgg_weights, *FAST])
    assert code == 0, err
    img = Image.open(out)
    assert img.format == "JPEG" and img.size == (48, 36)


def test_a_single_content_file_is_decoded_once(capsys, image_files, vgg_weights, tmp_path, monkeypatch):
    """The content is decoded once (a 4096 px PNG takes ~0.5 s): before the models load only its header is
    checked (image_io.probe_image), the decode runs in the background (overlap.py)."""
    from styleswap_ext.pipeline import image_io

    content, style = image_files
    decoded = []
    real = image_io.load_image
    monkeypatch.setattr(image_io, "load_image", lambda p: decoded.append(Path(p).name) or real(p))
    code, err = run(capsys, ["stylize", content, style, "-o", tmp_path / "out.png", "--vgg-weights", vgg_weights, *FAST])
    assert code == 0, err
    assert decoded.count(Path(content).name) == 1 and decoded.count(Path(style).name) == 1, decoded


def test_stylize_all_options(capsys, image_files, vgg_weights, tmp_path, monkeypatch):
    content, style = image_files
    monkeypatch.setenv("STYLESWAP_VGG19_WEIGHTS", str(vgg_weights))
    out = tmp_path / "out.png"
    code, err = run(capsys, ["stylize", content, style, style, "-o", out, "--method", "optimize",
                             "--patch-size", "5", "--stride", "2", "--content-size", "60", "--style-size", "48",
                             "--alpha", "0.5", "--preserve-color", "--iters", "2", "--device", "cpu",
                             "--precision", "bf16", "--style-weights", "1", "0.5", "--init", "random",
                             "--lr", "0.1", "--tv-weight", "0"])
    assert code == 0, err
    assert "wrote" in err  # not quiet: says what it wrote
    assert Image.open(out).size == (60, 44)  # 60x45 cropped to a multiple of 4


def test_decoder_weights_option(capsys, image_files, vgg_weights, tmp_path):
    content, style = image_files
    torch.manual_seed(0)
    weights = tmp_path / "dec.pth"
    torch.save(models.Decoder().state_dict(), weights)
    out = tmp_path / "out.png"
    code, err = run(capsys, ["stylize", content, style, "-o", out, "--vgg-weights", vgg_weights,
                             "--decoder-weights", weights, "-q"])
    assert code == 0, err and out.is_file()


@pytest.mark.parametrize("kind", ["rgba", "greyscale", "sixteen_bit", "exif"])
def test_unusual_inputs(capsys, image_files, vgg_weights, tmp_path, kind, content_pil):
    _, style = image_files
    arr = np.asarray(content_pil)
    path = tmp_path / f"{kind}.png"
    if kind == "rgba":
        Image.fromarray(np.dstack([arr, np.full(arr.shape[:2], 128, np.uint8)]), "RGBA").save(path)
    elif kind == "greyscale":
        content_pil.convert("L").save(path)
    elif kind == "sixteen_bit":
        Image.fromarray(arr[..., 0].astype(np.uint16) * 257).save(path)
    else:
        path = tmp_path / "exif.jpg"
        exif = Image.Exif()
        exif[0x0112] = 8
        content_pil.save(path, exif=exif.tobytes())
    out = tmp_path / "out.png"
    code, err = run(capsys, ["stylize", path, style, "-o", out, "--vgg-weights", vgg_weights, *FAST])
    assert code == 0, err
    assert Image.open(out).size == ((36, 48) if kind == "exif" else (48, 36))


def test_directory_of_images(capsys, image_files, vgg_weights, tmp_path, content_pil):
    _, style = image_files
    src = tmp_path / "in"
    src.mkdir()
    content_pil.save(src / "one.png")
    content_pil.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(src / "two.jpg")
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "outdir"
    code, err = run(capsys, ["stylize", src, style, "-o", out, "--vgg-weights", vgg_weights, *FAST])
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["one_stylized.png", "two_stylized.jpg"]


def test_directory_with_a_corrupt_image(capsys, image_files, vgg_weights, tmp_path, content_pil):
    _, style = image_files
    src = tmp_path / "in"
    src.mkdir()
    content_pil.save(src / "good.png")
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "outdir"
    code, err = run(capsys, ["stylize", src, style, "-o", out, "--vgg-weights", vgg_weights, *FAST])
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("styleswap: error: ") for line in lines)
    assert "bad.png" in lines[0] and "1 of 2 images failed" in lines[1]
    assert [p.name for p in out.iterdir()] == ["good_stylized.png"]


def test_directory_with_a_failed_save(capsys, image_files, vgg_weights, tmp_path, content_pil, monkeypatch):
    """Saves run in the background (styleswap_ext/pipeline/overlap.py): a failed one is still reported with
    its image, the others are written, and no temporary file is left."""
    _, style = image_files
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        content_pil.save(src / name)
    real_save = Image.Image.save

    def save(self, fp, *args, **kwargs):
        if "b_stylized" in str(getattr(fp, "name", fp)):
            raise OSError(28, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    out = tmp_path / "outdir"
    code, err = run(capsys, ["stylize", src, style, "-o", out, "--vgg-weights", vgg_weights, *FAST])
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("styleswap: error: ") for line in lines), err
    assert "No space left on device" in lines[0] and "b_stylized.png" in lines[0], lines[0]
    assert "1 of 3 images failed" in lines[1]
    assert sorted(p.name for p in out.iterdir()) == ["a_stylized.png", "c_stylized.png"]


def test_demo(capsys, vgg_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("STYLESWAP_VGG19_WEIGHTS", str(vgg_weights))
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, ["demo", "--content-size", "64", "--iters", "2"])
    assert code == 0, err
    assert "--method optimize" in err
    img = Image.open(tmp_path / "styleswap-demo.png")
    assert img.format == "PNG" and max(img.size) == 64


def test_demo_uses_the_installed_decoder(capsys, vgg_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("STYLESWAP_VGG19_WEIGHTS", str(vgg_weights))
    monkeypatch.chdir(tmp_path)
    weights = tmp_path / "decoder.pth"
    torch.save(models.Decoder(instance_norm=False).state_dict(), weights)
    monkeypatch.setattr(models.loading, "packaged_decoder_path", lambda: weights)
    code, err = run(capsys, ["demo"])
    assert code == 0, err
    assert "trained decoder" in err and "optimize" not in err
    assert max(Image.open(tmp_path / "styleswap-demo.png").size) == cli.DEMO_SIZE["decoder"]
    # --method optimize overrides the installed decoder
    code, err = run(capsys, ["demo", "--content-size", "64", "--iters", "2", "--method", "optimize", "-o", "o.png"])
    assert code == 0, err
    assert "using --method optimize" in err and "no trained decoder" not in err
    assert (tmp_path / "o.png").is_file()


def test_demo_method_decoder_without_one(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, ["demo", "--method", "decoder"])
    assert code == 1
    assert_one_error_line(err, "no trained decoder")
    assert not (tmp_path / "styleswap-demo.png").exists()


def test_demo_assets_are_credited():
    credits = (cli.ASSETS / "CREDITS.md").read_text()
    for asset in (cli.DEMO_CONTENT, cli.DEMO_STYLE):
        assert asset.is_file() and asset.stat().st_size < 80_000
        assert asset.name in credits
    assert "Public domain" in credits or "public domain" in credits


# --- error paths --------------------------------------------------------------------------------


@pytest.mark.parametrize("args, needles", [
    (["--patch-size", "0"], ["--patch-size", "'0'"]),
    (["--patch-size", "three"], ["--patch-size"]),
    (["--alpha", "7"], ["--alpha", "'7'"]),
    (["--alpha", "nan"], ["--alpha"]),
    (["--stride", "4"], ["--stride (4)", "--patch-size (3)"]),
    (["--iters", "0"], ["--iters"]),
    (["--content-size", "-5"], ["--content-size"]),
    (["--method", "magic"], ["--method"]),
    (["--device", "tpu"], ["--device"]),
    (["--precision", "fp8"], ["--precision"]),
    (["--lr", "0"], ["--lr"]),
    (["--style-weights", "1", "2"], ["--style-weights", "2 values for 1 style"]),
    (["--style-weights", "0"], ["--style-weights"]),
    (["--bogus"], ["unrecognized arguments"]),
])
def test_bad_option_values(capsys, image_files, tmp_path, args, needles):
    content, style = image_files
    out = tmp_path / "out.png"
    code, err = run(capsys, ["stylize", content, style, "-o", out, *args])
    assert code == 2
    assert_one_error_line(err, *needles)
    assert not out.exists()


def test_missing_arguments(capsys, tmp_path):
    code, err = run(capsys, [])
    assert code == 2
    assert_one_error_line(err, "required")
    code, err = run(capsys, ["stylize", "a.png"])
    assert code == 2
    assert_one_error_line(err, "required")


@pytest.mark.parametrize("output, needle", [("out.xyz", "'.xyz'"), ("out", "no extension"),
                                            ("nodir/out.png", "does not exist")])
def test_bad_output_path(capsys, image_files, tmp_path, output, needle):
    content, style = image_files
    code, err = run(capsys, ["stylize", content, style, "-o", tmp_path / output])
    assert code == 2
    assert_one_error_line(err, needle)
    assert not (tmp_path / output).exists()


def _bad_file(tmp_path, kind, content_pil):
    path = tmp_path / f"{kind}.jpg"
    if kind == "missing":
        pass
    elif kind == "text":
        path.write_text("just some text\n")
    elif kind == "corrupt":
        content_pil.save(path, quality=95)
        data = bytearray(path.read_bytes())
        path.write_bytes(bytes(data[:200]))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "unreadable":
        content_pil.save(path)
        path.chmod(0)
    return path


@pytest.mark.parametrize("which", ["content", "style"])
@pytest.mark.parametrize("kind", ["missing", "text", "corrupt", "empty", "unreadable"])
def test_bad_input_files(capsys, image_files, vgg_weights, tmp_path, content_pil, kind, which):
    if kind == "unreadable" and os.geteuid() == 0:
        pytest.skip("running as root: file permissions do not stop reads")
    content, style = image_files
    bad = _bad_file(tmp_path, kind, content_pil)
    out = tmp_path / "out.png"
    argv = ["stylize", bad if which == "content" else content, bad if which == "style" else style,
            "-o", out, "--vgg-weights", vgg_weights, *FAST]
    code, err = run(capsys, argv)
    assert code == 1
    assert_one_error_line(err, str(bad))
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.png")] == []


def test_no_trained_decoder(capsys, image_files, vgg_weights, tmp_path):
    content, style = image_files
    out = tmp_path / "out.png"
    code, err = run(capsys, ["stylize", content, style, "-o", out, "--vgg-weights", vgg_weights])
    assert code == 1
    assert_one_error_line(err, "no trained decoder", "--method optimize")
    assert not out.exists()


def test_missing_vgg_weights_offline(capsys, image_files, tmp_path, monkeypatch):
    def offline(url, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    content, style = image_files
    out = tmp_path / "out.png"
    code, err = run(capsys, ["stylize", content, style, "-o", out, *FAST])
    assert code == 1
    assert_one_error_line(err, "--vgg-weights", "STYLESWAP_VGG19_WEIGHTS")
    assert not out.exists()
    code, err = run(capsys, ["stylize", content, style, "-o", out, "--vgg-weights", tmp_path / "no.pth", *FAST])
    assert code == 1
    assert_one_error_line(err, "no.pth")


@pytest.mark.parametrize("exc", [torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB"),
                                 MemoryError(),
                                 RuntimeError("[enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: "
                                              "can't allocate memory: you tried to allocate 99 bytes")])
def test_out_of_memory(capsys, image_files, vgg_weights, tmp_path, monkeypatch, exc):
    def oom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(pipeline, "stylize", oom)
    content, style = image_files
    out = tmp_path / "out.png"
    code, err = run(capsys, ["stylize", content, style, "-o", out, "--vgg-weights", vgg_weights, *FAST])
    assert code == 1
    assert_one_error_line(err, "out of memory", "--content-size")
    assert not out.exists()


def test_failure_during_save_leaves_no_file(capsys, image_files, vgg_weights, tmp_path, monkeypatch):
    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"half an image")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    content, style = image_files
    out = tmp_path / "out.png"
    code, err = run(capsys, ["stylize", content, style, "-o", out, "--vgg-weights", vgg_weights, *FAST])
    assert code == 1
    assert_one_error_line(err, "No space left on device")
    assert not out.exists() and not any(p.name.startswith(".out.png") for p in tmp_path.iterdir())


def test_python_dash_m_entry_point(image_files, tmp_path):
    """A real process: `python -m styleswap_ext` exits 2 with one stderr line and no traceback."""
    content, style = image_files
    out = tmp_path / "out.png"
    env = {k: v for k, v in os.environ.items() if k != "STYLESWAP_DEBUG"}
    proc = subprocess.run([sys.executable, "-m", "styleswap_ext", "stylize", str(content), str(style),
                           "-o", str(out), "--patch-size", "0"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert_one_error_line(proc.stderr, "--patch-size")
    assert proc.stdout == "" and not out.exists()


def test_help(capsys):
    assert cli.main(["stylize", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--method", "--patch-size", "--stride", "--content-size", "--style-size", "--alpha",
                   "--preserve-color", "--iters", "--device", "--precision", "--vgg-weights", "--decoder-weights"):
        assert option in out


def test_counts_in_messages_agree_with_their_noun(capsys, image_files, tmp_path):
    content, style = image_files
    code, err = run(capsys, ["stylize", content, style, "-o", tmp_path / "o.png", "--style-weights", "1", "2"])
    assert code == 2 and err.strip().endswith("--style-weights got 2 values for 1 style")  # was "1 styles"
    code, err = run(capsys, ["stylize", content, style, style, "-o", tmp_path / "o.png", "--style-weights", "1"])
    assert code == 2 and err.strip().endswith("--style-weights got 1 value for 2 styles")


def test_no_help_text_points_into_the_checkout(capsys):
    """An installed wheel has no docs/ folder: --help explains instead of naming its files."""
    parser = cli.build_parser()
    commands = [a for a in parser._actions if a.choices and isinstance(a.choices, dict)][0].choices
    texts = [parser.format_help()]
    for name, sub in commands.items():
        texts.append(sub.format_help())
        texts += [sub2.format_help() for a in sub._actions if isinstance(a.choices, dict) for sub2 in a.choices.values()]
    assert len(texts) > 5
    for text in texts:
        assert "docs/" not in text and ".md" not in text, text


@pytest.mark.parametrize("command, frame", [("stylize", "a.png"), ("video", "f0001.png")])
@pytest.mark.parametrize("out_name", ["out.png", "out.mp4"])
def test_directory_of_images_needs_a_directory_output(tmp_path, image_files, capsys, out_name, command, frame):
    """stylize on a directory of images, or video on a directory of frames, writes a directory: -o named
    like a file is refused before anything is created (it used to become a directory named out.png)."""
    src = tmp_path / "photos"
    src.mkdir()
    Image.fromarray(np.full((36, 44, 3), 90, np.uint8)).save(src / frame)
    rc = cli.main([command, str(src), str(image_files[1]), "-o", str(tmp_path / out_name), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "must be a directory" in err and out_name in err, err
    assert not (tmp_path / out_name).exists()
