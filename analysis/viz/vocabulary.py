"""Figures for the DCL vocabulary probe: co-occurrence tables, vocabulary usage, word patches."""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from analysis.viz.gallery import image_gallery

MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}
KINDS = ("counts", "pmi")


def _table(result, kind: str, pair: int) -> tuple[torch.Tensor, str, str]:
    """(rows, cols) table of a Vocabulary (branch pair ``pair``) or PeerCooccurrence, and axis titles."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use 'counts' or 'pmi'")
    table = getattr(result, kind)
    if hasattr(result, "pairs"):  # a DCL vocabulary: one table per branch pair
        if not 0 <= pair < len(result.pairs):
            raise ValueError(f"pair {pair} out of range: the layer has {len(result.pairs)} pairs")
        a, b = result.pairs[pair]
        return table[pair], f"branch {a} word", f"branch {b} word"
    return table, f"{result.layers[0]} word", f"{result.layers[1]} word"


def cooccurrence_heatmap(result, *, kind: str = "counts", pair: int = 0) -> go.Figure:
    """Word co-occurrence as a heatmap.

    Args:
        result: a :class:`~analysis.probes.vocabulary.Vocabulary` (branch pair ``pair``) or a
            :class:`~analysis.probes.peer_words.PeerCooccurrence`.
        kind: ``"counts"`` (sequential colours from 0) or ``"pmi"`` (bits, diverging around 0;
            -inf cells, possible without smoothing, are drawn as gaps).

    Returns:
        One ``Heatmap`` whose z is the (rows, cols) table (row = first branch / layer's word).
    """
    table, ytitle, xtitle = _table(result, kind, pair)
    z = [[None if not math.isfinite(v) else v for v in row] for row in table.double().tolist()]
    signed = kind == "pmi"
    finite = [abs(v) for row in z for v in row if v is not None]
    bound = max(finite, default=1.0) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=z,
            zmin=-bound if signed else 0,
            zmax=bound,
            zmid=0.0 if signed else None,
            colorscale="RdBu" if signed else "Blues",
            colorbar={"title": "PMI (bits)" if signed else "count"},
            hovertemplate=f"{ytitle} %{{y}}, {xtitle} %{{x}}: %{{z}}<extra></extra>",
        )
    )
    what = "pointwise mutual information" if signed else "co-occurrence counts"
    fig.update_layout(
        title=f"Word {what} ({result.num_positions:,} positions)",
        xaxis_title=xtitle,
        yaxis_title=ytitle,
        yaxis_autorange="reversed",
        margin=MARGIN,
    )
    return fig


def vocabulary_usage(vocabs, *, names: Sequence[str] | None = None) -> go.Figure:
    """Used vs possible composite words (bars, log scale) and the entropy (markers, bits).

    Args:
        vocabs: one :class:`Vocabulary` or several (e.g. one per DCL layer or per run).
        names: one label per vocabulary (default: the layer paths).

    Returns:
        Traces ``"possible words"`` (y = M ** K), ``"used words"`` (y = used vocabulary),
        ``"entropy (bits)"`` and ``"max entropy (bits)"`` (``log2 min(M ** K, positions)``) on
        a second y axis.
    """
    vocabs = [vocabs] if not isinstance(vocabs, (list, tuple)) else list(vocabs)
    labels = list(names) if names is not None else [v.layer for v in vocabs]
    if len(labels) != len(vocabs):
        raise ValueError(f"got {len(labels)} names for {len(vocabs)} vocabularies")
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    possible = [v.vocabulary_size for v in vocabs]
    used = [v.used_vocabulary for v in vocabs]
    fig.add_trace(go.Bar(x=labels, y=possible, name="possible words", marker_color="#c7d2e0"))
    fig.add_trace(
        go.Bar(
            x=labels,
            y=used,
            name="used words",
            marker_color="#1f77b4",
            text=[f"{u:,} / {p:,}" for u, p in zip(used, possible)],
            textposition="outside",
        )
    )
    entropy = [v.entropy_bits for v in vocabs]
    ceiling = [math.log2(max(1, min(v.vocabulary_size, v.num_positions))) for v in vocabs]
    marker = {"size": 12, "symbol": "diamond"}
    fig.add_trace(
        go.Scatter(x=labels, y=entropy, name="entropy (bits)", mode="markers", marker=marker),
        secondary_y=True,
    )
    fig.add_trace(
        go.Scatter(
            x=labels,
            y=ceiling,
            name="max entropy (bits)",
            mode="markers",
            marker_symbol="line-ew-open",
        ),
        secondary_y=True,
    )
    fig.update_yaxes(type="log", title_text="composite words", secondary_y=False)
    fig.update_yaxes(title_text="entropy (bits)", rangemode="tozero", secondary_y=True)
    fig.update_layout(title="Vocabulary usage", barmode="group", margin=MARGIN)
    return fig


def word_gallery(vocab, *, words: int | None = None, per_word: int | None = None) -> go.Figure:
    """The strongest input patches of the most frequent composite words, one row per word.

    Args:
        vocab: a :class:`Vocabulary` with patches (``probe_vocabulary`` crops them;
            otherwise call :func:`~analysis.probes.word_patches.word_patches` first).
        words: rows to show (default all top words); per_word: patches per row (default top_n).

    Returns:
        An :func:`~analysis.viz.gallery.image_gallery` figure; captions name the word, its count
        and the firing strength (missing firings are blank cells captioned "-").
    """
    if vocab.patches.dim() != 5:
        raise ValueError(
            "the vocabulary has no patches; crop them with word_patches(vocab, dataset)"
        )
    t = min(words or len(vocab.top_words), len(vocab.top_words))
    n = min(per_word or vocab.top_scores.shape[1], vocab.top_scores.shape[1])
    patches = vocab.patches[:t, :n].clamp(0, 1).flatten(0, 1)
    captions = []
    for row in range(t):
        label = vocab.word_label(row)
        count = int(vocab.word_counts[row])  # the top words are the most frequent ones
        for j in range(n):
            score = float(vocab.top_scores[row, j])
            head = f"{label} ×{count:,}" if j == 0 else label
            captions.append("-" if math.isnan(score) else f"{head}<br>{score:.3g}")
    return image_gallery(patches, captions, cols=max(n, 1))
