"""Deterministic tensor augmentations: every random choice comes from a given torch.Generator.

Presets (:func:`augment_for`): digit datasets get a 2-pixel crop jitter and no flip (a
mirrored 2 or 5 is not a digit); natural-image datasets get the usual CIFAR crop-4 + flip.
``shapes`` gets no augmentation: crops and flips would move the shape away from the
ground-truth box that localisation probes compare against. ``textured_shapes`` gets a 2-pixel
reflected crop jitter and a flip (every class is mirror-symmetric): its boxes are read on the
unaugmented test split, and Divide-and-Co-training needs views that differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from analysis.errors import CollabError


def random_crop(
    img: torch.Tensor, pad: int, gen: torch.Generator, *, mode: str = "constant"
) -> torch.Tensor:
    """Pad by ``pad`` pixels on every side, then crop a random window of the original size.

    Args:
        img: (C, H, W) image.
        pad: Padding in pixels; 0 returns ``img`` unchanged.
        gen: Source of the two offsets.
        mode: ``"constant"`` (zeros) or ``"reflect"``.

    Returns:
        (C, H, W) tensor: ``img`` shifted by up to ``pad`` pixels in each direction.
    """
    if pad <= 0:
        return img
    h, w = img.shape[-2:]
    dy, dx = torch.randint(0, 2 * pad + 1, (2,), generator=gen).tolist()
    padded = F.pad(img.unsqueeze(0), (pad, pad, pad, pad), mode=mode).squeeze(0)
    return padded[:, dy : dy + h, dx : dx + w]


def hflip(img: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror (C, H, W) ``img`` left-right with probability ``p``."""
    # Always draw, so the generator advances identically whatever the outcome.
    flip = torch.rand((), generator=gen).item() < p
    return img.flip(-1) if flip else img


@dataclass(frozen=True)
class Augment:
    """Crop jitter then optional horizontal flip: ``aug(img (C, H, W), gen) -> (C, H, W)``.

    Args:
        crop_pad: Padding of :func:`random_crop`; 0 disables cropping.
        hflip: Whether to flip left-right with probability 0.5.
        pad_mode: ``"constant"`` or ``"reflect"``.
    """

    crop_pad: int = 4
    hflip: bool = True
    pad_mode: str = "constant"

    def __call__(self, img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        out = random_crop(img, self.crop_pad, gen, mode=self.pad_mode)
        return hflip(out, gen) if self.hflip else out


_DIGIT_LIKE = Augment(crop_pad=2, hflip=False)
_NATURAL = Augment(crop_pad=4, hflip=True)
# Every textured-shapes class is mirror-symmetric (stripes keep their direction), so a flip keeps
# the label; a 2-pixel reflected shift keeps shapes clear of a blank border.
_MIRROR = Augment(crop_pad=2, hflip=True, pad_mode="reflect")
PRESETS: dict[str, Augment | None] = {
    "digits": _DIGIT_LIKE,
    "mnist": _DIGIT_LIKE,
    "svhn": _DIGIT_LIKE,
    "multidigit": _DIGIT_LIKE,
    "cifar10": _NATURAL,
    "cifar100": _NATURAL,
    "imagefolder": _NATURAL,
    "shapes": None,
    "textured_shapes": _MIRROR,
}


def augment_for(name: str) -> Augment | None:
    """The default augmentation of dataset ``name`` (``test_`` members share their family's).

    Returns:
        An :class:`Augment`, or ``None`` when the dataset must not be augmented.
    """
    key = name.removeprefix("test_")
    if key not in PRESETS:
        raise CollabError(
            f"no augmentation preset for dataset {name!r}; choose one of: {', '.join(sorted(PRESETS))}"
        )
    return PRESETS[key]
