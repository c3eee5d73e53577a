"""The input patches behind a DCL word: receptive-field windows of map positions.

A position (row, col) of a layer's map sees the input window starting at ``offset + stride *
(row, col)`` of side ``size`` (the layer's :class:`ReceptiveField`, computed by
:func:`~analysis.probes.dcl_layers.dcl_receptive_field`). For padded networks the window
overhangs the image near the edges: boxes are clipped to the image, while patches keep the full
window size with the overhang filled with ``fill`` (default 0), so the patches of all positions
align pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from analysis.models.receptive_field import ReceptiveField


def window_boxes(positions: torch.Tensor, field: ReceptiveField, image_size: Sequence[int]):
    """(..., 2) map (row, col) -> (..., 4) int64 boxes ``(x0, y0, x1, y1)`` clipped to the image.

    Positions of -1 (no entry) give boxes of -1.
    """
    start = field.offset + field.stride * positions  # (..., 2) row, col starts
    h, w = int(image_size[0]), int(image_size[1])
    y0, x0 = start[..., 0].clamp(0, h), start[..., 1].clamp(0, w)
    y1, x1 = (start[..., 0] + field.size).clamp(0, h), (start[..., 1] + field.size).clamp(0, w)
    boxes = torch.stack([x0, y0, x1, y1], dim=-1).to(torch.int64)
    return boxes.masked_fill((positions < 0).any(-1, keepdim=True), -1)


def crop_window(image: torch.Tensor, top: int, left: int, size: int, *, fill: float = 0.0):
    """The ``size x size`` window of ``image`` (C, H, W) at (top, left); outside pixels = fill."""
    c, h, w = image.shape
    out = torch.full((c, size, size), float(fill), dtype=image.dtype)
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + size, h), min(left + size, w)
    if y1 > y0 and x1 > x0:
        out[:, y0 - top : y1 - top, x0 - left : x1 - left] = image[:, y0:y1, x0:x1]
    return out


def word_patches(vocab: Any, dataset: Dataset, *, fill: float = 0.0) -> torch.Tensor:
    """Input windows of ``vocab``'s top firings: (T, n, C, S, S), S = the receptive field.

    ``vocab`` is a :class:`~analysis.probes.vocabulary.Vocabulary` (its ``receptive_field``,
    ``top_samples`` and ``top_positions`` are read).

    Reads only the T x n images named by ``top_samples`` from ``dataset``; missing entries
    (sample -1) are all ``fill``.
    """
    size, stride, offset = vocab.receptive_field
    t, n = vocab.top_samples.shape
    if t * n == 0:
        return torch.zeros(t, n, 0, size, size)
    valid = vocab.top_samples[vocab.top_samples >= 0]
    chans = dataset[int(valid[0])][0].shape[0] if len(valid) else 1
    out = torch.full((t, n, chans, size, size), float(fill))
    for a, b in zip(*torch.nonzero(vocab.top_samples >= 0, as_tuple=True)):
        image = torch.as_tensor(dataset[int(vocab.top_samples[a, b])][0]).float()
        row, col = (int(v) for v in vocab.top_positions[a, b])
        out[a, b] = crop_window(
            image, offset + stride * row, offset + stride * col, size, fill=fill
        )
    return out
