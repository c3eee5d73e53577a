"""`collab reconstruct`: a new, smaller run for a few classes that loads and evaluates."""

import json

import torch
from torch.utils.data import DataLoader

import analysis
from analysis.cli import main
from analysis.data.subset import ClassSubset
from analysis.models import count_parameters
from analysis.models.channel_units import channel_units
from analysis.models.surgery import scaled_channels
from analysis.probes.class_map import find_network
from analysis.probes.dissection import dissect
from analysis.probes.reconstruct import calibrated_keep, subset_accuracy
from tests.probes.test_dissection import FAST, ColourData, _model, _planted_cnn


def _one_line_error(capsys, code, *fragments):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ") and all(f in lines[0] for f in fragments), lines[0]


def test_reconstruct_writes_a_smaller_run_that_loads_and_evaluates(tiny_run, tmp_path, capsys):
    out = tmp_path / "rec"
    assert (
        main(["reconstruct", str(tiny_run), "--classes", "7,2,5", "--out", str(out), "--peer", "1"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "parameters" in printed and "FLOPs/image" in printed
    record = json.loads((out / "manifest.json").read_text())["reconstruction"]
    assert record["classes"] == [7, 2, 5] and record["peer"] == 1
    assert (
        record["params"] < record["original_params"] and record["flops"] < record["original_flops"]
    )

    new, old = analysis.load_run(out), analysis.load_run(tiny_run)
    assert new.model.num_peers == 1 and count_parameters(new.model.peer(0)) == record["params"]
    test = new.dataset("test")  # restricted to classes 7, 2, 5, relabelled 0, 1, 2
    assert set(torch.as_tensor(test.labels).tolist()) == {0, 1, 2}
    assert new.data.class_names == ["7", "2", "5"]

    # the new peer computes exactly the original peer with the other channels zeroed
    peer = old.model.peer(1)
    net = find_network(peer)
    masks = {}
    for unit in channel_units(net):
        mask = torch.zeros(unit.width)
        mask[record["channels"][unit.name]] = 1.0
        masks[unit.name] = mask
    x = torch.stack([test[i][0] for i in range(len(test))])
    with torch.no_grad():
        with scaled_channels(net, channel_units(net), masks):
            masked = peer(x)[:, [7, 2, 5]]
        got = new.model.peer(0)(x)
    assert (got - masked).abs().max() <= 1e-5

    assert record["accuracy"] == subset_accuracy(new.model.peer(0), test)
    original = subset_accuracy(old.model.peer(1), test, [7, 2, 5])
    assert record["original_accuracy"] == original
    labels = torch.cat([y for _, y in DataLoader(test, batch_size=64)])
    assert record["test_images"] == len(labels) > 0

    assert main(["eval", str(out)]) == 0
    shown = capsys.readouterr().out
    assert f"{100 * record['accuracy']:6.2f}%" in shown

    again = tmp_path / "again"  # a reconstructed run reconstructs further: classes 5 and 7
    assert main(["reconstruct", str(out), "--classes", "2,0", "--out", str(again)]) == 0
    nested = analysis.load_run(again)
    assert nested.manifest["data"]["classes"] == [5, 7] and nested.data.class_names == ["5", "7"]
    assert len(nested.dataset("test")) == int(sum(label in (0, 2) for label in test.labels))


def test_reconstruct_refuses_a_non_empty_out_and_bad_classes(tiny_run, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("keep me")
    code = main(["reconstruct", str(tiny_run), "--classes", "0,1", "--out", str(taken)])
    _one_line_error(capsys, code, "not empty")
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    code = main(["reconstruct", str(tiny_run), "--classes", "0,x", "--out", str(tmp_path / "a")])
    _one_line_error(capsys, code, "--classes '0,x'")
    code = main(["reconstruct", str(tiny_run), "--classes", "3,12", "--out", str(tmp_path / "b")])
    _one_line_error(capsys, code, "among 0..9")
    code = main(
        [
            "reconstruct",
            str(tiny_run),
            "--classes",
            "1",
            "--peer",
            "5",
            "--out",
            str(tmp_path / "c"),
        ]
    )
    _one_line_error(capsys, code, "--peer 5")
    assert not any((tmp_path / n).exists() for n in "abc")


def test_calibration_keeps_the_planted_channels_and_falls_back_to_all():
    model = _model(_planted_cnn())
    found = dissect(model, ColourData(), options=FAST)
    peer = model.peer(0)
    units = channel_units(find_network(peer))
    calibration = ClassSubset(ColourData(), [0, 2])
    keep, threshold, accuracy, target = calibrated_keep(
        found, [0, 2], peer, units, calibration, start=0.5, tolerance=0.0
    )
    assert threshold == 0.5 and accuracy == target == 1.0
    assert keep["layer1.0.1"].tolist() == [True, False, True, False]
    assert keep["layer2.1"].nonzero().flatten().tolist() == [0, 2]
    keep, threshold, _, _ = calibrated_keep(
        found, [0, 2], peer, units, calibration, start=0.5, tolerance=-0.5
    )
    assert threshold is None and all(mask.all() for mask in keep.values())
