"""All pass-based probes of a run over its test set vs one plain forward pass (target <= 1.5x).

    python benchmarks/bench_probes.py [--run runs/dml-digits] [--repeats 3]

Both sides run in this process over the same data and batch size, with a warm model; the
probes are computed fresh (no cache). Also prints the full `collab analyze` suite time
(including weight-only and per-checkpoint probes) for reference.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import analysis  # noqa: E402
from analysis.probes import ACTIVATIONS, PROBES, run_suite, spec, unmet  # noqa: E402
from analysis.probes.shared_pass import run_pass  # noqa: E402
from benchmarks.common import median_time, setup  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run", default=str(Path(__file__).resolve().parent.parent / "runs" / "dml-digits")
    )
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    setup()
    run = analysis.load_run(args.run)
    data = run.dataset("test")
    images = torch.stack([data[i][0] for i in range(len(data))])  # decode once for both sides

    def forward_only() -> None:
        with torch.no_grad():
            for x in DataLoader(images, batch_size=args.batch):
                run.model(x)

    dataset = torch.utils.data.TensorDataset(images, torch.zeros(len(images), dtype=torch.long))
    specs = [spec(name) for name in PROBES]
    pass_probes = [s for s in specs if s.reads == ACTIVATIONS and not unmet(run, s.needs)]

    def probes_pass() -> None:
        run_pass(
            run.model,
            dataset,
            [s.consumer(run.model, dataset, s.options()) for s in pass_probes],
            batch_size=args.batch,
        )

    forward = median_time(forward_only, repeats=args.repeats, warmup=1)
    probes = median_time(probes_pass, repeats=args.repeats, warmup=1)
    start = time.perf_counter()
    run_suite(run, refresh=True)
    suite = time.perf_counter() - start
    print(
        f"{run.name}: {len(images)} test images, batch {args.batch}, {torch.get_num_threads()} threads"
    )
    print(f"  forward pass alone              {forward:8.3f} s")
    print(f"  {'+'.join(p.name for p in pass_probes)} in one shared pass {probes:8.3f} s")
    print(f"  ratio                           {probes / forward:8.2f}   (target <= 1.5)")
    print(
        f"  whole suite incl. kernels, dynamics, attributions: {suite:.1f} s (not part of the target)"
    )


if __name__ == "__main__":
    main()
