"""Readers for on-disk dataset formats that need no pickle: MNIST idx, SVHN .mat, image folders."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from analysis.errors import CollabError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


def read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """Read an uncompressed MNIST idx file of unsigned bytes (magic ``00 00 08 ndim``).

    Returns:
        uint8 array with the ``ndim`` big-endian dimensions from the header, e.g. (N, 28, 28).
    """
    data = path.read_bytes()
    header = 4 + 4 * ndim
    if len(data) < header or data[:3] != b"\x00\x00\x08" or data[3] != ndim:
        raise CollabError(
            f"{path} is not an idx file of uint8 with {ndim} dimensions; re-download it with data.download=true"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) != header + math.prod(dims):
        raise CollabError(
            f"{path} is truncated or padded: header says {dims}, file has {len(data)} bytes; re-download it with data.download=true"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an SVHN ``*_32x32.mat`` file.

    Returns:
        ``images`` uint8 (N, 3, 32, 32) and ``labels`` int64 (N,) with digit 0 as label 0
        (the file stores it as 10).
    """
    import scipy.io  # SciPy loads in ~0.5 s: only when an SVHN file is read

    try:
        mat = scipy.io.loadmat(path)
    except Exception as err:
        raise CollabError(
            f"{path} is not a readable MATLAB file ({err}); re-download it with data.download=true"
        ) from err
    x, y = mat.get("X"), mat.get("y")
    if not (
        isinstance(x, np.ndarray)
        and x.dtype == np.uint8
        and x.ndim == 4
        and x.shape[:3] == (32, 32, 3)
    ):
        raise CollabError(
            f"{path} has no SVHN 'X' array of uint8 (32, 32, 3, N); re-download it with data.download=true"
        )
    labels = (
        np.asarray(y).reshape(-1).astype(np.int64) if isinstance(y, np.ndarray) else np.zeros(0)
    )
    if len(labels) != x.shape[3] or labels.min(initial=1) < 1 or labels.max(initial=1) > 10:
        raise CollabError(
            f"{path} has no SVHN 'y' with {x.shape[3]} labels in 1..10; re-download it with data.download=true"
        )
    labels[labels == 10] = 0
    # MATLAB stores (H, W, C, N); models want (N, C, H, W).
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), labels


def scan_image_folder(
    split_dir: Path, *, classes: list[str] | None = None
) -> tuple[list[Path], list[int], list[str]]:
    """List the images under ``split_dir/<class>/``.

    Args:
        split_dir: e.g. ``root/train``.
        classes: The class names to map to labels (those of the train split); ``None`` takes
            the sorted sub-folder names of ``split_dir``.

    Returns:
        ``(files, labels, classes)``, files sorted for a stable order.
    """
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    classes = found if classes is None else classes
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise CollabError(
            f"{split_dir} has class folders {unknown} that the train split lacks; add them to train/ or remove them"
        )
    files, labels = [], []
    for label, name in enumerate(classes):
        folder = split_dir / name
        for f in sorted(folder.iterdir()) if folder.is_dir() else []:
            if f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(f)
                labels.append(label)
    if not files:
        raise CollabError(
            f"{split_dir} holds no images in class sub-folders; expected {split_dir}/<class>/<image>.png"
        )
    return files, labels, classes


class ImageFolderDataset(Dataset):
    """Images read lazily from files, converted to RGB and resized to a square (aspect not kept).

    Args:
        files: Image paths.
        labels: One class index per file.
        image_size: Side S of the returned (3, S, S) float32 images in [0, 1]; ``None`` returns
            each image at its size on disk (for pipelines that crop, e.g. ``RandomResizedCrop``).
    """

    def __init__(self, files: list[Path], labels: list[int], *, image_size: int | None) -> None:
        self.files, self.labels, self.image_size = (
            files,
            torch.tensor(labels, dtype=torch.long),
            image_size,
        )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.files[index]
        try:
            with Image.open(path) as im:
                # PIL's bilinear resize filters over the whole footprint, so shrinking is antialiased.
                im = im.convert("RGB")
                if self.image_size is not None:
                    size = (self.image_size, self.image_size)
                    im = im.resize(size, Image.Resampling.BILINEAR)
                pixels = np.asarray(im, dtype=np.uint8)
        except (OSError, ValueError) as err:
            raise CollabError(
                f"cannot read image {path} ({err}); delete or replace the file"
            ) from err
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div_(255.0), int(
            self.labels[index]
        )
