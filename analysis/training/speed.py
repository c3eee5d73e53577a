"""Speed switches: determinism or cuDNN autotuning, and torch.compile.

On the CPU the defaults are deterministic algorithms (exact runs and resumes), in NHWC memory
order (``train.channels_last=auto``, :mod:`analysis.layout`); compilation is off everywhere
unless asked for.
"""

from __future__ import annotations

import os

import torch
import torch.utils.deterministic
from torch import nn


def is_deterministic(setting: bool | str, device: torch.device) -> bool:
    """What ``train.deterministic`` means on ``device``: ``auto`` is true except on CUDA."""
    return device.type != "cuda" if setting == "auto" else bool(setting)


def configure_determinism(setting: bool | str, device: torch.device) -> bool:
    """Apply ``train.deterministic`` and return whether algorithms are deterministic.

    ``auto`` is true except on CUDA, where ``cudnn.benchmark`` picks the fastest convolution
    kernels instead. True makes resumes exact (the RNG states are saved with the checkpoint);
    on CUDA it also needs cuBLAS's fixed workspace, set here unless already set.

    Deterministic mode by default also fills every new tensor (``torch.empty`` and kin) with
    NaN, so that a read of uninitialised memory shows. Training never reads it (the same
    weights come out bit for bit either way: tests/training/test_speed.py), and the fills cost
    a CPU step 6-10% (``benchmarks/bench_train_step.py``), so they are turned off
    (``torch.utils.deterministic.fill_uninitialized_memory``, which PyTorch documents as
    still deterministic for programs that do not read uninitialised memory).
    """
    on = is_deterministic(setting, device)
    if on and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = not on and device.type == "cuda"
    return on


def compile_peers(model: nn.Module) -> None:
    """``torch.compile`` each peer of a container of separate peers (``model.peers``), else the
    whole model, in place: parameter names, and so checkpoints, stay as they are."""
    peers = getattr(model, "peers", None)
    targets = list(peers) if isinstance(peers, nn.ModuleList) else [model]
    for module in targets:
        module.compile()
