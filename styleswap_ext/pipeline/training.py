"""Training of the inverse network f (relu3_1 features -> RGB), Chen & Schmidt 2016, §3.2.

    styleswap train-decoder --content-dir DIR --style-dir DIR --out CKPT [options]
    torchrun --nproc_per_node N -m styleswap_ext train-decoder ...     (DistributedDataParallel)

Recipe (DESIGN.md §1, the authors' Torch code): every iteration draws B content and B style
images (default B = 2), takes one random ``image_size``² crop of each, encodes them with the
frozen VGG-19 Φ to relu3_1 and adds the style swaps of **every** content × style pair
(B² swaps, 3×3 patches, stride 1) as extra targets: 2B + B² targets (8 for B = 2). Without the
swapped targets the net only inverts activations inside Φ's range.

Loss, exactly (``H``: the targets ``(T, 256, h, w)``, ``f``: the decoder, ``n = T·256·h·w``)::

    L = [ Σ (Φ(f(H)) − H)²  +  tv_weight · TV(255·f(H)) ] / n   (+ pixel_weight · MSE on real targets)

with ``TV(x) = Σ (x[i+1,j] − x[i,j])² + Σ (x[i,j+1] − x[i,j])²`` summed over channels and images.
So the feature term is the mean squared error per feature element (the paper's
``mean_i ‖Φ(f(H_i)) − H_i‖²_F`` divided by the constant 256·h·w), and the TV term is the paper's
sum on a 0–255 image under the *same* division: ``tv_weight`` is the paper's λ in the paper's
units, default **1e-6** as in the paper. One difference remains and cannot be removed: our Φ is
torchvision's VGG-19 (input normalised by the ImageNet std), whose relu3_1 activations are smaller
than Caffe's, so the TV term weighs relatively more than in the paper. Measured (128 px crops, a
barely trained decoder): feature MSE ≈ 7, TV(255·f(H))/n ≈ 12, so λ = 1e-6 makes the TV term ≈ 2e-6
of the loss — as in the paper, practically no regularisation; λ ≈ 6e-3 would make it ≈ 1 %. The optional pixel loss (``--pixel-weight``, default 0 =
off) adds ``pixel_weight · mean((f(H_real) − x)²)`` on the 2B real crops ``x`` ([0, 1] images).

Optimiser: Adam, lr 1e-3 (paper). Under DDP the gradients are averaged over the ranks, so the
effective batch is ``world_size × (2B + B²)`` targets at the same lr.

Data: the images of each directory are split once into train and validation by a hash of the
file name (the ``ceil(val_fraction·n)`` names with the smallest SHA-1 are validation; stable,
independent of the machine and of the order of listing). The split is stored in the checkpoint
and reused on ``--resume``; the quality report reads it to use validation images only. Train
images are decoded once, resized so their shorter side is ``load_size`` (default 2 × image_size;
images whose shorter side is under ``image_size`` are upscaled to it) and kept in memory as uint8.
The random crops of iteration ``t`` on rank ``r`` come from a generator seeded with
``(seed, r, t)``, so a resumed run draws exactly the crops an uninterrupted run would have drawn.
Validation uses fixed centre crops: content i with style i mod n_style.

Checkpoint (written atomically by rank 0 every ``save_every`` iterations, at the end, and before
``--time-limit``): ``{"state_dict", "config": {"instance_norm"}, "optimizer", "iteration", "split",
"args", "history", "runs"}``; ``runs`` has one entry per run (resumes included: first and last
iteration, seconds, device, world size, lr, pixel weight, image size, batch), so a model card can
state the training's wall time and hardware (checkpoints written before it have none); loadable
with ``torch.load(weights_only=True)`` and with :func:`styleswap_ext.models.load_decoder`.
:func:`export_weights` strips the optimiser state for shipping (``styleswap_ext/weights/decoder.pth``).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .._util.atomic import torch_save_atomic
from .._util.machine import device_name

__all__ = ["TrainingError", "split_names", "list_images", "ImageBank", "decoder_loss", "make_targets",
           "add_arguments", "train", "CHECKPOINT_KEYS", "param_digest", "export_weights"]

CHECKPOINT_KEYS = ("state_dict", "config", "optimizer", "iteration", "split", "args", "history")
DEFAULT_TV_WEIGHT = 1e-6  # the paper's λ, in the paper's units (see the module docstring)


class TrainingError(RuntimeError):
    """A training run cannot start or continue (missing data, incompatible checkpoint, ...)."""


# --- data ----------------------------------------------------------------------------------------


def list_images(directory) -> List[str]:
    """Sorted file names of the images in ``directory`` (not recursive)."""
    from .image_io import is_image_path

    d = Path(directory)
    if not d.exists():
        raise TrainingError(f"directory not found: {d}")
    if not d.is_dir():
        raise TrainingError(f"not a directory: {d}")
    names = sorted(p.name for p in d.iterdir() if is_image_path(p))
    if not names:
        raise TrainingError(f"no image files in directory: {d}")
    return names


def _name_key(name: str) -> str:
    return hashlib.sha1(name.encode("utf-8")).hexdigest()


def split_names(names: Sequence[str], val_fraction: float) -> Dict[str, List[str]]:
    """Deterministic train/val split: the ceil(val_fraction·n) names of smallest SHA-1 are val.

    At least one image always stays in train; with ``val_fraction > 0`` and n >= 2 at least one is val.
    """
    names = sorted(set(names))
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    n_val = min(math.ceil(val_fraction * len(names)), len(names) - 1) if val_fraction > 0 else 0
    by_hash = sorted(names, key=_name_key)
    val = set(by_hash[:max(n_val, 0)])
    return {"train": [n for n in names if n not in val], "val": sorted(val)}


def _load_resized(path: Path, image_size: int, load_size: Optional[int]) -> torch.Tensor:
    """uint8 (3, H, W): shorter side scaled down to ``load_size`` or up to ``image_size``."""
    import numpy as np
    from PIL import Image

    from .image_io import load_image

    img = load_image(path)
    w, h = img.size
    short = min(w, h)
    target = short
    if load_size is not None and short > load_size:
        target = load_size
    if target < image_size:
        target = image_size
    if target != short:
        scale = target / short
        img = img.resize((max(image_size, round(w * scale)), max(image_size, round(h * scale))),
                         Image.LANCZOS if scale < 1 else Image.BICUBIC)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


class ImageBank:
    """The images of one split, decoded and resized once, kept as uint8; random or centre crops."""

    def __init__(self, directory, names: Sequence[str], image_size: int, load_size: Optional[int]):
        self.directory = Path(directory)
        self.names = list(names)
        self.image_size = image_size
        # decoding ~200 JPEGs dominates the start of every (resumed) run: PIL releases the GIL, so threads help
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
            self.images = list(pool.map(lambda n: _load_resized(self.directory / n, image_size, load_size), self.names))

    def __len__(self) -> int:
        return len(self.images)

    def _crop(self, img: torch.Tensor, top: int, left: int) -> torch.Tensor:
        s = self.image_size
        return img[:, top:top + s, left:left + s]

    def random_batch(self, count: int, generator: torch.Generator, device=None) -> torch.Tensor:
        """``count`` random crops, float32 in [0, 1] on ``device`` (default: the CPU)."""
        idx = torch.randint(len(self.images), (count,), generator=generator).tolist()
        out = []
        for i in idx:
            img = self.images[i]
            h, w = img.shape[-2:]
            top = int(torch.randint(h - self.image_size + 1, (1,), generator=generator))
            left = int(torch.randint(w - self.image_size + 1, (1,), generator=generator))
            out.append(self._crop(img, top, left))
        return _pixels_to(torch.stack(out), device)

    def center(self, i: int) -> torch.Tensor:
        """The centre crop of image ``i``, float32 ``(3, s, s)`` in [0, 1] on the CPU."""
        img = self.images[i]
        h, w = img.shape[-2:]
        return _pixels_to(self._crop(img, (h - self.image_size) // 2, (w - self.image_size) // 2), None)


def _pixels_to(u8: torch.Tensor, device) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1] on ``device``. To a GPU the uint8 bytes travel (a quarter of
    the float32 bytes) from pinned memory, so that the copy does not wait for the GPU to catch up."""
    if device is not None and torch.device(device).type == "cuda":
        u8 = u8.pin_memory().to(device, non_blocking=True)
    elif device is not None:
        u8 = u8.to(device)
    return u8.float().div_(255.0)


