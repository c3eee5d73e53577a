"""Patch localization (class map + greedy box selection): known answers first."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, Subset, TensorDataset

from analysis.data.shapes import ShapesDataset
from analysis.errors import CollabError
from analysis.models import CollaborativeModel, StagedNet, create_model
from analysis.models.base import global_pool
from analysis.models.receptive_field import ReceptiveField, receptive_field
from analysis.probes.box_selection import position_boxes, select_boxes
from analysis.probes.class_map import cam_field, localize
from analysis.probes.hooks import hook_count
from analysis.probes.localization import box_metrics, random_boxes, score_localization

FIELD = ReceptiveField(size=4, stride=2, offset=0)  # 5 x 5 map over a 12 x 12 image


def greedy_reference(scores: list[float], boxes: list[tuple], top_k: int, thr) -> list[int]:
    """Plain-Python greedy NMS: one pass over positions sorted by score (stable), as the
    AnchorNet authors' ``localize_bbox``; ``thr`` is one limit or one per box after the first."""

    def iou(a, b):
        w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
        area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
        return w * h / (area(a) + area(b) - w * h)

    kept: list[int] = []
    for p in sorted(range(len(scores)), key=lambda i: -scores[i]):
        limit = thr if isinstance(thr, float) else (thr[len(kept) - 1] if kept else 1.0)
        if all(iou(boxes[p], boxes[q]) <= limit for q in kept):
            kept.append(p)
        if len(kept) == top_k:
            break
    return kept


def test_hand_built_class_map_gives_the_expected_boxes_and_suppression():
    cmap = torch.zeros(1, 5, 5)
    cmap[0, 0, 0], cmap[0, 0, 1], cmap[0, 4, 4], cmap[0, 2, 2] = 10.0, 9.0, 8.0, 7.0
    boxes, scores, positions = select_boxes(cmap, FIELD, image_size=(12, 12), top_k=4)
    # (0, 1) overlaps (0, 0) with IoU 8 / 24 = 1/3 > 0.3: suppressed
    assert boxes[0, :3].tolist() == [[0, 0, 4, 4], [8, 8, 12, 12], [4, 4, 8, 8]]
    assert scores[0, :3].tolist() == [10.0, 8.0, 7.0]
    assert positions[0, :3].tolist() == [[0, 0], [4, 4], [2, 2]]
    # the fourth: the first zero-score position not overlapping the three (ties: lower index)
    flat_boxes = position_boxes(FIELD, (5, 5), (12, 12)).view(-1, 4).tolist()
    ref = greedy_reference(cmap.flatten().tolist(), flat_boxes, 4, 0.3)
    assert ref == [int(p[0] * 5 + p[1]) for p in positions[0].tolist()]
    looser = select_boxes(cmap, FIELD, image_size=(12, 12), top_k=2, iou_threshold=0.34)[0]
    assert looser[0].tolist() == [[0, 0, 4, 4], [2, 0, 6, 4]]  # 1/3 <= 0.34 is kept


def test_random_class_maps_match_the_reference_greedy_selection():
    gen = torch.Generator().manual_seed(0)
    cmaps = torch.randn(6, 5, 5, generator=gen)
    boxes, _, positions = select_boxes(cmaps, FIELD, image_size=(12, 12), top_k=4)
    flat_boxes = position_boxes(FIELD, (5, 5), (12, 12)).view(-1, 4).tolist()
    for b in range(6):
        ref = greedy_reference(cmaps[b].flatten().tolist(), flat_boxes, 4, 0.3)
        got = [int(r * 5 + c) for r, c in positions[b].tolist() if r >= 0]
        assert got == ref
        assert boxes[b, : len(ref)].tolist() == [flat_boxes[p] for p in ref]


