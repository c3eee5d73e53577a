"""Which compositional "words" does a DCL layer actually use? Co-occurrence across branches.

The words of a DCL layer's branches and their composite word are defined in
:mod:`analysis.probes.dcl_words`. Measured in one pass (:class:`VocabularyConsumer`, memory
bounded whatever the data size):

* ``counts`` (P, M, M): joint counts of the words of every branch pair ``a < b`` (P = 1 for K = 2);
  they add up to samples x positions.
* ``pmi`` (P, M, M): pointwise mutual information in bits, add-alpha smoothed (see
  :func:`~analysis.probes.word_stats.pmi`).
* the used vocabulary (distinct composite words seen) and the entropy of their distribution in
  bits (at most ``log2 min(M ** K, samples x positions)``); per-branch word counts.
* for the ``num_words`` most frequent composite words, the ``top_n`` positions that fire them most
  strongly (a bounded top-n list per word seen, kept as sample index + position only) and their
  input **patches**: the receptive-field window of the position (:mod:`analysis.probes.word_patches`),
  computed from the modules before the DCL layer plus one of its branch convs.

The branch responses are captured with forward hooks on ``<dcl>.branches.k`` (each branch is
conv -> BN, its output is exactly what ``branch_outputs`` stacks): no extra computation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from analysis.errors import CollabError
from analysis.models.dcl import DCLConv
from analysis.probes.contract import PassOptions, activation_probe
from analysis.probes.dcl_layers import dcl_layer_field, dcl_layer_paths
from analysis.probes.dcl_words import VocabularyStats, decode_ids
from analysis.probes.shared_pass import Batch
from analysis.probes.word_patches import window_boxes, word_patches
from analysis.probes.word_stats import entropy_bits, mutual_information, pmi


@dataclass
class Vocabulary:
    """The vocabulary a DCL layer uses over a dataset (see the module docstring).

    Attributes:
        layer: module path of the DCL layer in the model.
        branches, branch_width: K and M; vocabulary_size: ``M ** K``.
        num_samples: samples seen; map_size: [H, W] of the layer's output;
        num_positions: samples x H x W (what every count table adds up to).
        pairs: the P branch pairs ``[a, b]``, a < b, in the order of ``counts``.
        counts: (P, M, M) int64 joint word counts; pmi: (P, M, M) float64 bits; smoothing: alpha.
        mutual_information: (P,) float64 bits (plug-in, unsmoothed) of each pair.
        branch_counts: (K, M) int64 word counts of each branch.
        words: (U, K) int64 the used composite words, most frequent first; word_counts: (U,).
        used_vocabulary: U; entropy_bits: entropy of the composite-word distribution in bits.
        top_words: (T, K) the T most frequent composite words; top_scores: (T, n) float32 their
            strongest firings (NaN where a word fired fewer than n times); top_samples: (T, n)
            int64 dataset indices (-1 = none); top_positions: (T, n, 2) map (row, col);
            top_boxes: (T, n, 4) int64 ``(x0, y0, x1, y1)`` windows clipped to the image.
        patches: (T, n, C, S, S) float32 input windows (S = receptive field), or (0,) if not
            cropped (no dataset given; see :func:`word_patches`).
        receptive_field: [size, stride, offset] of the layer; image_size: [H, W] of the inputs.
    """

    layer: str
    branches: int
    branch_width: int
    vocabulary_size: int
    num_samples: int
    map_size: list[int]
    num_positions: int
    pairs: list[list[int]]
    counts: torch.Tensor
    pmi: torch.Tensor
    smoothing: float
    mutual_information: torch.Tensor
    branch_counts: torch.Tensor
    words: torch.Tensor
    word_counts: torch.Tensor
    used_vocabulary: int
    entropy_bits: float
    top_words: torch.Tensor
    top_scores: torch.Tensor
    top_samples: torch.Tensor
    top_positions: torch.Tensor
    top_boxes: torch.Tensor
    patches: torch.Tensor
    receptive_field: list[int]
    image_size: list[int]

    def word_label(self, t: int) -> str:
        """``"(3, 17)"``-style label of ``top_words[t]``."""
        return "(" + ", ".join(str(int(w)) for w in self.top_words[t]) + ")"


class VocabularyConsumer:
    """Vocabulary of one DCL layer as a :class:`~analysis.probes.shared_pass.Consumer`.

    Args:
        model: the model the pass runs (to find the layer and its receptive field).
        layer: full module path of a :class:`DCLConv`, e.g. ``"peers.0.layer3.0.dcl"``.
        top_n: strongest firings kept per composite word; num_words: words given patches.
        smoothing: add-alpha smoothing of the PMI.
        dataset: the dataset of the pass; when given, :meth:`result` crops the patches.
        fill: value of window pixels outside the image.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str,
        *,
        top_n: int = 8,
        num_words: int = 16,
        smoothing: float = 1.0,
        dataset: Dataset | None = None,
        fill: float = 0.0,
    ) -> None:
        module = dict(model.named_modules()).get(layer)
        if not isinstance(module, DCLConv):
            raise CollabError(f"the model has no DCL layer {layer!r}; see dcl_layer_paths(model)")
        if top_n < 1 or num_words < 0 or smoothing < 0:
            raise CollabError(
                "the vocabulary probe needs top_n >= 1, num_words >= 0, smoothing >= 0"
            )
        self.layer, self.num_words, self.smoothing = layer, num_words, smoothing
        self.dataset, self.fill = dataset, fill
        self.field = dcl_layer_field(model, layer)
        self.layers = [f"{layer}.branches.{k}" for k in range(module.num_branches)]
        self.stats = VocabularyStats(
            branches=module.num_branches, branch_width=module.branch_width, top_n=top_n
        )
        self.image_size = [0, 0]

    def update(self, acts: dict[str, torch.Tensor], batch: Batch) -> None:
        self.stats.add([acts[name] for name in self.layers], batch.index)
        self.image_size = list(batch.x.shape[-2:])

    def result(self) -> Vocabulary:
        s = self.stats
        ids, id_counts = s.ranked_words()
        top = ids[: self.num_words]
        scores, samples, flat_pos = s.heap.top(top)
        w = max(s.map_size[1], 1)
        positions = torch.stack([flat_pos // w, flat_pos % w], dim=-1).masked_fill(
            (samples < 0)[..., None], -1
        )
        vocab = Vocabulary(
            layer=self.layer,
            branches=s.k,
            branch_width=s.m,
            vocabulary_size=s.m**s.k,
            num_samples=s.samples,
            map_size=list(s.map_size),
            num_positions=int(id_counts.sum()),
            pairs=s.pairs,
            counts=s.counts,
            pmi=pmi(s.counts, smoothing=self.smoothing),
            smoothing=float(self.smoothing),
            mutual_information=torch.stack([mutual_information(c) for c in s.counts])
            if s.pairs
            else torch.zeros(0, dtype=torch.float64),
            branch_counts=s.branch_counts,
            words=decode_ids(ids, s.m, s.k),
            word_counts=id_counts,
            used_vocabulary=len(ids),
            entropy_bits=entropy_bits(id_counts),
            top_words=decode_ids(top, s.m, s.k),
            top_scores=scores,
            top_samples=samples,
            top_positions=positions,
            top_boxes=window_boxes(positions, self.field, self.image_size),
            patches=torch.zeros(0),
            receptive_field=[self.field.size, self.field.stride, self.field.offset],
            image_size=list(self.image_size),
        )
        if self.dataset is not None:
            vocab.patches = word_patches(vocab, self.dataset, fill=self.fill)
        return vocab


@dataclass(frozen=True)
class VocabularyOptions(PassOptions):
    """Options of the vocabulary probe.

    Attributes:
        layer: full path of the DCL layer (default: the last DCL layer of peer ``peer``).
        top_n, num_words, smoothing, fill: see :class:`VocabularyConsumer`.
        limit, batch_size, device, progress: the pass (see :class:`PassOptions`).
    """

    layer: str | None = None
    peer: int = 0
    top_n: int = 8
    num_words: int = 16
    smoothing: float = 1.0
    fill: float = 0.0


def _vocabulary_consumer(model: nn.Module, dataset: Dataset, o: VocabularyOptions):
    layer = o.layer
    if layer is None:
        paths = dcl_layer_paths(model, peer=o.peer)
        if not paths:
            raise CollabError(
                f"peer {o.peer} has no DCL layer; train a dcl_* architecture (e.g. dcl_resnet8)"
            )
        layer = paths[-1]
    return VocabularyConsumer(
        model,
        layer,
        top_n=o.top_n,
        num_words=o.num_words,
        smoothing=o.smoothing,
        dataset=dataset,
        fill=o.fill,
    )


probe_vocabulary = activation_probe(
    "vocabulary",
    consumer=_vocabulary_consumer,
    options=VocabularyOptions,
    result=Vocabulary,
    needs=("dcl_layers",),
    about="DCL words per branch, their co-occurrence and the vocabulary used",
)


def max_entropy_bits(vocab: Vocabulary) -> float:
    """The largest entropy the composite words could have: ``log2 min(M ** K, positions)``."""
    return math.log2(max(1, min(vocab.vocabulary_size, vocab.num_positions)))
