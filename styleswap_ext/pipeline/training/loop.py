"""The training loop of the inverse network: set-up (devices, DDP), iterations, validation, resume, the
final checkpoint.

Recipe (DESIGN.md §1, the authors' Torch code): every iteration draws B content and B style
images (default B = 2), takes one random ``image_size``² crop of each, encodes them with the
frozen VGG-19 Φ to relu3_1 and adds the style swaps of **every** content × style pair
(B² swaps, 3×3 patches, stride 1) as extra targets: 2B + B² targets (8 for B = 2). Without the
swapped targets the net only inverts activations inside Φ's range.

Optimiser: Adam, lr 1e-3 (paper). Under DDP the gradients are averaged over the ranks, so the
effective batch is ``world_size × (2B + B²)`` targets at the same lr.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from ..._util.machine import device_name
from .checkpoints import CHECKPOINT_KEYS, _plain_args, _save_atomic, param_digest
from .data import ImageBank, TrainingError, _image_banks, _image_split, iteration_generator
from .loss import decoder_loss, make_targets, swap_function
from .options import check_arguments

def _say(args, rank: int, message: str) -> None:
    if rank == 0 and not args.quiet:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def _progress(args) -> bool:
    """Progress bars: the CLI's ``args.progress`` (off with -q or when stderr is not a terminal, e.g. a log)."""
    return getattr(args, "progress", not args.quiet)


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

    from ...models import load_encoder

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


class _TrainState:
    """The decoder, its optimiser and what the checkpoint records (iteration, history, runs)."""

    def __init__(self, args, ctx: _Context, ckpt: Optional[dict], split: dict):
        from ...models import Decoder

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
