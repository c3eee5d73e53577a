"""Linear CKA: known answers first, then the streaming probe on real models."""

from __future__ import annotations

import copy
import itertools
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import TensorDataset

import analysis
from analysis.errors import CollabError
from analysis.models import CollaborativeModel, create_model
from analysis.models.shared_trunk import SharedTrunkModel
from analysis.probes.cache import load_result, save_result
from analysis.probes.cka import CKAConsumer, CKAResult, cka_layers, cka_probe
from analysis.probes.hooks import capture, hook_count
from analysis.probes.hsic import (
    MinibatchCKA,
    centred_gram,
    centred_grams,
    linear_cka,
    minibatch_cka,
    unbiased_hsic,
)


def correlated(n: int, *, seed: int = 0, noise: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Two feature sets (n, 30) and (n, 20) driven by one shared 5-d latent."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 5, generator=g)
    x = z @ torch.randn(5, 30, generator=g) + noise * torch.randn(n, 30, generator=g)
    y = torch.tanh(z @ torch.randn(5, 20, generator=g)) + noise * torch.randn(n, 20, generator=g)
    return x, y


def test_unbiased_hsic_equals_the_u_statistic_by_brute_force():
    g = torch.Generator().manual_seed(1)
    x, y = (
        torch.randn(6, 3, generator=g, dtype=torch.float64),
        torch.randn(6, 2, generator=g, dtype=torch.float64),
    )
    k, l = x @ x.T, y @ y.T  # noqa: E741
    total = [
        (k[i, j] + k[q, r] - k[i, q] - k[j, r]) * (l[i, j] + l[q, r] - l[i, q] - l[j, r])
        for i, j, q, r in itertools.permutations(range(6), 4)
    ]
    expected = torch.stack(total).mean() / 4
    assert unbiased_hsic(k, l).item() == pytest.approx(expected.item(), rel=1e-10)
    shifted = x + 7.0  # the unbiased HSIC ignores a shift of the features
    assert unbiased_hsic(shifted @ shifted.T, l).item() == pytest.approx(expected.item(), rel=1e-8)


def test_cka_of_features_with_themselves_is_one():
    x, _ = correlated(300)
    assert linear_cka(x, x).item() == pytest.approx(1.0, abs=1e-12)
    m = minibatch_cka([x, x.clone()], batch_size=50)
    assert torch.allclose(m, torch.ones(2, 2, dtype=torch.float64), atol=1e-6)


def test_cka_is_invariant_to_orthogonal_maps_and_isotropic_scaling():
    x, y = correlated(400, seed=2)
    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=torch.Generator().manual_seed(3)))
    moved = 3.7 * x @ q + 2.0
    base = linear_cka(x, y).item()
    assert 0.2 < base < 0.99
    assert linear_cka(moved, y).item() == pytest.approx(base, abs=1e-6)  # float32 inputs
    mb = minibatch_cka([x, y, moved], batch_size=100)
    assert mb[1, 2].item() == pytest.approx(mb[0, 1].item(), abs=1e-5)
    assert mb[0, 2].item() == pytest.approx(1.0, abs=1e-5)


def test_unbiased_minibatch_cka_of_independent_features_is_near_zero():
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(2000, 50, generator=g), torch.randn(2000, 50, generator=g)
    assert abs(minibatch_cka([x, y], batch_size=100)[0, 1].item()) < 0.05
    # the biased CKA of each batch of 100 would sit far from 0 on the same data
    biased = torch.stack(
        [linear_cka(x[i : i + 100], y[i : i + 100]) for i in range(0, 2000, 100)]
    ).mean()
    assert biased.item() > 0.3


def test_minibatch_estimate_agrees_with_the_full_batch_cka_on_large_n():
    x, y = correlated(4000, seed=5)
    full = linear_cka(x, y).item()
    mb = minibatch_cka([x, y], batch_size=200)[0, 1].item()
    assert abs(mb - full) < 0.02


