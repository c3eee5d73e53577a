import math

import pytest
import torch

from analysis.config import OptimConfig, ScheduleConfig
from analysis.training.optim import build_optimizer, lr_at


def test_cosine_endpoints_and_warmup():
    cfg = ScheduleConfig(name="cosine", warmup_epochs=2)
    assert lr_at(cfg, base_lr=1.0, epoch=1.0, epochs=10) == pytest.approx(0.5, abs=1e-3)
    assert lr_at(cfg, base_lr=1.0, epoch=2.0, epochs=10) == pytest.approx(1.0)
    assert lr_at(cfg, base_lr=1.0, epoch=6.0, epochs=10) == pytest.approx(0.5)
    assert lr_at(cfg, base_lr=1.0, epoch=10.0, epochs=10) == pytest.approx(0.0, abs=1e-12)


def test_step_schedule():
    cfg = ScheduleConfig(name="step", milestones=[3, 6], gamma=0.1)
    lrs = [lr_at(cfg, base_lr=1.0, epoch=e, epochs=9) for e in (0, 2.9, 3, 6.5)]
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.01])


def test_no_decay_for_norm_and_bias():
    """Divide-and-Co-training's rule: no decay for parameters named *norm* or *bias*."""
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    model.add_module("groupnorm", torch.nn.GroupNorm(1, 2))
    opt = build_optimizer(OptimConfig(no_decay_norm_bias=True, weight_decay=0.1), model)
    decayed, plain = opt.param_groups
    # The BN module is named "1": its weight is decayed, as in the authors' networks (bn1, ...).
    assert [p.shape for p in decayed["params"]] == [torch.Size([2, 1, 3, 3]), torch.Size([2])]
    assert decayed["params"][1] is model[1].weight
    exempt = [model[0].bias, model[1].bias, model.groupnorm.weight, model.groupnorm.bias]
    assert plain["params"] == exempt and plain["weight_decay"] == 0.0
    assert not math.isnan(decayed["weight_decay"])
    # The former rule (every 0-/1-d tensor) stays available as no_decay_rule="ndim".
    ndim = build_optimizer(
        OptimConfig(no_decay_norm_bias=True, weight_decay=0.1), model, no_decay_rule="ndim"
    )
    assert [p.shape for p in ndim.param_groups[0]["params"]] == [torch.Size([2, 1, 3, 3])]
    assert len(ndim.param_groups[1]["params"]) == 5
