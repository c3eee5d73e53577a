"""Dissection and reconstruction on the shipped runs: time, sizes, accuracy, peer agreement.

    python benchmarks/bench_dissection.py [--threads 2] [--classes 0,3,7] [--skip-sweep]
        [--skip-dissect]

For each run: the time to dissect every peer on every class (test split, default options), the
mean share of channels a class keeps, and how alike the peers' class-wise parts are: the
matched mask overlap (channels matched by activation correlation) against its chance level,
the index-wise overlap (meaningless across peers, for contrast) and the agreement of the peers'
class x class overlap matrices. Then ``collab reconstruct`` of peer 0 for ``--classes`` on
dml-digits and on the sweep's dml seed 0: parameters, FLOPs and test accuracy on those classes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from analysis.probes.dissection import dissect  # noqa: E402
from analysis.probes.reconstruct import reconstruct, summary  # noqa: E402
from analysis.runs import load_run  # noqa: E402
from benchmarks.common import setup  # noqa: E402

SWEEP = REPO / "runs" / "sweep-textured-shapes" / "runs"


def describe(path: Path) -> str:
    run = load_run(path)
    found = dissect(run.model, run.dataset("test"))
    kept = (found.sizes.double() / torch.tensor(found.widths)).mean().item()
    pairs = found.matched_overlap.mean().item(), found.chance_overlap.mean().item()
    return (
        f"{path.relative_to(REPO)}: {len(found.peers)} peers x {len(found.classes)} classes in "
        f"{found.seconds:.1f}s ({found.seconds / len(found.peers):.1f}s/peer); kept {kept:.0%}; "
        f"matched overlap {pairs[0]:.3f} vs chance {pairs[1]:.3f} "
        f"(index-wise {found.raw_overlap.mean().item():.3f}); "
        f"class-overlap agreement {found.overlap_agreement.nanmean().item():.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--classes", default="0,3,7")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--skip-dissect", action="store_true", help="only the reconstructions")
    args = parser.parse_args()
    setup(args.threads)
    runs = [REPO / "runs" / "dml-digits", REPO / "runs" / "independent-digits"]
    if not args.skip_sweep:
        runs += [
            SWEEP / f"preset={p}" / f"seed-{s}" for p in ("dml", "independent") for s in range(3)
        ]
    for path in [] if args.skip_dissect else runs:
        print(describe(path), flush=True)
    classes = [int(c) for c in args.classes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for i, path in enumerate([REPO / "runs" / "dml-digits", SWEEP / "preset=dml" / "seed-0"]):
            out = Path(tmp) / f"rec{i}"
            print(summary(reconstruct(path, classes=classes, out=out), out), flush=True)


if __name__ == "__main__":
    main()
