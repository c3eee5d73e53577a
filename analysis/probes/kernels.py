"""Did the peers learn the same filters? Kernel matching between peers and redundancy within one.

Filters are compared by the cosine similarity of their flattened weights ``(in/groups * kh *
kw)``. Two networks that compute the same function can list their filters in any order, so
before comparing two peers' layer we find the one-to-one matching of filters that maximises the
total similarity (Hungarian assignment, ``scipy.optimize.linear_sum_assignment``) and report the
mean similarity of the matched filters.

The primary measure matches every layer on its own. In a network whose filters were truly
permuted, the *input* channels of layer l are permuted too, by layer l-1's permutation, so the
per-layer measure underrates such peers from the second layer on. ``align_inputs=True`` first
reorders the second peer's input channels by the matching found for the previous conv layer
(in module order) when its output count equals this layer's input count. That is exact for a
plain conv chain; in residual networks, shortcuts and grouped convs make it an approximation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import torch
from torch import nn

from analysis.errors import CollabError
from analysis.probes.contract import WEIGHTS, forwarding_probe


@dataclass
class KernelSimilarity:
    """Filter similarity across peers and redundancy within each peer, per conv layer.

    Attributes:
        layers: the L conv layers, as module paths inside a peer network (``"layer1.0.conv1"``).
        peer_names: the K peer names.
        matched: (P, L) mean cosine similarity of optimally matched filters, per peer pair.
        redundancy: (K, L) mean absolute off-diagonal cosine similarity of a layer's filters.
        pairs: the P peer pairs ``[a, b]`` (a < b), in the row order of ``matched``.
    """

    layers: list[str]
    peer_names: list[str]
    matched: torch.Tensor
    redundancy: torch.Tensor
    pairs: list[list[int]]

    def pair_labels(self) -> list[str]:
        return [f"{self.peer_names[a]} vs {self.peer_names[b]}" for a, b in self.pairs]


def _flat(weight: torch.Tensor) -> torch.Tensor:
    """(out, in, kh, kw) conv weight -> (out, in*kh*kw) float64 filters."""
    return weight.detach().reshape(weight.shape[0], -1).to(torch.float64).cpu()


def filter_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(out_a, out_b) cosine similarity between the filters of two conv weights (out, in, kh, kw)."""
    fa, fb = _flat(a), _flat(b)
    if fa.shape[1] != fb.shape[1]:
        raise CollabError(
            f"cannot compare filters of shapes {tuple(a.shape[1:])} and {tuple(b.shape[1:])}; "
            "kernel matching needs peers of one architecture"
        )
    fa = fa / fa.norm(dim=1, keepdim=True).clamp(min=1e-12)
    fb = fb / fb.norm(dim=1, keepdim=True).clamp(min=1e-12)
    return fa @ fb.T


