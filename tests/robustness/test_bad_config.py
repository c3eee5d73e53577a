"""Bad configs and arguments: one line naming the problem and the fix, exit 2, nothing written.

These run ``collab`` in-process (``analysis.cli.main``): an unexpected exception fails the test
just as a traceback would, and a case takes milliseconds instead of a fresh interpreter.
"""

from __future__ import annotations

import pytest

from analysis.cli import main
from tests.conftest import DML_PRESET, TINY
from tests.robustness.helpers import tree_hash

TINY_SETS = [a for item in TINY for a in ("--set", item)]


def collab(capsys, *args: str) -> tuple[int, str]:
    """Run ``collab ARGS`` in-process; returns (exit code, the one error line)."""
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0]
    return code, err[0]


BAD_VALUES = [
    ("train.threads=-1", "train.threads"),
    ("train.threads=0", "train.threads"),
    ("data.eval_batch_size=0", "data.eval_batch_size"),
    ("data.batch_size=0", "data.batch_size"),
    ("data.num_workers=-1", "data.num_workers"),
    ("optim.momentum=-1", "optim.momentum"),
    ("optim.momentum=1.5", "optim.momentum"),
    ("train.seed=-1", "train.seed"),
    ("optim.weight_decay=-0.1", "optim.weight_decay"),
    ("schedule.warmup_epochs=-2", "schedule.warmup_epochs"),
    ("train.max_steps_per_epoch=0", "train.max_steps_per_epoch"),
    ("optim.lr=0", "optim.lr"),
    ("optim.lr=-0.1", "optim.lr"),
    ("optim.lr=.nan", "optim.lr"),
    ("optim.lr=.inf", "optim.lr"),
    ("train.epochs=0", "train.epochs"),
    ("model.peers=0", "model.peers"),
    ("train.save_every=-1", "train.save_every"),
    ("schedule.gamma=0", "schedule.gamma"),
    ("schedule.min_lr=-1", "schedule.min_lr"),
    ("schedule.milestones=[0, 5]", "schedule.milestones"),
    ("train.epochs=ten", "train.epochs"),
    ("optim.lr=fast", "optim.lr"),
    ("model.peers=1.5", "model.peers"),
    ("data.augment=maybe", "data.augment"),
    ("train.epohcs=3", "train.epohcs"),
    ("bogus.key=1", "bogus"),
    ("optim.name=rmsprop", "optim.name"),
    ("schedule.name=linear", "schedule.name"),
    ("train.device=tpu", "train.device"),
    ("method.name=telepathy", "telepathy"),
    ("model.arch=resnet9000", "resnet9000"),
    ("data.name=imagenet22k", "imagenet22k"),
    ("model.arch=[resnet8, resnet8]", "model.arch"),
    ("notakeyvalue", "key=value"),
]


@pytest.mark.parametrize(("assignment", "named"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_value_is_named_and_nothing_is_written(capsys, tmp_path, assignment, named):
    out = tmp_path / "run"
    code, line = collab(capsys, "train", str(DML_PRESET), "--out", str(out), "--set", assignment)
    assert code == 2 and named in line
    assert not out.exists()


BAD_FILES = {
    "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00",
    "list": b"- data\n- model\n",
    "scalar": b"42\n",
    "string": b"just some words\n",
    "broken-yaml": b"data: {name: digits\nmodel: [\n",
    "section-is-a-list": b"data: [digits]\n",
    "unknown-section": b"dataset: {name: digits}\n",
    "method-without-name": b"method: {temperature: 2}\n",
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_config_file(capsys, tmp_path, kind):
    path = tmp_path / f"{kind}.yaml"
    path.write_bytes(BAD_FILES[kind])
    out = tmp_path / "run"
    code, line = collab(capsys, "train", str(path), "--out", str(out))
    assert code == 2 and ";" in line  # problem; fix
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("train",), "needs a YAML preset"),
        (("train", "--resume"), "--resume needs --out"),
        (("train", "no/such/preset.yaml"), "does not exist"),
        (("train", "configs"), "does not exist"),
        (("trian",), "invalid choice"),
        (("train", "--bogus"), "unrecognized arguments"),
        (("eval",), "required"),
        (("analyze", "runs/dml-digits", "--limit", "-5"), "--limit"),
        (("analyze", "runs/dml-digits", "--limit", "0"), "--limit"),
        (("analyze", "runs/dml-digits", "--limit", "many"), "--limit"),
        (("analyze", "runs/dml-digits", "--data", "val"), "--data"),
        (("analyze", "runs/dml-digits", "--probe", "telepathy"), "telepathy"),
        (("eval", "runs/dml-digits", "--split", "val"), "--split"),
        (
            ("eval", "runs/dml-digits", "--checkpoint", "../independent-digits/checkpoints/best"),
            "not a checkpoint name",
        ),
        (("eval", "runs/dml-digits", "--checkpoint", "/etc/passwd"), "not a checkpoint name"),
        (("eval", "runs/dml-digits", "--checkpoint", ""), "not a checkpoint name"),
        (("eval", "runs/dml-digits", "--checkpoint", "epoch_999"), "epoch_999"),
        (("eval", "no/such/run"), "does not exist"),
        (("eval", "runs/dml-digits", "--set", "model.peers=2"), "only data.*"),
        (("eval", "runs/dml-digits", "--set", "data.batch_size=-1"), "data.batch_size"),
        (
            (
                "eval",
                "runs/dml-digits",
                "--set",
                "data.name=cifar10",
                "--set",
                "data.root=/nowhere",
            ),
            "data.root",
        ),
        (("eval", "README.md"), "does not exist"),
        (("zoo", "--only", "nope", "--root", "/nonexistent-zoo-root"), "nope"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else v,
)
def test_bad_arguments(capsys, args, named):
    from tests.conftest import REPO

    before = tree_hash(REPO / "runs")
    code, line = collab(capsys, *args)
    assert code == 2 and named in line
    assert tree_hash(REPO / "runs") == before
