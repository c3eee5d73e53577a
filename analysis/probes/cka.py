"""How similar are the peers' representations? Linear CKA between every pair of probed layers.

The probe streams the minibatch estimator of :mod:`analysis.probes.hsic` over one pass: per
batch one Gram per distinct layer, centred by the first batch's means while the forward pass
runs (a layer whose mean drifts away is re-centred, see :meth:`CKAConsumer._grams`), then
every layer x layer HSIC at once. :func:`~analysis.probes.hsic.linear_cka` is the exact full-batch form.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from analysis.errors import CollabError
from analysis.probes.contract import PassOptions, activation_probe
from analysis.probes.hooks import peer_layers, resolve
from analysis.probes.hsic import MIN_BATCH, MinibatchCKA, flat_features, gram_matrices
from analysis.probes.shared_pass import Batch

log = logging.getLogger(__name__)

ESTIMATOR = "minibatch_unbiased_hsic"


@dataclass
class CKAResult:
    """Linear CKA between all probed layers of all peers.

    Attributes:
        layers: the L module paths, peer by peer, in forward order within each peer.
        peer_of_layer: (L,) the peer each layer belongs to.
        matrix: (L, L) float64 CKA; ``matrix[i, j]`` compares ``layers[i]`` with ``layers[j]``.
        num_samples: samples that entered the estimate.
        batch_size: the minibatch size of the estimator (the largest batch seen).
        estimator: ``"minibatch_unbiased_hsic"``, with ``"+pool"`` appended when the
            activations were spatially averaged before the comparison.
    """

    layers: list[str]
    peer_of_layer: list[int]
    matrix: torch.Tensor
    num_samples: int
    batch_size: int
    estimator: str

    @property
    def num_peers(self) -> int:
        return max(self.peer_of_layer) + 1 if self.peer_of_layer else 0

    def indices_of(self, peer: int) -> list[int]:
        """Positions in ``layers`` of peer ``peer``'s layers."""
        found = [i for i, p in enumerate(self.peer_of_layer) if p == peer]
        if not found:
            raise CollabError(
                f"the CKA result has no layers of peer {peer}; use a peer in 0..{self.num_peers - 1}"
            )
        return found

    def layers_of(self, peer: int) -> list[str]:
        return [self.layers[i] for i in self.indices_of(peer)]

    def block(self, a: int, b: int) -> torch.Tensor:
        """(L_a, L_b) CKA of peer ``a``'s layers (rows) against peer ``b``'s (columns)."""
        rows, cols = self.indices_of(a), self.indices_of(b)
        return self.matrix[rows][:, cols]

    def peer_matrix(self, depth: int) -> torch.Tensor:
        """(K, K) CKA between the peers at each peer's ``depth``-th layer (negative counts from the end)."""
        picks = []
        for peer in range(self.num_peers):
            idx = self.indices_of(peer)
            if not -len(idx) <= depth < len(idx):
                raise CollabError(
                    f"peer {peer} has {len(idx)} probed layers, so there is no layer depth {depth}; "
                    f"use a depth in 0..{len(idx) - 1}"
                )
            picks.append(idx[depth])
        return self.matrix[picks][:, picks]


def cka_layers(
    model: nn.Module, layers: Sequence[str] | Sequence[Sequence[str]] | None = None
) -> tuple[list[str], list[int]]:
    """The module paths CKA compares and the peer of each.

    Args:
        model: a collaborative model (``num_peers``, ``peer_prefix``).
        layers: ``None`` for each peer's probe layers (:func:`peer_layers`); a list of names
            relative to each peer network (``["conv1", "layer1.0"]``), applied to every peer; or
            one list of full module paths per peer.

    Returns:
        ``(paths, peer_of_layer)``, peer by peer; every path is checked to exist.
    """
    count = int(model.num_peers)
    if layers is None:
        per_peer = [peer_layers(model, i) for i in range(count)]
    elif all(isinstance(name, str) for name in layers):
        per_peer = [[f"{model.peer_prefix(i)}{name}" for name in layers] for i in range(count)]
    else:
        per_peer = [list(paths) for paths in layers]
        if len(per_peer) != count:
            raise CollabError(
                f"got layer lists for {len(per_peer)} peers but the model has {count}; pass one list per peer"
            )
    paths = [p for group in per_peer for p in group]
    if not paths:
        raise CollabError("no layers to compare; pass layers=[...] naming the modules to probe")
    resolve(model, paths)
    return paths, [i for i, group in enumerate(per_peer) for _ in group]


