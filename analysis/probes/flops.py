"""The cost of a forward pass in FLOPs, counted with forward hooks.

2 x the multiply-accumulates of every ``Conv2d`` and ``Linear``: ``2 * out.numel() * in/groups
* kh * kw`` and ``2 * out.numel() * in_features``; normalization, activations, pooling and
biases are not counted.
"""

from __future__ import annotations

import torch
from torch import nn

from analysis.probes.model_state import eval_mode


@torch.no_grad()
def count_flops(module: nn.Module, example: torch.Tensor) -> int:
    """FLOPs per image of ``module`` on inputs shaped like ``example`` (B, C, H, W).

    2 x the multiply-accumulates of every ``Conv2d`` and ``Linear`` seen in one forward pass,
    divided by B. The module's modes and hooks are restored.
    """
    total = [0]

    def hook(m: nn.Module, _inputs, output: torch.Tensor) -> None:
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            total[0] += 2 * output.numel() * (m.in_channels // m.groups) * kh * kw
        else:
            total[0] += 2 * output.numel() * m.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in module.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        with eval_mode(module):
            module(example)
    finally:
        for handle in handles:
            handle.remove()
    return total[0] // max(example.shape[0], 1)
