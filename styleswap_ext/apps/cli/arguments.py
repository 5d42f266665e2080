"""The command line's arguments: the parser of every command, the argument types, the one-line usage
error. Standard library only (``styleswap --help`` answers without torch)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..._util.choices import MIN_TILE_SIZE, SEARCHES

PROG = "styleswap"


ASSETS = Path(__file__).resolve().parents[1] / "assets"  # styleswap_ext/apps/assets


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


def _tile_size(text):
    """--tile-size: 0 (never tile) or at least tiling.min_tile_size (smaller tiles are mostly halo)."""
    lo = MIN_TILE_SIZE  # = tiling.min_tile_size(VGGEncoder()), as a constant: parsing must not import torch
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value != 0 and value < lo:
        raise argparse.ArgumentTypeError(f"must be 0 (never tile) or an integer >= {lo} (8 times the encoder's "
                                         f"{lo // 8} px halo: smaller tiles are mostly halo), got {text!r}")
    return value


def _add_run_options(p: argparse.ArgumentParser, demo: bool = False) -> None:
    from ..._util.choices import INITS, PRECISIONS, TV_WEIGHT  # not .pipeline: that imports torch

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
        g.add_argument("--search", choices=SEARCHES, default="auto",
                       help="patch search: auto (default: exact where it takes at most ~2 s on the device, "
                            "else approximate; one line says which), exact, or approximate (clustered; far "
                            "faster for large images, a chosen score ~0.99 of the best)")
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
    r.add_argument("--tile-size", type=_tile_size, default=None, metavar="PX",
                   help="encode/decode images larger than PX px per side on overlapping tiles (bounded memory, "
                        "same result); default 1024 on the CPU, 2048/4096 on GPUs by memory; 0 = never tile; "
                        "at least 96 (8 times the encoder's halo)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages")


def build_parser(train_options: bool = True) -> argparse.ArgumentParser:
    """The whole command line. ``train_options=False`` leaves out the options of ``train-decoder``,
    whose module imports torch (``main`` builds them only when that command is asked for)."""
    from ... import __version__

    parser = _Parser(prog=PROG, description="Fast patch-based style transfer by style swap (Chen & Schmidt 2016).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    s = sub.add_parser("stylize", help="stylise an image (or every image of a directory)",
                       description="Stylise CONTENT with the patches of one or more STYLE images.")
    s.add_argument("content", metavar="CONTENT", help="content image, or a directory of images")
    s.add_argument("styles", metavar="STYLE", nargs="+", help="style image(s); several form one patch bank")
    s.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output file (format from its extension), or a directory when CONTENT is one")
    s.add_argument("--skip-existing", action="store_true",
                   help="leave outputs that exist alone (an interrupted batch resumes); without it they are "
                        "replaced, one line each in directory mode")
    _add_run_options(s)
    m = s.add_argument_group("regions (each content region takes its style patches from the style regions of "
                             "the same colour)")
    m.add_argument("--content-mask", metavar="PATH",
                   help="region mask of the content: an image whose distinct colours (or an integer PNG whose "
                        "values) are labels; each region takes only the style patches of its label")
    m.add_argument("--style-mask", metavar="PATH", nargs="+",
                   help="one region mask per STYLE, same colours = same labels (needed with --content-mask)")

    v = sub.add_parser("video", help="stylise a video file, or a directory of frames",
                       description="Stylise every frame of IN (a video file read through PyAV, or a directory "
                                   "of frames) with the patches of STYLE; the styles are encoded once. A video "
                                   "keeps its frame timing and audio; a directory of frames gives a directory "
                                   "of frames with the same names.")
    v.add_argument("input", metavar="IN", help="video file (.mp4, .mov, .mkv, .webm, ...) or a directory of frames")
    v.add_argument("styles", metavar="STYLE", nargs="+", help="style image(s); several form one patch bank")
    v.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output video file (container from its extension), or a directory when IN is one")
    v.add_argument("--skip-existing", action="store_true",
                   help="leave outputs (the video, or frames of a directory) that exist alone; without it they "
                        "are replaced, one line per frame in directory mode")
    v.add_argument("--codec", default=None, help="video encoder (default: libx264 for .mp4/.mov/.mkv, "
                                                   "libvpx-vp9 for .webm, else mpeg4)")
    v.add_argument("--crf", type=_int_at_least(0), default=18, help="quality for libx264/libvpx-vp9 (default 18)")
    v.add_argument("--max-frames", type=_int_at_least(1), default=None, help="stop after N frames (preview)")
    v.add_argument("--temporal-weight", type=_float_in(0.0), default=None, metavar="W",
                   help="keep the previous frame's style patch unless another matches better by more than W "
                        "(normalised cross-correlation); less flicker on still parts. 0 = off (default 0.01)")
    _add_run_options(v)

    d = sub.add_parser("demo", help="stylise the bundled example and write styleswap-demo.png",
                       description="Stylise the bundled cat photo with The Starry Night. Uses the trained "
                                   "decoder when one is installed, else (or with --method optimize) the "
                                   "optimisation method.")
    d.add_argument("-o", "--output", default="styleswap-demo.png", metavar="OUT",
                   help="output file (default styleswap-demo.png)")
    _add_run_options(d, demo=True)

    w = sub.add_parser("weights", help="put the VGG-19 weights into the cache, or show where they come from",
                       description="The VGG-19 encoder's weights: 'install PATH' checks a file (torchvision's "
                                   "vgg19-dcbb9e9d.pth or its conv1_1-conv3_1 slice: the layers and their sha256) "
                                   "and puts it into the cache, where every later run finds it offline; "
                                   "'status' shows where a run would take them from.")
    wsub = w.add_subparsers(dest="weights_command", metavar="ACTION", parser_class=_Parser)
    wsub.required = True
    wi = wsub.add_parser("install", help="check a weights file and put it into the cache")
    wi.add_argument("path", metavar="PATH", help="torchvision's vgg19-dcbb9e9d.pth, or its conv1_1-conv3_1 slice")
    wi.add_argument("-q", "--quiet", action="store_true", help="no message")
    wsub.add_parser("status", help="where the weights come from, and the cache's state")

    st = sub.add_parser("studio", help="a local web page for stylising images (needs styleswap[studio])",
                        description="Start the studio: a web page on this machine (127.0.0.1, offline) to stylise "
                                    "images with masks, sliders and a gallery; prints its address. Ctrl-C stops "
                                    "it. The page shows the equivalent 'styleswap stylize' line of every result.")
    from ..studio import add_arguments as _add_studio_arguments  # no Gradio, no torch

    _add_studio_arguments(st, _int_at_least, _float_in)

    t = sub.add_parser("train-decoder", help="train the inverse network (also under torchrun, DDP)",
                       description="Train the decoder on random crops of content and style images and their "
                                   "style swaps (Chen & Schmidt 2016). Under torchrun it runs with "
                                   "DistributedDataParallel.")
    if train_options:
        from ...pipeline.training import add_arguments as _add_train_arguments

        _add_train_arguments(t, _int_at_least, _float_in)
    return parser
