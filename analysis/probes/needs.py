"""What a run must have for a probe to apply: the ``needs`` a probe registers, each a check.

A check reads a loaded run and returns None when the run has what is needed, else the reason
it does not, phrased to follow "it ...": ``"needs a model with DCL layers"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from analysis.errors import CollabError
from analysis.probes.class_map import find_network
from analysis.probes.dcl_layers import dcl_layer_paths
from analysis.registry import Registry

#: requirement name -> ``check(run) -> reason | None``.
NEEDS = Registry("probe requirement")


@NEEDS.register("two_peers")
def _two_peers(run: Any) -> str | None:
    return None if run.model.num_peers >= 2 else "needs two or more peers"


@NEEDS.register("separate_peers")
def _separate_peers(run: Any) -> str | None:
    peers = getattr(run.model, "peers", None)
    if peers is None or len(peers) < 2:
        return "needs two or more separate peer networks"
    if len({type(p).__name__ + str([tuple(q.shape) for q in p.parameters()]) for p in peers}) > 1:
        return "the peers have different architectures"
    return None


@NEEDS.register("epoch_checkpoints")
def _epoch_checkpoints(run: Any) -> str | None:
    if sum(name.startswith("epoch_") for name in run.checkpoints) < 2:
        return "needs two or more saved epoch checkpoints"
    return None


@NEEDS.register("dcl_layers")
def _dcl_layers(run: Any) -> str | None:
    return None if dcl_layer_paths(run.model) else "needs a model with DCL layers"


@NEEDS.register("boxes")
def _boxes(run: Any) -> str | None:
    if hasattr(run.dataset("test"), "box"):
        return None
    return "needs a dataset with true boxes (shapes)"


@NEEDS.register("localizer")
def _localizer(run: Any) -> str | None:
    """A class map needs the peer's network to end in global pooling (``avgpool``)."""
    try:
        net = find_network(run.model.peer(0))
    except CollabError:
        return "needs peers built on a staged network (a class map to localize with)"
    if "avgpool" not in net._modules:
        return "needs a network with an avgpool stage to read the class map from"
    return None


def unmet(run: Any, needs: Sequence[str]) -> str | None:
    """The reason the first unmet need of ``needs`` gives, or None when ``run`` has them all."""
    for name in needs:
        reason = NEEDS.get(name)(run)
        if reason:
            return reason
    return None
