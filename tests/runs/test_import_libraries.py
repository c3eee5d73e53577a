"""``--source torchvision`` / ``--source timm`` and library networks as peers of a trained run.

Layouts: torchvision's ``torch.save(model.state_dict())`` (its own key names); timm's
``train.py`` checkpoint, ``timm/utils/checkpoint_saver.py:99-121`` in timm 1.0.31 (``epoch``,
``arch``, ``optimizer``, ``version``, ``args`` as an ``argparse.Namespace``, ``state_dict``,
``state_dict_ema``, ``saver``). The source networks are the libraries' own.
"""

import argparse

import pytest
import torch

import analysis
from analysis.config import config_from_dict
from analysis.data import build_dataset
from analysis.errors import CollabError
from analysis.methods import create_method
from analysis.models import create_model
from analysis.probes import compute
from analysis.runs import load_run
from analysis.training import Trainer
from tests.runs.helpers import TOLERANCE, images, sgd_state


def _reference_logits(net, run, x):
    net.eval()
    with torch.no_grad():
        return net((x - run.model.normalize.mean) / run.model.normalize.std)


def test_torchvision_file_gives_the_same_logits(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    net = resnet18(weights=None, num_classes=6)
    torch.save(net.state_dict(), tmp_path / "resnet18.pth")
    run = analysis.import_checkpoints(
        [tmp_path / "resnet18.pth"],
        source="torchvision",
        arch="resnet18",
        out=tmp_path / "run",
        data={"name": "test_shapes"},
    )
    assert run.config["model"]["arch"] == "torchvision/resnet18"
    x = images(build_dataset("test_shapes"))
    with torch.no_grad():
        ours = run.model(x).peer_logits[0]
    assert (ours - _reference_logits(net, run, x)).abs().max() <= TOLERANCE


def test_timm_train_checkpoint_names_its_arch(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = timm.create_model("test_resnet", pretrained=False, num_classes=6)
    ema = timm.create_model("test_resnet", pretrained=False, num_classes=6)
    torch.save(
        {
            "epoch": 12,
            "arch": "test_resnet",
            "optimizer": sgd_state(net),
            "version": 2,
            "args": argparse.Namespace(model="test_resnet", lr=0.1, epochs=300),
            "state_dict": net.state_dict(),
            "state_dict_ema": ema.state_dict(),
            "saver": {"checkpoint_files": [("checkpoint-12.pth.tar", 0.5)], "best_epoch": 12},
        },
        tmp_path / "checkpoint-12.pth.tar",
    )
    x = images(build_dataset("test_shapes"))
    for entry, reference in (("state_dict", net), ("state_dict_ema", ema)):
        run = analysis.import_checkpoints(
            [tmp_path / "checkpoint-12.pth.tar"],
            source="timm",
            out=tmp_path / entry,
            data={"name": "test_shapes"},
            entry=entry,
        )
        assert run.config["model"]["arch"] == "timm/test_resnet"
        with torch.no_grad():
            ours = run.model(x).peer_logits[0]
        assert (ours - _reference_logits(reference, run, x)).abs().max() <= TOLERANCE


def test_library_networks_download_nothing():
    with pytest.raises(CollabError, match="would download weights"):
        create_model("torchvision/resnet18", num_classes=10, weights="DEFAULT")
    with pytest.raises(CollabError, match="torchvision has no classification model"):
        create_model("torchvision/resnet19", num_classes=10)
    with pytest.raises(CollabError, match="unknown model library 'keras'"):
        create_model("keras/resnet18", num_classes=10)


def test_torchvision_and_timm_peers_train_a_step(tmp_path):
    pytest.importorskip("timm")
    config = config_from_dict(
        {
            "method": {"name": "dml"},
            "model": {"arch": ["torchvision/resnet18", "timm/test_resnet"], "peers": 2},
            "data": {"name": "test_digits", "batch_size": 16},
            "train": {"epochs": 1, "max_steps_per_epoch": 1, "threads": 1},
        }
    )
    before = create_model("torchvision/resnet18", num_classes=10, in_chans=1)
    out = Trainer(config, tmp_path / "run", progress=False).fit()
    run = load_run(out)
    assert run.peer_names == ["torchvision/resnet18#0", "timm/test_resnet#1"]
    assert run.model.peer_probe_layers(0) == [f"peers.0.{n}" for n in before.probe_layers]
    assert run.model.peer_probe_layers(1)[-1] == "peers.1.layer4"
    x = images(run.data, 2)
    with torch.no_grad():
        for i in range(2):
            assert run.model.peer(i)(x).shape == (2, 10)
    report = compute(run, "diversity", limit=8)
    assert report.num_samples == 8


@pytest.mark.parametrize("method", ["mcl_okd", "od_cheap", "joint_decision"])
def test_methods_that_cut_networks_into_stages_refuse_library_networks(method):
    config = config_from_dict(
        {"method": {"name": method}, "model": {"arch": "torchvision/resnet18", "peers": 2}}
    )
    data = build_dataset("test_shapes")
    with pytest.raises(CollabError, match="needs networks made of named stages"):
        create_method(config.method).build_model(config.model, data)
