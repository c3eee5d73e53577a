"""Pick the compute device: CUDA, then Apple MPS, then CPU, unless one is forced."""

from __future__ import annotations

import torch

from analysis.errors import CollabError


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CollabError(
            "device 'cuda' was requested but no CUDA GPU is visible; use train.device=auto"
        )
    if name == "mps" and not torch.backends.mps.is_available():
        raise CollabError(
            "device 'mps' was requested but MPS is not available; use train.device=auto"
        )
    return torch.device(name)
