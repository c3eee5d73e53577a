"""The Deep Collaborative Learning module (Wang, Xie, Liu, Qiao, Zhang, Zhang, Tian, Yuille 2017).

*Deep Collaborative Learning for Visual Recognition* replaces one convolutional layer by a
two-stage module: K smaller convolutions computed separately (the *branches*, M filters each),
then fused at every spatial position so the module responds to *co-occurring* features.

Parameter count (branch conv ``k x k`` on ``in_chans`` channels, each followed by BN)::

    K * (in_chans * M * k * k + 2 * M)          -- linear in K

while the compositional vocabulary, one "word" (a filter index) per branch, has ``M ** K``
entries. With ``M = N / K`` a DCL module has the weights of the N-filter conv it replaces but
emits only M channels, so the next layer shrinks: that is where the savings come from.

Fusion operators (the option ``fusion``; details are [open] in the paper, choices named here):

* ``product`` -- ``prod_k ReLU(F_k)``: a channel fires only where every branch's filter does.
* ``sort`` -- SORT (Wang, Xie, Liu, Zhang, Zhang, Yuille 2017, same group), for two branches
  ``F1 + F2 + sqrt(ReLU(F1) * ReLU(F2) + 0.01)``. **Generalisation to K branches (choice):** the
  first-order sum of all branches plus one second-order term per unordered pair,
  ``sum_k F_k + sum_{i<j} sqrt(ReLU(F_i) * ReLU(F_j) + 0.01)``; it equals the paper's formula
  at K = 2 and stays second order (as the method's name says) for larger K.
* ``outer`` -- the outer product of the K ReLU'd branch vectors at each position: ``M ** K``
  channels, channel ``c = sum_k w_k * M ** (K - 1 - k)`` holds ``prod_k ReLU(F_k)[w_k]`` (the first
  branch is the most significant digit). Meant for small M.
* ``sum`` -- ``sum_k F_k``: the non-collaborative control (a plain conv of M filters in disguise).

The module stands in for conv -> BN -> ReLU: each branch is conv -> BN, ``product`` and
``outer`` are non-negative already, ``sum`` and ``sort`` are followed by a ReLU (as the SORT
term is used in ResNets, before the block's ReLU).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from analysis.errors import CollabError

FUSIONS = ("product", "sort", "outer", "sum")
#: The constant under SORT's square root (keeps its gradient finite at zero).
SORT_EPS = 0.01


def check_fusion(fusion: str) -> None:
    """Raise CollabError unless ``fusion`` is one of :data:`FUSIONS`."""
    if fusion not in FUSIONS:
        raise CollabError(f"unknown DCL fusion {fusion!r}; use one of: {', '.join(FUSIONS)}")


def fused_channels(branch_width: int, branches: int, fusion: str) -> int:
    """Channels a DCL module emits: ``M ** K`` for ``outer``, else ``M``."""
    check_fusion(fusion)
    return branch_width**branches if fusion == "outer" else branch_width


def fuse(responses: torch.Tensor, fusion: str) -> torch.Tensor:
    """Fuse branch responses position by position (no trailing ReLU; see :class:`DCLConv`).

    Args:
        responses: (K, B, M, H, W) pre-activation branch outputs F_k.
        fusion: one of :data:`FUSIONS`.

    Returns:
        (B, M, H, W), or (B, M ** K, H, W) for ``outer``.
    """
    check_fusion(fusion)
    if fusion == "sum":
        return responses.sum(0)
    positive = responses.relu()
    if fusion == "product":
        return positive.prod(0)
    if fusion == "sort":
        second = sum(
            torch.sqrt(positive[i] * positive[j] + SORT_EPS)
            for i, j in itertools.combinations(range(len(responses)), 2)
        )
        return responses.sum(0) + second
    out = positive[0]
    for branch in positive[1:]:
        # (B, C, 1, H, W) * (B, 1, M, H, W) -> (B, C * M, H, W): earlier branches vary slowest.
        out = (out.unsqueeze(2) * branch.unsqueeze(1)).flatten(1, 2)
    return out


class DCLConv(nn.Module):
    """K separately computed ``k x k`` convs of M filters each, fused at every position.

    Submodules ``branches.0`` ... ``branches.{K-1}`` (each conv -> BN) output the branch
    responses F_k, so forward hooks on them see exactly what :meth:`branch_outputs` stacks.

    Args:
        in_chans: input channels.
        branch_width: M, filters per branch.
        branches: K >= 1 (the paper uses 2).
        fusion: one of :data:`FUSIONS`.
        kernel_size: side of every branch conv.
        stride: stride of every branch conv.
        padding: zero padding; ``None`` keeps the size at stride 1 (``kernel_size // 2``).

    Attributes:
        out_chans: channels of the fused output (``M`` or ``M ** K``).
        vocabulary_size: ``M ** K`` compositional words.
    """

    def __init__(
        self,
        in_chans: int,
        branch_width: int,
        *,
        branches: int = 2,
        fusion: str = "product",
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
    ) -> None:
        super().__init__()
        if branches < 1 or branch_width < 1:
            raise CollabError(
                f"a DCL module needs branches >= 1 and branch_width >= 1, got {branches} and "
                f"{branch_width}; use e.g. branches=2"
            )
        pad = kernel_size // 2 if padding is None else padding
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(
                    in_chans, branch_width, kernel_size, stride=stride, padding=pad, bias=False
                ),
                nn.BatchNorm2d(branch_width),
            )
            for _ in range(branches)
        )
        self.fusion = fusion
        self.branch_width = branch_width
        self.out_chans = fused_channels(branch_width, branches, fusion)
        self.vocabulary_size = branch_width**branches
        self.activation = nn.ReLU() if fusion in ("sum", "sort") else nn.Identity()

    @property
    def num_branches(self) -> int:
        return len(self.branches)

    def branch_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-fusion responses: (B, in_chans, H, W) -> (K, B, M, H', W')."""
        return torch.stack([branch(x) for branch in self.branches])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, out_chans, H', W'), non-negative."""
        return self.activation(fuse(self.branch_outputs(x), self.fusion))

    def extra_repr(self) -> str:
        return f"fusion={self.fusion!r}, vocabulary_size={self.vocabulary_size}"


def dcl_param_count(
    in_chans: int, branch_width: int, *, branches: int, kernel_size: int = 3
) -> int:
    """Parameters of a :class:`DCLConv`: ``K * (in * M * k * k + 2 * M)`` (conv weights + BN)."""
    return branches * (in_chans * branch_width * kernel_size**2 + 2 * branch_width)


def auto_branch_width(filters: int, *, branches: int, fusion: str) -> int:
    """Default M for a DCL module replacing a conv of ``filters`` (N) filters.

    ``outer``: the largest M with ``M ** K <= N`` (the fused output keeps about N channels);
    otherwise ``N // K`` (the branches hold the replaced conv's weights). At least 1.
    """
    check_fusion(fusion)
    if fusion != "outer":
        return max(1, filters // branches)
    m = max(1, round(filters ** (1.0 / branches)))
    while m > 1 and m**branches > filters:
        m -= 1
    while (m + 1) ** branches <= filters:
        m += 1
    return m
