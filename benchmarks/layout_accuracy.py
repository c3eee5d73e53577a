"""How exact float32 training is in NCHW and in NHWC (``train.channels_last``) on this CPU.

    python benchmarks/layout_accuracy.py [--batch 64] [--threads 1] [--shift 3]

Each row runs a layer (or a whole plain ResNet-32 with cross-entropy) forward and backward in
float32 with NCHW and with NHWC tensors, and in float64, and prints the largest error of the
float32 result relative to the largest float64 magnitude: output ``y``, input gradient ``gx``
and parameter gradients ``gw`` (all parameters together). Inputs are N(0, 1) plus ``--shift``
(batch norm sees post-ReLU activations whose mean is far from 0).

Measured (torch 2.14.1, 1 thread, batch 64, 32x32, shift 3): convolutions agree with float64
to ~5e-7 (outputs) and ~3e-6-9e-6 (weight gradients) in either layout; batch norm in NHWC sums
each channel in float32 one element after another, ~1e-5 relative (5e-5 outputs, 1.5e-4 weight
gradients at shift 30), against ~1e-7 in NCHW's cascaded sums. Through a whole ResNet-32 at
initialisation, where a rounding difference can flip a ReLU, the parameter gradients differ
from float64 by 2.3e-3 (relative to the largest) in NCHW and 1.0e-2 in NHWC: both float32
rounding, far below bf16 autocast's and the minibatch's own noise, but NHWC's is ~4x NCHW's,
and the two layouts never agree bit for bit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from analysis.models import create_model  # noqa: E402

LAYOUTS = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}


def run(make, x: torch.Tensor, dtype, layout, loss=None):
    torch.manual_seed(1)
    module = make().to(dtype).to(memory_format=layout).train()
    xi = x.to(dtype).contiguous(memory_format=layout).detach().clone(memory_format=layout)
    xi.requires_grad_()
    y = module(xi)
    if loss is None:
        g = torch.randn(y.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        y.backward(g.to(dtype))
    else:
        loss(y).backward()
    grads = [p.grad.double().flatten() for p in module.parameters()]
    gw = torch.cat(grads) if grads else torch.zeros(1, dtype=torch.float64)
    return y.detach().double(), xi.grad.double(), gw


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def row(name: str, make, x: torch.Tensor, loss=None) -> None:
    ref = run(make, x, torch.float64, torch.contiguous_format, loss)
    cells = []
    for tag, layout in LAYOUTS.items():
        y, gx, gw = run(make, x, torch.float32, layout, loss)
        errors = (relative(y, ref[0]), relative(gx, ref[1]), relative(gw, ref[2]))
        cells.append(f"{tag}: y {errors[0]:.1e} gx {errors[1]:.1e} gw {errors[2]:.1e}")
    print(f"{name:22s} " + "   ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shift", type=float, default=3.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    b, s = args.batch, args.shift
    x16 = torch.randn(b, 16, 32, 32, generator=gen) + s
    print(f"largest error relative to float64 (batch {b}, {args.threads} thread(s), shift {s})")
    row("conv 3x3 16->16", lambda: nn.Conv2d(16, 16, 3, padding=1, bias=False), x16)
    row("conv 3x3 s2 16->32", lambda: nn.Conv2d(16, 32, 3, 2, padding=1, bias=False), x16)
    row("batch norm 16", lambda: nn.BatchNorm2d(16), x16)
    row("relu", nn.ReLU, x16)
    labels = torch.randint(0, 100, (b,), generator=gen)
    images = torch.rand(b, 3, 32, 32, generator=gen)
    row(
        "ResNet-32 + CE",
        lambda: create_model("resnet32", num_classes=100, in_chans=3),
        images,
        loss=lambda y: F.cross_entropy(y, labels),
    )


if __name__ == "__main__":
    main()
