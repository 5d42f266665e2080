"""styleswap_ext.pipeline.overlap: decode ahead and save behind in background threads, in order, bounded,
with each item's failure kept with that item."""

from __future__ import annotations

import threading
import time

import pytest

from styleswap_ext.pipeline.overlap import BackgroundSaver, Prefetcher


def test_prefetcher_yields_in_order_one_ahead():
    started = []
    seen = []

    def load(i):
        started.append(i)
        return i * 10

    with Prefetcher(load, range(5), ahead=1) as pre:
        for i, fut in pre:
            assert fut.result() == i * 10
            seen.append((i, len(started)))
    assert [i for i, _ in seen] == list(range(5))
    # when item i is handed out, no load beyond item i+1 has started (bounded memory)
    assert all(n <= i + 2 for i, n in seen), seen


def test_prefetcher_loads_while_the_consumer_works():
    second_started = threading.Event()

    def load(i):
        if i == 1:
            second_started.set()
        return i

    with Prefetcher(load, range(3)) as pre:
        for i, fut in pre:
            if i == 0:  # still working on item 0: item 1 is being loaded meanwhile
                assert second_started.wait(timeout=10)
            fut.result()


def test_prefetcher_failure_stays_with_its_item():
    def load(i):
        if i == 1:
            raise ValueError("bad item 1")
        return i

    results = {}
    with Prefetcher(load, range(3)) as pre:
        for i, fut in pre:
            try:
                results[i] = fut.result()
            except ValueError as e:
                results[i] = str(e)
    assert results == {0: 0, 1: "bad item 1", 2: 2}


def test_prefetcher_stops_early_without_loading_the_rest():
    started = []

    def load(i):
        started.append(i)
        time.sleep(0.01)
        return i

    with Prefetcher(load, range(100), ahead=1) as pre:
        for i, fut in pre:
            fut.result()
            break
    assert len(started) <= 3, started


def test_prefetcher_checks_ahead():
    with pytest.raises(ValueError, match="ahead"):
        Prefetcher(lambda i: i, [], ahead=-1)


def test_saver_saves_everything_and_reports_failures_in_order():
    saved = []
    lock = threading.Lock()

    def save(value, name):
        time.sleep(0.01)
        if name == "b":
            raise OSError(28, "No space left on device")
        with lock:
            saved.append((name, value))

    reports = []
    with BackgroundSaver(save, pending=1) as saver:
        for k, name in enumerate("abcd"):
            reports += saver.submit(name, k, name)
            # after submit returns at most `pending` (1) saves are outstanding: k + 1 submitted, >= k reported
            assert len(reports) >= k, (k, reports)
        reports += saver.finish()
    assert [key for key, _ in reports] == list("abcd")
    errors = {key: exc for key, exc in reports if exc is not None}
    assert list(errors) == ["b"] and "No space left" in str(errors["b"])
    assert sorted(saved) == [("a", 0), ("c", 2), ("d", 3)]


def test_saver_runs_in_the_background():
    release = threading.Event()
    done = []

    def save(x):
        release.wait(timeout=10)
        done.append(x)

    with BackgroundSaver(save, pending=1) as saver:
        assert saver.submit("x", 1) == []  # returns at once: the save waits for `release`
        assert done == []
        release.set()
        assert saver.finish() == [("x", None)]
    assert done == [1]


def test_saver_checks_pending():
    with pytest.raises(ValueError, match="pending"):
        BackgroundSaver(lambda: None, pending=0)
