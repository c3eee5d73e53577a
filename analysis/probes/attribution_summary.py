"""Attributions of every peer on a few images, with their deletion-curve faithfulness."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from analysis.probes.attributions import attribute_all_peers
from analysis.probes.contract import DATA, register_probe, setting
from analysis.probes.faithfulness import deletion_by_peer
from analysis.probes.samples import gather_samples


@dataclass(frozen=True)
class AttributionSummary:
    """Attribution maps and their faithfulness for K peers on B images.

    Attributes:
        images: (B, C, H, W) the images explained, in [0, 1].
        maps: method name -> (K, B, H, W) maps (each peer explains its own top-1 class).
        curves: method name -> (K, B, steps + 1) deletion curves (target-class probability).
        auc: method name -> (K, B) area under each deletion curve (lower = more faithful).
        peer_names: the K peer names.
    """

    images: torch.Tensor
    maps: dict[str, torch.Tensor]
    curves: dict[str, torch.Tensor]
    auc: dict[str, torch.Tensor]
    peer_names: list[str]


def summarize_attributions(
    model: nn.Module,
    images: torch.Tensor,
    *,
    methods: Sequence[str] = ("saliency", "integrated_gradients", "grad_cam"),
    peer_names: Sequence[str],
    steps: int = 20,
) -> AttributionSummary:
    """Run every attribution method on every peer and score each map by its deletion curve."""
    maps, curves, auc = {}, {}, {}
    for method in methods:
        maps[method] = attribute_all_peers(model, images, method=method)
        curves[method], auc[method] = deletion_by_peer(model, images, maps[method], steps=steps)
    return AttributionSummary(images, maps, curves, auc, list(peer_names))


@dataclass(frozen=True)
class AttributionOptions:
    """Options of the attributions probe: the first ``images`` images of the data, and the
    arguments of :func:`summarize_attributions` (peer names default to the model's)."""

    images: int = 4
    methods: Sequence[str] = ("saliency", "integrated_gradients", "grad_cam")
    steps: int = 20
    peer_names: Sequence[str] | None = setting(None)


@register_probe(
    "attributions",
    reads=DATA,
    options=AttributionOptions,
    result=AttributionSummary,
    about="captum attributions per peer with deletion faithfulness",
)
def run_attributions(
    model: nn.Module, dataset: Dataset, *, options: AttributionOptions = AttributionOptions()
) -> AttributionSummary:
    """:func:`summarize_attributions` of ``model`` on the first ``options.images`` images."""
    images, _ = gather_samples(dataset, torch.arange(min(options.images, len(dataset))))
    names = options.peer_names if options.peer_names is not None else model.peer_names
    return summarize_attributions(
        model, images, methods=options.methods, peer_names=names, steps=options.steps
    )