def test_float32_minibatch_cka_is_within_1e_6_of_float64_on_offset_relu_features():
    g = torch.Generator().manual_seed(6)
    base = torch.randn(400, 2048, generator=g)
    feats = [
        torch.relu(base) + 10.0,  # a large common offset: uncentred float32 Grams cancel badly
        torch.relu(base[:, :1024] * 2 + torch.randn(400, 1024, generator=g)) + 3.0,
        torch.relu(torch.randn(400, 512, generator=g)),
    ]
    m32 = minibatch_cka(feats, batch_size=100)
    m64 = minibatch_cka([f.double() for f in feats], batch_size=100)
    assert centred_gram(feats[0]).dtype == torch.float32
    assert (m32 - m64).abs().max().item() < 1e-6
    assert m32[0, 1].item() > 0.3


def test_gram_workers_agree_with_a_plain_torch_computation():
    g = torch.Generator().manual_seed(8)
    acts = [
        torch.rand(20, 3, 4, 4, generator=g) + 2,
        torch.randn(20, 7, generator=g).to(torch.bfloat16),
    ]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        parallel = centred_grams(acts)
        torch.set_num_threads(1)
        serial = centred_grams(acts)
    finally:
        torch.set_num_threads(threads)
    assert (
        torch.equal(parallel, serial)
        and parallel.shape == (2, 20, 20)
        and parallel.dtype == torch.float32
    )
    for gram, act in zip(parallel, acts):
        x = act.reshape(20, -1).double()
        x = x - x.mean(dim=0)
        assert torch.allclose(gram.double(), x @ x.T, atol=1e-4)
    pooled = centred_gram(acts[0], pool=True)
    x = acts[0].double().mean(dim=(2, 3))
    x = x - x.mean(dim=0)
    assert torch.allclose(pooled.double(), x @ x.T, atol=1e-5)


def test_consumer_stays_float64_accurate_when_the_feature_mean_drifts_between_batches():
    g = torch.Generator().manual_seed(9)
    base = torch.randn(600, 1024, generator=g)
    drift = torch.arange(600).div(100, rounding_mode="floor").float().view(-1, 1)  # batch k: +4k
    feats = {
        "a": torch.relu(base) + 10.0 + 4.0 * drift,
        "b": torch.relu(base[:, :512] + 0.5 * base[:, 512:]) + 3.0,
    }
    consumer = CKAConsumer(["a", "b"], [0, 1])
    for start in range(0, 600, 100):
        for name, values in feats.items():  # as the pass streams them
            consumer.take(name, values[start : start + 100])
        consumer.update({}, SimpleNamespace(x=torch.empty(100)))
    result = consumer.result()
    expected = minibatch_cka([v.double() for v in feats.values()], batch_size=100)
    assert (result.matrix - expected).abs().max().item() < 1e-6
    assert 0.3 < result.matrix[0, 1].item() < 1


def test_accumulator_skips_batches_too_small_for_the_unbiased_estimator():
    acc = MinibatchCKA(2)
    x = torch.randn(3, 4)
    acc.add([x, x])
    assert acc.samples == 0 and acc.skipped == 3
    assert torch.isnan(acc.matrix()).all()


def two_peers(*, identical: bool) -> CollaborativeModel:
    torch.manual_seed(0)
    first = create_model("test_cnn", num_classes=4, in_chans=1, width=4)
    second = (
        copy.deepcopy(first)
        if identical
        else create_model("test_cnn", num_classes=4, in_chans=1, width=4)
    )
    return CollaborativeModel([first, second], mean=(0.5,), std=(0.25,))


def images(n: int) -> TensorDataset:
    g = torch.Generator().manual_seed(7)
    return TensorDataset(torch.rand(n, 1, 16, 16, generator=g), torch.zeros(n, dtype=torch.long))


