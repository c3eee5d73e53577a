"""The multi-exit container: exit order and names, one pass for all exits, plain peer modules."""

from __future__ import annotations

import pytest
import torch

from analysis.errors import CollabError
from analysis.models import CollabOutput, create_model
from analysis.models.exits import ExitHead, MultiExitModel, stage_channels

STATS = {"mean": (0.5,), "std": (0.25,)}


def _nets(n=2, arch="test_resnet"):
    torch.manual_seed(0)
    return [create_model(arch, num_classes=5, in_chans=1) for _ in range(n)]


def _model(n=2, exits_after=("layer1", "layer2"), **kw):
    return MultiExitModel(
        _nets(n), exits_after=list(exits_after), num_classes=5, in_chans=1, **STATS, **kw
    )


def test_peer_order_names_and_shapes():
    model = _model()
    assert model.peer_names == [
        "net0/layer1",
        "net0/layer2",
        "net0/fc",
        "net1/layer1",
        "net1/layer2",
        "net1/fc",
    ]
    assert model.num_peers == 6
    assert model.peer_prefix(4) == "nets.1."
    out = model(torch.rand(3, 1, 32, 32))
    assert isinstance(out, CollabOutput)
    assert out.peer_logits.shape == (6, 3, 5) and out.ensemble_logits.shape == (3, 5)
    # test_resnet has 4, 8, 16 channels in layer1..layer3; the final exit's features are 16-d.
    widths = [out.extras[f"pooled/{name}"].shape for name in model.peer_names]
    assert widths == [(3, 4), (3, 8), (3, 16)] * 2


def test_heads_are_conv_bn_relu_pool_linear_on_twice_the_channels():
    head = _model(n=1).heads[0]["layer2"]
    assert isinstance(head, ExitHead)
    assert (
        head.conv.in_channels == 8 and head.conv.out_channels == 16 and head.conv.stride == (2, 2)
    )
    assert head.fc.in_features == 16 and head.fc.out_features == 5
    assert dict(_model(n=1).named_modules()).keys() >= {"nets.0.layer2", "heads.0.layer1.conv"}


def test_peer_modules_reproduce_the_forward_exits():
    model = _model().eval()
    x = torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        out = model(x)
        for i in range(model.num_peers):
            torch.testing.assert_close(model.peer(i)(x), out.peer_logits[i])


def test_final_exit_is_the_plain_network():
    model = _model(n=1).eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        expected = model.nets[0]((x - 0.5) / 0.25)
        torch.testing.assert_close(model(x).peer_logits[2], expected)


def test_one_forward_pass_per_stage_computes_every_exit():
    model = _model()
    calls = {"n": 0}
    for net in model.nets:
        net.layer1.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    model(torch.rand(2, 1, 32, 32))
    assert calls["n"] == 2  # once per network, although each has 3 exits


def test_ensemble_rules():
    x = torch.rand(3, 1, 32, 32)
    logits = _model(ensemble="final").eval()(x)
    finals = logits.peer_logits[[2, 5]].mean(dim=0)
    torch.testing.assert_close(logits.ensemble_logits, finals)
    mean = _model(ensemble="logit_mean").eval()(x)
    torch.testing.assert_close(mean.ensemble_logits, mean.peer_logits.mean(dim=0))
    with pytest.raises(CollabError, match="ensemble rule"):
        _model(ensemble="vote")


def test_no_early_exits_leaves_one_peer_per_network():
    model = _model(exits_after=())
    assert model.peer_names == ["net0/fc", "net1/fc"]
    assert model(torch.rand(2, 1, 32, 32)).peer_logits.shape == (2, 2, 5)


@pytest.mark.parametrize(
    ("exits", "message"),
    [
        (["layer9"], "no feature-map stage 'layer9'"),
        (["avgpool"], "no feature-map stage"),
        (["layer2", "layer1"], "forward order"),
        (["layer1", "layer1"], "distinct"),
    ],
)
def test_bad_exit_stages_are_one_sentence_errors(exits, message):
    with pytest.raises(CollabError, match=message):
        _model(exits_after=exits)


def test_stage_channel_dry_run_leaves_the_network_untouched():
    net = _nets(1)[0].train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert stage_channels(net, in_chans=1) == {
        "conv1": 4,
        "bn1": 4,
        "relu": 4,
        "layer1": 4,
        "layer2": 8,
        "layer3": 16,
    }
    assert net.training
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_rebuilt_model_loads_the_weights_strictly():
    trained, fresh = _model(), _model()
    for p in trained.parameters():
        p.data.add_(1.0)
    fresh.load_state_dict(trained.state_dict(), strict=True)
    x = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(fresh.eval()(x).peer_logits, trained.eval()(x).peer_logits)


def test_builds_on_the_meta_device():
    with torch.device("meta"):
        model = _model()
    assert model.heads[1]["layer1"].conv.weight.is_meta


def test_rejects_view_stacks():
    with pytest.raises(ValueError, match="takes"):
        _model()(torch.rand(2, 2, 1, 32, 32))
