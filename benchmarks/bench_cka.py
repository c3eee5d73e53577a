"""Streaming CKA vs the forward pass alone, and its peak memory at N and 4N (TARGETS.md).

    python benchmarks/bench_cka.py [--n 8000] [--batch 100] [--repeats 3] [--threads 2] [--no-memory]
                                   [--work 12]

Two ResNet-20 peers (10 layers each: conv1 and the nine block outputs) compare all 20 x 20
layer pairs (the 100 cross-peer pairs plus the within-peer ones) over N 32x32 images. Time: the
forward pass alone over the same data vs the full CKA probe, interleaved, medians; target
ratio <= 1.25. Memory: the probe runs in a fresh process at N and at 4N and reports its peak
RSS; target growth < 10% and peak < 1 GB. Work (``--work B``): B batches, each run as a plain
forward pass and as a forward pass with the probe's hooks and update, interleaved, timed as
process CPU time with 1 thread: the probe's extra work, insensitive to other jobs on the machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from analysis.layout import to_channels_last  # noqa: E402
from analysis.models import CollaborativeModel, create_model  # noqa: E402
from analysis.probes.cka import CKAConsumer, cka_layers, cka_probe  # noqa: E402
from analysis.probes.hooks import capture  # noqa: E402
from analysis.probes.model_state import in_layout  # noqa: E402
from analysis.probes.shared_pass import Batch  # noqa: E402
from benchmarks.common import setup  # noqa: E402

BANK = 256  # distinct base images; memory must not grow with N


class NoiseImages(Dataset):
    """N deterministic 3x32x32 images in [0, 1] drawn from a small bank (shifted copies)."""

    def __init__(self, n: int, *, seed: int = 0) -> None:
        self.n = n
        self.bank = torch.rand(BANK, 3, 32, 32, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        shift = (i // BANK) % 32
        return torch.roll(self.bank[i % BANK], shifts=shift, dims=2), 0


def build_model() -> tuple[CollaborativeModel, list[str]]:
    """Two seeded ResNet-20 peers and the 10 layer names probed in each."""
    torch.manual_seed(0)
    model = CollaborativeModel(
        [create_model("resnet20", num_classes=10) for _ in range(2)],
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
    ).eval()
    names = [name for name, _ in model.peers[0].named_modules()]
    layers = [n for n in names if n == "conv1" or (n.startswith("layer") and n.count(".") == 1)]
    assert len(layers) == 10, layers
    return model, layers


@torch.no_grad()
def forward_alone(model: CollaborativeModel, data: Dataset, batch: int) -> None:
    for x, _ in DataLoader(data, batch_size=batch):
        model(x)


@torch.no_grad()
def forward_nhwc(model: CollaborativeModel, data: Dataset, batch: int) -> None:
    """The forward pass in the probe's own memory order on the CPU (NHWC, analysis.layout)."""
    with in_layout(model, True):
        for x, _ in DataLoader(data, batch_size=batch):
            model(to_channels_last(x))


def run_probe(model: CollaborativeModel, layers: list[str], data: Dataset, batch: int):
    return cka_probe(model, data, layers=layers, batch_size=batch)


