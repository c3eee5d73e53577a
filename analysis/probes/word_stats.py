"""Co-occurrence statistics of discrete "words": pair counts, PMI, mutual information, entropy.

A word is a small integer (a filter or channel index, or a composite word number). These
functions count how words co-occur and summarise the counts; :class:`WordHeap` keeps the
strongest firings of every word seen, with memory bounded by the number of distinct words.
PMI is add-alpha smoothed: every cell gets ``smoothing`` extra counts,
``p(a, b) = (n_ab + alpha) / (N + alpha M^2)``, the marginals are the sums of the smoothed joint
and ``pmi = log2 p(a, b) / (p(a) p(b))``: finite everywhere and about 0 for independent words
(exactly 0 for exactly independent counts without smoothing, or with uniform marginals);
``smoothing=0`` gives -inf at empty cells.
"""

from __future__ import annotations

import torch


def joint_counts(a: torch.Tensor, b: torch.Tensor, ma: int, mb: int) -> torch.Tensor:
    """(N,) words in [0, ma) and (N,) words in [0, mb) -> (ma, mb) int64 pair counts."""
    return torch.bincount(a * mb + b, minlength=ma * mb).view(ma, mb)


def pmi(counts: torch.Tensor, *, smoothing: float = 1.0) -> torch.Tensor:
    """Add-alpha smoothed pointwise mutual information in bits.

    Args:
        counts: (..., Ma, Mb) joint counts.
        smoothing: alpha added to every cell; the marginals are those of the smoothed joint.

    Returns:
        (..., Ma, Mb) float64 ``log2 p(a, b) / (p(a) p(b))``; with ``smoothing=0`` empty cells
        are -inf (NaN where a word never occurs at all).
    """
    joint = counts.double() + float(smoothing)
    p = joint / joint.sum((-2, -1), keepdim=True).clamp_min(1e-300)
    return torch.log2(p / (p.sum(-1, keepdim=True) * p.sum(-2, keepdim=True)))


def mutual_information(counts: torch.Tensor) -> torch.Tensor:
    """Plug-in mutual information (bits, float64 scalar) of an (Ma, Mb) count table."""
    p = counts.double() / max(int(counts.sum()), 1)
    outer = p.sum(1, keepdim=True) * p.sum(0, keepdim=True)
    nz = p > 0
    return (p[nz] * torch.log2(p[nz] / outer[nz])).sum()


def entropy_bits(counts: torch.Tensor) -> float:
    """Entropy in bits of the distribution given by (U,) counts (zeros ignored)."""
    p = counts.double()[counts > 0]
    p = p / p.sum()
    return float(-(p * torch.log2(p)).sum()) if len(p) else 0.0


class WordHeap:
    """The ``top_n`` strongest firings (score, sample, position) of every word id seen.

    Entries are kept sorted by id, then by score descending (ties: the earlier firing first);
    memory is at most ``top_n`` entries per distinct id.
    """

    def __init__(self, top_n: int) -> None:
        self.n = top_n
        self.ids = torch.zeros(0, dtype=torch.int64)
        self.scores = torch.zeros(0)
        self.samples = torch.zeros(0, dtype=torch.int64)
        self.positions = torch.zeros(0, dtype=torch.int64)

    def add(self, ids, scores, samples, positions) -> None:
        """Fold N firings: (N,) word ids, strengths, sample indices and flat positions."""
        ids = torch.cat([self.ids, ids])
        scores = torch.cat([self.scores, scores.float()])
        samples, positions = (
            torch.cat([self.samples, samples]),
            torch.cat([self.positions, positions]),
        )
        order = torch.sort(scores, descending=True, stable=True).indices
        order = order[torch.sort(ids[order], stable=True).indices]
        _, counts = torch.unique_consecutive(ids[order], return_counts=True)
        starts = (torch.cumsum(counts, 0) - counts).repeat_interleave(counts)
        keep = order[torch.arange(len(order)) - starts < self.n]
        self.ids, self.scores = ids[keep], scores[keep]
        self.samples, self.positions = samples[keep], positions[keep]

    def top(self, words: torch.Tensor):
        """For (T,) ids: scores (T, n) (NaN = none), samples (T, n) (-1), positions (T, n) (-1)."""
        shape = (len(words), self.n)
        if len(self.ids) == 0:
            none = torch.full(shape, -1, dtype=torch.int64)
            return torch.full(shape, float("nan")), none, none.clone()
        left = torch.searchsorted(self.ids, words)
        right = torch.searchsorted(self.ids, words, right=True)
        idx = left[:, None] + torch.arange(self.n)
        valid = idx < right[:, None]
        idx = idx.clamp_max(len(self.ids) - 1)
        return (
            self.scores[idx].masked_fill(~valid, float("nan")),
            self.samples[idx].masked_fill(~valid, -1),
            self.positions[idx].masked_fill(~valid, -1),
        )