class CKAConsumer:
    """Minibatch CKA as a :class:`~analysis.probes.shared_pass.Consumer`.

    It streams its layers (``streams`` and :meth:`take`): during the forward pass each layer's
    output is flattened and centred into a buffer kept across batches, so the pass does not
    hold the activations themselves. After the forward, each batch costs one Gram per distinct
    layer and one (L, B^2) x (B^2, L) product.

    Args:
        layers: the L module paths to compare (a path may repeat, e.g. a shared trunk layer
            listed under several peers; its Gram is computed once).
        peer_of_layer: (L,) the peer of each path.
        pool: average the activations over spatial positions before comparing.
    """

    layers: Sequence[str] = ()  # what update() reads from the pass's kept activations: none

    def __init__(
        self, layers: Sequence[str], peer_of_layer: Sequence[int], *, pool: bool = False
    ) -> None:
        if len(layers) != len(peer_of_layer):
            raise ValueError("layers and peer_of_layer must have the same length")
        self.paths = list(layers)
        self.peer_of_layer = [int(p) for p in peer_of_layer]
        self.pool = pool
        self.streams = list(dict.fromkeys(self.paths))
        self._index = {name: i for i, name in enumerate(self.streams)}
        self._where = [self._index[p] for p in self.paths]
        self._acc = MinibatchCKA(len(self.streams))
        self._shifts: list[torch.Tensor | None] = [None] * len(self.streams)
        self._buffers: list[torch.Tensor | None] = [None] * len(self.streams)
        self._centred: list[torch.Tensor | None] = [None] * len(self.streams)

    def take(self, name: str, output: torch.Tensor) -> None:
        """Centre one layer's output of this batch (by the layer's first-batch mean) into its buffer."""
        feats = flat_features(output, self.pool)
        if feats.shape[0] < MIN_BATCH:
            return
        i = self._index[name]
        if self._shifts[i] is None:
            self._shifts[i] = feats.mean(dim=0)
        size, buf = feats.numel(), self._buffers[i]
        if (
            buf is None
            or buf.numel() < size
            or (buf.dtype, buf.device) != (feats.dtype, feats.device)
        ):
            buf = self._buffers[i] = torch.empty(size, dtype=feats.dtype, device=feats.device)
        out = buf[:size].view(feats.shape)
        self._centred[i] = torch.sub(feats, self._shifts[i], out=out)

    def update(self, acts: dict[str, torch.Tensor], batch: Batch) -> None:
        centred, self._centred = self._centred, [None] * len(self.streams)
        if batch.x.shape[0] < MIN_BATCH:
            self._acc.skipped += batch.x.shape[0]
            return
        missing = [name for name, c in zip(self.streams, centred) if c is None]
        if missing:
            raise CollabError(
                f"CKA saw no output of {missing[0]} in this forward pass; probe layers the "
                "model runs on every input"
            )
        self._acc.add_grams(self._grams(centred))

    def _grams(self, centred: list[torch.Tensor]) -> torch.Tensor:
        """(L, B, B) Grams of features centred by the first batch's means; a layer whose batch
        mean drifted far from its shift (offset energy > 1/4 of the variance) is re-centred on
        this batch."""
        grams = gram_matrices(centred).cpu()
        n = grams.shape[1]
        wide = grams.numpy().astype(np.float64)
        offset = wide.sum(axis=(1, 2)) / n**2  # ||batch mean - shift||^2
        spread = np.trace(wide, axis1=1, axis2=2) / n - offset
        for i in np.flatnonzero(offset > 0.25 * spread).tolist():
            drift = centred[i].mean(dim=0)
            centred[i] -= drift
            self._shifts[i] = self._shifts[i] + drift
            grams[i] = gram_matrices([centred[i]])[0].cpu()
        return grams

    def result(self) -> CKAResult:
        self._buffers = [None] * len(self.streams)
        if self._acc.skipped:
            log.warning(
                "CKA left out %d samples in batches smaller than %d", self._acc.skipped, MIN_BATCH
            )
        if self._acc.samples == 0:
            raise CollabError(
                f"CKA saw no batch of at least {MIN_BATCH} samples; use batch_size >= {MIN_BATCH}"
            )
        where = torch.tensor(self._where)
        return CKAResult(
            layers=self.paths,
            peer_of_layer=self.peer_of_layer,
            matrix=self._acc.matrix()[where][:, where],
            num_samples=self._acc.samples,
            batch_size=self._acc.largest_batch,
            estimator=ESTIMATOR + ("+pool" if self.pool else ""),
        )


@dataclass(frozen=True)
class CKAOptions(PassOptions):
    """Options of the CKA probe.

    Attributes:
        layers: see :func:`cka_layers` (default: every peer's probe layers).
        pool: spatially average activations (B, C, H, W) -> (B, C) before comparing.
        batch_size: the estimator's minibatch size (>= 4; larger batches lower its variance, so
            it keys the cache).
        limit, device, progress: the pass (see :class:`PassOptions`).
    """

    batch_size: int = 100
    layers: Sequence[str] | Sequence[Sequence[str]] | None = None
    pool: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < MIN_BATCH:
            raise CollabError(
                f"CKA needs batches of at least {MIN_BATCH} samples, got batch_size={self.batch_size}; raise it"
            )


def _cka_consumer(model: nn.Module, dataset: Dataset, o: CKAOptions) -> CKAConsumer:
    return CKAConsumer(*cka_layers(model, o.layers), pool=o.pool)


cka_probe = activation_probe(
    "cka",
    consumer=_cka_consumer,
    options=CKAOptions,
    result=CKAResult,
    about="linear CKA between every pair of layers of every pair of peers",
)
