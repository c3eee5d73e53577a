"""Multi-digit numbers built from the digits splits: layout, labels, determinism, no leakage."""

from __future__ import annotations

import pytest
import torch

from analysis.data import augment_for, build_dataset
from analysis.data.digits import build_digits
from analysis.data.multidigit import MultiDigitDataset, build_multidigit
from analysis.errors import CollabError


def test_bundle_shape_and_classes() -> None:
    b = build_dataset("multidigit")
    assert (len(b.train), len(b.test), b.num_classes, b.in_chans, b.image_size) == (
        6000,
        1000,
        100,
        1,
        32,
    )
    assert b.class_names[:3] == ["00", "01", "02"] and b.class_names[-1] == "99"
    x, y = b.train[1234]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32 and y == 34
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    # Exactly balanced: 60 of each number in training, 10 in test.
    assert torch.bincount(b.train.labels).tolist() == [60] * 100
    assert b.test.labels.bincount().tolist() == [10] * 100
    assert 0.05 < b.mean[0] < 0.4 and 0.1 < b.std[0] < 0.5
    assert augment_for("multidigit") is not None and not augment_for("multidigit").hflip


@pytest.mark.parametrize("split", ["train", "test"])
def test_items_are_the_source_digits_side_by_side(split: str) -> None:
    ds = MultiDigitDataset(300, split=split, seed=3, image_size=32)
    source = build_digits(image_size=16)
    part = source.train if split == "train" else source.test
    for index in (0, 57, 299):
        x, label = ds[index]
        assert label == index % 100 and ds.digits(index) == [label // 10, label % 10]
        left, right = ds.sources(index)
        # Digits of the right class, from this split, placed at rows 8..23, cols 0..15 / 16..31.
        assert [int(part.labels[left]), int(part.labels[right])] == ds.digits(index)
        assert torch.equal(x[:, 8:24, :16], part.images[left])
        assert torch.equal(x[:, 8:24, 16:], part.images[right])
        assert x[:, :8].abs().sum() == 0 and x[:, 24:].abs().sum() == 0


def test_deterministic_per_seed_and_index() -> None:
    a = MultiDigitDataset(100, seed=5)
    b = MultiDigitDataset(100, seed=5)
    late = b[42][0]
    for i in reversed(range(10)):
        b[i]
    assert torch.equal(a[42][0], late)
    other = MultiDigitDataset(100, seed=6)
    changed = sum(not torch.equal(other[i][0], a[i][0]) for i in range(20))
    assert changed >= 15 and torch.equal(other.labels, a.labels)
    # The test split ignores the training seed.
    t0, t1 = build_multidigit(n_train=10, seed=0), build_multidigit(n_train=10, seed=9)
    assert all(torch.equal(t0.test[i][0], t1.test[i][0]) for i in (0, 1, 500))
    assert not torch.equal(t0.train[3][0], t1.train[3][0])


def test_three_digits_and_the_tiny_member() -> None:
    b = build_multidigit(num_digits=3, image_size=30, n_train=1000, n_test=10)
    assert b.num_classes == 1000 and b.class_names[7] == "007"
    x, y = b.train[987]
    assert y == 987 and b.train.digits(987) == [9, 8, 7] and b.train.digit_size == 10
    assert x[:, :10].abs().sum() == 0 and x[:, 10:20].abs().sum() > 0  # rows 10..19
    tiny = build_dataset("test_multidigit")
    assert (len(tiny.train), len(tiny.test), tiny.image_size, tiny.num_classes) == (
        200,
        100,
        16,
        100,
    )
    assert tiny.train[0][0].shape == (1, 16, 16)


def test_too_narrow_digits_are_a_collab_error() -> None:
    with pytest.raises(CollabError, match="narrower than 4 pixels.*image_size to at least 12"):
        build_multidigit(num_digits=3, image_size=11)
