"""The registration helper for model variants and the one base of the peer containers."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from analysis.models import (
    CollaborativeModel,
    PeerContainer,
    PeerModule,
    SeparatePeers,
    create_model,
    model_options,
)
from analysis.models.exits import ExitPeer, MultiExitModel
from analysis.models.factory import register_variant
from analysis.models.online_teacher import OnlineTeacherModel
from analysis.models.shared_trunk import SharedTrunkModel
from analysis.registry import Registry

STATS = {"mean": [0.5], "std": [0.25]}


def _builder(*, num_classes: int, in_chans: int = 3, depth: int = 20, width: int = 16) -> nn.Module:
    """A stand-in builder: a module and the options it was called with."""
    return nn.Linear(in_chans, num_classes), {"depth": depth, "width": width}


def test_variant_fixes_options_and_keeps_the_rest_inspectable() -> None:
    scratch = Registry("scratch")
    variant = register_variant(
        "deep", _builder, doc="Deep.", fixed={"depth": 56}, defaults={"width": 8}, registry=scratch
    )
    assert scratch.get("deep") is variant and variant.__name__ == "deep"
    assert variant.__doc__ == "Deep."
    params = inspect.signature(variant).parameters
    assert list(params) == ["num_classes", "in_chans", "width"]
    assert params["width"].default == 8 and params["width"].annotation is int
    assert inspect.signature(variant).return_annotation is nn.Module
    assert variant(num_classes=3)[1] == {"depth": 56, "width": 8}
    assert variant(num_classes=3, width=4)[1] == {"depth": 56, "width": 4}
    with pytest.raises(TypeError):
        variant(num_classes=3, depth=8)  # a fixed option is not an option any more
    with pytest.raises(ValueError, match="no options"):
        register_variant("bad", _builder, doc="", fixed={"nope": 1}, registry=scratch)


def test_registered_variants_keep_their_options() -> None:
    assert model_options("resnet164") == {
        "width": 16,
        "block": "bottleneck",
        "dropout": 0.0,
        "widths": None,
    }
    assert model_options("cheap_resnet8") == {
        "width": 16,
        "op": "shift",
        "groups": 4,
        "dropout": 0.0,
        "shift_layout": "modulo",  # the reference kernel; "grouped" is the former layout
    }
    assert model_options("wrn") == {
        "depth": 16,
        "widen": 4,
        "dropout": 0.0,
        "fc_dropout": 0.0,
        "widths": None,
    }
    assert model_options("dcl_vgg8")["width"] == 64 and model_options("dcl_resnet8")["width"] == 16
    assert model_options("resnext29") == {
        "cardinality": 8,
        "base_width": 64,
        "dropout": 0.0,
    }


def _containers() -> list[PeerContainer]:
    torch.manual_seed(0)
    nets = [create_model("test_resnet", num_classes=4, in_chans=1) for _ in range(2)]
    return [
        CollaborativeModel(nets, **STATS),
        OnlineTeacherModel(nets, num_classes=4, **STATS),
        SharedTrunkModel(nets, splits=[("layer1", 2)], **STATS),
        MultiExitModel(nets[:1], exits_after=["layer1"], num_classes=4, in_chans=1, **STATS),
    ]


def test_every_container_shares_the_base() -> None:
    x = torch.rand(3, 1, 16, 16)
    for model in _containers():
        model.eval()
        assert isinstance(model, PeerContainer) and model.num_peers == 2
        assert next(iter(model.state_dict())) == "normalize.mean"  # normalization comes first
        with torch.no_grad():
            out = model(x)
            for i in range(model.num_peers):
                peer = model.peer(i)
                assert isinstance(peer, PeerModule) and peer.normalize is model.normalize
                torch.testing.assert_close(peer(x), out.peer_logits[i])
        if not isinstance(model, CollaborativeModel):  # which also takes one view per peer
            with pytest.raises(ValueError, match=f"{type(model).__name__} takes one batch"):
                model(x[None])


def test_base_checks_names_and_ensemble() -> None:
    net = create_model("test_cnn", num_classes=4, in_chans=1)
    model = SeparatePeers([net], **STATS)
    assert model.peer_names == ["peer0"] and model.peer_prefix(0) == "peers.0."
    with pytest.raises(ValueError, match="2 peer names for 1 peers"):
        CollaborativeModel([net], peer_names=["a", "b"], **STATS)
    with pytest.raises(ValueError, match="ensemble rule"):
        CollaborativeModel([net], ensemble="vote", **STATS)
    exits = _containers()[-1]
    assert isinstance(exits.peer(0), ExitPeer) and exits.peer_names == ["net0/layer1", "net0/fc"]
