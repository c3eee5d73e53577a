"""Datasets and per-peer views.

``build_dataset(name, ...)`` returns a :class:`DataBundle` whose splits yield
``(image (C, H, W) float32 in [0, 1], label int)``. Registered names: ``digits`` (bundled with
scikit-learn), ``shapes`` (procedural, with boxes), ``textured_shapes`` (12 striped shapes,
harder, with boxes), ``cifar10``, ``cifar100``, ``svhn``,
``mnist``, ``imagefolder`` (from ``root``), ``multidigit`` (two digits side by side, 100
classes), and the tiny ``test_digits`` / ``test_shapes`` / ``test_textured_shapes`` /
``test_multidigit``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from analysis.data.augment import Augment, augment_for
from analysis.data.bundle import DataBundle
from analysis.data.digits import build_digits
from analysis.data.multidigit import build_multidigit
from analysis.data.pipeline import Spec, resolve, with_pipeline
from analysis.data.shapes import build_shapes
from analysis.data.textured_shapes import build_textured_shapes
from analysis.data.tv import (
    CIFAR10,
    CIFAR100,
    build_cifar,
    build_imagefolder,
    build_mnist,
    build_svhn,
)
from analysis.data.views import MultiView, WithIndex
from analysis.errors import CollabError
from analysis.registry import Registry

__all__ = [
    "DATASETS",
    "Augment",
    "DataBundle",
    "dataset_for",
    "MultiView",
    "WithIndex",
    "augment_for",
    "build_dataset",
]

DATASETS = Registry("dataset")

# Every builder takes the same keywords: root, download, image_size (None = the dataset's
# default) and seed (the training seed). Built-in datasets ignore root and download.


@DATASETS.register("digits")
def _digits(*, root=None, download=False, image_size=None, seed=0) -> DataBundle:
    return build_digits(image_size=image_size or 32)


@DATASETS.register("test_digits")
def _test_digits(*, root=None, download=False, image_size=None, seed=0) -> DataBundle:
    return build_digits(image_size=image_size or 16, limit=(200, 100))


@DATASETS.register("shapes")
def _shapes(*, root=None, download=False, image_size=None, seed=0) -> DataBundle:
    return build_shapes(image_size=image_size or 64, n_train=4000, n_test=1000, seed=seed)


@DATASETS.register("test_shapes")
def _test_shapes(*, root=None, download=False, image_size=None, seed=0) -> DataBundle:
    return build_shapes(image_size=image_size or 32, n_train=240, n_test=120, seed=seed)


@DATASETS.register("textured_shapes")
def _textured_shapes(*, root=None, download=False, image_size=None, seed=0) -> DataBundle:
    return build_textured_shapes(image_size=image_size or 32, n_train=3000, n_test=1200, seed=seed)


@DATASETS.register("test_textured_shapes")
def _test_textured_shapes(*, root=None, download=False, image_size=None, seed=0) -> DataBundle:
    return build_textured_shapes(image_size=image_size or 16, n_train=240, n_test=120, seed=seed)


@DATASETS.register("multidigit")
def _multidigit(*, root=None, download=False, image_size=None, seed=0) -> DataBundle:
    return build_multidigit(image_size=image_size or 32, seed=seed)


@DATASETS.register("test_multidigit")
def _test_multidigit(*, root=None, download=False, image_size=None, seed=0) -> DataBundle:
    return build_multidigit(image_size=image_size or 16, n_train=200, n_test=100, seed=seed)


@DATASETS.register("cifar10")
def _cifar10(*, root=None, download=False, image_size=None, seed=0) -> DataBundle:
    return build_cifar(CIFAR10, root=root, download=download, image_size=image_size)


@DATASETS.register("cifar100")
def _cifar100(*, root=None, download=False, image_size=None, seed=0) -> DataBundle:
    return build_cifar(CIFAR100, root=root, download=download, image_size=image_size)


@DATASETS.register("svhn")
def _svhn(*, root=None, download=False, image_size=None, seed=0) -> DataBundle:
    return build_svhn(root=root, download=download, image_size=image_size)


@DATASETS.register("mnist")
def _mnist(*, root=None, download=False, image_size=None, seed=0) -> DataBundle:
    return build_mnist(root=root, download=download, image_size=image_size)


@DATASETS.register("imagefolder")
def _imagefolder(*, root=None, download=False, image_size=None, seed=0) -> DataBundle:
    return build_imagefolder(root=root, image_size=image_size)


def build_dataset(
    name: str,
    *,
    root: str | None = None,
    download: bool = False,
    image_size: int | None = None,
    seed: int = 0,
    transforms: Spec = None,
    eval_transforms: Spec = None,
) -> DataBundle:
    """Build the registered dataset ``name``.

    Args:
        name: A name from ``DATASETS.list()``; unknown names raise CollabError listing them.
        root: Folder holding on-disk datasets (default ``./data``); unused by built-ins.
        download: Allow fetching torchvision datasets into ``root``; nothing is fetched otherwise.
        image_size: Side of the square images; ``None`` takes the dataset's default.
        seed: The training seed. Test splits never depend on it; the ``shapes``,
            ``textured_shapes`` and ``multidigit`` training images do (a new seed draws new
            images), every other training split is fixed.
        transforms, eval_transforms: ``data.transforms`` / ``data.eval_transforms``, a
            ``torchvision.transforms.v2`` preset or list (see :mod:`analysis.data.pipeline`);
            None keeps the dataset's own augmentation preset.

    Returns:
        A :class:`DataBundle` whose ``name`` is ``name``.
    """
    if image_size is not None and image_size < 8:
        raise CollabError(
            f"image_size must be at least 8 pixels, got {image_size}; set data.image_size to 8 or more"
        )
    if transforms == "imagenet" and name == "imagefolder":  # crops images read at full size
        bundle = build_imagefolder(root=root, image_size=image_size, raw=True)
    else:
        builder = DATASETS.get(name)
        bundle = builder(root=root, download=download, image_size=image_size, seed=seed)
    bundle = bundle if bundle.name == name else dataclasses.replace(bundle, name=name)
    pipeline = resolve(transforms, eval_transforms, image_size=bundle.image_size)
    return bundle if pipeline is None else with_pipeline(bundle, pipeline)


def dataset_for(data: Any, *, seed: int) -> DataBundle:
    """:func:`build_dataset` of a ``DataConfig`` (its name, root, download, image size and
    transforms), for training seed ``seed``."""
    return build_dataset(
        data.name,
        root=data.root,
        download=data.download,
        image_size=data.image_size,
        seed=seed,
        transforms=data.transforms,
        eval_transforms=data.eval_transforms,
    )
