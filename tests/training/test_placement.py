"""Peers on their own devices (train.peer_devices)."""

import pytest
import torch
from safetensors.torch import load_file

from analysis.config import load_config
from analysis.errors import CollabError
from analysis.models import CollaborativeModel, create_model
from analysis.training import Trainer
from analysis.training.placement import place_peers
from tests.conftest import DML_PRESET, REPO, TINY


def test_peers_placed_on_the_cpu_train_exactly_as_unplaced_peers(tmp_path, tiny_run):
    config = load_config(DML_PRESET, [*TINY, "train.peer_devices=[cpu, cpu, cpu]"])
    run = Trainer(config, tmp_path / "placed", progress=False).fit()
    a = load_file(str(tiny_run / "checkpoints/last.safetensors"))
    b = load_file(str(run / "checkpoints/last.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_placement_moves_inputs_in_and_logits_home():
    peers = [create_model("test_cnn", num_classes=4, in_chans=1) for _ in range(2)]
    model = CollaborativeModel(peers, mean=(0.5,), std=(0.5,))
    home = torch.device("meta")  # any device other than the peers' proves the move home
    handles = place_peers(model, ["cpu", "cpu"], home=torch.device("cpu"))
    assert len(handles) == 4 and all(p.device.type == "cpu" for p in model.parameters())
    out = model(torch.rand(3, 1, 16, 16))
    assert out.peer_logits.shape == (2, 3, 4)
    for h in handles:
        h.remove()
    place_peers(model, ["cpu", "cpu"], home=home)
    assert model(torch.rand(3, 1, 16, 16)).peer_logits.device == home


def test_shared_trunks_and_missing_gpus_are_refused_in_one_line(tmp_path):
    one = load_config(REPO / "configs/one_digits.yaml", ["train.peer_devices=[cpu, cpu, cpu]"])
    with pytest.raises(CollabError, match="needs a model of separate peers"):
        Trainer(one, tmp_path / "one", progress=False).fit()
    assert not (tmp_path / "one").exists()  # the folder it started is taken back
    far = load_config(DML_PRESET, [*TINY, "train.peer_devices=[cpu, cpu, cuda:7]"])
    with pytest.raises(CollabError, match="names cuda:7 but"):
        Trainer(far, tmp_path / "far", progress=False).fit()
