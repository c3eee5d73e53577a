"""Linear CKA from unbiased HSIC: the maths, streamed over minibatches with bounded memory.

Two estimators:

* :func:`linear_cka` — the exact full-batch linear CKA of Kornblith et al. (2019),
  ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` on column-centred features, in float64.
  It needs every sample in memory: for small inputs and as a reference.
* the minibatch estimator of Nguyen, Raghu & Kornblith (2021) (:class:`MinibatchCKA`):
  ``CKA = sum_b HSIC1(K_b, L_b) / sqrt(sum_b HSIC1(K_b, K_b) * sum_b HSIC1(L_b, L_b))`` with
  ``HSIC1`` the unbiased HSIC of Song et al. (2012) of each minibatch's (B, B) linear Gram
  matrices: per batch one Gram per layer, then every layer x layer HSIC at once, so memory does
  not grow with the number of samples.

Float32 accuracy: the features are centred before the float32 Gram (uncentred float32 Grams
of ReLU features cancel badly). The unbiased HSIC is exactly invariant to shifting the
features, so a shift close to the mean (e.g. the first batch's, as the CKA probe uses) serves
as well as the batch mean; everything after the Gram is accumulated in float64.

Speed: the Grams dominate the cost (B x D x B / 2 multiply-adds per layer and batch). On the
CPU they run as NumPy ``syrk`` calls spread over a small thread pool; see :func:`gram_matrices`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from analysis.layout import is_channels_last

#: The unbiased HSIC divides by n (n - 3): batches need at least 4 samples.
MIN_BATCH = 4


def flat_features(x: torch.Tensor, pool: bool) -> torch.Tensor:
    """(B, ...) activations -> (B, D) float features (spatially averaged first with ``pool``).

    An NHWC activation (the CPU's probe pass, :mod:`analysis.layout`) is flattened in its own
    (H, W, C) order, a view rather than a copy: Grams, and so CKA and HSIC, do not depend on
    the order of the features.
    """
    x = x.detach()
    if pool and x.dim() > 2:
        x = x.flatten(2).mean(dim=2) if not is_channels_last(x) else x.mean(dim=(2, 3))
    elif is_channels_last(x):
        x = x.permute(0, 2, 3, 1)
    x = x.reshape(x.shape[0], -1)
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _numpy_gram(c: np.ndarray) -> np.ndarray:
    return c @ c.T  # NumPy runs c @ c.T as a BLAS syrk: half a general product's work


@functools.cache
def _blas_threads() -> ThreadpoolController:
    return ThreadpoolController()


@functools.cache
def _gram_workers(count: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=count, thread_name_prefix="cka-gram")


def _on_workers(fn, *columns: Sequence) -> torch.Tensor:
    """``stack([fn(*row) for row in zip(*columns)])``, one row per worker thread with
    single-threaded BLAS (see :func:`gram_matrices`)."""
    workers = min(torch.get_num_threads(), len(columns[0]))
    with _blas_threads().limit(limits=1, user_api="blas"):
        if workers > 1:
            grams = list(_gram_workers(workers).map(fn, *columns))
        else:
            grams = [fn(*row) for row in zip(*columns)]
    return torch.from_numpy(np.stack(grams))


def centred_grams(xs: Sequence[torch.Tensor], *, pool: bool = False) -> torch.Tensor:
    """Linear Gram matrices of one batch's batch-centred features, one per layer.

    Each activation (B, ...) is flattened per sample to (B, D) (with ``pool``: averaged over
    the spatial positions to (B, C)), centred and multiplied with itself by
    :func:`gram_matrices`.

    Args:
        xs: L activations (B, ...) of the same batch.
        pool: spatially average (B, C, H, W) -> (B, C) first.

    Returns:
        (L, B, B) Grams in the features' dtype (float32, or float64 for float64 input).
    """
    feats = [flat_features(x, pool) for x in xs]
    return gram_matrices([f - f.mean(dim=0) for f in feats])


def gram_matrices(centred: Sequence[torch.Tensor]) -> torch.Tensor:
    """(L, B, B) Grams ``c @ c.T`` of L already centred (B, D) feature matrices.

    On the CPU the Grams run in NumPy (``syrk``: measured 1.6x faster than ``torch.mm`` for
    B = 100, D = 16384), one layer per worker thread with single-threaded BLAS, using as many
    workers as torch has threads (multi-threaded BLAS spin-waiting next to torch's OpenMP
    threads was several times slower; the BLAS limit is process-wide while this runs).
    Other devices use torch.
    """
    if any(c.device.type != "cpu" for c in centred):
        return torch.stack([c @ c.T for c in centred])
    return _on_workers(_numpy_gram, [c.numpy() for c in centred])


def centred_gram(x: torch.Tensor, *, pool: bool = False) -> torch.Tensor:
    """(B, ...) activations -> (B, B) Gram of the batch-centred features (see :func:`centred_grams`)."""
    return centred_grams([x], pool=pool)[0]


def pairwise_unbiased_hsic(grams: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC (Song et al. 2012) of every pair of ``L`` Gram matrices of one batch.

    With ``K~`` the Gram with its diagonal zeroed, ``HSIC1(K, L) = [tr(K~L~) + 1'K~1 1'L~1 /
    ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))``. All pairs cost one (L, n^2) x (n^2, L) product.

    Args:
        grams: (L, n, n) symmetric Gram matrices, n >= 4.

    Returns:
        (L, L) float64 HSIC1 values.
    """
    count, n, _ = grams.shape
    if n < MIN_BATCH:
        raise ValueError(f"the unbiased HSIC needs at least {MIN_BATCH} samples, got {n}")
    # NumPy on the CPU: these small ops are slower in torch with 2+ threads (OpenMP wake-ups)
    k = grams.detach().cpu().numpy().astype(np.float64)
    k[:, np.arange(n), np.arange(n)] = 0.0
    flat = k.reshape(count, n * n)
    rows = k.sum(axis=2)  # (L, n): K~ 1
    with _blas_threads().limit(limits=1, user_api="blas"):  # see gram_matrices
        trace = flat @ flat.T  # tr(K~ L~) = sum(K~ * L~) for symmetric matrices
        cross = rows @ rows.T
    totals = flat.sum(axis=1)
    hsic = trace + np.outer(totals, totals) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * cross
    return torch.from_numpy(hsic / (n * (n - 3)))


def unbiased_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
    """Unbiased HSIC of two (n, n) Gram matrices; a float64 scalar."""
    return pairwise_unbiased_hsic(torch.stack([k, l]))[0, 1]


class MinibatchCKA:
    """Running sums of HSIC1 over minibatches for ``num_layers`` layers (memory O(L^2)).

    Batches of fewer than 4 samples cannot enter the unbiased estimator; they are counted in
    ``skipped`` and left out.
    """

    def __init__(self, num_layers: int) -> None:
        self.hsic = torch.zeros(num_layers, num_layers, dtype=torch.float64)
        self.samples = 0
        self.skipped = 0
        self.largest_batch = 0

    def add_grams(self, grams: torch.Tensor) -> None:
        """Fold one batch's (L, n, n) Gram matrices into the sums."""
        n = grams.shape[1]
        if n < MIN_BATCH:
            self.skipped += n
            return
        self.hsic += pairwise_unbiased_hsic(grams)
        self.samples += n
        self.largest_batch = max(self.largest_batch, n)

    def add(self, features: Sequence[torch.Tensor], *, pool: bool = False) -> None:
        """Fold one batch of L feature tensors, each (n, ...), into the sums."""
        self.add_grams(centred_grams(features, pool=pool))

    def matrix(self) -> torch.Tensor:
        """(L, L) float64 CKA; NaN for a layer whose self-HSIC is not positive (constant features)."""
        diag = self.hsic.diagonal()
        scale = torch.sqrt(torch.outer(diag, diag).clamp(min=0.0))
        out = self.hsic / scale
        bad = diag <= 0
        out[bad, :] = float("nan")
        out[:, bad] = float("nan")
        return out


def minibatch_cka(
    features: Sequence[torch.Tensor], *, batch_size: int, pool: bool = False
) -> torch.Tensor:
    """Minibatch CKA between in-memory feature sets over consecutive batches.

    Args:
        features: L tensors (N, ...) of the same N samples in the same order.
        batch_size: samples per minibatch (a last batch of fewer than 4 is left out).

    Returns:
        (L, L) float64 CKA matrix.
    """
    n = features[0].shape[0]
    if any(f.shape[0] != n for f in features):
        raise ValueError("all feature sets must hold the same number of samples")
    acc = MinibatchCKA(len(features))
    for start in range(0, n, batch_size):
        acc.add([f[start : start + batch_size] for f in features], pool=pool)
    return acc.matrix()


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exact full-batch linear CKA (Kornblith et al. 2019) of two feature sets, in float64.

    Args:
        x: (N, ...) features, flattened per sample to (N, D1).
        y: (N, ...) features of the same samples, flattened to (N, D2).

    Returns:
        A float64 scalar in [0, 1]: ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``.
    """
    n = x.shape[0]
    xs = x.reshape(n, -1).double()
    ys = y.reshape(n, -1).double()
    xs, ys = xs - xs.mean(dim=0), ys - ys.mean(dim=0)
    if xs.shape[1] * ys.shape[1] <= n * n:  # feature space is the smaller one
        cross = (ys.T @ xs).square().sum()
        norm_x, norm_y = (xs.T @ xs).square().sum().sqrt(), (ys.T @ ys).square().sum().sqrt()
    else:  # sample space: tr(K L) with K = Xc Xc^T
        k, l = xs @ xs.T, ys @ ys.T  # noqa: E741
        cross = (k * l).sum()
        norm_x, norm_y = k.square().sum().sqrt(), l.square().sum().sqrt()
    return cross / (norm_x * norm_y)
