"""File I/O that overlaps the stylisation: images are decoded ahead and results saved behind, each
in one background thread, so that the decode of the next image and the save of the last one run
while the device works on the current one. Pillow and torch release the GIL in their C code, so a
thread is enough (no processes, no pickling of 50 MB images).

At 4096 px a PNG takes ~0.5 s to decode and ~1 s to save (zlib level 1) on the CPU, against
~1.5 s for the whole GPU pass: done one after the other they were most of a picture's time.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Deque, Iterable, Iterator, List, Optional, Tuple


class Prefetcher:
    """Runs ``load(item)`` for ``items`` in a background thread, at most ``ahead`` items ahead of the
    one being consumed, and yields ``(item, future)`` in order; ``future.result()`` returns the
    loaded value or raises what ``load`` raised (so each item's failure stays with that item).

    Use as a context manager: on exit, loads not yet started are cancelled and a running one is
    waited for.
    """

    def __init__(self, load: Callable[[Any], Any], items: Iterable, ahead: int = 1):
        if ahead < 0:
            raise ValueError(f"ahead must be >= 0, got {ahead}")
        self._load, self._items, self._ahead = load, iter(items), ahead
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="styleswap-load")
        self._queue: Deque[Tuple[Any, Future]] = deque()
        self._fill(ahead + 1)  # the first item and `ahead` more start now

    def _fill(self, n: int) -> None:
        while len(self._queue) < n:
            item = next(self._items, _END)
            if item is _END:
                return
            self._queue.append((item, self._pool.submit(self._load, item)))

    def __iter__(self) -> Iterator[Tuple[Any, Future]]:
        while self._queue:
            item, fut = self._queue.popleft()
            self._fill(self._ahead)
            yield item, fut

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BackgroundSaver:
    """Runs ``save(*args)`` in a background thread with at most ``pending`` saves outstanding
    (submitting more waits for the oldest), so that memory stays bounded.

    :meth:`submit` and :meth:`finish` return the saves that have ended since the last call, as
    ``(key, exception or None)`` in submission order; the caller reports the failures. Use as a
    context manager: on exit every submitted save is waited for (an atomic save is never cut off).
    """

    def __init__(self, save: Callable[..., Any], pending: int = 1):
        if pending < 1:
            raise ValueError(f"pending must be >= 1, got {pending}")
        self._save, self._pending = save, pending
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="styleswap-save")
        self._queue: Deque[Tuple[Any, Future]] = deque()

    def submit(self, key: Any, *args) -> List[Tuple[Any, Optional[BaseException]]]:
        self._queue.append((key, self._pool.submit(self._save, *args)))
        return self._collect(self._pending)

    def finish(self) -> List[Tuple[Any, Optional[BaseException]]]:
        """Waits for every outstanding save."""
        return self._collect(0)

    def _collect(self, keep: int) -> List[Tuple[Any, Optional[BaseException]]]:
        done = []
        while self._queue and (len(self._queue) > keep or self._queue[0][1].done()):
            key, fut = self._queue.popleft()
            done.append((key, fut.exception()))  # waits for it
        return done

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> "BackgroundSaver":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_END = object()
