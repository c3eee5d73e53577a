"""Comparing class-wise channel masks within a peer and across peers, permutation-aware.

Two separately trained networks can list the same channels in any order, so channel j of one
peer has nothing to do with channel j of another and an index-wise mask overlap between peers
measures nothing. Two comparisons are free of that symmetry:

* **matched overlap**: channels of a unit are matched one-to-one between the two peers by the
  correlation of their (spatially averaged, ungated) activations on the dissection images
  (Hungarian assignment), and the masks are compared after the matching (Jaccard), per class and
  unit; :func:`chance_jaccard` is what masks of the same sizes give under a random matching;
* **class-overlap agreement**: each peer's class x class matrix of mask overlaps (Jaccard of the
  whole-network masks of two classes) does not depend on channel order; the Pearson correlation
  of the two peers' off-diagonal entries says whether classes share parts alike in both.
"""

from __future__ import annotations

import torch


def jaccard(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Jaccard index of bool masks along the last dim: (..., C), (..., C) -> (...); 1 if both empty."""
    inter = (a & b).sum(-1).double()
    union = (a | b).sum(-1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def chance_jaccard(size_a: torch.Tensor, size_b: torch.Tensor, width: int) -> torch.Tensor:
    """Jaccard of masks of sizes ``size_a``, ``size_b`` among ``width`` channels matched at
    random (expected intersection ``a * b / width``; ratio of expectations)."""
    a, b = size_a.double(), size_b.double()
    inter = a * b / width
    return inter / (a + b - inter).clamp(min=1e-12)


def match_channels(acts_a: torch.Tensor, acts_b: torch.Tensor) -> torch.Tensor:
    """(C,) index ``perm`` pairing channel i of peer a with channel ``perm[i]`` of peer b.

    Args:
        acts_a, acts_b: (N, C) activations of the same N images; a channel that never varies
            correlates 0 with every channel.
    """
    from scipy.optimize import linear_sum_assignment

    a = acts_a.double() - acts_a.double().mean(0)
    b = acts_b.double() - acts_b.double().mean(0)
    a = a / a.norm(dim=0).clamp(min=1e-12)
    b = b / b.norm(dim=0).clamp(min=1e-12)
    corr = torch.nan_to_num(a.T @ b)
    rows, cols = linear_sum_assignment(corr.numpy(), maximize=True)
    perm = torch.empty(corr.shape[0], dtype=torch.long)
    perm[torch.as_tensor(rows)] = torch.as_tensor(cols)
    return perm


def class_overlap(masks: list[torch.Tensor]) -> torch.Tensor:
    """(n, n) Jaccard of the classes' whole-network masks, from one (n, C_u) bool mask per unit."""
    whole = torch.cat(masks, dim=1)
    return jaccard(whole[:, None, :], whole[None, :, :])


def overlap_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of the off-diagonal entries of two (n, n) class-overlap matrices
    (NaN for fewer than two classes or constant entries)."""
    n = a.shape[0]
    off = ~torch.eye(n, dtype=torch.bool)
    x, y = a[off].double(), b[off].double()
    if x.numel() < 2:
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    denom = x.norm() * y.norm()
    return float(x @ y / denom) if denom > 0 else float("nan")


def compare_masks(
    masks_a: list[torch.Tensor],
    masks_b: list[torch.Tensor],
    acts_a: list[torch.Tensor],
    acts_b: list[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Matched, chance and raw (index-wise) overlap of two peers' masks, each (n_classes, U).

    Args:
        masks_a, masks_b: per unit, (n_classes, C_u) bool masks of the two peers.
        acts_a, acts_b: per unit, (N, C_u) activations of the same images (for the matching).
    """
    matched, chance, raw = [], [], []
    for ma, mb, xa, xb in zip(masks_a, masks_b, acts_a, acts_b):
        perm = match_channels(xa, xb)
        matched.append(jaccard(ma, mb[:, perm]))
        chance.append(chance_jaccard(ma.sum(1), mb.sum(1), ma.shape[1]))
        raw.append(jaccard(ma, mb))
    return torch.stack(matched, 1), torch.stack(chance, 1), torch.stack(raw, 1)
