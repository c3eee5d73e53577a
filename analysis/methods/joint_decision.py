"""Joint decision of multi-participants (seed 002: "the joint decision of multi-participants,
mainly contain multi-layers and multi-networks"; the combination rule is not public).

A large network is replaced by ``model.peers`` smaller ones (choose their width so that the
total parameter count matches the large network, e.g. ``model.options.width``), and early
exits (after ``exits_after``, see :mod:`analysis.models.exits`) plus every network's final
classifier all decide together. The participants are the exits of every network, in the order
``net0/layer2, net0/fc, net1/layer2, net1/fc, ...``.

Choices made on the open rule (named options):

* ``combine="mean_prob"`` (default): the joint probability is the plain mean of the
  participants' softmax probabilities. ``combine="learned"``: a weighted mean with weights
  w = softmax(a) over one learnable logit a_k per participant (stored in the model as
  ``participant_logits``, initialised to 0, i.e. equal weights). a receives gradient only from
  the cross-entropy of the joint prediction; the optimizer's weight decay also applies to it,
  pulling gently towards equal weights.
* ``ensemble_logits`` = log of the joint probabilities, so ``softmax`` of it is the joint
  probability and the cross-entropy of it is the joint decision's negative log-likelihood.
  (``model.ensemble`` is not used: the combination rule is ``combine``.)
* Loss = participant_weight · Σ_k CE(z_k, y) + joint_weight · CE(joint, y). The joint term
  also sends gradient into every participant (they are trained to decide well together).
* ``exits_after=["layer2"]`` by default: with equal weights every participant counts as much as
  the final classifiers, and the very early ``layer1`` exits of small networks are much weaker;
  add them with ``combine="learned"``. ``exits_after=[]`` leaves only the networks to decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from analysis.errors import CollabError
from analysis.methods.base import DataShape, LossParts, Method, MethodOptions, peer_cross_entropy
from analysis.models import CollabOutput
from analysis.models.exits import MultiExitModel

COMBINE_RULES = ("mean_prob", "learned")


@dataclass
class JointDecisionOptions(MethodOptions):
    """Attributes:
    exits_after: stages of every network that get an early exit (a participant each).
    combine: ``mean_prob`` (equal-weight mean of probabilities) or ``learned`` (softmax-
        normalised learnable weight per participant).
    participant_weight: weight of the summed cross-entropies of the participants.
    joint_weight: weight of the cross-entropy of the joint decision.
    """

    name: str = "joint_decision"
    exits_after: list[str] = field(default_factory=lambda: ["layer2"])
    combine: Literal["mean_prob", "learned"] = "mean_prob"
    participant_weight: float = 1.0
    joint_weight: float = 1.0


class JointDecisionModel(MultiExitModel):
    """A :class:`MultiExitModel` whose ensemble is the (weighted) mean of exit probabilities.

    Args:
        nets: the networks (each a registered ``StagedNet``).
        combine: ``mean_prob`` or ``learned`` (adds the parameter ``participant_logits`` (K,)).
        **kwargs: passed to :class:`MultiExitModel` (``exits_after``, ``num_classes``, ...).
    """

    def __init__(
        self, nets: Sequence[nn.Module], *, combine: str = "mean_prob", **kwargs: Any
    ) -> None:
        super().__init__(nets, **kwargs)
        if combine not in COMBINE_RULES:
            raise CollabError(
                f"unknown combine rule {combine!r}; use one of {', '.join(COMBINE_RULES)}"
            )
        self.combine_rule = combine
        if combine == "learned":
            self.participant_logits = nn.Parameter(torch.zeros(self.num_peers))

    def participant_weights(self) -> torch.Tensor:
        """The weight of every participant in the joint decision: (K,), summing to 1."""
        if self.combine_rule == "learned":
            return self.participant_logits.softmax(dim=0)
        return torch.full(
            (self.num_peers,), 1.0 / self.num_peers, device=self.normalize.mean.device
        )

    def combine(self, peer_logits: torch.Tensor) -> torch.Tensor:
        """log Σ_k w_k softmax(z_k): (K, B, C) -> (B, C) log joint probabilities."""
        log_w = self.participant_weights().to(peer_logits.dtype).log()
        return torch.logsumexp(log_w.view(-1, 1, 1) + peer_logits.log_softmax(dim=-1), dim=0)


class JointDecision(Method):
    """Participants (early exits of several networks) trained alone and as one joint decision.

    L = participant_weight · Σ_k CE(z_k, y) + joint_weight · CE(log Σ_k w_k p_k, y).
    See the module docstring for the choices on the open combination rule.
    """

    Options = JointDecisionOptions

    def __init__(self, options: JointDecisionOptions) -> None:
        super().__init__(options)
        for key in ("participant_weight", "joint_weight"):
            if getattr(options, key) < 0:
                raise CollabError(
                    f"method.{key} must be 0 or positive, got {getattr(options, key)}"
                )
        if options.combine == "learned" and options.joint_weight == 0:
            raise CollabError(
                "combine='learned' trains its weights by the joint term; set method.joint_weight > 0"
            )

    def build_model(self, model_cfg: Any, data: DataShape) -> nn.Module:
        opts: JointDecisionOptions = self.options
        _, nets = self.peer_networks(model_cfg, data)
        return JointDecisionModel(
            nets,
            combine=opts.combine,
            exits_after=opts.exits_after,
            num_classes=data.num_classes,
            in_chans=data.in_chans,
            mean=data.mean,
            std=data.std,
        )

    def loss(
        self,
        out: CollabOutput,
        target: torch.Tensor,
        *,
        epoch: float,
        index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LossParts]:
        opts: JointDecisionOptions = self.options
        ce = peer_cross_entropy(out.peer_logits, target)
        # ensemble_logits are normalised log-probabilities, so this is the joint NLL.
        joint = F.cross_entropy(out.ensemble_logits, target)
        total = opts.participant_weight * ce.sum() + opts.joint_weight * joint
        return total, {"ce": ce.detach(), "joint": joint.detach()}
