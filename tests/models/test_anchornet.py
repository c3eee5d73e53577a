"""AnchorNet geometry (exact windows, no padding) and the receptive-field arithmetic helper."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models import count_parameters, create_model
from analysis.models.receptive_field import ReceptiveField, output_size, receptive_field


def _eval_double(model: nn.Module) -> nn.Module:
    """Float64 (exact enough to compare at 1e-12), eval mode, BN with non-trivial statistics."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.double().eval()


# (in, hidden, out, stride, SE hidden, residual) of the seven blocks of the authors' network
# (winycg/AnchorNet models/anchornet.py: Block(3, 16, 1, 16, 2) ... Block(3, 96, 1.5, 96, 1)).
AUTHORS_PLAN = [
    (16, 16, 16, 2, 4, False),
    (16, 48, 24, 2, 4, False),
    (24, 96, 24, 1, 6, True),
    (24, 96, 48, 1, 6, False),
    (48, 96, 96, 1, 12, False),
    (96, 144, 96, 1, 24, True),
    (96, 144, 96, 1, 24, True),
]
# Their code builds block 1's 16 -> 16 expansion conv + BN (256 + 32) but never runs it.
AUTHORS_PARAMS, UNUSED_IN_AUTHORS_CODE = 674_984, 16 * 16 + 2 * 16


def _plan(net: nn.Module) -> list[tuple]:
    rows = []
    for i in range(1, 8):
        block = getattr(net, f"layer{i}")
        dw = block.depthwise[0]
        expands = not isinstance(block.expand, nn.Identity)
        in_chans = block.expand[0].in_channels if expands else dw.in_channels
        out_chans = block.project[0].out_channels
        squeezed = block.se.reduce.out_channels
        rows.append((in_chans, dw.in_channels, out_chans, dw.stride[0], squeezed, block.residual))
    return rows


def test_reference_layout_is_the_authors_network() -> None:
    with torch.device("meta"):
        net = create_model("anchornet", num_classes=1000, layout="reference")
        fmap = net.feature_map(torch.empty(2, 3, 224, 224))
    assert fmap.shape == (2, 512, 17, 17)
    assert (net.receptive_field, net.stride, net.offset) == (95, 8, 0)
    assert net.map_size(224) == 17 and net.rf.box(2, 5) == (40, 16, 135, 111)
    assert _plan(net) == AUTHORS_PLAN
    stem = net.stem[0]
    assert (stem.in_channels, stem.out_channels, stem.kernel_size, stem.stride) == (
        3,
        16,
        (3, 3),
        (2, 2),
    )
    assert all(net._modules[f"layer{i}"].se.mode == "global" for i in range(1, 8))
    assert all(net._modules[f"layer{i}"].crop == "top_left" for i in range(1, 8))
    head = net.features_map  # a 1x1 conv with bias, no BN, no activation
    assert isinstance(head, nn.Conv2d) and head.bias is not None and head.kernel_size == (1, 1)
    assert (head.in_channels, head.out_channels, net.fc.in_features) == (96, 512, 512)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all((m.eps, m.momentum) == (1e-5, 0.1) for m in bns)
    # 1000 ImageNet classes: the authors' ~0.675M, 513,000 of them in the classifier.
    assert count_parameters(net) == AUTHORS_PARAMS - UNUSED_IN_AUTHORS_CODE == 674_696
    assert count_parameters(net.fc) == 513_000


def test_reference_skip_is_cropped_top_left_and_fc_starts_small() -> None:
    net = create_model("anchornet", num_classes=10, layout="reference").eval()
    block = net.layer3  # 24 -> 24 at stride 1: residual
    nn.init.zeros_(block.project[1].weight)  # the main path then adds exactly nothing
    x = torch.rand(2, 24, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x[..., :7, :7])
    assert net.fc.weight.std() < 0.002 and not net.fc.bias.any()


