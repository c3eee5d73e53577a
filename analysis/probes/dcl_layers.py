"""Where a model's DCL layers are, and which input window each position of their output sees."""

from __future__ import annotations

from torch import nn

from analysis.errors import CollabError
from analysis.models.base import StagedNet
from analysis.models.dcl import DCLConv
from analysis.models.receptive_field import SIDE_PATHS, ReceptiveField, receptive_field


def dcl_receptive_field(root: nn.Module, path: str) -> ReceptiveField:
    """Receptive field of the DCL layer at ``path`` (relative to the peer network ``root``).

    Walks the main path from ``root`` to the layer: at each level the children registered
    before the next path component (``StagedNet`` registers stages in forward order; residual
    side paths in :data:`SIDE_PATHS` are skipped), then one branch conv of the layer itself.
    Every DCL module on the way counts as one of its branches (the K branches run in parallel).
    """
    chain: list[nn.Module] = []
    module = root
    for part in path.split("."):
        for name, child in module.named_children():
            if name == part:
                break
            if name not in SIDE_PATHS:
                chain.extend(_main_modules(child))
        else:
            raise CollabError(f"{type(root).__name__} has no layer {path!r}")
        module = module._modules[part]
    if not isinstance(module, DCLConv):
        raise CollabError(f"layer {path!r} is a {type(module).__name__}, not a DCL module")
    chain.append(module.branches[0])
    return receptive_field(chain)


def _main_modules(module: nn.Module) -> list[nn.Module]:
    """``module`` for :func:`receptive_field`, with every DCL module replaced by one branch."""
    if isinstance(module, DCLConv):
        return [module.branches[0]]
    if not any(isinstance(m, DCLConv) for m in module.modules()):
        return [module]
    return [
        m
        for name, child in module.named_children()
        if name not in SIDE_PATHS
        for m in _main_modules(child)
    ]


def _peer_root(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    """The deepest StagedNet on ``path`` and the path relative to it."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, -1, -1):
        root = model.get_submodule(".".join(parts[:cut])) if cut else model
        if isinstance(root, StagedNet):
            return root, ".".join(parts[cut:])
    raise CollabError(f"layer {path!r} is not inside a network of the model; pass a DCL layer path")


def dcl_layer_paths(model: nn.Module, *, peer: int | None = 0) -> list[str]:
    """Full module paths of the DCL layers (of peer ``peer``, or of the whole model if None)."""
    prefix = model.peer_prefix(peer) if peer is not None and hasattr(model, "peer_prefix") else ""
    return [
        name
        for name, m in model.named_modules()
        if isinstance(m, DCLConv) and name.startswith(prefix)
    ]


def dcl_layer_field(model: nn.Module, path: str) -> ReceptiveField:
    """Receptive field of the DCL layer at the full module ``path`` of ``model``."""
    return dcl_receptive_field(*_peer_root(model, path))
