"""Distributed data parallel under torchrun, on the CPU with gloo."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from analysis.config import load_config
from analysis.errors import CollabError
from analysis.runs import read_manifest, read_metrics
from analysis.training import Trainer
from analysis.training.distributed import Dist
from analysis.training.loader import EpochBatches, shard
from tests.conftest import DML_PRESET, REPO

#: Short and gentle enough that float32 rounding (which differs between 2 half-batches and one
#: whole batch, as between 1 and 2 threads) is not amplified beyond 1e-5 by the training itself.
#: NCHW: the CPU's NHWC batch norm sums in float32 one element after another (~1e-5 relative
#: here, against ~1e-7; benchmarks/layout_accuracy.py), which would hide this agreement.
DDP = (
    "train.channels_last=false",
    "model.arch=test_cnn",
    "model.options={}",
    "train.epochs=2",
    "train.max_steps_per_epoch=2",
    "train.threads=1",
    "train.save_every=1",
    "optim.lr=0.01",
    "data.batch_size=32",
)


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=NPROC ARGS`` from the repository root."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [*cmd, f"--nproc_per_node={nproc}", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )


def train_cli(out, *extra: str, nproc: int = 2) -> subprocess.CompletedProcess:
    sets = [a for s in DDP for a in ("--set", s)]
    args = ["-m", "analysis.cli", "train", str(DML_PRESET), "--out", str(out), *sets]
    return torchrun(*args, "--no-progress", *extra, nproc=nproc)


def max_diff(a, b) -> float:
    a = load_file(str(a / "checkpoints/last.safetensors"))
    b = load_file(str(b / "checkpoints/last.safetensors"))
    keys = [k for k in a if k.startswith("model.")]
    assert keys == [k for k in b if k.startswith("model.")]
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in keys)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """A DML run trained by two gloo processes (torchrun)."""
    out = tmp_path_factory.mktemp("ddp") / "two"
    proc = train_cli(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_two_ranks_train_the_single_process_run(two_ranks, tmp_path):
    one = Trainer(load_config(DML_PRESET, DDP), tmp_path / "one", progress=False).fit()
    assert max_diff(two_ranks, one) <= 1e-5
    two, single = read_metrics(two_ranks), read_metrics(one)
    assert [(m["epoch"], m["split"], m["samples"]) for m in two] == [
        (m["epoch"], m["split"], m["samples"]) for m in single
    ]  # rank 0 alone wrote, every sample counted once
    for a, b in zip(two, single):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4)
        assert a["ensemble_acc"] == pytest.approx(b["ensemble_acc"], abs=1e-9)
    assert read_manifest(two_ranks)["status"] == "complete"
    assert (two_ranks / "tb").is_dir()


def test_two_ranks_train_the_single_process_run_in_nhwc(tmp_path):
    """The CPU default layout under torchrun: the same model, up to NHWC batch norm rounding."""
    two = tmp_path / "two"
    proc = train_cli(two, "--set", "train.channels_last=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = load_config(DML_PRESET, (*DDP, "train.channels_last=true"))
    one = Trainer(config, tmp_path / "one", progress=False).fit()
    assert max_diff(two, one) <= 1e-4


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from analysis.config import load_config
    from analysis.training import Callback, Trainer

    class KillRankZero(Callback):
        def on_step_end(self, trainer, *, epoch, step):
            if epoch == 1 and step == 0 and trainer.dist.rank == 0:
                os.kill(os.getpid(), signal.SIGKILL)

    config = load_config(sys.argv[1], sys.argv[3:])
    Trainer(config, sys.argv[2], callbacks=[KillRankZero()], progress=False).fit()
    """
)


