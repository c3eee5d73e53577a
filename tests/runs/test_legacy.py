"""Runs written by release 0.1 load as they were trained, although 0.2 changed the defaults."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import analysis
from analysis.config import load_config
from analysis.errors import CollabError
from analysis.runs.legacy import release, restore_defaults
from analysis.training import Trainer
from tests.conftest import REPO

TINY = ("train.epochs=1", "train.max_steps_per_epoch=1", "train.threads=1", "data.name=test_digits")


def _as_if_written_by_0_1(run_dir, drop: tuple[str, str]) -> None:
    """Remove the option 0.1 did not have, and stamp the manifest with release 0.1.0."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    section, key = drop
    node = config
    for name in section.split("."):
        node = node[name]
    del node[key]
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["versions"]["collablens"] = "0.1.0"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("preset", "explicit", "drop"),
    [
        (
            "od_cheap_digits",
            "model.options={width: 4, op: shift, shift_layout: grouped}",
            ("model.options", "shift_layout"),
        ),
        ("one_digits", "method.gate=linear", ("method", "gate")),
    ],
    ids=["od_cheap-shift-layout", "one-gate"],
)
def test_old_run_loads_with_the_old_defaults(tmp_path, preset, explicit, drop):
    config = load_config(REPO / "configs" / f"{preset}.yaml", (*TINY, explicit))
    run_dir = Trainer(config, tmp_path / "old", progress=False).fit()
    x = torch.rand(4, 1, 16, 16) if preset == "od_cheap_digits" else torch.rand(4, 1, 32, 32)
    before = analysis.load_run(run_dir).model(x).ensemble_logits
    _as_if_written_by_0_1(run_dir, drop)
    after = analysis.load_run(run_dir).model(x).ensemble_logits
    assert torch.equal(before, after)


def test_the_same_folder_stamped_0_2_builds_todays_network(tmp_path):
    """Without the shim the old weights would meet the new default: a clear refusal here."""
    config = load_config(REPO / "configs/one_digits.yaml", (*TINY, "method.gate=linear"))
    run_dir = Trainer(config, tmp_path / "old", progress=False).fit()
    _as_if_written_by_0_1(run_dir, ("method", "gate"))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["versions"]["collablens"] = "0.2.0"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CollabError, match="architecture"):
        analysis.load_run(run_dir)


def test_release_parsing_and_renamed_values():
    assert release({"versions": {"collablens": "0.1.0"}}) == (0, 1, 0)
    assert release({"versions": {"collablens": "dev"}}) == (0, 1)
    assert release({}) == (0, 1)
    old = {
        "model": {"arch": "anchornet", "options": {"layout": "reference"}},
        "method": {"name": "independent"},
    }
    assert restore_defaults(old, {})["model"]["options"]["layout"] == "exact"
    new = {"versions": {"collablens": "0.2.0"}}
    assert restore_defaults(old, new)["model"]["options"]["layout"] == "reference"
