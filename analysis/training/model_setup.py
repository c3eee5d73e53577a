"""The model a run trains: built, optionally warm-started, placed, synchronised, laid out and
compiled as the config says, with its optimizer and the module a training step calls."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from analysis.config import Config
from analysis.errors import CollabError
from analysis.layout import uses_channels_last
from analysis.models.fused import fuse_peers
from analysis.training.optim import build_optimizer
from analysis.training.placement import place_peers
from analysis.training.speed import compile_peers, is_deterministic
from analysis.training.sync_bn import sync_batchnorm


def prepare_model(
    cfg: Config,
    method: Any,
    data: Any,
    *,
    device: torch.device,
    dist: Any,
    init_weights: dict[str, torch.Tensor] | None = None,
) -> tuple[nn.Module, torch.optim.Optimizer, nn.Module]:
    """``(model, optimizer, net)``: ``model`` is what evaluation and checkpoints use, ``net`` what
    a training step calls (``model`` itself, under DDP, or fused peers).

    ``init_weights`` replaces the seeded initial weights (e.g. a widened network in width
    search). Raises CollabError for switches that cannot be combined.
    """
    placed = bool(cfg.train.peer_devices)
    model = method.build_model(cfg.model, data).to(device)
    if init_weights is not None:
        model.load_state_dict(init_weights)
    if placed:
        place_peers(model, cfg.train.peer_devices, home=device)
    if dist.active and cfg.train.sync_bn:
        model = sync_batchnorm(model, device)
    if uses_channels_last(cfg.train.channels_last, device):
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg.optim, model, weight_decay_scale=method.weight_decay_scale)
    if cfg.train.compile:
        compile_peers(model)
    net = dist.wrap(model, device=device, placed=placed)
    if cfg.train.fuse_peers is True:
        if dist.active or placed or cfg.train.compile:
            raise CollabError(
                "train.fuse_peers runs all peers as one network in one process; it cannot be "
                "combined with torchrun, train.peer_devices or train.compile: turn one off"
            )
        net = fuse_peers(model)  # training steps only; eval and checkpoints: model
    elif cfg.train.fuse_peers == "auto" and auto_fuses(cfg, device, placed=placed, dist=dist):
        try:
            net = fuse_peers(model)
        except CollabError:  # peers of different shapes or unfusable layers: train them apart
            pass
    return model, optimizer, net


def auto_fuses(cfg: Config, device: torch.device, *, placed: bool, dist: Any) -> bool:
    """``train.fuse_peers: auto``: on CUDA, in one process, neither compiled nor deterministic
    (fusing changes float rounding, so an exact run keeps the separate peers)."""
    exact = is_deterministic(cfg.train.deterministic, device)
    plain = not (dist.active or placed or cfg.train.compile)
    return device.type == "cuda" and plain and not exact
