"""Shared benchmark plumbing: allocator settings, thread count and a robust timer."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from analysis.allocator import pin_allocator

# TARGETS.md: glibc's default allocator makes CPU timings depend on what ran before. A benchmark
# that imports this module runs with the thresholds `collab` pins (analysis/allocator.py:
# mallopt in this process, the variables for the processes it starts).
pin_allocator()


def setup(threads: int = 2, seed: int = 0) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)


def median_time(fn: Callable[[], object], *, repeats: int = 7, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
