"""Peers on different devices (``train.peer_devices``): peer i runs on its own device.

Hooks move each peer's input onto its device and its logits back to the home device (the
trainer's ``train.device``), where the ensemble and the losses are computed; the model's
structure and parameter names do not change, so checkpoints load anywhere. On CUDA the peers
run concurrently: kernels are queued asynchronously and the copies between GPUs do not wait
for the host, so peer 1 starts while peer 0 still runs, and autograd runs each device's
backward pass on its own thread.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from analysis.errors import CollabError


def resolve_device(name: str) -> torch.device:
    """``name`` as a device, refused with a one-line error when it is not there."""
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = device.index or 0
        if index >= count:
            raise CollabError(
                f"train.peer_devices names {name} but {count} CUDA GPU(s) are visible; "
                "list existing devices, or [] to keep every peer on train.device"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CollabError("train.peer_devices names mps but MPS is not available; use cpu")
    return device


def move(value: Any, device: torch.device) -> Any:
    """Tensors in ``value`` (nested lists, tuples, dicts) moved to ``device``."""
    if torch.is_tensor(value):
        if value.device == device:
            return value
        both_gpu = value.device.type == "cuda" and device.type == "cuda"
        return value.to(device, non_blocking=both_gpu)
    if isinstance(value, (list, tuple)):
        return type(value)(move(v, device) for v in value)
    if isinstance(value, dict):
        return {k: move(v, device) for k, v in value.items()}
    return value


def place_peers(model: nn.Module, devices: list[str], *, home: torch.device) -> list:
    """Put peer i of ``model`` (a container of separate peers, ``model.peers``) on
    ``devices[i]``; the rest of the model stays on ``home``. Returns the hook handles.
    """
    peers = getattr(model, "peers", None)
    if not isinstance(peers, nn.ModuleList):
        raise CollabError(
            f"train.peer_devices needs a model of separate peers, but {type(model).__name__} "
            "shares layers between its peers; set train.peer_devices=[]"
        )
    if len(devices) != len(peers):
        raise CollabError(
            f"train.peer_devices lists {len(devices)} devices for {len(peers)} peers; "
            "give one per peer"
        )
    handles = []
    for peer, name in zip(peers, devices):
        device = resolve_device(name)
        peer.to(device)
        handles.append(peer.register_forward_pre_hook(_inputs_to(device)))
        handles.append(peer.register_forward_hook(_outputs_to(home)))
    return handles


def _inputs_to(device: torch.device):
    def hook(module: nn.Module, args: tuple) -> tuple:
        return move(args, device)

    return hook


def _outputs_to(device: torch.device):
    def hook(module: nn.Module, args: tuple, output: Any) -> Any:
        return move(output, device)

    return hook
