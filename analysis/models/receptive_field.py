"""Receptive-field arithmetic for conv / pool stacks: which input window a map position sees.

For a chain of layers with kernel k (dilated: ``k_eff = d * (k - 1) + 1``), stride s and padding
p, position ``i`` of the last map sees input pixels ``offset + stride * i ... + size - 1`` where,
folding layer by layer from ``size = 1, stride = 1, offset = 0``::

    size   += (k_eff - 1) * stride
    offset -= p * stride
    stride *= s

(Araujo, Norris & Sim 2019, *Computing Receptive Fields of Convolutional Neural Networks*.)
For padded networks ``offset`` is negative and windows can overhang the image; ``box`` can clip.

Which modules count (the "main path"): ``Conv2d``, ``MaxPool2d`` and ``AvgPool2d`` contribute;
normalisation, activation, dropout and ``Identity`` layers are pointwise; any other module is
walked through its children in registration order, skipping children named ``shortcut``,
``downsample``, ``skip`` or ``se``: residual side paths, whose windows are never larger than
the main path's in the networks of this package, and squeeze-excitation. A pointwise SE gate
sees the main path's window; a global SE gate (AnchorNet's reference layout) pools the whole
map, so there the window bounds the geometry of a position (its box), not every pixel its value
depends on. A module may instead define ``receptive_path()`` returning the modules of its
main path. Global pooling, linear layers and non-square kernels raise ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from torch import nn

SIDE_PATHS = frozenset({"shortcut", "downsample", "skip", "se"})
_POINTWISE_MODULES = (
    "torch.nn.modules.activation",
    "torch.nn.modules.batchnorm",
    "torch.nn.modules.normalization",
    "torch.nn.modules.dropout",
)


@dataclass(frozen=True)
class LayerSpec:
    """One spatial layer: square kernel, stride, padding (per side), dilation, ceil mode."""

    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    ceil_mode: bool = False


@dataclass(frozen=True)
class ReceptiveField:
    """Window of map position ``i`` along one axis: ``[offset + stride*i, ... + size)``."""

    size: int
    stride: int
    offset: int

    def window(self, i: int) -> tuple[int, int]:
        """Input pixel range ``(start, stop)`` (stop exclusive) of map position ``i``."""
        start = self.offset + self.stride * i
        return start, start + self.size

    def box(self, i: int, j: int, *, image_size: int | None = None) -> tuple[int, int, int, int]:
        """Box ``(x0, y0, x1, y1)`` (x1, y1 exclusive) seen by map row ``i``, column ``j``.

        Args:
            i: map row; j: map column.
            image_size: if given, clip the box to ``[0, image_size)``.
        """
        (y0, y1), (x0, x1) = self.window(i), self.window(j)
        if image_size is not None:
            x0, y0 = max(x0, 0), max(y0, 0)
            x1, y1 = min(x1, image_size), min(y1, image_size)
        return x0, y0, x1, y1


def _square(value, name: str, module: nn.Module) -> int:
    if isinstance(value, tuple):
        if len(set(value)) != 1:
            raise ValueError(f"{type(module).__name__} has a non-square {name} {value}")
        value = value[0]
    return int(value)


def _conv_padding(module: nn.Conv2d, kernel: int, dilation: int) -> int:
    if module.padding == "valid":
        return 0
    if module.padding == "same":
        return dilation * (kernel - 1) // 2
    return _square(module.padding, "padding", module)


def _spec(module: nn.Module) -> LayerSpec:
    kernel = _square(module.kernel_size, "kernel", module)
    stride = _square(module.stride, "stride", module)
    dilation = _square(getattr(module, "dilation", 1), "dilation", module)
    if isinstance(module, nn.Conv2d):
        return LayerSpec(kernel, stride, _conv_padding(module, kernel, dilation), dilation)
    padding = _square(module.padding, "padding", module)
    return LayerSpec(kernel, stride, padding, dilation, bool(module.ceil_mode))


def layer_specs(modules: nn.Module | Iterable[nn.Module]) -> Iterator[LayerSpec]:
    """The spatial layers of ``modules``' main path, in forward order (see module docstring)."""
    if not isinstance(modules, nn.Module):
        for module in modules:
            yield from layer_specs(module)
        return
    module = modules
    if hasattr(module, "receptive_path"):
        yield from layer_specs(module.receptive_path())
    elif isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        yield _spec(module)
    elif isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear)):
        raise ValueError(f"{type(module).__name__} has no finite receptive field; stop before it")
    elif isinstance(module, nn.Identity) or type(module).__module__ in _POINTWISE_MODULES:
        return
    elif not any(True for _ in module.children()):
        raise ValueError(f"receptive_field does not know the geometry of {type(module).__name__}")
    else:
        for name, child in module.named_children():
            if name not in SIDE_PATHS:
                yield from layer_specs(child)


def receptive_field(modules: nn.Module | Iterable[nn.Module]) -> ReceptiveField:
    """Receptive field, total stride and offset of the last map of a conv / pool stack.

    Example:
        >>> receptive_field([nn.Conv2d(3, 8, 3, stride=2), nn.Conv2d(8, 8, 3)])
        ReceptiveField(size=7, stride=2, offset=0)
    """
    size, stride, offset = 1, 1, 0
    for spec in layer_specs(modules):
        size += spec.dilation * (spec.kernel - 1) * stride
        offset -= spec.padding * stride
        stride *= spec.stride
    return ReceptiveField(size=size, stride=stride, offset=offset)


def output_size(modules: nn.Module | Iterable[nn.Module], input_size: int) -> int:
    """Side of the last map for a square input of side ``input_size`` (0 if it vanishes)."""
    n = input_size
    for spec in layer_specs(modules):
        span = n + 2 * spec.padding - spec.dilation * (spec.kernel - 1) - 1
        if span < 0:
            return 0
        steps = math.ceil(span / spec.stride) if spec.ceil_mode else span // spec.stride
        if spec.ceil_mode and steps * spec.stride >= n + spec.padding:
            steps -= 1  # PyTorch drops a last window that would start in the right padding
        n = steps + 1
    return n
