"""MixUp and CutMix: the maths of each mix, seeding, views, and training with soft targets."""

import math

import pytest
import torch
import torch.nn.functional as F

from analysis.config import load_config
from analysis.data.mixing import BatchMix
from analysis.errors import CollabError
from analysis.methods import peer_cross_entropy
from analysis.runs import read_metrics
from analysis.training import Trainer
from tests.conftest import DML_PRESET, REPO, TINY

FEW = ("train.epochs=1", "train.max_steps_per_epoch=2", "data.batch_size=16")


def _batch(b=8, classes=5):
    torch.manual_seed(0)
    return torch.rand(b, 3, 12, 12), torch.arange(b) % classes


def test_mixup_is_the_convex_combination_it_draws():
    x, y = _batch()
    mix = BatchMix(mixup_alpha=0.4, cutmix_alpha=0, num_classes=5)
    mixed, soft = mix(x, y, seed=1, epoch=2, step=3)
    d = mix.draw(8, (12, 12), seed=1, epoch=2, step=3)
    assert d.kind == "mixup" and 0 < d.lam < 1 and sorted(d.perm.tolist()) == list(range(8))
    for i, j in enumerate(d.perm.tolist()):
        assert torch.allclose(mixed[i], d.lam * x[i] + (1 - d.lam) * x[j], atol=1e-6)
        expected = d.lam * F.one_hot(y[i], 5) + (1 - d.lam) * F.one_hot(y[j], 5)
        assert torch.allclose(soft[i], expected.float(), atol=1e-6)
    assert torch.allclose(soft.sum(1), torch.ones(8))


def test_cutmix_pastes_a_box_and_weights_labels_by_its_area():
    x, y = _batch()
    mix = BatchMix(mixup_alpha=0, cutmix_alpha=1.0, num_classes=5)
    boxes = 0
    for step in range(8):
        mixed, soft = mix(x, y, seed=0, epoch=0, step=step)
        pasted = (~(mixed == x).all(dim=1)).any(dim=0)  # (H, W): pixels taken from a partner
        keep = 1 - pasted.float().mean().item()
        if pasted.any():
            boxes += 1
            rows, cols = pasted.nonzero().T
            assert pasted[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
        perm = mix.draw(8, (12, 12), seed=0, epoch=0, step=step).perm.tolist()
        for i, j in enumerate(perm):
            assert torch.equal(mixed[i][:, ~pasted], x[i][:, ~pasted])
            assert torch.equal(mixed[i][:, pasted], x[j][:, pasted])
            expected = keep * F.one_hot(y[i], 5) + (1 - keep) * F.one_hot(y[j], 5)
            assert torch.allclose(soft[i], expected.float(), atol=1e-6)
    assert boxes >= 4  # Beta(1, 1) areas: most steps paste something


def test_mixing_is_seeded_by_seed_epoch_and_step_and_views_share_it():
    x, y = _batch()
    views = torch.stack([x, x.flip(-1)], dim=1)  # (B, K, C, H, W)
    mix = BatchMix(mixup_alpha=0.2, cutmix_alpha=1.0, num_classes=5)
    a = mix(views, y, seed=3, epoch=1, step=4)
    b = mix(views, y, seed=3, epoch=1, step=4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    others = [mix(views, y, seed=3, epoch=1, step=s)[1] for s in range(5, 10)]
    assert any(not torch.equal(a[1], o) for o in others)
    one, _ = mix(x, y, seed=3, epoch=1, step=4)
    assert torch.allclose(a[0][:, 0], one, atol=1e-6)  # view 0 mixed as the plain batch


def test_soft_one_hot_targets_give_the_hard_cross_entropy():
    logits, y = torch.randn(3, 6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    hard = peer_cross_entropy(logits, y)
    soft = peer_cross_entropy(logits, F.one_hot(y, 4).float())
    assert torch.allclose(hard, soft, atol=1e-6)


@pytest.mark.parametrize("sets", [("data.mixup_alpha=0.2",), ("data.cutmix_alpha=1.0",)])
def test_dml_trains_with_mixed_batches(tmp_path, sets):
    config = load_config(DML_PRESET, [*TINY, *FEW, *sets])
    out = Trainer(config, tmp_path / "run", progress=False).fit()
    train = [r for r in read_metrics(out) if r["split"] == "train"]
    assert train and all(math.isfinite(r["loss"]) for r in train)


def test_methods_without_soft_targets_refuse_mixing(tmp_path):
    preset = REPO / "configs" / "mcl_okd_digits.yaml"
    config = load_config(preset, [*TINY, *FEW, "data.mixup_alpha=0.2"])
    with pytest.raises(CollabError, match="need soft targets") as err:
        Trainer(config, tmp_path / "run", progress=False).fit()
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()