def test_a_killed_run_resumes_with_two_ranks_or_one(two_ranks, tmp_path):
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    out = tmp_path / "killed"
    proc = torchrun(str(script), str(DML_PRESET), str(out), *DDP)
    assert proc.returncode != 0
    assert [m["epoch"] for m in read_metrics(out)] == [1, 1, 1]  # killed during epoch 2
    shutil.copytree(out, tmp_path / "killed-copy")
    resumed = train_cli(out, "--resume")  # the config comes from the run folder
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert read_metrics(out) == read_metrics(two_ranks)
    for name in ("last", "best", "epoch_002"):
        a = load_file(str(two_ranks / f"checkpoints/{name}.safetensors"))
        b = load_file(str(out / f"checkpoints/{name}.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("model.")), name
    alone = Trainer(load_config(DML_PRESET, DDP), tmp_path / "killed-copy", progress=False)
    assert max_diff(two_ranks, alone.fit(resume=True)) <= 1e-5


WORKER = textwrap.dedent(
    """
    import copy, sys
    import torch, torch.distributed as dist, torch.nn.functional as F
    from torch import nn
    from analysis.methods import create_method
    from analysis.methods.mcl_okd import MCLOKDOptions
    from analysis.training.distributed import RankCollective
    from analysis.training.sync_bn import sync_batchnorm

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = slice(rank * 4, rank * 4 + 4)
    torch.manual_seed(0)
    x, g = torch.randn(8, 3, 5, 5) * 2 + 1, torch.randn(8, 3, 5, 5)
    ref = nn.Sequential(nn.BatchNorm2d(3))
    synced = sync_batchnorm(copy.deepcopy(ref), torch.device("cpu"))
    full, part = x.clone().requires_grad_(), x[mine].clone().requires_grad_()
    y_ref, y = ref(full), synced(part)
    (y_ref * g).sum().backward()
    (y * g[mine]).sum().backward()
    assert torch.allclose(y, y_ref[mine], atol=1e-5), "outputs"
    assert torch.allclose(part.grad, full.grad[mine], atol=1e-5), "input gradients"
    weight_grad = synced[0].weight.grad.clone()
    dist.all_reduce(weight_grad)
    assert torch.allclose(weight_grad, ref[0].weight.grad, atol=1e-5), "weight gradients"
    assert torch.allclose(synced[0].running_var, ref[0].running_var, atol=1e-6), "running var"

    opts = MCLOKDOptions(embed_dim=4, negatives=3)
    alone, ranked = create_method(opts), create_method(opts)
    ranked.collective = RankCollective(world)
    for step in range(2):
        torch.manual_seed(10 + step)
        emb = F.normalize(torch.randn(2, 8, 4), dim=-1)
        target, index = torch.arange(8) % 3, torch.randperm(30)[:8]
        state = torch.get_rng_state()  # new bank rows are drawn at the same point of the stream
        alone.contrastive(emb, target, index=index)
        torch.set_rng_state(state)
        if rank == 1:
            torch.rand(1)  # rank 1 draws other rows: rank 0's must reach it
        ranked.contrastive(emb[:, mine], target[mine], index=index[mine])
    assert torch.equal(alone.bank.vectors, ranked.bank.vectors), "bank rows"
    assert torch.equal(alone.bank.labels, ranked.bank.labels), "bank labels"
    sys.stdout.write(f"ok {rank}\\n")  # one write: the two ranks' lines cannot interleave
    dist.destroy_process_group()
    """
)


def test_batch_norm_statistics_and_memory_banks_are_global(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    proc = torchrun(str(script))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ok 0" in proc.stdout and "ok 1" in proc.stdout


def test_ranks_share_every_global_batch_exactly():
    one = EpochBatches(70, batch_size=32, seed=3)
    ranks = [EpochBatches(70, batch_size=32, seed=3, rank=r, world=2) for r in range(2)]
    for sampler in (one, *ranks):
        sampler.set_epoch(4)
    together = [a + b for a, b in zip(*(list(r) for r in ranks))]
    assert together == list(one) and len(together) == len(one) == 2  # the last 6 are dropped
    assert {e for batch in together for e, _ in batch} == {4}
    tiny = [list(EpochBatches(5, batch_size=8, seed=0, rank=r, world=2)) for r in range(2)]
    assert [len(b[0]) for b in tiny] == [2, 2]  # a lone small batch is shared equally
    assert len(shard(list(range(7)), rank=1, world=2)) == 3
    assert len(shard([0], rank=1, world=2)) == 1  # too small to share: every rank has it all


def test_launches_that_cannot_train_are_refused_in_one_line():
    config = load_config(DML_PRESET, ["data.batch_size=33"])
    with pytest.raises(CollabError, match="must divide evenly among the 2 processes"):
        Dist(rank=0, world=2).check(config)
    placed = load_config(DML_PRESET, ["train.peer_devices=[cuda:0, cuda:1, cuda:1]"])
    with pytest.raises(CollabError, match="set train.peer_devices=\\[\\]"):
        Dist(rank=1, world=2).check(placed)
    Dist().check(config)  # one process: any batch size
    assert not torch.distributed.is_initialized()
