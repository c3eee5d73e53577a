"""Reconstruct a smaller network for a few classes from a run's class-wise parts (DRNet).

``collab reconstruct RUN --classes 0,3,7 --out NEW`` dissects one peer on the chosen classes
(:mod:`analysis.probes.dissection`, on the training split), keeps the union of those classes'
masks in every channel unit, removes every other channel (:func:`~analysis.models.surgery.prune`)
and keeps only the chosen classes' logits. The masks are calibrated on training images of the
chosen classes: the largest threshold (the dissection's, then lower ones) whose masked peer
stays within ``tolerance`` of the peer's own accuracy there; if none does, the gates are learned
again with a smaller L1 weight (:data:`L1_STEPS`), and every channel is kept as a last resort. The result is written as a new run folder of one peer
(model ``dissected``, method ``independent``) whose manifest restricts the dataset to the chosen
classes (relabelled 0..k-1), so ``load_run`` and ``collab eval`` work on it as on any run. The
manifest's ``reconstruction`` records the size, FLOPs and test accuracy on the chosen classes of
the new network and of the original peer (its logits restricted to the chosen classes).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from analysis.config import config_from_dict
from analysis.data.subset import check_classes, restrict_classes
from analysis.errors import CollabError
from analysis.methods import create_method
from analysis.models import count_parameters
from analysis.models.channel_units import channel_units
from analysis.models.surgery import prune, scaled_channels
from analysis.probes.class_map import find_network
from analysis.probes.dissection import DissectionOptions, dissect
from analysis.probes.flops import count_flops
from analysis.probes.gates import to_masks
from analysis.probes.model_state import eval_mode
from analysis.runs import (
    claim_run_folder,
    load_run,
)
from analysis.runs.finished import write_finished_run


def parse_classes(text: str) -> list[int]:
    """``"0,3,7"`` -> ``[0, 3, 7]``; anything else is a one-line CollabError."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise CollabError(
            f"--classes {text!r} is not a comma-separated list of class indices; use e.g. 0,3,7"
        ) from None


@torch.no_grad()
def subset_accuracy(
    module: nn.Module, dataset, classes: list[int] | None = None, batch_size: int = 256
) -> float:
    """Accuracy of ``module`` on ``dataset`` (labels 0..k-1); with ``classes``, only those logits
    of ``module`` count (the original network judged on the chosen classes alone)."""
    correct = total = 0
    with eval_mode(module):
        for x, y, *_ in DataLoader(dataset, batch_size=batch_size):
            logits = module(x)
            logits = logits if classes is None else logits[:, classes]
            correct += int((logits.argmax(1) == y).sum())
            total += len(y)
    return correct / max(total, 1)


#: Thresholds tried, in order, below the dissection's own until the union keeps the accuracy.
THRESHOLDS = (0.5, 0.3, 0.2, 0.1, 0.05, 0.0)
#: L1 weights tried, below the dissection's own, when no threshold keeps the accuracy.
L1_STEPS = (1.0, 0.3, 0.1)


def calibrated_keep(
    found, classes: list[int], peer: nn.Module, units, calibration, *, start, tolerance
):
    """The union of the classes' masks at the largest threshold whose masked peer is at most
    ``tolerance`` less accurate (on ``calibration``, the chosen classes' logits alone) than the
    peer itself, trying ``start`` and then :data:`THRESHOLDS` below it; every channel if none
    is. Returns ``(keep, threshold or None, accuracy,
    original accuracy)``."""
    net = find_network(peer)
    rows = [found.classes.index(c) for c in classes]
    gates = {u: found.gates[f"{found.peers[0]}:{u}"][rows] for u in found.units}
    target = subset_accuracy(peer, calibration, classes)
    for threshold in [start] + [t for t in THRESHOLDS if t < start]:
        keep = {u: m.any(0) for u, m in to_masks(gates, threshold).items()}
        with scaled_channels(net, units, {u: m.float() for u, m in keep.items()}):
            accuracy = subset_accuracy(peer, calibration, classes)
        if accuracy >= target - tolerance:
            return keep, threshold, accuracy, target
    return {u.name: torch.ones(u.width, dtype=torch.bool) for u in units}, None, target, target


def _new_config(run, peer: int, classes: list[int], widths: dict[str, int]) -> dict[str, Any]:
    config = copy.deepcopy(run.config)
    arch = config["model"]["arch"]
    config["model"] = {
        "arch": "dissected",
        "peers": 1,
        "options": {
            "base": arch[peer] if isinstance(arch, list) else arch,
            "base_options": dict(config["model"].get("options") or {}),
            "base_classes": int(run.manifest["data"]["num_classes"]),
            "widths": widths,
        },
        "ensemble": "logit_mean",
    }
    config["method"] = {"name": "independent"}
    return config


def _rebuild(run, peer: int, classes: list[int], widths: dict[str, int], data, small: nn.Module):
    """The new run's config and model (one peer) holding ``small``'s weights; a CollabError
    when the run's model options alone do not rebuild its peers (checked before any work)."""
    config = config_from_dict(_new_config(run, peer, classes, widths))
    model = create_method(config.method).build_model(config.model, data)
    try:
        model.peers[0].load_state_dict(small.state_dict())
    except RuntimeError:
        raise CollabError(
            f"peers of method {run.manifest['method']!r} are not rebuilt by their model options "
            "alone, so a reconstructed peer could not be saved; reconstruct a run of another method"
        ) from None
    return config, model.eval()


