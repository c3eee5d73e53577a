"""Hooks never leak, one shared pass feeds every consumer, results cache in the run folder."""

from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch

import analysis
from analysis.errors import CollabError
from analysis.probes.cache import cached, load_result, save_result
from analysis.probes.hooks import capture, hook_count, peer_layers
from analysis.probes.shared_pass import run_pass


class CountingConsumer:
    def __init__(self, layers):
        self.layers, self.seen, self.shapes = layers, 0, {}

    def update(self, acts, batch):
        self.seen += batch.x.shape[0]
        self.shapes = {k: tuple(v.shape[1:]) for k, v in acts.items() if k in self.layers}

    def result(self):
        return self.seen, self.shapes


def test_peer_layers_and_capture(tiny_run):
    model = analysis.load_run(tiny_run).model
    names = peer_layers(model, 1)
    assert names == ["peers.1.layer1", "peers.1.layer2"]
    before = hook_count(model)
    with capture(model, names) as acts:
        model(torch.rand(2, 1, 32, 32))
    assert acts["peers.1.layer1"].shape[:2] == (2, 16)
    assert hook_count(model) == before
    with pytest.raises(CollabError, match="no layer 'peers.1.layer9'.*did you mean"):
        with capture(model, ["peers.1.layer9"]):
            pass
    assert hook_count(model) == before


def test_run_pass_feeds_all_consumers_and_restores_the_model(tiny_run):
    run = analysis.load_run(tiny_run)
    run.model.train()
    run.model.peers[0].eval()
    modes = [m.training for m in run.model.modules()]
    a, b = CountingConsumer(["peers.0.layer1"]), CountingConsumer(["peers.2.layer2"])
    (seen_a, shapes_a), (seen_b, shapes_b) = run_pass(
        run.model, run.dataset("test"), [a, b], batch_size=64, limit=150
    )
    assert seen_a == seen_b == 150
    assert shapes_a == {"peers.0.layer1": (16, 16, 16)} and list(shapes_b) == ["peers.2.layer2"]
    assert [m.training for m in run.model.modules()] == modes
    assert hook_count(run.model) == 0


class StreamingConsumer:
    """Takes one layer during the forward pass and keeps only its per-batch sums."""

    layers = ()

    def __init__(self, layer):
        self.streams, self.sums, self.pending = [layer], [], None

    def take(self, name, output):
        self.pending = output.sum().item()

    def update(self, acts, batch):
        assert self.streams[0] not in acts  # streamed outputs are not kept for update()
        self.sums.append(self.pending)

    def result(self):
        return self.sums


def test_streamed_layers_reach_take_during_the_pass_and_are_not_kept(tiny_run):
    run = analysis.load_run(tiny_run)
    layer = "peers.1.layer2"
    streaming, counting = StreamingConsumer(layer), CountingConsumer(["peers.0.layer1"])
    sums, (seen, shapes) = run_pass(
        run.model, run.dataset("test"), [streaming, counting], batch_size=50, limit=120
    )
    assert seen == 120 and list(shapes) == ["peers.0.layer1"] and len(sums) == 3
    x = torch.stack([run.dataset("test")[i][0] for i in range(50)])
    expected = []
    with capture(run.model, [], stream={layer: [lambda out: expected.append(out.sum().item())]}):
        run.model.eval()(x)
    assert sums[0] == pytest.approx(expected[0], rel=1e-6)
    assert hook_count(run.model) == 0


@dataclass
class Toy:
    matrix: torch.Tensor
    per_layer: dict
    names: list
    score: float


def test_result_round_trip(tmp_path):
    toy = Toy(torch.eye(3), {"a": torch.ones(2), "b": torch.zeros(1)}, ["x", "y"], 0.5)
    save_result(tmp_path / "r.safetensors", toy)
    back = load_result(tmp_path / "r.safetensors", Toy)
    assert torch.equal(back.matrix, toy.matrix) and back.names == ["x", "y"] and back.score == 0.5
    assert back.per_layer.keys() == {"a", "b"} and torch.equal(back.per_layer["a"], torch.ones(2))


def test_cached_computes_once_per_args_and_checkpoint(tmp_path, tiny_run):
    import shutil

    shutil.copytree(tiny_run, tmp_path / "run")
    run = SimpleNamespace(path=tmp_path / "run", checkpoint="best")
    calls = []

    def compute():
        calls.append(1)
        return Toy(torch.rand(2), {}, [], float(len(calls)))

    first = cached(run, "toy", {"n": 1}, Toy, compute)
    again = cached(run, "toy", {"n": 1}, Toy, compute)
    assert len(calls) == 1 and torch.equal(first.matrix, again.matrix)
    cached(run, "toy", {"n": 2}, Toy, compute)
    assert len(calls) == 2
    cached(SimpleNamespace(path=run.path, checkpoint="last"), "toy", {"n": 1}, Toy, compute)
    assert len(calls) == 3  # another checkpoint, another key
