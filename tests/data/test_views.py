"""Generator-driven augmentations and per-peer MultiView determinism."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from analysis.data import Augment, MultiView, augment_for
from analysis.data.augment import hflip, random_crop
from analysis.data.seeding import torch_generator
from analysis.errors import CollabError


def _ramp(c=2, h=8, w=8):
    return (torch.arange(c * h * w, dtype=torch.float32) + 1).reshape(c, h, w)


def _shift_of(out, img, pad):
    """All (dy, dx) offsets in the padded frame that explain ``out`` as a zero-padded crop."""
    padded = torch.nn.functional.pad(img, (pad,) * 4)
    h, w = img.shape[-2:]
    return [
        (dy, dx)
        for dy in range(2 * pad + 1)
        for dx in range(2 * pad + 1)
        if torch.equal(padded[:, dy : dy + h, dx : dx + w], out)
    ]


def test_random_crop_is_a_shifted_window_and_covers_all_offsets():
    img, seen = _ramp(), set()
    for s in range(300):
        out = random_crop(img, 2, torch_generator(s))
        offsets = _shift_of(out, img, 2)
        assert len(offsets) == 1 and out.shape == img.shape
        seen.add(offsets[0])
    assert len(seen) == 25
    assert torch.equal(random_crop(img, 0, torch_generator(0)), img)


def test_reflect_crop_never_introduces_zeros():
    img = _ramp()
    for s in range(20):
        assert float(random_crop(img, 3, torch_generator(s), mode="reflect").min()) > 0


def test_hflip_probability():
    img = _ramp()
    assert all(torch.equal(hflip(img, torch_generator(s), p=1.0), img.flip(-1)) for s in range(5))
    assert all(torch.equal(hflip(img, torch_generator(s), p=0.0), img) for s in range(5))
    flips = sum(not torch.equal(hflip(img, torch_generator(s)), img) for s in range(400))
    assert 160 < flips < 240


def test_presets():
    assert augment_for("digits") == Augment(crop_pad=2, hflip=False)
    assert augment_for("test_digits") == Augment(crop_pad=2, hflip=False)
    assert augment_for("svhn").hflip is False
    assert augment_for("cifar10") == Augment(crop_pad=4, hflip=True)
    assert augment_for("shapes") is None and augment_for("test_shapes") is None
    with pytest.raises(CollabError, match="cifar10"):
        augment_for("nope")
    img = _ramp()
    assert torch.equal(Augment(crop_pad=0, hflip=False)(img, torch_generator(1)), img)


def _dataset(n=12):
    images = torch.stack([_ramp(3, 10, 10) * (i + 1) for i in range(n)])
    return TensorDataset(images, torch.arange(n))


def test_multiview_shapes_and_known_answer():
    base, aug = _dataset(), Augment(crop_pad=4, hflip=True)
    mv = MultiView(base, views=3, augment=aug, seed=5)
    mv.set_epoch(2)
    x, y = mv[7]
    assert x.shape == (3, 3, 10, 10) and int(y) == 7
    for v in range(3):
        assert torch.equal(x[v], aug(base[7][0], torch_generator(5, 2, 7, v)))
    single = MultiView(base, views=1, augment=aug, seed=5)[7][0]
    assert single.shape == (3, 10, 10)
    plain = MultiView(base, views=2, augment=None, seed=5)[7][0]
    assert torch.equal(plain[0], base[7][0]) and torch.equal(plain[1], base[7][0])
    with pytest.raises(CollabError, match="views"):
        MultiView(base, views=0, augment=None, seed=0)


def test_multiview_views_are_independent_and_epochs_differ():
    mv = MultiView(_dataset(), views=2, augment=Augment(crop_pad=4, hflip=True), seed=0)
    first = [mv[i][0] for i in range(12)]
    assert sum(not torch.equal(x[0], x[1]) for x in first) >= 11
    mv.set_epoch(1)
    assert sum(not torch.equal(mv[i][0], first[i]) for i in range(12)) >= 11
    mv.set_epoch(0)
    assert all(torch.equal(mv[i][0], first[i]) for i in reversed(range(12)))


def test_multiview_is_the_same_with_worker_processes():
    mv = MultiView(_dataset(), views=2, augment=Augment(crop_pad=2, hflip=True), seed=3)
    mv.set_epoch(4)
    order = [5, 0, 11, 3, 8, 1, 2, 9, 4, 7, 6, 10]
    serial = torch.cat([x for x, _ in DataLoader(mv, batch_size=4, sampler=order)])
    parallel = torch.cat([x for x, _ in DataLoader(mv, batch_size=4, sampler=order, num_workers=2)])
    assert torch.equal(serial, parallel)
    assert torch.equal(serial[0], mv[5][0])
