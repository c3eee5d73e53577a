"""Speed switches: determinism or cuDNN autotuning, channels-last memory, torch.compile.

On the CPU the defaults are deterministic algorithms (exact runs and resumes) in NHWC memory
order (``train.channels_last=auto``); compilation is off everywhere unless asked for.
"""

from __future__ import annotations

import os

import torch
from torch import nn


def is_deterministic(setting: bool | str, device: torch.device) -> bool:
    """What ``train.deterministic`` means on ``device``: ``auto`` is true except on CUDA."""
    return device.type != "cuda" if setting == "auto" else bool(setting)


def configure_determinism(setting: bool | str, device: torch.device) -> bool:
    """Apply ``train.deterministic`` and return whether algorithms are deterministic.

    ``auto`` is true except on CUDA, where ``cudnn.benchmark`` picks the fastest convolution
    kernels instead. True makes resumes exact (the RNG states are saved with the checkpoint);
    on CUDA it also needs cuBLAS's fixed workspace, set here unless already set.
    """
    on = is_deterministic(setting, device)
    if on and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on, warn_only=True)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = not on and device.type == "cuda"
    return on


def uses_channels_last(setting: bool | str, device: torch.device) -> bool:
    """What ``train.channels_last`` means on ``device``: ``auto`` is true on the CPU only."""
    return device.type == "cpu" if setting == "auto" else bool(setting)


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """Images in NHWC memory order: (B, C, H, W), or per-peer views (K, B, C, H, W) whose every
    view ``x[k]`` is channels-last. Other shapes are returned unchanged."""
    if x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    if x.dim() == 5:
        return x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    return x


def compile_peers(model: nn.Module) -> None:
    """``torch.compile`` each peer of a container of separate peers (``model.peers``), else the
    whole model, in place: parameter names, and so checkpoints, stay as they are."""
    peers = getattr(model, "peers", None)
    targets = list(peers) if isinstance(peers, nn.ModuleList) else [model]
    for module in targets:
        module.compile()
