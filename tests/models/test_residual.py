"""A residual block's in-place sum: same bits as the out-of-place one, and never seen by hooks."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from analysis.layout import to_channels_last
from analysis.models import create_model
from analysis.models.residual import hooked, residual_relu


def test_the_sum_is_written_into_the_batch_norms_output_when_nothing_watches() -> None:
    bn, relu = nn.BatchNorm2d(4), nn.ReLU()
    out, shortcut = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    expected = torch.relu(out + shortcut)
    result = residual_relu(out, shortcut, last=bn, relu=relu)
    assert result.data_ptr() == out.data_ptr()
    assert torch.equal(result, expected)


def _hook(where: str, kind: str, bn: nn.Module, relu: nn.Module):
    """Register a no-op hook of ``kind`` on the BN, the ReLU or every module; its handle."""
    if where == "global":
        return getattr(nn.modules.module, f"register_module_{kind}")(lambda *a: None)
    return getattr({"last": bn, "relu": relu}[where], f"register_{kind}")(lambda *a: None)


@pytest.mark.parametrize("where", ["last", "relu", "global"])
@pytest.mark.parametrize(
    "kind", ["forward_hook", "forward_pre_hook", "full_backward_hook", "full_backward_pre_hook"]
)
def test_any_hook_keeps_the_batch_norms_output_intact(where: str, kind: str) -> None:
    bn, relu = nn.BatchNorm2d(4), nn.ReLU()
    out, shortcut = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    kept = out.clone()
    handle = _hook(where, kind, bn, relu)
    try:
        assert hooked(bn) or hooked(relu)
        result = residual_relu(out, shortcut, last=bn, relu=relu)
    finally:
        handle.remove()
    assert not hooked(bn) and not hooked(relu)
    assert torch.equal(out, kept) and torch.equal(result, torch.relu(kept + shortcut))


@pytest.mark.parametrize(
    "shortcut",
    [
        torch.randn(2, 4, 3, 3, dtype=torch.float64),  # the sum would promote
        to_channels_last(torch.randn(2, 4, 3, 3)),  # the sum's layout would differ
        torch.randn(1, 4, 1, 1),  # broadcast
    ],
    ids=["dtype", "layout", "shape"],
)
def test_a_shortcut_unlike_the_output_gets_the_out_of_place_sum(shortcut: torch.Tensor) -> None:
    out = torch.randn(2, 4, 3, 3)
    kept = out.clone()
    result = residual_relu(out, shortcut, last=nn.BatchNorm2d(4), relu=nn.ReLU())
    assert torch.equal(out, kept)
    expected = torch.relu(kept + shortcut)
    assert result.dtype == expected.dtype and result.stride() == expected.stride()
    assert torch.equal(result, expected)


def test_another_activation_is_called_as_a_module() -> None:
    out, shortcut = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    expected = nn.functional.gelu(out + shortcut)
    assert torch.equal(residual_relu(out, shortcut, last=nn.Identity(), relu=nn.GELU()), expected)


def _watch_every_batch_norm(net: nn.Module) -> None:
    """A hook on every batch norm (which turns every block's in-place sum off)."""
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.register_forward_hook(lambda *args: None)


NETS = {
    "resnet20": ("resnet20", {}),
    "bottleneck": ("cifar_resnet", {"depth": 20, "block": "bottleneck", "width": 8}),
    "dc_bottleneck": ("dc_resnet", {"depth": 20, "block": "bottleneck", "width": 8}),
    "dc_wrn": ("dc_wrn", {"depth": 10, "widen": 1}),
    "resnext": ("resnext29", {"cardinality": 2, "base_width": 4}),
    "dcl": ("dcl_resnet8", {"width": 8}),
}


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("nhwc", [False, True], ids=["nchw", "nhwc"])
def test_training_steps_are_bit_identical_with_and_without_the_in_place_sum(
    net: str, nhwc: bool
) -> None:
    torch.manual_seed(0)
    plain = create_model(NETS[net][0], num_classes=10, in_chans=3, **NETS[net][1])
    if nhwc:
        plain = plain.to(memory_format=torch.channels_last)
    watched = copy.deepcopy(plain)
    _watch_every_batch_norm(watched)
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    x = to_channels_last(x) if nhwc else x
    for net in (plain, watched):
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        for _ in range(2):
            opt.zero_grad()
            nn.functional.cross_entropy(net.train()(x), y).backward()
            opt.step()
    for a, b in zip(plain.state_dict().values(), watched.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), watched.eval()(x))
