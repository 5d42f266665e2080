"""How much memory a stylisation will take, checked against what the device has, before allocating.

A plan that does not fit is refused with one line naming both figures and the options that would
make it fit (``--content-size``, ``--style-size``, ``--tile-size``), instead of filling the RAM for
minutes until the kernel kills the process (an upscale to ``--content-size 100000`` asks for
terabytes). The estimate follows the pipeline's buffers (``styleswap_ext/pipeline/stylization.py``):

* held through the run: the decoded input images, the content's relu3_1 features and their swap
  (256 channels at 1/4 of the side: 64 bytes per image px each in fp32), each style's features and
  its patch bank (an n_s x 256·k² matrix: about 576 bytes per style px at k = 3; on the CPU at stride 1
  the exact match reads the style maps instead: the inverse norms, the pixels once more, channel-last,
  and :data:`MAPS_TILE_BYTES_PER_THREAD` per core; with ``search="approximate"`` its index: the bank
  on 64 channels twice while it is built, and the styles' pixels once more for the exact rerank,
  about 300 bytes per style px; ``search="auto"`` is counted as the larger of the exact bank and
  the index), the match indices and the output image;
* the largest passing peak: the encoder or the decoder on one tile (``tile_size`` px plus the halo
  per side, the whole image when it is not tiled), or the optimisation's untiled encoder with its
  autograd activations and Adam's state.

The per-pixel working-memory figures were measured on the CPU (peak RSS above the loaded models,
fp32, ``benchmarks``-style runs at 512 and 1024 px: one optimisation step 1,690-2,640 bytes per image
px; the larger, rounded up, is used). The encoder and decoder passes on the CPU run the kernels of
:mod:`styleswap_ext.models.cpu_layers`, measured at 512-1048 px: encoder 573 MB + 810-1,210 bytes per px,
decoder 658 MB + 1,200-1,600 (NNPACK's workspace, kept for the process, and the freed blocks glibc
keeps); counted as :data:`CPU_PASS_BYTES` plus 950 and 1,300 bytes per px (the modules
alone, on a GPU: 780 and 770-940). The estimate of a whole ``stylize`` came out 9-26 % above its
measured peak (docs/high_resolution.md, "Memory"; before the CPU kernels).
``STYLESWAP_NO_MEMORY_CHECK=1`` skips the check.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from .._util.choices import REDUCED_CHANNELS, matches_from_maps

__all__ = ["MemoryPlanError", "Plan", "estimate", "available_bytes", "check", "check_inputs", "check_settings",
           "image_hw", "resized_hw"]

HW = Tuple[int, int]

DOWN = 4           # relu3_1: image px per feature px along a side
CHANNELS = 256     # relu3_1 channels
ENC_HALO = 12      # image px of context per tile side (styleswap_ext.pipeline.tiling.encoder_halo)
FP32 = 4
# Working memory per image px of one pass, fp32 on the CPU (measured; see the module docstring), and
# what a CPU pass adds whatever its size (NNPACK's workspace, the freed blocks glibc keeps).
ENCODER_BYTES_PER_PX = 950
DECODER_BYTES_PER_PX = 1300
CPU_PASS_BYTES = 384 * 2**20
OPTIMIZE_BYTES_PER_PX = 2700
IMAGE_BYTES_PER_PX = 3 + 3 + 12 + 12   # decoded RGB, resized RGB, uint8 tensor, float tensor
OUTPUT_BYTES_PER_PX = 12 + 12 + 3 + 3  # float result, its clamp, uint8 tensor, PIL image
# The CPU's exact match from the style maps (stride 1, csrc/cpu/match_styles_cpu.cpp): per thread, a
# content tile (256 x ~4,096 floats), the ring of GEMM rows (~10 x 66 x 4,096) and their input: ~16 MiB.
MAPS_TILE_BYTES_PER_THREAD = 16 * 2**20


class MemoryPlanError(RuntimeError):
    """The stylisation would need more memory than the device has available."""


@dataclass
class Plan:
    """Estimated bytes of a run: ``held`` for its whole length, ``peak`` (the largest transient)."""

    held: Dict[str, int] = field(default_factory=dict)
    passes: Dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.held.values()) + max(self.passes.values(), default=0)


def resized_hw(hw: HW, size: Optional[int]) -> HW:
    """(h, w) after resizing so the longest side is ``size`` (as image_io.resize_longest)."""
    h, w = hw
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:  # None, or bad: the loader says so
        return h, w
    scale = size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def image_hw(x) -> Optional[HW]:
    """(h, w) of an image input without decoding it: a tensor's shape, a PIL image's size, an image
    file's header. None when unknown (an unreadable file: loading it reports that)."""
    shape = getattr(x, "shape", None)
    if shape is not None and len(shape) >= 2:
        return int(shape[-2]), int(shape[-1])
    size = getattr(x, "size", None)
    if isinstance(size, tuple) and len(size) == 2:
        return int(size[1]), int(size[0])
    if isinstance(x, (str, os.PathLike)):
        try:
            from PIL import Image

            with Image.open(x) as im:  # reads the header only
                return im.height, im.width
        except Exception:
            return None
    return None


