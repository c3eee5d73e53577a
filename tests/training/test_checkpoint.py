import os
import pickle

import pytest
import torch
from torch import nn

from analysis.errors import CollabError
from analysis.runs.checkpoint import load_resume, load_weights, save_resume, save_weights


def _net(width=4):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, width), nn.BatchNorm1d(width), nn.Linear(width, 2))


def test_weights_round_trip_and_no_temp_files(tmp_path):
    a, b = _net(), _net()
    with torch.no_grad():
        b[0].weight.add_(1.0)
    save_weights(tmp_path / "w.safetensors", a, {"epoch": "3"})
    meta = load_weights(b, tmp_path / "w.safetensors")
    assert meta["epoch"] == "3"
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert os.listdir(tmp_path) == ["w.safetensors"]


def test_truncated_and_garbage_files_are_one_line_errors(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(path, _net())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CollabError, match="corrupt, truncated") as err:
        load_weights(_net(), path)
    assert "\n" not in str(err.value)
    path.write_bytes(b"\x00" * 7)
    with pytest.raises(CollabError, match="corrupt, truncated"):
        load_weights(_net(), path)


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pickle_disguised_as_weights_is_refused_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "w.safetensors"
    path.write_bytes(pickle.dumps({"model.0.weight": _Boom()}))
    with pytest.raises(CollabError, match="not a safetensors file"):
        load_weights(_net(), path)
    assert not (tmp_path / "PWNED").exists()


def test_other_architecture_is_named(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(path, _net(width=4))
    with pytest.raises(CollabError, match="does not match this model's architecture.*shape"):
        load_weights(_net(width=5), path)
    with pytest.raises(CollabError, match="lacks"):
        load_weights(nn.Sequential(_net(), nn.Linear(2, 2)), path)


def test_resume_restores_optimizer_and_rng(tmp_path):
    model = _net()
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(8, 3)).sum().backward()
        opt.step()
    bank = torch.randn(5, 3)
    save_resume(
        tmp_path / "last.safetensors",
        model,
        opt,
        epoch=2,
        extra={"best_acc": 0.5},
        method_state={"bank": bank},
    )
    expected_draw = torch.rand(3)

    fresh = _net(width=4)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=0.01)
    torch.manual_seed(123)
    epoch, extra, method_state = load_resume(tmp_path / "last.safetensors", fresh, fresh_opt)
    assert (epoch, extra) == (2, {"best_acc": 0.5})
    assert method_state.keys() == {"bank"} and torch.equal(method_state["bank"], bank)
    assert torch.equal(torch.rand(3), expected_draw)
    s1, s2 = opt.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert s1.keys() == s2.keys()
    for idx in s1:
        for key in s1[idx]:
            assert torch.equal(torch.as_tensor(s1[idx][key]), torch.as_tensor(s2[idx][key]))


def test_weights_file_cannot_resume(tmp_path):
    model = _net()
    save_weights(tmp_path / "best.safetensors", model)
    with pytest.raises(CollabError, match="cannot resume"):
        load_resume(
            tmp_path / "best.safetensors", model, torch.optim.SGD(model.parameters(), lr=0.1)
        )
