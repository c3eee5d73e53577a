"""K student networks and an online teacher fused from their feature maps (Xie et al., 2019).

The teacher is built from the students with no pre-training: their last feature maps (the
input of their global pooling) are concatenated -> BN -> ReLU -> global average pool -> a new
linear classifier. The method that trains it is :mod:`analysis.methods.od_cheap`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models.container import SeparatePeers
from analysis.models.external import require_staged
from analysis.models.output import CollabOutput

ENSEMBLE_SOURCES = ("teacher", "students")


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


class OnlineTeacherModel(SeparatePeers):
    """K students plus the online fusion teacher; ``peer(i)`` is student i alone.

    ``forward(x)`` takes one batch (B, C, H, W) in [0, 1] and runs each student once; returns
    ``CollabOutput(peer_logits (K, B, classes), ensemble_logits (B, classes),
    extras={"teacher_logits": (B, classes)})``. The ensemble is the teacher
    (``ensemble_from="teacher"``) or the students' ``ensemble`` rule (``"students"``).
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
        require_staged(students, what="an online teacher over the students' feature maps")
        if len(students) < 1:
            raise ValueError("online distillation needs at least one student")
        if ensemble_from not in ENSEMBLE_SOURCES:
            raise ValueError(
                f"unknown ensemble_from {ensemble_from!r}; use 'teacher' or 'students'"
            )
        super().__init__(
            students,
            mean=mean,
            std=std,
            peer_names=peer_names,
            default_name="student",
            ensemble=ensemble,
        )
        self.teacher = FusionTeacher(sum(s.feature_dim for s in students), num_classes)
        self.ensemble_from = ensemble_from

    def forward(self, x: torch.Tensor) -> CollabOutput:
        self.check_batch(x)
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
            ensemble = self.combine(peer_logits)
        return CollabOutput(peer_logits, ensemble, {"teacher_logits": teacher_logits})
