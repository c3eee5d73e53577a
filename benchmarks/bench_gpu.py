"""GPU training throughput per method: fp32 vs bf16, channels-last, torch.compile, K-peer step.

    python benchmarks/bench_gpu.py [--batch 128] [--arch resnet32] [--methods dml,one,...]
                                   [--compile dml] [--repeats 10] [--budget 270] [--json OUT]

Needs CUDA: on a machine without a GPU it says so and exits 0. For every registered method,
with its digits preset's peers and options on 32x32 RGB inputs and 100 classes (resnet8 presets
become ``--arch``, cheap_resnet8 becomes cheap_resnet20, widths the architecture's default), it
times full training steps the way the trainer runs them (autocast, float32 losses, the
optimizer step; cudnn.benchmark on) and prints images/s for

* ``fp32``, ``bf16``, ``fp32+CL`` and ``bf16+CL`` (CL: channels-last weights and inputs),
* ``bf16+CL+compile`` for the methods named by ``--compile`` (compiling takes tens of seconds
  each, so only DML by default; ``--compile all`` for every method),
* ``K-step / sum of single-peer steps`` in bf16+CL: one collaborative step against the K
  single-peer steps (``model.peer(i)`` with cross-entropy) — TARGETS.md asks <= 0.6 on GPUs.

Medians of ``--repeats`` steps timed with CUDA events after warm-up steps. The whole run stays
within ``--budget`` seconds (what is left out is reported), under 5 minutes by default.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from analysis.config import load_config  # noqa: E402
from analysis.layout import to_channels_last  # noqa: E402
from analysis.methods import METHODS, create_method  # noqa: E402
from analysis.training.precision import Precision  # noqa: E402
from analysis.training.speed import compile_peers, configure_determinism  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHAPE = SimpleNamespace(num_classes=100, in_chans=3, mean=(0.5,) * 3, std=(0.25,) * 3)
SETTINGS = (("fp32", False), ("bf16", False), ("fp32", True), ("bf16", True))


def gpu_time(fn: Callable[[], object], *, repeats: int, warmup: int = 3) -> float:
    """Median seconds of ``fn()`` measured with CUDA events, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return statistics.median(times)


def build(name: str, arch: str, device: torch.device):
    """The method and its model as the digits preset sets them, scaled to CIFAR-100 shapes."""
    cfg = load_config(REPO / "configs" / f"{name}_digits.yaml")
    model_cfg = cfg.model
    scaled = {"resnet8": arch, "cheap_resnet8": "cheap_resnet20"}
    model_cfg.arch = scaled.get(model_cfg.arch, model_cfg.arch)
    model_cfg.options = {k: v for k, v in model_cfg.options.items() if k != "width"}
    torch.manual_seed(0)
    method = create_method(cfg.method)
    model = method.build_model(model_cfg, SHAPE).to(device)
    return method, model, cfg.optim.lr


def step_fn(method, model, *, precision: Precision, channels_last: bool, batch: int):
    """One training step as the trainer takes it, on fixed random data."""
    device = next(model.parameters()).device
    views = method.num_views(model)
    shape = (views, batch, 3, 32, 32) if views > 1 else (batch, 3, 32, 32)
    x = torch.rand(shape, device=device)
    x = to_channels_last(x) if channels_last else x
    y = torch.randint(0, SHAPE.num_classes, (batch,), device=device)
    index = torch.arange(batch, device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        with precision.autocast():
            out = model(x)
        loss, _ = method.loss(precision.float32(out), y, epoch=1.0, index=index)
        opt.zero_grad(set_to_none=True)
        precision.backward(loss)
        precision.step(opt)

    return step, x, y, opt


def single_peer_sum(model, x, y, opt, precision: Precision, repeats: int) -> float:
    """Sum over peers of one cross-entropy step of ``model.peer(i)`` alone."""
    x = x[0] if x.dim() == 5 else x
    total = 0.0
    for i in range(model.num_peers):
        peer = model.peer(i)

        def step(peer=peer) -> None:
            with precision.autocast():
                logits = peer(x)
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            precision.backward(loss)
            precision.step(opt)

        total += gpu_time(step, repeats=repeats)
    return total


def bench_method(name: str, args, device: torch.device, deadline: float) -> dict:
    row: dict = {"method": name}
    for prec, cl in SETTINGS:
        if time.monotonic() > deadline:
            row["note"] = "budget spent"
            return row
        method, model, _ = build(name, args.arch, device)
        model = model.to(memory_format=torch.channels_last) if cl else model
        precision = Precision(prec, device)
        step, x, y, opt = step_fn(
            method, model, precision=precision, channels_last=cl, batch=args.batch
        )
        label = prec + ("+CL" if cl else "")
        row[label] = args.batch / gpu_time(step, repeats=args.repeats)
        if prec == "bf16" and cl:
            row["peers"] = model.num_peers
            together = gpu_time(step, repeats=args.repeats)
            alone = single_peer_sum(model, x, y, opt, precision, args.repeats)
            row["K-step/singles"] = together / alone
    if args.compile == "all" or name in args.compile.split(","):
        method, model, _ = build(name, args.arch, device)
        model = model.to(memory_format=torch.channels_last)
        compile_peers(model)
        precision = Precision("bf16", device)
        step, *_ = step_fn(method, model, precision=precision, channels_last=True, batch=args.batch)
        started = time.monotonic()
        step()  # compiles
        torch.cuda.synchronize()
        row["compile_s"] = time.monotonic() - started
        row["bf16+CL+compile"] = args.batch / gpu_time(step, repeats=args.repeats)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--arch", default="resnet32", help="replaces the presets' resnet8")
    parser.add_argument("--methods", default=",".join(METHODS.list()))
    parser.add_argument("--compile", default="dml", help="methods to compile, or 'all'")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--budget", type=float, default=270.0, help="seconds for everything")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu.py needs a CUDA GPU and none is visible; nothing was measured.")
        return 0
    device = torch.device("cuda")
    configure_determinism("auto", device)  # cudnn.benchmark, as the trainer on CUDA
    deadline = time.monotonic() + args.budget
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, batch {args.batch}")
    columns = ["fp32", "bf16", "fp32+CL", "bf16+CL", "bf16+CL+compile"]
    print(f"{'method':16s}" + "".join(f"{c:>17s}" for c in columns) + "  K-step/singles")
    rows = []
    for name in args.methods.split(","):
        try:
            row = bench_method(name, args, device, deadline)
        except Exception as exc:  # one method's failure must not hide the others' figures
            row = {"method": name, "note": f"failed: {type(exc).__name__}: {exc}"[:200]}
        rows.append(row)
        cells = "".join(f"{row[c]:11.0f} img/s" if c in row else f"{'-':>17s}" for c in columns)
        ratio = f"{row['K-step/singles']:8.2f}" if "K-step/singles" in row else "       -"
        print(f"{name:16s}{cells}  {ratio}  {row.get('note', '')}", flush=True)
        torch.cuda.empty_cache()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
