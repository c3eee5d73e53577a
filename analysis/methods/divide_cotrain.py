"""Divide and Co-training (Zhao, Zhou, Wang, Cai, Lam & Xu, "Towards Better Accuracy-efficiency
Trade-offs: Divide and Co-training", IEEE TIP, arXiv 2011.14660; METHODS.md, seed 003).

One large network (``model.arch`` with ``model.options``) is divided into S = ``model.peers``
small networks by :mod:`analysis.models.division` (width / √S, WRN widen k/√S + 0.4, ResNeXt
cardinality / S). The small networks are built as the authors' ``model/resnet.py`` builds
them (``authors_networks=True``): a CIFAR ResNet becomes ``dc_resnet`` (AvgPool(2) + 1x1 conv
+ BN downsampling shortcuts, zero-initialised last BN per block), a WRN the post-activation
``dc_wrn``, ResNeXt-29 ``dc_resnext29``; ``authors_networks=False`` divides the registered
network itself. The small networks are co-trained:

    L = Σ_i CE(z_i, y) + λ(e) · [H(p̄) − (1/S) Σ_i H(p_i)],

the generalized Jensen–Shannon divergence of the peers' predictions (p_i = softmax(z_i),
p̄ = mean_i p_i, H the entropy averaged over the batch; no temperature, nothing detached, so
the co-training term pulls every peer towards the others). λ(e) rises linearly from 0 to
``cot_weight`` over the first ``warmup_epochs`` epochs and never drops below
``min_cot_weight`` (paper: 0.5 over 40 epochs, floor 0.005).

Regularization is divided too: the dropout before the classifier is p/S (``dropout`` = the
large network's p; 0 keeps the classifier-dropout option of ``model.options``, divided), and
the weight decay is wd·exp(1/S − 1) (``divide_weight_decay``, on by default as the authors'
``--is_div_wd 1``; applied through ``weight_decay_scale``, which is set when the model is
built). The authors exempt every parameter whose name contains ``norm`` or ``bias`` from
weight decay (``utils/lr_scheduler.py: get_parameter_groups``) — on these networks the
biases (BN and fc), not the BN weights: the presets set ``optim.no_decay_norm_bias: true``,
which applies that rule. Each small network sees its own independently augmented view
(``per_peer_views``). Inference: the mean of the peers' logits (``model.ensemble: prob_mean``
averages probabilities instead).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch

from analysis.errors import CollabError
from analysis.methods.base import DataShape, LossParts, Method, MethodOptions, peer_cross_entropy
from analysis.models import CollaborativeModel, CollabOutput, create_model
from analysis.models.division import divided_options

log = logging.getLogger(__name__)


@dataclass
class DivideCotrainOptions(MethodOptions):
    """Attributes:
    cot_weight: λ, the weight of the co-training (generalized JS) term after warm-up (0.5).
    warmup_epochs: epochs of the linear warm-up of λ (40 in the paper; presets for short runs
        scale it down); 0 disables the warm-up.
    min_cot_weight: the floor of λ during warm-up (0.005).
    dropout: the large network's dropout before the classifier, p; each small network uses p/S.
    divide_weight_decay: scale the weight decay by exp(1/S − 1) (on, as the authors').
    authors_networks: build the small networks as the authors' code does (see module doc);
        False divides the registered network ``model.arch`` itself.
    """

    name: str = "divide_cotrain"
    cot_weight: float = 0.5
    warmup_epochs: float = 40.0
    min_cot_weight: float = 0.005
    dropout: float = 0.0
    divide_weight_decay: bool = True
    authors_networks: bool = True


def cot_weight_at(epoch: float, *, weight: float, warmup_epochs: float, floor: float) -> float:
    """λ at fractional ``epoch``: ``min(weight, max(floor, weight · epoch / warmup_epochs))``.

    Example: weight 0.5, warm-up 40, floor 0.005 -> 0.005 at epoch 0, 0.25 at 20, 0.5 from 40.
    """
    if warmup_epochs <= 0:
        return weight
    ramp = weight * min(1.0, max(epoch, 0.0) / warmup_epochs)
    return min(weight, max(floor, ramp))


def batch_entropy(log_p: torch.Tensor) -> torch.Tensor:
    """Entropy averaged over the batch: log-probabilities (..., B, C) -> (...)."""
    return -(log_p.exp() * log_p).sum(dim=-1).mean(dim=-1)


def generalized_js(peer_logits: torch.Tensor) -> torch.Tensor:
    """H(p̄) − (1/S) Σ_i H(p_i) of S peers' predictions: (S, B, C) -> scalar, >= 0.

    Zero exactly when all peers predict the same distribution; no temperature, no detach.
    """
    s = peer_logits.shape[0]
    log_p = peer_logits.log_softmax(dim=-1)  # (S, B, C)
    log_mean = torch.logsumexp(log_p, dim=0) - math.log(s)  # log p̄, (B, C)
    return batch_entropy(log_mean) - batch_entropy(log_p).mean()


class DivideCotrain(Method):
    """S divided networks, each on its own view, co-trained with the generalized JS divergence."""

    Options = DivideCotrainOptions
    per_peer_views = True
    soft_targets = True

    def build_model(self, model_cfg: Any, data: DataShape) -> CollaborativeModel:
        """Divide ``model_cfg.arch`` into ``model_cfg.peers`` small networks (see module doc)."""
        opts: DivideCotrainOptions = self.options
        arch, split = model_cfg.arch, model_cfg.peers
        if isinstance(arch, list):
            raise CollabError(
                "divide_cotrain divides one large network; "
                "set model.arch to a single name, not a list"
            )
        spec = divided_options(
            arch,
            split=split,
            options=model_cfg.options,
            dropout=opts.dropout or None,
            authors=opts.authors_networks,
        )
        log.info("divide_cotrain: %s into %d networks (%s)", arch, split, spec.rule)
        self.weight_decay_scale = math.exp(1.0 / split - 1.0) if opts.divide_weight_decay else 1.0
        peers = [
            create_model(
                spec.arch, num_classes=data.num_classes, in_chans=data.in_chans, **spec.options
            )
            for _ in range(split)
        ]
        return CollaborativeModel(
            peers,
            mean=data.mean,
            std=data.std,
            peer_names=[f"{arch}/{split}#{i}" for i in range(split)],
            ensemble=model_cfg.ensemble,
        )

    def loss(
        self,
        out: CollabOutput,
        target: torch.Tensor,
        *,
        epoch: float,
        index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LossParts]:
        opts: DivideCotrainOptions = self.options
        ce = peer_cross_entropy(out.peer_logits, target)
        gjs = generalized_js(out.peer_logits)
        weight = cot_weight_at(
            epoch,
            weight=opts.cot_weight,
            warmup_epochs=opts.warmup_epochs,
            floor=opts.min_cot_weight,
        )
        total = ce.sum() + weight * gjs
        return total, {"ce": ce.detach(), "gjs": gjs.detach(), "cot_weight": torch.tensor(weight)}
