"""The stages of the early-exit cascade: inputs, per-stage logits, combination and exits.

Stage 0 is the image resized to the patch size; stage s >= 1 is the s-th localized patch,
cropped and resized. Stage s combines the logits of stages 0..s (sum or mean, a missing patch
adding nothing) and a sample exits at the first stage whose confidence reaches its threshold.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from analysis.errors import CollabError
from analysis.probes.model_state import eval_mode

COMBINE = ("sum", "mean")


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size), bilinear with antialiasing."""
    return F.interpolate(
        images, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )


def crop_patches(images: torch.Tensor, boxes: torch.Tensor, *, size: int) -> torch.Tensor:
    """Crop every box and resize it to ``size x size`` in one batched call (``roi_align``).

    Args:
        images: (B, C, H, W).
        boxes: (B, k, 4) pixel boxes ``(x0, y0, x1, y1)``, x1 / y1 exclusive; -1 = none.

    Returns:
        (B, k, C, size, size); a box of exactly ``size`` pixels is copied pixel for pixel,
        missing boxes give zeros.
    """
    from torchvision.ops import roi_align  # importing torchvision costs ~1 s: only when used

    b, k = boxes.shape[:2]
    rois = torch.cat(
        [torch.arange(b).repeat_interleave(k)[:, None].to(images), boxes.reshape(-1, 4).to(images)],
        dim=1,
    )
    out = roi_align(images, rois, output_size=(size, size), spatial_scale=1.0, aligned=True)
    out = out.view(b, k, images.shape[1], size, size)
    return out.masked_fill((boxes < 0).any(-1).to(images.device)[..., None, None, None], 0.0)


@torch.no_grad()
def stage_logits(
    classifier: nn.Module,
    images: torch.Tensor,
    boxes: torch.Tensor,
    *,
    patch_size: int,
    patch_classifier: nn.Module | None = None,
) -> torch.Tensor:
    """(S = 1 + k, B, classes) float32 logits: the resized image, then each patch (resized).

    Args:
        classifier: applied to the images resized to ``patch_size``; patch_classifier (default
            ``classifier``) to the (B, k, 4) ``boxes`` cropped and resized to ``patch_size``.
    """
    patches = crop_patches(images, boxes, size=patch_size)  # (B, k, C, s, s)
    b, k = patches.shape[:2]
    with eval_mode(classifier):
        first = classifier(resize_images(images, patch_size))
    with eval_mode(patch_classifier or classifier) as second:
        rest = second(patches.flatten(0, 1)).view(b, k, -1).transpose(0, 1)
    return torch.cat([first[None], rest]).float()


def combine_stages(
    logits: torch.Tensor, available: torch.Tensor, *, combine: str = "sum"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Confidence and prediction after each stage.

    Args:
        logits: (S, B, C) stage logits; available: (S, B) bool (a missing patch adds nothing).
        combine: ``"sum"`` or ``"mean"`` of the available stages' logits so far.

    Returns:
        conf (S, B) top softmax probability and pred (S, B) int64 of the combined logits.
    """
    if combine not in COMBINE:
        raise CollabError(f"unknown combine {combine!r}; use 'sum' or 'mean'")
    cum = (logits * available[..., None]).cumsum(0)
    if combine == "mean":
        cum = cum / available.cumsum(0).clamp_min(1)[..., None]
    return cum.softmax(-1).max(-1)


def exit_stages(conf: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """(T, B) index of the first stage whose confidence reaches its threshold (else the last).

    Args:
        conf: (S, B) confidence after each stage.
        thresholds: (T,) for every stage alike, or (T, S - 1) per stage (the last stage always
            answers, so it needs none).
    """
    s = conf.shape[0]
    thr = torch.as_tensor(thresholds).to(conf)
    thr = thr.reshape(len(thr), -1).expand(-1, s - 1)  # (T, S - 1)
    passes = conf[None, :-1] >= thr[..., None]  # (T, S - 1, B)
    passes = torch.cat([passes, torch.ones_like(conf[None, :1].bool()).expand(len(thr), 1, -1)], 1)
    return passes.int().argmax(1)