def match_filters(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One-to-one matching of ``a``'s filters to ``b``'s maximising the total cosine similarity.

    Args:
        a, b: conv weights (out, in, kh, kw) with the same filter shape.

    Returns:
        ``(perm, sims)``: (out,) int64 indices with filter ``i`` of ``a`` matched to filter
        ``perm[i]`` of ``b``, and (out,) float64 cosine similarities of the matched filters
        (when the counts differ, only the min(out_a, out_b) matched rows are returned).
    """
    from scipy.optimize import linear_sum_assignment  # SciPy loads in ~0.5 s: only when used

    cos = filter_cosine(a, b)
    rows, cols = linear_sum_assignment(cos.numpy(), maximize=True)
    rows, cols = torch.as_tensor(rows), torch.as_tensor(cols)
    return cols, cos[rows, cols]


def filter_redundancy(weight: torch.Tensor) -> float:
    """Mean absolute cosine similarity between distinct filters of one layer (NaN for one filter).

    0 for mutually orthogonal filters, 1 when every filter is a multiple of one filter.
    """
    out = weight.shape[0]
    if out < 2:
        return float("nan")
    cos = filter_cosine(weight, weight).abs()
    return float((cos.sum() - cos.diagonal().sum()) / (out * (out - 1)))


def conv_layers(net: nn.Module) -> list[str]:
    """Module paths (inside ``net``) of its ``nn.Conv2d`` layers, in registration order."""
    return [name for name, m in net.named_modules() if isinstance(m, nn.Conv2d)]


def _peer_networks(model: nn.Module) -> list[nn.Module]:
    """The peers' own networks: ``model.peers``, or each ``model.peer(i)``'s ``net`` (shared
    trunks: the trunk's convs then appear in every peer and match with similarity 1)."""
    if isinstance(getattr(model, "peers", None), nn.ModuleList):
        return list(model.peers)
    nets = [model.peer(i) for i in range(model.num_peers)]
    return [getattr(net, "net", net) for net in nets]


def _peer_convs(peers: list[nn.Module], layers: list[str]) -> list[list[torch.Tensor]]:
    """Per peer, the weights of ``layers``; a CollabError if the peers' layers do not line up."""
    weights = []
    for k, net in enumerate(peers):
        modules = dict(net.named_modules())
        missing = [name for name in layers if not isinstance(modules.get(name), nn.Conv2d)]
        if missing:
            raise CollabError(
                f"peer {k} has no conv layer {missing[0]!r}; kernel matching needs peers of one architecture"
            )
        weights.append([modules[name].weight for name in layers])
    for k, ws in enumerate(weights[1:], start=1):
        for name, w0, wk in zip(layers, weights[0], ws):
            if w0.shape != wk.shape:
                raise CollabError(
                    f"layer {name!r} has weights {tuple(w0.shape)} in peer 0 but {tuple(wk.shape)} in peer {k}; "
                    "kernel matching needs peers of one architecture"
                )
    return weights


def _match_layers(
    wa: list[torch.Tensor], wb: list[torch.Tensor], *, align_inputs: bool
) -> torch.Tensor:
    """(L,) mean matched similarity of two peers' conv weights, layer by layer."""
    scores, previous = [], None
    for a, b in zip(wa, wb):
        if align_inputs and previous is not None and b.shape[1] == previous.numel():
            b = b[:, previous]  # b's input channel perm[i] plays the role of a's channel i
        perm, sims = match_filters(a, b)
        scores.append(sims.mean())
        previous = perm if perm.numel() == b.shape[0] else None
    return torch.stack(scores)


def kernel_similarity(
    model: nn.Module, *, layers: list[str] | None = None, align_inputs: bool = False
) -> KernelSimilarity:
    """Matched filter similarity for every peer pair and filter redundancy for every peer.

    Args:
        model: a collaborative model whose ``peers`` share one architecture.
        layers: conv module paths inside a peer network (default: all of peer 0's convs).
        align_inputs: reorder input channels by the previous layer's matching (see module doc).

    Returns:
        A :class:`KernelSimilarity` with ``matched`` (P, L) and ``redundancy`` (K, L).
    """
    peers = _peer_networks(model)
    names = list(getattr(model, "peer_names", [f"peer{i}" for i in range(len(peers))]))
    layers = list(layers) if layers is not None else conv_layers(peers[0])
    if not layers:
        raise CollabError(
            "the peers have no conv layers to compare; pass layers=[...] naming conv modules"
        )
    weights = _peer_convs(peers, layers)
    pairs = [list(p) for p in combinations(range(len(peers)), 2)]
    matched = torch.zeros(len(pairs), len(layers), dtype=torch.float64)
    for row, (a, b) in enumerate(pairs):
        matched[row] = _match_layers(weights[a], weights[b], align_inputs=align_inputs)
    redundancy = torch.tensor(
        [[filter_redundancy(w) for w in ws] for ws in weights], dtype=torch.float64
    )
    return KernelSimilarity(
        layers=layers, peer_names=names, matched=matched, redundancy=redundancy, pairs=pairs
    )


@dataclass(frozen=True)
class KernelOptions:
    """Options of the kernels probe: the arguments of :func:`kernel_similarity`."""

    layers: Sequence[str] | None = None
    align_inputs: bool = False


run_kernels = forwarding_probe(
    "kernels",
    kernel_similarity,
    reads=WEIGHTS,
    options=KernelOptions,
    result=KernelSimilarity,
    needs=("separate_peers",),
    about="matched filter similarity and filter redundancy",
)
