"""Capturing activations by module path, with hooks that never outlive the probe."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from analysis.errors import CollabError


def peer_layers(model: nn.Module, i: int) -> list[str]:
    """Full module paths of peer ``i``'s probe layers, e.g. ``["peers.0.layer1", ...]``.

    Every collaborative container answers this with ``peer_probe_layers(i)`` (for a shared trunk
    the first paths are the trunk's, shared by all peers).
    """
    if not hasattr(model, "peer_probe_layers"):
        raise CollabError(
            f"{type(model).__name__} does not name its peers' layers (peer_probe_layers)"
        )
    return list(model.peer_probe_layers(i))


def resolve(model: nn.Module, layers: Sequence[str]) -> dict[str, nn.Module]:
    """Module path -> module; an unknown path is a CollabError suggesting the closest names."""
    modules = dict(model.named_modules())
    found = {}
    for name in layers:
        if name not in modules:
            close = difflib.get_close_matches(name, list(modules), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise CollabError(f"the model has no layer {name!r}{hint}")
        found[name] = modules[name]
    return found


@contextmanager
def capture(
    model: nn.Module,
    layers: Sequence[str],
    *,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    stream: Mapping[str, Sequence[Callable[[torch.Tensor], None]]] | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of ``layers`` on every forward pass.

    Yields a dict that each forward overwrites with ``{path: output}`` (passed through
    ``transform`` if given, e.g. to pool or detach). ``stream`` maps further paths (or some of
    ``layers``) to callbacks that receive the output during the forward pass; a path only
    streamed is not kept, so its output is freed as soon as the forward no longer needs it.
    The hooks are removed on exit, also on error, so the model keeps exactly the hooks it had.

    Example:
        >>> with capture(model, ["peers.0.layer1"]) as acts:
        ...     model(x)
        >>> acts["peers.0.layer1"].shape  # (B, C, H, W)
    """
    store: dict[str, torch.Tensor] = {}
    handles = []
    stream = stream or {}
    kept = set(layers)

    def hook_for(name: str):
        calls = tuple(stream.get(name, ()))
        keep = name in kept

        def hook(_module, _inputs, output):
            tensor = output[0] if isinstance(output, (tuple, list)) else output
            for call in calls:
                call(tensor)
            if keep:
                store[name] = transform(tensor) if transform else tensor

        return hook

    try:
        paths = list(dict.fromkeys([*layers, *stream]))
        for name, module in resolve(model, paths).items():
            handles.append(module.register_forward_hook(hook_for(name)))
        yield store
    finally:
        for handle in handles:
            handle.remove()


def hook_count(model: nn.Module) -> int:
    """Number of forward hooks on ``model`` and its submodules (tests: hooks never leak)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