def reconstruct(
    run_path: str | Path,
    *,
    classes: list[int],
    out: str | Path,
    peer: int = 0,
    checkpoint: str = "best",
    options: DissectionOptions | None = None,
    tolerance: float = 0.01,
    calibration_images: int = 512,
) -> dict[str, Any]:
    """Write the reconstructed run for ``classes`` of peer ``peer`` to ``out`` (module doc).

    Returns:
        The ``reconstruction`` record of the new manifest: parameters, FLOPs per image, test
        accuracy on the chosen classes (new and original), the kept channels of every unit
        (``kept``: count and width; ``channels``: their indices in the original), seconds.
    """
    out = Path(out).expanduser()
    try:  # the training folder rules, before any work: a new or empty folder only
        claim_run_folder(out, resume=False)
    except CollabError:
        if not out.is_dir():
            raise
        raise CollabError(
            f"--out {out} is not empty; reconstruct writes only into a new or empty folder, so "
            "nothing there is overwritten: choose another --out"
        ) from None
    run = load_run(run_path, checkpoint=checkpoint)
    classes = check_classes(classes, int(run.manifest["data"]["num_classes"]))
    if not 0 <= peer < run.model.num_peers:
        raise CollabError(f"--peer {peer}: {run.name} has peers 0..{run.model.num_peers - 1}")
    original = run.model.peer(peer)
    try:
        net = find_network(original)
        units = channel_units(net)
    except CollabError as err:
        raise CollabError(f"peer {peer} of {run.name} cannot be reconstructed: {err}") from None
    data = restrict_classes(run.data, classes)
    _rebuild(
        run, peer, classes, {u.name: u.width for u in units}, data, prune(net, {}, classes=classes)
    )
    options = dataclasses.replace(
        options or DissectionOptions(), classes=tuple(classes), peers=(peer,)
    )
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(options.seed))
    calibration = Subset(data.train, order[:calibration_images].tolist())
    seconds = 0.0
    for l1 in [options.l1] + [w for w in L1_STEPS if w < options.l1]:
        options = dataclasses.replace(options, l1=l1)
        found = dissect(run.model, run.dataset("train"), options=options)
        seconds += found.seconds
        keep, threshold, calibrated, target = calibrated_keep(
            found,
            classes,
            original,
            units,
            calibration,
            start=options.threshold,
            tolerance=tolerance,
        )
        if threshold is not None:
            break
    widths = {u: int(m.sum()) for u, m in keep.items()}
    config, model = _rebuild(run, peer, classes, widths, data, prune(net, keep, classes=classes))
    example = torch.zeros(1, *data.test[0][0].shape)
    parent = run.manifest["data"].get("classes")  # a reconstructed run's classes are a subset
    dataset_classes = list(classes) if parent is None else [parent[c] for c in classes]
    record = {
        "from": str(run.path),
        "checkpoint": checkpoint,
        "peer": peer,
        "peer_name": run.peer_names[peer],
        "classes": classes,
        "dataset_classes": dataset_classes,
        "class_names": list(data.class_names),
        "kept": {u: [int(m.sum()), int(m.numel())] for u, m in keep.items()},
        "channels": {u: m.nonzero().flatten().tolist() for u, m in keep.items()},
        "params": count_parameters(model.peer(0)),
        "original_params": count_parameters(original),
        "flops": count_flops(model.peer(0), example),
        "original_flops": count_flops(original, example),
        "accuracy": subset_accuracy(model.peer(0), data.test),
        "original_accuracy": subset_accuracy(original, data.test, classes),
        "test_images": len(data.test),
        "dissection_seconds": round(seconds, 2),
        "threshold": threshold,
        "calibration": {
            "images": len(calibration),
            "accuracy": calibrated,
            "original_accuracy": target,
            "tolerance": tolerance,
        },
        "dissection": {
            f.name: getattr(options, f.name)
            for f in dataclasses.fields(options)
            if f.name != "device"
        },
    }

    def edit(manifest: dict) -> None:
        manifest["data"]["classes"] = record["dataset_classes"]
        manifest["reconstruction"] = record

    write_finished_run(
        out, config, data, model, weights_meta={"reconstructed_from": record["from"]}, edit=edit
    )
    return record


def summary(record: dict[str, Any], out: str | Path) -> str:
    """A few lines comparing the reconstructed network with the original (for the CLI)."""
    r = record
    kept = ", ".join(f"{u} {k}/{n}" for u, (k, n) in r["kept"].items())
    return "\n".join(
        [
            f"reconstructed {r['peer_name']} for classes "
            f"{', '.join(f'{c} ({n})' for c, n in zip(r['classes'], r['class_names']))} "
            f"into {out} (dissected in {r['dissection_seconds']:.1f}s)",
            f"  L1 weight {r['dissection']['l1']}, mask threshold {r['threshold']} (the first "
            f"keeping the training accuracy within {r['calibration']['tolerance']:.0%}; "
            "None: every channel kept)",
            f"  parameters {r['params']:,} (original {r['original_params']:,}, "
            f"{r['params'] / r['original_params']:.0%})",
            f"  FLOPs/image {r['flops']:,} (original {r['original_flops']:,}, "
            f"{r['flops'] / r['original_flops']:.0%})",
            f"  test accuracy on these classes {100 * r['accuracy']:.2f}% "
            f"(original, restricted to their logits: {100 * r['original_accuracy']:.2f}%; "
            f"{r['test_images']} images)",
            f"  channels kept: {kept}",
        ]
    )