def iteration_generator(seed: int, rank: int, iteration: int) -> torch.Generator:
    """The generator of one iteration's crops: a function of (seed, rank, iteration) only."""
    key = hashlib.sha256(f"{seed}/{rank}/{iteration}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(key[:8], "little") & ((1 << 63) - 1))


# --- loss -----------------------------------------------------------------------------------------


def swap_function(kind: str, device: torch.device):
    """``ext``: the fused kernels; ``reference``: the paper's conv formulation in plain PyTorch (fast
    enough at training crop sizes: ~1 ms per 256 px pair on an H200); ``auto``: ext unless the device
    is CUDA and the extension was built without CUDA kernels."""
    from ..ops import swap as ops, reference

    if kind == "auto":
        kind = "ext" if device.type != "cuda" or ops.CUDA_BUILT else "reference"
    if kind not in ("ext", "reference"):
        raise ValueError(f"swap must be auto, ext or reference, got {kind!r}")
    return ops.style_swap if kind == "ext" else reference.style_swap


@torch.no_grad()
def make_targets(encoder, content: torch.Tensor, style: torch.Tensor, all_pairs: bool = True,
                 patch_size: int = 3, stride: int = 1, swap=None) -> torch.Tensor:
    """Φ(content), Φ(style) and their style swaps: every content × style pair (``all_pairs``,
    2B + B² targets, the authors' recipe) or content i with style i (2B + B targets).
    ``swap``: the style-swap function (default: the extension's ``style_swap``)."""
    from ..ops.swap import style_swap as _ext_swap

    style_swap = swap or _ext_swap
    hc, hs = encoder(content), encoder(style)
    if all_pairs:
        swaps = [style_swap(hc, hs[j:j + 1], patch_size, stride) for j in range(hs.shape[0])]
    else:
        swaps = [style_swap(hc, hs, patch_size, stride)]
    return torch.cat([hc, hs, *swaps]).contiguous()


def decoder_loss(encoder, decoder, targets: torch.Tensor, tv_weight: float = DEFAULT_TV_WEIGHT,
                 images: Optional[torch.Tensor] = None, pixel_weight: float = 0.0
                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, feature MSE, TV term) — the loss of the module docstring.

    ``images``: the real crops whose features are the first ``len(images)`` targets (pixel loss).
    """
    from .stylization import total_variation

    out = decoder(targets)
    feats = encoder(out)
    n = targets.numel()
    feat = (feats - targets).pow(2).sum() / n
    tv = total_variation(out) * (255.0 ** 2) / n
    loss = feat + tv_weight * tv
    if pixel_weight and images is not None:
        loss = loss + pixel_weight * (out[:images.shape[0]] - images).pow(2).mean()
    return loss, feat.detach(), tv.detach()


def param_digest(module: torch.nn.Module) -> str:
    """SHA-256 of the state dict's tensors (bytes, in key order): equal iff bit-identical."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# --- command line ---------------------------------------------------------------------------------


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
    from .._util import outputs as _outputs
    from ..models.loading import ENV_VGG_WEIGHTS, _cache_file

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


# --- the loop -------------------------------------------------------------------------------------


def _say(args, rank: int, message: str) -> None:
    if rank == 0 and not args.quiet:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def _progress(args) -> bool:
    """Progress bars: the CLI's ``args.progress`` (off with -q or when stderr is not a terminal, e.g. a log)."""
    return getattr(args, "progress", not args.quiet)


def _save_atomic(obj, path: Path) -> None:
    torch_save_atomic(obj, path)


def _plain_args(args) -> dict:
    out = {}
    for k, v in vars(args).items():
        if k in ("func", "command"):
            continue
        out[k] = str(v) if isinstance(v, os.PathLike) else v
    return out


def _dist_env() -> Tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def _resolve_device(name: str, world: int, local_rank: int) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was requested but CUDA is not available")
        dev = torch.device("cuda", local_rank if world > 1 else torch.cuda.current_device())
        torch.cuda.set_device(dev)
        return dev
    return torch.device("cpu")


def _reads_every_step(device: torch.device) -> bool:
    """Whether the loop reads each step's loss at once (for the progress bar) or only when logging:
    on the CPU a read costs nothing; on a GPU it is a host-device synchronisation."""
    return device.type == "cpu"


def _read_losses(pending: List[torch.Tensor], world: int) -> List[Tuple[float, float]]:
    """The (loss, feature loss) of each pending step, averaged over the ranks: one read-back (and,
    under DDP, one all-reduce) for all of them. Every rank must call it at the same iterations."""
    if not pending:
        return []
    values = torch.stack(pending).double()
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(values)
        values /= world
    return [(a, b) for a, b in values.tolist()]


def _window_mean(iteration: int, window: List[Tuple[float, float]]) -> Dict[str, float]:
    """The history entry of a log step: the mean (loss, feature loss) of the steps since the last."""
    return {"iteration": iteration, "loss": sum(w[0] for w in window) / len(window),
            "feat": sum(w[1] for w in window) / len(window)}


@torch.no_grad()
def validate(encoder, decoder, content: ImageBank, style: ImageBank, batch: int, tv_weight: float,
             device, swap=None) -> Dict[str, float]:
    """Mean loss over fixed centre crops: content i, style i mod n_style and their swap (i with i)."""
    if len(content) == 0 or len(style) == 0:
        return {}
    total = feat = 0.0
    count = 0
    for lo in range(0, len(content), batch):
        ids = list(range(lo, min(lo + batch, len(content))))
        c = torch.stack([content.center(i) for i in ids]).to(device)
        s = torch.stack([style.center(i % len(style)) for i in ids]).to(device)
        targets = make_targets(encoder, c, s, all_pairs=False, swap=swap)
        loss, f, _ = decoder_loss(encoder, decoder, targets, tv_weight)
        total += loss.item() * len(ids)
        feat += f.item() * len(ids)
        count += len(ids)
    return {"val_loss": total / count, "val_feat": feat / count}


def train(args) -> dict:
    """Run (or continue) training as the command line describes; returns the final checkpoint dict.

    The steps, each a function below: set up the device (and the process group under torchrun) ->
    read the checkpoint to resume -> split the images into train/validation and load them -> build
    the decoder and its optimiser -> the loop (a batch of crops and their swaps per iteration, with
    logging, validation, checkpoints and the time limit) -> the last validation, checkpoint and
    summary."""
    from tqdm.auto import tqdm

    from ..models import load_encoder

    check_arguments(args)
    ctx = _set_up(args)
    ckpt = _read_resume_checkpoint(args, ctx)
    split = _image_split(args, ckpt)
    banks = _image_banks(args, split)
    swap = swap_function(args.swap, ctx.device)
    encoder = load_encoder(args.vgg_weights, device=ctx.device, progress=_progress(args) and ctx.rank == 0)
    state = _TrainState(args, ctx, ckpt, split)
    _say(args, ctx.rank, f"styleswap train-decoder: {len(banks['content', 'train'])}+{len(banks['style', 'train'])} "
                         f"train / {len(banks['content', 'val'])}+{len(banks['style', 'val'])} val images "
                         f"(content+style), {2 * args.batch_size + args.batch_size ** 2} targets per rank and "
                         f"iteration, world size {ctx.world}, {ctx.device}, from iteration {state.iteration}")

    def run_validation():
        return state.validate(encoder, banks["content", "val"], banks["style", "val"], swap)

    first = state.iteration
    bar = tqdm(total=args.iters, initial=state.iteration, desc="train-decoder", unit="it", file=sys.stderr,
               disable=not _progress(args) or ctx.rank != 0, dynamic_ncols=True)
    losses, clock = _LossLog(ctx), _StopClock(args, ctx)
    last_val, stopped = None, False
    state.decoder.train()
    while state.iteration < args.iters:
        t0 = time.monotonic()
        loss, feat = state.step(encoder, banks["content", "train"], banks["style", "train"], swap)
        losses.add(loss, feat)
        clock.step_took(time.monotonic() - t0)
        stop = clock.must_stop(state.iteration)
        entry = losses.after_step(state.iteration)
        if entry is not None:
            state.history.append(entry)
        if state.iteration % args.val_every == 0:
            t0 = time.monotonic()
            last_val = run_validation() or last_val
            clock.validation_took(time.monotonic() - t0)
        post = {"loss": f"{losses.shown:.4g}" if losses.shown is not None else "..."}
        if last_val:
            post["val"] = f"{last_val['val_loss']:.4g}"
        bar.set_postfix(post, refresh=False)
        bar.update(1)
        if stop and state.iteration < args.iters:
            stopped = True
            break
        if state.iteration % args.save_every == 0 and state.iteration < args.iters:
            t0 = time.monotonic()
            state.checkpoint()
            clock.save_took(time.monotonic() - t0)
    bar.close()
    entry = losses.flush(state.iteration)  # every rank stopped at the same iteration: collective is safe
    if entry is not None:
        state.history.append(entry)
    last_val_it = next((h["iteration"] for h in reversed(state.history) if "val_loss" in h), None)
    if state.iteration > first and not stopped and last_val_it != state.iteration:
        run_validation()
    final = state.checkpoint()
    _finish(args, ctx, state, first, stopped, clock.step_seconds)
    return final


class _Context:
    """Where a run executes: device, torchrun world, the checkpoint path, the start time."""

    def __init__(self, args):
        self.args, self.start_time = args, time.monotonic()
        self.world, self.rank, local_rank = _dist_env()
        self.device = _resolve_device(args.device, self.world, local_rank)
        self.out = Path(args.out)


def _set_up(args) -> _Context:
    """The device and its precision, the process group under torchrun, and a writable --out."""
    import torch.distributed as dist

    ctx = _Context(args)
    if ctx.world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if ctx.device.type == "cuda" else "gloo")
    if ctx.device.type == "cuda":
        tf32 = args.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = True
    if not ctx.out.parent.is_dir():
        raise TrainingError(f"output directory does not exist: {ctx.out.parent}")
    return ctx


