"""Keep freed memory in the process for reuse (glibc on Linux): the command line turns it on for a
single image or a video on the CPU, where there is room for it.

glibc gives every block above its mmap threshold (at most 32 MiB by default) back to the kernel as soon
as it is freed, and maps the next one afresh, a page fault per 4 KiB page when it is first written. The
encoder and decoder make a new activation per layer (256 MiB each for a 64-channel 1024 x 1024 map),
so a 1024 px ``styleswap stylize`` took 2.5 million page faults and 7-8 s of system time in a 13-15 s
run (2-core AMD EPYC). With mmap off and no trimming, freed blocks stay in the heap and are reused:
0.5-0.6 million faults, 2 s of system time, the run 1.35x faster, the same output, and a peak 25-45 %
higher (a freed block is not always reusable as it is; BENCHMARKS.md). So the command line turns it on
only where its memory plan leaves at least :data:`HEADROOM` times the estimate free
(``apps/cli/runners.py``); ``STYLESWAP_KEEP_FREED_MEMORY=0`` keeps glibc's default. How a process
manages its memory is the program's choice, not a library's: the Python API never calls this.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

__all__ = ["HEADROOM", "keep_freed_memory", "worth_keeping"]

HEADROOM = 2.0  # free memory / the plan's estimate at or above which freed memory is kept
_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_MAX = -4
_state = {"on": False}


def worth_keeping(estimate: int, available) -> bool:
    """Whether a run whose plan estimates ``estimate`` bytes, with ``available`` bytes free (None:
    unknown), has room for the larger peak."""
    return available is not None and estimate * HEADROOM <= available


def keep_freed_memory() -> bool:
    """From now on, keep freed blocks in the heap for the next allocations (no mmap of large blocks,
    no trimming). True once it is on; False where it is not available (not Linux with glibc) or
    ``STYLESWAP_KEEP_FREED_MEMORY=0``."""
    if _state["on"]:
        return True
    if os.environ.get("STYLESWAP_KEEP_FREED_MEMORY", "1") == "0":
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)  # the process's own C library
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    # mallopt takes an int: the largest trim threshold is 2 GiB (freed memory at the heap's top
    # above that is still given back)
    _state["on"] = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _state["on"]
