from pathlib import Path

import pytest

from analysis.config import config_from_dict, load_config
from analysis.errors import CollabError

REPO = Path(__file__).resolve().parents[2]


def test_preset_and_overrides():
    cfg = load_config(
        REPO / "configs/dml_digits.yaml",
        ["train.epochs=3", "method.temperature=2", "model.arch=[a, b, c]"],
    )
    assert cfg.train.epochs == 3
    assert cfg.method.name == "dml" and cfg.method.temperature == 2.0  # int promoted to float
    assert cfg.model.arch == ["a", "b", "c"]
    assert cfg.data.name == "digits"


@pytest.mark.parametrize(
    "override, named",
    [
        ("train.epoch=3", "'train.epoch'"),
        ("method.temprature=3", "'method.temprature'"),
        ("optimizer.lr=1", "'optimizer'"),
        ("train.epochs=three", "'train.epochs'"),
        ("optim.name=rmsprop", "'optim.name'"),
        ("data.augment=maybe", "'data.augment'"),
        ("train.epochs=0", "'train.epochs'"),
        ("train.precision=fp8", "choose one of: fp32, bf16, fp16"),
        ("train.deterministic=maybe", "choose one of: true, false, auto"),
        ("data.pin_memory=3", "'data.pin_memory'"),
        ("data.persistent_workers=true", "data.num_workers is at least 1"),
        ("train.peer_devices=[gpu,cpu,cpu]", "'train.peer_devices'"),
        ("train.peer_devices=[cpu]", "lists 1 devices for 3 peers"),
        ("train.sync_bn=often", "'train.sync_bn'"),
    ],
)
def test_bad_keys_and_values_are_named(override, named):
    with pytest.raises(CollabError) as err:
        load_config(REPO / "configs/dml_digits.yaml", [override])
    assert named in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_method_lists_choices():
    with pytest.raises(CollabError, match="unknown method 'dmll'.*dml"):
        config_from_dict({"method": {"name": "dmll"}})


def test_method_options_belong_to_their_method():
    with pytest.raises(CollabError, match="'method.temperature'"):
        config_from_dict({"method": {"name": "independent", "temperature": 2}})


def test_round_trip():
    cfg = load_config(REPO / "configs/dml_digits.yaml")
    assert config_from_dict(cfg.to_dict()) == cfg


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(CollabError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(CollabError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(CollabError, match="key=value"):
        load_config(None, ["train.epochs"])
