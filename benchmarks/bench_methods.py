"""Every registered method under one fixed small budget, next to `independent`.

    python benchmarks/bench_methods.py [--epochs 6] [--seeds 0] [--only dml one ...]

Trains each method's preset (`configs/<method>_digits.yaml`; DCL: `configs/dcl_multidigit.yaml`)
for the same number of epochs and seeds and prints a Markdown table of the final test accuracy:
best peer, mean peer, ensemble, and parameters (all peers / what inference needs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from analysis.config import load_config  # noqa: E402
from analysis.runs import load_run  # noqa: E402
from analysis.training import Trainer  # noqa: E402
from benchmarks.common import setup  # noqa: E402


def presets() -> list[Path]:
    found = sorted(REPO.glob("configs/*_digits.yaml")) + sorted(REPO.glob("configs/dcl_*.yaml"))
    independent = REPO / "configs" / "independent_digits.yaml"
    return [independent] + [p for p in found if p != independent]


def run_one(preset: Path, *, epochs: int, seed: int, out: Path) -> dict:
    config = load_config(
        preset,
        [f"train.epochs={epochs}", f"train.seed={seed}", "train.save_every=0", "train.threads=2"],
    )
    start = time.perf_counter()
    Trainer(config, out, progress=False).fit()
    seconds = time.perf_counter() - start
    run = load_run(out, checkpoint="last")
    final = [m for m in run.metrics if m["split"] == "test"][-1]
    return {
        "method": config.method.name,
        "data": config.data.name,
        "best": max(final["peer_acc"]),
        "mean": statistics.fmean(final["peer_acc"]),
        "ensemble": final["ensemble_acc"],
        "params": run.manifest["total_params"],
        "peer_params": max(run.manifest["param_counts"]),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="+", help="preset stems to run, e.g. dml_digits one_digits")
    args = parser.parse_args()
    setup(threads=2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in presets():
            if args.only and preset.stem not in args.only and preset.stem != "independent_digits":
                continue
            results = [
                run_one(preset, epochs=args.epochs, seed=s, out=Path(tmp) / f"{preset.stem}-{s}")
                for s in args.seeds
            ]
            avg = {
                k: statistics.fmean(r[k] for r in results)
                for k in ("best", "mean", "ensemble", "seconds")
            }
            rows.append((preset.stem, results[0], avg))
            print(f"done {preset.stem}: ensemble {100 * avg['ensemble']:.2f}%", file=sys.stderr)
    seeds = " ".join(map(str, args.seeds))
    print(f"\n{args.epochs} epochs, seeds {seeds}, final test accuracy (%), mean over seeds\n")
    print(
        "| preset | method | data | best peer | mean peer | ensemble | params (all) | params (largest peer) | train s |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for stem, r, avg in rows:
        print(
            f"| {stem} | {r['method']} | {r['data']} | {100 * avg['best']:.2f} | {100 * avg['mean']:.2f} "
            f"| {100 * avg['ensemble']:.2f} | {r['params']:,} | {r['peer_params']:,} | {avg['seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
