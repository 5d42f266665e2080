"""styleswap video: a video file through PyAV (frames, size, fps, audio kept) and a directory of frames."""

from __future__ import annotations

import sys
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from styleswap_ext.apps import cli

N_FRAMES, W, H, FPS = 8, 64, 48, 8


def _make_clip(path, audio=True):
    av = pytest.importorskip("av")
    out = av.open(str(path), "w")
    v = out.add_stream("mpeg4", rate=FPS)
    v.width, v.height, v.pix_fmt = W, H, "yuv420p"
    a = None
    if audio:
        a = out.add_stream("aac", rate=16000)
        a.layout = "mono"
    yy, xx = np.mgrid[0:H, 0:W]
    for i in range(N_FRAMES):
        img = np.stack([(xx * 4 + i * 8) % 256, (yy * 5) % 256, np.full_like(xx, 120)], -1).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        frame.time_base = Fraction(1, FPS)
        for p in v.encode(frame):
            out.mux(p)
    if a is not None:
        t = np.arange(16000 * N_FRAMES // FPS) / 16000
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for k, lo in enumerate(range(0, samples.size, 1024)):
            af = av.AudioFrame.from_ndarray(samples[None, lo:lo + 1024], format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = 16000, lo, Fraction(1, 16000)
            for p in a.encode(af):
                out.mux(p)
        for p in a.encode():
            out.mux(p)
    for p in v.encode():
        out.mux(p)
    out.close()


@pytest.fixture
def random_decoder_ckpt(tmp_path):
    from styleswap_ext.models import Decoder

    torch.manual_seed(0)
    path = tmp_path / "decoder.pth"
    torch.save(Decoder().state_dict(), path)
    return path


def _count_banks(monkeypatch):
    """Counts StyleBank constructions (style encodings) and calls of the prepare_bank / match_styles ops (the
    CPU's exact match at stride 1 reads the style maps; prepare_bank makes their inverse norms once)."""
    from styleswap_ext import pipeline

    calls = {"StyleBank": 0, "prepare_bank": 0, "match_styles": 0}
    orig = pipeline.StyleBank.__init__

    def counting(self, *a, **k):
        calls["StyleBank"] += 1
        orig(self, *a, **k)

    monkeypatch.setattr(pipeline.StyleBank, "__init__", counting)
    for name in ("prepare_bank", "match_styles"):
        op = getattr(torch.ops.styleswap, name)

        def wrapped(*a, _op=op, _name=name, **k):
            calls[_name] += 1
            return _op(*a, **k)

        monkeypatch.setattr(torch.ops.styleswap, name, wrapped)
    return calls


def test_video_file_keeps_frames_fps_size_and_audio(tmp_path, vgg_weights, random_decoder_ckpt, image_files,
                                                     monkeypatch):
    av = pytest.importorskip("av")
    src, dst = tmp_path / "clip.mp4", tmp_path / "out.mp4"
    _make_clip(src)
    banks = _count_banks(monkeypatch)
    rc = cli.main(["video", str(src), str(image_files[1]), "-o", str(dst), "--method", "decoder",
                   "--decoder-weights", str(random_decoder_ckpt), "--vgg-weights", str(vgg_weights),
                   "--device", "cpu", "-q"])
    assert rc == 0
    # the style is encoded once and its bank (inverse norms) built once; each frame is only matched
    assert banks == {"StyleBank": 1, "prepare_bank": 1, "match_styles": N_FRAMES}
    with av.open(str(dst)) as c:
        v = c.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height) == (W, H)
        assert v.average_rate == FPS
        assert len(c.streams.audio) == 1
        frames = list(c.decode(video=0))
    assert len(frames) == N_FRAMES
    assert not list(tmp_path.glob(".out*"))  # no temporary file left


def test_video_directory_of_frames(tmp_path, vgg_weights, random_decoder_ckpt, image_files, monkeypatch):
    src = tmp_path / "frames"
    src.mkdir()
    names = ["f0001.png", "f0002.png", "f0003.jpg"]
    for i, n in enumerate(names):
        Image.fromarray(np.full((36, 44, 3), 40 * i + 30, np.uint8)).save(src / n)
    banks = _count_banks(monkeypatch)
    rc = cli.main(["video", str(src), str(image_files[1]), "-o", str(tmp_path / "out"), "--method", "decoder",
                   "--decoder-weights", str(random_decoder_ckpt), "--vgg-weights", str(vgg_weights),
                   "--device", "cpu", "-q"])
    assert rc == 0 and banks == {"StyleBank": 1, "prepare_bank": 1, "match_styles": len(names)}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names
    assert Image.open(tmp_path / "out" / "f0001.png").size == (44, 36)


def test_video_directory_with_a_corrupt_frame_stops_with_one_error(tmp_path, vgg_weights, random_decoder_ckpt,
                                                                    image_files, capsys):
    """Frames are decoded ahead in the background (overlap.py): a corrupt one still stops the run with
    one error naming it, and the frames before it are written whole."""
    src = tmp_path / "frames"
    src.mkdir()
    Image.fromarray(np.full((36, 44, 3), 90, np.uint8)).save(src / "f0001.png")
    (src / "f0002.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    Image.fromarray(np.full((36, 44, 3), 30, np.uint8)).save(src / "f0003.png")
    rc = cli.main(["video", str(src), str(image_files[1]), "-o", str(tmp_path / "out"), "--method", "decoder",
                   "--decoder-weights", str(random_decoder_ckpt), "--vgg-weights", str(vgg_weights),
                   "--device", "cpu", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "f0002.png" in err[0], err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["f0001.png"]


def test_video_without_pyav_is_one_clear_error(tmp_path, image_files, monkeypatch, capsys):
    src = tmp_path / "clip.mp4"
    src.write_bytes(b"\0" * 16)
    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    rc = cli.main(["video", str(src), str(image_files[1]), "-o", str(tmp_path / "o.mp4"), "-q"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("\n") == 1 and "pip install av" in err
    assert not (tmp_path / "o.mp4").exists()


def test_video_file_needs_a_video_output(tmp_path, image_files, capsys):
    src = tmp_path / "clip.mp4"
    src.write_bytes(b"\0" * 16)
    rc = cli.main(["video", str(src), str(image_files[1]), "-o", str(tmp_path / "frame.png"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "must be a video file" in err, err
    assert not (tmp_path / "frame.png").exists()
