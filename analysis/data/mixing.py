"""MixUp and CutMix of training batches, seeded per step, with soft targets.

``data.mixup_alpha`` / ``data.cutmix_alpha`` (0 = off). Each training step draws, from a
generator seeded by (seed, epoch, step) alone, one of the enabled mixes (an even choice when
both are on), ``lam ~ Beta(alpha, alpha)`` and a permutation of the batch, and returns

* MixUp (Zhang et al., 2018): ``lam * x + (1 - lam) * x[perm]``;
* CutMix (Yun et al., 2019): ``x`` with a box of ``x[perm]`` pasted in, the box of side
  ``sqrt(1 - lam)`` of the image's centred at a uniform point and clipped to the image, and
  ``lam`` recomputed as the share of the image left unpasted;

with targets ``lam * onehot(y) + (1 - lam) * onehot(y[perm])``. Per-peer views (a (B, K, C, H,
W) batch) are mixed with the same pairs, ``lam`` and box in every view. Only methods whose loss
reads the labels through cross-entropy take soft targets (``Method.soft_targets``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from analysis.data.seeding import derive_seed

#: Salt of the mixing generator's seed, apart from every view's (seed, epoch, index, view).
_SALT = 7919


@dataclass(frozen=True)
class Draw:
    """One step's mix: ``kind`` (mixup or cutmix), the label weight ``lam`` of each image's own
    label, the partner permutation, and CutMix's box (rows y0:y1, columns x0:x1) or None."""

    kind: str
    lam: float
    perm: torch.Tensor
    box: tuple[int, int, int, int] | None = None


class BatchMix:
    """``mix(x, y, seed=, epoch=, step=) -> (x, soft y)`` for ``num_classes`` classes."""

    def __init__(self, *, mixup_alpha: float, cutmix_alpha: float, num_classes: int) -> None:
        self.kinds = [(k, a) for k, a in (("mixup", mixup_alpha), ("cutmix", cutmix_alpha)) if a]
        self.num_classes = num_classes

    def draw(self, batch: int, size: tuple[int, int], *, seed: int, epoch: int, step: int) -> Draw:
        """The mix of step ``step`` of ``epoch`` for a batch of ``batch`` images of ``size``."""
        rng = np.random.default_rng(derive_seed(seed, epoch, step, _SALT))
        kind, alpha = self.kinds[int(rng.integers(len(self.kinds)))]
        lam = float(rng.beta(alpha, alpha))
        perm = torch.from_numpy(rng.permutation(batch))
        if kind == "mixup":
            return Draw(kind, lam, perm)
        (h, w), cut = size, math.sqrt(1.0 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        return Draw(kind, 1.0 - (y1 - y0) * (x1 - x0) / (h * w), perm, (y0, y1, x0, x1))

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, *, seed: int, epoch: int, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.draw(x.shape[0], tuple(x.shape[-2:]), seed=seed, epoch=epoch, step=step)
        if d.box is None:
            mixed = d.lam * x + (1 - d.lam) * x[d.perm]
        else:
            y0, y1, x0, x1 = d.box
            mixed = x.clone()
            mixed[..., y0:y1, x0:x1] = x[d.perm][..., y0:y1, x0:x1]
        onehot = F.one_hot(y, self.num_classes).to(x.dtype)
        return mixed, d.lam * onehot + (1 - d.lam) * onehot[d.perm]
