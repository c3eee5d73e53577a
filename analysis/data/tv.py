"""Torchvision-format datasets read from a user-given root: CIFAR-10/100, SVHN, MNIST, ImageFolder.

Nothing is downloaded unless ``download=True``; then torchvision's download helpers fetch the
official archives (checked by MD5). Files are read with our own readers: CIFAR pickles go
through a restricted unpickler, so a tampered file cannot run code.

A missing ``root`` means ``./data``. Default sizes are the native ones (32 for CIFAR/SVHN,
28 for MNIST); ImageFolder defaults to 64. ImageFolder uses mean 0.5 / std 0.25 per channel
(a neutral guess, not measured on the user's images).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from analysis.data.arrays import ArrayImageDataset
from analysis.data.bundle import DataBundle
from analysis.data.readers import ImageFolderDataset, read_idx, read_svhn_mat, scan_image_folder
from analysis.data.safe_pickle import read_cifar_batch, read_cifar_meta
from analysis.errors import CollabError

log = logging.getLogger(__name__)
DEFAULT_ROOT = "data"


def resolve_root(root: str | Path | None) -> Path:
    """The absolute dataset root (``./data`` when not given)."""
    return Path(DEFAULT_ROOT if root is None else root).expanduser().absolute()


def _require(
    root: Path,
    rels: Sequence[str],
    *,
    what: str,
    download: bool,
    fetch: Callable[[Path], None] | None,
) -> None:
    """Make sure every ``root/rel`` file exists, downloading first if allowed."""
    missing = [r for r in rels if not (root / r).is_file()]
    if missing and download and fetch is not None:
        log.info("downloading %s into %s", what, root)
        try:
            fetch(root)
        except Exception as err:
            raise CollabError(
                f"downloading {what} into {root} failed ({err}); check the network or place the files there by hand"
            ) from err
        missing = [r for r in rels if not (root / r).is_file()]
    if missing:
        where = f"dataset root {root}" + ("" if root.is_dir() else " (which does not exist)")
        fix = "pass --set data.root=DIR" + (" or data.download=true" if fetch is not None else "")
        raise CollabError(f"{where} has no {what} ({missing[0]} missing); {fix}")


def _check_labels(labels: np.ndarray, num_classes: int, source: Path) -> torch.Tensor:
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise CollabError(
            f"{source} has labels outside 0..{num_classes - 1}; re-download it with data.download=true"
        )
    return torch.from_numpy(np.asarray(labels, dtype=np.int64))


@dataclass(frozen=True)
class _Cifar:
    name: str
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    names_key: str
    label_key: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    title: str


CIFAR10 = _Cifar(
    name="cifar10",
    folder="cifar-10-batches-py",
    train=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test=("test_batch",),
    meta="batches.meta",
    names_key="label_names",
    label_key="labels",
    num_classes=10,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    title="CIFAR-10 batches",
)
CIFAR100 = _Cifar(
    name="cifar100",
    folder="cifar-100-python",
    train=("train",),
    test=("test",),
    meta="meta",
    names_key="fine_label_names",
    label_key="fine_labels",
    num_classes=100,
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
    title="CIFAR-100 files",
)


def _fetch_cifar(spec: _Cifar) -> Callable[[Path], None]:
    def fetch(root: Path) -> None:
        from torchvision.datasets import CIFAR10 as TV10
        from torchvision.datasets import CIFAR100 as TV100
        from torchvision.datasets.utils import download_and_extract_archive

        tv = TV10 if spec is CIFAR10 else TV100
        download_and_extract_archive(tv.url, str(root), filename=tv.filename, md5=tv.tgz_md5)

    return fetch


def _cifar_split(
    root: Path, spec: _Cifar, files: tuple[str, ...], image_size: int
) -> ArrayImageDataset:
    parts = [read_cifar_batch(root / spec.folder / f, label_key=spec.label_key) for f in files]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = _check_labels(
        np.concatenate([p[1] for p in parts]), spec.num_classes, root / spec.folder
    )
    return ArrayImageDataset(images, labels, image_size=image_size)


def build_cifar(
    spec: _Cifar,
    *,
    root: str | Path | None = None,
    download: bool = False,
    image_size: int | None = None,
) -> DataBundle:
    """Build CIFAR-10 (``spec=CIFAR10``) or CIFAR-100 (``spec=CIFAR100``) from torchvision's layout."""
    base = resolve_root(root)
    rels = [f"{spec.folder}/{f}" for f in (*spec.train, *spec.test, spec.meta)]
    _require(base, rels, what=spec.title, download=download, fetch=_fetch_cifar(spec))
    names = read_cifar_meta(base / spec.folder / spec.meta, key=spec.names_key)
    if len(names) != spec.num_classes:
        raise CollabError(
            f"{base / spec.folder / spec.meta} lists {len(names)} classes, not {spec.num_classes}; re-download it with data.download=true"
        )
    size = image_size or 32
    return DataBundle(
        name=spec.name,
        train=_cifar_split(base, spec, spec.train, size),
        test=_cifar_split(base, spec, spec.test, size),
        num_classes=spec.num_classes,
        in_chans=3,
        image_size=size,
        mean=spec.mean,
        std=spec.std,
        class_names=names,
    )


