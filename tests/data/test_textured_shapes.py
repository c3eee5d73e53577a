"""textured_shapes: deterministic per seed, balanced, boxes inside the image, a labels tensor."""

import numpy as np
import pytest
import torch

from analysis.data import augment_for, build_dataset
from analysis.data.shapes import ShapesDataset
from analysis.data.textured_shapes import (
    CLASS_NAMES,
    MEAN,
    STD,
    STRIPES,
    TexturedShapesDataset,
)
from analysis.data.validation import split_validation
from analysis.errors import CollabError


def test_items_are_deterministic_per_seed_and_index():
    d1 = TexturedShapesDataset(60, seed=3, image_size=32)
    d2 = TexturedShapesDataset(60, seed=3, image_size=32)
    late = d2[17][0]
    for i in reversed(range(20)):  # any order, any number of earlier reads
        d2[i]
    assert torch.equal(d1[17][0], late)
    assert not torch.equal(TexturedShapesDataset(60, seed=4, image_size=32)[17][0], late)
    assert not torch.equal(
        TexturedShapesDataset(60, seed=3, split="test", image_size=32)[17][0], late
    )
    # Not the shapes item of the same (split, seed, index): the streams are kept apart.
    assert not torch.equal(ShapesDataset(60, seed=3, image_size=32)[17][0], late)
    x, y = d1[17]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == 17 % 12
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_bundle_sizes_classes_and_a_test_split_fixed_across_seeds():
    a, b = build_dataset("textured_shapes", seed=0), build_dataset("textured_shapes", seed=5)
    assert (len(a.train), len(a.test)) == (3000, 1200)
    assert (a.num_classes, a.in_chans, a.image_size) == (12, 3, 32)
    assert a.class_names == CLASS_NAMES and len(set(CLASS_NAMES)) == 12
    assert (a.mean, a.std) == (MEAN, STD)
    assert torch.equal(a.test[7][0], b.test[7][0])
    assert not torch.equal(a.train[7][0], b.train[7][0])
    tiny = build_dataset("test_textured_shapes")
    assert (len(tiny.train), len(tiny.test), tiny.image_size, tiny.num_classes) == (
        240,
        120,
        16,
        12,
    )


def test_classes_are_exactly_balanced_and_labels_match_items():
    bundle = build_dataset("textured_shapes")
    for split in (bundle.train, bundle.test):
        assert split.labels.dtype == torch.int64 and len(split.labels) == len(split)
        assert torch.bincount(split.labels, minlength=12).unique().numel() == 1
    assert [bundle.train[i][1] for i in range(30)] == bundle.train.labels[:30].tolist()


def test_validation_split_is_stratified_from_the_labels_attribute():
    train, val = split_validation(build_dataset("textured_shapes").train, fraction=0.1, seed=0)
    assert len(val) == 300 and len(train) == 2700
    assert torch.bincount(val.labels, minlength=12).tolist() == [25] * 12


def test_boxes_are_tight_and_inside_the_image():
    data = TexturedShapesDataset(48, seed=1, image_size=32)
    for i in range(len(data)):
        x0, y0, x1, y1 = data.box(i)
        assert 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32
        mask = data.mask(i)
        assert mask.any() and not mask[:, :x0].any() and not mask[:y0].any()
        assert not mask[:, x1:].any() and not mask[y1:].any()
        assert mask[y0:y1, x0:x1].any(0).all() and mask[y0:y1, x0:x1].any(1).all()


def test_the_two_classes_of_a_shape_differ_in_stripe_direction_only():
    """Inside the mask the horizontal class varies along rows, the vertical along columns."""
    data = TexturedShapesDataset(96, seed=2, image_size=32)
    for i in range(len(data)):
        x, label = data[i]
        x0, y0, x1, y1 = data.box(i)
        inner = np.where(data.mask(i).numpy(), x.numpy(), np.nan)[:, y0:y1, x0:x1]
        # Spread of the row means vs the column means (summed over channels): stripes make one
        # of them large.
        rows = np.nanstd(np.nanmean(inner, axis=2), axis=1).sum()
        cols = np.nanstd(np.nanmean(inner, axis=1), axis=1).sum()
        horizontal = STRIPES[label % 2] == "horizontal"
        assert (rows > cols) == horizontal, (i, rows, cols)


def test_flip_augmentation_keeps_the_label_and_the_test_split_is_untouched():
    aug = augment_for("textured_shapes")
    assert aug is not None and aug.hflip and aug is augment_for("test_textured_shapes")
    x, _ = TexturedShapesDataset(12, seed=0, image_size=32)[3]
    out = aug(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape


def test_too_small_images_are_refused():
    with pytest.raises(CollabError, match="image_size"):
        build_dataset("textured_shapes", image_size=12)
