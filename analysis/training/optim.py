"""Optimizers and learning-rate schedules.

Schedules are pure functions of the (fractional) epoch, so resuming needs no scheduler state.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from analysis.config import OptimConfig, ScheduleConfig


def no_decay(name: str, param: torch.Tensor, *, rule: str = "name") -> bool:
    """Whether parameter ``name`` is exempt from weight decay under ``no_decay_norm_bias``.

    ``rule="name"`` (the default) is Divide-and-Co-training's (``utils/lr_scheduler.py``,
    ``get_parameter_groups``): the name contains ``norm`` or ``bias``. On networks whose BN
    modules are called ``bn*`` that exempts every bias (BN and fc) and decays the BN weights.
    ``rule="ndim"`` (this library's former rule) exempts every 0-/1-d tensor: the BN weights
    as well as the biases.
    """
    if rule == "name":
        return "norm" in name or "bias" in name
    if rule == "ndim":
        return param.ndim <= 1
    raise ValueError(f"unknown no-decay rule {rule!r}; use 'name' or 'ndim'")


def build_optimizer(
    cfg: OptimConfig,
    model: nn.Module,
    *,
    weight_decay_scale: float = 1.0,
    no_decay_rule: str = "name",
) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW over ``model``'s trainable parameters.

    With ``no_decay_norm_bias`` the parameters :func:`no_decay` picks (by ``no_decay_rule``)
    get no weight decay, as in divide-and-co-training. ``weight_decay_scale`` is the method's
    factor on the configured weight decay.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    decay = cfg.weight_decay * weight_decay_scale
    if cfg.no_decay_norm_bias:
        exempt = [no_decay(n, p, rule=no_decay_rule) for n, p in named]
        groups = [
            {"params": [p for p, x in zip(params, exempt) if not x], "weight_decay": decay},
            {"params": [p for p, x in zip(params, exempt) if x], "weight_decay": 0.0},
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
