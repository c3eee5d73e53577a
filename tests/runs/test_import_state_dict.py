"""``--source state_dict``: plain state dicts, their wrappers, safetensors and our own runs.

Layout: ``torch.save(net.state_dict())`` (PyTorch's own), wrapped as researchers save it
(``{"state_dict": ..., "epoch": ...}``, ``module.`` keys from DataParallel), safetensors, and
CollabLens run folders (``checkpoints/best.safetensors``, ``model.`` keys, see README).
"""

import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

import analysis
from analysis.config import config_from_dict
from analysis.errors import CollabError
from analysis.models import create_model
from analysis.runs import load_run
from analysis.training import Trainer
from analysis.training.stats import evaluate
from tests.runs.helpers import TOLERANCE, build_source_model, images, max_logit_diff

SINGLE = {"method": {"name": "independent"}, "model": {"arch": "test_cnn", "peers": 2}}


@pytest.fixture(scope="module")
def source():
    """Two random test_cnn peers on test_digits (the networks whose files are imported)."""
    return build_source_model(SINGLE, "test_digits")


def _save_wrapped(model, i: int, path):
    """Peer ``i`` as researchers save it: a dict with state_dict, DataParallel's prefix."""
    state = {f"module.{k}": v for k, v in model.peers[i].state_dict().items()}
    torch.save({"state_dict": state, "epoch": 30, "best_acc": 91.5}, path)


def test_plain_files_become_peers_with_equal_logits(source, tmp_path):
    model, bundle = source
    _save_wrapped(model, 0, tmp_path / "a.pth.tar")
    save_file(dict(model.peers[1].state_dict()), str(tmp_path / "b.safetensors"))
    run = analysis.import_checkpoints(
        [tmp_path / "a.pth.tar", tmp_path / "b.safetensors"],
        source="state_dict",
        arch="test_cnn",
        out=tmp_path / "run",
        data={"name": "test_digits"},
        mean=list(bundle.mean),
        std=list(bundle.std),
    )
    assert run.model.num_peers == 2
    assert max_logit_diff(run, model, images(bundle)) <= TOLERANCE
    prov = run.manifest["provenance"]
    assert prov["source"] == "state_dict"
    first = prov["files"][0]
    assert first["entry"] == "state_dict" and first["stripped_prefix"] == "module."
    assert first["file_entries"] == {"epoch": 30, "best_acc": 91.5}
    assert len(first["sha256"]) == 64 and first["name"] == "a.pth.tar"
    assert prov["mapping"]["tensors"] == len(model.state_dict()) - 2  # all but normalize
    assert run.metrics == [] and (run.path / "metrics.jsonl").read_text() == ""
    assert run.manifest["status"] == "complete" and run.manifest["epochs"] == 0
    assert sorted(run.checkpoints) == ["best", "last"]
    assert load_run(run.path, checkpoint="last").model.num_peers == 2


def test_mismatch_is_one_line_naming_keys_and_a_fitting_arch(source, tmp_path):
    model, _ = source
    _save_wrapped(model, 0, tmp_path / "a.pth")
    with pytest.raises(CollabError) as err:
        analysis.import_checkpoints(
            [tmp_path / "a.pth"],
            source="state_dict",
            arch="test_resnet",
            out=tmp_path / "run",
            data={"name": "test_digits"},
        )
    message = str(err.value)
    assert "\n" not in message
    assert "missing" in message and "unexpected" in message
    assert "--arch test_cnn" in message
    assert not (tmp_path / "run").exists()


def test_classifier_of_another_dataset_is_named(tmp_path):
    net = create_model("test_cnn", num_classes=10, in_chans=3)  # e.g. trained on CIFAR-10
    torch.save(dict(net.state_dict()), tmp_path / "a.pt")
    with pytest.raises(CollabError, match="mis-shaped.*10 outputs but test_shapes has 6"):
        analysis.import_checkpoints(
            [tmp_path / "a.pt"],
            source="state_dict",
            arch="test_cnn",
            out=tmp_path / "run",
            data={"name": "test_shapes"},
        )


