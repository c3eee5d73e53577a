"""Probes leave a model as they found it: its modules' train/eval modes and its device.

Both context managers restore on exit, also when the block raises, so a probe that fails half
way (a bad layer name, an interrupted pass) never leaves a shared model in eval mode or on
another device.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block; restore every submodule's own mode after.

    Restoring module by module (rather than calling ``model.train(was_training)``) keeps a
    model whose parts were in different modes, e.g. frozen batch norms, exactly as it was.

    Example:
        >>> with eval_mode(model) as m:
        ...     logits = m(x)
    """
    modes = {m: m.training for m in model.modules()}
    try:
        yield model.eval()
    finally:
        for module, mode in modes.items():
            module.training = mode


def module_device(model: nn.Module) -> torch.device | None:
    """The device of ``model``'s first parameter or buffer (None for a module without any)."""
    return next((t.device for t in itertools.chain(model.parameters(), model.buffers())), None)


@contextmanager
def on_device(model: nn.Module, device: str | torch.device) -> Iterator[nn.Module]:
    """Move ``model`` to ``device`` for the block and back to where it was after."""
    home = module_device(model)
    try:
        yield model.to(device)
    finally:
        if home is not None:
            model.to(home)
