"""DCL words: each branch's most active filter per position, and the composite word they form.

A Deep Collaborative Learning module (``analysis/models/dcl.py``) has K branches of M filters.
At every spatial position the **word** of branch k is its most active filter,
``w_k = argmax_m F_k[m]`` (pre-fusion responses), and the **composite word** is the tuple
``(w_1 .. w_K)`` out of a vocabulary of ``M ** K``; it is numbered like the ``outer`` fusion's
channels, ``sum_k w_k * M ** (K - 1 - k)`` (the first branch is the most significant digit).
The **strength** of the composite word at a position is ``prod_k ReLU(max_m F_k[m])``, the
``(w_1 .. w_K)`` entry of the outer product of the ReLU'd branch vectors (the largest entry).

:class:`VocabularyStats` folds batches of branch responses into word counts, memory growing
with the words used only.
"""

from __future__ import annotations

import itertools

import torch

from analysis.errors import CollabError
from analysis.probes.word_stats import WordHeap, joint_counts


def branch_words(responses) -> tuple[torch.Tensor, torch.Tensor]:
    """Words and composite-word strength from branch responses.

    Args:
        responses: (K, B, M, H, W) pre-fusion branch responses, or a sequence of K (B, M, H, W).

    Returns:
        words (K, B, H, W) int64 (argmax over M, first index on ties) and strength (B, H, W)
        ``prod_k ReLU(max_m F_k)``.
    """
    maxima = [branch.max(dim=1) for branch in responses]
    strength = maxima[0].values.relu()
    for values, _ in maxima[1:]:
        strength = strength * values.relu()
    return torch.stack([words for _, words in maxima]), strength


def composite_ids(words: torch.Tensor, branch_width: int) -> torch.Tensor:
    """(K, ...) branch words -> (...) composite word numbers ``sum_k w_k M ** (K - 1 - k)``."""
    ids = torch.zeros_like(words[0])
    for w in words:
        ids = ids * branch_width + w
    return ids


def decode_ids(ids: torch.Tensor, branch_width: int, branches: int) -> torch.Tensor:
    """(U,) composite word numbers -> (U, K) branch words (inverse of :func:`composite_ids`)."""
    digits = []
    for _ in range(branches):
        digits.append(ids % branch_width)
        ids = torch.div(ids, branch_width, rounding_mode="floor")
    return torch.stack(digits[::-1], dim=1) if digits else ids[:, None]


class VocabularyStats:
    """Running vocabulary statistics of one DCL layer; memory grows with the words used only.

    Args:
        branches, branch_width: K and M.
        top_n: firings kept per composite word.
    """

    def __init__(self, *, branches: int, branch_width: int, top_n: int = 8) -> None:
        if branch_width**branches >= 2**62:
            raise CollabError(
                f"a vocabulary of {branch_width}^{branches} words does not fit in 64-bit numbers; "
                "probe a DCL layer with fewer branches or filters"
            )
        self.k, self.m = branches, branch_width
        self.pairs = [list(p) for p in itertools.combinations(range(branches), 2)]
        self.counts = torch.zeros(len(self.pairs), self.m, self.m, dtype=torch.int64)
        self.branch_counts = torch.zeros(self.k, self.m, dtype=torch.int64)
        self.ids = torch.zeros(0, dtype=torch.int64)
        self.id_counts = torch.zeros(0, dtype=torch.int64)
        self.heap = WordHeap(top_n)
        self.samples = 0
        self.map_size = [0, 0]

    def add(self, responses, sample_index: torch.Tensor) -> None:
        """Fold one batch: responses (K, B, M, H, W) (or K tensors (B, M, H, W)), sample_index
        (B,) dataset indices."""
        k, (b, m, h, w) = len(responses), responses[0].shape
        if (k, m) != (self.k, self.m):
            raise ValueError(f"expected {self.k} branches of {self.m} filters, got {k} of {m}")
        words, strength = branch_words([r.detach() for r in responses])
        words, strength = words.cpu(), strength.float().cpu()
        flat = words.reshape(k, -1)
        for p, (a, c) in enumerate(self.pairs):
            self.counts[p] += joint_counts(flat[a], flat[c], self.m, self.m)
        for i in range(k):
            self.branch_counts[i] += torch.bincount(flat[i], minlength=self.m)
        ids = composite_ids(words, self.m).reshape(-1)
        merged, inverse = torch.unique(torch.cat([self.ids, ids]), return_inverse=True)
        counts = torch.zeros(len(merged), dtype=torch.int64)
        ones = torch.ones(len(ids), dtype=torch.int64)
        self.id_counts = counts.scatter_add_(0, inverse, torch.cat([self.id_counts, ones]))
        self.ids = merged
        samples = torch.as_tensor(sample_index, dtype=torch.int64).repeat_interleave(h * w)
        self.heap.add(ids, strength.reshape(-1), samples, torch.arange(h * w).repeat(b))
        self.samples += b
        self.map_size = [h, w]

    def ranked_words(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(U,) used composite numbers and (U,) counts, most frequent first (ties: lower id)."""
        order = torch.sort(self.id_counts, descending=True, stable=True).indices
        return self.ids[order], self.id_counts[order]
