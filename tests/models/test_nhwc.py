"""Every registered network runs in NHWC memory order (the CPU default for training and probe
passes since release 0.3), and its float32 results there are as close to float64 as NCHW's."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from analysis.layout import to_channels_last
from analysis.models import MODELS, create_model
from tests.models.test_models import REAL_FORWARD_LIMIT, _meta_count


def error(value: torch.Tensor, exact: torch.Tensor) -> float:
    """Largest error relative to the largest exact magnitude (benchmarks/layout_accuracy.py)."""
    return float((value.double() - exact).abs().max() / exact.abs().max())


#: Networks small enough for a real forward pass in test_models (the rest: meta device only).
REAL = [
    n for n in MODELS.list() if _meta_count(n, num_classes=10, in_chans=3) <= REAL_FORWARD_LIMIT
]


@pytest.mark.parametrize("name", REAL)
def test_every_registered_model_trains_and_evaluates_in_nhwc(name: str) -> None:
    torch.manual_seed(0)
    nchw = create_model(name, num_classes=10, in_chans=3)
    nhwc = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    exact = copy.deepcopy(nchw).double()
    x, y = torch.rand(4, 3, 40, 36), torch.tensor([1, 7, 0, 3])
    nn.functional.cross_entropy(nhwc.train()(to_channels_last(x)), y).backward()
    convs = [p for p in nhwc.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in nhwc.parameters())
    # The forward pass is continuous, so its float32 rounding can be compared: NHWC's may not
    # be far worse than NCHW's. (Gradients are not compared element by element: a rounding
    # difference can flip a max-pool's argmax or a ReLU and move a whole gradient entry.)
    nhwc.load_state_dict(nchw.state_dict())
    with torch.no_grad():
        exact_logits = exact.eval()(x.double())
        errors = [
            error(nchw.eval()(x), exact_logits),
            error(nhwc.eval()(to_channels_last(x)), exact_logits),
        ]
    assert errors[1] <= 10 * errors[0] + 1e-5, errors
