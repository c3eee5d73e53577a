"""Speed switches: mixed precision, channels-last, torch.compile, determinism, data loading."""

import math
import os
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from analysis.config import load_config
from analysis.layout import to_channels_last
from analysis.methods import METHODS
from analysis.models import CollabOutput
from analysis.runs import load_run, read_metrics, read_tensors
from analysis.training import Trainer
from analysis.training.precision import Precision, extra_state, restore_extra_state
from analysis.training.speed import configure_determinism
from tests.conftest import DML_PRESET, REPO, TINY, run_cli

FEW_STEPS = (
    "train.epochs=1",
    "train.max_steps_per_epoch=2",
    "data.batch_size=16",
    "train.threads=1",
)


def same_weights(a, b, prefix="model."):
    a, b = load_file(str(a)), load_file(str(b))
    keys = [k for k in a if k.startswith(prefix)]
    return keys == [k for k in b if k.startswith(prefix)] and all(
        torch.equal(a[k], b[k]) for k in keys
    )


@pytest.mark.parametrize("method", METHODS.list())
def test_bf16_autocast_trains_every_method_with_finite_losses(method, tmp_path):
    preset = REPO / "configs" / f"{method}_digits.yaml"
    config = load_config(preset, [*FEW_STEPS, "train.precision=bf16", "train.channels_last=true"])
    run = Trainer(config, tmp_path / method, progress=False).fit()
    for record in read_metrics(run):
        values = [record["loss"], record["ensemble_loss"], *record["peer_loss"]]
        assert all(math.isfinite(v) for v in values), record
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["precision"] == "bf16"
    weights = load_file(str(run / "checkpoints" / "last.safetensors"))
    assert all(t.dtype != torch.bfloat16 for t in weights.values())  # parameters stay float32
    load_run(run)  # channels-last weights load into a plain model


def test_losses_see_float32_outputs_under_autocast():
    precision = Precision("bf16", torch.device("cpu"))
    layer = torch.nn.Linear(4, 3)
    with precision.autocast():
        logits = layer(torch.randn(2, 5, 4))
    assert logits.dtype == torch.bfloat16
    out = precision.float32(CollabOutput(logits, logits.mean(0), {"emb": [logits]}))
    assert out.peer_logits.dtype == out.ensemble_logits.dtype == torch.float32
    assert out.extras["emb"][0].dtype == torch.float32
    fp32 = Precision("fp32", torch.device("cpu"))
    same = CollabOutput(torch.zeros(2, 1, 3), torch.zeros(1, 3))
    assert fp32.float32(same) is same and fp32.scaler is None


def test_fp16_keeps_its_loss_scale_in_the_resume_state(tmp_path):
    config = load_config(DML_PRESET, [*TINY, "train.epochs=1", "train.precision=fp16"])
    run = Trainer(config, tmp_path / "fp16", progress=False).fit()
    assert all(math.isfinite(m["loss"]) for m in read_metrics(run))
    _, meta = read_tensors(run / "checkpoints" / "last.safetensors")
    extra = yaml.safe_load(meta["extra"])
    assert extra["amp"]["scale"] > 0 and "best_epoch" in extra
    restored = Precision("fp16", torch.device("cpu"))
    rest = restore_extra_state(extra, restored, torch.device("cpu"))
    assert "amp" not in rest and rest["best_epoch"] == extra["best_epoch"]
    assert restored.state_dict()["scale"] == extra["amp"]["scale"]
    assert extra_state(Precision("fp32", torch.device("cpu")), torch.device("cpu")) == {}


def test_channels_last_views_keep_their_shape():
    x = torch.randn(3, 2, 4, 5, 5)
    y = to_channels_last(x)
    assert torch.equal(x, y) and y[1].is_contiguous(memory_format=torch.channels_last)
    assert to_channels_last(x[0]).is_contiguous(memory_format=torch.channels_last)


