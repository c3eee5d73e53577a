"""Intra-model collaborative learning (Fang & Lin, "Intra-Model Collaborative Learning of
Neural Networks", arXiv:2105.09590, 2021).

Collaboration among the parts of ONE network, without duplicating any module. The paper names
four ways, which can be combined; its formulas are not public, so each way below is a named
option (weight 0 switches it off: its term is then exactly 0 and contributes no gradient):

1. **Output consistency** (``output_weight``, ``consistency``): the final exit's predictions on
   two stochastic versions of each image agree, symmetric T²·½[KL(p_a‖p_b) + KL(p_b‖p_a)],
   no side detached (both passes learn from each other). ``consistency="views"``: two
   independently augmented views (the method asks for exactly two, :meth:`IntraCL.num_views`,
   whatever the number of exits; a batch with more views uses the first two).
   ``consistency="dropout"``: the same batch twice, differing only by dropout masks (needs a
   network with dropout, e.g. ``model.options.dropout=0.2``). Either way the two halves run as
   one (2B) batch, and only the first half enters the other terms.
2. **Intermediate-to-output consistency** (``distill_weight``): auxiliary classifiers (exits
   after ``exits_after``, see :mod:`analysis.models.exits`) are distilled towards the final
   output, T²·KL(p_final/T detached ‖ p_aux/T); the detached target means no gradient reaches
   the final head (or the stages after the exit) through these terms.
3. **Intermediate-representation similarity** (``repr_weight``, ``repr_mode``): linear CKA
   (Kornblith et al. 2019) between the pooled representations (global average of the stage's
   feature map; the pooled features for the final exit) of adjacent exits; CKA compares
   features of different widths without a learned projection, which could trivially collapse.
   ``repr_mode="redundancy"`` (default, the abstract's "reduce redundancy") minimises the mean
   CKA, so each stage adds information the previous one lacks; ``"consistency"`` minimises
   the mean (1 - CKA) instead.
4. **Convolution-kernel similarity** (``kernel_weight``): for every ``Conv2d`` of the network
   (not the exit heads) the mean squared off-diagonal cosine similarity of its flattened
   filters, averaged over layers: 0 for orthogonal filters, 1 for identical ones.

Every exit is also trained with cross-entropy (weight 1 for the final exit, ``aux_ce_weight``
for the others). Peers are the exits (``net0/layer1, net0/layer2, net0/fc``); the ensemble is
the final exit (``ensemble="final"``, the network that is deployed) or a mean over all exits.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from analysis.errors import CollabError
from analysis.methods.base import DataShape, LossParts, Method, MethodOptions, peer_cross_entropy
from analysis.models import CollabOutput, create_model
from analysis.models.exits import MultiExitModel


@dataclass
class IntraCLOptions(MethodOptions):
    """Attributes:
    exits_after: stages that get an auxiliary exit.
    aux_ce_weight: weight of the cross-entropy of every auxiliary exit.
    output_weight: weight of way (1), output consistency; 0 switches it off.
    consistency: ``views`` (two augmented views) or ``dropout`` (two dropout passes).
    distill_weight: weight of way (2), KL of every auxiliary exit to the final output.
    temperature: T of the KL terms of ways (1) and (2); they are multiplied by T².
    repr_weight: weight of way (3), representation similarity of adjacent exits.
    repr_mode: ``redundancy`` (minimise CKA) or ``consistency`` (minimise 1 - CKA).
    kernel_weight: weight of way (4), the filter-redundancy penalty.
    ensemble: ``final`` (the final exit), ``logit_mean`` or ``prob_mean`` over all exits.
    """

    name: str = "intra_cl"
    exits_after: list[str] = field(default_factory=lambda: ["layer1", "layer2"])
    aux_ce_weight: float = 1.0
    output_weight: float = 1.0
    consistency: Literal["views", "dropout"] = "views"
    distill_weight: float = 1.0
    temperature: float = 3.0
    repr_weight: float = 0.1
    repr_mode: Literal["redundancy", "consistency"] = "redundancy"
    kernel_weight: float = 0.1
    ensemble: Literal["final", "logit_mean", "prob_mean"] = "final"


class IntraModel(MultiExitModel):
    """A one-network :class:`MultiExitModel` that can run paired passes and report kernel redundancy.

    Args:
        pairing: ``none``; ``views``: a (V, B, C, H, W) batch runs views 0 and 1 as one 2B batch;
            ``dropout``: in training mode a (B, C, H, W) batch runs twice as one 2B batch.
        kernel_penalty: if True, ``extras["kernel_redundancy"]`` holds
            :func:`kernel_redundancy` of the network (a scalar).
        **kwargs: passed to :class:`MultiExitModel`.

    Extras: ``pooled/<peer name>`` as in the base class (first half only) and, for a paired
    pass, ``paired_logits`` (K, B, C), the exits on the second half.
    """

    def __init__(
        self, nets, *, pairing: str = "none", kernel_penalty: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(nets, **kwargs)
        self.pairing = pairing
        self.kernel_penalty = kernel_penalty

    def forward(self, x: torch.Tensor) -> CollabOutput:
        paired = False
        if x.dim() == 5:
            paired = self.pairing == "views" and x.shape[0] >= 2
            x = torch.cat([x[0], x[1]]) if paired else x[0]
        elif self.pairing == "dropout" and self.training:
            paired = True
            x = torch.cat([x, x])
        logits, pooled = self.forward_exits(x)
        extras: dict[str, torch.Tensor] = {}
        if paired:
            logits, extras["paired_logits"] = logits.chunk(2, dim=1)
            pooled = [p.chunk(2)[0] for p in pooled]
        extras.update({f"pooled/{name}": p for name, p in zip(self.peer_names, pooled)})
        if self.kernel_penalty:
            extras["kernel_redundancy"] = kernel_redundancy(self.nets)
        return CollabOutput(logits, self.combine(logits), extras)


def kernel_redundancy(module: nn.Module, *, eps: float = 1e-8) -> torch.Tensor:
    """Mean over the ``Conv2d`` layers of ``module`` of the mean squared off-diagonal cosine
    similarity of their flattened filters (O, I·k·k); layers with one filter are skipped.

    Returns a scalar in [0, 1]: 0 when every layer's filters are mutually orthogonal, 1 when
    they are identical (up to positive or negative scale).
    """
    terms = []
    for conv in (m for m in module.modules() if isinstance(m, nn.Conv2d)):
        w = conv.weight.flatten(1)
        o = w.shape[0]
        if o < 2:
            continue
        w = w / w.norm(dim=1, keepdim=True).clamp_min(eps)
        cos = w @ w.T
        off_diag = cos - torch.diag_embed(torch.diagonal(cos))
        terms.append(off_diag.pow(2).sum() / (o * (o - 1)))
    if not terms:
        return next(module.parameters()).new_zeros(())
    return torch.stack(terms).mean()


def linear_cka(a: torch.Tensor, b: torch.Tensor, *, eps: float = 1e-12) -> torch.Tensor:
    """Linear CKA between representations (B, D1) and (B, D2) of the same B samples, in [0, 1].

    ||A_cᵀ B_c||²_F / (||A_cᵀ A_c||_F · ||B_cᵀ B_c||_F) with column-centred A_c, B_c;
    invariant to orthogonal transforms and isotropic scaling of either side.
    """
    a = a - a.mean(dim=0, keepdim=True)
    b = b - b.mean(dim=0, keepdim=True)
    cross = (a.T @ b).pow(2).sum()
    norm = (a.T @ a).norm() * (b.T @ b).norm()
    return cross / norm.clamp_min(eps)


def symmetric_kl(a: torch.Tensor, b: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """T²·½[KL(p_a‖p_b) + KL(p_b‖p_a)] of logits (B, C), batch-mean; gradient into both sides."""
    log_a = (a / temperature).log_softmax(dim=-1)
    log_b = (b / temperature).log_softmax(dim=-1)
    kl_ab = F.kl_div(log_b, log_a, reduction="batchmean", log_target=True)
    kl_ba = F.kl_div(log_a, log_b, reduction="batchmean", log_target=True)
    return 0.5 * (kl_ab + kl_ba) * temperature**2


def distill_to_final(peer_logits: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """T²·KL(p_final/T detached ‖ p_k/T) of every auxiliary exit: (K, B, C) -> (K-1,)."""
    target = (peer_logits[-1].detach() / temperature).log_softmax(dim=-1)
    terms = [
        F.kl_div(
            (z / temperature).log_softmax(dim=-1), target, reduction="batchmean", log_target=True
        )
        for z in peer_logits[:-1]
    ]
    if not terms:
        return peer_logits.new_zeros(0)
    return torch.stack(terms) * temperature**2


def representation_term(pooled: list[torch.Tensor], *, mode: str) -> torch.Tensor:
    """Mean over adjacent exits of CKA (``redundancy``) or 1 - CKA (``consistency``)."""
    ckas = [linear_cka(p, q) for p, q in itertools.pairwise(pooled)]
    if not ckas:
        return pooled[0].new_zeros(())
    cka = torch.stack(ckas).mean()
    return cka if mode == "redundancy" else 1.0 - cka


class IntraCL(Method):
    """Intra-model collaborative learning: one network, its exits and four switchable terms.

    L = CE(z_final) + Σ_aux [aux_ce_weight·CE(z_aux) + distill_weight·T²·KL(p_final ‖ p_aux)]
        + output_weight·SymKL(final, paired final) + repr_weight·R + kernel_weight·Kernel.
    See the module docstring for every choice; ``model.peers`` must be 1.
    """

    Options = IntraCLOptions

    def __init__(self, options: IntraCLOptions) -> None:
        super().__init__(options)
        weights = (
            "aux_ce_weight",
            "output_weight",
            "distill_weight",
            "repr_weight",
            "kernel_weight",
        )
        for key in weights:
            if getattr(options, key) < 0:
                raise CollabError(
                    f"method.{key} must be 0 (off) or positive, got {getattr(options, key)}"
                )
        if options.temperature <= 0:
            raise CollabError(
                f"method.temperature must be positive, got {options.temperature}; use e.g. 3"
            )
        # Two augmented views are only needed when the view-consistency term is on.
        self.per_peer_views = options.output_weight > 0 and options.consistency == "views"

    def num_views(self, model: nn.Module) -> int:
        """2 for the view-consistency pair (the peers are exits, not views), else 1."""
        return 2 if self.per_peer_views else 1

    def build_model(self, model_cfg: Any, data: DataShape) -> nn.Module:
        opts: IntraCLOptions = self.options
        arch = model_cfg.arch
        if model_cfg.peers != 1:
            raise CollabError(
                f"intra_cl trains one network but model.peers is {model_cfg.peers}; set model.peers=1"
            )
        name = arch[0] if isinstance(arch, list) else arch
        net = create_model(
            name, num_classes=data.num_classes, in_chans=data.in_chans, **model_cfg.options
        )
        pairing = opts.consistency if opts.output_weight > 0 else "none"
        if pairing == "dropout" and not any(
            isinstance(m, nn.Dropout) and m.p > 0 for m in net.modules()
        ):
            raise CollabError(
                f"intra_cl consistency='dropout' needs dropout in {name!r}; "
                "set model.options.dropout=0.2 (if the model has it) or method.consistency=views"
            )
        return IntraModel(
            [net],
            exits_after=opts.exits_after,
            num_classes=data.num_classes,
            in_chans=data.in_chans,
            mean=data.mean,
            std=data.std,
            ensemble=opts.ensemble,
            pairing=pairing,
            kernel_penalty=opts.kernel_weight > 0,
        )

    def loss(
        self,
        out: CollabOutput,
        target: torch.Tensor,
        *,
        epoch: float,
        index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LossParts]:
        opts: IntraCLOptions = self.options
        z = out.peer_logits
        zero = z.new_zeros(())
        ce = peer_cross_entropy(z, target)
        ce_total = ce[-1] + opts.aux_ce_weight * ce[:-1].sum()
        distill = (
            distill_to_final(z, temperature=opts.temperature).sum()
            if opts.distill_weight > 0
            else zero
        )
        output = zero
        if opts.output_weight > 0 and "paired_logits" in out.extras:
            output = symmetric_kl(
                z[-1], out.extras["paired_logits"][-1], temperature=opts.temperature
            )
        rep = zero
        if opts.repr_weight > 0:
            pooled = [v for k, v in out.extras.items() if k.startswith("pooled/")]
            rep = representation_term(pooled, mode=opts.repr_mode)
        kernel = out.extras["kernel_redundancy"] if opts.kernel_weight > 0 else zero
        total = (
            ce_total
            + opts.distill_weight * distill
            + opts.output_weight * output
            + opts.repr_weight * rep
            + opts.kernel_weight * kernel
        )
        parts = {
            "ce": ce.detach(),
            "distill": distill.detach(),
            "output": output.detach(),
            "repr": rep.detach(),
            "kernel": kernel.detach(),
        }
        return total, parts
