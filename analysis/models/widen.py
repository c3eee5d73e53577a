"""Function-preserving widening (Net2WiderNet) of one stage of a CIFAR ResNet or a WRN.

Chen, Goodfellow & Shlens, "Net2Net: Accelerating Learning via Knowledge Transfer" (ICLR 2016),
section 2.2. Widening a layer from ``n`` to ``m`` units keeps the old units and adds ``m - n``
copies of units drawn at random (without repetition while ``m - n <= n``):

* every conv that *writes* the channels gets the copied units' filters, and every BatchNorm on
  those channels the copied units' weight, bias, running mean and running variance, so a copy
  computes exactly what its original computes (in train mode too: a copy's batch statistics
  are its original's; with dropout > 0, train mode draws a mask per unit, so only the
  expectation is preserved there);
* every conv or linear layer that *reads* the channels divides its incoming weights from a unit
  and all its copies by the number of them, so the sum it computes is unchanged.

A stage is widened as a whole, to the planes of a freshly built network with
``widths=[..]`` (:func:`widened_widths`): the inner channels of each block, and the residual
stream of the stage (every block output, the projection shortcut, and for stage 1 of a CIFAR
ResNet the stem, whose width is ``w1``) with one shared choice of copies, so that the tensors
added on a residual path stay aligned. Read by the next stage's first block (both its convs
and its shortcut, and a pre-activation block's BN) or by the final BN and ``fc``.

``noise`` (0 by default) breaks the symmetry of the copies: the divided incoming weights of a
unit and its copies get zero-mean noise (std ``noise`` x the layer's weight std) that sums to
zero over them, so the function is still preserved exactly but the copies receive different
gradients. Without it a copy and its original keep identical weights under any training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models.base import StagedNet
from analysis.models.cifar_resnet import BasicBlock, Bottleneck
from analysis.models.wrn import PostActWideBlock, WideBlock

STAGES = (1, 2, 3)
_BLOCKS = (BasicBlock, Bottleneck, WideBlock, PostActWideBlock)


@dataclass
class ChannelGroup:
    """Channels widened together: who writes them, which BNs act on them, who reads them."""

    writers: list[nn.Conv2d] = field(default_factory=list)
    norms: list[nn.BatchNorm2d] = field(default_factory=list)
    readers: list[nn.Module] = field(default_factory=list)  # Conv2d or Linear

    def merge(self, other: ChannelGroup) -> ChannelGroup:
        return ChannelGroup(
            self.writers + other.writers, self.norms + other.norms, self.readers + other.readers
        )


def _conv_bn(shortcut: nn.Module) -> tuple[list[nn.Conv2d], list[nn.BatchNorm2d]]:
    """The conv and BN of a projection shortcut (empty lists for an identity)."""
    convs = [m for m in shortcut.modules() if isinstance(m, nn.Conv2d)]
    return convs, [m for m in shortcut.modules() if isinstance(m, nn.BatchNorm2d)]


def _inner(block: nn.Module) -> list[ChannelGroup]:
    """The groups of a block's own planes (between its convs)."""
    if isinstance(block, Bottleneck):
        return [
            ChannelGroup([block.conv1], [block.bn1], [block.conv2]),
            ChannelGroup([block.conv2], [block.bn2], [block.conv3]),
        ]
    inner_bn = block.bn2 if isinstance(block, WideBlock) else block.bn1
    return [ChannelGroup([block.conv1], [inner_bn], [block.conv2])]


def _output(block: nn.Module) -> ChannelGroup:
    """What writes a block's output channels: its last conv (+ BN) and its projection."""
    convs, norms = _conv_bn(block.shortcut)
    if isinstance(block, Bottleneck):
        return ChannelGroup([block.conv3, *convs], [block.bn3, *norms])
    if isinstance(block, WideBlock):  # pre-activation: no BN after the block's convs
        return ChannelGroup([block.conv2, *convs], norms)
    return ChannelGroup([block.conv2, *convs], [block.bn2, *norms])


def _input(block: nn.Module) -> ChannelGroup:
    """What reads a block's input channels: its first conv, its projection (and a
    pre-activation block's first BN)."""
    convs, _ = _conv_bn(block.shortcut)
    norms = [block.bn1] if isinstance(block, WideBlock) else []
    return ChannelGroup(norms=norms, readers=[block.conv1, *convs])


def _identity_shortcut(block: nn.Module) -> bool:
    return not _conv_bn(block.shortcut)[0]


def _stage(net: nn.Module, stage: int) -> list[nn.Module]:
    if stage not in STAGES:
        raise CollabError(f"stage {stage!r} does not exist; widen stage 1, 2 or 3")
    layer = getattr(net, f"layer{stage}", None)
    blocks = list(layer) if isinstance(layer, nn.Sequential) else []
    if (
        not isinstance(net, StagedNet)
        or not blocks
        or not all(isinstance(b, _BLOCKS) for b in blocks)
    ):
        raise CollabError(
            f"{type(net).__name__} cannot be widened: only the CIFAR ResNets (resnet8, resnet20, "
            "..., basic or bottleneck, dc_resnet) and the WRNs (wrn, dc_wrn) can"
        )
    return blocks


def stage_planes(net: nn.Module) -> list[int]:
    """The planes ``[w1, w2, w3]`` of a CIFAR ResNet or WRN (its ``widths`` option)."""
    return [_stage(net, s)[0].conv1.out_channels for s in STAGES]


def widened_widths(widths: list[int], stage: int, planes: int) -> list[int]:
    """``widths`` with stage ``stage`` (1-based) set to ``planes``."""
    return [planes if s == stage else w for s, w in zip(STAGES, widths)]


