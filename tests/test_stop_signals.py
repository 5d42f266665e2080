"""A stop signal leaves no temporary file (issue 36, item 3): SIGTERM (``timeout``, ``kill``, schedulers)
and SIGHUP take the clean-up path of Ctrl-C in every command, and the exit code says the run was
stopped (128 + the signal), with one line. Each test sends the signal to a real process while a
temporary file of an atomic write exists (or, for stylize, mid-work)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from cli_process import error_line, leftovers, start

# the test's hook in the child process: a save that writes, then says so and waits for the signal
SLOW_SAVE = """
import pathlib, time, torch
_real_save = torch.save
def _slow_save(obj, f, *a, **k):
    _real_save(obj, f, *a, **k)
    pathlib.Path({marker!r}).touch()
    time.sleep(120)
torch.save = _slow_save
"""
SLOW_WORK = """
import pathlib, time
import styleswap_ext.pipeline.stylization as _p
def _slow_optimize(*a, **k):
    pathlib.Path({marker!r}).touch()
    time.sleep(120)
_p.optimize_image = _slow_optimize
"""


def _wait_for(condition, proc, timeout=240.0):
    end = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before the signal: {proc.communicate()[1]}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail("the run never got to the point where the signal is sent")
        time.sleep(0.1)


def _stop(proc, signum):
    proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=60)
    except Exception:
        proc.kill()
        raise
    proc.stderr = err
    return proc


def _expect_stopped(proc, signum):
    if signum == signal.SIGINT:
        assert proc.returncode == 130, proc.stderr
        error_line(proc, "interrupted")
    else:
        assert proc.returncode == 128 + signum, (proc.returncode, proc.stderr)
        error_line(proc, f"stopped by {signal.Signals(signum).name}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_video_stopped_mid_encode_leaves_no_part_file(tmp_path, image_files, vgg_weights, signum):
    from test_video import _make_clip

    clip, out = tmp_path / "clip.mp4", tmp_path / "v.mp4"
    _make_clip(clip, audio=False)
    proc = start("video", clip, image_files[1], "-o", out, "--method", "optimize", "--iters", "100",
                 "--vgg-weights", vgg_weights, "-q")
    _wait_for(lambda: leftovers(tmp_path), proc)  # the hidden .v.mp4.*.part.mp4 is being written
    _expect_stopped(_stop(proc, signum), signum)
    assert leftovers(tmp_path) == [] and not out.exists()


def test_train_decoder_stopped_while_saving_leaves_no_part_file(tmp_path, vgg_weights):
    from test_training import _write_images

    content, style = _write_images(tmp_path / "c", 3, 0), _write_images(tmp_path / "s", 3, 1)
    out, marker = tmp_path / "decoder.pth", tmp_path / "saving"
    proc = start("train-decoder", "--content-dir", content, "--style-dir", style, "--out", out, "--image-size", "16",
                 "--batch-size", "1", "--iters", "1", "--val-every", "100", "--vgg-weights", vgg_weights, "-q",
                 patch=SLOW_SAVE.format(marker=str(marker)))
    _wait_for(marker.exists, proc)
    assert leftovers(tmp_path)  # the checkpoint's temporary file, written, not yet renamed
    _expect_stopped(_stop(proc, signal.SIGTERM), signal.SIGTERM)
    assert leftovers(tmp_path) == [] and not out.exists()


def test_weights_install_stopped_while_saving_leaves_no_part_file(tmp_path, vgg_weights, monkeypatch):
    cache, marker = tmp_path / "cache", tmp_path / "saving"
    monkeypatch.setenv("STYLESWAP_CACHE_DIR", str(cache))
    proc = start("weights", "install", vgg_weights, patch=SLOW_SAVE.format(marker=str(marker)))
    _wait_for(marker.exists, proc)
    assert leftovers(cache)
    _expect_stopped(_stop(proc, signal.SIGTERM), signal.SIGTERM)
    assert list(cache.iterdir()) == []


def test_stylize_stopped_mid_work_exits_143_and_writes_nothing(tmp_path, image_files, vgg_weights):
    out, marker = tmp_path / "out.png", tmp_path / "working"
    proc = start("stylize", *image_files, "-o", out, "--method", "optimize", "--vgg-weights", vgg_weights, "-q",
                 patch=SLOW_WORK.format(marker=str(marker)))
    _wait_for(marker.exists, proc)
    _expect_stopped(_stop(proc, signal.SIGTERM), signal.SIGTERM)
    assert not out.exists() and leftovers(tmp_path) == []


def test_nohup_keeps_sighup_ignored():
    """Only signals at their default disposition are taken over: under nohup a hangup stays ignored."""
    from styleswap_ext._util.signals import stop_signals_raise

    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stop_signals_raise():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, before)
