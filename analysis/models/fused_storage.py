"""K peers' tensors of one shape kept in one fused tensor, so a fused layer needs no copies.

A fused layer (:mod:`analysis.models.fused`) needs the K peers' weights side by side: one
(K·O, I, kh, kw) kernel, one (K·C,) batch-norm scale, one (K, C, D) linear weight. Built by
``torch.cat`` at every forward, that costs a copy kernel per tensor per step (105 of the 347
non-view operations of a fused 3 x ResNet-20 DML step), and a copy back per running
statistic: on a GPU, where such a step is bound by kernel launches, they ate most of what
fusing saved. :class:`SharedStorage` instead moves the K tensors into one fused tensor once:
each peer tensor stays the same Python object (the optimizer, the state dict and
``model.peer(i)`` see no change) but its ``.data`` becomes a view of the fused tensor, so
an optimizer step or a batch norm's running-statistics update on either is seen by both.

Gradients: the fused tensor is a leaf of its own; when autograd has accumulated its
gradient, a hook hands each peer tensor its slice (as its ``.grad``, or added to the one it
has, as ``backward`` accumulates) and clears the fused gradient. A peer tensor that does not
require grad gets none.

Staleness: anything that gives a peer tensor new storage (``module.to(dtype or device)``, a
``.data`` assignment, ``load_state_dict(assign=True)``) or changes whether it requires grad
makes :meth:`SharedStorage.fused` rebuild the fused tensor from the peers' current values
at its next call, so the fused layer never computes with stale weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class SharedStorage:
    """Tensor ``name`` of K same-shape modules as views of one fused tensor (module docstring).

    Args:
        modules: the peers' modules (e.g. their ``layer1.0.conv1``), peer-major.
        name: the parameter or buffer, e.g. ``"weight"`` or ``"running_mean"``. It is looked up
            on the modules at every call, so a tensor replaced as an object (``module.to``
            replaces buffers; ``load_state_dict(assign=True)`` parameters) is noticed too.
        stack: fuse along a new leading dimension (K, ...) instead of concatenating along
            dimension 0 (K·n, ...).
    """

    def __init__(self, modules: Sequence[nn.Module], name: str, *, stack: bool = False) -> None:
        self.name = name
        # The dicts the modules keep the tensor in (read directly: nn.Module.__getattr__ is
        # slow, and this runs for every fused tensor at every step).
        self._homes = [m._parameters if name in m._parameters else m._buffers for m in modules]
        self.stack = stack
        self._fused: torch.Tensor | None = None
        self._key: list[tuple[int, int, bool]] = []

    @property
    def tensors(self) -> list[torch.Tensor]:
        """The peers' tensors as the modules hold them now."""
        return [home[self.name] for home in self._homes]

    def _current_key(self) -> list[tuple[int, int, bool]]:
        return [(id(t), t.data_ptr(), t.requires_grad) for t in self.tensors]

    def fused(self) -> torch.Tensor:
        """The fused tensor, rebuilt first if a peer tensor left it (or changed requires_grad)."""
        if self._fused is None or self._current_key() != self._key:
            self._rebuild()
        assert self._fused is not None
        return self._fused

    def _rebuild(self) -> None:
        tensors = self.tensors
        first = tensors[0].detach()
        fused = torch.empty_strided(
            *_fused_geometry(first, len(tensors), stack=self.stack),
            dtype=first.dtype,
            device=first.device,
        )
        views = self._slices(fused)
        with torch.no_grad():
            for view, tensor in zip(views, tensors, strict=True):
                view.copy_(tensor)
        for view, tensor in zip(views, tensors, strict=True):
            tensor.data = view
        if any(t.requires_grad for t in tensors):
            fused.requires_grad_(True)
            fused.register_post_accumulate_grad_hook(self._hand_out)
        self._fused, self._key = fused, self._current_key()

    def _slices(self, fused: torch.Tensor) -> Sequence[torch.Tensor]:
        """The K peers' parts of ``fused`` (or of its gradient), as views."""
        return fused.unbind(0) if self.stack else fused.chunk(len(self._homes))

    def _hand_out(self, fused: torch.Tensor) -> None:
        """Give each peer tensor its slice of the fused gradient, then clear that gradient."""
        assert fused.grad is not None
        for tensor, grad in zip(self.tensors, self._slices(fused.grad), strict=True):
            if not tensor.requires_grad:
                continue
            if tensor.grad is None:
                tensor.grad = grad
            else:
                tensor.grad.add_(grad)
        fused.grad = None


def _fused_geometry(
    first: torch.Tensor, k: int, *, stack: bool
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shape and strides of the fused tensor, such that every slice has ``first``'s strides.

    ``first`` must be dense with dimension 0 outermost (contiguous or channels-last, as every
    weight and buffer is); anything else is fused as a contiguous tensor.
    """
    shape, stride = tuple(first.shape), tuple(first.stride())
    dense = first.is_contiguous() or (
        first.dim() == 4 and first.is_contiguous(memory_format=torch.channels_last)
    )
    if not dense:
        stride = torch.empty(shape).stride() if shape else ()
    if stack:
        return (k, *shape), (first.numel(), *stride)
    # Dimension 0's stride as the outermost one (a size-1 dimension may carry any stride).
    outer = first.numel() // shape[0] if shape[0] else 1
    return (k * shape[0], *shape[1:]), (outer, *stride[1:])