def test_training_never_reads_uninitialised_memory(tmp_path, monkeypatch):
    """Deterministic mode's NaN fill of new tensors is off (it cost 6-10% of a CPU step); with
    it on, every tensor the run reads before writing would turn NaN, or change the weights."""
    import analysis.training.trainer as trainer_module
    from analysis.training import speed

    sets = [*TINY, "model.arch=resnet8", "model.options={width: 4}", *FEW_STEPS]
    plain = Trainer(load_config(DML_PRESET, sets), tmp_path / "plain", progress=False).fit()
    assert torch.utils.deterministic.fill_uninitialized_memory is False

    def filling(setting, device):
        on = speed.configure_determinism(setting, device)
        torch.utils.deterministic.fill_uninitialized_memory = True
        return on

    monkeypatch.setattr(trainer_module, "configure_determinism", filling)
    try:
        filled = Trainer(load_config(DML_PRESET, sets), tmp_path / "filled", progress=False).fit()
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = False
    assert same_weights(
        plain / "checkpoints/last.safetensors", filled / "checkpoints/last.safetensors"
    )


def test_deterministic_auto_is_true_on_cpu_and_autotunes_on_cuda():
    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    try:
        assert configure_determinism("auto", torch.device("cuda")) is False
        assert torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
        assert configure_determinism(True, torch.device("cuda")) is True
        assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
        assert configure_determinism("auto", torch.device("cpu")) is True
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=True)
        torch.backends.cudnn.benchmark = before[1]


def test_persistent_workers_see_every_epoch_exactly(tmp_path):
    """Workers kept alive between epochs still build each epoch's own views: the run equals
    one loaded in the main process (MCL-OKD also draws from the RNG that loaders seed from)."""
    base = [*TINY, "train.epochs=2", "train.max_steps_per_epoch=2", "method.negatives=16"]
    preset = REPO / "configs" / "mcl_okd_digits.yaml"
    plain = Trainer(load_config(preset, base), tmp_path / "plain", progress=False).fit()
    kept = [*base, "data.num_workers=2", "data.persistent_workers=true"]
    workers = Trainer(load_config(preset, kept), tmp_path / "workers", progress=False).fit()
    last = "checkpoints/last.safetensors"
    assert same_weights(plain / last, workers / last, prefix="")
    assert read_metrics(plain) == read_metrics(workers)


def test_new_keys_stay_out_of_config_files_at_their_defaults():
    default = load_config(DML_PRESET).to_dict()
    assert "precision" not in default["train"] and "pin_memory" not in default["data"]
    changed = load_config(DML_PRESET, ["train.compile=true", "train.peer_devices=[cpu,cpu,cpu]"])
    assert changed.to_dict()["train"]["compile"] is True
    assert changed.to_dict()["train"]["peer_devices"] == ["cpu", "cpu", "cpu"]


@pytest.mark.slow
def test_compiled_peers_train_and_checkpoint_under_their_own_names(tmp_path):
    config = load_config(DML_PRESET, [*TINY, "train.epochs=1", "train.compile=true"])
    run = Trainer(config, tmp_path / "compiled", progress=False).fit()
    assert all(math.isfinite(m["loss"]) for m in read_metrics(run))
    assert not any("_orig_mod" in k for k in load_file(str(run / "checkpoints/last.safetensors")))
    load_run(run)


