"""Does an attribution map point at the pixels the model really uses? Deletion and insertion.

Petsiuk, Das & Saenko (2018, *RISE*): rank the pixels by the map, then

* **deletion**: replace the most-attributed pixels by a baseline, a growing share at each step,
  and record the model's probability of the target class; a faithful map makes it fall fast,
  so a *lower* area under the curve is better;
* **insertion**: start from the baseline image and put the most-attributed pixels back; a
  faithful map makes the probability rise fast, so a *higher* area is better.

A pixel is a spatial position: all its channels are replaced together. Step t of ``steps``
replaces the ``floor(t * H * W / steps)`` highest-ranked pixels (ties broken by position, first
pixel first). The area is the trapezoidal integral over the fraction replaced, in [0, 1].

Any map (B, h, w) works, whatever made it: captum maps from :mod:`analysis.probes.attributions`
or a class-activation map (e.g. AnchorNet's (B, h, w) CAM) -- maps smaller than the image are
upsampled bilinearly first. Any model works that maps images (B, C, H, W) to logits (B, C'); a
model returning ``CollabOutput`` is scored by its ensemble logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from analysis.probes.model_state import eval_mode

BASELINES = ("zeros", "mean", "blur")


def make_baseline(images: torch.Tensor, baseline: str | torch.Tensor, *, blur_sigma: float = 2.0):
    """(B, C, H, W) replacement values for ``images``.

    Args:
        images: (B, C, H, W) images.
        baseline: ``"zeros"`` (black), ``"mean"`` (each image's per-channel mean), ``"blur"``
            (Gaussian blur of the image with ``blur_sigma`` pixels), or a tensor that broadcasts
            to (B, C, H, W).
    """
    if torch.is_tensor(baseline):
        return baseline.to(images).expand_as(images)
    if baseline == "zeros":
        return torch.zeros_like(images)
    if baseline == "mean":
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    if baseline == "blur":
        kernel = 2 * math.ceil(3 * blur_sigma) + 1
        from torchvision.transforms.functional import (
            gaussian_blur,  # lazy: torchvision is slow to import
        )

        return gaussian_blur(images, [kernel, kernel], [blur_sigma, blur_sigma])
    raise ValueError(f"unknown baseline {baseline!r}; use one of {BASELINES} or a tensor")


def _ranks(saliency: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H*W) int64 rank of every pixel, 0 = most attributed."""
    if saliency.dim() != 3:
        raise ValueError(f"expected a saliency map (B, h, w), got {tuple(saliency.shape)}")
    sal = saliency.detach().float()
    if tuple(sal.shape[-2:]) != size:
        sal = F.interpolate(sal[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    order = torch.argsort(sal.flatten(1), dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1]).expand_as(order).contiguous())
    return ranks


def _logits(out) -> torch.Tensor:
    return out.ensemble_logits if hasattr(out, "ensemble_logits") else out


def _curves(model, images, saliency, *, target, steps, baseline, insert, batch_size, blur_sigma):
    """(B, steps + 1) probabilities and (steps + 1,) fractions along the perturbation path."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if len(saliency) != len(images):
        raise ValueError(f"got {len(saliency)} saliency maps for {len(images)} images")
    device = next((p.device for p in model.parameters()), images.device)
    images = images.detach().to(device).float()
    num_b, _, height, width = images.shape
    pixels = height * width
    counts = torch.tensor([t * pixels // steps for t in range(steps + 1)], device=device)
    ranks = _ranks(saliency, (height, width)).to(device)
    base = make_baseline(images, baseline, blur_sigma=blur_sigma)
    if target is None:
        target = _logits(model(images)).argmax(-1)
    target = torch.as_tensor(target, dtype=torch.long, device=device).expand(num_b)
    per_chunk = max(1, batch_size // (steps + 1))
    rows = []
    for start in range(0, num_b, per_chunk):
        sl = slice(start, start + per_chunk)
        # (S+1, b, 1, H, W): True where the pixel has been replaced (deletion) / inserted.
        chosen = (ranks[sl][None] < counts[:, None, None]).view(steps + 1, -1, 1, height, width)
        moved, kept = (images[sl], base[sl]) if insert else (base[sl], images[sl])
        path = torch.where(chosen, moved[None], kept[None]).flatten(0, 1)
        probs = _logits(model(path)).float().softmax(-1)
        tgt = target[sl].repeat(steps + 1)
        rows.append(probs.gather(1, tgt[:, None]).view(steps + 1, -1).T)
    return torch.cat(rows).cpu(), (counts.float() / pixels).cpu()


def _scored(model, images, saliency, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    with eval_mode(model), torch.no_grad():
        curves, fractions = _curves(model, images, saliency, **kw)
    return curves, torch.trapezoid(curves, fractions, dim=1)


def deletion_curve(
    model: nn.Module,
    images: torch.Tensor,
    saliency: torch.Tensor,
    *,
    target: int | torch.Tensor | None = None,
    steps: int = 20,
    baseline: str | torch.Tensor = "zeros",
    batch_size: int = 256,
    blur_sigma: float = 2.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Probability of ``target`` as the most-attributed pixels are deleted.

    Args:
        model: images (B, C, H, W) in [0, 1] -> logits (B, C') (or a ``CollabOutput``).
        images: (B, C, H, W) images.
        saliency: (B, h, w) attribution maps; higher = more important.
        target: an int, a (B,) tensor, or None for the model's top-1 class on each image.
        steps: number of deletion steps; the curve has ``steps + 1`` points.
        baseline: replacement values (see :func:`make_baseline`), default black.
        batch_size: perturbed images per forward pass.
        blur_sigma: std in pixels of the ``"blur"`` baseline.

    Returns:
        ``(curves, auc)``: curves (B, steps + 1), starting at the unperturbed probability and
        ending at the baseline's; auc (B,) in [0, 1], lower = more faithful.
    """
    return _scored(
        model,
        images,
        saliency,
        target=target,
        steps=steps,
        baseline=baseline,
        insert=False,
        batch_size=batch_size,
        blur_sigma=blur_sigma,
    )


def insertion_curve(
    model: nn.Module,
    images: torch.Tensor,
    saliency: torch.Tensor,
    *,
    target: int | torch.Tensor | None = None,
    steps: int = 20,
    baseline: str | torch.Tensor = "blur",
    batch_size: int = 256,
    blur_sigma: float = 2.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Probability of ``target`` as the most-attributed pixels are put back into the baseline.

    Arguments as in :func:`deletion_curve` (the baseline defaults to a blurred copy, as in
    RISE). Returns ``(curves (B, steps + 1), auc (B,))``; the curve starts at the baseline's
    probability and ends at the unperturbed one; higher auc = more faithful.
    """
    return _scored(
        model,
        images,
        saliency,
        target=target,
        steps=steps,
        baseline=baseline,
        insert=True,
        batch_size=batch_size,
        blur_sigma=blur_sigma,
    )


def deletion_by_peer(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    *,
    target: int | torch.Tensor | None = None,
    insertion: bool = False,
    **options,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Score each peer's own attribution maps on that peer (``model.peer(k)``).

    Args:
        model: a collaborative model with ``num_peers`` and ``peer(k)``.
        images: (B, C, H, W) images in [0, 1].
        maps: (K, B, h, w) maps, e.g. from :func:`attribute_all_peers`.
        target: as in :func:`deletion_curve` (None: each peer's own top-1 class).
        insertion: score insertion instead of deletion.
        **options: ``steps``, ``baseline``, ``batch_size``, ``blur_sigma``.

    Returns:
        ``(curves (K, B, steps + 1), auc (K, B))``.
    """
    if maps.dim() != 4 or maps.shape[0] != model.num_peers:
        raise ValueError(f"expected maps (K={model.num_peers}, B, h, w), got {tuple(maps.shape)}")
    score = insertion_curve if insertion else deletion_curve
    results = [
        score(model.peer(k), images, maps[k], target=target, **options)
        for k in range(model.num_peers)
    ]
    return torch.stack([c for c, _ in results]), torch.stack([a for _, a in results])
