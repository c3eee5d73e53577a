"""Derive independent integer seeds from tuples of integers, without touching global RNGs."""

from __future__ import annotations

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """Mix integers into one 63-bit seed; different tuples give unrelated streams.

    Args:
        *parts: Non-negative integers, e.g. ``(seed, epoch, index, view)``.

    Returns:
        A seed in ``[0, 2**63)`` suitable for ``torch.Generator.manual_seed``.
    """
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def torch_generator(*parts: int) -> torch.Generator:
    """A fresh CPU ``torch.Generator`` seeded with :func:`derive_seed` of ``parts``."""
    return torch.Generator().manual_seed(derive_seed(*parts))
