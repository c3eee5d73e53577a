"""MCL-OKD's contrastive machinery: per-branch memory banks and the NCE / InfoNCE terms.

The method that uses them is :mod:`analysis.methods.mcl_okd`; the banks live in the method
(not in the model, which stays small to ship) and are saved with its state for resuming.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from analysis.errors import CollabError

NEGATIVE_RULES = ("all", "seen")


class MemoryBank:
    """One bank of unit vectors per branch, one row per training sample, plus sample labels.

    Rows start uniform in ±1/sqrt(dim/3) (as in contrastive representation distillation and
    the authors' ``mcl/memory.py``) and labels at -1 (unseen). Tensors: ``vectors``
    (K, N, dim), ``labels`` (N,).
    """

    def __init__(self, *, branches: int, dim: int, momentum: float, size: int = 0) -> None:
        self.branches, self.dim, self.momentum, self.size = branches, dim, momentum, size
        self.vectors: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self._order: dict[str, torch.Tensor] = {}  # rows grouped by label, per rule (cache)
        self._gathered: torch.Tensor | None = None  # the buffer gather() copies rows into

    def _new_rows(self, n: int, device: torch.device) -> torch.Tensor:
        bound = 1.0 / math.sqrt(self.dim / 3)
        return torch.rand(self.branches, n, self.dim, device=device) * (2 * bound) - bound

    def ensure(self, index: torch.Tensor) -> None:
        """Allocate or grow the banks so that every row of ``index`` exists."""
        need = int(index.max()) + 1
        have = 0 if self.labels is None else self.labels.shape[0]
        if need <= have:
            self.vectors, self.labels = self.vectors.to(index.device), self.labels.to(index.device)
            return
        if self.size and need > self.size:
            raise CollabError(
                f"dataset index {need - 1} does not fit method.bank_size={self.size}; set "
                "method.bank_size to the training-set size, or 0 to size the banks automatically"
            )
        n = self.size or need
        vectors = self._new_rows(n - have, index.device)
        labels = torch.full((n - have,), -1, dtype=torch.long, device=index.device)
        if have:
            vectors = torch.cat([self.vectors.to(index.device), vectors], dim=1)
            labels = torch.cat([self.labels.to(index.device), labels])
        self.vectors, self.labels, self._order = vectors, labels, {}

    def record_labels(self, index: torch.Tensor, target: torch.Tensor) -> None:
        if bool((self.labels[index] != target).any()):
            self.labels[index] = target
            self._order = {}

    def sample_negatives(
        self, target: torch.Tensor, count: int, *, rule: str = "all"
    ) -> torch.Tensor:
        """(B, m) bank rows of other-class samples for a batch of classes ``target`` (B,).

        Args:
            count: K, the negatives wanted per sample.
            rule: ``"all"`` -- the authors' sampler (winycg/MCL-OKD ``dataset/cifar100.py``,
                ``np.random.choice(cls_negative[target], k, replace=k > len(...))``): K
                distinct rows per sample, uniform over every bank row not known to share the
                sample's class (rows not yet seen take part with their initial vectors, as in
                the authors' bank); with replacement only when fewer than K rows qualify; m = K.
                ``"seen"`` -- uniform with replacement among rows already seen whose class
                differs; m = min(K, the fewest such rows of any sample of the batch).
        """
        if rule not in NEGATIVE_RULES:
            raise CollabError(f"unknown negatives rule {rule!r}; use 'all' or 'seen'")
        if rule not in self._order:
            rows = torch.arange(len(self.labels), device=self.labels.device)
            rows = rows if rule == "all" else rows[self.labels >= 0]
            self._order[rule] = rows[torch.argsort(self.labels[rows], stable=True)]
        order = self._order[rule]
        grouped = self.labels[order] + 1  # unseen rows (label -1) form group 0
        groups = int(max(int(target.max()) + 1, int(grouped.max()))) + 1
        counts = torch.bincount(grouped, minlength=groups)
        starts = counts.cumsum(0) - counts
        own = counts[target + 1]  # (B,) rows known to share the sample's class
        avail = order.shape[0] - own  # candidate rows of each sample
        m = count if rule == "all" else min(count, int(avail.min()))
        if m <= 0 or int(avail.min()) <= 0:
            return target.new_zeros(target.shape[0], 0)
        if rule == "all":
            u = distinct_draws(avail, m)
        else:
            u = (torch.rand(target.shape[0], m, device=target.device) * avail[:, None]).long()
            u = torch.minimum(u, avail[:, None] - 1)
        pos = u + (u >= starts[target + 1][:, None]) * own[:, None]  # skip the own-class block
        return order[pos]

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """Bank rows (B, K, S, D) of every branch's bank for row indices ``rows`` (B, S).

        Batch-major, the order :func:`bank_nce` (``batch_major=True``) multiplies in: one
        gather instead of a gather and a copy of ``vectors[:, rows]`` (K, B, S, D).

        The rows are copied into a buffer kept from the previous call (34 MB at CIFAR-100's
        sizes: a fresh one is above glibc's pinned mmap threshold and page-faults in every
        step, 5-6x the time of the copy itself). The previous call's result is overwritten, so
        it must not be needed any more: a step's graph that still held it would fail loudly in
        ``backward`` (autograd's version check), never silently.
        """
        n, dim = self.vectors.shape[1:]
        branch = torch.arange(self.vectors.shape[0], device=rows.device)
        flat = (branch[None, :, None] * n + rows[:, None, :]).reshape(-1)
        out = self._gathered
        if out is None or out.shape[0] != flat.shape[0] or out.device != flat.device:
            out = self._gathered = self.vectors.new_empty(flat.shape[0], dim)
        torch.index_select(self.vectors.view(-1, dim), 0, flat, out=out)
        return out.view(*rows.shape[:1], len(branch), rows.shape[1], dim)

    @torch.no_grad()
    def update(self, index: torch.Tensor, embeddings: torch.Tensor) -> None:
        """rows <- normalise(momentum·rows + (1 − momentum)·embeddings); embeddings (K, B, dim)."""
        rows = self.vectors[:, index] * self.momentum + embeddings.detach() * (1 - self.momentum)
        self.vectors[:, index] = F.normalize(rows, dim=-1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.vectors is None:
            return {}
        return {"bank": self.vectors, "labels": self.labels}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        unknown = sorted(set(state) - {"bank", "labels"})
        if unknown or (state and set(state) != {"bank", "labels"}):
            raise ValueError(
                f"an MCL-OKD method state holds 'bank' and 'labels', got {sorted(state)}"
            )
        if state and state["bank"].shape[::2] != (self.branches, self.dim):
            raise CollabError(
                f"the saved memory bank has shape {tuple(state['bank'].shape)}, not "
                f"({self.branches}, N, {self.dim}); resume with the run's own method options"
            )
        self.vectors = state["bank"].clone() if state else None
        self.labels = state["labels"].clone().long() if state else None
        self._order = {}


def distinct_draws(
    limits: torch.Tensor, count: int, *, max_elements: int = 1 << 24
) -> torch.Tensor:
    """(B, count) int64: row b holds ``count`` distinct integers drawn uniformly from
    ``[0, limits[b])`` (with replacement where ``limits[b] < count``).

    Smallest-``count`` of uniform random keys, in chunks of rows of at most ``max_elements``
    keys, so memory stays bounded for large banks.
    """
    top = int(limits.max())
    rows = max(1, max_elements // max(top, 1))
    out = []
    for lo in range(0, len(limits), rows):
        lim = limits[lo : lo + rows]
        if count <= top:
            keys = torch.rand(len(lim), top, device=lim.device)
            keys.masked_fill_(torch.arange(top, device=lim.device) >= lim[:, None], 2.0)
            u = keys.topk(count, dim=1, largest=False).indices
        else:
            u = torch.zeros(len(lim), count, dtype=torch.long, device=lim.device)
        short = lim < count
        if bool(short.any()):
            few = lim[short][:, None]
            draws = (torch.rand(len(few), count, device=lim.device) * few).long()
            u[short] = torch.minimum(draws, few - 1)
        out.append(u)
    return torch.cat(out)


def bank_nce(
    bank_rows: torch.Tensor, embeddings: torch.Tensor, *, tau: float, batch_major: bool = False
) -> torch.Tensor:
    """NCE loss of every ordered branch pair (i ≠ j), summed: the MCL-OKD contrastive term.

    Args:
        bank_rows: (K, B, 1 + m, D) rows of bank i, the positive (the sample's own row) first,
            then m other-class negatives; treated as constants. With ``batch_major`` they are
            (B, K, 1 + m, D) instead (:meth:`MemoryBank.gather`), the order the score product
            runs in: the same numbers, bit for bit, without a 4-D copy of the rows.
        embeddings: (K, B, D) embeddings of the batch.
        tau: temperature τ.

    With P = exp(s/τ)/Z, Z = N·mean(exp(s/τ)) re-estimated per batch and pair (detached) and
    noise probability 1/N: loss_ij = −[Σ_b log P⁺/(P⁺ + m/N) + Σ_{b,n} log (m/N)/(P⁻ + m/N)] / B,
    where N cancels. Computed in log space.
    """
    if batch_major:
        b, k, slots, _ = bank_rows.shape
        equation = "bind,jbd->ijbn"
    else:
        k, b, slots, _ = bank_rows.shape
        equation = "ibnd,jbd->ijbn"
    m = slots - 1
    s = torch.einsum(equation, bank_rows.detach(), embeddings) / tau  # (K, K, B, 1+m)
    log_mean = torch.logsumexp(s.detach().flatten(2), dim=2) - math.log(b * slots)  # (K, K)
    log_noise = (math.log(m) + log_mean)[:, :, None]
    pos = -F.softplus(log_noise - s[..., 0])  # log P⁺/(P⁺ + m/N), (K, K, B)
    neg = -F.softplus(s[..., 1:] - log_noise[..., None])  # log (m/N)/(P⁻ + m/N)
    per_pair = -(pos.sum(dim=2) + neg.sum(dim=(2, 3))) / b
    off_diagonal = ~torch.eye(k, dtype=torch.bool, device=s.device)
    return per_pair[off_diagonal].sum()


def batch_infonce(embeddings: torch.Tensor, target: torch.Tensor, *, tau: float) -> torch.Tensor:
    """In-batch InfoNCE of every ordered pair (i ≠ j), summed: (K, B, D), (B,) -> scalar.

    For pair (i, j) sample b of branch j is scored against branch i's (detached) embeddings of
    the batch; the positive is sample b, other samples of b's class are masked out.
    """
    k, b, _ = embeddings.shape
    s = torch.einsum("icd,jbd->ijbc", embeddings.detach(), embeddings) / tau  # (K, K, B, B)
    same = (target[:, None] == target[None, :]) & ~torch.eye(b, dtype=torch.bool, device=s.device)
    s = s.masked_fill(same, float("-inf"))
    ce = -s.log_softmax(dim=-1).diagonal(dim1=2, dim2=3).mean(dim=2)  # (K, K)
    off_diagonal = ~torch.eye(k, dtype=torch.bool, device=s.device)
    return ce[off_diagonal].sum()