def test_exact_layout_known_answers() -> None:
    with torch.device("meta"):
        net = create_model("anchornet", num_classes=1000, layout="exact")
    assert (net.receptive_field, net.stride, net.offset, net.map_size(224)) == (95, 8, 0, 17)
    assert net.layer7.se.mode == "pointwise" and net.layer7.crop == "centre"
    assert count_parameters(net) == 674_504


@pytest.mark.parametrize("layout", ["reference", "exact"])
def test_no_layer_pads(layout: str) -> None:
    net = create_model("anchornet", num_classes=10, layout=layout)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) > 20 and all(m.padding == (0, 0) for m in convs)
    assert [p for p in net.probe_layers if p not in dict(net.named_modules())] == []
    assert net.probe_layers[-1] == "features_map"


def _window_check(net: nn.Module, size: int, i: int, j: int) -> None:
    """Map position (i, j) changes with its window's edge rows/cols, and with nothing outside."""
    x = torch.rand(1, 3, size, size, dtype=torch.float64)
    (r0, r1), (c0, c1) = net.rf.window(i), net.rf.window(j)
    assert r0 >= 0 and r1 <= size and c0 >= 0 and c1 <= size

    def value(img: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return net.feature_map(img)[0, :, i, j]

    base = value(x)
    outside = torch.rand_like(x)
    outside[..., r0:r1, c0:c1] = x[..., r0:r1, c0:c1]
    # Float64 convolutions never mix outside pixels in: the value is bit-for-bit the same.
    assert torch.equal(value(outside), base)
    for rows, cols, inside in [
        (slice(r0, r0 + 1), slice(c0, c1), True),
        (slice(r1 - 1, r1), slice(c0, c1), True),
        (slice(r0, r1), slice(c0, c0 + 1), True),
        (slice(r0, r1), slice(c1 - 1, c1), True),
        (slice(max(r0 - 1, 0), r0), slice(None), False),
        (slice(r1, r1 + 1), slice(None), False),
        (slice(None), slice(max(c0 - 1, 0), c0), False),
        (slice(None), slice(c1, c1 + 1), False),
    ]:
        changed = x.clone()
        changed[..., rows, cols] += 5.0
        diff = (value(changed) - base).abs().max().item()
        # The window's edge reaches the position along a single chain of corner taps, so its
        # effect is tiny (~1e-13 for the reference) but never exactly zero; outside it is zero.
        assert (diff > 0) if inside else (diff == 0), (rows, cols, diff)


@pytest.mark.parametrize(
    "options", [{"layout": "exact"}, {"layout": "reference", "se": "pointwise"}]
)
def test_position_depends_exactly_on_its_box(options: dict) -> None:
    """Exact windows: our layout, and the authors' geometry (top-left skip) with pointwise SE."""
    net = _eval_double(create_model("anchornet", num_classes=10, **options))
    _window_check(net, 224, 5, 9)  # rows 40..134, cols 72..166


def test_reference_global_se_sees_outside_the_box() -> None:
    net = _eval_double(create_model("anchornet", num_classes=10, layout="reference"))
    x = torch.rand(1, 3, 224, 224, dtype=torch.float64)
    y = x.clone()
    y[..., 150:, 150:] = 0.0  # outside box (0, 0) = rows / cols 0..94
    with torch.no_grad():
        diff = (net.feature_map(x) - net.feature_map(y))[0, :, 0, 0].abs().max()
    assert diff > 1e-9


def test_small_layout_on_shapes_sized_images() -> None:
    net = _eval_double(create_model("anchornet", num_classes=6))
    assert (net.receptive_field, net.stride, net.offset) == (31, 2, 0)
    assert [net.map_size(s) for s in (32, 48, 64)] == [1, 9, 17]
    light = create_model("anchornet", num_classes=6, width=8, expansion=3)  # the shapes preset
    assert count_parameters(light) == 38_790 and light.rf == net.rf
    assert net.feature_map(torch.rand(1, 3, 64, 64, dtype=torch.float64)).shape[-2:] == (17, 17)
    _window_check(net, 64, 11, 3)


def test_global_se_breaks_the_exact_window() -> None:
    """The documented caveat: standard SE pools the whole image into its channel gates."""
    net = _eval_double(create_model("anchornet", num_classes=6, se="global"))
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    y = x.clone()
    y[..., :, 40:] = torch.rand(1, 3, 64, 24, dtype=torch.float64)  # outside box (0, 0)
    with torch.no_grad():
        diff = (net.feature_map(x) - net.feature_map(y))[0, :, 0, 0].abs().max()
    assert diff > 1e-9


def test_logits_are_the_mean_of_a_linear_class_map() -> None:
    """What makes the CAM exact: logit_c = mean over positions of W_c . F(i, j) + b_c."""
    net = _eval_double(create_model("anchornet", num_classes=6))
    x = torch.rand(2, 3, 40, 40, dtype=torch.float64)
    with torch.no_grad():
        fmap = net.feature_map(x)  # (2, 512, 5, 5)
        cam = torch.einsum("bchw,kc->bkhw", fmap, net.fc.weight)
        torch.testing.assert_close(net(x), cam.mean((2, 3)) + net.fc.bias)


def test_too_small_input_is_a_collab_error() -> None:
    net = create_model("anchornet", num_classes=10, layout="reference")
    with pytest.raises(CollabError, match="receptive field 95.*64x64.*at least 95 pixels"):
        net(torch.rand(1, 3, 64, 64))
    with pytest.raises(CollabError, match="layout"):
        create_model("anchornet", num_classes=10, layout="huge")


def test_receptive_field_of_padded_networks_by_hand() -> None:
    # resnet8: 3x3 convs, p = 1: stem 3; layer1 +2 +2 = 7; layer2 (stride 2 in conv1) +2, then
    # +4 = 13; layer3 +4, then +8 = 25; offsets -1 per conv at each stage's jump: -12.
    resnet = create_model("resnet8", num_classes=10)
    stages = [resnet.conv1, resnet.bn1, resnet.relu, resnet.layer1, resnet.layer2, resnet.layer3]
    assert receptive_field(stages) == ReceptiveField(size=25, stride=4, offset=-12)
    # vgg8: conv 3, pool 4 (j 2), conv 8, pool 10 (j 4), conv 18, pool 22 (j 8), 2 convs 54.
    vgg = create_model("vgg8", num_classes=10)
    rf = receptive_field([vgg.layer1, vgg.layer2, vgg.layer3, vgg.layer4])
    assert rf == ReceptiveField(size=54, stride=8, offset=-23)
    assert rf.box(0, 0, image_size=32) == (0, 0, 31, 31)
    with pytest.raises(ValueError, match="AdaptiveAvgPool2d"):
        receptive_field([vgg.layer4, vgg.avgpool])


def test_receptive_field_matches_gradient_support_of_a_linear_stack() -> None:
    torch.manual_seed(0)
    stack = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        nn.AvgPool2d(2),
        nn.Conv2d(2, 2, 3, stride=2, padding=2, dilation=2),
        nn.Conv2d(2, 1, 5, padding=1),
    ).double()
    rf = receptive_field(stack)
    assert rf == ReceptiveField(size=28, stride=4, offset=-9)
    x = torch.rand(1, 1, 40, 40, dtype=torch.float64, requires_grad=True)
    out = stack(x)
    assert out.shape[-1] == output_size(stack, 40) == 8
    out[0, 0, 3, 5].backward()
    rows, cols = torch.nonzero(x.grad[0, 0].abs() > 1e-14, as_tuple=True)
    x0, y0, x1, y1 = rf.box(3, 5, image_size=40)
    assert (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1) == (
        x0,
        y0,
        x1,
        y1,
    )


@pytest.mark.parametrize("size", [9, 10, 11, 12, 13])
def test_output_size_follows_ceil_mode(size: int) -> None:
    stack = nn.Sequential(nn.MaxPool2d(3, 2, padding=1, ceil_mode=True), nn.Conv2d(1, 1, 2))
    assert output_size(stack, size) == stack(torch.rand(1, 1, size, size)).shape[-1]
