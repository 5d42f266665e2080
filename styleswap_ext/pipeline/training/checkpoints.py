"""Training checkpoints: what they hold, writing them atomically, exporting the weights for shipping.

Checkpoint (written atomically by rank 0 every ``save_every`` iterations, at the end, and before
``--time-limit``): ``{"state_dict", "config": {"instance_norm"}, "optimizer", "iteration", "split",
"args", "history", "runs"}``; ``runs`` has one entry per run (resumes included: first and last
iteration, seconds, device, world size, lr, pixel weight, image size, batch), so a model card can
state the training's wall time and hardware (checkpoints written before it have none); loadable
with ``torch.load(weights_only=True)`` and with :func:`styleswap_ext.models.load_decoder`.
:func:`export_weights` strips the optimiser state for shipping (``styleswap_ext/models/weights/decoder.pth``).

"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ..._util.atomic import torch_save_atomic
from .data import TrainingError

# the keys a training checkpoint must have ("runs" is newer: older checkpoints lack it)
CHECKPOINT_KEYS = ("state_dict", "config", "optimizer", "iteration", "split", "args", "history")


def param_digest(module: torch.nn.Module) -> str:
    """SHA-256 of the state dict's tensors (bytes, in key order): equal iff bit-identical."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _save_atomic(obj, path: Path) -> None:
    torch_save_atomic(obj, path)


def _plain_args(args) -> dict:
    out = {}
    for k, v in vars(args).items():
        if k in ("func", "command"):
            continue
        out[k] = str(v) if isinstance(v, os.PathLike) else v
    return out


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
