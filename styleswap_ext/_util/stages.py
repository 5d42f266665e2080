"""One line per stage on stderr for the runs nobody watches.

Where stderr is not a terminal (a batch job, a CI log, ``nohup``) the command line turns its progress
bars off, and a run of minutes would print nothing until "wrote ...". There it calls :func:`enable`,
and each stage then prints one line with the time since the start::

    styleswap: 2.3 s loaded the style images and the models
    styleswap: 3.1 s encoding 1 style into the patch bank (exact search)
    styleswap: 4.0 s encoding the content (512x384 px)
    styleswap: 4.6 s swapping the patches (exact search)
    styleswap: 5.9 s decoding
    wrote out.png in 6.4 s

Off by default (the Python API and ``-q`` print nothing); no torch import.
"""

from __future__ import annotations

import sys
import time

_state = {"on": False, "detail": False, "t0": 0.0}


def enable(detail: bool = True) -> None:
    """Print stages from now on. ``detail=False``: only the run's stages, not each image's (a video's
    frames would print three lines each)."""
    _state.update(on=True, detail=detail, t0=time.perf_counter())


def disable() -> None:
    _state["on"] = False


def elapsed() -> str:
    """" in 12.3 s" (the time since enable) while stages are printed, else ""."""
    return f" in {time.perf_counter() - _state['t0']:.1f} s" if _state["on"] else ""


def stage(message: str, detail: bool = False) -> None:
    """One stage line; ``detail``: a stage of one image (see :func:`enable`)."""
    if _state["on"] and (_state["detail"] or not detail):
        sys.stderr.write(f"styleswap: {time.perf_counter() - _state['t0']:.1f} s {message}\n")
        sys.stderr.flush()