def build_svhn(
    *, root: str | Path | None = None, download: bool = False, image_size: int | None = None
) -> DataBundle:
    """Build SVHN (cropped digits, 10 classes) from ``train_32x32.mat`` / ``test_32x32.mat``."""
    from torchvision.datasets import SVHN as TV

    base = resolve_root(root)

    def fetch(target: Path) -> None:
        from torchvision.datasets.utils import download_url

        for split in ("train", "test"):
            url, filename, md5 = TV.split_list[split]
            download_url(url, str(target), filename=filename, md5=md5)

    _require(
        base,
        ["train_32x32.mat", "test_32x32.mat"],
        what="SVHN files",
        download=download,
        fetch=fetch,
    )
    size = image_size or 32
    splits = []
    for name in ("train_32x32.mat", "test_32x32.mat"):
        images, labels = read_svhn_mat(base / name)
        splits.append(
            ArrayImageDataset(torch.from_numpy(images), torch.from_numpy(labels), image_size=size)
        )
    return DataBundle(
        name="svhn",
        train=splits[0],
        test=splits[1],
        num_classes=10,
        in_chans=3,
        image_size=size,
        mean=(0.4377, 0.4438, 0.4728),
        std=(0.1980, 0.2010, 0.1970),
        class_names=[str(d) for d in range(10)],
    )


MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def build_mnist(
    *, root: str | Path | None = None, download: bool = False, image_size: int | None = None
) -> DataBundle:
    """Build MNIST from torchvision's raw idx files under ``root/MNIST/raw/``."""
    from torchvision.datasets import MNIST as TV

    base = resolve_root(root)

    def fetch(target: Path) -> None:
        from torchvision.datasets.utils import download_and_extract_archive

        for filename, md5 in TV.resources:
            download_and_extract_archive(
                TV.mirrors[0] + filename, str(target / "MNIST" / "raw"), filename=filename, md5=md5
            )

    _require(
        base,
        [f"MNIST/raw/{f}" for f in MNIST_FILES],
        what="MNIST idx files",
        download=download,
        fetch=fetch,
    )
    raw, size, splits = base / "MNIST" / "raw", image_size or 28, []
    for prefix in ("train", "t10k"):
        images = read_idx(raw / f"{prefix}-images-idx3-ubyte", ndim=3)
        labels = read_idx(raw / f"{prefix}-labels-idx1-ubyte", ndim=1)
        if len(labels) != len(images):
            raise CollabError(
                f"{raw} has {len(images)} {prefix} images but {len(labels)} labels; re-download it with data.download=true"
            )
        tensor = torch.from_numpy(images.copy()).unsqueeze(1)
        splits.append(ArrayImageDataset(tensor, _check_labels(labels, 10, raw), image_size=size))
    return DataBundle(
        name="mnist",
        train=splits[0],
        test=splits[1],
        num_classes=10,
        in_chans=1,
        image_size=size,
        mean=(0.1307,),
        std=(0.3081,),
        class_names=[str(d) for d in range(10)],
    )


def build_imagefolder(
    *, root: str | Path | None = None, image_size: int | None = None, raw: bool = False
) -> DataBundle:
    """Build a dataset from ``root/train/<class>/*`` and ``root/test/<class>/*`` (or ``val/``).

    Images are read lazily, one file per item. ``raw`` keeps each at its size on disk (a
    pipeline crops them, see :mod:`analysis.data.pipeline`); otherwise they are resized to
    squares of ``image_size`` (default 64).
    """
    base = resolve_root(root)
    test_dir = base / "test" if (base / "test").is_dir() else base / "val"
    if not (base / "train").is_dir() or not test_dir.is_dir():
        missing = "train/" if not (base / "train").is_dir() else "test/ (or val/)"
        where = f"dataset root {base}" + ("" if base.is_dir() else " (which does not exist)")
        raise CollabError(
            f"{where} has no {missing} folder of class folders; "
            "pass --set data.root=DIR with train/ and test/ inside"
        )
    train_files, train_labels, classes = scan_image_folder(base / "train")
    test_files, test_labels, _ = scan_image_folder(test_dir, classes=classes)
    size = image_size or 64
    read = None if raw else size
    # Neutral statistics (not measured): user folders vary and a pass over them is costly.
    return DataBundle(
        name="imagefolder",
        train=ImageFolderDataset(train_files, train_labels, image_size=read),
        test=ImageFolderDataset(test_files, test_labels, image_size=read),
        num_classes=len(classes),
        in_chans=3,
        image_size=size,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        class_names=classes,
    )
