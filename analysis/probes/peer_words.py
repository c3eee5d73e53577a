"""Do two peers use the same words? Co-occurrence of their argmax channels at the same positions.

The word of a peer at a position is the argmax channel of its chosen layer's output, and the
table counts the word pairs of two peers at the same position of the same image. If the two
maps differ in size, the larger one is average-pooled (``adaptive_avg_pool2d``) to the smaller
grid before the argmax, so each coarse position is compared with the mean of the fine positions
it covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from analysis.errors import CollabError
from analysis.probes.contract import PassOptions, activation_probe
from analysis.probes.hooks import peer_layers
from analysis.probes.shared_pass import Batch
from analysis.probes.word_stats import entropy_bits, joint_counts, mutual_information, pmi


@dataclass
class PeerCooccurrence:
    """Co-occurrence of two layers' words (argmax channels) at the same positions.

    Attributes:
        layers: the two module paths [a, b].
        counts: (Ca, Cb) int64 word-pair counts; pmi: (Ca, Cb) float64 bits; smoothing: alpha.
        num_samples: samples seen; map_size: [h, w] of the compared grid;
        num_positions: samples x h x w (= ``counts.sum()``).
        resampled: [a pooled?, b pooled?] whether each layer was pooled to the common grid.
        mutual_information: bits (plug-in); entropy_bits: [H(a), H(b)] of the word marginals.
    """

    layers: list[str]
    counts: torch.Tensor
    pmi: torch.Tensor
    smoothing: float
    num_samples: int
    map_size: list[int]
    num_positions: int
    resampled: list[bool]
    mutual_information: float
    entropy_bits: list[float]


def align_maps(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[bool]]:
    """Bring (B, Ca, Ha, Wa) and (B, Cb, Hb, Wb) to the grid (min H, min W) by average pooling.

    (B, C) inputs count as 1 x 1 maps. Returns both maps and which of them were pooled.
    """
    a, b = (t[..., None, None] if t.dim() == 2 else t for t in (a, b))
    if a.dim() != 4 or b.dim() != 4:
        raise CollabError("peer co-occurrence needs (B, C, H, W) or (B, C) layer outputs")
    size = (min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1]))
    out, pooled = [], []
    for t in (a, b):
        changed = tuple(t.shape[-2:]) != size
        out.append(nn.functional.adaptive_avg_pool2d(t, size) if changed else t)
        pooled.append(changed)
    return out[0], out[1], pooled


class PeerCooccurrenceConsumer:
    """Word co-occurrence of two layers as a :class:`~analysis.probes.shared_pass.Consumer`.

    Args:
        layer_a, layer_b: full module paths (usually one per peer; the same path twice works).
        smoothing: add-alpha smoothing of the PMI.
    """

    def __init__(self, layer_a: str, layer_b: str, *, smoothing: float = 1.0) -> None:
        if smoothing < 0:
            raise CollabError(f"smoothing must be >= 0, got {smoothing}; use e.g. 1.0")
        self.pair, self.smoothing = [layer_a, layer_b], smoothing
        self.layers = list(dict.fromkeys(self.pair))
        self.counts: torch.Tensor | None = None
        self.samples, self.map_size, self.pooled = 0, [0, 0], [False, False]

    def update(self, acts: dict[str, torch.Tensor], batch: Batch) -> None:
        a, b, pooled = align_maps(*(acts[name].detach().float().cpu() for name in self.pair))
        wa, wb = a.argmax(1).reshape(-1), b.argmax(1).reshape(-1)
        table = joint_counts(wa, wb, a.shape[1], b.shape[1])
        self.counts = table if self.counts is None else self.counts + table
        self.samples += a.shape[0]
        self.map_size = list(a.shape[-2:])
        self.pooled = [p or q for p, q in zip(self.pooled, pooled)]

    def result(self) -> PeerCooccurrence:
        if self.counts is None:
            raise CollabError("peer co-occurrence saw no batch; give it a non-empty dataset")
        c = self.counts
        return PeerCooccurrence(
            layers=list(self.pair),
            counts=c,
            pmi=pmi(c, smoothing=self.smoothing),
            smoothing=float(self.smoothing),
            num_samples=self.samples,
            map_size=self.map_size,
            num_positions=int(c.sum()),
            resampled=self.pooled,
            mutual_information=float(mutual_information(c)),
            entropy_bits=[entropy_bits(c.sum(1)), entropy_bits(c.sum(0))],
        )


@dataclass(frozen=True)
class PeerWordsOptions(PassOptions):
    """Options of the peer-words probe.

    Attributes:
        layers: the two full module paths (default: the last probe layer of each of ``peers``).
        peers: the two peers whose last probe layers are compared when ``layers`` is None.
        smoothing: add-alpha smoothing of the PMI.
        limit, batch_size, device, progress: the pass (see :class:`PassOptions`).
    """

    layers: Sequence[str] | None = None
    peers: Sequence[int] = (0, 1)
    smoothing: float = 1.0


def _peer_words_consumer(model: nn.Module, dataset: Dataset, o: PeerWordsOptions):
    layers = o.layers
    if layers is None:
        chosen = [peer_layers(model, p) for p in o.peers]
        if len(chosen) != 2 or not all(chosen):
            raise CollabError("peer co-occurrence needs two peers with probe layers; pass layers=")
        layers = [chosen[0][-1], chosen[1][-1]]
    if len(layers) != 2:
        raise CollabError(f"peer co-occurrence compares two layers, got {len(layers)}")
    return PeerCooccurrenceConsumer(layers[0], layers[1], smoothing=o.smoothing)


peer_cooccurrence = activation_probe(
    "peer_words",
    consumer=_peer_words_consumer,
    options=PeerWordsOptions,
    result=PeerCooccurrence,
    needs=("two_peers",),
    about="co-occurrence of two peers' words (argmax channels) at their last layer",
)
