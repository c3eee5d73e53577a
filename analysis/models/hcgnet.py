"""HCGNets: gated convolutional networks with hybrid connectivity (Yang et al., AAAI 2020).

Layer for layer the authors' networks (winycg/HCGNet@229ad0b ``models/HCGNet_CIFAR.py``,
``models/HCGNet_ImageNet.py``); blocks in :mod:`analysis.models.hcgnet_parts`. Hybrid blocks of
SMG modules (dense connectivity between modules, gated residual-like updates inside) alternate
with gated transitions that halve the channels (theta = 0.5) and the resolution.

* CIFAR (``hcgnet_a1``, ``hcgnet_a2``, ``hcgnet_a3``): stem ``conv1`` 3x3 (in -> 2 g1, no bias,
  no BN); three hybrid blocks ``layer1..3`` with ``transition1..2`` between them (DropBlock
  after each transition, option ``drop_block``); ``bn`` -> ``relu`` -> global pool -> ``fc``.
* ImageNet (``hcgnet_b``, ``hcgnet_c``): ``stem`` = three 3x3 conv -> BN -> ReLU (in -> 32,
  stride 2; 32 -> 32; 32 -> 64) and a 3x3 stride-2 ``maxpool``; four hybrid blocks
  ``layer1..4`` with ``transition1..3``; ``bn`` -> ``relu`` -> global pool -> ``fc``. Their
  ``fc_drop`` (dropout 0.1) acts on a tensor their forward then discards, so it never changes
  an output and is left out (our ``dropout`` option, default 0, is a real one).

Parameters (the authors' code builds and counts the same) and multiply-adds (counted as their
``utils.cal_multi_adds`` does, :func:`~analysis.models.hcgnet_cost.multiply_adds`):

- ``hcgnet_a1``: growth 12, 24, 36; 8, 8, 8 SMGs; 1,065,301 / 1,102,651 parameters (10 / 100
  classes); 0.16G multiply-adds at 32 px.
- ``hcgnet_a2``: growth 24, 36, 64; 8, 8, 8 SMGs; 3,069,149 / 3,133,679; 0.50G.
- ``hcgnet_a3``: growth 36, 48, 80; 12, 12, 12 SMGs; 11,239,897 / 11,363,647; 1.99G.
- ``hcgnet_b``: growth 32, 48, 64, 96; 3, 6, 12, 8 SMGs; 12,845,501 (1000 classes); 2.0G at
  224 px.
- ``hcgnet_c``: growth 48, 56, 72, 112; 6, 12, 18, 14 SMGs; 42,153,208; 7.07G (their counter
  too; their README says 7.0G).

Their README rounds the counts to 1.1M, 3.1M, 11.4M (100 classes), 12.9M and 42.2M.
Initialisation is PyTorch's default for every layer, as theirs (their ``init_params`` is never
called). bn_size 4, theta 0.5 and the gate ratios are fixed as in their code.

Stages for probes and splits: ``conv1`` (``stem``), ``layer1..``; ``transitionN`` and
``layerN`` are separate stages, so a shared trunk can fork after a hybrid block or after a
transition, and early exits can follow either. HCGNets have no single width option, so
Divide-and-Co-training can use them only undivided (``model.peers=1``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from analysis.errors import CollabError
from analysis.models.base import StagedNet, global_pool
from analysis.models.factory import register_variant
from analysis.models.hcgnet_parts import SMG_GROUPS, TRANSITION_REDUCTION, Transition, hybrid_block

THETA, BN_SIZE = 0.5, 4
IMAGENET_STEM = (32, 32, 64)  # channels of the three stem convs (the first has stride 2)

# The authors' layouts: growth rate and number of SMG modules of every hybrid block.
LAYOUTS: dict[str, tuple[tuple[int, ...], tuple[int, ...], bool]] = {
    "hcgnet_a1": ((12, 24, 36), (8, 8, 8), False),
    "hcgnet_a2": ((24, 36, 64), (8, 8, 8), False),
    "hcgnet_a3": ((36, 48, 80), (12, 12, 12), False),
    "hcgnet_b": ((32, 48, 64, 96), (3, 6, 12, 8), True),
    "hcgnet_c": ((48, 56, 72, 112), (6, 12, 18, 14), True),
}


def _imagenet_stem(in_chans: int) -> dict[str, nn.Module]:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    chans = in_chans
    for i, out in enumerate(IMAGENET_STEM, start=1):
        stride = 2 if i == 1 else 1
        layers[f"conv{i}"] = nn.Conv2d(chans, out, 3, stride=stride, padding=1, bias=False)
        layers[f"bn{i}"] = nn.BatchNorm2d(out)
        layers[f"relu{i}"] = nn.ReLU()
        chans = out
    return {"stem": nn.Sequential(layers), "maxpool": nn.MaxPool2d(3, stride=2, padding=1)}


def _check(growth: Sequence[int], blocks: Sequence[int], drop_block: float) -> None:
    if len(growth) != len(blocks) or not blocks or min(blocks) < 1:
        raise CollabError(
            f"HCGNet needs one growth rate per hybrid block and >= 1 SMG module per block, got "
            f"growth {tuple(growth)} and blocks {tuple(blocks)}"
        )
    if any(g % SMG_GROUPS for g in growth):
        raise CollabError(
            f"HCGNet growth rates must be multiples of {SMG_GROUPS} (the SMG 3x3 conv has "
            f"{SMG_GROUPS} groups), got {tuple(growth)}"
        )
    if not 0.0 <= drop_block < 1.0:
        raise CollabError(f"drop_block must be in [0, 1), got {drop_block}; use e.g. 0.1")


def hcgnet_net(
    *,
    num_classes: int,
    in_chans: int = 3,
    growth: tuple[int, ...],
    blocks: tuple[int, ...],
    imagenet_stem: bool,
    dropout: float = 0.0,
    drop_block: float = 0.0,
) -> StagedNet:
    """Build an HCGNet: (B, in_chans, H, W) -> (B, num_classes); see the module docstring.

    Args:
        growth: growth rate of every hybrid block (multiples of 4).
        blocks: SMG modules per hybrid block.
        imagenet_stem: the ImageNet stem (three convs, max pool) instead of one 3x3 conv.
        dropout: dropout on the pooled features, before ``fc`` (not in the authors' nets).
        drop_block: DropBlock probability after every transition of the CIFAR networks. The
            authors raise it from 0 to 0.1 over every SGDR cycle of their training (their
            ``main_cifar.py:179``); our trainer keeps it constant, so it is 0 (off) unless set.
    """
    _check(growth, blocks, drop_block)
    features: dict[str, nn.Module]
    if imagenet_stem:
        features, chans, first = _imagenet_stem(in_chans), IMAGENET_STEM[-1], "stem"
    else:
        chans, first = 2 * growth[0], "conv1"
        features = {first: nn.Conv2d(in_chans, chans, 3, padding=1, bias=False)}
    for i, (rate, layers) in enumerate(zip(growth, blocks), start=1):
        features[f"layer{i}"] = hybrid_block(chans, rate, layers, bn_size=BN_SIZE)
        chans += rate * layers
        if i < len(blocks):
            out = int(chans * THETA)
            if out < TRANSITION_REDUCTION:
                raise CollabError(f"HCGNet transition {i} would keep only {out} channels")
            features[f"transition{i}"] = Transition(chans, out, drop_block=drop_block)
            chans = out
    features.update({"bn": nn.BatchNorm2d(chans), "relu": nn.ReLU(), **global_pool()})
    probe_layers = [first, *(f"layer{i}" for i in range(1, len(blocks) + 1))]
    return StagedNet(
        features, nn.Linear(chans, num_classes), probe_layers=probe_layers, dropout=dropout
    )


for _name, (_growth, _blocks, _imagenet) in LAYOUTS.items():
    register_variant(
        _name,
        hcgnet_net,
        doc=f"HCGNet-{_name[7:].upper()} (Yang et al. 2020); see :mod:`analysis.models.hcgnet`.",
        fixed={"growth": _growth, "blocks": _blocks, "imagenet_stem": _imagenet}
        | ({"drop_block": 0.0} if _imagenet else {}),
    )