def test_identical_peers_give_a_cross_block_equal_to_the_self_block_and_leave_no_hooks(caplog):
    model = two_peers(identical=True).train()
    before = hook_count(model)
    result = cka_probe(model, images(130), batch_size=32)  # the last batch of 2 is too small
    assert result.layers == ["peers.0.layer1", "peers.0.layer2", "peers.1.layer1", "peers.1.layer2"]
    assert result.peer_of_layer == [0, 0, 1, 1]
    assert result.num_samples == 128 and result.batch_size == 32
    assert "left out 2 samples" in caplog.text
    assert torch.allclose(result.block(0, 1), result.block(0, 0), atol=1e-6)
    assert torch.allclose(
        result.block(0, 0).diagonal(), torch.ones(2, dtype=torch.float64), atol=1e-9
    )
    assert torch.allclose(result.peer_matrix(1), torch.ones(2, 2, dtype=torch.float64), atol=1e-6)
    assert hook_count(model) == before and model.training


def test_streaming_probe_equals_minibatch_cka_on_the_captured_features():
    model = two_peers(identical=False).eval()
    data = images(96)
    paths, owners = cka_layers(model, ["layer1", "layer2"])
    assert owners == [0, 0, 1, 1]
    with torch.no_grad(), capture(model, paths) as acts:
        chunks = []
        for start in range(0, 96, 24):
            model(data.tensors[0][start : start + 24])
            chunks.append({k: v.clone() for k, v in acts.items()})
    full = [torch.cat([c[p] for c in chunks]) for p in paths]
    for pool in (False, True):
        result = cka_probe(model, data, layers=["layer1", "layer2"], batch_size=24, pool=pool)
        expected = minibatch_cka(full, batch_size=24, pool=pool)
        assert torch.allclose(result.matrix, expected, atol=1e-9)
    assert result.estimator.endswith("+pool")
    assert abs(result.block(0, 1)[1, 1].item()) < 0.999  # different peers are not identical


def test_shared_layers_are_captured_once_and_repeat_in_the_matrix():
    model = two_peers(identical=False)
    result = cka_probe(
        model,
        images(40),
        layers=[["peers.0.layer2"], ["peers.0.layer2", "peers.1.layer2"]],
        batch_size=20,
    )
    assert result.peer_of_layer == [0, 1, 1]
    assert result.matrix[0, 1].item() == pytest.approx(1.0, abs=1e-9)
    assert result.matrix[0, 2].item() == pytest.approx(result.matrix[1, 2].item(), abs=1e-12)


def test_probe_on_a_trained_run_round_trips_through_the_cache(tiny_run, tmp_path):
    run = analysis.load_run(tiny_run)
    result = cka_probe(run.model, run.dataset("test"), batch_size=50, limit=150)
    assert result.matrix.shape == (6, 6) and result.peer_matrix(0).shape == (3, 3)
    save_result(tmp_path / "cka.safetensors", result)
    again = load_result(tmp_path / "cka.safetensors", CKAResult)
    assert again.layers == result.layers and torch.equal(again.matrix, result.matrix)


def test_bad_arguments_are_collab_errors():
    model = two_peers(identical=False)
    with pytest.raises(CollabError, match="no layer 'peers.0.layer9'"):
        cka_probe(model, images(8), layers=["layer9"])
    with pytest.raises(CollabError, match="batch_size"):
        cka_probe(model, images(8), batch_size=2)
    with pytest.raises(CollabError, match="no layer depth 5"):
        cka_probe(model, images(8), batch_size=4).peer_matrix(5)
    assert hook_count(model) == 0


def test_shared_trunk_peers_agree_exactly_on_the_trunk_layer():
    torch.manual_seed(1)
    model = SharedTrunkModel.from_registry(
        "test_cnn",
        num_classes=4,
        in_chans=1,
        mean=(0.5,),
        std=(0.25,),
        peers=2,
        split_after="layer1",
    )
    result = cka_probe(model, images(40), batch_size=20)
    assert result.layers == [
        "trunk.layer1",
        "branches.0.layer2",
        "trunk.layer1",
        "branches.1.layer2",
    ]
    assert torch.allclose(result.peer_matrix(0), torch.ones(2, 2, dtype=torch.float64), atol=1e-9)
    assert result.peer_matrix(1)[0, 1].item() < 0.99  # independently initialised branches
