"""Optimizers and learning-rate schedules.

Schedules are pure functions of the (fractional) epoch, so resuming needs no scheduler state.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from analysis.config import OptimConfig, ScheduleConfig


def build_optimizer(
    cfg: OptimConfig, model: nn.Module, *, weight_decay_scale: float = 1.0
) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW over ``model``'s trainable parameters.

    With ``no_decay_norm_bias`` normalization weights and biases (every 0-/1-d tensor) get no
    weight decay, as in divide-and-co-training. ``weight_decay_scale`` is the method's factor on
    the configured weight decay.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = cfg.weight_decay * weight_decay_scale
    if cfg.no_decay_norm_bias:
        groups = [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
    else:
        groups = [{"params": params, "weight_decay": decay}]
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0
        )
    return torch.optim.AdamW(groups, lr=cfg.lr)


def lr_at(cfg: ScheduleConfig, *, base_lr: float, epoch: float, epochs: int) -> float:
    """Learning rate at fractional ``epoch`` in [0, epochs): linear warm-up, then the schedule."""
    if cfg.warmup_epochs > 0 and epoch < cfg.warmup_epochs:
        return base_lr * (epoch + 1e-3) / cfg.warmup_epochs
    if cfg.name == "constant":
        return base_lr
    if cfg.name == "step":
        passed = sum(1 for m in cfg.milestones if epoch >= m)
        return base_lr * cfg.gamma**passed
    span = max(epochs - cfg.warmup_epochs, 1e-8)
    t = min(max((epoch - cfg.warmup_epochs) / span, 0.0), 1.0)
    return cfg.min_lr + 0.5 * (base_lr - cfg.min_lr) * (1 + math.cos(math.pi * t))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
