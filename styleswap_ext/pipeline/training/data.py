"""The training data: image lists, the train/validation split, images kept in memory, the crops' random
generators.

Data: the images of each directory are split once into train and validation by a hash of the
file name (the ``ceil(val_fraction·n)`` names with the smallest SHA-1 are validation; stable,
independent of the machine and of the order of listing). The split is stored in the checkpoint
and reused on ``--resume``; the quality report reads it to use validation images only. Train
images are decoded once, resized so their shorter side is ``load_size`` (default 2 × image_size;
images whose shorter side is under ``image_size`` are upscaled to it) and kept in memory as uint8.
The random crops of iteration ``t`` on rank ``r`` come from a generator seeded with
``(seed, r, t)``, so a resumed run draws exactly the crops an uninterrupted run would have drawn.
Validation uses fixed centre crops: content i with style i mod n_style.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

class TrainingError(RuntimeError):
    """A training run cannot start or continue (missing data, incompatible checkpoint, ...)."""


def list_images(directory) -> List[str]:
    """Sorted file names of the images in ``directory`` (not recursive)."""
    from ..image_io import is_image_path

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

    from ..image_io import load_image

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