@pytest.mark.parametrize("script", ["bench_gpu.py", "gpu_checks.py", "gpu_all.sh"])
def test_the_gpu_scripts_say_they_need_cuda_and_exit_cleanly_without_it(script, tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    command = [sys.executable] if script.endswith(".py") else ["bash"]
    proc = subprocess.run(
        [*command, f"benchmarks/{script}", *([str(tmp_path)] if script.endswith(".sh") else [])],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0 and "needs a CUDA GPU" in proc.stdout


def test_fused_peers_train_the_same_model_up_to_rounding(tmp_path):
    """train.fuse_peers: the same checkpoint keys, weights equal within float rounding."""
    sets = [*TINY, "model.arch=resnet8", "model.options={width: 4}", *FEW_STEPS]
    plain = Trainer(load_config(DML_PRESET, sets), tmp_path / "a", progress=False).fit()
    fused_config = load_config(DML_PRESET, [*sets, "train.fuse_peers=true"])
    fused = Trainer(fused_config, tmp_path / "b", progress=False).fit()
    a = load_file(str(plain / "checkpoints/last.safetensors"))
    b = load_file(str(fused / "checkpoints/last.safetensors"))
    weights = [k for k in a if k.startswith("model.")]
    assert weights == [k for k in b if k.startswith("model.")]
    assert max((a[k].double() - b[k].double()).abs().max().item() for k in weights) < 1e-4


def test_a_killed_fused_run_resumes_bit_for_bit(tmp_path):
    """The peers' tensors live in fused storage during a fused run; a checkpoint still holds
    each peer's own weights, and a run killed mid-epoch resumes to the uninterrupted weights."""
    from tests.training.test_trainer import KILLER

    sets = [*TINY, "model.arch=resnet8", "model.options={width: 4}", "train.fuse_peers=true"]
    whole = Trainer(load_config(DML_PRESET, sets), tmp_path / "whole", progress=False).fit()
    out = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(DML_PRESET), str(out), *sets], cwd=REPO
    )
    assert proc.returncode == -9
    resumed = run_cli("train", "--out", str(out), "--resume", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert same_weights(
        whole / "checkpoints/last.safetensors", out / "checkpoints/last.safetensors"
    )


def test_fused_peers_refuse_what_they_cannot_combine_with(tmp_path):
    from analysis.errors import CollabError

    sets = [*TINY, "model.arch=resnet8", *FEW_STEPS, "train.fuse_peers=true", "train.compile=true"]
    with pytest.raises(CollabError, match="train.fuse_peers runs all peers as one network"):
        Trainer(load_config(DML_PRESET, sets), tmp_path / "c", progress=False).fit()
    assert not (tmp_path / "c").exists()


def test_fuse_peers_auto_fuses_on_cuda_only_where_runs_need_not_be_exact():
    from types import SimpleNamespace

    from analysis.training.model_setup import auto_fuses

    one = SimpleNamespace(active=False)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    config = load_config(DML_PRESET)
    assert config.train.fuse_peers == "auto" and "fuse_peers" not in config.to_dict()["train"]
    assert auto_fuses(config, cuda, placed=False, dist=one)
    assert not auto_fuses(config, cpu, placed=False, dist=one)
    assert not auto_fuses(config, cuda, placed=True, dist=one)
    assert not auto_fuses(config, cuda, placed=False, dist=SimpleNamespace(active=True))
    for override in ("train.deterministic=true", "train.compile=true"):
        changed = load_config(DML_PRESET, [override])
        assert not auto_fuses(changed, cuda, placed=False, dist=one), override


@pytest.mark.parametrize("method,fuses", [("dml", True), ("mcl_okd", False)])
def test_fuse_peers_auto_falls_back_to_separate_peers_where_they_cannot_fuse(
    method, fuses, monkeypatch
):
    from types import SimpleNamespace

    import analysis.training.model_setup as setup
    from analysis.methods import create_method
    from analysis.models.fused import FusedPeers

    config = load_config(REPO / "configs" / f"{method}_digits.yaml")
    data = SimpleNamespace(num_classes=10, in_chans=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    dist = SimpleNamespace(active=False, wrap=lambda model, **_: model)
    monkeypatch.setattr(setup, "auto_fuses", lambda *a, **k: True)
    model, _, net = setup.prepare_model(
        config, create_method(config.method), data, device=torch.device("cpu"), dist=dist
    )
    assert isinstance(net, FusedPeers) is fuses and (net is model) is not fuses


@pytest.mark.parametrize("method", METHODS.list())
def test_every_method_trains_where_auto_fusing_applies(method, tmp_path, monkeypatch):
    """What ``fuse_peers: auto`` does on CUDA, forced here on the CPU: fusable peers train
    fused, the others fall back to separate peers; either way the losses stay finite."""
    import analysis.training.model_setup as setup

    monkeypatch.setattr(setup, "auto_fuses", lambda *a, **k: True)
    preset = REPO / "configs" / f"{method}_digits.yaml"
    config = load_config(preset, [*FEW_STEPS])
    run = Trainer(config, tmp_path / method, progress=False).fit()
    assert all(math.isfinite(m["loss"]) for m in read_metrics(run))
