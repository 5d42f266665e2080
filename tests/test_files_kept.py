"""No run loses a file (issue 36, items 1, 2, 8, 10), through the real command line: an output that is
any file the run reads is refused before any work; train-decoder never turns a training photo, the
VGG weights or an existing checkpoint into its checkpoint unasked; `video DIR --max-frames` writes
that many frames; a re-run over a directory says what it replaces, or skips it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cli_process import FAST, MISSING_WEIGHTS, error_line, styleswap


def _masks(tmp_path):
    """A two-colour content mask (48x36, the content's size) and one style mask per style (48x48)."""
    cm = np.zeros((36, 48, 3), np.uint8)
    cm[:, 24:] = (255, 0, 0)
    sm = np.zeros((48, 48, 3), np.uint8)
    sm[:, 24:] = (255, 0, 0)
    paths = tmp_path / "cmask.png", tmp_path / "smask.png"
    Image.fromarray(cm).save(paths[0])
    Image.fromarray(sm).save(paths[1])
    return paths


def _decoder_file(path):
    from styleswap_ext.models import Decoder

    torch.manual_seed(0)
    torch.save(Decoder(instance_norm=False).state_dict(), path)
    return path


# --- 1. the output is none of the files the run reads ----------------------------------------------------------------


@pytest.mark.parametrize("which", ["content mask", "style mask", "vgg weights", "decoder weights"])
def test_stylize_refuses_an_output_that_is_a_mask_or_weights_file(tmp_path, image_files, vgg_weights, which):
    content, style = image_files
    cmask, smask = _masks(tmp_path)
    vgg = tmp_path / "vgg.png"  # weights files named like images: -o would take them
    shutil.copy(vgg_weights, vgg)
    decoder = _decoder_file(tmp_path / "decoder.png")
    out = {"content mask": cmask, "style mask": smask, "vgg weights": vgg, "decoder weights": decoder}[which]
    argv = ["stylize", content, style, "-o", out, "--content-mask", cmask, "--style-mask", smask,
            "--vgg-weights", vgg, "--decoder-weights", decoder, "--method", "decoder", "-q"]
    before = {p: p.read_bytes() for p in (cmask, smask, vgg, decoder)}
    proc = styleswap(*argv)
    assert proc.returncode == 2, proc.stderr
    error_line(proc, str(out), "is an input")
    assert {p: p.read_bytes() for p in before} == before


def test_the_first_style_mask_through_a_symlink(tmp_path, image_files):
    content, style = image_files
    cmask, smask = _masks(tmp_path)
    link = tmp_path / "link.png"
    link.symlink_to(smask)
    before = smask.read_bytes()
    proc = styleswap("stylize", content, style, style, "-o", link, "--content-mask", cmask, "--style-mask", smask,
                     smask, "--vgg-weights", MISSING_WEIGHTS, *FAST)
    assert proc.returncode == 2
    error_line(proc, "link.png", "is an input", "smask.png")
    assert smask.read_bytes() == before and link.is_symlink()


def test_demo_refuses_an_output_that_is_its_weights(tmp_path, vgg_weights):
    vgg = tmp_path / "vgg.png"
    shutil.copy(vgg_weights, vgg)
    before = vgg.read_bytes()
    proc = styleswap("demo", "-o", vgg, "--vgg-weights", vgg, "--method", "optimize", "--iters", "1",
                     "--content-size", "64", "-q")
    assert proc.returncode == 2
    error_line(proc, "vgg.png", "is an input")
    assert vgg.read_bytes() == before


# --- 2. train-decoder: --out is no input, and no checkpoint is replaced unasked ----------------------------------


@pytest.fixture
def data_dirs(tmp_path):
    rng = np.random.default_rng(0)
    dirs = []
    for kind in ("content", "style"):
        d = tmp_path / kind
        d.mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (24, 28, 3), dtype=np.uint8)).save(d / f"img{i}.png")
        dirs.append(d)
    return dirs


def _train(data_dirs, out, vgg, *extra):
    c, s = data_dirs
    return styleswap("train-decoder", "--content-dir", c, "--style-dir", s, "--out", out, "--image-size", "16",
                     "--batch-size", "1", "--val-fraction", "0.34", "--vgg-weights", vgg, "--iters", "1",
                     "--val-every", "100", "-q", *extra)


@pytest.mark.parametrize("which", ["a content photo", "a style image", "a new file in the content dir"])
def test_train_decoder_out_in_the_data_directories_is_refused(data_dirs, vgg_weights, which):
    content_dir, style_dir = data_dirs
    out = {"a content photo": content_dir / "img0.png", "a style image": style_dir / "img1.png",
           "a new file in the content dir": content_dir / "decoder.pth"}[which]
    before = {p: p.read_bytes() for d in data_dirs for p in d.iterdir()}
    proc = _train(data_dirs, out, vgg_weights)
    assert proc.returncode == 2, proc.stderr
    error_line(proc, f"--out {str(out)!r} is inside", "--content-dir" if out.parent == content_dir else "--style-dir")
    assert {p: p.read_bytes() for d in data_dirs for p in d.iterdir()} == before


