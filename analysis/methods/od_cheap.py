"""Online distillation with cheap convolutions (Xie et al., "Training convolutional
neural networks with cheap convolutions and online distillation", arXiv 1909.13063;
METHODS.md, seed 004).

K = ``model.peers`` students (``model.arch``, normally a cheap ResNet such as
``cheap_resnet56`` with ``op: shift | depthwise | group``; any :class:`StagedNet` works) with
their own weights. An online teacher is built from them, with no pre-training: the students'
last feature maps (the input of their global pooling) are concatenated -> BN -> ReLU ->
global average pool -> a new linear classifier. The objective is

    L = CE(z_t, y) + Σ_j [CE(z_j, y) + T²·KL(p_t/T ‖ p_j/T)],   T = 4,

KL with batch-mean reduction. As in the reference code the teacher is *not* detached in the KL
terms (``detach_teacher=False``), so they also train the teacher head and, through the
concatenated maps, every student; ``detach_teacher=True`` makes them pure distillation.

Reporting: the paper reports the best single student; the trainer logs every student's
accuracy (``peer_acc``). [open] The model's ``ensemble_logits`` are the online teacher's logits
(``ensemble_from="teacher"``, the default, so the best checkpoint is the teacher's best
epoch); ``ensemble_from="students"`` uses the mean of the students' logits (or probabilities,
``model.ensemble``) instead. The teacher logits are always in ``extras["teacher_logits"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from analysis.errors import CollabError
from analysis.methods.base import DataShape, LossParts, Method, MethodOptions, peer_cross_entropy
from analysis.models import CollabOutput, Normalize, PeerModule, combine_logits, create_model


@dataclass
class ODCheapOptions(MethodOptions):
    """Attributes:
    temperature: the distillation temperature T (4); the KL terms are multiplied by T².
    detach_teacher: stop the KL gradients at the teacher (False in the reference code).
    ensemble_from: ``teacher`` (the online teacher's logits) or ``students`` (their mean).
    """

    name: str = "od_cheap"
    temperature: float = 4.0
    detach_teacher: bool = False
    ensemble_from: Literal["teacher", "students"] = "teacher"


def map_and_logits(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A StagedNet's last feature map (B, C, h, w) (``avgpool``'s input) and logits (B, classes)."""
    names = net.feature_names
    if "avgpool" not in names:
        raise CollabError(
            f"{type(net).__name__} has no 'avgpool' stage; "
            "od_cheap needs a pooled StagedNet student"
        )
    cut = names.index("avgpool")
    for name in names[:cut]:
        x = net._modules[name](x)
    fmap = x
    for name in names[cut:]:
        x = net._modules[name](x)
    return fmap, net.fc(net.dropout(x))


class FusionTeacher(nn.Module):
    """Concatenated student maps (B, ΣC, h, w) -> BN -> ReLU -> pool -> fc -> (B, classes)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.avgpool(self.relu(self.bn(maps)))))


class OnlineTeacherModel(nn.Module):
    """K students plus the online fusion teacher; ``peer(i)`` is student i alone.

    ``forward(x)`` takes one batch (B, C, H, W) in [0, 1] and runs each student once; returns
    ``CollabOutput(peer_logits (K, B, classes), ensemble_logits (B, classes),
    extras={"teacher_logits": (B, classes)})``.
    """

    def __init__(
        self,
        students: Sequence[nn.Module],
        *,
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        peer_names: Sequence[str] | None = None,
        ensemble: str = "logit_mean",
        ensemble_from: str = "teacher",
    ) -> None:
        super().__init__()
        if len(students) < 1:
            raise ValueError("online distillation needs at least one student")
        if ensemble_from not in ("teacher", "students"):
            raise ValueError(
                f"unknown ensemble_from {ensemble_from!r}; use 'teacher' or 'students'"
            )
        self.normalize = Normalize(mean, std)
        self.peers = nn.ModuleList(students)
        self.teacher = FusionTeacher(sum(s.feature_dim for s in students), num_classes)
        self.peer_names = list(peer_names or [f"student{i}" for i in range(len(students))])
        self.ensemble = ensemble
        self.ensemble_from = ensemble_from
        combine_logits(torch.zeros(1, 1, 2), ensemble)  # validate the rule early

    @property
    def num_peers(self) -> int:
        return len(self.peers)

    def peer(self, i: int) -> nn.Module:
        """Student ``i`` as a plain module: images in [0, 1] -> logits."""
        return PeerModule(self.normalize, self.peers[i])

    def peer_prefix(self, i: int) -> str:
        return f"peers.{i}."

    def forward(self, x: torch.Tensor) -> CollabOutput:
        if x.dim() != 4:
            raise ValueError(f"expected one batch (B, C, H, W), got shape {tuple(x.shape)}")
        x = self.normalize(x)
        maps, logits = zip(*(map_and_logits(net, x) for net in self.peers))
        if len({m.shape[-2:] for m in maps}) > 1:
            raise CollabError(
                "the students' last feature maps differ in size; use students of one family"
            )
        teacher_logits = self.teacher(torch.cat(maps, dim=1))
        peer_logits = torch.stack(logits)
        if self.ensemble_from == "teacher":
            ensemble = teacher_logits
        else:
            ensemble = combine_logits(peer_logits, self.ensemble)
        return CollabOutput(peer_logits, ensemble, {"teacher_logits": teacher_logits})


def distill_kl(
    teacher_logits: torch.Tensor, peer_logits: torch.Tensor, *, temperature: float
) -> torch.Tensor:
    """T²·KL(p_t/T ‖ p_j/T) per student, batch-mean: (B, C), (K, B, C) -> (K,).

    Gradients flow into ``teacher_logits`` unless the caller detaches them.
    """
    log_t = (teacher_logits / temperature).log_softmax(dim=-1)  # (B, C)
    log_s = (peer_logits / temperature).log_softmax(dim=-1)  # (K, B, C)
    kl = (log_t.exp() * (log_t - log_s)).sum(dim=-1)  # (K, B)
    return kl.mean(dim=1) * temperature**2


class ODCheap(Method):
    """K cheap students + online fusion teacher, mutual distillation at T = 4."""

    Options = ODCheapOptions

    def build_model(self, model_cfg: Any, data: DataShape) -> OnlineTeacherModel:
        """K students of ``model_cfg.arch`` (one name or one per student) + the fusion teacher."""
        arch = model_cfg.arch
        names = arch if isinstance(arch, list) else [arch] * model_cfg.peers
        students = [
            create_model(
                name, num_classes=data.num_classes, in_chans=data.in_chans, **model_cfg.options
            )
            for name in names
        ]
        return OnlineTeacherModel(
            students,
            num_classes=data.num_classes,
            mean=data.mean,
            std=data.std,
            peer_names=[f"{name}#{i}" for i, name in enumerate(names)],
            ensemble=model_cfg.ensemble,
            ensemble_from=self.options.ensemble_from,
        )

    def loss(
        self,
        out: CollabOutput,
        target: torch.Tensor,
        *,
        epoch: float,
        index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LossParts]:
        opts: ODCheapOptions = self.options
        if "teacher_logits" not in out.extras:
            raise CollabError(
                "od_cheap needs the online teacher's logits; build the model with this method"
            )
        teacher = out.extras["teacher_logits"]
        teacher_ce = F.cross_entropy(teacher, target)
        ce = peer_cross_entropy(out.peer_logits, target)
        source = teacher.detach() if opts.detach_teacher else teacher
        kl = distill_kl(source, out.peer_logits, temperature=opts.temperature)
        total = teacher_ce + (ce + kl).sum()
        return total, {"teacher_ce": teacher_ce.detach(), "ce": ce.detach(), "kl": kl.detach()}
