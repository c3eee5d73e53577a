"""Model surgery: a pruned network computes exactly what the masked original computes."""

import pytest
import torch
from torch import nn

from analysis.data import build_dataset
from analysis.data.subset import restrict_classes
from analysis.errors import CollabError
from analysis.models import count_parameters, create_model
from analysis.models.channel_units import channel_units
from analysis.models.surgery import prune, scaled_channels

NETS = [
    ("test_resnet", {}),
    ("test_cnn", {"width": 6}),
    ("resnet8", {"width": 8}),
    ("cifar_resnet", {"depth": 11, "block": "bottleneck", "width": 4}),
    ("dc_resnet", {"depth": 8, "width": 4}),
]


def _trained_looking(name: str, options: dict, seed: int = 0) -> nn.Module:
    """A network with non-trivial BN statistics and affine terms, in eval mode."""
    torch.manual_seed(seed)
    net = create_model(name, num_classes=10, **options)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    nn.init.normal_(net.fc.weight)  # dc_resnet starts with a near-zero head
    return net.eval()


def _random_masks(net: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    masks = {}
    for unit in channel_units(net):
        mask = torch.rand(unit.width, generator=gen) < 0.5
        mask[torch.randint(unit.width, (1,), generator=gen)] = True
        masks[unit.name] = mask
    return masks


@pytest.mark.parametrize(("name", "options"), NETS)
def test_pruned_logits_equal_the_masked_original(name, options):
    net = _trained_looking(name, options)
    units = channel_units(net)
    masks = _random_masks(net, seed=1)
    classes = [7, 0, 3]
    small = prune(net, masks, classes=classes).eval()
    x = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        with scaled_channels(net, units, {k: m.float() for k, m in masks.items()}):
            masked = net(x)[:, classes]
        plain = net(x)[:, classes]
        got = small(x)
    assert got.shape == (5, 3)
    assert (got - masked).abs().max() <= 1e-5
    assert (got - plain).abs().max() > 1e-3  # the masks did change the function
    assert count_parameters(small) < count_parameters(net)
    assert not any(m._forward_hooks for m in net.modules())  # the masks left no hooks


@pytest.mark.parametrize(("name", "options"), NETS)
def test_all_ones_masks_give_the_identical_network(name, options):
    net = _trained_looking(name, options)
    keep = {u.name: torch.ones(u.width, dtype=torch.bool) for u in channel_units(net)}
    same = prune(net, keep).eval()
    assert same.state_dict().keys() == net.state_dict().keys()
    for key, value in net.state_dict().items():
        assert torch.equal(same.state_dict()[key], value), key
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(same(x), net(x))


def test_parameter_count_shrinks_as_predicted_for_a_resnet8():
    net = _trained_looking("test_resnet", {})  # widths 4, 8, 16; one basic block per stage
    keep = {
        "layer1.0.bn1": [0, 2],
        "layer1": [1, 2, 3],
        "layer2.0.bn1": [0, 1, 5, 7, 4],
        "layer2": [6],
        "layer3.0.bn1": list(range(9)),
        "layer3": [2, 4, 8, 15],
    }
    i1, s1, i2, s2, i3, s3 = (len(v) for v in keep.values())
    k = 2  # classes
    stem = 3 * 9 * s1 + 2 * s1
    block1 = s1 * 9 * i1 + 2 * i1 + i1 * 9 * s1 + 2 * s1
    block2 = s1 * 9 * i2 + 2 * i2 + i2 * 9 * s2 + 2 * s2 + s1 * s2 + 2 * s2
    block3 = s2 * 9 * i3 + 2 * i3 + i3 * 9 * s3 + 2 * s3 + s2 * s3 + 2 * s3
    fc = s3 * k + k
    small = prune(net, keep, classes=[4, 9])
    assert count_parameters(small) == stem + block1 + block2 + block3 + fc
    assert small.feature_dim == s3 and small.fc.out_features == k


def test_parameter_count_of_a_plain_chain():
    net = _trained_looking("test_cnn", {"width": 6})  # conv 3 -> 6, conv 6 -> 12, fc 12 -> 10
    units = [u.name for u in channel_units(net)]
    small = prune(net, {units[0]: [0, 5], units[1]: [1, 2, 3]})
    assert count_parameters(small) == (3 * 9 * 2 + 4) + (2 * 9 * 3 + 6) + (3 * 10 + 10)


def test_residual_units_share_one_stream_per_stage():
    net = create_model("resnet20", num_classes=10, width=4)
    units = {u.name: u for u in channel_units(net)}
    assert [u.kind for u in units.values()].count("stream") == 3
    layer1 = units["layer1"]
    assert layer1.points == ["bn1", "layer1.0", "layer1.1", "layer1.2"]  # stem + 3 blocks
    assert ("conv1", "bn1") in layer1.writers and "layer2.0.shortcut.0" in layer1.readers
    assert units["layer3"].readers[-1] == "fc"
    assert units["layer2.1.bn1"].readers == ["layer2.1.conv2"]


def test_dissected_model_rebuilds_the_shape_of_a_pruned_network():
    net = _trained_looking("test_resnet", {})
    masks = _random_masks(net, seed=3)
    small = prune(net, masks, classes=[1, 2, 5])
    widths = {k: int(m.sum()) for k, m in masks.items()}
    rebuilt = create_model(
        "dissected", num_classes=3, base="test_resnet", base_classes=10, widths=widths
    )
    rebuilt.load_state_dict(small.state_dict())  # strict: every shape matches
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), small.eval()(x))


def test_surgery_refuses_what_it_cannot_do():
    net = _trained_looking("test_resnet", {})
    with pytest.raises(CollabError, match="keep no channel"):
        prune(net, {"layer1": torch.zeros(4, dtype=torch.bool)})
    with pytest.raises(CollabError, match="no channel unit 'layer9'"):
        prune(net, {"layer9": [0]})
    with pytest.raises(CollabError, match="channels 0..3"):
        prune(net, {"layer1": [0, 4]})
    with pytest.raises(CollabError, match="classes must be among 0..9"):
        prune(net, {}, classes=[10])
    with pytest.raises(CollabError, match="channel surgery understands"):
        channel_units(create_model("test_hcgnet", num_classes=10))


def test_restricted_dataset_relabels_the_chosen_classes():
    bundle = build_dataset("test_digits")
    sub = restrict_classes(bundle, [7, 2])
    labels = torch.as_tensor(bundle.test.labels)
    assert len(sub.test) == int(((labels == 7) | (labels == 2)).sum())
    assert sub.num_classes == 2 and sub.class_names == ["7", "2"]
    for i in range(len(sub.test)):
        original = int(sub.test.indices[i])
        assert (7, 2)[sub.test[i][1]] == int(labels[original])
    with pytest.raises(CollabError, match="distinct class indices"):
        restrict_classes(bundle, [2, 2])
