"""Tables behind figures: one row per drawn item, in the figure's order, with the probes' numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from analysis.models import CollaborativeModel, create_model
from analysis.probes import Vocabulary
from analysis.probes.localization import localize
from analysis.viz.tables import box_columns, disagreement_columns, word_patch_columns


def test_box_columns_are_the_ranked_boxes_of_one_image():
    torch.manual_seed(0)
    net = create_model("test_cnn", num_classes=3, in_chans=1, width=4)
    peer = CollaborativeModel([net], mean=(0.5,), std=(0.25,)).peer(0)
    loc = localize(peer, torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1)))
    table = pd.DataFrame(box_columns(loc, 1))
    assert list(table.columns) == ["x0", "y0", "x1", "y1", "score"]
    np.testing.assert_array_equal(table[["x0", "y0", "x1", "y1"]].to_numpy(), loc.boxes[1].numpy())
    np.testing.assert_array_equal(table["score"].to_numpy(), loc.scores[1].numpy())


def test_disagreement_columns_one_row_per_sample_one_column_per_peer():
    columns = disagreement_columns(
        torch.tensor([3, 7]), torch.tensor([1, 0]), torch.tensor([[1, 2], [0, 0]]), ["a", "b"]
    )
    assert columns == {"index": [3, 7], "label": [1, 0], "a": [1, 2], "b": [0, 0]}


class Words:
    """The parts of a :class:`~analysis.probes.Vocabulary` a word gallery reads: 3 words of two
    branches, their 2 strongest patches each."""

    word_label = Vocabulary.word_label
    top_words = torch.tensor([[3, 1], [0, 2], [1, 1]])
    word_counts = torch.tensor([9, 5, 2])
    top_scores = torch.tensor([[0.9, 0.8], [0.7, float("nan")], [0.5, 0.4]])
    top_samples = torch.tensor([[4, 0], [2, -1], [1, 1]])
    top_positions = torch.tensor([[[0, 1], [2, 2]], [[1, 0], [0, 0]], [[3, 3], [1, 2]]])
    top_boxes = torch.arange(3 * 2 * 4).reshape(3, 2, 4)


def test_word_patch_columns_follow_the_gallery_word_by_word():
    columns = word_patch_columns(Words(), 2)
    assert columns["word"] == ["(3, 1)", "(3, 1)", "(0, 2)", "(0, 2)"]
    assert columns["count"].tolist() == [9, 9, 5, 5]
    assert columns["rank"].tolist() == [1, 2, 1, 2]
    np.testing.assert_allclose(columns["strength"], [0.9, 0.8, 0.7, np.nan], rtol=1e-6)
    assert columns["sample"].tolist() == [4, 0, 2, -1]
    assert columns["row"].tolist() == [0, 2, 1, 0] and columns["col"].tolist() == [1, 2, 0, 0]
    assert columns["x0"].tolist() == [0, 4, 8, 12] and columns["y1"].tolist() == [3, 7, 11, 15]
    assert len(pd.DataFrame(columns)) == 4
