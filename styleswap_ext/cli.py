"""The ``styleswap`` command line (also ``python -m styleswap_ext``).

    styleswap stylize CONTENT STYLE [STYLE ...] -o OUT [options]
    styleswap video IN STYLE [STYLE ...] -o OUT [options]
    styleswap demo [-o styleswap-demo.png]
    styleswap train-decoder --content-dir DIR --style-dir DIR --out CKPT [options]   (see training.py)

``stylize DIR`` and ``video FRAMES_DIR`` launched by ``torchrun --nproc_per_node N`` shard the
files across the processes (see :mod:`styleswap_ext.distributed`).

Errors print exactly one line ``styleswap: error: ...`` on stderr, never a traceback
(set ``STYLESWAP_DEBUG=1`` to get one): exit code 2 for bad arguments (argparse's convention),
1 for failures while running (unreadable image, missing weights, out of memory, ...). Outputs are
written atomically, so a failed run leaves no output file.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

PROG = "styleswap"
ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_CONTENT = ASSETS / "cat.jpg"
DEMO_STYLE = ASSETS / "starry_night.jpg"
# The demo must finish in well under two minutes on a 2-core CPU: 60 Adam steps at lr 0.1 give the
# look of the authors' 100 steps at lr 0.05 (compared by eye on this pair) in 60% of the time, at
# 256 px; one decoder pass at 384 px takes a few seconds.
DEMO_LR = 0.1
DEMO_SIZE = {"decoder": 384, "optimize": 256}  # 384 px: the bundled photo's own size


class UsageError(Exception):
    """Bad command-line usage found after parsing (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line on stderr (no usage block) and exit code 2."""

    def error(self, message):  # noqa: D401
        _say_error(message)
        raise SystemExit(2)


def _say_error(message: str) -> None:
    line = " ".join(str(message).split())
    sys.stderr.write(f"{PROG}: error: {line}\n")
    sys.stderr.flush()


# --- argument types -------------------------------------------------------------------------------


def _int_at_least(lo):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got {text!r}")
        return value
    return parse


def _float_in(lo, hi=None, lo_open=False):
    desc = (f"in [{lo}, {hi}]" if hi is not None else (f"> {lo}" if lo_open else f">= {lo}"))

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number {desc}, got {text!r}") from None
        ok = math.isfinite(value) and (value > lo if lo_open else value >= lo) and (hi is None or value <= hi)
        if not ok:
            raise argparse.ArgumentTypeError(f"must be a number {desc}, got {text!r}")
        return value
    return parse


def _add_run_options(p: argparse.ArgumentParser, demo: bool = False) -> None:
    from .pipeline import INITS, PRECISIONS, TV_WEIGHT

    g = p.add_argument_group("style swap")
    g.add_argument("--method", choices=("decoder", "optimize"), default=None if demo else "decoder",
                   help="decoder: one pass through the trained inverse network ("
                        + ("default when one is installed" if demo else "default") + "); "
                        "optimize: Adam on the image (the paper's objective)")
    if not demo:
        g.add_argument("--patch-size", type=_int_at_least(1), default=3, help="patch side k (default 3)")
        g.add_argument("--stride", type=_int_at_least(1), default=1, help="patch stride, <= patch size (default 1)")
        g.add_argument("--style-weights", type=_float_in(0.0), nargs="+", metavar="W",
                       help="one weight per style: multiplies that style's matching scores (default: equal)")
        g.add_argument("--alpha", type=_float_in(0.0, 1.0), default=1.0,
                       help="blend of swapped and content features, 1 = full style (default 1)")
        g.add_argument("--preserve-color", action="store_true",
                       help="keep the content's colours (luminance-only transfer)")
        g.add_argument("--search", choices=("exact", "approximate"), default="exact",
                       help="patch search: exact (default) or approximate (clustered; far faster for large "
                            "images, close to exact: docs/approximate_search.md)")
    g.add_argument("--content-size", type=_int_at_least(16), default=None,
                   help="resize the content so its longest side is this many px"
                        + (" (default 384 with the decoder, 256 with optimize)" if demo else " (default: keep)"))
    g.add_argument("--style-size", type=_int_at_least(16), default=None,
                   help="resize the style(s) so the longest side is this many px (default: keep)")
    o = p.add_argument_group("optimisation (--method optimize)")
    o.add_argument("--iters", type=_int_at_least(1), default=60 if demo else 100,
                   help=f"Adam iterations (default {60 if demo else 100})")
    if not demo:
        o.add_argument("--init", choices=INITS, default="content", help="start image (default content)")
        o.add_argument("--lr", type=_float_in(0.0, lo_open=True), default=0.05, help="Adam learning rate (default 0.05)")
        o.add_argument("--tv-weight", type=_float_in(0.0), default=TV_WEIGHT,
                       help=f"total-variation weight on the [0,1] image (default {TV_WEIGHT:g})")
    r = p.add_argument_group("runtime")
    r.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto: CUDA if available")
    r.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32: true fp32 (default); tf32: TF32 convolutions/matmuls on GPUs that have them; "
                        "bf16: TF32 convolutions and the style swap on bf16 features")
    r.add_argument("--vgg-weights", metavar="PATH",
                   help="VGG-19 weights (torchvision checkpoint or its conv1_1-conv3_1 slice); default: "
                        "$STYLESWAP_VGG19_WEIGHTS, the cache, else download")
    r.add_argument("--decoder-weights", metavar="PATH", help="trained decoder weights (default: the installed ones)")
    r.add_argument("--tile-size", type=_int_at_least(0), default=None, metavar="PX",
                   help="encode/decode images larger than PX px per side on overlapping tiles (bounded memory, "
                        "same result); default 1024 on the CPU, 2048/4096 on GPUs by memory; 0 = never tile")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Fast patch-based style transfer by style swap (Chen & Schmidt 2016).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    s = sub.add_parser("stylize", help="stylise an image (or every image of a directory)",
                       description="Stylise CONTENT with the patches of one or more STYLE images.")
    s.add_argument("content", metavar="CONTENT", help="content image, or a directory of images")
    s.add_argument("styles", metavar="STYLE", nargs="+", help="style image(s); several form one patch bank")
    s.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output file (format from its extension), or a directory when CONTENT is one")
    _add_run_options(s)

    v = sub.add_parser("video", help="stylise a video file, or a directory of frames",
                       description="Stylise every frame of IN (a video file read through PyAV, or a directory "
                                   "of frames) with the patches of STYLE; the styles are encoded once. A video "
                                   "keeps its frame timing and audio; a directory of frames gives a directory "
                                   "of frames with the same names.")
    v.add_argument("input", metavar="IN", help="video file (.mp4, .mov, .mkv, .webm, ...) or a directory of frames")
    v.add_argument("styles", metavar="STYLE", nargs="+", help="style image(s); several form one patch bank")
    v.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output video file (container from its extension), or a directory when IN is one")
    v.add_argument("--codec", default=None, help="video encoder (default: libx264 for .mp4/.mov/.mkv, "
                                                   "libvpx-vp9 for .webm, else mpeg4)")
    v.add_argument("--crf", type=_int_at_least(0), default=18, help="quality for libx264/libvpx-vp9 (default 18)")
    v.add_argument("--max-frames", type=_int_at_least(1), default=None, help="stop after N frames (preview)")
    _add_run_options(v)

    d = sub.add_parser("demo", help="stylise the bundled example and write styleswap-demo.png",
                       description="Stylise the bundled cat photo with The Starry Night. Uses the trained "
                                   "decoder when one is installed, else (or with --method optimize) the "
                                   "optimisation method.")
    d.add_argument("-o", "--output", default="styleswap-demo.png", metavar="OUT",
                   help="output file (default styleswap-demo.png)")
    _add_run_options(d, demo=True)

    from .training import add_arguments as _add_train_arguments

    t = sub.add_parser("train-decoder", help="train the inverse network (also under torchrun, DDP)",
                       description="Train the decoder on random crops of content and style images and their "
                                   "style swaps (Chen & Schmidt 2016). Under torchrun it runs with "
                                   "DistributedDataParallel. See docs/training.md.")
    _add_train_arguments(t, _int_at_least, _float_in)
    return parser


# --- running ------------------------------------------------------------------------------------------


def _info(args, message: str) -> None:
    if not args.quiet:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                              or "not enough memory" in text)


def _output_for(content: Path, out_dir: Path) -> Path:
    from PIL import Image

    ext = content.suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        ext = ".png"
    return out_dir / f"{content.stem}_stylized{ext}"


def _check_output_file(path: Path) -> None:
    from .image_io import output_format

    try:
        output_format(path)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if path.is_dir():
        raise UsageError(f"output {str(path)!r} is a directory; give a file name such as out.png")
    if not path.parent.is_dir():
        raise UsageError(f"output directory does not exist: {str(path.parent)!r}")


def _load_styles_and_models(args):
    """The style images, the encoder and (when the method needs one) the decoder, in the order that
    fails fastest: images first, then weights."""
    from .image_io import load_image
    from .models import load_decoder, load_encoder

    styles = [load_image(s) for s in args.styles]
    decoder = None
    if args.method == "decoder" or args.init == "decoder":
        decoder = load_decoder(args.decoder_weights)
    encoder = load_encoder(args.vgg_weights, progress=not args.quiet)
    return styles, encoder, decoder


def _run_stylize(args) -> int:
    from . import distributed, image_io, pipeline
    from .image_io import ImageLoadError, is_image_path
    from .overlap import BackgroundSaver, Prefetcher

    _check_common(args)
    content = Path(args.content)
    out = Path(args.output)
    if content.is_dir():
        if out.exists() and not out.is_dir():
            raise UsageError(f"CONTENT is a directory, so -o must be a directory too, but {str(out)!r} is a file")
        inputs = sorted(p for p in content.iterdir() if is_image_path(p))
        if not inputs:
            raise ImageLoadError(f"no image files in directory: {content}")
        jobs = [(p, _output_for(p, out)) for p in inputs]
    else:
        if out.is_dir():
            jobs = [(content, _output_for(content, out))]
        else:
            _check_output_file(out)
            jobs = [(content, out)]
        image_io.probe_image(content)  # fail fast on a missing or non-image file, before any model is loaded

    many = len(jobs) > 1
    w = distributed.world()
    if w.distributed:  # torchrun: this process's share of the files, each written by one process
        jobs = distributed.shard(jobs, w)
    device = distributed.device_for(pipeline.resolve_device(args.device), w)
    from tqdm.auto import tqdm

    failures = 0

    def failed(exc, src):  # one image's failure: the only image's is raised, one of many's reported
        nonlocal failures
        if not many:
            raise exc
        failures += 1
        bar.clear()
        _say_error(_describe(exc, src))

    # Contents are decoded one ahead in the background (the first one while the models load and the
    # style bank is built) and results saved behind (styleswap_ext/overlap.py). image_io.load_image
    # is looked up per call, so that it can be patched.
    with Prefetcher(lambda job: image_io.load_image(job[0]), jobs) as contents, \
            BackgroundSaver(image_io.save_image) as saver:
        styles, encoder, decoder = _load_styles_and_models(args)
        if content.is_dir():
            out.mkdir(parents=True, exist_ok=True)
        if not jobs:
            _info(args, f"rank {w.rank} of {w.size}: no files left for this process")
            return 0
        bank = _style_bank(args, styles, encoder, device)
        bar = tqdm(contents, total=len(jobs), desc="images", unit="img", file=sys.stderr,
                   disable=args.quiet or not many, dynamic_ncols=True)
        for (src, dst), loaded in bar:
            try:
                result = _stylize_one(args, loaded.result(), bank, encoder, decoder)
            except Exception as e:  # per image: report, go on with the others
                failed(e, src)
                continue
            for saved, exc in saver.submit(dst, result, dst):
                if exc is not None:
                    failed(exc, saved)
        for saved, exc in saver.finish():
            if exc is not None:
                failed(exc, saved)
    if failures:
        _say_error(f"{failures} of {len(jobs)} images failed")
        return 1
    if not many:
        _info(args, f"wrote {jobs[0][1]}")
    else:
        who = f" (rank {w.rank} of {w.size})" if w.distributed else ""
        _info(args, f"wrote {len(jobs)} images to {out}{who}")
    return 0


def _style_bank(args, styles, encoder, device):
    from . import pipeline

    return pipeline.StyleBank(styles, encoder, style_size=args.style_size, style_weights=args.style_weights,
                              patch_size=args.patch_size, stride=args.stride, device=device,
                              precision=args.precision, tile_size=args.tile_size, progress=not args.quiet,
                              search=args.search)


def _stylize_one(args, content, bank, encoder, decoder, progress=None):
    from . import pipeline

    return pipeline.stylize(
        content, bank, method=args.method, content_size=args.content_size, alpha=args.alpha,
        preserve_color=args.preserve_color, iters=args.iters, init=args.init, lr=args.lr,
        tv_weight=args.tv_weight, encoder=encoder, decoder=decoder,
        progress=(not args.quiet) if progress is None else progress, tile_size=args.tile_size,
    )


def _check_common(args) -> None:
    if args.stride > args.patch_size:
        raise UsageError(f"--stride ({args.stride}) must not exceed --patch-size ({args.patch_size})")
    if args.style_weights is not None:
        if len(args.style_weights) != len(args.styles):
            raise UsageError(f"--style-weights got {len(args.style_weights)} values for {len(args.styles)} styles")
        if not any(w > 0 for w in args.style_weights):
            raise UsageError("--style-weights must not all be 0")


def _run_video(args) -> int:
    from . import distributed, pipeline, video
    from .image_io import ImageLoadError, is_image_path

    _check_common(args)
    src, out = Path(args.input), Path(args.output)
    frames_dir = src.is_dir()
    if frames_dir:
        if out.exists() and not out.is_dir():
            raise UsageError(f"IN is a directory of frames, so -o must be a directory too, but {str(out)!r} is a file")
        files = sorted(p for p in src.iterdir() if is_image_path(p))
        if not files:
            raise ImageLoadError(f"no image files in directory: {src}")
    else:
        if not src.is_file():
            raise UsageError(f"input not found: {str(src)!r}")
        if out.is_dir():
            raise UsageError(f"output {str(out)!r} is a directory; give a video file name such as out.mp4")
        if not out.suffix:
            raise UsageError(f"output {str(out)!r} has no extension: use e.g. .mp4, .mkv or .webm")
        if not out.parent.is_dir():
            raise UsageError(f"output directory does not exist: {str(out.parent)!r}")
        video.require_av()
        if args.codec is not None:
            import av

            if args.codec not in av.codecs_available:
                raise UsageError(f"--codec {args.codec!r} is not available in this FFmpeg build")
    w = distributed.world()
    if frames_dir and w.distributed:
        files = distributed.shard(files, w)
    elif w.distributed and w.rank > 0:
        _info(args, f"rank {w.rank}: a video file is done by rank 0 only")
        return 0
    device = distributed.device_for(pipeline.resolve_device(args.device), w)
    styles, encoder, decoder = _load_styles_and_models(args)
    bank = _style_bank(args, styles, encoder, device)  # encoded once, reused by every frame

    def frame_fn(t):
        return _stylize_one(args, t, bank, encoder, decoder, progress=False)

    if frames_dir:
        n = video.stylize_frames_dir(src, out, frame_fn, progress=not args.quiet, files=files)
        _info(args, f"wrote {n} frames to {out}")
        return 0
    info = video.stylize_video(src, out, frame_fn, codec=args.codec, quality=args.crf,
                               max_frames=args.max_frames, progress=not args.quiet)
    audio = f", {info['audio_streams']} audio stream(s) copied" if info["audio_streams"] else ""
    _info(args, f"wrote {out} ({info['frames']} frames, {info['size'][0]}x{info['size'][1]}, "
                f"{info['fps']:.3g} fps, {info['codec']}{audio})")
    return 0


def _run_demo(args) -> int:
    from . import pipeline
    from .image_io import save_image
    from .models import load_decoder, load_encoder, packaged_decoder_path

    out = Path(args.output)
    _check_output_file(out)
    device = pipeline.resolve_device(args.device)
    decoder = None
    method = args.method
    if method is None:
        method = "decoder" if args.decoder_weights or packaged_decoder_path() is not None else "optimize"
    size = args.content_size or DEMO_SIZE[method]
    if method == "decoder":
        decoder = load_decoder(args.decoder_weights)  # NoTrainedDecoderError when none is installed
        _info(args, f"styleswap demo: one pass through the trained decoder, at {size} px "
                    f"on {device.type}")
    else:
        why = "" if args.method else "no trained decoder is installed, so "
        _info(args, f"styleswap demo: {why}using --method optimize "
                    f"({args.iters} iterations, lr {DEMO_LR}, at {size} px on {device.type})")
    encoder = load_encoder(args.vgg_weights, progress=not args.quiet)
    start = time.perf_counter()
    result = pipeline.stylize(
        DEMO_CONTENT, DEMO_STYLE, method=method, content_size=size, style_size=args.style_size,
        iters=args.iters, lr=DEMO_LR, device=device, precision=args.precision, encoder=encoder,
        decoder=decoder, progress=not args.quiet,
    )
    save_image(result, out)
    _info(args, f"wrote {out} ({result.width}x{result.height} px) in {time.perf_counter() - start:.1f} s")
    return 0


def _run_train(args) -> int:
    from .training import check_arguments, train

    try:
        check_arguments(args)
    except ValueError as e:
        raise UsageError(str(e)) from None
    train(args)
    return 0


def _describe(exc: BaseException, where=None) -> str:
    from .image_io import ImageLoadError
    from .models import NoTrainedDecoderError, WeightsUnavailableError

    if _is_oom(exc):
        place = f" while processing {where}" if where else ""
        return (f"out of memory{place}: try a smaller --content-size / --style-size, a larger --stride, "
                "--precision bf16, or another --device")
    from .video import VideoDependencyError

    if isinstance(exc, (ImageLoadError, NoTrainedDecoderError, WeightsUnavailableError, VideoDependencyError)):
        return str(exc)
    if isinstance(exc, FileNotFoundError) and exc.filename is None:
        return str(exc)
    if isinstance(exc, OSError):
        name = exc.filename or where  # e.g. a full disk while writing an output: name that output
        target = f" {name}" if name else ""
        return f"{exc.strerror or exc}{':' + target if target else ''}"
    if isinstance(exc, (ValueError, TypeError, RuntimeError)):
        prefix = f"{where}: " if where else ""
        return f"{prefix}{exc}"
    return f"unexpected {type(exc).__name__}: {exc}"


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``styleswap`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, already printed)
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    try:
        if args.command == "demo":
            return _run_demo(args)
        if args.command == "train-decoder":
            return _run_train(args)
        if args.command == "video":
            return _run_video(args)
        return _run_stylize(args)
    except UsageError as e:
        _say_error(str(e))
        return 2
    except KeyboardInterrupt:
        _say_error("interrupted")
        return 130
    except Exception as e:
        if os.environ.get("STYLESWAP_DEBUG"):
            raise
        _say_error(_describe(e))
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
