"""glibc's allocator, pinned for tensor work on the CPU.

glibc adapts its thresholds as a process frees large blocks. With its defaults, a no-grad forward
pass (evaluation, probes, the app) keeps returning freed activation memory to the system and
faulting it back in. TARGETS.md's benchmarks pin the two thresholds instead:

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=67108864

A no-grad forward pass of two ResNet-20s at batch 100 on 2 threads ran 1.8-1.9x faster with them:
2.31-2.40 s against 4.11-4.64 s for 2,000 images, in six runs of each on 2026-11-30. Training
steps took the same time with and without them.

:func:`pin_allocator` applies the same settings to the ``collab`` process (through ``mallopt``,
the programmatic form of those variables) and to the processes it starts (through the
variables, e.g. the app's Streamlit server). It leaves a process alone whose environment already
sets either variable: that is the user's choice. Set ``MALLOC_TRIM_THRESHOLD_=131072`` (glibc's
default) to keep the default behaviour. Other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: glibc's mallopt parameters (malloc.h) and the values TARGETS.md's benchmarks pin.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
SETTINGS = {
    "MALLOC_MMAP_THRESHOLD_": (M_MMAP_THRESHOLD, 32 * 1024 * 1024),
    "MALLOC_TRIM_THRESHOLD_": (M_TRIM_THRESHOLD, 64 * 1024 * 1024),
}


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # glibc only  # noqa: B018
        return libc
    except (OSError, AttributeError):
        return None


def pin_allocator() -> bool:
    """Pin glibc's mmap and trim thresholds in this process and its future children.

    Returns True when applied here; False on another C library, or when the environment
    already names either threshold (the user's setting stands, and glibc has applied it).
    """
    if any(name in os.environ for name in SETTINGS):
        return False
    libc = _glibc()
    if libc is None:
        return False
    for name, (param, value) in SETTINGS.items():
        if libc.mallopt(param, value) != 1:
            return False
        os.environ[name] = str(value)
    return True
