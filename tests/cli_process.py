"""The ``styleswap`` command line as a user runs it: a separate Python process (``python -m
styleswap_ext``), its exit code and its stderr. ``patch`` runs a few lines of Python in that process
before ``main`` (a slow save to send a signal into, a network that fails): the test's hook, never
the product's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MISSING_WEIGHTS = "/nonexistent/vgg.pth"  # a run that got as far as loading the models would fail on these
FAST = ["--method", "optimize", "--iters", "1", "-q"]

_MAIN = "import sys\n{patch}\nfrom styleswap_ext.apps.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def _env() -> dict:
    env = dict(os.environ)  # with the test's STYLESWAP_CACHE_DIR (conftest's isolated cache)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("STYLESWAP_DEBUG", None)
    return env


def _argv(args, patch: str):
    return [sys.executable, "-c", _MAIN.format(patch=patch), *map(str, args)]


def styleswap(*args, patch: str = "", timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``styleswap ARGS`` to the end; ``.returncode``, ``.stderr`` (text)."""
    return subprocess.run(_argv(args, patch), cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def as_in_a_terminal() -> None:
    """For ``preexec_fn``: SIGINT and SIGHUP at their defaults, as in a terminal. A test runner started
    under nohup passes SIGHUP on ignored, and one started in the background by a non-interactive shell
    (``cmd &`` in a script) SIGINT: a child would then ignore the Ctrl-C a test sends it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def start(*args, patch: str = "") -> subprocess.Popen:
    """Start ``styleswap ARGS`` (stdout/stderr piped) with the stop signals as in a terminal."""
    return subprocess.Popen(_argv(args, patch), cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=as_in_a_terminal)


def error_line(proc, *needles) -> str:
    """The one line on stderr, ``styleswap: error: ...``, holding every needle."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("styleswap: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def leftovers(*folders) -> list:
    """Hidden temporary files of atomic writes (``.NAME.xxxx.part.EXT``) left in ``folders``."""
    return sorted(str(p) for folder in folders for p in Path(folder).iterdir() if ".part" in p.name)
