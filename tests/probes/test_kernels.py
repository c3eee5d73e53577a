"""Kernel matching and filter redundancy: known permutations, identical peers, orthogonal filters."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models import CollaborativeModel, create_model
from analysis.models.shared_trunk import SharedTrunkModel
from analysis.probes.cache import load_result, save_result
from analysis.probes.kernels import (
    KernelSimilarity,
    conv_layers,
    filter_cosine,
    filter_redundancy,
    kernel_similarity,
    match_filters,
)


def chain(seed: int = 0) -> nn.Sequential:
    """conv(3 -> 8) -> ReLU -> conv(8 -> 6) -> ReLU: a plain chain with no BN or shortcut."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 6, 3), nn.ReLU())


def collab(*nets: nn.Module) -> CollaborativeModel:
    return CollaborativeModel(list(nets), mean=(0.5,) * 3, std=(0.25,) * 3)


def test_matching_recovers_a_known_permutation_of_filters_exactly():
    weight = torch.randn(16, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(1))
    shuffled = weight[perm]  # filter j of shuffled is filter perm[j] of weight
    found, sims = match_filters(shuffled, weight)
    assert torch.equal(found, perm)
    assert torch.allclose(sims, torch.ones(16, dtype=torch.float64), atol=1e-12)
    back, _ = match_filters(weight, shuffled)
    assert torch.equal(perm[back], torch.arange(16))


def test_matching_maximises_total_similarity_not_greedy_choice():
    # a0 is closest to b0, but giving b0 to a1 is the only way to match both well
    a = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0]]).view(2, 3, 1, 1)
    b = torch.tensor([[0.9, 0.43589, 0.0], [0.0, 0.0, 1.0]]).view(2, 3, 1, 1)
    cos = filter_cosine(a, b)
    perm, sims = match_filters(a, b)
    best = max(cos[0, 0] + cos[1, 1], cos[0, 1] + cos[1, 0])
    assert sims.sum().item() == pytest.approx(best.item())


def test_permuted_layer_of_a_peer_still_matches_with_similarity_one():
    first = create_model("test_cnn", num_classes=4, in_chans=3, width=4)
    second = copy.deepcopy(first)
    conv = second.layer2[0]
    with torch.no_grad():
        conv.weight.copy_(conv.weight[torch.tensor([3, 0, 7, 1, 2, 6, 5, 4])])
    result = kernel_similarity(collab(first, second))
    assert result.layers == ["layer1.0.0", "layer2.0"]
    assert result.pairs == [[0, 1]] and result.matched.shape == (1, 2)
    assert torch.allclose(result.matched, torch.ones(1, 2, dtype=torch.float64), atol=1e-12)


def test_identical_peers_match_with_one_and_have_equal_redundancy():
    net = create_model("test_resnet", num_classes=4)
    result = kernel_similarity(collab(net, copy.deepcopy(net), copy.deepcopy(net)))
    assert (
        result.layers == conv_layers(net) and len(result.layers) == 9
    )  # 7 main convs + 2 shortcuts
    assert result.pairs == [[0, 1], [0, 2], [1, 2]]
    assert torch.allclose(result.matched, torch.ones(3, 9, dtype=torch.float64), atol=1e-12)
    assert torch.equal(result.redundancy[0], result.redundancy[2])
    assert ((result.redundancy > 0) & (result.redundancy < 1)).all()


def test_different_peers_match_below_one_and_the_result_caches(tmp_path):
    result = kernel_similarity(collab(chain(0), chain(1)))
    assert (result.matched < 0.99).all() and (result.matched > 0).all()
    save_result(tmp_path / "k.safetensors", result)
    again = load_result(tmp_path / "k.safetensors", KernelSimilarity)
    assert again.pairs == [[0, 1]] and torch.equal(again.matched, result.matched)


def test_redundancy_is_zero_for_orthogonal_filters_and_one_for_parallel_ones():
    q, _ = torch.linalg.qr(
        torch.randn(18, 18, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    )
    orthogonal = q[:8].reshape(8, 2, 3, 3)
    assert filter_redundancy(orthogonal) == pytest.approx(0.0, abs=1e-12)
    parallel = torch.randn(1, 2, 3, 3).repeat(5, 1, 1, 1) * torch.tensor(
        [1.0, -2, 3, 0.5, -1]
    ).view(5, 1, 1, 1)
    assert filter_redundancy(parallel) == pytest.approx(1.0, abs=1e-12)
    two = torch.tensor([[1.0, 0.0], [0.6, 0.8]]).view(2, 2, 1, 1)
    assert filter_redundancy(two) == pytest.approx(0.6)


def test_aligning_inputs_recovers_a_truly_permuted_network():
    net = chain(3)
    permuted = copy.deepcopy(net)
    g = torch.Generator().manual_seed(4)
    p1, p2 = torch.randperm(8, generator=g), torch.randperm(6, generator=g)
    with torch.no_grad():
        permuted[0].weight.copy_(net[0].weight[p1])
        permuted[0].bias.copy_(net[0].bias[p1])
        permuted[2].weight.copy_(net[2].weight[p2][:, p1])
        permuted[2].bias.copy_(net[2].bias[p2])
    x = torch.randn(2, 3, 9, 9)
    assert torch.allclose(net(x).sum(1), permuted(x).sum(1), atol=1e-5)  # same function
    plain = kernel_similarity(collab(net, permuted))
    aligned = kernel_similarity(collab(net, permuted), align_inputs=True)
    assert plain.matched[0, 0].item() == pytest.approx(1.0) and plain.matched[0, 1].item() < 0.9
    assert torch.allclose(aligned.matched, torch.ones(1, 2, dtype=torch.float64), atol=1e-12)


def test_peers_of_different_architectures_are_a_collab_error():
    with pytest.raises(CollabError, match="one architecture"):
        kernel_similarity(
            collab(chain(0), nn.Sequential(nn.Conv2d(3, 8, 5), nn.ReLU(), nn.Conv2d(8, 6, 3)))
        )
    with pytest.raises(CollabError, match="no conv layer 'layer9'"):
        kernel_similarity(collab(chain(0), chain(1)), layers=["layer9"])


def test_shared_trunk_layers_match_exactly_and_branches_do_not():
    torch.manual_seed(2)
    model = SharedTrunkModel.from_registry(
        "test_cnn",
        num_classes=4,
        in_chans=1,
        mean=(0.5,),
        std=(0.25,),
        peers=3,
        split_after="layer1",
    )
    result = kernel_similarity(model)
    assert result.layers == ["layer1.0.0", "layer2.0"] and len(result.pairs) == 3
    assert torch.allclose(result.matched[:, 0], torch.ones(3, dtype=torch.float64), atol=1e-12)
    assert (result.matched[:, 1] < 0.99).all()
