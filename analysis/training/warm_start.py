"""Another run's weights, widened function-preservingly, to start a new run from.

Width search (:mod:`analysis.training.search`) trains every proposal as an ordinary run folder
whose first epoch starts (``Trainer(..., init_weights=...)``) from the previous network's
``best`` weights, widened with
:func:`analysis.models.widen.widen_stage` to the shapes the proposal's config builds. The
widened model computes what the previous one computed, so a proposal never starts behind it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models import SeparatePeers, StagedNet
from analysis.models.widen import stage_planes, widen_stage
from analysis.runs import load_run


def peer_networks(model: nn.Module) -> list[StagedNet]:
    """The peers of a model of separate networks, or a one-line error naming what is needed."""
    peers = list(model.peers) if isinstance(model, SeparatePeers) else []
    if not peers or not all(isinstance(p, StagedNet) for p in peers):
        raise CollabError(
            f"width search widens separate peer networks, but this method builds a "
            f"{type(model).__name__}; use a method whose peers are separate networks "
            "(independent, dml, ...)"
        )
    return peers


def widened_weights(
    run: Path, target: nn.Module, stage: int | None, *, noise: float, seed: int
) -> dict[str, torch.Tensor]:
    """The ``best`` weights of ``run``, with stage ``stage`` of every peer widened to the planes
    of the same peer of ``target`` (a freshly built model of the proposal); None: unchanged.

    Raises:
        CollabError: the widened model does not have ``target``'s parameter shapes.
    """
    model = load_run(run).model
    if stage is not None:
        for i, (net, goal) in enumerate(zip(peer_networks(model), peer_networks(target))):
            widen_stage(net, stage, stage_planes(goal)[stage - 1], noise=noise, seed=seed + i)
    weights = model.state_dict()
    expected = {k: v.shape for k, v in target.state_dict().items()}
    if {k: v.shape for k, v in weights.items()} != expected:
        raise CollabError(
            f"the network of {run} widened at stage {stage} does not have the shapes of the "
            "proposed network; width search needs every peer built with the same widths"
        )
    return weights
