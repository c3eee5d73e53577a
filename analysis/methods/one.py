"""ONE, on-the-fly native ensemble (Lan, Zhu & Gong, NeurIPS 2018).

K branches share a trunk; a gate computed from the trunk output weights the branch logits
into a teacher, and every branch distils from that teacher within the same forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from analysis.methods.base import DataShape, LossParts, Method, MethodOptions, peer_cross_entropy
from analysis.models import CollabOutput
from analysis.models.shared_trunk import SharedTrunkModel


@dataclass
class ONEOptions(MethodOptions):
    """Attributes:
    temperature: softening temperature T of the teacher-to-branch KL (3); KL times T².
    kl_weight: weight of the distillation term (1).
    split_after: the last shared stage. ONE's reference code branches the last stage of a
        CIFAR ResNet, i.e. shares ``conv1 .. layer2``; use ``layer1`` for two-stage nets.
    gate: ``linear_bn_relu`` (default) — softmax over K of ReLU(BN1d(Linear(pooled trunk))),
        as the reference code (winycg/MCL-OKD ``models/one_resnet.py``: ``gate_fc`` =
        Linear(trunk channels, K), ``gate_norm`` = BatchNorm1d(K), softmax(relu(...), dim=1));
        ``linear`` — softmax(Linear(pooled trunk)), the paper's text (this package's earlier
        default).
    """

    name: str = "one"
    temperature: float = 3.0
    kl_weight: float = 1.0
    split_after: str = "layer2"
    gate: Literal["linear", "linear_bn_relu"] = "linear_bn_relu"


class ONEModel(SharedTrunkModel):
    """A :class:`SharedTrunkModel` whose ensemble is the gated teacher.

    The gate sees the trunk output globally average-pooled, (B, C'), and gives (B, K) weights
    (C' = the trunk's output channels, e.g. 32 for a CIFAR ResNet-32 shared up to layer2);
    teacher = Σ_k g_k · z_k. ``ensemble_logits`` and ``extras["teacher_logits"]`` are that
    teacher (ONE deploys the ensemble or a branch; runs report the teacher as the ensemble);
    ``extras["gate"]`` holds the weights and ``extras["features"]`` the pooled branch features.

    Args:
        gate: ``linear_bn_relu`` or ``linear`` (see :class:`ONEOptions`).
        in_chans: input channels, used once to find the trunk's output width.
        **kwargs: as :class:`SharedTrunkModel`.
    """

    def __init__(
        self, nets: Any, *, gate: str = "linear_bn_relu", in_chans: int, **kwargs: Any
    ) -> None:
        super().__init__(nets, **kwargs)
        width = _trunk_width(self.trunk, in_chans)
        layers: list[nn.Module] = [nn.Linear(width, self.num_peers)]
        if gate == "linear_bn_relu":
            layers += [nn.BatchNorm1d(self.num_peers), nn.ReLU()]
        elif gate != "linear":
            raise ValueError(f"unknown ONE gate {gate!r}; use 'linear' or 'linear_bn_relu'")
        self.gate = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> CollabOutput:
        trunk, feats = self.forward_parts(x)
        logits = self.classify(feats)  # (K, B, C)
        weights = self.gate(F.adaptive_avg_pool2d(trunk, 1).flatten(1)).softmax(dim=1)  # (B, K)
        teacher = torch.einsum("bk,kbc->bc", weights, logits)
        extras = {"features": feats, "gate": weights, "teacher_logits": teacher}
        return CollabOutput(logits, teacher, extras)


@torch.no_grad()
def _trunk_width(trunk: nn.Module, in_chans: int) -> int:
    """Channels of the trunk's output map, from one dry run on a blank 32x32 image."""
    was_training = trunk.training
    trunk.eval()
    try:
        return int(trunk(torch.zeros(1, in_chans, 32, 32)).shape[1])
    finally:
        trunk.train(was_training)


class ONE(Method):
    """loss = Σ_k CE(z_k, y) + CE(z_teacher, y) + w·T²·Σ_k KL(teacher/T ‖ z_k/T).

    The teacher is **detached** in the KL terms: branch k's KL only moves branch k (and,
    through it, the trunk), never the gate or the other branches. The gate and all branches
    learn the teacher through CE(z_teacher, y).
    """

    Options = ONEOptions

    def build_model(self, model_cfg: Any, data: DataShape) -> ONEModel:
        opts: ONEOptions = self.options
        k = model_cfg.peers
        nets = self.trunk_copies(model_cfg, data)
        return ONEModel(
            nets,
            gate=opts.gate,
            in_chans=data.in_chans,
            splits=[(opts.split_after, k)],
            mean=data.mean,
            std=data.std,
            peer_names=[f"{model_cfg.arch}:branch{i}" for i in range(k)],
        )

    def loss(
        self,
        out: CollabOutput,
        target: torch.Tensor,
        *,
        epoch: float,
        index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LossParts]:
        opts: ONEOptions = self.options
        teacher = out.extras.get("teacher_logits", out.ensemble_logits)
        ce = peer_cross_entropy(out.peer_logits, target)
        teacher_ce = F.cross_entropy(teacher, target)
        kl = teacher_kl(out.peer_logits, teacher, temperature=opts.temperature)
        total = ce.sum() + teacher_ce + opts.kl_weight * kl.sum()
        return total, {"ce": ce.detach(), "teacher_ce": teacher_ce.detach(), "kl": kl.detach()}


def teacher_kl(
    peer_logits: torch.Tensor, teacher: torch.Tensor, *, temperature: float
) -> torch.Tensor:
    """T²·KL(softmax(teacher/T), detached ‖ softmax(z_k/T)): (K, B, C), (B, C) -> (K,)."""
    log_q = (teacher.detach() / temperature).log_softmax(dim=-1)  # (B, C)
    log_p = (peer_logits / temperature).log_softmax(dim=-1)  # (K, B, C)
    kl = (log_q.exp() * (log_q - log_p)).sum(dim=(1, 2)) / peer_logits.shape[1]
    return kl * temperature**2
