"""The value every dataset builder returns: two splits plus what a model needs to know."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch.utils.data import Dataset


@dataclass(frozen=True)
class DataBundle:
    """A train/test pair of datasets with their shape and normalisation statistics.

    Every split yields ``(image, label)`` where ``image`` is a float32 tensor of shape
    ``(in_chans, image_size, image_size)`` with values in [0, 1] (not normalised) and
    ``label`` is an ``int`` in ``[0, num_classes)``.

    Attributes:
        name: The registered dataset name, e.g. ``"digits"``.
        train: The training split.
        test: The held-out split (the same for every training seed).
        num_classes: Number of classes C.
        in_chans: Image channels (1 for grey-scale, 3 for RGB).
        image_size: Side of the square images in pixels.
        mean: Per-channel mean of the [0, 1] images; the model normalises with it.
        std: Per-channel standard deviation, same length as ``mean``.
        class_names: Human-readable name of each class, ``len == num_classes``.
        augment: ``view(img, gen) -> img`` of a ``data.transforms`` pipeline, or None for the
            dataset's preset (:func:`~analysis.data.augment.augment_for`).
        augment_source: The images training views are made from when they differ from
            ``train`` (a pipeline that crops images read at their size on disk; ``train`` then
            holds the evaluation-transformed images), else None.
    """

    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    in_chans: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str]
    augment: Callable | None = None
    augment_source: Dataset | None = None

    def __post_init__(self) -> None:
        # These are programming errors in a builder, not user errors, hence ValueError.
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ValueError(f"{self.name}: mean/std need {self.in_chans} entries")
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes"
            )
