"""HCGNets (winycg/HCGNet): the authors' counts, their gates, and HCGNet peers in every method."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from analysis.config import ModelConfig
from analysis.errors import CollabError
from analysis.methods import METHODS, create_method
from analysis.models import count_parameters, create_model
from analysis.models.hcgnet_cost import multiply_adds
from analysis.models.hcgnet_parts import SMG, AttentionPool, DropBlock, Transition
from analysis.models.receptive_field import receptive_field


def _meta(name: str, num_classes: int) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, num_classes=num_classes)


# The authors' code (HCGNet_A1(num_classes=...) etc. of models/HCGNet_*.py@229ad0b), built
# and counted with their utils.cal_param_size: the README's 1.1M, 3.1M, 11.4M, 12.9M, 42.2M.
@pytest.mark.parametrize(
    ("name", "num_classes", "count"),
    [
        ("hcgnet_a1", 10, 1_065_301),
        ("hcgnet_a1", 100, 1_102_651),
        ("hcgnet_a2", 10, 3_069_149),
        ("hcgnet_a2", 100, 3_133_679),
        ("hcgnet_a3", 10, 11_239_897),
        ("hcgnet_a3", 100, 11_363_647),
        ("hcgnet_b", 1000, 12_845_501),
        ("hcgnet_c", 1000, 42_153_208),
        ("test_hcgnet", 10, 6_866),
    ],
)
def test_parameter_counts_are_the_authors(name: str, num_classes: int, count: int) -> None:
    assert count_parameters(_meta(name, num_classes)) == count


# Their utils.cal_multi_adds on their networks (10 classes at 32 px, 1000 at 224 px) gives
# 162,259,282 / 503,415,834 / 1,992,937,330 / 2,040,802,808; the paper: 0.16G, 0.50G, 1.99G,
# 2.0G. Ours differ by < 0.3% (real output size of the dilated convs; see hcgnet_cost).
@pytest.mark.parametrize(
    ("name", "num_classes", "size", "theirs", "paper", "digits"),
    [
        ("hcgnet_a1", 10, 32, 162_259_282, 0.16, 2),
        ("hcgnet_a2", 10, 32, 503_415_834, 0.50, 2),
        ("hcgnet_a3", 10, 32, 1_992_937_330, 1.99, 2),
        ("hcgnet_b", 1000, 224, 2_040_802_808, 2.0, 1),
    ],
)
def test_multiply_adds_as_the_paper_counts(name, num_classes, size, theirs, paper, digits) -> None:
    ours = multiply_adds(_meta(name, num_classes), size=(size, size))
    assert round(ours / 1e9, digits) == paper
    assert abs(ours - theirs) / theirs < 0.003


def test_multiply_adds_by_hand() -> None:
    # conv 3->4 3x3 on 4x4 (no padding: 2x2 out) = 3*9*4*4 = 432; BN(4) on 2x2: 2*16 = 32;
    # ReLU: 16; global pool: 16; linear 4->2: 8 + 2 -> 506.
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 2),
    )  # fmt: skip
    assert multiply_adds(net, size=(4, 4)) == 506
    assert net.training  # mode restored


def test_channel_plan_of_a1_and_b() -> None:
    a1 = _meta("hcgnet_a1", 10)
    assert a1.conv1.out_channels == 24 and a1.feature_dim == 414
    assert [len(a1.layer1), len(a1.layer2), len(a1.layer3)] == [8, 8, 8]
    # 24 + 8*12 = 120 -> transition: 1x1 to 120 - (120 - 60) // 2 = 90, 3x3 stride 2 to 60.
    assert a1.transition1.reduce.conv.out_channels == 90
    assert a1.transition1.conv.conv.out_channels == 60 and a1.transition1.conv.conv.stride == (2, 2)
    assert (
        a1.layer2.smg1.reduce.conv.in_channels == 60
        and a1.transition2.conv.conv.out_channels == 126
    )
    smg = a1.layer1.smg2
    assert smg.reduce.conv.in_channels == 36 and smg.reduce.conv.out_channels == 48
    assert smg.conv.conv.groups == 4 and smg.update.dw5.conv.dilation == (2, 2)
    assert smg.forget.bn.num_features == 6 and smg.update.bn.num_features == 12
    assert (
        a1.transition1.forget.bn.num_features == 15 and a1.transition1.update.bn.num_features == 30
    )
    b = _meta("hcgnet_b", 1000)
    assert [m.out_channels for m in b.stem if isinstance(m, nn.Conv2d)] == [32, 32, 64]
    assert b.probe_layers == ["stem", "layer1", "layer2", "layer3", "layer4"]
    # 64 + 3*32 = 160 -> 80; + 6*48 = 368 -> 184; + 12*64 = 952 -> 476; + 8*96 = 1244.
    assert b.feature_dim == 1244 and isinstance(b.dropout, nn.Identity)


def test_smg_keeps_its_input_and_gates_are_global() -> None:
    torch.manual_seed(0)
    smg = SMG(8, 4).eval()
    x = torch.randn(3, 8, 5, 7)  # not square: positions are H x W
    with torch.no_grad():
        out = smg(x)
        h = smg.conv(smg.reduce(x))
        forget, update = smg.forget(h), smg.update(h)
    assert out.shape == (3, 12, 5, 7) and torch.equal(out[:, :8], x)
    assert forget.shape == update.shape == (3, 4, 1, 1)
    assert ((forget > 0) & (forget < 1)).all()
    torch.testing.assert_close(out[:, 8:], h * forget + update)


def test_attention_pool_is_the_authors_weighted_global_pool() -> None:
    x, scores = torch.randn(2, 3, 4, 5), torch.randn(2, 1, 4, 5)
    weights = torch.softmax(scores.flatten(1), 1).reshape(2, 1, 4, 5)
    theirs = nn.functional.adaptive_avg_pool2d(x * weights, 1) * 20  # global_pool(...) * H * W
    torch.testing.assert_close(AttentionPool()(x, scores), theirs)


def test_transition_drop_block() -> None:
    assert isinstance(Transition(16, 8).drop_block, nn.Identity)
    torch.manual_seed(0)
    drop = DropBlock(0.5)
    x = torch.ones(4, 3, 8, 8)
    out = drop(x)
    zero = out == 0
    assert zero.any() and torch.equal(zero[:, :1].expand_as(zero), zero)  # all channels at once
    assert torch.allclose(out[~zero], out[~zero][0]) and out[~zero][0] > 1  # kept, rescaled
    assert torch.equal(drop.eval()(x), x)
    net = create_model("test_hcgnet", num_classes=10, drop_block=0.1)
    assert net.transition1.drop_block.p == 0.1
    with pytest.raises(CollabError, match="drop_block"):
        create_model("test_hcgnet", num_classes=10, drop_block=1.0)
    with pytest.raises(CollabError, match="no option 'drop_block'"):
        create_model("hcgnet_b", num_classes=10, drop_block=0.1)


def test_receptive_field_follows_the_main_path() -> None:
    net = create_model("test_hcgnet", num_classes=10)
    stages = [net._modules[n] for n in net.feature_names[: net.feature_names.index("avgpool")]]
    # conv1 3x3: 3; layer1, two SMGs of 1x1 + 3x3: 7; transition1 (3x3 stride 2): 9; layer2:
    # 9 + 2 * 2 * 2 = 17; transition2: 21; layer3: 21 + 2 * 2 * 4 = 37, stride 4. The gates
    # pool the whole map: they bound no window, as a global squeeze-excitation.
    field = receptive_field(stages)
    assert (field.size, field.stride) == (37, 4)


SHAPE = SimpleNamespace(num_classes=4, in_chans=3, mean=(0.5,) * 3, std=(0.25,) * 3)
PEERS = {"intra_cl": 1, "divide_cotrain": 1, "cl_ilr": 4, "joint_decision": 2}


@pytest.mark.parametrize("method_name", METHODS.list())
def test_every_method_takes_hcgnet_peers(method_name: str) -> None:
    torch.manual_seed(0)
    method = create_method(METHODS.get(method_name).Options())
    cfg = ModelConfig(arch="test_hcgnet", peers=PEERS.get(method_name, 3))
    model = method.build_model(cfg, SHAPE)
    x, y = torch.rand(6, 3, 32, 32), torch.arange(6) % 4
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    views = x.expand(model.num_peers, *x.shape) if method.per_peer_views else x
    loss, _ = method.loss(model(views), y, epoch=0.0, index=torch.arange(6))
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    model.eval()
    with torch.no_grad():
        out = model(x)
        for i in range(model.num_peers):
            torch.testing.assert_close(model.peer(i)(x), out.peer_logits[i])
    if hasattr(model, "peer_probe_layers"):
        modules = dict(model.named_modules())
        assert all(p in modules for p in model.peer_probe_layers(0))


def test_shared_trunk_splits_and_exits_on_hcgnet_stages() -> None:
    one = create_method(METHODS.get("one").Options()).build_model(
        ModelConfig(arch="test_hcgnet", peers=3), SHAPE
    )
    assert list(one.trunk.stage_names) == ["conv1", "layer1", "transition1", "layer2"]
    assert one.peer_probe_layers(2) == ["trunk.conv1", "trunk.layer1", "trunk.layer2", "branches.2.layer3"]  # fmt: skip
    options = METHODS.get("mcl_okd").Options(split_after="transition1")
    mcl = create_method(options).build_model(ModelConfig(arch="test_hcgnet", peers=2), SHAPE)
    assert mcl.branches[0].stage_names[0] == "layer2"
    options = METHODS.get("intra_cl").Options(exits_after=["transition1", "layer2"])
    intra = create_method(options).build_model(ModelConfig(arch="test_hcgnet", peers=1), SHAPE)
    assert intra.heads[0]["transition1"].conv.in_channels == 8


def test_divide_and_co_training_needs_a_width() -> None:
    method = create_method(METHODS.get("divide_cotrain").Options())
    with pytest.raises(CollabError, match="no width, widen or cardinality"):
        method.build_model(ModelConfig(arch="test_hcgnet", peers=2), SHAPE)
