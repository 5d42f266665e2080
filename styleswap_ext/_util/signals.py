"""Stop signals take the clean-up path of Ctrl-C.

Python turns SIGINT into ``KeyboardInterrupt``, so a Ctrl-C unwinds the stack: atomic writes
(``_atomic.atomic_path``) remove their temporary files, background saves finish, the CLI prints one
line and exits 130. SIGTERM (what ``timeout``, ``kill`` and most schedulers send) and SIGHUP (a
closed terminal) would instead end the process where it stands, leaving e.g. the hidden
``.out.mp4.*.part.mp4`` of a video behind. :func:`stop_signals_raise` makes them raise
:class:`Stopped`, a ``KeyboardInterrupt``, so every command takes that same path.

Only signals still at their default disposition are taken over: under ``nohup`` SIGHUP stays
ignored. Once one stop signal has arrived, further ones are ignored until the block ends, so that
a second ``kill`` cannot cut the clean-up short (SIGKILL still ends the process).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Stopped(KeyboardInterrupt):
    """A stop signal (SIGTERM, SIGHUP) raised as an exception; ``signum`` is the signal's number."""

    def __init__(self, signum: int):
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)


def _is_default(signum: int, handler) -> bool:
    return handler is signal.SIG_DFL or (signum == signal.SIGINT and handler is signal.default_int_handler)


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Within the block, SIGINT raises ``KeyboardInterrupt`` and SIGTERM / SIGHUP raise :class:`Stopped`
    (in the main thread; elsewhere signal handlers cannot be set and this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def stop(signum, frame):
        for s in previous:  # the clean-up that follows must not be interrupted in turn
            signal.signal(s, signal.SIG_IGN)
        raise KeyboardInterrupt if signum == signal.SIGINT else Stopped(signum)

    for s in _STOP_SIGNALS:
        if _is_default(s, signal.getsignal(s)):
            previous[s] = signal.signal(s, stop)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
