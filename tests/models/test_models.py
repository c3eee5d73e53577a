"""The model registry: a sweep over every registered network plus known parameter counts."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models import (
    MODELS,
    CollaborativeModel,
    count_parameters,
    create_model,
    model_options,
)

# Networks above this size only get a shape check on the meta device (no real compute); the
# greyscale variant of networks above the second limit too, to keep the sweep fast.
REAL_FORWARD_LIMIT = 20_000_000
REAL_GREY_LIMIT = 1_000_000


def _meta_count(name: str, **kwargs) -> int:
    with torch.device("meta"):
        return count_parameters(create_model(name, **kwargs))


def _check_contract(model: nn.Module, x: torch.Tensor) -> None:
    """Shapes, named stages, and fc(forward_features(x)) == model(x) in eval mode."""
    modules = dict(model.named_modules())
    missing = [p for p in model.probe_layers if p not in modules]
    assert model.probe_layers and not missing, f"unresolved probe layers {missing}"
    assert isinstance(model.fc, nn.Linear) and model.fc.in_features == model.feature_dim
    # forward is exactly the named children in order: the shared-trunk split relies on it.
    children = [name for name, _ in model.named_children()]
    assert children == [*model.feature_names, "dropout", "fc"]
    assert "layer1" in model.feature_names
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
    assert feats.shape == (x.shape[0], model.feature_dim)
    assert logits.shape == (x.shape[0], 10)
    if x.device.type != "meta":
        torch.testing.assert_close(model.fc(feats), logits)


def _capture_batchnorm_outputs(model: nn.Module) -> dict[str, torch.Tensor]:
    """Keep (without copying) the output of every BatchNorm module on the next forward."""
    captured: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            module.register_forward_hook(
                lambda mod, inp, out, name=name: captured.__setitem__(name, out.detach())
            )
    return captured


@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("name", MODELS.list())
def test_every_registered_model(name: str, in_chans: int) -> None:
    count = _meta_count(name, num_classes=10, in_chans=in_chans)
    if count > (REAL_FORWARD_LIMIT if in_chans == 3 else REAL_GREY_LIMIT):
        with torch.device("meta"):
            model = create_model(name, num_classes=10, in_chans=in_chans)
            _check_contract(model, torch.empty(2, in_chans, 32, 32))
        return
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=in_chans)
    # RGB runs non-square and above 32 (global pooling makes any size >= 32 work); every
    # greyscale run and every meta-device check uses 32 x 32.
    size = (40, 36) if in_chans == 3 else (32, 32)
    x = torch.rand(2, in_chans, *size)
    model.train()
    captured = _capture_batchnorm_outputs(model)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([1, 7]))
    loss.backward()
    # Train-mode BN outputs are zero-mean; all >= 0 means a later in-place op rewrote them
    # (a zero-initialised BN, as in the dc_* networks, outputs exactly 0 and is not a rewrite).
    rewritten = [n for n, out in captured.items() if out.min() >= 0 and out.max() > 0]
    assert captured and not rewritten, f"activations modified in place after hooks: {rewritten}"
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters outside the forward pass: {no_grad[:3]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    _check_contract(model, x)


def test_tv_resnet_imagenet_stem_and_torchvision_keys() -> None:
    import torchvision

    model = create_model("resnet18", num_classes=10, in_chans=1, cifar_stem=False)
    assert model.conv1.kernel_size == (7, 7) and isinstance(model.maxpool, nn.MaxPool2d)
    assert model(torch.rand(2, 1, 64, 64)).shape == (2, 10)
    reference = torchvision.models.resnet18(weights=None, num_classes=10)
    assert model.state_dict().keys() == reference.state_dict().keys()
    # cifar_stem only changes conv1 (7x7 -> 3x3): 64 * 3 * (49 - 9) fewer weights.
    cifar = create_model("resnet18", num_classes=10)
    assert count_parameters(reference) - count_parameters(cifar) == 64 * 3 * 40


def test_resnet20_and_resnet56_counts() -> None:
    # ResNet-20, CIFAR-10, by hand: stem 3*16*9 + 32 (BN) = 464; stage 1: 6 convs 16*16*9
    # = 13,824 + 6 BN 192; stage 2: 32*16*9 + 5*32*32*9 = 50,688 + 384; stage 3:
    # 64*32*9 + 5*64*64*9 = 202,752 + 768; fc 64*10 + 10 = 650 -> 269,722 (option A);
    # option-B shortcuts add 16*32 + 64 + 32*64 + 128 = 2,752 -> 272,474.
    assert _meta_count("resnet20", num_classes=10) == 272_474
    # Each +6 in depth adds one block per stage: 2 convs + 2 BN of 16, 32 and 64 channels =
    # 4,672 + 18,560 + 73,984 = 97,216; ResNet-56 = 272,474 + 6 * 97,216 = 855,770 (~0.85M).
    assert _meta_count("resnet56", num_classes=10) == 272_474 + 6 * 97_216 == 855_770


@pytest.mark.parametrize(
    ("width", "splits", "total"), [(16, 1, 1_170_868), (12, 2, 1_333_472), (8, 4, 1_214_256)]
)
def test_divide_and_co_training_resnet110_totals(width: int, splits: int, total: int) -> None:
    """METHODS.md check: bottleneck ResNet-110, CIFAR-100, S nets of width w (totals over S)."""
    per_net = _meta_count("resnet110_bottleneck", num_classes=100, width=width)
    assert splits * per_net == total


@pytest.mark.parametrize(
    ("name", "exact", "paper"), [("wrn28_10", 36_536_884, 36.5e6), ("wrn16_8", 11_007_540, 11.0e6)]
)
def test_wide_resnet_counts(name: str, exact: int, paper: float) -> None:
    count = _meta_count(name, num_classes=100)
    assert count == exact
    assert math.isclose(count, paper, rel_tol=0.005)
    assert _meta_count("wrn", num_classes=100, depth=28, widen=10) == 36_536_884


def test_bottleneck_resnet110_has_twelve_blocks_per_stage() -> None:
    with torch.device("meta"):
        model = create_model("resnet110_bottleneck", num_classes=100)
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [12, 12, 12]
    assert model.feature_dim == 4 * 64
    # The D&C counts need a projection shortcut already in stage 1's first block (16 -> 64).
    assert isinstance(model.layer1[0].shortcut, nn.Sequential)
    assert isinstance(model.layer1[1].shortcut, nn.Identity)


def test_count_parameters_skips_buffers_frozen_and_duplicates() -> None:
    bn = nn.BatchNorm2d(8)
    assert count_parameters(bn) == 16  # affine yes; running mean/var/count are buffers
    shared = nn.Linear(4, 4)
    assert count_parameters(nn.Sequential(shared, shared)) == 20
    bn.weight.requires_grad_(False)
    assert count_parameters(bn) == 8


def test_duplicate_registration_raises() -> None:
    before = MODELS.list()
    with pytest.raises(ValueError, match="resnet20"):
        MODELS.register("resnet20")(lambda **kw: None)
    assert MODELS.list() == before


def test_create_model_rejects_bad_options() -> None:
    with pytest.raises(CollabError, match=r"no option 'widht'.*width, block, dropout"):
        create_model("resnet20", num_classes=10, widht=8)
    with pytest.raises(CollabError, match="'width' must be of type int"):
        create_model("resnet20", num_classes=10, width=8.5)
    with pytest.raises(CollabError, match="'cifar_stem' must be of type bool"):
        create_model("resnet18", num_classes=10, cifar_stem=1)
    with pytest.raises(CollabError, match="unknown model 'resnet21'"):
        create_model("resnet21", num_classes=10)
    with pytest.raises(CollabError, match="depth 21"):
        create_model("cifar_resnet", num_classes=10, depth=21)
    with pytest.raises(CollabError, match="block='basic' or 'bottleneck'"):
        create_model("resnet20", num_classes=10, block="wide")
    with pytest.raises(CollabError, match="num_classes"):
        create_model("test_cnn", num_classes=0)
    assert model_options("wrn16_8") == {"dropout": 0.0, "fc_dropout": 0.0, "widths": None}


def test_dropout_options_are_used() -> None:
    model = create_model("resnet20", num_classes=10, dropout=0.3)
    assert isinstance(model.dropout, nn.Dropout) and model.dropout.p == 0.3
    wide = create_model("wrn", num_classes=10, dropout=0.2)
    assert wide.layer2[0].dropout.p == 0.2 and isinstance(wide.dropout, nn.Identity)


def _collab(num_peers: int = 3, ensemble: str = "logit_mean") -> CollaborativeModel:
    torch.manual_seed(0)
    peers = [create_model("test_cnn", num_classes=10) for _ in range(num_peers)]
    return CollaborativeModel(peers, mean=[0.5] * 3, std=[0.25] * 3, ensemble=ensemble).eval()


def test_collaborative_model_shared_and_per_peer_views() -> None:
    model = _collab()
    x = torch.rand(4, 3, 32, 32)
    views = torch.rand(3, 4, 3, 32, 32)
    with torch.no_grad():
        shared, per_view = model(x), model(views)
        assert shared.peer_logits.shape == (3, 4, 10) and shared.ensemble_logits.shape == (4, 10)
        for i in range(3):
            torch.testing.assert_close(model.peer(i)(x), shared.peer_logits[i])
            torch.testing.assert_close(model.peer(i)(views[i]), per_view.peer_logits[i])
        torch.testing.assert_close(shared.ensemble_logits, shared.peer_logits.mean(0))
    assert not torch.allclose(shared.peer_logits[0], shared.peer_logits[1])
    with pytest.raises(ValueError, match="2 views for 3 peers"):
        model(views[:2])


def test_identical_peers_and_prob_mean_ensemble() -> None:
    peer = create_model("test_resnet", num_classes=10)
    twins = CollaborativeModel([peer, copy.deepcopy(peer)], mean=[0.0] * 3, std=[1.0] * 3).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = twins(x)
    torch.testing.assert_close(out.peer_logits[0], out.peer_logits[1])
    model = _collab(ensemble="prob_mean")
    with torch.no_grad():
        out = model(x)
    mean_probs = out.peer_logits.softmax(-1).mean(0)
    torch.testing.assert_close(out.ensemble_logits.softmax(-1), mean_probs)
    torch.testing.assert_close(out.ensemble_logits.exp().sum(-1), torch.ones(2))
