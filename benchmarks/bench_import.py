"""Import time and memory of the library beside a bare ``import torch`` (TARGETS.md).

    python benchmarks/bench_import.py [--repeats 5]

Each statement runs in a fresh interpreter (interleaved, ``--repeats`` times): its wall time
(median) and its peak RSS (Linux ``VmHWM``), then the time and memory it adds beyond ``import
torch`` measured in the same run. Target: what is imported beyond torch adds < 100 MB; none of
captum, matplotlib, plotly, scipy, scikit-learn, streamlit or torchvision is loaded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("captum", "matplotlib", "plotly", "scipy", "sklearn", "streamlit", "torchvision")
STATEMENTS = {
    "python": "pass",
    "import torch": "import torch",
    "import analysis": "import analysis",
    "import analysis.probes": "import analysis.probes",
    "load a run + model": "import analysis, analysis.probes\n"
    "analysis.load_run('runs/dml-digits').model",
}
MEASURE = """
import time
start = time.perf_counter()
{code}
seconds = time.perf_counter() - start
import json, sys
from pathlib import Path
status = Path("/proc/self/status").read_text().splitlines()
peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
heavy = [m for m in {heavy!r} if m in sys.modules]
print(json.dumps({{"seconds": seconds, "peak_mb": peak / 1024, "heavy": heavy}}))
"""


def measure(code: str) -> dict:
    script = MEASURE.format(code=code, heavy=HEAVY)
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    found: dict[str, list[dict]] = {label: [] for label in STATEMENTS}
    for _ in range(args.repeats):
        for label, code in STATEMENTS.items():
            found[label].append(measure(code))
    seconds = {k: statistics.median(r["seconds"] for r in v) for k, v in found.items()}
    peak = {k: statistics.median(r["peak_mb"] for r in v) for k, v in found.items()}
    torch_s, torch_mb = seconds["import torch"], peak["import torch"]
    print(
        f"{'statement':<24} {'time':>7} {'/ torch':>8} {'peak RSS':>9} {'beyond torch':>13}  heavy"
    )
    for label in STATEMENTS:
        heavy = sorted({m for r in found[label] for m in r["heavy"]})
        print(
            f"{label:<24} {seconds[label]:6.2f}s {seconds[label] / torch_s:7.2f}x "
            f"{peak[label]:7.0f}MB {peak[label] - torch_mb:+11.0f}MB  {', '.join(heavy) or '-'}"
        )
    extra = peak["load a run + model"] - torch_mb
    print(f"memory beyond torch after loading a run: {extra:+.0f} MB  target < 100 MB")


if __name__ == "__main__":
    main()
