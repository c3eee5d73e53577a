"""Built-in datasets: sklearn digits and procedural shapes, and the registry front door."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from analysis.data import DATASETS, DataBundle, build_dataset
from analysis.data.shapes import MEAN, STD, ShapesDataset
from analysis.errors import CollabError


def test_digits_split_sizes_range_and_stats():
    b = build_dataset("digits")
    assert isinstance(b, DataBundle)
    assert (len(b.train), len(b.test)) == (1437, 360)
    assert (b.num_classes, b.in_chans, b.image_size) == (10, 1, 32)
    x, y = b.train[0]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    xs = b.train.images
    assert float(xs.min()) == 0.0 and 0.95 < float(xs.max()) <= 1.0
    assert b.mean[0] == pytest.approx(float(xs.mean()), abs=1e-6)
    # Stratified: every class has 35-37 of the 360 test images.
    counts = torch.bincount(b.test.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37


def test_digits_at_native_size_are_the_raw_images_split_without_overlap():
    b = build_dataset("digits", image_size=8)
    raw = load_digits()
    both = torch.cat([b.train.images, b.test.images]).reshape(-1, 64).numpy()
    expected = (raw.images.reshape(-1, 64) / 16.0).astype(np.float32)
    # Same multiset of rows: the split is a partition of the 1797 images.
    assert np.array_equal(np.unique(both, axis=0), np.unique(expected, axis=0))
    assert len(both) == len(expected)
    first = b.train[0][0].reshape(-1).numpy()
    match = np.flatnonzero((expected == first).all(axis=1))
    assert raw.target[match[0]] == b.train[0][1]


def test_digits_test_split_does_not_depend_on_training_seed():
    a, b = build_dataset("digits", seed=0), build_dataset("digits", seed=7)
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.test.labels, b.test.labels)
    x1, _ = a.train[5]
    x1.fill_(9.0)  # editing an item must not corrupt the dataset
    assert float(a.train[5][0].max()) <= 1.0


def test_shapes_items_are_deterministic_per_seed_and_index():
    d1 = ShapesDataset(50, seed=3, image_size=32)
    d2 = ShapesDataset(50, seed=3, image_size=32)
    late = d2[17][0]
    for i in reversed(range(20)):
        d2[i]
    assert torch.equal(d1[17][0], late)
    assert not torch.equal(ShapesDataset(50, seed=4, image_size=32)[17][0], late)
    assert not torch.equal(ShapesDataset(50, seed=3, split="test", image_size=32)[17][0], late)
    x, y = d1[17]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == 17 % 6
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_shapes_box_is_tight_around_the_painted_pixels():
    d = ShapesDataset(60, seed=0, image_size=48)
    for i in range(len(d)):
        x, _ = d[i]
        mask = d.mask(i)
        x0, y0, x1, y1 = d.box(i)
        assert 0 <= x0 < x1 <= 48 and 0 <= y0 < y1 <= 48
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert (x0, y0, x1, y1) == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
        # The shape is painted in one flat colour over exactly the mask.
        painted = x[:, mask]
        assert torch.allclose(painted, painted[:, :1].expand_as(painted))


@pytest.mark.parametrize(
    ("label", "fill"),
    [(0, np.pi / 4), (1, 1.0), (2, 0.5), (3, 5 / 9), (4, np.pi / 4 * (1 - 0.55**2)), (5, 0.5)],
)
def test_shapes_fill_their_box_like_their_class(label, fill):
    d = ShapesDataset(120, seed=1, image_size=64)
    ratios = []
    for i in range(label, 120, 6):
        x0, y0, x1, y1 = d.box(i)
        ratios.append(float(d.mask(i).sum()) / ((x1 - x0) * (y1 - y0)))
    assert np.mean(ratios) == pytest.approx(fill, abs=0.06)


def test_triangle_points_up_and_classes_are_balanced():
    d = ShapesDataset(600, seed=2, image_size=64)
    assert torch.bincount(d.labels).tolist() == [100] * 6
    mask = d.mask(2)
    _, y0, _, y1 = d.box(2)
    mid = (y0 + y1) // 2
    assert mask[mid:].sum() > 2 * mask[:mid].sum()


def test_shapes_constants_match_measured_statistics():
    d = ShapesDataset(300, seed=0, split="test", image_size=32)
    xs = torch.stack([d[i][0] for i in range(len(d))])
    assert xs.mean((0, 2, 3)).tolist() == pytest.approx(MEAN, abs=0.03)
    assert xs.std((0, 2, 3)).tolist() == pytest.approx(STD, abs=0.03)


def test_shapes_bundle_test_split_is_fixed_but_train_follows_seed():
    a, b = build_dataset("test_shapes", seed=0), build_dataset("test_shapes", seed=1)
    assert torch.equal(a.test[3][0], b.test[3][0])
    assert not torch.equal(a.train[3][0], b.train[3][0])
    with pytest.raises(CollabError, match="image_size"):
        build_dataset("shapes", image_size=12)


@pytest.mark.parametrize("name", ["digits", "test_digits", "shapes", "test_shapes"])
def test_every_builtin_member_yields_the_contract(name):
    b = build_dataset(name)
    assert b.name == name and len(b.class_names) == b.num_classes
    for split in (b.train, b.test):
        x, y = split[len(split) - 1]
        assert x.shape == (b.in_chans, b.image_size, b.image_size) and x.dtype == torch.float32
        assert 0 <= y < b.num_classes and 0.0 <= float(x.min()) <= float(x.max()) <= 1.0


def test_unknown_dataset_lists_known_names():
    with pytest.raises(CollabError, match="digits.*shapes"):
        build_dataset("imagenet")
    assert {"cifar10", "cifar100", "svhn", "mnist", "imagefolder"} <= set(DATASETS.list())
