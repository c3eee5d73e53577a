"""Model surgery: scale channels in place (gates, masks) or remove them for a smaller network.

:func:`scaled_channels` multiplies the channels of :class:`~analysis.models.channel_units.Unit`
s at their points (a binary mask zeroes them, a gate in [0, 1] scales them) for as long as the
context lasts. :func:`prune` builds the physically smaller dense network that computes what the
masked network computes: the removed channels are gone from every conv and BN that writes them
and from every conv that reads them, and ``fc`` keeps only the chosen classes' rows.

The pruned network is registered as the model ``dissected`` so that a run folder can rebuild it
from its config: the base model, its options and the kept width of every unit.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models.channel_units import Unit, channel_units
from analysis.models.factory import MODELS, create_model


@contextmanager
def scaled_channels(
    net: nn.Module, units: Sequence[Unit], scales: Mapping[str, torch.Tensor]
) -> Iterator[nn.Module]:
    """Multiply the channels of ``units`` named in ``scales`` at every point, on every forward.

    Args:
        net: the network the units' paths are relative to.
        units: its channel units (:func:`channel_units`).
        scales: unit name -> (C,) factors for every image, or (B, C) one row per image.
            Gradients flow into the factors (dissection learns gates this way).

    The hooks are removed on exit, also on error.
    """
    handles = []

    def hook_for(scale: torch.Tensor):
        def hook(_module, _inputs, output):
            shape = (-1, output.shape[1], 1, 1) if scale.dim() == 2 else (1, -1, 1, 1)
            return output * scale.to(output.dtype).view(shape)

        return hook

    try:
        for unit in units:
            if unit.name in scales:
                for point in unit.points:
                    module = net.get_submodule(point)
                    handles.append(module.register_forward_hook(hook_for(scales[unit.name])))
        yield net
    finally:
        for handle in handles:
            handle.remove()


def _indices(unit: Unit, keep: Any) -> torch.Tensor:
    """Sorted kept channel indices of ``unit`` from a bool mask (C,) or an index list."""
    keep = torch.as_tensor(keep, device="cpu")  # CPU even under a meta default device
    if keep.dtype == torch.bool:
        if keep.shape != (unit.width,):
            raise CollabError(
                f"mask of {unit.name!r} has shape {tuple(keep.shape)}, not ({unit.width},)"
            )
        keep = keep.nonzero().flatten()
    keep = torch.unique(keep.long())
    if keep.numel() == 0:
        raise CollabError(f"unit {unit.name!r} would keep no channel; keep at least one")
    if keep.min() < 0 or keep.max() >= unit.width:
        raise CollabError(
            f"unit {unit.name!r} has channels 0..{unit.width - 1}, not {keep.tolist()}"
        )
    return keep


def _sliced_conv(
    conv: nn.Conv2d, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None
) -> nn.Conv2d:
    w = conv.weight.detach()
    w = w if out_idx is None else w[out_idx]
    w = w if in_idx is None else w[:, in_idx]
    new = nn.Conv2d(
        w.shape[1], w.shape[0], conv.kernel_size, stride=conv.stride, padding=conv.padding,
        dilation=conv.dilation, bias=conv.bias is not None, padding_mode=conv.padding_mode,
    )  # fmt: skip
    new.weight.data.copy_(w)
    if conv.bias is not None:
        new.bias.data.copy_(conv.bias.detach() if out_idx is None else conv.bias.detach()[out_idx])
    return new


def _sliced_bn(bn: nn.BatchNorm2d, idx: torch.Tensor) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(
        len(idx), eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
        track_running_stats=bn.track_running_stats,
    )  # fmt: skip
    for name, tensor in list(bn.named_parameters()) + list(bn.named_buffers()):
        part = tensor.detach() if tensor.dim() == 0 else tensor.detach()[idx]
        getattr(new, name).data.copy_(part)
    return new


def _replace(net: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, name, module)


def prune(
    net: nn.Module, keep: Mapping[str, Any], *, classes: Sequence[int] | None = None
) -> nn.Module:
    """A smaller dense copy of ``net`` without the channels ``keep`` drops (``net`` is unchanged).

    Args:
        net: a network :func:`channel_units` understands.
        keep: unit name -> bool mask (C,) or kept channel indices; units not named keep all.
        classes: the logits to keep, in this order (default: all).

    Returns:
        The copy, whose logits (B, len(classes)) equal ``net``'s logits of ``classes`` while the
        dropped channels are zeroed (:func:`scaled_channels` with the masks), in eval mode.
    """
    units = {u.name: u for u in channel_units(net)}
    unknown = sorted(set(keep) - set(units))
    if unknown:
        raise CollabError(
            f"the network has no channel unit {unknown[0]!r}; its units: {', '.join(units)}"
        )
    out_idx: dict[str, torch.Tensor] = {}
    in_idx: dict[str, torch.Tensor] = {}
    for name, mask in keep.items():
        idx = _indices(units[name], mask)
        for conv, bn in units[name].writers:
            out_idx[conv] = out_idx[bn] = idx
        for reader in units[name].readers:
            in_idx[reader] = idx
    small = copy.deepcopy(net)
    for path, module in net.named_modules():
        if isinstance(module, nn.Conv2d) and (path in out_idx or path in in_idx):
            _replace(small, path, _sliced_conv(module, out_idx.get(path), in_idx.get(path)))
        elif isinstance(module, nn.BatchNorm2d) and path in out_idx:
            _replace(small, path, _sliced_bn(module, out_idx[path]))
    rows = list(range(net.fc.out_features)) if classes is None else list(classes)
    rows = torch.as_tensor(rows, dtype=torch.long, device="cpu")
    if rows.numel() == 0 or rows.min() < 0 or rows.max() >= net.fc.out_features:
        raise CollabError(
            f"classes must be among 0..{net.fc.out_features - 1}, got {rows.tolist()}"
        )
    cols = in_idx.get("fc")
    weight = net.fc.weight.detach()[rows]
    weight = weight if cols is None else weight[:, cols]
    fc = nn.Linear(weight.shape[1], weight.shape[0], bias=net.fc.bias is not None)
    fc.weight.data.copy_(weight)
    if net.fc.bias is not None:
        fc.bias.data.copy_(net.fc.bias.detach()[rows])
    small.fc = fc
    if hasattr(small, "feature_dim"):
        small.feature_dim = fc.in_features
    return small


@MODELS.register("dissected")
def dissected(
    *,
    num_classes: int,
    in_chans: int = 3,
    base: str = "test_resnet",
    base_options: dict | None = None,
    base_classes: int = 0,
    widths: dict | None = None,
) -> nn.Module:
    """A ``base`` network narrowed to ``widths`` (unit name -> kept channels) with ``num_classes``
    logits: the shape of a :func:`prune` result, to load its weights into (a reconstructed run).

    ``base_classes`` is the base network's own class count (0: ``num_classes``); the first
    channels and classes are kept, so a fresh build is a valid, initialised smaller network.
    """
    for key, value in {"base_options": base_options, "widths": widths}.items():
        if value is not None and not isinstance(value, dict):
            raise CollabError(f"model 'dissected' option {key!r} must be a mapping, got {value!r}")
    full = create_model(
        base, num_classes=base_classes or num_classes, in_chans=in_chans, **(base_options or {})
    )
    keep = {name: torch.arange(int(width), device="cpu") for name, width in (widths or {}).items()}
    return prune(full, keep, classes=range(num_classes))
