"""What only a CUDA GPU can check, in one short call: fused peers, every method, exact resume.

    python benchmarks/gpu_checks.py [--device cuda] [--work DIR]

1. ``fused``: :func:`analysis.models.fused.fuse_peers` on the device (TF32 off) computes the
   unfused container's logits and parameter gradients: to 1e-10 in float64, and in float32 as
   close to the float64 result as the unfused model (DML 3 x ResNet-20 on one batch; D&C
   bottleneck peers on per-peer views).
2. ``methods``: every method's digits preset trains a few steps on the device in bf16 with
   channels-last (cudnn.benchmark on), the losses stay finite, and the run loads on the CPU.
3. ``resume``: a deterministic fp32 run killed mid-epoch (SIGKILL) and resumed on the device
   has the metrics and checkpoints of an uninterrupted one, bit for bit. On failure it says
   what differs, and whether two uninterrupted runs differ too (nondeterministic kernels).

One PASS/FAIL line per check (exit status 1 if any failed). ``--device cpu`` runs the same
checks on the CPU, which the test suite covers already; the point is the GPU.
"""

from __future__ import annotations

import argparse
import copy
import math
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from analysis.config import ModelConfig, load_config  # noqa: E402
from analysis.methods import METHODS, create_method  # noqa: E402
from analysis.models.fused import fuse_peers  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FEW = ("train.epochs=1", "train.max_steps_per_epoch=3", "data.batch_size=32")
TINY = (
    "model.arch=test_cnn",
    "model.options={}",
    "train.epochs=3",
    "train.max_steps_per_epoch=4",
    "data.batch_size=32",
    "train.deterministic=true",
)
# One training run in a fresh process (argv: preset, folder, kill|whole|resume, overrides...), so
# that the compared runs start from the same process state (cuBLAS workspace, TF32 flags).
TRAIN = textwrap.dedent(
    """
    import os, signal, sys
    from analysis.config import load_config
    from analysis.training import Callback, Trainer

    class KillMidEpoch(Callback):
        def on_step_end(self, trainer, *, epoch, step):
            if epoch == 1 and step == 2:
                os.kill(os.getpid(), signal.SIGKILL)

    preset, folder, mode, overrides = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    callbacks = [KillMidEpoch()] if mode == "kill" else []
    trainer = Trainer(load_config(preset, overrides), folder, callbacks=callbacks, progress=False)
    trainer.fit(resume=mode == "resume")
    """
)


def relative_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def logits_and_grads(model, run, x, y) -> list[torch.Tensor]:
    """Peer logits and every parameter's gradient of a cross-entropy step through ``run``."""
    model.zero_grad(set_to_none=True)
    logits = run(x).peer_logits
    F.cross_entropy(logits.flatten(0, 1), y.repeat(logits.shape[0])).backward()
    return [logits.detach().double()] + [p.grad.double() for p in model.parameters()]


def check_fused(device: torch.device) -> str:
    """float64: fused equals unfused to 1e-10. float32: fused is as close to the float64 result
    as unfused is (a fresh 100-class network's float32 gradients are themselves ~3% off)."""
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        return _check_fused(device)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


def _check_fused(device: torch.device) -> str:
    shape = type("Shape", (), {"num_classes": 100, "in_chans": 3, "mean": (0.5,) * 3})
    shape.std = (0.25,) * 3
    worst64, excess32 = 0.0, 0.0
    for name, arch, options, views in (
        ("dml", "resnet20", {}, False),
        ("divide_cotrain", "dc_resnet", {"depth": 20, "block": "bottleneck", "width": 8}, True),
    ):
        torch.manual_seed(0)
        method = create_method(METHODS.get(name).Options())
        model_cfg = ModelConfig(arch=arch, peers=2 if views else 3, options=options)
        model = method.build_model(model_cfg, shape).to(device)
        x = torch.rand((2, 64, 3, 32, 32) if views else (64, 3, 32, 32), device=device)
        y = torch.randint(0, 100, (64,), device=device)
        model64, x64 = copy.deepcopy(model).double(), x.double()
        exact = logits_and_grads(model64, model64, x64, y)
        fused64 = logits_and_grads(model64, fuse_peers(model64), x64, y)
        worst64 = max([worst64] + [relative_gap(f, e) for f, e in zip(fused64, exact)])
        plain = logits_and_grads(model, model, x, y)
        fused = logits_and_grads(model, fuse_peers(model), x, y)
        plain_err = max(relative_gap(p, e) for p, e in zip(plain, exact))
        fused_err = max(relative_gap(f, e) for f, e in zip(fused, exact))
        excess32 = max(excess32, fused_err / max(plain_err, 1e-7))
    ok = worst64 <= 1e-10 and excess32 <= 4.0
    return (
        f"{'PASS' if ok else 'FAIL'} fused: float64 gap {worst64:.1e} (<= 1e-10); float32 error "
        f"vs float64 at most {excess32:.2f}x the unfused model's (<= 4; largest tensor gap)"
    )