def _read_resume_checkpoint(args, ctx: _Context) -> Optional[dict]:
    """The checkpoint at --out when --resume is given and it exists (checked to be one), else None."""
    out = ctx.out
    if not args.resume:
        return None
    if not out.is_file():
        _say(args, ctx.rank, f"styleswap train-decoder: {out} does not exist yet, starting from scratch")
        return None
    try:
        ckpt = torch.load(out, map_location="cpu", weights_only=True)
    except Exception as e:
        raise TrainingError(f"cannot read checkpoint {out} to resume: {e.__class__.__name__}: {e}") from e
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise TrainingError(f"{out} is not a training checkpoint (missing {', '.join(missing)}); "
                            "use another --out or drop --resume")
    return ckpt


def _image_split(args, ckpt: Optional[dict]) -> dict:
    """The train/validation split: the checkpoint's (its training images must still be there), or a new one."""
    content_names, style_names = list_images(args.content_dir), list_images(args.style_dir)
    if ckpt is None:
        return {"method": "sha1-of-file-name", "val_fraction": args.val_fraction,
                "content": split_names(content_names, args.val_fraction),
                "style": split_names(style_names, args.val_fraction)}
    split = ckpt["split"]
    for kind, names in (("content", content_names), ("style", style_names)):
        gone = sorted(set(split[kind]["train"]) - set(names))
        if gone:
            raise TrainingError(f"{len(gone)} {kind} training images of the checkpoint's split are missing "
                                f"from the {kind} directory (e.g. {gone[0]})")
    return split


