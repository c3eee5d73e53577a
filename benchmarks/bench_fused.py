"""Fused peers: K-peer step vs the sum of single-peer steps, unfused, fused and vmapped.

    python benchmarks/bench_fused.py [--arch resnet20] [--peers 3] [--batch 64] [--method dml]
                                     [--rounds 5] [--steps 2] [--threads 2]
                                     [--device cuda] [--precision bf16] [--graphs]

TARGETS.md: a K-peer training step (DML, 3 x ResNet-20, batch 64) at most 1.0x the sum of
single-peer steps on the CPU, at most 0.6x on a GPU. Rows, each a full training step
(forward, the method's loss, backward, SGD step) on the same peers and batch:

* ``unfused``: the container's forward, one peer after another (the default);
* ``fused``: :func:`analysis.models.fused.fuse_peers`, one grouped network (``train.fuse_peers``);
* ``fused+CL`` / ``unfused+CL``: the same in channels-last memory order (``train.channels_last``);
* ``unfused+graph`` / ``fused+graph`` (``--graphs``, CUDA only): each step captured once as a
  CUDA graph and replayed, against single-peer steps replayed the same way: what is left once
  kernel launches cost nothing;
* ``vmap``: ``torch.func.vmap`` of ``functional_call`` over the stacked peer parameters
  (batch norm without running statistics, as vmap requires; forward + backward + loss only),
  the other way to fuse, for comparison.

Last, it counts the operations a step runs that compute or copy (views and allocations left
out), unfused, fused and summed over the single-peer steps: on a GPU each launches at least
one kernel, and at these sizes a GPU step is bound by kernel launches (``bench_gpu.py``), so
the fused / single-peer ratio of the counts is what fusing can save there, measurable on the
CPU. DML 3 x ResNet-20: unfused 546, single-peer sum 543, fused 347 while the fused layers
concatenated the peers' weights at every forward and copied back the running statistics
(105 ``cat`` and 21 ``_foreach_copy_``), 215 since the peers' tensors live in fused storage
(:mod:`analysis.models.fused_storage`): 0.64 -> 0.40 of the single-peer sum.

``--device cuda`` times the same rows on a GPU (cudnn.benchmark on; each timing from an idle
queue to the end of its last step) and ``--precision bf16`` runs the forward passes under
autocast with float32 losses, as ``train.precision`` does. Ratios are per round (the denominators measured in the same round), median over rounds; the
process CPU-time ratio is printed beside the wall-time one.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from analysis.config import ModelConfig  # noqa: E402
from analysis.layout import to_channels_last  # noqa: E402
from analysis.methods import METHODS, create_method  # noqa: E402
from analysis.models.fused import fuse_peers  # noqa: E402
from analysis.training.precision import Precision  # noqa: E402
from analysis.training.speed import configure_determinism  # noqa: E402
from benchmarks.bench_train_step import timed  # noqa: E402
from benchmarks.common import setup  # noqa: E402


def inputs(args) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(args.batch, 3, 32, 32, device=args.device)
    return x, torch.randint(0, 100, (args.batch,), device=args.device)


def build(args, *, channels_last: bool, fused: bool, foreach: bool | None = None):
    """A training-step closure on fresh copies of the same peers (seeded); ``foreach``: the
    SGD implementation (None: PyTorch's default, the for-loop on the CPU, foreach on CUDA)."""
    torch.manual_seed(0)
    shape = SimpleNamespace(num_classes=100, in_chans=3, mean=(0.5,) * 3, std=(0.25,) * 3)
    method = create_method(METHODS.get(args.method).Options())
    model = method.build_model(ModelConfig(arch=args.arch, peers=args.peers), shape)
    model = model.to(args.device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    run = fuse_peers(model) if fused else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, foreach=foreach)
    x, y = inputs(args)
    x = to_channels_last(x) if channels_last else x
    index = torch.arange(args.batch, device=args.device)
    precision = Precision(args.precision, torch.device(args.device))

    def step() -> None:  # zero_grad, forward, the method's loss, backward, SGD step
        opt.zero_grad(set_to_none=True)
        with precision.autocast():
            out = run(x)
        loss, _ = method.loss(precision.float32(out), y, epoch=0.0, index=index)
        loss.backward()
        opt.step()

    def single(i: int) -> None:
        opt.zero_grad(set_to_none=True)
        with precision.autocast():
            logits = model.peer(i)(x)
        F.cross_entropy(logits.float(), y).backward()
        opt.step()

    return step, single, model


# Dispatched but launching no kernel: allocations and tensors reinterpreted as they are.
NO_KERNEL = {"empty", "empty_strided", "_unsafe_view", "_reshape_alias"}


def kernel_ops(fn: Callable[[], None]) -> int:
    """How many aten operations one call of ``fn`` runs that compute or copy (not views or
    allocations): on a GPU each launches at least one kernel."""
    from torch.utils._python_dispatch import TorchDispatchMode

    count = [0]

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not func.is_view and func.overloadpacket.__name__ not in NO_KERNEL:
                count[0] += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return count[0]


def print_kernel_ops(args) -> None:
    """Operations per step (the GPU's launches) of the unfused and fused steps and the sum of
    the single-peer steps, each with a foreach SGD as on CUDA."""
    counts = {}
    for fused in (False, True):
        step, single, _ = build(args, channels_last=False, fused=fused, foreach=True)
        step()  # the first call fuses the peers' storage
        counts["fused" if fused else "unfused"] = kernel_ops(step)
        if not fused:
            for i in range(args.peers):
                single(i)
            counts["single-peer sum"] = sum(
                kernel_ops(lambda i=i, s=single: s(i)) for i in range(args.peers)
            )
    print(
        "operations per step that launch kernels on a GPU (foreach SGD): "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + f"; fused / single-peer sum {counts['fused'] / counts['single-peer sum']:.2f}"
    )


def graphed(step) -> Callable[[], None]:
    """``step`` captured once in a CUDA graph; returns its replay (PyTorch's whole-network
    capture recipe: warm-up steps on a side stream, then one captured step whose gradients
    live in the graph's memory pool, since ``step`` sets them to None before its backward)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def vmapped(model, args):
    """forward + CE + backward of all peers through vmap(functional_call) (no SGD step)."""
    from torch.func import functional_call, replace_all_batch_norm_modules_, stack_module_state

    peers = [copy.deepcopy(p) for p in model.peers]
    for p in peers:
        replace_all_batch_norm_modules_(p)  # vmap cannot update running statistics in place
    params, buffers = stack_module_state(peers)
    params = {k: v.requires_grad_() for k, v in params.items()}
    base = copy.deepcopy(peers[0]).to("meta")
    x, y = inputs(args)
    precision = Precision(args.precision, torch.device(args.device))

    def one(p, b, xb):
        return functional_call(base, (p, b), (xb,))

    def step() -> None:
        with precision.autocast():
            logits = torch.vmap(one, in_dims=(0, 0, None))(params, buffers, model.normalize(x))
        F.cross_entropy(logits.float().flatten(0, 1), y.repeat(args.peers)).backward()
        for v in params.values():
            v.grad = None

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--peers", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--method", default="dml", choices=METHODS.list())
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-vmap", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (cudnn.benchmark on)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument(
        "--graphs", action="store_true", help="CUDA only: also each step replayed as a CUDA graph"
    )
    args = parser.parse_args()
    if args.graphs and args.device == "cpu":
        parser.error("--graphs needs --device cuda")
    setup(args.threads)
    # As the trainer: deterministic on the CPU (without the NaN fill), cudnn.benchmark on CUDA.
    configure_determinism("auto", torch.device(args.device))
    rows = {}
    singles = {}
    for cl in (False, True):
        for fused in (False, True):
            step, single, model = build(args, channels_last=cl, fused=fused)
            rows[("fused" if fused else "unfused") + ("+CL" if cl else "")] = step
            if not fused:
                singles["+CL" if cl else ""] = single
    if not args.no_vmap:
        rows["vmap"] = vmapped(build(args, channels_last=False, fused=False)[2], args)
    if args.graphs:
        try:
            for fused in (False, True):
                step, single, _ = build(args, channels_last=False, fused=fused)
                rows[("fused" if fused else "unfused") + "+graph"] = graphed(step)
                if not fused:
                    replays = [graphed(lambda i=i, s=single: s(i)) for i in range(args.peers)]
                    singles["+graph"] = lambda i, r=replays: r[i]()
        except Exception as exc:  # the other rows still stand
            print(f"CUDA graph rows left out: {type(exc).__name__}: {str(exc)[:200]}")
            rows = {k: v for k, v in rows.items() if not k.endswith("+graph")}
            singles.pop("+graph", None)
    wall = {k: [] for k in rows}
    cpu = {k: [] for k in rows}
    for fn in [*rows.values()]:
        fn()
    for _ in range(args.rounds):
        base = {}
        for tag, single in singles.items():
            per_peer = [
                timed(lambda i=i, s=single: s(i), args.steps, args.device)
                for i in range(args.peers)
            ]
            base[tag] = (sum(t for t, _ in per_peer), sum(c for _, c in per_peer))
        for name, fn in rows.items():
            t, c = timed(fn, args.steps, args.device)
            b = base[name[name.index("+") :] if "+" in name else ""]
            wall[name].append(t / b[0])
            cpu[name].append(c / b[1])
    print(
        f"{args.method}: {args.peers} x {args.arch}, batch {args.batch}, {args.device}, "
        f"{args.precision}, "
        f"{torch.get_num_threads()} threads, {args.rounds} rounds x {args.steps} steps"
    )
    target = "1.0 on the CPU" if args.device == "cpu" else "0.6 on a GPU"
    print(
        f"K-peer step / sum of single-peer steps (same memory format), medians; target <= {target}"
    )
    for name in rows:
        print(
            f"  {name:11s} wall {statistics.median(wall[name]):6.3f}x  "
            f"CPU {statistics.median(cpu[name]):6.3f}x"
        )
    print_kernel_ops(args)


if __name__ == "__main__":
    main()