def stage_groups(net: StagedNet, stage: int) -> list[tuple[ChannelGroup, int]]:
    """Every channel group that widening stage ``stage`` changes, with its size per plane
    (1 for inner groups and the stem, the block expansion for the residual stream)."""
    blocks = _stage(net, stage)
    expansion = 4 if isinstance(blocks[0], Bottleneck) else 1
    groups = [(g, 1) for b in blocks for g in _inner(b)]
    stream = ChannelGroup()
    for block in blocks:
        stream = stream.merge(_output(block))
    for block in blocks[1:]:
        stream = stream.merge(_input(block))
    if stage < 3:
        stream = stream.merge(_input(_stage(net, stage + 1)[0]))
    else:  # the tail: a pre-activation WRN's final BN, then the classifier
        tail = [net.bn] if isinstance(getattr(net, "bn", None), nn.BatchNorm2d) else []
        stream = stream.merge(ChannelGroup(norms=tail, readers=[net.fc]))
    cifar_resnet = isinstance(blocks[0], (BasicBlock, Bottleneck))
    if stage == 1 and cifar_resnet:  # the stem has w1 channels: it is widened with stage 1
        stem_bn = [net.bn1] if isinstance(getattr(net, "bn1", None), nn.BatchNorm2d) else []
        stem = ChannelGroup([net.conv1], stem_bn).merge(_input(blocks[0]))
        if _identity_shortcut(blocks[0]):  # basic blocks add the stem to the stream
            stream = stream.merge(stem)
        else:
            groups.append((stem, 1))
    elif _identity_shortcut(blocks[0]):
        raise CollabError(
            f"stage {stage} of this WRN has as many planes as its fixed 16-channel stem, so its "
            "first block has no projection to widen; start from widths whose first entry is not 16"
        )
    return [*groups, (stream, expansion)]


def _mapping(old: int, new: int, generator: torch.Generator) -> torch.Tensor:
    """Unit index of each of ``new`` units: the ``old`` units, then random copies."""
    extra = new - old
    picks = torch.cat([torch.randperm(old, generator=generator) for _ in range(-(-extra // old))])
    return torch.cat([torch.arange(old), picks[:extra]])


def _copy_norm(bn: nn.BatchNorm2d, mapping: torch.Tensor) -> None:
    mapping = mapping.to(bn.running_var.device if bn.running_var is not None else "cpu")
    with torch.no_grad():
        for name in ("weight", "bias"):
            if getattr(bn, name) is not None:
                setattr(bn, name, nn.Parameter(getattr(bn, name)[mapping].clone()))
        for name in ("running_mean", "running_var"):
            if getattr(bn, name) is not None:
                setattr(bn, name, getattr(bn, name)[mapping].clone())
    bn.num_features = len(mapping)


def _copy_writer(conv: nn.Conv2d, mapping: torch.Tensor) -> None:
    mapping = mapping.to(conv.weight.device)
    with torch.no_grad():
        conv.weight = nn.Parameter(conv.weight[mapping].clone())
        if conv.bias is not None:
            conv.bias = nn.Parameter(conv.bias[mapping].clone())
    conv.out_channels = len(mapping)


def _split_reader(
    layer: nn.Module, mapping: torch.Tensor, noise: float, generator: torch.Generator
) -> None:
    """Incoming weights of a unit shared out over it and its copies (summing to the old)."""
    mapping = mapping.to(layer.weight.device)
    with torch.no_grad():
        old = layer.weight
        counts = torch.bincount(mapping, minlength=old.shape[1]).to(old.dtype)
        shape = (1, -1) + (1,) * (old.dim() - 2)
        weight = old[:, mapping] / counts[mapping].view(shape)
        if noise > 0:
            eps = torch.randn(weight.shape, generator=generator).to(old) * noise * old.std()
            per_unit = torch.zeros_like(old).index_add_(1, mapping, eps) / counts.view(shape)
            weight += eps - per_unit[:, mapping]
        layer.weight = nn.Parameter(weight)
    if isinstance(layer, nn.Linear):
        layer.in_features = len(mapping)
    else:
        layer.in_channels = len(mapping)


def widen_group(
    group: ChannelGroup, new: int, *, noise: float = 0.0, generator: torch.Generator
) -> None:
    """Widen ``group`` in place to ``new`` channels, preserving the function (module doc)."""
    old = group.writers[0].out_channels
    if new <= old:
        return
    mapping = _mapping(old, new, generator)
    for conv in group.writers:
        _copy_writer(conv, mapping)
    for bn in group.norms:
        _copy_norm(bn, mapping)
    for layer in group.readers:
        _split_reader(layer, mapping, noise, generator)


def widen_stage(
    net: StagedNet, stage: int, planes: int, *, noise: float = 0.0, seed: int = 0
) -> StagedNet:
    """Widen stage ``stage`` of ``net`` in place to ``planes`` planes; returns ``net``.

    The result has the parameter shapes of the same network built with
    ``widths=widened_widths(stage_planes(net), stage, planes)`` and computes the same function
    (in eval and train mode) up to float rounding, whatever ``noise``.

    Raises:
        CollabError: ``net`` is not a CIFAR ResNet / WRN, ``stage`` is not 1-3, ``planes`` is
            narrower than the stage, or the stage cannot be widened (a WRN stage 1 of 16 planes).
    """
    current = stage_planes(net)[stage - 1] if stage in STAGES else None
    groups = stage_groups(net, stage)
    if isinstance(planes, bool) or not isinstance(planes, int) or planes < current:
        raise CollabError(
            f"stage {stage} has {current} planes; widening needs a whole number of planes "
            f">= {current}, got {planes!r}"
        )
    generator = torch.Generator().manual_seed(seed)
    for group, per_plane in groups:
        widen_group(group, planes * per_plane, noise=noise, generator=generator)
    net.feature_dim = net.fc.in_features
    return net
