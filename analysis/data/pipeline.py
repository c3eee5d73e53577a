"""Standard augmentation pipelines through ``torchvision.transforms.v2``, seeded per view.

``data.transforms`` names a preset or lists v2 transforms; ``data.eval_transforms`` does the same
for the images the model is evaluated on (validation, test, probes). Left at ``null`` both keep
the dataset's own tensor preset (:mod:`analysis.data.augment`), bit for bit.

========== ================================================ ==========================================
preset     training views                                   evaluation images
========== ================================================ ==========================================
``cifar``  ``RandomCrop(S, padding=4)``, ``RandomHorizontalFlip()`` unchanged
``imagenet`` ``RandomResizedCrop(224)``, ``RandomHorizontalFlip()`` ``Resize(256)``, ``CenterCrop(224)``
========== ================================================ ==========================================

``imagenet`` reads ``imagefolder`` images at their size on disk (nothing resized while loading),
as the torchvision reference recipe does. A list names v2 classes, each either a bare name or a
one-key mapping to its keyword arguments, e.g.::

    transforms: [{RandomResizedCrop: {size: 224}}, RandomHorizontalFlip, AutoAugment]

v2 transforms draw from torch's global generator, so each view runs inside
``torch.random.fork_rng`` seeded from the view's own generator (seeded by (seed, epoch, index,
view)): views stay the same whatever the worker, rank or order, and the global stream is left
as it was. MixUp and CutMix act on whole batches: ``data.mixup_alpha`` / ``data.cutmix_alpha``
(:mod:`analysis.data.mixing`), not steps of this list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from analysis.data.bundle import DataBundle
from analysis.errors import CollabError

#: A ``data.transforms`` value: a preset name, a list of steps, or None for the dataset preset.
Spec = str | Sequence[str | dict[str, Any]] | None

PRESETS = ("cifar", "imagenet")


def preset_steps(name: str, size: int | None) -> tuple[list, list]:
    """The (training, evaluation) steps of preset ``name`` for images of side ``size``."""
    if name == "cifar":
        return [{"RandomCrop": {"size": size, "padding": 4}}, "RandomHorizontalFlip"], []
    if name == "imagenet":
        return (
            [{"RandomResizedCrop": {"size": 224}}, "RandomHorizontalFlip"],
            [{"Resize": {"size": 256}}, {"CenterCrop": {"size": 224}}],
        )
    raise CollabError(
        f"unknown data.transforms preset {name!r}; choose one of: {', '.join(PRESETS)}, "
        "or list torchvision.transforms.v2 steps"
    )


_BATCH_ONLY = ("MixUp", "CutMix")


@dataclass(frozen=True)
class Pipeline:
    """The resolved pipeline of a config: training view steps, evaluation steps, and whether
    images are read at their file size (``raw``) and the side they come out at (``size``)."""

    train: tuple
    eval: tuple
    raw: bool = False
    size: int | None = None


def resolve(transforms: Spec, eval_transforms: Spec, *, image_size: int | None) -> Pipeline | None:
    """The :class:`Pipeline` of ``data.transforms`` / ``data.eval_transforms`` (None: neither set).

    Raises CollabError naming an unknown preset or transform, or bad keyword arguments.
    """
    if transforms is None and eval_transforms is None:
        return None
    raw = transforms == "imagenet"
    size = 224 if raw else image_size
    train_spec, eval_spec = [], []
    if isinstance(transforms, str):
        train_spec, eval_spec = preset_steps(transforms, size)
    elif transforms is not None:
        train_spec = list(transforms)
    if isinstance(eval_transforms, str):
        eval_spec = preset_steps(eval_transforms, size)[1]
    elif eval_transforms is not None:
        eval_spec = list(eval_transforms)
    if raw and not eval_spec:
        raise CollabError(
            "data.transforms=imagenet reads images at their size on disk, so evaluation needs "
            "steps that give one size; leave data.eval_transforms unset (Resize 256, CenterCrop "
            "224) or list such steps"
        )
    return Pipeline(
        train=tuple(build_steps(train_spec, key="data.transforms")),
        eval=tuple(build_steps(eval_spec, key="data.eval_transforms")),
        raw=raw,
        size=size,
    )


def build_steps(spec: Sequence, *, key: str) -> list:
    """v2 transform objects for the steps of ``spec`` (names and one-key mappings)."""
    from torchvision.transforms import v2

    steps = []
    for name, kwargs in map(_name_kwargs, spec):
        cls = getattr(v2, name, None)
        if name.startswith("_") or not isinstance(cls, type) or not issubclass(cls, v2.Transform):
            raise CollabError(
                f"{key}: {name!r} is not a torchvision.transforms.v2 transform; use a class "
                "name such as RandomResizedCrop, RandomHorizontalFlip or AutoAugment"
            )
        if name in _BATCH_ONLY:
            raise CollabError(
                f"{key}: {name} mixes whole batches; set data.mixup_alpha or "
                "data.cutmix_alpha instead"
            )
        try:
            steps.append(cls(**kwargs))
        except (TypeError, ValueError) as err:
            raise CollabError(
                f"{key}: {name}({kwargs}) is invalid ({err}); fix its arguments"
            ) from None
    return steps


def _name_kwargs(step: Any) -> tuple[str, dict]:
    """``(name, kwargs)`` of a step given as ``"Name"`` or ``{Name: {arg: value}}``."""
    if isinstance(step, str):
        return step, {}
    if isinstance(step, dict) and len(step) == 1:
        ((name, kwargs),) = step.items()
        if kwargs is None or isinstance(kwargs, dict):
            return str(name), dict(kwargs or {})
    raise CollabError(
        f"transform step {step!r} must be a name or a one-key mapping {{Name: {{arg: value}}}}; "
        "fix the list"
    )


class SeededViews:
    """``view(img, gen) -> img``: the training steps, seeded from ``gen`` alone."""

    def __init__(self, steps: Sequence) -> None:
        self.steps = list(steps)

    def __call__(self, img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, (), generator=gen))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for step in self.steps:
                img = step(img)
        return img


class Transformed(Dataset):
    """``dataset`` with deterministic ``steps`` applied to every image (evaluation images)."""

    def __init__(self, dataset: Dataset, steps: Sequence[Callable]) -> None:
        self.dataset, self.steps = dataset, list(steps)
        self.labels = getattr(dataset, "labels", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        img, label = self.dataset[index]
        for step in self.steps:
            img = step(img)
        return img, label


def with_pipeline(bundle: DataBundle, pipeline: Pipeline) -> DataBundle:
    """``bundle`` whose training views come from ``pipeline.train`` and whose evaluation images
    (``train`` as the validation split and probes read it, ``test``) pass ``pipeline.eval``."""
    views = SeededViews(pipeline.train)
    if not pipeline.eval:
        return dataclasses.replace(bundle, augment=views)
    return dataclasses.replace(
        bundle,
        train=Transformed(bundle.train, pipeline.eval),
        test=Transformed(bundle.test, pipeline.eval),
        image_size=pipeline.size or bundle.image_size,
        augment=views,
        augment_source=bundle.train,
    )
