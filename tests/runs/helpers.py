"""Shared pieces of the import tests: building our model the way an import does, comparing logits."""

from __future__ import annotations

import re
from types import SimpleNamespace

import torch

from analysis.config import config_from_dict
from analysis.data import build_dataset
from analysis.methods import create_method

TOLERANCE = 1e-5


def build_source_model(config: dict, data: str, *, image_size: int | None = None, seed: int = 0):
    """Our collaborative model for ``config`` on dataset ``data``, randomised (BN stats too).

    It plays the authors' network in the tests: its tensors, renamed to their key names, are
    the checkpoint; its logits are the reference.
    """
    torch.manual_seed(seed)
    bundle = build_dataset(data, image_size=image_size)
    cfg = config_from_dict(config)
    shape = SimpleNamespace(
        num_classes=bundle.num_classes, in_chans=bundle.in_chans, mean=bundle.mean, std=bundle.std
    )
    model = create_method(cfg.method).build_model(cfg.model, shape)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            elif name.endswith("running_mean") or name.endswith(".bias"):
                tensor.normal_(0.0, 0.1)
            elif name.endswith("num_batches_tracked"):
                tensor.fill_(7)
            elif name.endswith(".weight") and tensor.dim() == 1:  # BN scales, some start at 0
                tensor.uniform_(0.5, 1.5)
    return model.eval(), bundle


def images(bundle, n: int = 4) -> torch.Tensor:
    """The first ``n`` test images of ``bundle``, (n, C, H, W) in [0, 1]."""
    return torch.stack([bundle.test[i][0] for i in range(n)])


def max_logit_diff(run, model, x: torch.Tensor) -> float:
    """Largest |difference| between the imported run's and ``model``'s peer and ensemble logits."""
    with torch.no_grad():
        ours, ref = run.model(x), model(x)
    peers = (ours.peer_logits - ref.peer_logits).abs().max().item()
    ensemble = (ours.ensemble_logits - ref.ensemble_logits).abs().max().item()
    return max(peers, ensemble)


def sgd_state(model: torch.nn.Module) -> dict:
    """An optimizer state dict with momentum buffers, as the authors' checkpoints carry one."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for p in model.parameters():
        p.grad = None
    return opt.state_dict()


def dc_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our CIFAR ResNet keys renamed as the D&C authors' ``model/resnet.py`` names them.

    Stem ``conv1, bn1`` -> ``layer0.0, layer0.1`` (line 236). Projection shortcuts ->
    ``downsample`` (lines 332-347): ``Sequential(conv1x1, BN)`` at stride 1, and
    ``Sequential(AvgPool2d, conv1x1, BN)`` at stride 2 (the first block of layer2 and layer3),
    so the conv is ``downsample.0`` or ``.1`` and the BN ``.1`` or ``.2`` — whatever index our
    own shortcut gives them. Works on one network's keys or on ``peers.<i>.`` keys.
    """
    out = {}
    for key, tensor in state.items():
        match = re.search(r"(layer(\d))\.(\d+)\.shortcut\.\d\.(\w+)$", key)
        if match:
            strided = match.group(2) in ("2", "3") and match.group(3) == "0"
            is_conv = tensor.dim() == 4
            index = (1 if strided else 0) + (0 if is_conv else 1)
            key = key[: match.end(3)] + f".downsample.{index}.{match.group(4)}"
        key = (
            re.sub(r"(^|\.)conv1\.(weight)$", r"\1layer0.0.\2", key) if "layer" not in key else key
        )
        key = re.sub(r"(^|\.)bn1\.", r"\1layer0.1.", key) if "layer" not in key else key
        out[key] = tensor
    return out
