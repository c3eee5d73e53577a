"""Class-wise dissection (after DRNet): which channels does each class need?

For every class c and every peer, a non-negative gate in [0, 1] per channel of every channel
unit (:mod:`analysis.models.channel_units`: the inner channels of each residual block and each
residual stream) scales the frozen network's activations. The gates of class c are learned so
that the gated network keeps its output for c (by default c's logit, on images of c and as many
images of other classes; see ``objective``) while an L1 term (the mean gate, weighted by ``l1``)
pushes them to 0; gates above ``threshold`` form the class's mask (at least the strongest
channel of every unit is kept). Classes are learned side by side in one batch: each image is
scaled by the gates of the class it serves and the loss is a sum over classes, so each class's
gates see only their own batch (Adam updates are per gate).

Peers are compared permutation-aware (:mod:`analysis.probes.dissection_compare`): masks after
matching channels by activation correlation, and the permutation-invariant class x class
overlap matrices. A network whose channels the surgery does not understand is dissected at its
BatchNorm outputs instead (``reconstructable`` is then False).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import combinations

import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models.channel_units import Unit, channel_units
from analysis.models.surgery import scaled_channels
from analysis.probes.class_map import find_network
from analysis.probes.contract import DATA, register_probe, setting
from analysis.probes.dissection_compare import class_overlap, compare_masks, overlap_agreement
from analysis.probes.gates import learn_gates, to_masks
from analysis.probes.hooks import capture
from analysis.probes.model_state import eval_mode, on_device
from analysis.probes.needs import NEEDS


@dataclass(frozen=True)
class DissectionOptions:
    """How gates are learned. The defaults dissect a ResNet-8 peer on CPU in about a second.

    Attributes:
        classes: the classes to dissect (default: all).
        peers: the peers to dissect (default: all).
        units: channel unit names to gate (default: every unit).
        images_per_class: images of each class the gates are learned on (first in a seeded order).
        steps: Adam steps.
        lr: Adam learning rate.
        objective: what class c's gates keep: ``"class_logit"``, c's logit on c's images and
            as many images of other classes (squared change in units of its variance), or
            ``"kl"``, the softmax on c's images only (the literal DRNet reading: a nearly
            constant output on one class's images can be kept by a few constant channels, so
            its masks are smaller and their union classifies worse).
        l1: weight of the mean gate (sparsity) against the KL divergence.
        threshold: a channel belongs to the class's mask when its gate exceeds this.
        seed: chooses the images.
        batch_size: images per forward pass while learning (bounds memory; same result).
    """

    classes: tuple[int, ...] | None = None
    peers: tuple[int, ...] | None = None
    units: tuple[str, ...] | None = None
    images_per_class: int = 16
    steps: int = 40
    lr: float = 0.1
    objective: str = "class_logit"
    l1: float = 1.0
    threshold: float = 0.5
    seed: int = 0
    batch_size: int = setting(512)
    device: str = setting("cpu")


@dataclass
class Dissection:
    """Class-wise gates and masks of K peers over U channel units, and how the peers compare.

    Attributes:
        peers, peer_names: the K dissected peers (indices in the model) and their names.
        classes: the n dissected classes (dataset indices).
        units, kinds, widths: the U channel units, their kinds and channel counts C_u.
        reconstructable: whether :func:`~analysis.models.surgery.prune` understands the units.
        gates: ``"<peer>:<unit>"`` -> (n, C_u) float gates in [0, 1].
        masks: ``"<peer>:<unit>"`` -> (n, C_u) bool masks (gate > threshold).
        sizes: (K, n, U) channels in each mask.
        kept_agreement: (K, n) share of a class's images on which the masked peer predicts what
            the unmasked peer predicts.
        class_overlap: (K, n, n) Jaccard of two classes' whole-network masks.
        pairs: the P peer pairs ``[a, b]`` (positions in ``peers``).
        matched_overlap, chance_overlap, raw_overlap: (P, n, U) Jaccard of the pair's masks after
            matching channels by activation correlation, under a random matching, and index by
            index (meaningless across separately trained peers; shown for contrast).
        overlap_agreement: (P,) correlation of the pair's off-diagonal class overlaps.
        seconds: time taken.
    """

    peers: list[int]
    peer_names: list[str]
    classes: list[int]
    units: list[str]
    kinds: list[str]
    widths: list[int]
    reconstructable: bool
    gates: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    sizes: torch.Tensor
    kept_agreement: torch.Tensor
    class_overlap: torch.Tensor
    pairs: list[list[int]]
    matched_overlap: torch.Tensor
    chance_overlap: torch.Tensor
    raw_overlap: torch.Tensor
    overlap_agreement: torch.Tensor
    seconds: float

    def mask(self, peer: int, unit: str) -> torch.Tensor:
        """(n, C_u) bool mask of ``unit`` of the peer at position ``peer`` in :attr:`peers`."""
        return self.masks[f"{self.peers[peer]}:{unit}"]


def peer_units(peer: nn.Module) -> tuple[nn.Module, list[Unit], bool]:
    """The network inside ``peer`` whose channels are gated, its units, and whether they are
    the surgery's (else one unit per BatchNorm2d output)."""
    try:
        net = find_network(peer)
        return net, channel_units(net), True
    except CollabError:
        bns = [(n, m) for n, m in peer.named_modules() if isinstance(m, nn.BatchNorm2d)]
        if not bns:
            raise CollabError(
                f"{type(peer).__name__} has neither channel units nor BatchNorm layers to dissect"
            ) from None
        return peer, [Unit(n, "bn", m.num_features, [n]) for n, m in bns], False


