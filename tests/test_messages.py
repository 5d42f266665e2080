"""Messages that name the real file, one line each (issue 36, item 9; the masks' part is in
test_mask_checks.py, the weights files' in test_weights_cache.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import styleswap_ext as ss
from cli_process import FAST, MISSING_WEIGHTS, error_line, leftovers, styleswap

# the test's hook in the child process: every temporary file of an atomic write is on a full disk
# (a symlink to /dev/full, whose writes fail with ENOSPC); the trial file of the writable-folder check too,
# but that one is never written to
FULL_DISK = """
import os, tempfile
_real_mkstemp = tempfile.mkstemp
def _on_a_full_disk(*a, **k):
    fd, name = _real_mkstemp(*a, **k)
    os.close(fd)
    os.unlink(name)
    os.symlink("/dev/full", name)
    return os.open(name, os.O_WRONLY), name
tempfile.mkstemp = _on_a_full_disk
"""


# --- a full disk names the target, never the hidden temporary file ------------------------------------------------------


def _full_disk_line(proc, target):
    assert proc.returncode == 1, proc.stderr
    line = error_line(proc, "No space left on device", str(target))
    assert ".part" not in line
    assert leftovers(target.parent) == [] and not target.exists()


def test_full_disk_while_saving_a_picture(tmp_path, image_files, vgg_weights):
    out = tmp_path / "out.png"
    proc = styleswap("stylize", *image_files, "-o", out, "--vgg-weights", vgg_weights, *FAST, patch=FULL_DISK)
    _full_disk_line(proc, out)


def test_full_disk_while_writing_a_video(tmp_path, image_files, vgg_weights):
    from test_video import _make_clip

    clip, out = tmp_path / "clip.mp4", tmp_path / "out" / "v.mp4"
    out.parent.mkdir()
    _make_clip(clip, audio=False)
    proc = styleswap("video", clip, image_files[1], "-o", out, "--max-frames", "2", "--vgg-weights", vgg_weights,
                     *FAST, patch=FULL_DISK)
    _full_disk_line(proc, out)


def test_full_disk_while_installing_the_weights(tmp_path, vgg_weights, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("STYLESWAP_CACHE_DIR", str(cache))
    proc = styleswap("weights", "install", vgg_weights, patch=FULL_DISK)
    _full_disk_line(proc, cache / "vgg19_conv1_1-conv3_1_torchvision.pth")


def test_an_unwritable_output_folder_is_one_sentence(tmp_path, content_pil, image_files):
    src = tmp_path / "in"
    src.mkdir()
    content_pil.save(src / "a.png")
    proc = styleswap("stylize", src, image_files[1], "-o", "/sys/styled", "--vgg-weights", MISSING_WEIGHTS, *FAST)
    assert proc.returncode == 2
    line = error_line(proc, "the output folder '/sys' is not writable")
    assert "cannot write to the output folder" not in line


# --- video encoder options ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("option, needles", [
    (["--codec", "png"], ["--codec 'png' cannot write .mp4 video", "libx264"]),
    (["--codec", "aac"], ["--codec 'aac'", "audio encoder", "libx264"]),
    (["--crf", "99999"], ["--crf must be an integer in [0, 51] for libx264, got 99999"]),
])
def test_codec_and_crf_are_usage_errors_naming_what_works(tmp_path, image_files, option, needles):
    pytest.importorskip("av")
    from test_video import _make_clip

    clip, out = tmp_path / "clip.mp4", tmp_path / "v.mp4"
    _make_clip(clip, audio=False)
    proc = styleswap("video", clip, image_files[1], "-o", out, *option, "--vgg-weights", MISSING_WEIGHTS, *FAST)
    assert proc.returncode == 2, proc.stderr
    error_line(proc, *needles)
    assert not out.exists() and leftovers(tmp_path) == []


# --- train-decoder --------------------------------------------------------------------------------------------------------


def test_train_decoder_with_a_missing_directory_exits_2(tmp_path, vgg_weights):
    from test_training import _write_images

    style = _write_images(tmp_path / "s", 2, 1)
    proc = styleswap("train-decoder", "--content-dir", tmp_path / "nope", "--style-dir", style, "--out",
                     tmp_path / "d.pth", "--vgg-weights", vgg_weights, "--iters", "1")
    assert proc.returncode == 2
    error_line(proc, "--content-dir", "nope", "directory not found")


def test_train_decoder_draws_no_progress_bar_into_a_log(tmp_path, vgg_weights):
    """stderr is a pipe here, as in a log file: the summary lines, but no progress bar."""
    from test_training import _write_images

    content, style = _write_images(tmp_path / "c", 3, 0), _write_images(tmp_path / "s", 3, 1)
    proc = styleswap("train-decoder", "--content-dir", content, "--style-dir", style, "--out", tmp_path / "d.pth",
                     "--image-size", "16", "--batch-size", "1", "--iters", "2", "--val-every", "100",
                     "--vgg-weights", vgg_weights)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "it/s]" not in proc.stderr, proc.stderr
    assert "styleswap train-decoder: reached iteration 2" in proc.stderr


# --- Python API -------------------------------------------------------------------------------------------------------------


def _features(seed, shape):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("scale", [1e20, 1e30, 1e38])
def test_approximate_search_says_too_large_for_float32_as_the_exact_one(scale):
    s, c = _features(1, (1, 8, 10, 10)) * scale, _features(3, (1, 8, 9, 9))
    for call in (lambda: ss.match_patches(c, s, search="approximate"),
                 lambda: ss.PatchBank(s, search="approximate"),
                 lambda: ss.match_patches(c, s)):
        with pytest.raises(ValueError, match=r"styles\[0\] has a patch of norm .* too large for float32 matching"):
            call()
    with pytest.raises(ValueError, match="NaN or Inf"):  # a style that does hold Inf still says so
        ss.match_patches(c, s * float("inf"), search="approximate")


@pytest.mark.parametrize("seed", [2 ** 63, 2 ** 64])
def test_a_seed_beyond_int64_is_a_value_error_naming_it(seed):
    s, c = _features(1, (1, 8, 10, 10)), _features(3, (1, 8, 9, 9))
    for call in (lambda: ss.match_patches(c, s, search="approximate", seed=seed),
                 lambda: ss.PatchBank(s, search="approximate", seed=seed),
                 lambda: ss.style_swap(c, s, search="approximate", seed=seed)):
        with pytest.raises(ValueError, match=r"^seed must be an int in \[0, 2\*\*63 - 1\]"):
            call()
    ss.match_patches(c, s, search="approximate", seed=2 ** 63 - 1)  # the largest works