def test_train_decoder_out_that_is_the_vgg_weights_is_refused(data_dirs, vgg_weights, tmp_path):
    vgg = tmp_path / "vgg.pth"
    shutil.copy(vgg_weights, vgg)
    before = vgg.read_bytes()
    proc = _train(data_dirs, vgg, vgg)
    assert proc.returncode == 2
    error_line(proc, "--out", "vgg.pth", "is an input")
    assert vgg.read_bytes() == before


def test_train_decoder_replaces_a_checkpoint_only_when_told(data_dirs, vgg_weights, tmp_path):
    out = tmp_path / "decoder.pth"
    assert _train(data_dirs, out, vgg_weights).returncode == 0
    first = out.read_bytes()
    proc = _train(data_dirs, out, vgg_weights, "--iters", "2")
    assert proc.returncode == 2
    error_line(proc, "--out", "exists", "--resume", "--overwrite")
    assert out.read_bytes() == first
    proc = _train(data_dirs, out, vgg_weights, "--resume", "--overwrite")
    assert proc.returncode == 2 and out.read_bytes() == first
    error_line(proc, "--resume", "--overwrite")
    proc = _train(data_dirs, out, vgg_weights, "--iters", "2", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert torch.load(out, weights_only=True)["iteration"] == 2  # continued
    proc = _train(data_dirs, out, vgg_weights, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert torch.load(out, weights_only=True)["iteration"] == 1  # started afresh


# --- 8. video DIR --max-frames -------------------------------------------------------------------------------------------


def test_video_directory_honours_max_frames(tmp_path, image_files, vgg_weights, content_pil):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(4):
        content_pil.save(frames / f"f{i:03d}.png")
    out = tmp_path / "styled"
    proc = styleswap("video", frames, image_files[1], "-o", out, "--max-frames", "2", "--vgg-weights", vgg_weights,
                     *FAST)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["f000.png", "f001.png"]


# --- 10. a re-run over a directory: a line per replaced file, or --skip-existing -------------------------------


def test_directory_rerun_names_what_it_replaces_or_skips_it(tmp_path, image_files, vgg_weights, content_pil):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.png"):
        content_pil.save(src / name)
    out = tmp_path / "out"
    argv = ["stylize", src, image_files[1], "-o", out, "--vgg-weights", vgg_weights, "--method", "optimize",
            "--iters", "1"]
    first = styleswap(*argv)
    assert first.returncode == 0 and "replaced" not in first.stderr, first.stderr
    (out / "a_stylized.png").write_bytes(b"an earlier result")
    again = styleswap(*argv)
    assert again.returncode == 0, again.stderr
    replaced = sorted(line for line in again.stderr.splitlines() if line.startswith("replaced "))
    assert replaced == [f"replaced {out / 'a_stylized.png'}", f"replaced {out / 'b_stylized.png'}"], again.stderr
    Image.open(out / "a_stylized.png").verify()
    (out / "a_stylized.png").write_bytes(b"an earlier result")
    (out / "b_stylized.png").unlink()  # as if the batch had been interrupted before b
    resumed = styleswap(*argv, "--skip-existing")
    assert resumed.returncode == 0, resumed.stderr
    assert "skipping 1 of 2 outputs" in resumed.stderr and "replaced" not in resumed.stderr, resumed.stderr
    assert (out / "a_stylized.png").read_bytes() == b"an earlier result"
    Image.open(out / "b_stylized.png").verify()
    done = styleswap(*argv, "--skip-existing", "--vgg-weights", MISSING_WEIGHTS)  # nothing to do: no model loads
    assert done.returncode == 0 and "skipping 2 of 2 outputs" in done.stderr, done.stderr


def test_frames_directory_rerun_names_what_it_replaces_or_skips_it(tmp_path, image_files, vgg_weights, content_pil):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        content_pil.save(frames / f"f{i}.png")
    out = tmp_path / "styled"
    out.mkdir()
    (out / "f0.png").write_bytes(b"an earlier frame")
    argv = ["video", frames, image_files[1], "-o", out, "--vgg-weights", vgg_weights, "--method", "optimize",
            "--iters", "1"]
    skipped = styleswap(*argv, "--skip-existing")
    assert skipped.returncode == 0, skipped.stderr
    assert (out / "f0.png").read_bytes() == b"an earlier frame" and (out / "f1.png").is_file()
    again = styleswap(*argv)
    assert again.returncode == 0, again.stderr
    assert [line for line in again.stderr.splitlines() if line.startswith("replaced ")] == \
        [f"replaced {out / 'f0.png'}", f"replaced {out / 'f1.png'}"], again.stderr
