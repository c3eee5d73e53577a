"""Probes leave a model as they found it: its modules' train/eval modes, device and memory order.

The context managers restore on exit, also when the block raises, so a probe that fails half
way (a bad layer name, an interrupted pass) never leaves a shared model in eval mode or on
another device.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from analysis.layout import is_channels_last, to_channels_last, uses_channels_last

Layout = Callable[[torch.Tensor], torch.Tensor]


def _as_is(x: torch.Tensor) -> torch.Tensor:
    return x


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


@contextmanager
def in_layout(model: nn.Module, channels_last: bool) -> Iterator[nn.Module]:
    """Lay an NCHW ``model``'s 4-D weights out NHWC for the block (with ``channels_last``) and
    back after; a model already NHWC, or ``channels_last`` false, is left as it is. Only the
    strides change: every value stays bit for bit."""
    convert = channels_last and not any(is_channels_last(p) for p in model.parameters())
    try:
        yield model.to(memory_format=torch.channels_last) if convert else model
    finally:
        if convert:
            model.to(memory_format=torch.contiguous_format)


@contextmanager
def probe_layout(model: nn.Module, device: str | torch.device) -> Iterator[Layout]:
    """The memory order of the probes' forward passes over a dataset: NHWC on the CPU, where
    it is faster (:mod:`analysis.layout`), the model's own elsewhere. Yields the function that
    puts a batch of images into that order."""
    nhwc = uses_channels_last("auto", torch.device(device))
    with in_layout(model, nhwc):
        yield to_channels_last if nhwc else _as_is