def test_per_stage_limits_are_one_pass_like_the_authors():
    """Limits (0, 0.1, 0.2): a position passed over under a tight limit is not revisited."""
    cmap = torch.zeros(1, 5, 5)
    cmap[0, 0, 0], cmap[0, 1, 1], cmap[0, 4, 4], cmap[0, 2, 2] = 10.0, 9.0, 8.0, 7.0
    stages = (0.0, 0.1, 0.2)
    _, _, positions = select_boxes(cmap, FIELD, image_size=(12, 12), iou_threshold=stages)
    # (1, 1) overlaps (0, 0) by 4 / 28 = 1/7 > 0 at box 2; at box 4 (limit 0.2) it would pass,
    # but the pass has moved on: the 4th box is the first zero-score position that fits.
    assert positions[0].tolist() == [[0, 0], [4, 4], [2, 2], [0, 2]]
    single = select_boxes(cmap, FIELD, image_size=(12, 12), iou_threshold=0.3)[2]
    assert single[0].tolist() == [[0, 0], [1, 1], [4, 4], [2, 2]]
    gen = torch.Generator().manual_seed(1)
    cmaps = torch.randn(8, 5, 5, generator=gen)
    _, _, got = select_boxes(cmaps, FIELD, image_size=(12, 12), iou_threshold=stages)
    flat_boxes = position_boxes(FIELD, (5, 5), (12, 12)).view(-1, 4).tolist()
    for b in range(8):
        ref = greedy_reference(cmaps[b].flatten().tolist(), flat_boxes, 4, stages)
        assert [int(r * 5 + c) for r, c in got[b].tolist() if r >= 0] == ref
    with pytest.raises(CollabError, match="3 per-stage IoU thresholds cannot select top_k=5"):
        select_boxes(cmap, FIELD, image_size=(12, 12), top_k=5, iou_threshold=stages)


def test_fewer_boxes_than_top_k_are_marked_missing():
    big = ReceptiveField(size=10, stride=1, offset=0)  # every window overlaps every other a lot
    boxes, scores, positions = select_boxes(torch.rand(2, 2, 2), big, image_size=(11, 11), top_k=3)
    assert (boxes[:, 1:] == -1).all() and torch.isnan(scores[:, 1:]).all()
    assert (positions[:, 1:] == -1).all() and (boxes[:, 0] >= 0).all()


def test_anchornet_reference_boxes_are_rows_8i_to_8i_plus_94():
    with torch.device("meta"):
        net = create_model("anchornet", num_classes=10, layout="reference")
    boxes = position_boxes(cam_field(net), (17, 17), (224, 224))
    i, j = torch.meshgrid(torch.arange(17), torch.arange(17), indexing="ij")
    expected = torch.stack([8 * j, 8 * i, 8 * j + 95, 8 * i + 95], -1)  # x1, y1 exclusive
    assert torch.equal(boxes, expected) and boxes[16, 16].tolist() == [128, 128, 223, 223]


