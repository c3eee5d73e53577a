"""MCL-OKD: multi-view contrastive learning for online knowledge distillation (ICASSP 2021).

Branches share the stem and first stage. Each branch has a classifier and an embedding head;
the embeddings of every ordered pair of branches (i, j) are contrasted against a memory bank
of branch i (NCE over one positive and K other-class negatives, drawn as in the authors'
code), and the last branch distils from the detached mean of all branches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from analysis.methods.base import DataShape, LossParts, Method, MethodOptions, peer_cross_entropy
from analysis.methods.contrastive import MemoryBank, bank_nce, batch_infonce
from analysis.models import CollabOutput
from analysis.models.shared_trunk import SharedTrunkModel


@dataclass
class MCLOKDOptions(MethodOptions):
    """Attributes:
    split_after: the last shared stage (the stem and first stage are shared: ``layer1``).
    embed_dim: size of the L2-normalised embeddings (128).
    temperature: KD temperature T (3); the KD term is T²·KL(mean ‖ last branch).
    kd_weight, contrast_weight: weights of the KD (1) and contrastive (0.025) terms.
    nce_temperature: τ of the contrastive scores (0.1).
    negatives: K other-class negatives per sample from the bank (256 for small CIFAR models).
    negatives_from: how the K rows are drawn (:meth:`MemoryBank.sample_negatives`).
        ``all`` (default, the authors' sampler): K distinct rows per sample, uniform over all
        N bank rows except those of the sample's class; rows not yet written keep their
        random initial vectors and take part, as in the authors' bank. The bank learns a
        row's class when the row is first seen, so in the first epoch an unseen row of the
        same class can be drawn (it holds only its random initial vector). With
        ``bank_size: 0`` the bank holds the rows up to the largest index seen so far.
        ``seen`` (this package's earlier rule): uniform with replacement among rows already
        seen whose class differs; while fewer are known for some sample of the batch (early
        in the first epoch), that smaller number is used for the whole batch.
    momentum: memory-bank update, row <- normalise(m·row + (1-m)·embedding) (0.5).
    contrast: ``bank`` — the paper's memory-bank NCE whenever dataset indices are given, the
        in-batch InfoNCE otherwise (evaluation); ``batch`` — always in-batch InfoNCE: for the
        pair (i, j) the anchor is branch j's embedding, candidates are branch i's embeddings
        of the batch (detached, like bank rows), the positive is the same sample and other
        samples of the same class are left out.
    bank_size: rows per bank, i.e. the training-set size N; 0 (default) grows the banks
        lazily to the largest dataset index seen. The loss does not depend on N (the
        per-batch normaliser Z = N·mean(exp(s/τ)) and the noise probability 1/N cancel).
    """

    name: str = "mcl_okd"
    split_after: str = "layer1"
    embed_dim: int = 128
    temperature: float = 3.0
    kd_weight: float = 1.0
    contrast_weight: float = 0.025
    nce_temperature: float = 0.1
    negatives: int = 256
    negatives_from: Literal["all", "seen"] = "all"
    momentum: float = 0.5
    contrast: Literal["bank", "batch"] = "bank"
    bank_size: int = 0


class MCLOKDModel(SharedTrunkModel):
    """A :class:`SharedTrunkModel` with an embedding head per branch.

    ``extras["embeddings"]`` (K, B, embed_dim): L2-normalised Linear(pooled branch feature).

    Args:
        embed_dim: embedding size.
        **kwargs: as :class:`SharedTrunkModel`.
    """

    def __init__(self, nets: Any, *, embed_dim: int = 128, **kwargs: Any) -> None:
        super().__init__(nets, **kwargs)
        self.embed = nn.ModuleList(
            nn.Linear(self.feature_dim, embed_dim) for _ in range(self.num_peers)
        )

    def forward(self, x: torch.Tensor) -> CollabOutput:
        out = super().forward(x)
        feats = out.extras["features"]
        emb = torch.stack([head(f) for head, f in zip(self.embed, feats)])
        out.extras["embeddings"] = F.normalize(emb, dim=-1)
        return out


class MCLOKD(Method):
    """Σ_k CE(z_k, y) + w_kd·T²·KL(mean_k z_k ‖ z_last) + w_c·Σ_{i≠j} NCE_ij.

    The KD target (the mean of all branch logits) is **detached** and only the last branch is
    distilled, so the KD term sends gradient only into the last branch (and the trunk). The
    memory banks live in the method (not in the model, which stays small to ship) and are
    saved via :meth:`state_dict` for resuming.
    """

    Options = MCLOKDOptions

    def __init__(self, options: MCLOKDOptions) -> None:
        super().__init__(options)
        self.bank: MemoryBank | None = None

    def build_model(self, model_cfg: Any, data: DataShape) -> MCLOKDModel:
        opts: MCLOKDOptions = self.options
        k = model_cfg.peers
        nets = self.trunk_copies(model_cfg, data)
        self.bank = MemoryBank(
            branches=k, dim=opts.embed_dim, momentum=opts.momentum, size=opts.bank_size
        )
        return MCLOKDModel(
            nets,
            embed_dim=opts.embed_dim,
            splits=[(opts.split_after, k)],
            mean=data.mean,
            std=data.std,
            peer_names=[f"{model_cfg.arch}:branch{i}" for i in range(k)],
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
        opts: MCLOKDOptions = self.options
        ce = peer_cross_entropy(out.peer_logits, target)
        kd = last_branch_kd(out.peer_logits, temperature=opts.temperature)
        contrast = self.contrastive(out.extras["embeddings"], target, index=index)
        total = ce.sum() + opts.kd_weight * kd + opts.contrast_weight * contrast
        return total, {"ce": ce.detach(), "kd": kd.detach(), "contrast": contrast.detach()}

    def contrastive(
        self, emb: torch.Tensor, target: torch.Tensor, *, index: torch.Tensor | None
    ) -> torch.Tensor:
        """The contrastive term: bank NCE (updating the banks) with indices, else in-batch."""
        opts: MCLOKDOptions = self.options
        if opts.contrast == "batch" or index is None:
            return batch_infonce(emb, target, tau=opts.nce_temperature)
        bank = self._bank(emb.shape[0])
        # The banks are global state: under torchrun every rank records and updates them with
        # the whole global batch (in one process ``collective`` returns its argument).
        group = self.collective
        all_index, all_target = group.gather(index), group.gather(target)
        rows_before = None if bank.labels is None else bank.labels.shape[0]
        bank.ensure(all_index)
        if bank.labels.shape[0] != rows_before:  # new rows start random: rank 0's everywhere
            bank.vectors = group.broadcast(bank.vectors)
        bank.record_labels(all_index, all_target)
        negatives = bank.sample_negatives(target, opts.negatives, rule=opts.negatives_from)
        if negatives.shape[1] == 0:  # no other class known yet: nothing to contrast against
            loss = emb.new_zeros(())
        else:
            rows = bank.gather(torch.cat([index[:, None], negatives], dim=1))  # (B, K, 1+m, D)
            loss = bank_nce(rows, emb, tau=opts.nce_temperature, batch_major=True)
        bank.update(all_index, group.gather(emb.detach(), dim=1))
        return loss

    def _bank(self, branches: int) -> MemoryBank:
        if self.bank is None:  # loss() before build_model(), e.g. a resumed method
            opts: MCLOKDOptions = self.options
            self.bank = MemoryBank(
                branches=branches, dim=opts.embed_dim, momentum=opts.momentum, size=opts.bank_size
            )
        return self.bank

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {} if self.bank is None else self.bank.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            self._bank(state["bank"].shape[0] if "bank" in state else 0).load_state_dict(state)


def last_branch_kd(peer_logits: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """T²·KL(softmax(mean_k z_k / T), detached ‖ softmax(z_last / T)): (K, B, C) -> ()."""
    log_q = (peer_logits.detach().mean(dim=0) / temperature).log_softmax(dim=-1)
    log_p = (peer_logits[-1] / temperature).log_softmax(dim=-1)
    return (log_q.exp() * (log_q - log_p)).sum() / peer_logits.shape[1] * temperature**2