def _image_banks(args, split: dict) -> Dict[Tuple[str, str], ImageBank]:
    """The decoded images of each (content|style, train|val) part of the split that are on disk."""
    load_size = args.load_size if args.load_size is not None else 2 * args.image_size
    banks = {}
    for kind, directory in (("content", args.content_dir), ("style", args.style_dir)):
        for part in ("train", "val"):
            names = [n for n in split[kind][part] if (Path(directory) / n).is_file()]
            banks[kind, part] = ImageBank(directory, names, args.image_size, load_size)
    return banks


class _TrainState:
    """The decoder, its optimiser and what the checkpoint records (iteration, history, runs)."""

    def __init__(self, args, ctx: _Context, ckpt: Optional[dict], split: dict):
        from ..models import Decoder

        self.args, self.ctx, self.split = args, ctx, split
        self.instance_norm = (bool(ckpt["config"].get("instance_norm", True)) if ckpt is not None
                              else not args.no_instance_norm)
        if args.no_instance_norm and self.instance_norm:  # the architecture is the checkpoint's: never ignore the flag
            raise TrainingError(f"{ctx.out} holds a decoder with instance normalisation; "
                                "--no-instance-norm needs a new --out")
        torch.manual_seed(args.seed)
        self.decoder = Decoder(instance_norm=self.instance_norm).to(ctx.device)
        self.optimizer = torch.optim.Adam(self.decoder.parameters(), lr=args.lr)
        self.iteration, self.history, self.runs = 0, [], []
        if ckpt is not None:
            self.decoder.load_state_dict(ckpt["state_dict"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            for group in self.optimizer.param_groups:
                group["lr"] = args.lr
            self.iteration, self.history = int(ckpt["iteration"]), list(ckpt["history"])
            self.runs = list(ckpt.get("runs", []))
        self.this_run = {"first_iteration": self.iteration, "device": device_name(ctx.device),
                         "world_size": ctx.world, "lr": args.lr, "pixel_weight": args.pixel_weight,
                         "image_size": args.image_size, "batch_size": args.batch_size}
        self.model = self.decoder
        if ctx.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.model = DDP(self.decoder, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)

    def step(self, encoder, content: ImageBank, style: ImageBank, swap) -> Tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step on this iteration's crops and their swaps; (loss, feature loss) on the device."""
        args, B = self.args, self.args.batch_size
        g = iteration_generator(args.seed, self.ctx.rank, self.iteration)
        c = content.random_batch(B, g, self.ctx.device)
        s = style.random_batch(B, g, self.ctx.device)
        targets = make_targets(encoder, c, s, all_pairs=True, swap=swap)
        self.optimizer.zero_grad(set_to_none=True)
        loss, feat, _ = decoder_loss(encoder, self.model, targets, args.tv_weight,
                                     images=torch.cat([c, s]), pixel_weight=args.pixel_weight)
        loss.backward()
        self.optimizer.step()
        self.iteration += 1
        return loss.detach(), feat

    def validate(self, encoder, content: ImageBank, style: ImageBank, swap) -> Optional[Dict[str, float]]:
        """Rank 0: the validation losses, also appended to the history."""
        if self.ctx.rank != 0:
            return None
        self.decoder.eval()
        v = validate(encoder, self.decoder, content, style, self.args.batch_size, self.args.tv_weight,
                     self.ctx.device, swap)
        self.decoder.train()
        if v:
            self.history.append({"iteration": self.iteration, **v})
        return v

    def checkpoint(self) -> dict:
        """The checkpoint dict; rank 0 also writes it (atomically) to --out."""
        state = {
            "state_dict": {k: v.detach().cpu() for k, v in self.decoder.state_dict().items()},
            "config": {"instance_norm": self.instance_norm},
            "optimizer": self.optimizer.state_dict(),
            "iteration": self.iteration,
            "split": self.split,
            "args": _plain_args(self.args),
            "history": self.history,
            "runs": self.runs + [{**self.this_run, "last_iteration": self.iteration,
                                  "seconds": round(time.monotonic() - self.ctx.start_time, 1)}],
        }
        if self.ctx.rank == 0:
            _save_atomic(state, self.ctx.out)
        return state


class _LossLog:
    """Each step's losses, kept on the device until a log step (``--log-every``) reads them back
    at once: reading every step (.item()) would make the host wait for the GPU each time instead
    of queueing the next step. On the CPU every step is read (for the progress bar)."""

    def __init__(self, ctx: _Context):
        self.ctx = ctx
        self.pending: List[torch.Tensor] = []
        self.window: List[Tuple[float, float]] = []
        self.shown: Optional[float] = None  # the loss the progress bar shows

    def add(self, loss: torch.Tensor, feat: torch.Tensor) -> None:
        self.pending.append(torch.stack([loss, feat]))

    def after_step(self, iteration: int) -> Optional[Dict[str, float]]:
        """The history entry when ``iteration`` is a log step, else None."""
        args = self.ctx.args
        log_now = iteration % args.log_every == 0 or iteration == args.iters
        if log_now or _reads_every_step(self.ctx.device):
            self.window += _read_losses(self.pending, self.ctx.world)
            self.pending, self.shown = [], self.window[-1][0]
        if not log_now:
            return None
        entry, self.window = _window_mean(iteration, self.window), []
        return entry

    def flush(self, iteration: int) -> Optional[Dict[str, float]]:
        """The last entry after the loop (the steps since the last log step), if any."""
        self.window += _read_losses(self.pending, self.ctx.world)
        self.pending = []
        if not self.window:
            return None
        entry, self.window = _window_mean(iteration, self.window), []
        return entry


class _StopClock:
    """``--time-limit``: stop when the time left would not hold two more steps, a checkpoint, a
    validation due at the next iteration and 2 s of margin. Rank 0's clock decides for every rank
    (one small all-reduce per iteration), so all ranks stop at the same step."""

    def __init__(self, args, ctx: _Context):
        self.args, self.ctx = args, ctx
        self.step_seconds: List[float] = []
        self.save_cost = self.val_cost = 0.0

    def step_took(self, seconds: float) -> None:
        self.step_seconds.append(seconds)

    def save_took(self, seconds: float) -> None:
        self.save_cost = max(self.save_cost, seconds)

    def validation_took(self, seconds: float) -> None:
        self.val_cost = max(self.val_cost, seconds)

    def must_stop(self, iteration: int) -> bool:
        args, ctx = self.args, self.ctx
        stop = 0.0
        if args.time_limit is not None and ctx.rank == 0:
            recent = sorted(self.step_seconds[-20:])
            per_step = recent[len(recent) // 2]
            reserve = 2 * per_step + self.save_cost + (self.val_cost if iteration % args.val_every == 0 else 0) + 2.0
            stop = float(time.monotonic() - ctx.start_time + reserve > args.time_limit)
        if ctx.world > 1:
            import torch.distributed as dist

            flag = torch.tensor([stop], device=ctx.device)
            dist.all_reduce(flag)
            stop = flag.item()
        return stop > 0


def _finish(args, ctx: _Context, state: _TrainState, first: int, stopped: bool, step_seconds: List[float]) -> None:
    """Close the process group (after a parameter digest per rank) and print the run's summary."""
    if ctx.world > 1:
        import torch.distributed as dist

        sys.stderr.write(f"[rank {ctx.rank}/{ctx.world}] iterations {first}..{state.iteration} "
                         f"params_sha256={param_digest(state.decoder)}\n")
        sys.stderr.flush()
        dist.barrier()
        dist.destroy_process_group()
    elapsed = time.monotonic() - ctx.start_time
    done = state.iteration - first
    rate = done / sum(step_seconds) if step_seconds else 0.0
    last = next((h for h in reversed(state.history) if "loss" in h), None)
    lv = next((h for h in reversed(state.history) if "val_loss" in h), None)
    summary = f"train loss {last['loss']:.4g}" if last else "no iterations run"
    if lv:
        summary += f", val loss {lv['val_loss']:.4g} (at {lv['iteration']})"
    _say(args, ctx.rank, f"styleswap train-decoder: {'stopped before the time limit at' if stopped else 'reached'} "
                         f"iteration {state.iteration} ({done} this run, {rate:.2f} it/s, {elapsed:.0f} s); "
                         f"{summary}; wrote {ctx.out}")


def export_weights(checkpoint, destination) -> Path:
    """Write the shippable weights of a training checkpoint: ``{"state_dict", "config", "meta"}``.

    Drops the optimiser state (2/3 of the file); ``meta`` keeps what a model card needs (iteration,
    arguments, the validation split, the last train and validation losses, the runs with their
    devices and seconds, and ``train_seconds``, their sum). The result loads with
    :func:`styleswap_ext.models.load_decoder`; fp32, about 2.2 MB.
    """
    ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
    missing = [k for k in CHECKPOINT_KEYS if k not in ck]
    if missing:
        raise TrainingError(f"{checkpoint} is not a training checkpoint (missing {', '.join(missing)})")
    history, runs = ck["history"], list(ck.get("runs", []))
    meta = {
        "iteration": ck["iteration"],
        "args": ck["args"],
        "val_split": {k: ck["split"][k]["val"] for k in ("content", "style")},
        "last_train": next((h for h in reversed(history) if "loss" in h), None),
        "last_val": next((h for h in reversed(history) if "val_loss" in h), None),
        "runs": runs,
        "train_seconds": round(sum(r["seconds"] for r in runs), 1),
    }
    out = {"state_dict": {k: v.float().contiguous() for k, v in ck["state_dict"].items()},
           "config": dict(ck["config"]), "meta": meta}
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    _save_atomic(out, destination)
    return destination
