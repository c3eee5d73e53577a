"""One pass over the data that feeds every probe at once.

A probe that needs activations is written as a :class:`Consumer`: it names the layers it needs
and folds each minibatch into running statistics, so memory stays bounded whatever the dataset
size. :func:`run_pass` captures the union of their layers and runs the model once per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from analysis.errors import CollabError
from analysis.probes.hooks import capture
from analysis.probes.model_state import eval_mode, on_device, probe_layout


class Consumer(Protocol):
    """A probe folded over minibatches.

    Attributes:
        layers: module paths whose outputs :meth:`update` needs (may be empty).

    A consumer may also stream activations: an attribute ``streams`` naming module paths and a
    method ``take(path, output)`` that :func:`run_pass` calls during the forward pass, so that
    an output nobody keeps is freed as soon as the network is done with it (e.g. CKA centres
    each layer into a buffer of its own; holding every layer until the end of the forward
    grows the heap by a batch of activations that is then freed, returned to the system and
    faulted back in at the next batch).
    """

    layers: Sequence[str]

    def update(self, acts: dict[str, torch.Tensor], batch: Batch) -> None: ...

    def result(self) -> Any: ...


class Batch:
    """What a consumer sees of one minibatch: images (B, C, H, W), labels (B,), dataset
    indices (B,) and the model output (``peer_logits`` (K, B, C), ``ensemble_logits`` (B, C))."""

    __slots__ = ("x", "y", "index", "out")

    def __init__(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, out: Any) -> None:
        self.x, self.y, self.index, self.out = x, y, index, out


@torch.no_grad()
def run_pass(
    model: nn.Module,
    dataset: Dataset,
    consumers: Sequence[Consumer],
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    limit: int | None = None,
    progress: bool = False,
) -> list[Any]:
    """Run ``model`` over ``dataset`` (its first ``limit`` samples) once and feed every consumer.

    The model's train/eval mode and device are restored afterwards and no hook is left behind.
    Returns ``[c.result() for c in consumers]``.
    """
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise CollabError("the dataset is empty; probes need at least one sample")
    layers = sorted({name for c in consumers for name in c.layers})
    stream: dict[str, list] = {}
    for c in consumers:
        for name in getattr(c, "streams", ()):
            stream.setdefault(name, []).append(lambda out, c=c, name=name: c.take(name, out))
    indices = torch.arange(n)
    loader = DataLoader(torch.utils.data.Subset(dataset, indices.tolist()), batch_size=batch_size)
    hooks = capture(model, layers, stream=stream)
    with (
        eval_mode(model),
        on_device(model, device),
        probe_layout(model, device) as lay,
        hooks as acts,
    ):
        start = 0
        for x, y in tqdm(loader, desc="probing", disable=not progress, leave=False):
            b = x.shape[0]
            out = model(lay(x.to(device)))
            batch = Batch(x, torch.as_tensor(y), indices[start : start + b], out)
            for consumer in consumers:
                consumer.update(acts, batch)
            acts.clear()  # do not hold this batch's activations through the next forward
            start += b
    return [c.result() for c in consumers]
