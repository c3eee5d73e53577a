"""Patch localization (class map + box selection) vs captum LayerGradCam vs the forward pass.

    python benchmarks/bench_localization.py [--batch 32] [--rounds 10] [--repeats 3] [--threads 2]

Two settings (TARGETS.md: "class map + box selection >= 0.9x forward-pass throughput, ResNet-20,
32 px, batch 32"): a ResNet-20 peer on 32x32 RGB noise, and the AnchorNet of
``configs/anchornet_shapes.yaml`` (layout small, width 8, expansion 3) on 64x64 shapes. For each,
images per second of

* ``forward``: the peer's plain no-grad forward pass (eval mode),
* ``localize``: :func:`analysis.probes.localization.localize` (the forward pass, the class map
  of the predicted class and greedy top-4 box selection at IoU 0.3),
* ``gradcam``: captum ``LayerGradCam`` at the last feature stage (``layer3`` / ``features_map``)
  for the predicted classes (computed beforehand, not timed): a forward and a backward pass.

Methods are timed in many short interleaved rounds (``median_time`` of a few calls per method
per round), so drifts of a shared machine hit all three alike; the reported speed is the median
over rounds, and each ratio is the median of per-round ratios to the same round's forward pass.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from captum.attr import LayerGradCam  # noqa: E402

from analysis.data.shapes import ShapesDataset  # noqa: E402
from analysis.models import CollaborativeModel, create_model  # noqa: E402
from analysis.probes.localization import localize  # noqa: E402
from benchmarks.common import median_time, setup  # noqa: E402


def resnet20_case(batch: int):
    """ResNet-20 peer (10 classes), 32x32 noise images, Grad-CAM at layer3."""
    net = create_model("resnet20", num_classes=10)
    peer = CollaborativeModel([net], mean=(0.5,) * 3, std=(0.25,) * 3).peer(0).eval()
    images = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return peer, images, net.layer3


def anchornet_case(batch: int):
    """AnchorNet of configs/anchornet_shapes.yaml on 64x64 shapes, Grad-CAM at features_map."""
    net = create_model("anchornet", num_classes=6, layout="small", width=8, expansion=3)
    peer = CollaborativeModel([net], mean=(0.5,) * 3, std=(0.28,) * 3).peer(0).eval()
    data = ShapesDataset(batch, seed=0, split="test")
    images = torch.stack([data[i][0] for i in range(batch)])
    return peer, images, net.features_map


def measure(name: str, case, args: argparse.Namespace) -> dict[str, float]:
    peer, images, layer = case
    with torch.no_grad():
        target = peer(images).argmax(1)
    gradcam = LayerGradCam(peer, layer)

    def forward() -> None:
        with torch.no_grad():
            peer(images)

    methods = {
        "forward": forward,
        "localize": lambda: localize(peer, images),
        "gradcam": lambda: gradcam.attribute(images, target=target, relu_attributions=True),
    }
    rounds: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(args.rounds):
        for method, fn in methods.items():
            rounds[method].append(len(images) / median_time(fn, repeats=args.repeats, warmup=1))
    speeds = {m: statistics.median(v) for m, v in rounds.items()}
    ratios = {
        m: statistics.median(a / f for a, f in zip(rounds[m], rounds["forward"])) for m in methods
    }
    print(f"\n{name} (batch {len(images)}, {images.shape[-1]} px)")
    for method in methods:
        print(f"  {method:9s} {speeds[method]:8.0f} img/s   {ratios[method]:.2f}x forward")
    print(f"  localize / gradcam: {speeds['localize'] / speeds['gradcam']:.2f}x")
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    setup(args.threads)
    resnet = measure("ResNet-20", resnet20_case(args.batch), args)
    anchor = measure("AnchorNet (shapes)", anchornet_case(args.batch), args)
    worst = min(resnet["localize"], anchor["localize"])
    verdict = "meets" if worst >= 0.9 else "misses"
    print(f"\nlocalize / forward, worst case: {worst:.2f}x ({verdict} the >= 0.9x target)")


if __name__ == "__main__":
    main()
