"""Stylising videos (through PyAV) and directories of frames, with one style bank for all frames.

* A video file (any container/codec FFmpeg reads: .mp4, .mov, .mkv, .webm, .avi, ...) is decoded
  with PyAV (``pip install av``, or ``pip install 'styleswap[video]'``; the wheel ships FFmpeg),
  every frame is stylised, and the frames are encoded at the input's frame timestamps (so the same
  frame rate) with ``codec`` (default by container: H.264 (libx264) for .mp4/.mov/.mkv, VP9 for
  .webm, MPEG-4 part 2 where no better encoder is in the FFmpeg build). The audio stream(s) are
  copied unchanged (remuxed, not re-encoded). The output is written to a temporary file next to it
  and renamed at the end, so a failed run leaves no output file.
* A directory of frames becomes a directory of frames with the same file names.

The caller passes ``stylize_frame``: ``(1, 3, H, W)`` float RGB in [0, 1] -> same layout; the CLI
builds it from :func:`styleswap_ext.pipeline.stylize` with a
:class:`~styleswap_ext.pipeline.StyleBank`, so the styles are encoded once per run.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from . import image_io
from .._util.atomic import atomic_path
from .overlap import BackgroundSaver, Prefetcher

__all__ = ["VideoDependencyError", "require_av", "stylize_video", "stylize_frames_dir", "default_codec",
           "VIDEO_EXTENSIONS", "is_video_path"]

FrameFn = Callable[[torch.Tensor], torch.Tensor]
VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".gif", ".ogv"}


class VideoDependencyError(RuntimeError):
    """PyAV is not installed."""


def require_av():
    try:
        import av  # noqa: F401
    except ImportError as e:
        raise VideoDependencyError(
            "video files need PyAV, which is not installed: pip install av "
            "(or pip install 'styleswap[video]'); a directory of frames works without it"
        ) from e
    return av


def is_video_path(path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def default_codec(path) -> str:
    av = require_av()
    ext = Path(path).suffix.lower()
    prefs = {".webm": ["libvpx-vp9", "libvpx"], ".gif": ["gif"], ".avi": ["mpeg4"],
             ".ogv": ["libtheora", "mpeg4"]}.get(ext, ["libx264", "mpeg4"])
    for c in prefs:
        if c in av.codecs_available:
            return c
    return prefs[-1]


# encoders whose quality is a CRF (set from ``quality``), with the range each accepts; libx264 would clamp
# anything above 51 (8-bit) without a word
CRF_RANGE = {"libx264": (0, 51), "libvpx-vp9": (0, 63)}
SUGGESTED_CODECS = ("libx264", "libvpx-vp9", "mpeg4")  # tried quietly (libx265, SVT-AV1 print banners)


def _stream_settings(codec: str, quality: int) -> tuple:
    """(pix_fmt, options) of the output stream for ``codec``."""
    pix_fmt = "yuv420p" if codec not in ("gif",) else "rgb8"
    return pix_fmt, ({"crf": str(quality)} if codec in CRF_RANGE else {})


def encoder_problem(dst, codec: str, quality: int = 18) -> Optional[str]:
    """Why ``codec`` cannot write the video ``dst`` (its container from the extension), or None: a trial
    encode of one small frame into a temporary file, with the stream settings of :func:`stylize_video`.
    Run before any work, so that an audio or image codec, an encoder this machine cannot open (e.g. a
    hardware one) or a container that does not take it is refused at once, not after the first frame."""
    import tempfile

    av = require_av()
    if codec not in av.codecs_available:
        return "it is not in this FFmpeg build"
    try:
        if av.Codec(codec, "w").type != "video":
            return f"it is an {av.Codec(codec, 'w').type} encoder, not a video one"
    except Exception:  # noqa: BLE001 - a decoder only
        return "it is not an encoder"
    pix_fmt, options = _stream_settings(codec, quality)
    with tempfile.TemporaryDirectory(prefix="styleswap-codec-") as d:
        try:
            out = av.open(str(Path(d) / f"trial{Path(dst).suffix}"), "w")
            try:
                stream = out.add_stream(codec, rate=25)
                stream.width, stream.height, stream.pix_fmt = 64, 64, pix_fmt
                stream.options = options
                frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
                frame.pts = 0
                for packet in stream.encode(frame):
                    out.mux(packet)
                for packet in stream.encode():
                    out.mux(packet)
            finally:
                out.close()
        except Exception as e:  # noqa: BLE001 - whatever FFmpeg says, it cannot write this video
            return " ".join(str(e).split()) or type(e).__name__
    return None


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def _to_array(t: torch.Tensor) -> np.ndarray:
    return t[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()


def stylize_video(src, dst, stylize_frame: FrameFn, *, codec: Optional[str] = None, quality: int = 18,
                  max_frames: Optional[int] = None, progress: bool = True) -> dict:
    """Stylise every frame of the video ``src`` into ``dst``; copies the audio. -> summary dict.

    ``quality``: the CRF for libx264/libvpx-vp9 (lower = better; 18 ~ visually lossless); other
    codecs use FFmpeg's defaults.
    ``max_frames``: stop after that many frames (preview); None = all.
    """
    av = require_av()
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"input video not found: {src}")
    codec = codec or default_codec(dst)
    if codec not in av.codecs_available:
        raise ValueError(f"codec {codec!r} is not available in this FFmpeg build")
    try:
        inp = av.open(str(src))
    except Exception as e:
        raise RuntimeError(f"cannot read video {src}: {e}") from e
    frames = 0
    try:
        with atomic_path(dst) as tmp:
            if not inp.streams.video:
                raise RuntimeError(f"{src} has no video stream")
            vin = inp.streams.video[0]
            vin.thread_type = "AUTO"
            audio_in = list(inp.streams.audio)
            rate = vin.average_rate or vin.guessed_rate or Fraction(25)
            total = vin.frames or None
            if max_frames is not None:
                total = min(total, max_frames) if total else max_frames
            out = av.open(str(tmp), "w")
            try:
                vout = out.add_stream(codec, rate=rate)
                vout.pix_fmt, options = _stream_settings(codec, quality)
                if options:
                    vout.options = options
                audio_out = {a.index: out.add_stream_from_template(a) for a in audio_in}
                pending = []  # audio packets before the video stream's size is known
                configured = False
                bar = tqdm(total=total, desc="frames", unit="frame", file=sys.stderr, disable=not progress,
                           dynamic_ncols=True)
                done = False
                for packet in inp.demux(vin, *audio_in):
                    if packet.stream.type == "audio":
                        if packet.dts is None:
                            continue
                        packet.stream = audio_out[packet.stream.index]
                        if configured:
                            out.mux(packet)
                        else:
                            pending.append(packet)
                        continue
                    if done:
                        continue
                    for frame in packet.decode():
                        result = _to_array(stylize_frame(_to_tensor(frame.to_ndarray(format="rgb24"))))
                        if not configured:
                            vout.height, vout.width = result.shape[:2]
                            configured = True
                        vf = av.VideoFrame.from_ndarray(result, format="rgb24")
                        vf.pts, vf.time_base = frame.pts, frame.time_base
                        for p in vout.encode(vf):
                            out.mux(p)
                        if pending:
                            for p in pending:
                                out.mux(p)
                            pending = []
                        frames += 1
                        bar.update(1)
                        if max_frames is not None and frames >= max_frames:
                            done = True
                            break
                bar.close()
                if not configured:
                    raise RuntimeError(f"{src} has no decodable video frames")
                for p in vout.encode():
                    out.mux(p)
            finally:
                out.close()
    finally:
        inp.close()
    return {"frames": frames, "fps": float(rate), "codec": codec, "audio_streams": len(audio_in),
            "size": (vout.width, vout.height)}


def stylize_frames_dir(src_dir, dst_dir, stylize_frame: FrameFn, *, progress: bool = True,
                       files=None, saved: Optional[Callable[[Path], object]] = None) -> int:
    """Every image of ``src_dir`` -> ``dst_dir`` under the same file name. -> number of frames.

    ``files``: the frames to do (default: all images of ``src_dir``, sorted); the torchrun sharding
    passes its share here. ``saved(path)``, if given, is called after each frame is written.
    """
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    if files is None:
        files = sorted(p for p in src_dir.iterdir() if image_io.is_image_path(p))
    if not files and not any(image_io.is_image_path(p) for p in src_dir.iterdir()):
        raise image_io.ImageLoadError(f"no image files in directory: {src_dir}")
    dst_dir.mkdir(parents=True, exist_ok=True)

    def check(done):  # the first failed save stops the run, as a failed frame does
        for path, exc in done:
            if exc is not None:
                raise exc
            if saved is not None:
                saved(path)

    # frames decoded one ahead and saved behind, in background threads (overlap.py)
    with Prefetcher(lambda p: image_io.load_image(p), files) as frames, BackgroundSaver(image_io.save_image) as saver:
        for p, frame in tqdm(frames, total=len(files), desc="frames", unit="frame", file=sys.stderr,
                             disable=not progress, dynamic_ncols=True):
            out = stylize_frame(image_io.pil_to_tensor(frame.result()).unsqueeze(0))
            check(saver.submit(dst_dir / p.name, image_io.tensor_to_pil(out), dst_dir / p.name))
        check(saver.finish())
    return len(files)
