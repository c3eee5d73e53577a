"""Cheap 3x3 ops (shift, depthwise, group) and the cheap CIFAR ResNets: known answers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models import count_parameters, create_model
from analysis.models.cheap import (
    SHIFT_DIRECTIONS,
    CheapBlock,
    Shift,
    cheap_op,
    modulo_shift_move,
    shift_group_sizes,
)


def _count(name: str, **kwargs) -> int:
    """Parameters of a CIFAR-10 network (small enough to build for real, faster than on meta)."""
    return count_parameters(create_model(name, num_classes=10, **kwargs))


def test_shift_resnet56_and_depthwise_counts() -> None:
    """METHODS.md check: shift-ResNet-56 ~0.102M, depthwise ~0.120M (CIFAR-10)."""
    shift = _count("cheap_resnet56", op="shift")
    assert shift == 102_106
    # Depthwise adds 9 weights per channel per cheap op (2 ops per block, 9 blocks per stage):
    # stage 1: 18 ops on 16 ch; stage 2: one on 16 + 17 on 32; stage 3: one on 32 + 17 on 64.
    dw_extra = 9 * (18 * 16 + 16 + 17 * 32 + 32 + 17 * 64)
    assert dw_extra == 17_712
    assert _count("cheap_resnet56", op="depthwise") == 102_106 + dw_extra == 119_818
    # A group conv with g groups adds 9 * C^2 / g per op.
    g = 4
    group_extra = 9 * (18 * 16**2 + 16**2 + 17 * 32**2 + 32**2 + 17 * 64**2) // g
    assert _count("cheap_resnet56", op="group", groups=g) == 102_106 + group_extra == 311_194
    assert _count("cheap_resnet", depth=56) == 102_106


def test_shift_group_sizes() -> None:
    assert shift_group_sizes(16) == [2, 2, 2, 2, 2, 2, 2, 1, 1]
    assert shift_group_sizes(18) == [2] * 9
    assert shift_group_sizes(4) == [1, 1, 1, 1, 0, 0, 0, 0, 0]  # fewer than 9 channels still move
    assert SHIFT_DIRECTIONS[-1] == (0, 0) and len(set(SHIFT_DIRECTIONS)) == 9


def test_modulo_shift_is_the_reference_kernel() -> None:
    """Channel c < 9*(C // 9) reads (y + (c // 3) % 3 - 1, x + c % 3 - 1): its content moves
    by (1 - (c // 3) % 3, 1 - c % 3); c % 9 == 4 stays."""
    assert [modulo_shift_move(c) for c in range(9)] == [
        (1, 1), (1, 0), (1, -1), (0, 1), (0, 0), (0, -1), (-1, 1), (-1, 0), (-1, -1)
    ]  # fmt: skip
    x = torch.zeros(1, 18, 5, 5)
    x[:, :, 2, 2] = 1.0
    out = Shift(18)(x)
    for c in range(18):
        dy, dx = modulo_shift_move(c % 9)
        assert out[0, c, 2 + dy, 2 + dx] == 1.0 and out[0, c].sum() == 1.0


@pytest.mark.parametrize("channels", [4, 8, 13, 16, 35])
def test_modulo_shift_remainder_channels_pass_through(channels: int) -> None:
    """The C mod 9 last channels (all of them below 9) are returned unchanged."""
    torch.manual_seed(0)
    x = torch.randn(2, channels, 4, 6)
    out = Shift(channels)(x)
    moved = 9 * (channels // 9)
    assert torch.equal(out[:, moved:], x[:, moved:])
    assert channels - moved == channels % 9
    if moved:  # the moved part loses a border row or column (zero fill), except c % 9 == 4
        assert not torch.equal(out[:, :moved], x[:, :moved])
        assert torch.equal(out[:, 4:moved:9], x[:, 4:moved:9])


def test_shift_moves_each_group_one_pixel_with_zero_fill() -> None:
    x = torch.zeros(1, 9, 5, 5)
    x[:, :, 2, 2] = 1.0  # a centred dot in every channel
    out = Shift(9, layout="grouped")(x)
    for c, (dy, dx) in enumerate(SHIFT_DIRECTIONS):
        assert out[0, c, 2 + dy, 2 + dx] == 1.0 and out[0, c].sum() == 1.0
    corner = torch.zeros(1, 9, 3, 3)
    corner[:, :, 0, 0] = 1.0
    moved = Shift(9, layout="grouped")(corner)
    # The dot leaves the image (zero fill, no wrap-around) unless moved down and/or right.
    kept = [c for c in range(9) if moved[0, c].sum() == 1.0]
    assert kept == [c for c, (dy, dx) in enumerate(SHIFT_DIRECTIONS) if dy >= 0 and dx >= 0]
    assert moved.sum() == len(kept)
    assert not list(Shift(9).parameters())
    small = torch.randn(1, 4, 3, 3)  # the grouped layout moves even 4 channels
    assert not torch.equal(Shift(4, layout="grouped")(small), small)


@pytest.mark.parametrize("layout", ["modulo", "grouped"])
def test_shift_backward_is_the_adjoint(layout: str) -> None:
    """<S x, g> = <x, S^T g>: the gradient is the opposite shift, with zero fill."""
    x = torch.randn(2, 13, 4, 6, dtype=torch.double, requires_grad=True)
    g = torch.randn(2, 13, 4, 6, dtype=torch.double)
    out = Shift(13, layout=layout)(x)
    (out * g).sum().backward()
    assert torch.allclose((out * g).sum(), (x * x.grad).sum())
    # Each input pixel receives the upstream gradient of the pixel it moved to (or 0 if it left).
    ones = torch.ones(1, 9, 3, 3, requires_grad=True)
    Shift(9, layout=layout)(ones).sum().backward()
    kept = ones.grad.sum(dim=(0, 2, 3))  # pixels that stay inside: 6 (one axis), 4 (diagonal), 9
    if layout == "grouped":
        assert kept.tolist() == [6, 6, 6, 6, 4, 4, 4, 4, 9]
    else:
        assert kept.tolist() == [4, 6, 4, 6, 9, 6, 4, 6, 4]


def test_cheap_ops_and_errors() -> None:
    dw = cheap_op("depthwise", 8)
    assert isinstance(dw, nn.Conv2d) and dw.groups == 8 and dw.bias is None
    grp = cheap_op("group", 8, groups=2)
    assert grp.groups == 2 and grp.weight.shape == (8, 4, 3, 3)
    with pytest.raises(CollabError, match="cannot split 6 channels"):
        cheap_op("group", 6, groups=4)
    with pytest.raises(CollabError, match="unknown cheap op"):
        create_model("cheap_resnet8", num_classes=10, op="ghost")
    with pytest.raises(CollabError, match="unknown shift layout"):
        create_model("cheap_resnet8", num_classes=10, shift_layout="ring")


def test_cheap_block_layout() -> None:
    """cheap op -> 1x1 -> BN -> ReLU -> cheap op -> 1x1 (stride) -> BN -> ReLU, then + shortcut."""
    net = create_model("cheap_resnet56", num_classes=10, width=4, op="shift")
    assert [len(getattr(net, f"layer{i}")) for i in (1, 2, 3)] == [9, 9, 9]
    block = net.layer2[0]
    assert isinstance(block, CheapBlock)
    assert block.conv1.kernel_size == (1, 1) and block.conv1.stride == (1, 1)
    assert block.conv2.kernel_size == (1, 1) and block.conv2.stride == (2, 2)
    assert isinstance(block.shortcut, nn.Sequential) and isinstance(
        net.layer2[1].shortcut, nn.Identity
    )
    # No ReLU after the sum: the projection's BN makes some outputs negative in train mode.
    torch.manual_seed(0)
    out = block.train()(torch.rand(4, 4, 8, 8))
    assert out.shape == (4, 8, 4, 4) and out.min() < 0


@pytest.mark.parametrize("op", ["shift", "depthwise", "group"])
def test_cheap_resnet_trains_a_step(op: str) -> None:
    torch.manual_seed(0)
    net = create_model("cheap_resnet8", num_classes=3, in_chans=1, width=4, op=op, groups=2)
    x = torch.rand(4, 1, 16, 16)
    loss = nn.functional.cross_entropy(net(x), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert net.forward_features(x).shape == (4, 16)
