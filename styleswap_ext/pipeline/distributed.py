"""Sharding a collection of files across the processes of a ``torchrun`` launch.

    torchrun --nproc_per_node N [--nnodes M --node_rank R --master_addr HOST ...] \\
        -m styleswap_ext stylize DIR STYLE -o OUTDIR

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in every process. Rule: the input files
are sorted (the same order on every process, so every host must see the same DIR, e.g. on a
shared file system) and process ``RANK`` takes ``sorted(files)[RANK::WORLD_SIZE]``. The shards
are disjoint and cover every file, so each output is written exactly once, by one process; each
image is processed exactly as in a single-process run, so the outputs are the same.

No process group is needed for that (nothing is communicated), so none is created: a launch on
CPUs only and one across hosts work the same way. On CUDA, process ``LOCAL_RANK`` uses GPU
``cuda:LOCAL_RANK`` (modulo the number of visible GPUs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Sequence, TypeVar

import torch

__all__ = ["World", "world", "shard", "device_for"]

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {text!r}") from None


def world() -> World:
    """The process's place in a torchrun launch (rank 0 of 1 when not launched by torchrun)."""
    size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if size < 1 or not (0 <= rank < size):
        raise ValueError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={size}")
    return World(rank, size, local)


def shard(items: Sequence[T], w: World = None, key=None) -> List[T]:
    """``sorted(items)[rank::size]``: this process's share (disjoint, covering, deterministic)."""
    w = w or world()
    return sorted(items, key=key)[w.rank::w.size]


def device_for(device: torch.device, w: World = None) -> torch.device:
    """On CUDA without an explicit index, process LOCAL_RANK takes GPU LOCAL_RANK."""
    w = w or world()
    if device.type == "cuda" and device.index is None and w.distributed and torch.cuda.is_available():
        return torch.device("cuda", w.local_rank % torch.cuda.device_count())
    return device