def class_images(dataset, classes: list[int], per_class: int, seed: int):
    """(N, C, H, W) images and (N,) positions in ``classes``: up to ``per_class`` of each, seeded."""
    labels = torch.as_tensor(getattr(dataset, "labels", None))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    chosen, rows = [], []
    for row, c in enumerate(classes):
        found = order[labels[order] == c][:per_class]
        if len(found) == 0:
            raise CollabError(f"the dataset has no images of class {c}; choose other classes")
        chosen += found.tolist()
        rows += [row] * len(found)
    images = torch.stack([dataset[i][0] for i in chosen])
    return images, torch.tensor(rows)


def _dissect_peer(peer: nn.Module, x, rows, classes: list[int], options: DissectionOptions):
    """Gates, masks, agreement (n,) and per-unit activations (N, C_u) of one peer."""
    net, units, ok = peer_units(peer)
    n = len(classes)
    if options.units is not None:
        missing = sorted(set(options.units) - {u.name for u in units})
        if missing:
            raise CollabError(
                f"no channel unit {missing[0]!r}; units: {', '.join(u.name for u in units)}"
            )
        units = [u for u in units if u.name in options.units]
    with eval_mode(peer), on_device(peer, options.device):
        x = x.to(options.device)
        gates = learn_gates(peer, net, units, x, rows.to(options.device), classes, options)
        masks = to_masks(gates, options.threshold)
        with (
            torch.no_grad(),
            capture(net, [u.points[-1] for u in units], transform=lambda t: t.mean((2, 3))) as acts,
        ):
            before = peer(x).argmax(1)
            acts = {u.name: acts[u.points[-1]].cpu() for u in units}
        mine = (rows >= 0).nonzero().flatten()
        scales = {k: m[rows[mine].to(options.device)].float() for k, m in masks.items()}
        with torch.no_grad(), scaled_channels(net, units, scales):
            after = peer(x[mine.to(options.device)]).argmax(1)
    same = (before[mine.to(options.device)] == after).float().cpu()
    same = torch.zeros(n).index_add(0, rows[mine], same)
    agreement = same / torch.bincount(rows[mine], minlength=n).clamp(min=1)
    cpu = lambda d: {k: v.cpu() for k, v in d.items()}  # noqa: E731
    return units, ok, cpu(gates), cpu(masks), agreement, acts


def _check(options: DissectionOptions, dataset) -> None:
    """A one-line CollabError for options or data the gates cannot be learned with."""
    if options.images_per_class < 1 or options.steps < 0 or options.lr <= 0 or options.l1 < 0:
        raise CollabError(
            "dissection needs images_per_class >= 1, steps >= 0, lr > 0 and l1 >= 0, got "
            f"{options.images_per_class}, {options.steps}, {options.lr}, {options.l1}"
        )
    if options.batch_size < 1:
        raise CollabError(f"batch_size {options.batch_size} must be a positive number of images")
    if not 0 <= options.threshold < 1:
        raise CollabError(f"threshold {options.threshold} must be in [0, 1), e.g. 0.5")
    if getattr(dataset, "labels", None) is None:
        raise CollabError(
            "dissection needs a dataset with a labels tensor (every CollabLens split)"
        )


