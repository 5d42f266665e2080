"""``search="auto"``: the exact patch search where it is cheap on the device in use, else the
approximate one (docs/approximate_search.md, "Which search runs").

The pipeline (``stylize``, ``StyleBank``, ``styleswap stylize`` / ``video``) defaults to ``"auto"``;
the operators (``style_swap``, ``match_patches``, ``PatchBank``, ``StyleSwap``) keep ``"exact"``.

The exact match does n_c · n_s · C·k² multiply-adds (content patches × style patches × patch length)
where it multiplies patches (prepare_bank + match_bank), and n_c · n_s · C where it multiplies pixels
(the CPU at stride 1: ``match_styles``, the same match). :func:`choose` estimates its time from
``EXACT_RATE``, the measured rate (of those multiply-adds per second) of the exact op on each kind of
device, and keeps the exact search while that estimate is at most :data:`EXACT_BUDGET_S`; above it the
approximate search runs (a small fraction of the work, a chosen score 0.994-0.997 of the best). The
rates are constants, not measured per machine, so a command picks the same search on every machine
of a kind. No torch import here: the command line builds its
parser from :data:`SEARCHES` before torch loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["SEARCHES", "EXACT_RATE", "CPU_MAPS_RATE", "EXACT_BUDGET_S", "SearchChoice", "check", "choose",
           "exact_seconds"]

from .._util.choices import SEARCHES  # ("auto", "exact", "approximate"): one list for the CLI, the studio, the API
from .._util.choices import matches_from_maps

# The exact search while it takes at most this long (estimated): on the CPU the bundled demo (6,580 x
# 5,452 patches) and a 512 px photo against a 512 px painting stay exact, 1024 px x 1024 px does not.
EXACT_BUDGET_S = 2.0

# Multiply-adds per second of the exact match, by device type and, on CUDA, precision (the CPU matches
# in float32 for every precision). Measured (BENCHMARKS.md, "Which search runs"): cpu = the patch
# multiply-adds of styleswap::match_bank on the 2-core AMD EPYC development machine (AVX2), 1024 px x
# 1024 px (9.6e12 multiply-adds) in one quiet run; cpu maps = the pixel multiply-adds of
# styleswap::match_styles (stride 1, 3 x 3 patches; its shifted sums and tile halos included) on the
# same machine (BENCHMARKS.md, "Exact match from the style maps"); cuda = the NVIDIA H200 run of
# 2026-11-27 (default kernel, 1024 px x 1024 px: 210 ms TF32, 91 ms bf16); fp32 ("highest", three TF32
# products) was not timed there and is taken as a third of TF32.
CPU_MAPS_RATE = 4.3e10
EXACT_RATE = {
    ("cpu", "fp32"): 1.1e11,
    ("cpu", "tf32"): 1.1e11,
    ("cpu", "bf16"): 1.1e11,
    ("cuda", "tf32"): 4.6e13,
    ("cuda", "bf16"): 1.05e14,
    ("cuda", "fp32"): 1.5e13,
}


def check(search) -> str:
    """``search`` is one of :data:`SEARCHES` (a ValueError naming them otherwise)."""
    if not isinstance(search, str) or search not in SEARCHES:
        raise ValueError(f"search must be one of {', '.join(map(repr, SEARCHES))}, got {search!r}")
    return search


def exact_seconds(content_patches: int, style_patches: int, channels: int, patch_size: int, stride: int,
                  device_type: str, precision: str = "fp32") -> float:
    """Estimated seconds of the exact match of ``content_patches`` x ``style_patches`` patches
    (``patch_size`` x ``patch_size`` of ``channels`` channels, ``stride``) on a ``device_type`` ("cpu",
    "cuda") device under ``precision``."""
    if matches_from_maps(device_type, stride):  # match_styles: pixel products
        return content_patches * style_patches * channels / CPU_MAPS_RATE
    rate = EXACT_RATE.get((device_type, precision), EXACT_RATE[("cpu", "fp32")])
    return content_patches * style_patches * channels * patch_size * patch_size / rate


@dataclass(frozen=True)
class SearchChoice:
    """What :func:`choose` decided: ``search`` ("exact" or "approximate"), what was asked
    (``requested``), and why (``reason``, for :meth:`line`)."""

    search: str
    requested: str
    content_patches: int
    style_patches: int
    exact_seconds: Optional[float]
    reason: str

    def line(self) -> str:
        """One line for the user, e.g. ``search: approximate (exact would take ~40 s here: 48,260 x
        50,800 patches)``."""
        return f"search: {self.search} ({self.reason})"


def _seconds(s: float) -> str:
    if s < 0.1:
        return "under 0.1 s"
    return f"~{s:.2g} s" if s < 10 else f"~{s:,.0f} s"


def choose(requested: str, content_patches: int, style_patches: int, channels: int, patch_size: int, stride: int,
           device_type: str, precision: str = "fp32") -> SearchChoice:
    """The search to run for ``requested`` ("auto", "exact", "approximate"): the explicit ones as
    given; "auto" exact when :func:`exact_seconds` <= :data:`EXACT_BUDGET_S`, else approximate (both
    take every control: regions, style weights, a temporal bonus)."""
    check(requested)
    seconds = exact_seconds(content_patches, style_patches, channels, patch_size, stride, device_type, precision)
    size = f"{content_patches:,} x {style_patches:,} patches"
    if requested != "auto":
        search, reason = requested, f"asked for; exact would take {_seconds(seconds)} here: {size}"
    elif seconds <= EXACT_BUDGET_S:
        search, reason = "exact", f"{_seconds(seconds)} here: {size}"
    else:
        search, reason = "approximate", f"exact would take {_seconds(seconds)} here: {size}"
    return SearchChoice(search, requested, content_patches, style_patches, seconds, reason)