def _tile_px(hw: HW, tile_size: int) -> int:
    """Image px of the largest encoder/decoder tile (the whole image when it is not tiled)."""
    h, w = hw
    if not tile_size or max(h, w) <= tile_size:
        return h * w
    return min(h, tile_size + 2 * ENC_HALO) * min(w, tile_size + 2 * ENC_HALO)


def _grid(n: int, k: int, s: int) -> int:
    return max(0, (n - k) // s + 1)


def estimate(content: Optional[Tuple[HW, HW]], styles: Sequence[Tuple[HW, HW]], *, method: str = "decoder",
             patch_size: int = 3, stride: int = 1, tile_size: int = 0, precision: str = "fp32",
             init: str = "content", search: str = "exact", device_type: str = "cpu") -> Plan:
    """The plan for one content and a bank of styles on a ``device_type`` ("cpu", "cuda") device.

    ``content`` and each of ``styles`` are ``(source_hw, processed_hw)``: the image as decoded and
    after resizing; ``content=None`` plans the style bank alone. Styles already encoded (a
    :class:`~styleswap_ext.pipeline.StyleBank`) are left out: their memory is in use already.
    """
    plan = Plan()
    pass_bytes = CPU_PASS_BYTES if device_type == "cpu" else 0
    feat_bytes = CHANNELS * FP32 * (2 if precision == "bf16" else 1)  # + a bf16 copy; per feature px
    for i, (src, (h, w)) in enumerate(styles):
        fh, fw = h // DOWN, w // DOWN
        n_s = _grid(fh, patch_size, stride) * _grid(fw, patch_size, stride)
        plan.held[f"style {i + 1} image and features"] = src[0] * src[1] * 3 + h * w * 12 + fh * fw * feat_bytes
        # reduced bank + its sorted copy (int64 order), the pixel table
        index = (n_s * (2 * REDUCED_CHANNELS * patch_size * patch_size * FP32 + 3 * FP32 + 8)
                 + fh * fw * CHANNELS * FP32)
        if matches_from_maps(device_type, stride):  # no patch matrix: inverse norms, the pixels channel-last, tiles
            bank = n_s * FP32 + fh * fw * CHANNELS * FP32 + MAPS_TILE_BYTES_PER_THREAD * (os.cpu_count() or 1)
        else:
            bank = n_s * (CHANNELS * patch_size * patch_size * FP32 + FP32)
        if search == "approximate" or (search == "auto" and index > bank):
            plan.held[f"style {i + 1} search index"] = index
        else:
            plan.held[f"style {i + 1} patch bank"] = bank
        plan.passes[f"encoding style {i + 1}"] = _tile_px((h, w), tile_size) * ENCODER_BYTES_PER_PX + pass_bytes
    if content is not None:
        src, (h, w) = content
        h, w = h // DOWN * DOWN, w // DOWN * DOWN
        fh, fw = h // DOWN, w // DOWN
        plan.held["content image"] = src[0] * src[1] * 3 + h * w * IMAGE_BYTES_PER_PX
        # content features, their swap (+ the alpha blend), the chosen patch indices
        plan.held["content features and swap"] = fh * fw * (3 * feat_bytes + 8)
        plan.held["output image"] = h * w * OUTPUT_BYTES_PER_PX
        tile = _tile_px((h, w), tile_size)
        plan.passes["encoding the content"] = tile * ENCODER_BYTES_PER_PX + pass_bytes
        if method == "decoder" or init == "decoder":
            plan.passes["decoding"] = tile * DECODER_BYTES_PER_PX + pass_bytes
        if method == "optimize":
            plan.passes["optimisation"] = h * w * OPTIMIZE_BYTES_PER_PX
    return plan


# --- what is available -----------------------------------------------------------------------------


def _meminfo_available() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            text = f.read().strip()
        return None if text == "max" else int(text)
    except (OSError, ValueError):
        return None


def _cgroup_available() -> Optional[int]:
    """Limit minus usage of this process's cgroup (v2, else v1); None without a limit."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 1 << 60:  # v1 says "no limit" with ~2^63
            return max(0, limit - usage)
    return None


def available_bytes(device) -> Optional[int]:
    """Bytes the run can still allocate on ``device``: free GPU memory plus what torch's caching
    allocator holds unused (CUDA), else MemAvailable or the cgroup's room, whichever is less.
    None when unknown (then nothing is refused)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type != "cpu":
        return None
    figures = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    return min(figures) if figures else None


# --- the check --------------------------------------------------------------------------------------


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _largest_fitting(fits, hi: int, lo: int = 16) -> Optional[int]:
    """The largest n in [lo, hi) with fits(n) (fits is monotone), or None."""
    if hi <= lo or not fits(lo):
        return None
    good, bad = lo, hi
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if fits(mid) else (good, mid)
    return good


def check(device, content_src: Optional[HW], content_size: Optional[int], style_srcs: Sequence[HW],
          style_size: Optional[int], *, tile_size: int, **plan_kw) -> Plan:
    """Raise :class:`MemoryPlanError` when the plan needs more than :func:`available_bytes`.

    ``content_src`` / ``style_srcs``: (h, w) of the inputs as they are (None: no content in this
    plan); ``content_size`` / ``style_size``: the longest side they are resized to (None: kept).
    The message names the estimate, what is available and each of ``--content-size``,
    ``--style-size``, ``--tile-size`` that alone would make the plan fit. Returns the plan.
    """
    def plan_for(c_size, s_size, tile):
        content = None if content_src is None else (content_src, resized_hw(content_src, c_size))
        styles = [(s, resized_hw(s, s_size)) for s in style_srcs]
        return estimate(content, styles, tile_size=tile, device_type=getattr(device, "type", str(device).split(":")[0]),
                        **plan_kw)

    plan = plan_for(content_size, style_size, tile_size)
    if os.environ.get("STYLESWAP_NO_MEMORY_CHECK") == "1":
        return plan
    avail = available_bytes(device)
    if avail is None or plan.total <= avail:
        return plan

    def fits(c_size=content_size, s_size=style_size, tile=tile_size):  # with 20 % to spare
        return plan_for(c_size, s_size, tile).total <= 0.8 * avail

    options: List[str] = []
    if content_src is not None:
        n = _largest_fitting(lambda v: fits(c_size=v), max(resized_hw(content_src, content_size)))
        if n is not None:
            options.append(f"--content-size {n}")
    if style_srcs:
        n = _largest_fitting(lambda v: fits(s_size=v), max(max(resized_hw(s, style_size)) for s in style_srcs))
        if n is not None:
            options.append(f"--style-size {n}")
    sides = [max(resized_hw(s, style_size)) for s in style_srcs]
    if content_src is not None:
        sides.append(max(resized_hw(content_src, content_size)))
    for tile in (1024, 512, 256):  # smaller tiles only help images larger than them
        if (not tile_size or tile < tile_size) and tile < max(sides) and fits(tile=tile):
            options.append(f"--tile-size {tile}")
            break
    what = "the content image" if content_src is not None else "the style bank"
    biggest = max({**plan.held, **plan.passes}.items(), key=lambda kv: kv[1])
    advice = ("it would fit with " + ", or ".join(options)) if options else \
        "no smaller --content-size, --style-size or --tile-size alone makes it fit"
    raise MemoryPlanError(
        f"stylising {what} would need about {_gib(plan.total)} of memory on {device} (the largest part: "
        f"{biggest[0]}, {_gib(biggest[1])}), but only {_gib(avail)} is available: {advice}")


def check_inputs(device, content, content_size: Optional[int], styles: Sequence, style_size: Optional[int],
                 **kw) -> Optional[Plan]:
    """:func:`check` for the inputs of :func:`styleswap_ext.pipeline.stylize` (paths, PIL images or
    tensors; ``content=None``: the style bank alone). An input whose size cannot be read is left
    to the loader to report: then nothing is checked (None)."""
    content_src = None if content is None else image_hw(content)
    style_srcs = [image_hw(s) for s in styles]
    if (content is not None and content_src is None) or any(s is None for s in style_srcs):
        return None
    return check(device, content_src, content_size, style_srcs, style_size, **kw)


def check_settings(settings, content) -> Optional[Plan]:
    """:func:`check_inputs` for one checked stylisation (:class:`~styleswap_ext.pipeline.stylization.CheckedSettings`:
    its styles, sizes, device, tiles, method and geometry) and its ``content`` (None: the style bank alone)."""
    s = settings
    return check_inputs(s.device, content, s.content_size, s.styles, s.style_size, tile_size=s.tile_size,
                        method=s.method, patch_size=s.patch_size, stride=s.stride, precision=s.precision, init=s.init,
                        search=s.search)