def check_methods(device: torch.device, work: Path) -> str:
    from analysis.runs import load_run, read_metrics
    from analysis.training import Trainer

    failed = []
    for method in METHODS.list():
        overrides = [*FEW, f"train.device={device.type}", "train.precision=bf16"]
        config = load_config(REPO / "configs" / f"{method}_digits.yaml", overrides)
        config.train.channels_last = True
        try:
            run = Trainer(config, work / f"method-{method}", progress=False).fit()
            losses = [m["loss"] for m in read_metrics(run)]
            load_run(run)  # on the CPU
            if not all(math.isfinite(v) for v in losses):
                failed.append(f"{method} (loss {losses})")
        except Exception as exc:  # report every method, not only the first failure
            failed.append(f"{method} ({type(exc).__name__}: {str(exc)[:120]})")
    n = len(METHODS.list())
    if failed:
        return f"FAIL methods: {len(failed)} of {n} failed: " + "; ".join(failed)
    return f"PASS methods: all {n} trained in bf16 + channels-last with finite losses and loaded"


def check_resume(device: torch.device, work: Path) -> str:
    preset = REPO / "configs" / "dml_digits.yaml"
    overrides = [*TINY, f"train.device={device.type}"]
    whole, killed = work / "whole", work / "killed"

    def train(folder: Path, mode: str) -> int:
        args = [sys.executable, "-c", TRAIN, str(preset), str(folder), mode, *overrides]
        return subprocess.run(args, cwd=REPO).returncode

    if train(whole, "whole") != 0 or train(work / "again", "whole") != 0:
        return "FAIL resume: an uninterrupted run failed"
    if (code := train(killed, "kill")) != -9:
        return f"FAIL resume: the killed run exited {code}, not by SIGKILL"
    if train(killed, "resume") != 0:
        return "FAIL resume: the resumed run failed"
    resumed = differences(whole, killed)
    if not resumed:
        return "PASS resume: killed mid-epoch and resumed equals uninterrupted, bit for bit"
    # Two uninterrupted runs that differ point at nondeterministic kernels, not at the resume.
    again = differences(whole, work / "again") or "none"
    return f"FAIL resume: {resumed}; between two uninterrupted runs: {again}"


def differences(a: Path, b: Path) -> str:
    """How two runs' metrics and checkpoints differ ('' when identical bit for bit)."""
    from safetensors.torch import load_file

    from analysis.runs import read_metrics

    found = []
    epochs = [m["epoch"] for m, n in zip(read_metrics(a), read_metrics(b)) if m != n]
    if epochs:
        found.append(f"metrics differ from epoch {epochs[0]}")
    for name in ("last", "best", "epoch_003"):
        x = load_file(str(a / f"checkpoints/{name}.safetensors"))
        y = load_file(str(b / f"checkpoints/{name}.safetensors"))
        if x.keys() != y.keys():
            found.append(f"{name}: other tensor names")
            continue
        gaps = [(x[k].double() - y[k].double()).abs().max().item() for k in x if x[k].numel()]
        if any(g > 0 for g in gaps) or any(not torch.equal(x[k], y[k]) for k in x):
            found.append(f"{name}: weights differ by up to {max(gaps):.1e}")
    return "; ".join(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--work", type=Path, help="folder for the runs (default: a temporary one)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_checks.py needs a CUDA GPU and none is visible; nothing was checked.")
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-checks-"))
    lines = []
    for check in (
        lambda: check_fused(device),
        lambda: check_methods(device, work),
        lambda: check_resume(device, work),
    ):
        try:
            lines.append(check())
        except Exception as exc:
            lines.append(f"FAIL {type(exc).__name__}: {str(exc)[:300]}")
        print(lines[-1], flush=True)
    return 0 if all(line.startswith("PASS") for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
