"""Multiply-adds counted the way the HCGNet paper counts its "FLOPs" (0.16G for HCGNet-A1).

The authors' ``utils.cal_multi_adds`` (winycg/HCGNet@229ad0b ``utils.py:134-183``) adds, per
image: for a conv, in/groups x kh x kw x out x output positions; for a linear layer, its weights
and biases; 2 per element entering a 2-D batch norm; 1 per element entering a ReLU module or a
global average pool. Everything else (1-D batch norms, softmax, sigmoid, tanh, products, max
pooling, dropout) is free. Here the gates' attention pooling counts as their global pooling
(:class:`~analysis.models.hcgnet_parts.AttentionPool`). Two small differences from their
integer: the output size of a conv is the real one (their formula ignores dilation, so it
counts the dilated depthwise conv of every gate on (H + 2) x (W + 2) positions), and our final
ReLU and pooling are modules, counted (theirs are functional in the CIFAR networks). Both move
the total by less than 0.3%.

(:func:`analysis.probes.flops.count_flops` counts 2 x the multiply-accumulates of convs and
linear layers only, the convention of most later papers.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from analysis.models.hcgnet_parts import AttentionPool

_POOLS = (nn.AdaptiveAvgPool2d, AttentionPool)


def _cost(module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    """Multiply-adds of one call, per image (batch of ``x.shape[0]``)."""
    per_in = x.numel() // x.shape[0]
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        positions = out.numel() // (out.shape[0] * out.shape[1])
        weights = module.in_channels // module.groups * kh * kw * module.out_channels
        return weights * positions
    if isinstance(module, nn.Linear):
        return module.weight.numel() + (module.bias.numel() if module.bias is not None else 0)
    if isinstance(module, nn.BatchNorm2d):
        return 2 * per_in
    if isinstance(module, (nn.ReLU, *_POOLS)):
        return per_in
    return 0


@torch.no_grad()
def multiply_adds(net: nn.Module, *, size: Sequence[int] = (32, 32), in_chans: int = 3) -> int:
    """Multiply-adds of one image of ``size`` (H, W) through ``net``, counted as in HCGNet.

    Runs one forward pass of a batch of 2 zero images in eval mode on the network's device
    (the meta device works: no arithmetic happens there); modes and hooks are restored.
    """
    total = [0]

    def hook(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        total[0] += _cost(module, inputs[0], out)

    handles = [m.register_forward_hook(hook) for m in net.modules()]
    was_training = net.training
    device = next(net.parameters()).device
    try:
        net.eval()
        net(torch.zeros(2, in_chans, *size, device=device))
    finally:
        net.train(was_training)
        for handle in handles:
            handle.remove()
    return total[0]
