"""Patch classification and the early-exit cascade: known answers first."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from analysis.models import CollaborativeModel, create_model
from analysis.probes.cascade import STAGE_IOU_THRESHOLDS, CascadeOptions, cascade_curve
from analysis.probes.cascade_stages import combine_stages, crop_patches, exit_stages, stage_logits
from analysis.probes.class_map import localize
from analysis.probes.flops import count_flops
from analysis.probes.hooks import hook_count


def test_flop_counter_known_answers():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_flops(conv, torch.zeros(2, 3, 32, 32)) == 2 * 8 * 32 * 32 * 27
    depthwise = nn.Conv2d(8, 8, 3, groups=8)  # 6 x 6 output, one input channel per filter
    assert count_flops(depthwise, torch.zeros(1, 8, 8, 8)) == 2 * 8 * 36 * 9
    net = nn.Sequential(
        nn.Conv2d(1, 4, 2, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(64, 10)
    ).train()
    assert count_flops(net, torch.zeros(5, 1, 8, 8)) == 2 * 4 * 16 * 4 + 2 * 10 * 64
    assert net.training and hook_count(net) == 0


def test_crop_patches_copies_exact_boxes_and_averages_when_shrinking():
    x = torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[[2, 3, 10, 11], [-1, -1, -1, -1]], [[0, 0, 8, 8], [12, 12, 20, 20]]])
    p = crop_patches(x, boxes, size=8)
    assert p.shape == (2, 2, 3, 8, 8)
    torch.testing.assert_close(p[0, 0], x[0, :, 3:11, 2:10])
    torch.testing.assert_close(p[1, 1], x[1, :, 12:20, 12:20])
    assert (p[0, 1] == 0).all()
    whole = crop_patches(x[:, :, :16, :16], torch.tensor([[[0, 0, 16, 16]]] * 2), size=8)
    torch.testing.assert_close(whole[:, 0], F.avg_pool2d(x[:, :, :16, :16], 2))


def test_exit_stages_known_answers():
    # two samples, three stages: confident at stage 0 / only after stage 2
    logits = torch.tensor(
        [
            [[4.0, 0.0], [0.1, 0.0]],
            [[0.0, 0.0], [0.1, 0.0]],
            [[0.0, 0.0], [3.0, 0.0]],
        ]
    )
    available = torch.ones(3, 2, dtype=torch.bool)
    conf, pred = combine_stages(logits, available)
    assert pred[:, 1].tolist() == [0, 0, 0]
    exits = exit_stages(conf, torch.tensor([0.0, 0.9, 1.01]))
    assert exits.tolist() == [[0, 0], [0, 2], [2, 2]]
    per_stage = exit_stages(conf, torch.tensor([[2.0, 0.0]]))  # stage 0 never, stage 1 always
    assert per_stage.tolist() == [[1, 1]]
    # a missing patch adds nothing: mean over the available stages only
    conf_mean, _ = combine_stages(
        logits, torch.tensor([[1, 1], [0, 1], [1, 1]]).bool(), combine="mean"
    )
    torch.testing.assert_close(conf_mean[1, 0], conf_mean[0, 0])


def _peer() -> tuple[nn.Module, TensorDataset]:
    torch.manual_seed(0)
    net = create_model("test_cnn", num_classes=3, in_chans=1, width=4)
    model = CollaborativeModel([net], mean=(0.5,), std=(0.25,))
    gen = torch.Generator().manual_seed(1)
    data = TensorDataset(
        torch.rand(24, 1, 16, 16, generator=gen), torch.randint(0, 3, (24,), generator=gen)
    )
    return model.peer(0), data


def test_cascade_threshold_zero_stops_at_stage_one_and_above_one_uses_all():
    peer, data = _peer()
    curve = cascade_curve(peer, data, thresholds=[0.0, 1.01], patch_size=8, top_k=2, batch_size=10)
    stage0, patch = (
        count_flops(peer, torch.zeros(1, 1, 8, 8)),
        count_flops(peer, torch.zeros(1, 1, 8, 8)),
    )
    assert curve.stage_costs.tolist() == [stage0, patch, patch]
    assert curve.full_cost == count_flops(peer, torch.zeros(1, 1, 16, 16)) > stage0
    assert curve.cost[0] == stage0 and curve.accuracy[0] == curve.stage_accuracy[0]
    assert curve.exit_fraction[0].tolist() == [1.0, 0.0, 0.0]
    assert curve.exit_fraction[1].tolist() == [0.0, 0.0, 1.0]
    assert curve.accuracy[1] == curve.stage_accuracy[-1]
    # every sample pays for the stages whose patch exists
    x = torch.stack([data[i][0] for i in range(24)])
    loc = localize(peer, x, top_k=2, iou_threshold=STAGE_IOU_THRESHOLDS)
    patches = int((loc.boxes[..., 0] >= 0).sum())
    assert curve.cost[1] == pytest.approx(stage0 + patch * patches / 24)
    assert curve.relative_cost[0] == pytest.approx(stage0 / curve.full_cost)
    full = (loc.logits.argmax(1) == data.tensors[1]).float().mean()
    assert curve.full_accuracy == pytest.approx(float(full))
    charged = cascade_curve(
        peer, data, thresholds=[0.0, 1.01], patch_size=8, top_k=2, charge_localizer=True
    )
    assert charged.cost[0] == curve.cost[0]
    assert charged.cost[1] == pytest.approx(curve.cost[1] + curve.localizer_cost)


def test_cascade_accuracy_matches_a_direct_computation():
    peer, data = _peer()
    x, y = data.tensors
    curve = cascade_curve(peer, data, thresholds=[0.5], patch_size=8, top_k=2, combine="mean")
    loc = localize(peer, x, top_k=2, iou_threshold=STAGE_IOU_THRESHOLDS)
    logits = stage_logits(peer, x, loc.boxes, patch_size=8)
    assert logits.shape == (3, 24, 3)
    correct = 0
    for b in range(24):
        used = [logits[0, b]]
        for s in (1, 2):
            if torch.softmax(torch.stack(used).mean(0), -1).max() >= 0.5:
                break
            if (loc.boxes[b, s - 1] >= 0).all():
                used.append(logits[s, b])
        correct += int(torch.stack(used).mean(0).argmax() == y[b])
    assert curve.accuracy[0] == pytest.approx(correct / 24)
    assert curve.exit_fraction.sum(1).tolist() == pytest.approx([1.0])


def test_cascade_defaults_to_the_authors_stage_iou_thresholds():
    """winycg/AnchorNet make_table.py: --iou-thresholds default [0., 0.1, 0.2]."""
    assert STAGE_IOU_THRESHOLDS == (0.0, 0.1, 0.2)
    assert CascadeOptions().iou_threshold == STAGE_IOU_THRESHOLDS
    peer, data = _peer()
    x = data.tensors[0]
    # 4 patches: the 2nd may not overlap the 1st, the 3rd by <= 0.1, the 4th by <= 0.2
    loc = localize(peer, x, top_k=4, iou_threshold=STAGE_IOU_THRESHOLDS)
    default = cascade_curve(peer, data, thresholds=[1.01], patch_size=8, top_k=4)
    logits = stage_logits(peer, x, loc.boxes, patch_size=8)
    conf, pred = combine_stages(
        logits, torch.cat([torch.ones(1, 24).bool(), (loc.boxes >= 0).all(-1).T])
    )
    assert default.accuracy[0] == pytest.approx(float((pred[-1] == data.tensors[1]).float().mean()))
    old = cascade_curve(peer, data, thresholds=[1.01], patch_size=8, top_k=4, iou_threshold=0.3)
    assert old.top_k == 4 and old.accuracy.shape == (1,)


def test_curve_and_localization_survive_the_probe_cache(tmp_path):
    from analysis.probes.cache import load_result, save_result

    peer, data = _peer()
    curve = cascade_curve(peer, data, thresholds=[0.0, 1.01], patch_size=8, top_k=2, limit=8)
    loc = localize(peer, data.tensors[0][:4], top_k=2, iou_threshold=[0.0, 0.5])
    for name, result in (("c", curve), ("l", loc)):
        save_result(tmp_path / f"{name}.safetensors", result)
        back = load_result(tmp_path / f"{name}.safetensors", type(result))
        for field in result.__dataclass_fields__:
            ours, theirs = getattr(result, field), getattr(back, field)
            if torch.is_tensor(ours):
                assert torch.equal(ours.nan_to_num(-7.0), theirs.nan_to_num(-7.0)), field
            else:
                assert ours == theirs, field