class _Payload:
    """Pickles to a call of os.system: what a malicious checkpoint carries."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["torch_save", "legacy_torch_save", "raw_pickle"])
def test_malicious_checkpoint_runs_nothing(tmp_path, how):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"state_dict": {"w": torch.zeros(1)}, "hook": _Payload(marker)}
    if how == "raw_pickle":
        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=how == "torch_save")
    with pytest.raises(CollabError) as err:
        analysis.import_checkpoints(
            [path], source="state_dict", arch="test_cnn", out=tmp_path / "run"
        )
    assert "\n" not in str(err.value)
    assert "arbitrary unpickling" in str(err.value) or "not a readable" in str(err.value)
    assert not marker.exists()
    assert not (tmp_path / "run").exists()


def test_a_pickled_module_is_refused_in_one_line(tmp_path):
    torch.save(create_model("test_cnn", num_classes=10, in_chans=1), tmp_path / "whole.pth")
    with pytest.raises(CollabError, match="needs arbitrary unpickling"):
        analysis.import_checkpoints(
            [tmp_path / "whole.pth"], source="state_dict", arch="test_cnn", out=tmp_path / "r"
        )


def test_refusals(source, tmp_path):
    model, _ = source
    torch.save(dict(model.peers[0].state_dict()), tmp_path / "a.pt")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    common = {"source": "state_dict", "arch": "test_cnn", "data": {"name": "test_digits"}}
    with pytest.raises(CollabError, match="not a new or empty folder"):
        analysis.import_checkpoints([tmp_path / "a.pt"], out=busy, **common)
    assert (busy / "notes.txt").read_text() == "mine"
    with pytest.raises(CollabError, match="unknown import option 'colour'"):
        analysis.import_checkpoints([tmp_path / "a.pt"], out=tmp_path / "r", colour=1, **common)
    with pytest.raises(CollabError, match="unknown checkpoint source 'caffe'"):
        analysis.import_checkpoints([tmp_path / "a.pt"], source="caffe", out=tmp_path / "r")
    with pytest.raises(CollabError, match="needs the dataset"):
        analysis.import_checkpoints(
            [tmp_path / "a.pt"], source="state_dict", arch="test_cnn", out=tmp_path / "r"
        )
    with pytest.raises(CollabError, match="cannot tell which HCGNet"):
        analysis.import_checkpoints([tmp_path / "a.pt"], source="hcgnet", out=tmp_path / "r")


def _single_network_config(seed: int):
    return config_from_dict(
        {
            "method": {"name": "independent"},
            "model": {"arch": "test_cnn", "peers": 1},
            "data": {"name": "test_digits"},
            "train": {"epochs": 1, "max_steps_per_epoch": 3, "threads": 1, "seed": seed},
        }
    )


def test_separately_trained_runs_combine_with_the_same_accuracies(tmp_path):
    runs = [
        Trainer(_single_network_config(seed), tmp_path / f"single{seed}", progress=False).fit()
        for seed in range(3)
    ]
    combined = analysis.import_checkpoints(runs, source="state_dict", out=tmp_path / "combined")
    assert combined.model.num_peers == 3
    assert combined.config["model"]["arch"] == "test_cnn"
    assert combined.manifest["provenance"]["normalization"]["from"].startswith("the files'")
    loader = torch.utils.data.DataLoader(combined.dataset("test"), batch_size=50)
    together = evaluate(combined.model, loader, device=torch.device("cpu"))["peer_acc"]
    alone = [
        evaluate(load_run(r).model, loader, device=torch.device("cpu"))["peer_acc"][0] for r in runs
    ]
    assert together == alone
    assert json.loads((combined.path / "manifest.json").read_text())["peer_names"] == [
        f"test_cnn#{i}" for i in range(3)
    ]