def timed(fn) -> tuple[float, float, object]:
    """Wall and process CPU seconds of ``fn()``, and its result."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def time_ratio(args: argparse.Namespace) -> None:
    model, layers = build_model()
    data = NoiseImages(args.n)
    forward_alone(model, NoiseImages(2 * args.batch), args.batch)  # warm-up
    run_probe(model, layers, NoiseImages(2 * args.batch), args.batch)
    fwd, cka, fwd_cpu, cka_cpu, nhwc = [], [], [], [], []
    for _ in range(args.repeats):
        wall, cpu, _ = timed(lambda: forward_alone(model, data, args.batch))
        fwd.append(wall)
        fwd_cpu.append(cpu)
        wall, cpu, result = timed(lambda: run_probe(model, layers, data, args.batch))
        cka.append(wall)
        cka_cpu.append(cpu)
        nhwc.append(timed(lambda: forward_nhwc(model, data, args.batch))[0])
    print(
        f"N={args.n} batch={args.batch} threads={args.threads} layers={len(result.layers)} "
        f"cross pairs={result.block(0, 1).numel()} samples={result.num_samples}"
    )
    rows = (("forward alone", fwd), ("forward NHWC ", nhwc), ("CKA probe    ", cka))
    for label, times in rows:
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(
            f"{label}: median {statistics.median(times):.2f} s, min {min(times):.2f} s  (runs: {runs})"
        )
    paired = statistics.median(c / f for c, f in zip(cka, fwd))
    print(
        f"ratio CKA / forward: {statistics.median(cka) / statistics.median(fwd):.3f} (medians), "
        f"{paired:.3f} (median of paired runs), {min(cka) / min(fwd):.3f} (minima)  target <= 1.25"
    )
    own = statistics.median(c / f for c, f in zip(cka, nhwc))
    print(f"ratio CKA / forward in the probe's own NHWC order: {own:.3f} (median of paired runs)")
    print(
        f"process CPU time ratio (less sensitive to other jobs on the machine): "
        f"{statistics.median(cka_cpu) / statistics.median(fwd_cpu):.3f}"
    )


@torch.no_grad()
def work_ratio(args: argparse.Namespace) -> None:
    """CPU seconds per batch of the forward alone vs forward + CKA, 1 thread, interleaved."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # no OpenMP spin-waiting: CPU time is the work done
    try:
        model, layers = build_model()
        consumer = CKAConsumer(*cka_layers(model, layers))
        data = NoiseImages(args.batch)
        x = torch.stack([data[i][0] for i in range(args.batch)])
        plain, probe = [], []
        for _ in range(args.work + 1):  # the first round warms up
            start = time.process_time()
            model(x)
            plain.append(time.process_time() - start)
            start = time.process_time()
            stream = {n: [lambda out, n=n: consumer.take(n, out)] for n in consumer.streams}
            with capture(model, consumer.layers, stream=stream) as acts:  # as the pass does
                model(x)
                consumer.update(acts, Batch(x, None, None, None))
                acts.clear()
            probe.append(time.process_time() - start)
    finally:
        torch.set_num_threads(threads)
    ratio = statistics.median(p / f for p, f in zip(probe[1:], plain[1:]))
    print(
        f"work per batch of {args.batch} (process CPU time, 1 thread, {args.work} batches): "
        f"forward {1000 * statistics.median(plain[1:]):.0f} ms, forward + CKA "
        f"{1000 * statistics.median(probe[1:]):.0f} ms; ratio {ratio:.3f}"
    )


def peak_rss_kb() -> int:
    """Peak resident set size of this process image in kB.

    Linux's ``VmHWM``: ``ru_maxrss`` survives fork + exec, so a child started by a big parent
    would report the parent's size; VmHWM belongs to the new address space.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux


def memory_child(n: int, batch: int) -> None:
    """Run the probe once at ``n`` samples and print the process's peak RSS as JSON."""
    model, layers = build_model()
    base_kb = peak_rss_kb()
    start = time.perf_counter()
    result = run_probe(model, layers, NoiseImages(n), batch)
    seconds = time.perf_counter() - start
    peak_kb = peak_rss_kb()
    report = {"n": n, "base_mb": base_kb / 1024, "peak_mb": peak_kb / 1024, "seconds": seconds}
    print(json.dumps({**report, "samples": result.num_samples}))


def memory_growth(args: argparse.Namespace) -> None:
    peaks = {}
    for n in (args.n, 4 * args.n):
        cmd = [
            sys.executable,
            __file__,
            "--memory-child",
            str(n),
            "--batch",
            str(args.batch),
            "--threads",
            str(args.threads),
        ]
        out = (
            subprocess.run(cmd, capture_output=True, text=True, check=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        peaks[n] = json.loads(out)
        p = peaks[n]
        print(
            f"peak RSS at N={n}: {p['peak_mb']:.0f} MB, of which {p['base_mb']:.0f} MB before the probe "
            f"(imports + model); probe took {p['seconds']:.1f} s"
        )
    small, large = peaks[args.n]["peak_mb"], peaks[4 * args.n]["peak_mb"]
    print(
        f"memory growth N -> 4N: {100 * (large - small) / small:+.1f}%  target < 10%; "
        f"peak {large:.0f} MB  target < 1024 MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true", help="skip the N vs 4N memory runs")
    parser.add_argument("--no-time", action="store_true", help="skip the timing runs")
    parser.add_argument("--work", type=int, default=0, help="batches for the CPU-work ratio")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    setup(args.threads)
    if args.memory_child is not None:
        memory_child(args.memory_child, args.batch)
        return
    if args.work:
        work_ratio(args)
    if not args.no_time:
        time_ratio(args)
    if not args.no_memory:
        memory_growth(args)


if __name__ == "__main__":
    main()
