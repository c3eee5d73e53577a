"""Online distillation with cheap convolutions (Xie et al., "Training convolutional
neural networks with cheap convolutions and online distillation", arXiv 1909.13063;
METHODS.md, seed 004).

K = ``model.peers`` students (``model.arch``, normally a cheap ResNet such as
``cheap_resnet56`` with ``op: shift | depthwise | group``; any :class:`StagedNet` works) with
their own weights. An online teacher is built from them, with no pre-training: the students'
last feature maps (the input of their global pooling) are concatenated -> BN -> ReLU ->
global average pool -> a new linear classifier. The objective is

    L = CE(z_t, y) + Σ_j [CE(z_j, y) + T²·KL(p_t/T ‖ p_j/T)],   T = 4,

with the KL reduced as the reference code reduces it (``kl_reduction="mean"``): its
``utils/common.py`` ``KL`` is ``F.kl_div(log_softmax(z_s), softmax(z_t))`` under PyTorch 0.4's
default reduction, the mean over all B·C elements, and ``main_teacher.py`` multiplies it by T²
(line 149) — so each KL term is 1/C of the batch-mean KL. ``kl_reduction="batchmean"`` (sum
over classes, mean over the batch: C times larger) is this library's former scaling. As in the
reference code the teacher is *not* detached in the KL terms (``detach_teacher=False``), so
they also train the teacher head and, through the concatenated maps, every student;
``detach_teacher=True`` makes them pure distillation.

Reporting and selection: the paper reports the best single student, so the checkpoint is
chosen on the validation split by the best student's accuracy (``selection = "best_peer"``,
read by the trainer); every student's accuracy is logged (``peer_acc``). [open] The model's
``ensemble_logits`` are the online teacher's logits (``ensemble_from="teacher"``, the default);
``ensemble_from="students"`` uses the mean of the students' logits (or probabilities,
``model.ensemble``) instead. The teacher logits are always in ``extras["teacher_logits"]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from analysis.errors import CollabError
from analysis.methods.base import DataShape, LossParts, Method, MethodOptions, peer_cross_entropy
from analysis.models import CollabOutput
from analysis.models.online_teacher import FusionTeacher, OnlineTeacherModel, map_and_logits

# The model classes are re-exported from their former home.
__all__ = [
    "FusionTeacher",
    "ODCheap",
    "ODCheapOptions",
    "OnlineTeacherModel",
    "distill_kl",
    "map_and_logits",
]


@dataclass
class ODCheapOptions(MethodOptions):
    """Attributes:
    temperature: the distillation temperature T (4); the KL terms are multiplied by T².
    detach_teacher: stop the KL gradients at the teacher (False in the reference code).
    ensemble_from: ``teacher`` (the online teacher's logits) or ``students`` (their mean).
    kl_reduction: ``mean`` (over all B·C elements, the reference code's) or ``batchmean``
        (sum over classes, mean over the batch; C times ``mean``).
    """

    name: str = "od_cheap"
    temperature: float = 4.0
    detach_teacher: bool = False
    ensemble_from: Literal["teacher", "students"] = "teacher"
    kl_reduction: Literal["mean", "batchmean"] = "mean"


def distill_kl(
    teacher_logits: torch.Tensor,
    peer_logits: torch.Tensor,
    *,
    temperature: float,
    reduction: str = "mean",
) -> torch.Tensor:
    """T²·KL(p_t/T ‖ p_j/T) per student: (B, C), (K, B, C) -> (K,).

    ``reduction="mean"`` averages the element-wise terms p_t·(log p_t − log p_j) over all B·C
    elements (``F.kl_div``'s ``"mean"``, PyTorch 0.4's default, as the reference code);
    ``"batchmean"`` sums over the classes and averages over the batch (C times larger).
    Gradients flow into ``teacher_logits`` unless the caller detaches them.
    """
    if reduction not in ("mean", "batchmean"):
        raise CollabError(f"unknown KL reduction {reduction!r}; use 'mean' or 'batchmean'")
    log_t = (teacher_logits / temperature).log_softmax(dim=-1)  # (B, C)
    log_s = (peer_logits / temperature).log_softmax(dim=-1)  # (K, B, C)
    kl = (log_t.exp() * (log_t - log_s)).sum(dim=-1).mean(dim=1)  # (K,), batch-mean
    if reduction == "mean":
        kl = kl / peer_logits.shape[-1]
    return kl * temperature**2


class ODCheap(Method):
    """K cheap students + online fusion teacher, mutual distillation at T = 4."""

    Options = ODCheapOptions
    # The paper reports the best single student: the trainer selects the checkpoint on it.
    selection = "best_peer"

    def build_model(self, model_cfg: Any, data: DataShape) -> OnlineTeacherModel:
        """K students of ``model_cfg.arch`` (one name or one per student) + the fusion teacher."""
        names, students = self.peer_networks(model_cfg, data)
        return OnlineTeacherModel(
            students,
            num_classes=data.num_classes,
            mean=data.mean,
            std=data.std,
            peer_names=names,
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
        kl = distill_kl(
            source, out.peer_logits, temperature=opts.temperature, reduction=opts.kl_reduction
        )
        total = teacher_ce + (ce + kl).sum()
        return total, {"teacher_ce": teacher_ce.detach(), "ce": ce.detach(), "kl": kl.detach()}