def _anchornet_peer(num_classes: int = 4) -> tuple[CollaborativeModel, nn.Module]:
    torch.manual_seed(0)
    net = create_model("anchornet", num_classes=num_classes, width=4, expansion=1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
    model = CollaborativeModel([net], mean=(0.5,) * 3, std=(0.25,) * 3)
    return model, net


def test_logit_is_the_spatial_mean_of_the_class_map_plus_the_bias():
    model, net = _anchornet_peer()
    peer = model.peer(0).train()
    hooks = hook_count(model)
    x = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    loc = localize(peer, x)
    assert hook_count(model) == hooks and peer.training and net.training
    assert loc.class_map.shape == (3, 5, 5) and loc.receptive_field == [31, 2, 0]
    with torch.no_grad():
        logits = model.peer(0).eval()(x)
    torch.testing.assert_close(loc.logits, logits)
    chosen = logits[torch.arange(3), loc.predicted]
    torch.testing.assert_close(
        chosen, loc.class_map.mean((1, 2)) + net.fc.bias.detach()[loc.predicted]
    )
    target = torch.tensor([1, 2, 3])
    forced = localize(peer, x, target=target)
    torch.testing.assert_close(
        logits[torch.arange(3), target],
        forced.class_map.mean((1, 2)) + net.fc.bias.detach()[target],
    )


def test_padded_networks_map_positions_through_their_receptive_field():
    net = create_model("test_resnet", num_classes=3, in_chans=1)
    stages = [net.conv1, net.bn1, net.relu, net.layer1, net.layer2, net.layer3]
    assert cam_field(net) == receptive_field(stages)
    model = CollaborativeModel([net], mean=(0.5,), std=(0.25,))
    loc = localize(model.peer(0), torch.rand(2, 1, 16, 16), top_k=2, iou_threshold=1.0)
    assert loc.class_map.shape == (2, 4, 4)
    kept = loc.boxes[loc.boxes[..., 0] >= 0]
    assert (kept[:, :2] >= 0).all() and (kept[:, 2:] <= 16).all()  # clipped to the image


def test_box_metrics_and_random_boxes():
    truth = torch.tensor([[0, 0, 4, 4], [0, 0, 4, 4], [0, 0, 4, 4]])
    boxes = torch.tensor(
        [
            [[0, 0, 4, 4], [-1, -1, -1, -1]],  # exact
            [[2, 0, 6, 4], [10, 10, 14, 14]],  # half overlap: IoU 8 / 24, centre (4, 2) on the edge
            [[10, 10, 14, 14], [0, 0, 4, 4]],  # top-1 misses, second box exact
        ]
    )
    m = box_metrics(boxes, truth)
    assert m["hit"].tolist() == [True, True, False]
    torch.testing.assert_close(m["top1_iou"], torch.tensor([1.0, 1 / 3, 0.0]))
    torch.testing.assert_close(m["best_iou"], torch.tensor([1.0, 1 / 3, 1.0]))
    gen = torch.Generator().manual_seed(0)
    moved = random_boxes(boxes.repeat(50, 1, 1), (16, 20), generator=gen)
    valid = moved[..., 0] >= 0
    assert torch.equal(valid, boxes.repeat(50, 1, 1)[..., 0] >= 0)
    assert torch.equal((moved[..., 2:] - moved[..., :2])[valid], torch.full((valid.sum(), 2), 4))
    assert (moved[valid][:, 2] <= 20).all() and (moved[valid][:, 3] <= 16).all()
    assert moved[valid][:, 0].max() == 16 and moved[valid][:, 0].min() == 0  # both ends reachable
    again = random_boxes(
        boxes.repeat(50, 1, 1), (16, 20), generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(moved, again)


class SquareDataset(Dataset):
    """A bright 8 x 8 square at a random place on dim noise; ``box(i)`` is the square."""

    def __init__(self, n: int) -> None:
        gen = torch.Generator().manual_seed(3)
        self.corners = torch.randint(0, 25, (n, 2), generator=gen)
        self.images = torch.rand(n, 1, 32, 32, generator=gen) * 0.5
        for img, (y, x) in zip(self.images, self.corners.tolist()):
            img[:, y : y + 8, x : x + 8] = 1.0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], 0

    def box(self, i: int) -> tuple[int, int, int, int]:
        y, x = self.corners[i].tolist()
        return x, y, x + 8, y + 8


def _square_detector() -> nn.Module:
    """A StagedNet whose class map for class 0 is the 8 x 8 window mean of the image."""
    conv = nn.Conv2d(1, 1, 8, bias=False)
    fc = nn.Linear(1, 2)
    with torch.no_grad():
        conv.weight.fill_(1 / 64)
        fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        fc.bias.zero_()
    net = StagedNet({"conv": conv, **global_pool()}, fc, probe_layers=["conv"])
    return CollaborativeModel([net], mean=(0.0,), std=(1.0,)).peer(0)


def test_a_detector_whose_class_map_is_the_truth_beats_the_random_baseline():
    data = SquareDataset(40)
    score = score_localization(_square_detector(), data, batch_size=16, seed=0)
    assert score.num_samples == 40 and score.accuracy == pytest.approx(1 / 1)  # all class 0
    assert score.pointing == 1.0 and score.iou50 == 1.0 and score.mean_best_iou == 1.0
    assert score.random_iou50 < 0.3 and score.random_pointing < 0.4
    assert score.random_mean_best_iou < 0.5
    assert (score.best_iou >= score.top1_iou).all() and score.hits.all()
    sub = score_localization(_square_detector(), Subset(data, [5, 6, 7]), limit=2)
    assert sub.num_samples == 2 and sub.iou50 == 1.0


def test_scoring_on_shapes_and_datasets_without_boxes():
    model, _ = _anchornet_peer(num_classes=6)
    score = score_localization(model.peer(0), ShapesDataset(8, seed=0, split="test", image_size=40))
    for value in (score.pointing, score.iou50, score.mean_best_iou, score.random_mean_best_iou):
        assert 0.0 <= value <= 1.0 and not math.isnan(value)
    plain = TensorDataset(torch.rand(4, 3, 40, 40), torch.zeros(4, dtype=torch.long))
    with pytest.raises(CollabError, match="no ground-truth boxes"):
        score_localization(model.peer(0), plain)
