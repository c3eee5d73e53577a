"""NHWC ("channels-last") memory order: where CollabLens uses it and how tensors get into it.

On the CPU, oneDNN's NHWC convolutions are 1.15-1.4x faster than NCHW on the CIFAR-size
networks here (benchmarks/bench_train_step.py, the README's performance section), so training
(``train.channels_last: auto``) and the probes' shared forward pass use it there; on GPUs it
is not yet measured to help and stays off unless asked for. The order changes how float sums
are rounded, never what is computed (benchmarks/layout_accuracy.py).
"""

from __future__ import annotations

import torch


def uses_channels_last(setting: bool | str, device: torch.device) -> bool:
    """What ``train.channels_last`` (or a probe's layout) means on ``device``: ``auto`` is true
    on the CPU only."""
    return device.type == "cpu" if setting == "auto" else bool(setting)


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """Images in NHWC memory order: (B, C, H, W), or per-peer views (K, B, C, H, W) whose every
    view ``x[k]`` is channels-last. Other shapes are returned unchanged."""
    if x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    if x.dim() == 5:
        return x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    return x


def is_channels_last(x: torch.Tensor) -> bool:
    """True for a 4-D tensor laid out NHWC and not also NCHW-contiguous."""
    return (
        x.dim() == 4
        and x.is_contiguous(memory_format=torch.channels_last)
        and not x.is_contiguous()
    )
