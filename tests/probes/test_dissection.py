"""Class-wise dissection: planted class channels are found, and peers compare permutation-aware."""

import dataclasses
import shutil

import pytest
import torch
from torch import nn

import analysis
from analysis.cli import main
from analysis.errors import CollabError
from analysis.models import CollaborativeModel, create_model
from analysis.probes import PROBES, compute, spec, unmet
from analysis.probes.dissection import Dissection, DissectionOptions, dissect
from analysis.probes.dissection_compare import chance_jaccard, jaccard, match_channels

FAST = DissectionOptions(images_per_class=8, steps=40)


class ColourData(torch.utils.data.Dataset):
    """Class c: channel c lit with a random intensity in [0.5, 1], the other channels dark."""

    def __init__(self, per_class: int = 12, size: int = 8) -> None:
        gen = torch.Generator().manual_seed(0)
        self.labels = torch.arange(3).repeat_interleave(per_class)
        self.images = torch.zeros(len(self.labels), 3, size, size)
        for i, c in enumerate(self.labels.tolist()):
            self.images[i, c] = 0.5 + 0.5 * torch.rand(size, size, generator=gen)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i])


def _planted_cnn(perm1=None, perm2=None) -> nn.Module:
    """test_cnn (width 4, 8) where layer1/layer2 channel c carries colour c to logit c; channel 3
    of layer1 and channels 3..7 of layer2 are dead. ``perm1``/``perm2`` reorder the channels."""
    net = create_model("test_cnn", num_classes=3, width=4).eval()
    conv1, bn1, conv2, bn2 = net.layer1[0][0], net.layer1[0][1], net.layer2[0], net.layer2[1]
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        for bn in (bn1, bn2):
            bn.weight.fill_(1.0)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0)
        for c in range(3):
            conv1.weight[c, c, 1, 1] = 1.0
            conv2.weight[c, c, 1, 1] = 1.0
            net.fc.weight[c, c] = 4.0
        if perm1 is not None:  # channel i moves to position perm[i]: index with the inverse
            inv1, inv2 = torch.argsort(perm1), torch.argsort(perm2)
            conv1.weight.copy_(conv1.weight[inv1])
            conv2.weight.copy_(conv2.weight[inv2][:, inv1])
            net.fc.weight.copy_(net.fc.weight[:, inv2])
    return net


def _model(*nets):
    return CollaborativeModel(list(nets), mean=(0.0,) * 3, std=(1.0,) * 3).eval()


def test_planted_class_channels_are_found():
    found = dissect(_model(_planted_cnn()), ColourData(), options=FAST)
    assert found.units == ["layer1.0.1", "layer2.1"] and found.widths == [4, 8]
    assert found.reconstructable and found.classes == [0, 1, 2]
    for c in range(3):
        for unit in found.units:
            mask = found.mask(0, unit)[c]
            assert mask.nonzero().flatten().tolist() == [c], (unit, c, found.gates[f"0:{unit}"])
    assert torch.equal(found.sizes[0], torch.ones(3, 2, dtype=torch.long))
    assert torch.equal(found.class_overlap[0], torch.eye(3, dtype=torch.float64))
    assert found.kept_agreement.min() == 1.0


def test_permuted_peer_matches_only_after_channel_matching():
    perm1, perm2 = torch.tensor([2, 3, 0, 1]), torch.tensor([5, 0, 7, 1, 2, 3, 4, 6])
    model = _model(_planted_cnn(), _planted_cnn(perm1, perm2))
    found = dissect(model, ColourData(), options=FAST)
    for c in range(3):
        assert found.mask(1, "layer1.0.1")[c].nonzero().flatten().tolist() == [int(perm1[c])]
        assert found.mask(1, "layer2.1")[c].nonzero().flatten().tolist() == [int(perm2[c])]
    assert found.pairs == [[0, 1]]
    assert torch.equal(found.matched_overlap, torch.ones(1, 3, 2, dtype=torch.float64))
    assert found.raw_overlap.max() == 0.0  # index by index, no class shares a channel
    assert torch.equal(found.class_overlap[0], found.class_overlap[1])
    assert torch.allclose(
        found.chance_overlap[0, :, 0], torch.full((3,), 1 / 7, dtype=torch.float64)
    )


def test_comparison_helpers():
    a = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    b = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    assert jaccard(a, b).tolist() == [1 / 3, 1.0]
    assert chance_jaccard(torch.tensor([2]), torch.tensor([2]), 4).item() == pytest.approx(1 / 3)
    x = torch.randn(50, 5)
    perm = torch.tensor([3, 0, 4, 1, 2])
    y = torch.empty_like(x)
    y[:, perm] = 2 * x + 1  # channel i of x is channel perm[i] of y
    assert torch.equal(match_channels(x, y), perm)


def test_unknown_architectures_are_dissected_at_their_batchnorms():
    torch.manual_seed(0)
    nets = [create_model("test_hcgnet", num_classes=3).eval() for _ in range(2)]
    found = dissect(_model(*nets), ColourData(per_class=4), options=DissectionOptions(steps=2))
    assert not found.reconstructable and set(found.kinds) == {"bn"}
    assert found.matched_overlap.shape == (1, 3, len(found.units))


def test_dissection_probe_is_registered_cached_and_kept_out_of_the_default_report(tiny_run):
    s = spec("dissection")
    assert "dissection" in PROBES and s.reads == "data" and s.result is Dissection
    run = analysis.load_run(tiny_run)
    assert unmet(run, s.needs) is None and unmet(run, s.report_needs) is not None
    first = compute(run, "dissection", classes=(0, 1, 2), images_per_class=4, steps=3)
    again = compute(run, "dissection", classes=(0, 1, 2), images_per_class=4, steps=3)
    assert first.peer_names == run.peer_names and len(first.pairs) == 3
    assert first.matched_overlap.shape == (3, 3, len(first.units))
    for key, mask in first.masks.items():
        assert torch.equal(again.masks[key], mask)


def test_collab_analyze_reports_the_dissection_when_named(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    report = tmp_path / "report.html"
    assert main(["analyze", str(run), "--probe", "dissection", "--report", str(report)]) == 0
    assert "probes: dissection" in capsys.readouterr().out
    assert "Class-wise dissection" in report.read_text()


def test_bad_options_are_one_line_errors():
    model = _model(_planted_cnn())
    with pytest.raises(CollabError, match=r"threshold 1.5 must be in \[0, 1\)"):
        dissect(model, ColourData(), options=DissectionOptions(threshold=1.5))
    with pytest.raises(CollabError, match="images_per_class >= 1"):
        dissect(model, ColourData(), options=DissectionOptions(images_per_class=0))
    with pytest.raises(CollabError, match="no images of class 5"):
        dissect(model, ColourData(), options=DissectionOptions(classes=(0, 5)))
    with pytest.raises(CollabError, match="no channel unit 'layer9'"):
        dissect(model, ColourData(), options=DissectionOptions(units=("layer9",), steps=1))


def test_minibatches_learn_the_same_gates():
    model = _model(_planted_cnn(), _planted_cnn(torch.tensor([1, 0, 3, 2]), torch.arange(8)))
    whole = dissect(model, ColourData(), options=FAST)
    parts = dissect(model, ColourData(), options=dataclasses.replace(FAST, batch_size=7))
    for key, gate in whole.gates.items():
        assert torch.allclose(parts.gates[key], gate, atol=1e-5), key
        assert torch.equal(parts.masks[key], whole.masks[key])
