"""K-peer training step vs the sum of single-peer steps (TARGETS.md: ratio <= 1.05).

    python benchmarks/bench_step.py [--arch resnet20] [--peers 3] [--batch 64] [--method dml]

Both sides run in this process on the same peers and batch; the ratio is what counts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F

from analysis.config import ModelConfig
from analysis.methods import METHODS, create_method
from benchmarks.common import median_time, setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--peers", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--method", default="dml", choices=METHODS.list())
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    setup()
    shape = SimpleNamespace(num_classes=10, in_chans=3, mean=(0.5,) * 3, std=(0.25,) * 3)
    method = create_method(METHODS.get(args.method).Options())
    model = method.build_model(ModelConfig(arch=args.arch, peers=args.peers), shape)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.rand(args.batch, 3, 32, 32), torch.randint(0, 10, (args.batch,))

    def collaborative_step() -> None:
        loss, _ = method.loss(model(x), y, epoch=0.0, index=torch.arange(args.batch))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def single_step(i: int) -> None:
        loss = F.cross_entropy(model.peer(i)(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    together = median_time(collaborative_step, repeats=args.repeats)
    alone = sum(
        median_time(lambda i=i: single_step(i), repeats=args.repeats) for i in range(args.peers)
    )
    print(
        f"{args.method}: {args.peers} x {args.arch}, batch {args.batch}, {torch.get_num_threads()} threads"
    )
    print(f"  collaborative step      {1000 * together:8.1f} ms")
    print(f"  sum of single-peer steps {1000 * alone:7.1f} ms")
    print(f"  ratio                   {together / alone:8.3f}   (target <= 1.05)")


if __name__ == "__main__":
    main()
