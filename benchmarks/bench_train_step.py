"""Training step of MCL-OKD, CL-ILR and D&C as a multiple of a plain ResNet-32 step.

    python benchmarks/bench_train_step.py [--methods mcl_okd,cl_ilr,divide_cotrain]
                                          [--variants default,nchw,channels_last,fused]
                                          [--rounds 7] [--steps 3] [--batch 64] [--threads 2]
                                          [--set method.option=value ...] [--profile]
                                          [--device cuda]

TARGETS.md: at most 0.8x the authors' code, each measured as a multiple of a plain ResNet-32
step in the same process (batch 64, 32x32 RGB, 100 classes). Every method is built from its
preset (``configs/<method>_digits.yaml``: method options, optimizer, weight-decay rules) at the
papers' sizes: MCL-OKD ResNet-32 x 4 branches sharing the stem and layer1, memory banks of
CIFAR-100's 50,000 rows and 256 negatives; CL-ILR ResNet-32 x 4 heads (binary tree after
layer1 and layer2, backprop rescaling); D&C bottleneck ResNet-110 divided into S = 2 (width
12, the authors' ``dc_resnet``), each network on its own view. A step is what the trainer does:
forward, the method's loss, ``zero_grad``, backward, ``optimizer.step``. The baseline is
``resnet32`` with cross-entropy and SGD (momentum 0.9, weight decay 5e-4).

Everything runs in the trainer's ``train.deterministic: auto`` setting: deterministic
algorithms on the CPU (without PyTorch's NaN fill of new tensors, which the trainer turns off:
with it, a D&C step took 10% longer and an MCL-OKD step 6%), cuDNN autotuning on CUDA. Until
2026-11-30 the script left the CPU in PyTorch's default (non-deterministic) mode, which
runs as fast as the trainer does now; the trainer itself was then 6-10% slower than measured.

Timing: rounds interleave ``--steps`` baseline steps and ``--steps`` steps of each method;
the multiple printed is the median over rounds of (method time / baseline time) of the same
round, so a drift of the machine's speed cancels.

Where the time goes (``--profile``: torch.profiler self-CPU shares, 3 steps, 1 thread, on
the shared 2-core machine, so the shares are rough):

* plain ResNet-32: convolutions 76% (backward 46%, forward 31%), batch norm 15%, ReLU 4%.
* CL-ILR ResNet-32 x 4: 77 convolutions a step against the plain net's 33 (the trunk once,
  layer2 twice, layer3 four times: 7/3 of a ResNet-32's stage work); convolutions 72%, batch
  norm 16%, ReLU 4%; the loss (consensus KL over 4 x 64 x 100 logits) and the gradient
  rescaling under 1%. Bound by the convolutions: the multiple falls only if the same
  convolutions run faster.
* MCL-OKD ResNet-32 x 4: 99 convolutions a step (stem and layer1 once, layer2 and layer3
  four times: 9/3), convolutions 70-75%, batch norm 7-11%, and the memory-bank machinery
  10-15%: gathering 4 x 64 x 257 bank rows of 128 floats (34 MB, ``aten::index`` ~4%),
  the einsum's copy of them into batch-major order (``aten::copy_`` ~2-3%; removed by
  ``MemoryBank.gather``, bit-identical), the score products (``bmm`` ~2%) and drawing 256
  distinct negatives per sample out of 50,000 rows (``uniform_`` + ``topk`` ~2.5%, kept:
  the same draws as before, for the same seed). The gather's 34 MB result is above glibc's
  pinned mmap threshold (32 MB), so a fresh one page-faulted in every step: 23-35 ms a
  step for a 5-6 ms copy. ``MemoryBank.gather`` now copies into a buffer it keeps
  (``index_select(out=)``; bit-identical): the NHWC step 2.31x -> 2.28x (2 threads),
  2.44x -> 2.32x (1 thread).
* D&C ResNet-110/2 (width 12, two views): 2.73x a ResNet-32's convolution multiply-adds but
  ~6.9x its time; convolutions 58% (mostly 1x1 bottleneck convolutions of low arithmetic
  intensity), batch norm 21%, residual add and ReLU 12-14%: memory-bound work on 48-channel
  32 x 32 maps. (MCL-OKD and CL-ILR: 2.96x and 2.30x the multiply-adds, about their times.)
  The 2-thread profile since the in-place sum below: batch norm forward + backward 41%
  (~1 ms and ~2 ms a call on NHWC maps of 12-48 channels), convolutions 44%.
* The residual sum in place (:func:`analysis.models.residual.residual_relu`: ``relu_(out
  .add_(shortcut))`` into the last BN's fresh output while no hook watches it; same bits,
  tests/models/test_residual.py): one sitting of all three at 2 threads, interleaved with
  the out-of-place forward, D&C 5.42x -> 5.13x, MCL-OKD 2.47x -> 2.33x, CL-ILR 1.70x ->
  1.70x; in-place ReLUs inside the block gained nothing more. The baseline keeps the
  out-of-place sum (the unit the targets were set in); the row ``resnet32 in-place sum``
  shows the plain network with it (0.97-1.00x: no gain on basic blocks).
* Channels-last (``train.channels_last``; the CPU default since release 0.3, the ``default``
  variant; ``nchw`` is the layout before it): oneDNN's NHWC convolution kernels are ~1.3x
  faster on these 16-64-channel layers (batch norm and the elementwise ops cost the same). It
  rounds differently from NCHW (another reduction order) but is as deterministic: a resumed
  NHWC run equals an uninterrupted one bit for bit (tests/training/test_trainer.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from analysis.config import load_config  # noqa: E402
from analysis.layout import to_channels_last, uses_channels_last  # noqa: E402
from analysis.methods import create_method  # noqa: E402
from analysis.models import CollaborativeModel, create_model  # noqa: E402
from analysis.models.fused import fuse_peers  # noqa: E402
from analysis.training.optim import build_optimizer  # noqa: E402
from analysis.training.speed import configure_determinism  # noqa: E402
from benchmarks.common import setup  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# method -> (preset overrides at the papers' sizes, authors'-code multiple from TARGETS.md)
SETTINGS = {
    "mcl_okd": (
        ["model.arch=resnet32", "model.options={}", "model.peers=4", "method.bank_size=50000"],
        2.9,
    ),
    "cl_ilr": (["model.arch=resnet32", "model.options={}", "model.peers=4"], 2.1),
    "divide_cotrain": (["model.arch=resnet110_bottleneck", "model.peers=2"], 7.8),
}
NUM_CLASSES, DATASET_SIZE = 100, 50_000


class Shape:
    num_classes, in_chans = NUM_CLASSES, 3
    mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


def method_step(
    name: str, overrides: list[str], batch: int, *, variant: str = "default", device="cpu"
):
    """A closure running one training step of method ``name`` and the objects it uses.

    Variants: ``default`` is what the trainer does on ``device`` (``train.channels_last=auto``:
    the model and every batch in NHWC memory order on the CPU); ``nchw`` and ``channels_last``
    force the layout (``nchw`` is release 0.2's CPU default); ``fused`` runs the peers of a
    container of separate peers as one grouped network in the default layout
    (:func:`analysis.models.fused.fuse_peers`, ``train.fuse_peers``); None is returned where
    the method's model cannot be fused.
    """
    setting = {"nchw": False, "channels_last": True}.get(variant, "auto")
    channels_last = uses_channels_last(setting, torch.device(device))
    overrides = SETTINGS[name][0] + overrides
    cfg = load_config(ROOT / "configs" / f"{name}_digits.yaml", overrides)
    method = create_method(cfg.method)
    model = method.build_model(cfg.model, Shape()).to(device)
    model.train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(cfg.optim, model, weight_decay_scale=method.weight_decay_scale)
    if variant == "fused" and not isinstance(model, CollaborativeModel):
        return None, model
    run = fuse_peers(model) if variant == "fused" else model
    views = method.num_views(model)
    gen = torch.Generator().manual_seed(1)
    shape = (views, batch, 3, 32, 32) if method.per_peer_views else (batch, 3, 32, 32)
    x = torch.rand(shape, generator=gen).to(device)
    x = to_channels_last(x) if channels_last else x
    y = torch.randint(0, NUM_CLASSES, (batch,), generator=gen).to(device)
    state = {"epoch": 0.0}

    def step() -> None:
        index = torch.randperm(DATASET_SIZE, generator=gen)[:batch].to(device)
        loss, _ = method.loss(run(x), y, epoch=state["epoch"], index=index)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state["epoch"] += 1e-3

    return step, model


def plain_step(batch: int, device="cpu", *, reference: bool = True):
    """One CE + SGD step of a plain NCHW ResNet-32 (the baseline).

    The ``reference`` baseline is the unit TARGETS.md's multiples were measured in, kept as it
    was: besides NCHW, its blocks form the residual sum out of place (a no-op hook on every
    block's last BN turns :func:`~analysis.models.residual.residual_relu`'s in-place sum off),
    as every block did before release 0.3. With ``reference=False`` the sum is in place, as in
    the methods' networks (the row ``resnet32 in-place sum``).
    """
    model = create_model("resnet32", num_classes=NUM_CLASSES, in_chans=3).to(device)
    model.train()
    if reference:
        for block in model.modules():
            if isinstance(getattr(block, "last_bn", None), torch.nn.BatchNorm2d):
                block.last_bn.register_forward_hook(lambda *args: None)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.rand(batch, 3, 32, 32, device=device)
    y = torch.randint(0, NUM_CLASSES, (batch,), device=device)

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def sync(device) -> None:
    """Wait for a CUDA device's queued work (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, steps: int, device="cpu") -> tuple[float, float]:
    """Wall and process-CPU seconds per call of ``fn`` over ``steps`` calls (on a CUDA device,
    from an idle queue to the last call's end)."""
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / steps, (time.process_time() - cpu) / steps


def profile(name: str, fn, *, rows: int = 18) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for _ in range(2):
        fn()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            fn()
    print(f"\n== profile: {name} (3 steps) ==")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(SETTINGS))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument(
        "--variants",
        default="default,nchw,fused",
        help="comma list of: default (the trainer's defaults on --device), nchw, channels_last "
        "(train.channels_last=false / true), fused (train.fuse_peers; separate peers only)",
    )
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (cudnn.benchmark on)")
    args = parser.parse_args()
    setup(args.threads)
    # As the trainer: deterministic on the CPU (without the NaN fill), cudnn.benchmark on CUDA.
    configure_determinism("auto", torch.device(args.device))
    variants = [v for v in args.variants.split(",") if v]
    base = plain_step(args.batch, args.device)
    steps = {
        (m, v): method_step(m, args.overrides, args.batch, variant=v, device=args.device)[0]
        for m in args.methods.split(",")
        if m
        for v in variants
    }
    steps = {k: fn for k, fn in steps.items() if fn is not None}
    steps[("resnet32", "in-place sum")] = plain_step(args.batch, args.device, reference=False)
    names = list(steps)
    if args.profile:
        profile("resnet32 plain", base)
        for n in names:
            profile(" ".join(n), steps[n])
        return
    for fn in [base, *steps.values()]:  # warm-up (allocator, first-touch, bank allocation)
        fn(), fn()
    base_times, ratios, cpu_ratios = [], {n: [] for n in names}, {n: [] for n in names}
    for _ in range(args.rounds):
        t0, c0 = timed(base, args.steps, args.device)
        base_times.append(t0)
        for n in names:
            t, c = timed(steps[n], args.steps, args.device)
            ratios[n].append(t / t0)
            cpu_ratios[n].append(c / c0)
    print(
        f"{args.device}: batch {args.batch}, {NUM_CLASSES} classes, "
        f"{torch.get_num_threads()} threads, "
        f"{args.rounds} rounds x {args.steps} steps; plain ResNet-32 step "
        f"{1000 * statistics.median(base_times):.1f} ms (median)"
    )
    print(
        f"{'method':16s} {'variant':14s} {'multiple':>9s} {'min..max':>13s} {'CPU-time':>9s} "
        f"{'authors':>8s} {'target':>7s}"
    )
    for n in names:
        r, c = ratios[n], cpu_ratios[n]
        ref = SETTINGS[n[0]][1] if n[0] in SETTINGS else None
        refs = f"{ref:7.1f}x {0.8 * ref:6.2f}x" if ref else f"{'':8s} {'':7s}"
        print(
            f"{n[0]:16s} {n[1]:14s} {statistics.median(r):8.2f}x {min(r):6.2f}..{max(r):5.2f} "
            f"{statistics.median(c):8.2f}x {refs}"
        )


if __name__ == "__main__":
    main()
