"""The options of ``styleswap train-decoder`` and the checks argparse cannot make (before any work)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .loss import DEFAULT_TV_WEIGHT

def add_arguments(p: argparse.ArgumentParser, int_at_least, float_in) -> None:
    """The ``train-decoder`` options (argument types from the CLI, for its error messages)."""
    d = p.add_argument_group("data")
    d.add_argument("--content-dir", required=True, metavar="DIR", help="directory of content photos")
    d.add_argument("--style-dir", required=True, metavar="DIR", help="directory of style images")
    d.add_argument("--image-size", type=int_at_least(16), default=256,
                   help="side of the random square crops, a multiple of 4 (default 256)")
    d.add_argument("--load-size", type=int_at_least(16), default=None,
                   help="shorter side images are resized to before cropping (default 2 x image size; "
                        "smaller images are upscaled to the crop size)")
    d.add_argument("--val-fraction", type=float_in(0.0, 0.9), default=0.05,
                   help="fraction of each directory held out for validation, by file-name hash (default 0.05)")
    t = p.add_argument_group("training")
    t.add_argument("--out", required=True, metavar="CKPT", help="checkpoint file to write (and to resume from)")
    t.add_argument("--resume", action="store_true",
                   help="continue from --out when it exists (iteration, optimiser, split); else start fresh")
    t.add_argument("--overwrite", action="store_true",
                   help="start afresh even if --out exists, replacing it (without --resume or --overwrite an "
                        "existing --out is refused)")
    t.add_argument("--iters", type=int_at_least(1), default=80000,
                   help="total iterations to reach, counting resumed ones (default 80000, the authors')")
    t.add_argument("--batch-size", type=int_at_least(1), default=2,
                   help="B content + B style crops per rank and iteration; targets = 2B + B^2 (default 2)")
    t.add_argument("--lr", type=float_in(0.0, lo_open=True), default=1e-3, help="Adam learning rate (default 1e-3)")
    t.add_argument("--tv-weight", type=float_in(0.0), default=DEFAULT_TV_WEIGHT,
                   help="the paper's lambda: TV on the 0-255 image, same normalisation as the feature sum "
                        "(default 1e-6)")
    t.add_argument("--pixel-weight", type=float_in(0.0), default=0.0,
                   help="weight of a pixel MSE on the real-image targets (default 0 = off)")
    t.add_argument("--no-instance-norm", action="store_true", help="train the decoder without instance norm")
    t.add_argument("--seed", type=int, default=0, help="seed of the decoder init and the crops (default 0)")
    t.add_argument("--time-limit", type=float_in(0.0, lo_open=True), default=None, metavar="SECONDS",
                   help="stop cleanly (and checkpoint) before this many seconds of wall time")
    t.add_argument("--save-every", type=int_at_least(1), default=1000, help="checkpoint period (default 1000)")
    t.add_argument("--val-every", type=int_at_least(1), default=500, help="validation period (default 500)")
    t.add_argument("--log-every", type=int_at_least(1), default=50,
                   help="period of the train-loss entries in the history (default 50)")
    r = p.add_argument_group("runtime")
    r.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="default auto: CUDA if available (under torchrun: cuda:LOCAL_RANK)")
    r.add_argument("--precision", choices=("fp32", "tf32"), default="tf32",
                   help="tf32: TF32 convolutions/matmuls on GPUs that have them (default); fp32: true fp32")
    r.add_argument("--vgg-weights", metavar="PATH",
                   help="VGG-19 weights (default: $STYLESWAP_VGG19_WEIGHTS, the cache, else download)")
    r.add_argument("--swap", choices=("auto", "ext", "reference"), default="auto",
                   help="style swap of the targets: ext = the fused kernels, reference = the paper's conv "
                        "formulation in PyTorch; auto (default): ext unless it was built without CUDA on a GPU")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar or messages")


def check_arguments(args) -> None:
    """Argument combinations argparse cannot check; ValueError -> exit 2 in the CLI."""
    if args.image_size % 4:
        raise ValueError(f"--image-size must be a multiple of 4 (the encoder's downsampling), got {args.image_size}")
    if args.load_size is not None and args.load_size < args.image_size:
        raise ValueError(f"--load-size ({args.load_size}) must be >= --image-size ({args.image_size})")
    for flag, directory in (("--content-dir", args.content_dir), ("--style-dir", args.style_dir)):
        if not Path(directory).is_dir():
            what = "is not a directory" if Path(directory).exists() else "not found"
            raise ValueError(f"{flag} {str(directory)!r}: directory {what}")
    _check_out(args)


def _check_out(args) -> None:
    """--out loses no file: it is not in the data directories (a training image, or a file that would
    join them), not a weights file the run reads, and an existing checkpoint is replaced only when
    --overwrite says so (--resume continues it)."""
    from ..._util import outputs as _outputs
    from ...models.loading import ENV_VGG_WEIGHTS, _cache_file

    out, overwrite = Path(args.out), getattr(args, "overwrite", False)
    if args.resume and overwrite:
        raise ValueError("--resume continues --out and --overwrite replaces it: give one of them")
    if out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a directory; give a checkpoint file name such as decoder.pth")
    if not out.parent.is_dir():
        raise ValueError(f"--out {str(out)!r}: output directory does not exist: {str(out.parent)!r}")
    for flag, directory in (("--content-dir", args.content_dir), ("--style-dir", args.style_dir)):
        if Path(os.path.realpath(out)).is_relative_to(os.path.realpath(directory)):
            raise ValueError(f"--out {str(out)!r} is inside {flag} {str(directory)!r}: the checkpoint would replace "
                             "a training image or be read as one; write it outside the data directories")
    weights = [w for w in (args.vgg_weights, os.environ.get(ENV_VGG_WEIGHTS), _cache_file("relu3_1")) if w]
    _outputs.check_not_an_input(out, weights, what="--out")
    if out.exists() and not args.resume and not overwrite:
        raise ValueError(f"--out {str(out)!r} exists: give --resume to continue that training, or --overwrite to "
                         "start afresh and replace it")
