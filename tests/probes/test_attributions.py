"""Attributions on hand-built peers with known answers, and deletion/insertion faithfulness."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from analysis.errors import CollabError
from analysis.models import CollaborativeModel, create_model
from analysis.probes import (
    ATTRIBUTIONS,
    attribute,
    attribute_all_peers,
    deletion_by_peer,
    deletion_curve,
    insertion_curve,
)
from analysis.probes.faithfulness import make_baseline
from analysis.probes.hooks import hook_count

C, H, W, CLASSES = 2, 6, 6, 3


class LinearNet(nn.Module):
    """logits = W x + b over the flattened image: every gradient method has a closed form."""

    probe_layers = ["fc"]

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(C * H * W, CLASSES)

    def forward(self, x):
        return self.fc(x.flatten(1))

    def weight(self, target: int) -> torch.Tensor:
        return self.fc.weight[target].detach().view(C, H, W)


class PoolNet(nn.Module):
    """Class 0 logit = mean of a 2x2 average pool (layer ``pool``); class 1 logit = minus it."""

    probe_layers = ["pool"]

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(2)

    def forward(self, x):
        s = self.pool(x).mean(dim=(1, 2, 3))
        return torch.stack([s, -s], dim=1)


class PatchNet(nn.Module):
    """Only the 2x2 patch at rows/cols 2..3 matters: class 0 logit = 10 * patch mean - 5."""

    def forward(self, x):
        s = x[:, :, 2:4, 2:4].mean(dim=(1, 2, 3))
        return torch.stack([10 * s - 5, torch.zeros_like(s)], dim=1)


def identity_norm(peers, channels=C):
    return CollaborativeModel(peers, mean=(0.0,) * channels, std=(1.0,) * channels)


@pytest.fixture
def linear():
    return identity_norm([LinearNet(0), LinearNet(1)])


def test_registry_names_the_methods():
    assert {"saliency", "integrated_gradients", "occlusion", "grad_cam"} <= set(ATTRIBUTIONS.list())
    with pytest.raises(CollabError, match="unknown attribution method 'lime'.*saliency"):
        attribute(identity_norm([LinearNet(0)]), torch.rand(1, C, H, W), method="lime", peer=0)


@pytest.mark.parametrize("method", ["integrated_gradients", "input_x_gradient", "occlusion"])
def test_linear_peer_gets_input_times_weight(linear, method):
    x = torch.rand(3, C, H, W)
    options = {"window": 1, "stride": 1} if method == "occlusion" else {}
    got = attribute(linear, x, method=method, peer=1, target=2, **options)
    expected = (x * linear.peers[1].weight(2)).sum(dim=1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        attribute(linear, x, method=method, peer=1, target=2, absolute=True, **options),
        expected.abs(),
        atol=1e-5,
        rtol=1e-4,
    )


@pytest.mark.parametrize("method", ["saliency", "smoothgrad"])
def test_linear_peer_saliency_is_the_weight_magnitude(linear, method):
    x = torch.rand(2, C, H, W)
    predicted = linear.peer(0)(x).argmax(-1)
    got = attribute(linear, x, method=method, peer=0, batch_size=1)  # target: the prediction
    for b in range(2):
        expected = linear.peers[0].weight(int(predicted[b])).abs().sum(dim=0)
        torch.testing.assert_close(got[b], expected, atol=1e-6, rtol=1e-5)


def test_grad_cam_of_a_pooled_mean_is_the_upsampled_layer():
    model = identity_norm([PoolNet()], channels=1)
    x = torch.rand(2, 1, 8, 8)
    cam = attribute(model, x, method="grad_cam", peer=0, target=0)
    pooled = F.avg_pool2d(x, 2)  # (2, 1, 4, 4); d logit / d A = 1/16 everywhere
    expected = F.interpolate(pooled / 16, size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(cam, expected[:, 0])
    # For class 1 the weights are -1/16: the ReLU leaves nothing of a positive layer.
    assert attribute(model, x, method="grad_cam", peer=0, target=1).abs().max().item() == 0.0
    with pytest.raises(CollabError, match="no layer 'peers.0.nope'"):
        attribute(model, x, method="grad_cam", peer=0, layer="peers.0.nope")


def test_all_peers_on_a_real_model_leave_it_untouched():
    torch.manual_seed(0)
    peers = [create_model("test_cnn", num_classes=4, in_chans=1, width=4) for _ in range(3)]
    model = CollaborativeModel(peers, mean=(0.5,), std=(0.25,))
    model.train()
    x = torch.rand(2, 1, 16, 16)
    original = x.clone()
    for method in ATTRIBUTIONS.list():
        maps = attribute_all_peers(model, x, method=method, target="ensemble")
        assert maps.shape == (3, 2, 16, 16) and torch.isfinite(maps).all(), method
    assert torch.equal(x, original) and x.grad is None
    assert all(m.training for m in model.modules())
    assert hook_count(model) == 0
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(CollabError, match="peer 3 does not exist"):
        attribute(model, x, method="saliency", peer=3)


def test_ensemble_target_makes_every_peer_explain_the_same_class(linear):
    x = torch.rand(4, C, H, W)
    chosen = linear(x).ensemble_logits.argmax(-1)
    maps = attribute_all_peers(linear, x, method="saliency", target="ensemble")
    for k in range(2):
        for b in range(4):
            expected = linear.peers[k].weight(int(chosen[b])).abs().sum(dim=0)
            torch.testing.assert_close(maps[k, b], expected)


# --- faithfulness ---------------------------------------------------------------------------

SIG5 = torch.sigmoid(torch.tensor(5.0)).item()


def patch_map(batch: int) -> torch.Tensor:
    sal = torch.zeros(batch, 8, 8)
    sal[:, 2:4, 2:4] = 1.0
    return sal


def test_deletion_of_the_responsible_patch_has_the_worked_out_curve():
    x = torch.ones(2, 1, 8, 8)
    curves, auc = deletion_curve(PatchNet(), x, patch_map(2), target=0, steps=16)
    # Step 1 removes exactly the 4 patch pixels (64 / 16): p falls from s(5) to s(-5) = 1 - s(5).
    expected = torch.tensor([SIG5] + [1 - SIG5] * 16)
    torch.testing.assert_close(curves, expected.expand(2, 17))
    area = ((SIG5 + 1 - SIG5) / 2 + 15 * (1 - SIG5)) / 16
    torch.testing.assert_close(auc, torch.tensor([area, area]))


def test_faithful_maps_beat_random_ones():
    torch.manual_seed(0)
    x = torch.rand(6, 1, 8, 8) * 0.5 + 0.5
    model = PatchNet()
    start = model(x).softmax(-1)[:, 0]
    curves, good = deletion_curve(model, x, patch_map(6), target=0, steps=8)
    _, rand = deletion_curve(model, x, torch.rand(6, 8, 8), target=0, steps=8)
    torch.testing.assert_close(curves[:, 0], start)  # starts at the unperturbed probability
    assert torch.all(good < rand)
    _, good_in = insertion_curve(model, x, patch_map(6), target=0, steps=8, baseline="zeros")
    ins, rand_in = insertion_curve(
        model, x, torch.rand(6, 8, 8), target=0, steps=8, baseline="zeros"
    )
    assert torch.all(good_in > rand_in)
    torch.testing.assert_close(ins[:, -1], start)  # ends at the unperturbed probability
    # A saliency map from captum ranks the patch first too, and a low-res CAM is upsampled.
    wrapped = identity_norm([PatchNet()], channels=1)
    sal = attribute(wrapped, x, method="saliency", peer=0, target=0)
    torch.testing.assert_close(deletion_curve(model, x, sal, target=0, steps=8)[1], good)
    coarse = torch.zeros(6, 4, 4)
    coarse[:, 1, 1] = 1.0  # the 2x2 block at rows/cols 2..3
    assert torch.all(deletion_curve(model, x, coarse, target=0, steps=8)[1] < rand)


def test_baselines_and_per_peer_scoring():
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(make_baseline(x, "zeros"), torch.zeros_like(x))
    torch.testing.assert_close(make_baseline(x, "mean")[:, :, 5, 1], x.mean(dim=(2, 3)))
    blurred = make_baseline(torch.ones(1, 1, 9, 9), "blur", blur_sigma=1.0)
    torch.testing.assert_close(blurred, torch.ones(1, 1, 9, 9))  # blur keeps a flat image
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline(x, "noise")
    model = identity_norm([PatchNet(), PatchNet()], channels=1)
    images = torch.ones(3, 1, 8, 8)
    maps = torch.stack([patch_map(3), torch.rand(3, 8, 8)])
    curves, auc = deletion_by_peer(model, images, maps, steps=16)  # target: own prediction
    assert curves.shape == (2, 3, 17) and auc.shape == (2, 3)
    assert torch.all(auc[0] < auc[1])
    assert curves[0, :, 0].tolist() == pytest.approx([SIG5] * 3)
