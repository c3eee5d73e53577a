"""Tables behind figures: the rows a figure shows, as ``{column: values}`` of equal length.

They hold what a reader downloads next to a figure (the app's CSV button) when the figure's own
traces do not carry it, e.g. which sample and position each gallery patch comes from. Columns
are lists or 1-D numpy arrays, ready for ``pandas.DataFrame``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

BOX_COLUMNS = ("x0", "y0", "x1", "y1")


def _boxes(boxes: torch.Tensor) -> dict[str, np.ndarray]:
    """(..., 4) boxes as four flat columns x0, y0, x1, y1."""
    return {name: boxes[..., i].reshape(-1).numpy() for i, name in enumerate(BOX_COLUMNS)}


def box_columns(loc, index: int = 0) -> dict[str, np.ndarray]:
    """The ranked boxes of image ``index`` of a :class:`~analysis.probes.Localization`, best
    first: ``x0, y0, x1, y1`` (pixels, -1 for a missing box) and ``score`` (NaN when missing)."""
    return _boxes(loc.boxes[index]) | {"score": loc.scores[index].numpy()}


def disagreement_columns(
    picked: torch.Tensor,
    labels: torch.Tensor,
    peer_predictions: torch.Tensor,
    peer_names: Sequence[str],
) -> dict[str, list]:
    """One row per sample of a disagreement gallery: ``index`` (in the split), ``label`` and one
    column per peer with its predicted class.

    Args:
        picked: (N,) sample indices; labels: (N,) their labels.
        peer_predictions: (K, N) each peer's predicted class of each sample.
        peer_names: K names, the peers' column names.
    """
    return {"index": picked.tolist(), "label": labels.tolist()} | dict(
        zip(peer_names, peer_predictions.tolist())
    )


def word_patch_columns(vocab, words: int) -> dict[str, list | np.ndarray]:
    """One row per patch of a word gallery (:func:`~analysis.viz.word_gallery` of the
    ``words`` most frequent composite words), word by word, strongest patch first.

    Columns: ``word`` (its label), ``count`` (its occurrences), ``rank`` (1 = strongest),
    ``strength``, ``sample`` (test index), ``row``, ``col`` (position in the feature map) and the
    patch's box ``x0, y0, x1, y1`` in pixels.
    """
    per_word = vocab.top_scores.shape[1]
    word = torch.arange(words).repeat_interleave(per_word)
    positions = vocab.top_positions[:words].reshape(-1, 2)
    return {
        "word": [vocab.word_label(int(t)) for t in word],
        "count": vocab.word_counts[word].numpy(),
        "rank": torch.arange(1, per_word + 1).repeat(words).numpy(),
        "strength": vocab.top_scores[:words].reshape(-1).numpy(),
        "sample": vocab.top_samples[:words].reshape(-1).numpy(),
        "row": positions[:, 0].numpy(),
        "col": positions[:, 1].numpy(),
    } | _boxes(vocab.top_boxes[:words])
