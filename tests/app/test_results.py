"""cached_result: one definition gives a cached, guarded result function keyed on the run."""

from __future__ import annotations

import inspect
import threading
from types import SimpleNamespace

import pytest
import streamlit as st

from app import results
from app.results import cached_result


@pytest.fixture
def errors(monkeypatch):
    shown = []
    monkeypatch.setattr(st, "error", shown.append)
    return shown


def held_elsewhere() -> bool:
    """Whether another thread holds the probes' lock."""
    free = []

    def probe() -> None:
        free.append(results._LOCK.acquire(blocking=False))
        if free[0]:
            results._LOCK.release()

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return not free[0]


def test_one_definition_caches_per_run_and_argument(tmp_path, errors):
    calls = []

    @cached_result("the thing of {run.name} at {n}", locked=True, unhashed=("blob",))
    def thing(run, n: int, blob: list, *, scale: int = 1) -> int:
        """Doc of the thing."""
        calls.append((n, scale, held_elsewhere()))
        if n < 0:
            raise ValueError("negative")
        return n * scale + len(blob)

    @cached_result("the other")
    def other(run, n: int, blob: list, *, scale: int = 1) -> int:
        return -n

    run = SimpleNamespace(path=tmp_path, name="r")
    assert inspect.signature(thing) == inspect.signature(thing.__wrapped__)
    assert thing.__name__ == "thing" and thing.__doc__ == "Doc of the thing."
    assert thing(run, 2, [0]) == 3 and calls == [(2, 1, True)]  # computed under the lock
    assert thing(run, 2, [0, 0, 0]) == 3 and len(calls) == 1  # blob is not part of the key
    assert thing(run, n=2, blob=[], scale=1) == 3 and len(calls) == 1  # bound like the call
    assert thing(run, 2, [0], scale=3) == 7 and len(calls) == 2
    assert other(run, 2, [0]) == -2  # another function never shares the cache
    assert thing(SimpleNamespace(path=tmp_path / "b", name="b"), 2, [0]) == 3 and len(calls) == 3

    (tmp_path / "manifest.json").write_text("{}")  # the run was retrained: a new key
    assert thing(run, 2, [0]) == 3 and len(calls) == 4
    assert not errors

    assert thing(run, -1, []) is None
    assert errors == ["Could not load the thing of r at -1: ValueError: negative"]
    with pytest.raises(ValueError, match="negative"):
        thing.unguarded(run, -1, [])


def test_unlocked_results_do_not_take_the_lock(tmp_path, errors):
    @cached_result("the free one")
    def free(run) -> bool:
        return held_elsewhere()

    assert free(SimpleNamespace(path=tmp_path, name="r")) is False and not errors