def dissect(model: nn.Module, dataset, *, options: DissectionOptions | None = None) -> Dissection:
    """Dissect the peers of ``model`` class by class on ``dataset`` (see the module doc).

    Args:
        model: a collaborative model (``model.peer(i)`` maps images in [0, 1] to logits).
        dataset: yields ``(image (C, H, W) in [0, 1], label)`` and has a ``labels`` tensor.
        options: a :class:`DissectionOptions`.

    Returns:
        A :class:`Dissection`.
    """
    options = options or DissectionOptions()
    _check(options, dataset)
    start = time.perf_counter()
    peers = list(options.peers if options.peers is not None else range(model.num_peers))
    names = list(getattr(model, "peer_names", [f"peer{i}" for i in range(model.num_peers)]))
    if not peers or any(not 0 <= k < model.num_peers for k in peers):
        raise CollabError(f"peers {peers} must be among 0..{model.num_peers - 1}")
    labels = torch.as_tensor(getattr(dataset, "labels", []))
    classes = list(options.classes) if options.classes is not None else sorted(set(labels.tolist()))
    pool = sorted(set(labels.tolist()))  # other classes' images serve as contrast
    missing = [c for c in classes if c not in pool]
    if missing:
        raise CollabError(f"the dataset has no images of class {missing[0]}; choose other classes")
    x, found_in = class_images(dataset, pool, options.images_per_class, options.seed)
    position = {c: r for r, c in enumerate(classes)}
    rows = torch.tensor([position.get(pool[p], -1) for p in found_in.tolist()])
    found = [_dissect_peer(model.peer(k), x, rows, classes, options) for k in peers]
    units = found[0][0]
    gates, masks = {}, {}
    for k, (_, _, g, m, _, _) in zip(peers, found):
        gates.update({f"{k}:{u}": v for u, v in g.items()})
        masks.update({f"{k}:{u}": v for u, v in m.items()})
    per_peer = [[f[3][u.name] for u in units] for f in found]
    comparable = all(
        [(u.name, u.width) for u in f[0]] == [(u.name, u.width) for u in units] for f in found
    )
    pairs = [list(p) for p in combinations(range(len(peers)), 2)] if comparable else []
    compared = [
        compare_masks(
            per_peer[a], per_peer[b], *[[found[i][5][u.name] for u in units] for i in (a, b)]
        )
        for a, b in pairs
    ]
    overlaps = torch.stack([class_overlap(m) for m in per_peer])
    empty = torch.zeros(0, len(classes), len(units), dtype=torch.float64)
    return Dissection(
        peers=peers,
        peer_names=[names[k] for k in peers],
        classes=classes,
        units=[u.name for u in units],
        kinds=[u.kind for u in units],
        widths=[u.width for u in units],
        reconstructable=all(f[1] for f in found),
        gates=gates,
        masks=masks,
        sizes=torch.tensor(
            [[[int(m[c].sum()) for m in ms] for c in range(len(classes))] for ms in per_peer]
        ),
        kept_agreement=torch.stack([f[4] for f in found]),
        class_overlap=overlaps,
        pairs=pairs,
        matched_overlap=torch.stack([c[0] for c in compared]) if compared else empty,
        chance_overlap=torch.stack([c[1] for c in compared]) if compared else empty,
        raw_overlap=torch.stack([c[2] for c in compared]) if compared else empty,
        overlap_agreement=torch.tensor(
            [overlap_agreement(overlaps[a], overlaps[b]) for a, b in pairs], dtype=torch.float64
        ),
        seconds=time.perf_counter() - start,
    )


@NEEDS.register("asked_for")
def _asked_for(run) -> str | None:
    """Never met, so a probe with it in ``report_needs`` runs only when named (it trains gates)."""
    return "is computed only when asked for by name"


run_dissection = register_probe(
    "dissection",
    reads=DATA,
    options=DissectionOptions,
    result=Dissection,
    report_needs=("asked_for",),
    about="class-wise channel gates and masks (DRNet), compared across peers",
)(dissect)
