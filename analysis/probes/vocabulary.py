"""Which compositional "words" does a DCL layer actually use? Co-occurrence across branches.

A Deep Collaborative Learning module (``analysis/models/dcl.py``) has K branches of M filters.
At every spatial position the **word** of branch k is its most active filter,
``w_k = argmax_m F_k[m]`` (pre-fusion responses), and the **composite word** is the tuple
``(w_1 .. w_K)`` out of a vocabulary of ``M ** K``; it is numbered like the ``outer`` fusion's
channels, ``sum_k w_k * M ** (K - 1 - k)`` (the first branch is the most significant digit).
The **strength** of the composite word at a position is ``prod_k ReLU(max_m F_k[m])``, the
``(w_1 .. w_K)`` entry of the outer product of the ReLU'd branch vectors (the largest entry).

Measured in one pass (:class:`VocabularyConsumer`, memory bounded whatever the data size):

* ``counts`` (P, M, M): joint counts of the words of every branch pair ``a < b`` (P = 1 for K = 2);
  they add up to samples x positions.
* ``pmi`` (P, M, M): pointwise mutual information in bits, **add-alpha smoothed**: every cell gets
  ``smoothing`` extra counts, ``p(a, b) = (n_ab + alpha) / (N + alpha M^2)``, the marginals are the
  sums of the smoothed joint, ``pmi = log2 p(a, b) / (p(a) p(b))``. It is finite everywhere and
  about 0 for independent words (exactly 0 for exactly independent counts without smoothing, or
  with uniform marginals); ``smoothing=0`` gives -inf at empty cells.
* the used vocabulary (distinct composite words seen) and the entropy of their distribution in
  bits (at most ``log2 min(M ** K, samples x positions)``); per-branch word counts.
* for the ``num_words`` most frequent composite words, the ``top_n`` positions that fire them most
  strongly (a bounded top-n list per word seen, kept as sample index + position only) and their
  input **patches**: the receptive-field window of the position, computed with
  :func:`~analysis.models.receptive_field.receptive_field` from the modules before the DCL layer
  (plus one of its branch convs). For padded networks the window overhangs the image near the
  edges: ``top_boxes`` are clipped to the image, while ``patches`` keep the full window size with
  the overhang filled with ``fill`` (default 0), so patches of all positions align pixel for pixel.

The branch responses are captured with forward hooks on ``<dcl>.branches.k`` (each branch is
conv -> BN, its output is exactly what ``branch_outputs`` stacks): no extra computation.

**Across peers** (:class:`PeerCooccurrenceConsumer`, :func:`peer_cooccurrence`): the word of a
peer at a position is the argmax channel of its chosen layer's output, and the table counts the
word pairs of two peers at the same position of the same image. If the two maps differ in size,
the larger one is average-pooled (``adaptive_avg_pool2d``) to the smaller grid before the argmax,
so each coarse position is compared with the mean of the fine positions it covers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from analysis.errors import CollabError
from analysis.models.base import StagedNet
from analysis.models.dcl import DCLConv
from analysis.models.receptive_field import SIDE_PATHS, ReceptiveField, receptive_field
from analysis.probes.hooks import peer_layers
from analysis.probes.shared_pass import Batch, run_pass

# --------------------------------------------------------------------------- word statistics


def joint_counts(a: torch.Tensor, b: torch.Tensor, ma: int, mb: int) -> torch.Tensor:
    """(N,) words in [0, ma) and (N,) words in [0, mb) -> (ma, mb) int64 pair counts."""
    return torch.bincount(a * mb + b, minlength=ma * mb).view(ma, mb)


def pmi(counts: torch.Tensor, *, smoothing: float = 1.0) -> torch.Tensor:
    """Add-alpha smoothed pointwise mutual information in bits.

    Args:
        counts: (..., Ma, Mb) joint counts.
        smoothing: alpha added to every cell; the marginals are those of the smoothed joint.

    Returns:
        (..., Ma, Mb) float64 ``log2 p(a, b) / (p(a) p(b))``; with ``smoothing=0`` empty cells
        are -inf (NaN where a word never occurs at all).
    """
    joint = counts.double() + float(smoothing)
    p = joint / joint.sum((-2, -1), keepdim=True).clamp_min(1e-300)
    return torch.log2(p / (p.sum(-1, keepdim=True) * p.sum(-2, keepdim=True)))


def mutual_information(counts: torch.Tensor) -> torch.Tensor:
    """Plug-in mutual information (bits, float64 scalar) of an (Ma, Mb) count table."""
    p = counts.double() / max(int(counts.sum()), 1)
    outer = p.sum(1, keepdim=True) * p.sum(0, keepdim=True)
    nz = p > 0
    return (p[nz] * torch.log2(p[nz] / outer[nz])).sum()


def entropy_bits(counts: torch.Tensor) -> float:
    """Entropy in bits of the distribution given by (U,) counts (zeros ignored)."""
    p = counts.double()[counts > 0]
    p = p / p.sum()
    return float(-(p * torch.log2(p)).sum()) if len(p) else 0.0


class WordHeap:
    """The ``top_n`` strongest firings (score, sample, position) of every word id seen.

    Entries are kept sorted by id, then by score descending (ties: the earlier firing first);
    memory is at most ``top_n`` entries per distinct id.
    """

    def __init__(self, top_n: int) -> None:
        self.n = top_n
        self.ids = torch.zeros(0, dtype=torch.int64)
        self.scores = torch.zeros(0)
        self.samples = torch.zeros(0, dtype=torch.int64)
        self.positions = torch.zeros(0, dtype=torch.int64)

    def add(self, ids, scores, samples, positions) -> None:
        """Fold N firings: (N,) word ids, strengths, sample indices and flat positions."""
        ids = torch.cat([self.ids, ids])
        scores = torch.cat([self.scores, scores.float()])
        samples, positions = (
            torch.cat([self.samples, samples]),
            torch.cat([self.positions, positions]),
        )
        order = torch.sort(scores, descending=True, stable=True).indices
        order = order[torch.sort(ids[order], stable=True).indices]
        _, counts = torch.unique_consecutive(ids[order], return_counts=True)
        starts = (torch.cumsum(counts, 0) - counts).repeat_interleave(counts)
        keep = order[torch.arange(len(order)) - starts < self.n]
        self.ids, self.scores = ids[keep], scores[keep]
        self.samples, self.positions = samples[keep], positions[keep]

    def top(self, words: torch.Tensor):
        """For (T,) ids: scores (T, n) (NaN = none), samples (T, n) (-1), positions (T, n) (-1)."""
        shape = (len(words), self.n)
        if len(self.ids) == 0:
            none = torch.full(shape, -1, dtype=torch.int64)
            return torch.full(shape, float("nan")), none, none.clone()
        left = torch.searchsorted(self.ids, words)
        right = torch.searchsorted(self.ids, words, right=True)
        idx = left[:, None] + torch.arange(self.n)
        valid = idx < right[:, None]
        idx = idx.clamp_max(len(self.ids) - 1)
        return (
            self.scores[idx].masked_fill(~valid, float("nan")),
            self.samples[idx].masked_fill(~valid, -1),
            self.positions[idx].masked_fill(~valid, -1),
        )


# --------------------------------------------------------------------------- DCL vocabulary


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


def branch_words(responses) -> tuple[torch.Tensor, torch.Tensor]:
    """Words and composite-word strength from branch responses.

    Args:
        responses: (K, B, M, H, W) pre-fusion branch responses, or a sequence of K (B, M, H, W).

    Returns:
        words (K, B, H, W) int64 (argmax over M, first index on ties) and strength (B, H, W)
        ``prod_k ReLU(max_m F_k)``.
    """
    maxima = [branch.max(dim=1) for branch in responses]
    strength = maxima[0].values.relu()
    for values, _ in maxima[1:]:
        strength = strength * values.relu()
    return torch.stack([words for _, words in maxima]), strength


def composite_ids(words: torch.Tensor, branch_width: int) -> torch.Tensor:
    """(K, ...) branch words -> (...) composite word numbers ``sum_k w_k M ** (K - 1 - k)``."""
    ids = torch.zeros_like(words[0])
    for w in words:
        ids = ids * branch_width + w
    return ids


def decode_ids(ids: torch.Tensor, branch_width: int, branches: int) -> torch.Tensor:
    """(U,) composite word numbers -> (U, K) branch words (inverse of :func:`composite_ids`)."""
    digits = []
    for _ in range(branches):
        digits.append(ids % branch_width)
        ids = torch.div(ids, branch_width, rounding_mode="floor")
    return torch.stack(digits[::-1], dim=1) if digits else ids[:, None]


class VocabularyStats:
    """Running vocabulary statistics of one DCL layer; memory grows with the words used only.

    Args:
        branches, branch_width: K and M.
        top_n: firings kept per composite word.
    """

    def __init__(self, *, branches: int, branch_width: int, top_n: int = 8) -> None:
        if branch_width**branches >= 2**62:
            raise CollabError(
                f"a vocabulary of {branch_width}^{branches} words does not fit in 64-bit numbers; "
                "probe a DCL layer with fewer branches or filters"
            )
        self.k, self.m = branches, branch_width
        self.pairs = [list(p) for p in itertools.combinations(range(branches), 2)]
        self.counts = torch.zeros(len(self.pairs), self.m, self.m, dtype=torch.int64)
        self.branch_counts = torch.zeros(self.k, self.m, dtype=torch.int64)
        self.ids = torch.zeros(0, dtype=torch.int64)
        self.id_counts = torch.zeros(0, dtype=torch.int64)
        self.heap = WordHeap(top_n)
        self.samples = 0
        self.map_size = [0, 0]

    def add(self, responses, sample_index: torch.Tensor) -> None:
        """Fold one batch: responses (K, B, M, H, W) (or K tensors (B, M, H, W)), sample_index
        (B,) dataset indices."""
        k, (b, m, h, w) = len(responses), responses[0].shape
        if (k, m) != (self.k, self.m):
            raise ValueError(f"expected {self.k} branches of {self.m} filters, got {k} of {m}")
        words, strength = branch_words([r.detach() for r in responses])
        words, strength = words.cpu(), strength.float().cpu()
        flat = words.reshape(k, -1)
        for p, (a, c) in enumerate(self.pairs):
            self.counts[p] += joint_counts(flat[a], flat[c], self.m, self.m)
        for i in range(k):
            self.branch_counts[i] += torch.bincount(flat[i], minlength=self.m)
        ids = composite_ids(words, self.m).reshape(-1)
        merged, inverse = torch.unique(torch.cat([self.ids, ids]), return_inverse=True)
        counts = torch.zeros(len(merged), dtype=torch.int64)
        ones = torch.ones(len(ids), dtype=torch.int64)
        self.id_counts = counts.scatter_add_(0, inverse, torch.cat([self.id_counts, ones]))
        self.ids = merged
        samples = torch.as_tensor(sample_index, dtype=torch.int64).repeat_interleave(h * w)
        self.heap.add(ids, strength.reshape(-1), samples, torch.arange(h * w).repeat(b))
        self.samples += b
        self.map_size = [h, w]

    def ranked_words(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(U,) used composite numbers and (U,) counts, most frequent first (ties: lower id)."""
        order = torch.sort(self.id_counts, descending=True, stable=True).indices
        return self.ids[order], self.id_counts[order]


def dcl_receptive_field(root: nn.Module, path: str) -> ReceptiveField:
    """Receptive field of the DCL layer at ``path`` (relative to the peer network ``root``).

    Walks the main path from ``root`` to the layer: at each level the children registered
    before the next path component (``StagedNet`` registers stages in forward order; residual
    side paths in :data:`SIDE_PATHS` are skipped), then one branch conv of the layer itself.
    Every DCL module on the way counts as one of its branches (the K branches run in parallel).
    """
    chain: list[nn.Module] = []
    module = root
    for part in path.split("."):
        for name, child in module.named_children():
            if name == part:
                break
            if name not in SIDE_PATHS:
                chain.extend(_main_modules(child))
        else:
            raise CollabError(f"{type(root).__name__} has no layer {path!r}")
        module = module._modules[part]
    if not isinstance(module, DCLConv):
        raise CollabError(f"layer {path!r} is a {type(module).__name__}, not a DCL module")
    chain.append(module.branches[0])
    return receptive_field(chain)


def _main_modules(module: nn.Module) -> list[nn.Module]:
    """``module`` for :func:`receptive_field`, with every DCL module replaced by one branch."""
    if isinstance(module, DCLConv):
        return [module.branches[0]]
    if not any(isinstance(m, DCLConv) for m in module.modules()):
        return [module]
    return [
        m
        for name, child in module.named_children()
        if name not in SIDE_PATHS
        for m in _main_modules(child)
    ]


def _peer_root(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    """The deepest StagedNet on ``path`` and the path relative to it."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, -1, -1):
        root = model.get_submodule(".".join(parts[:cut])) if cut else model
        if isinstance(root, StagedNet):
            return root, ".".join(parts[cut:])
    raise CollabError(f"layer {path!r} is not inside a network of the model; pass a DCL layer path")


def dcl_layer_paths(model: nn.Module, *, peer: int | None = 0) -> list[str]:
    """Full module paths of the DCL layers (of peer ``peer``, or of the whole model if None)."""
    prefix = model.peer_prefix(peer) if peer is not None and hasattr(model, "peer_prefix") else ""
    return [
        name
        for name, m in model.named_modules()
        if isinstance(m, DCLConv) and name.startswith(prefix)
    ]


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
        self.field = dcl_receptive_field(*_peer_root(model, layer))
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


def word_patches(vocab: Vocabulary, dataset: Dataset, *, fill: float = 0.0) -> torch.Tensor:
    """Input windows of ``vocab``'s top firings: (T, n, C, S, S), S = the receptive field.

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


def probe_vocabulary(
    model: nn.Module,
    dataset: Dataset,
    *,
    layer: str | None = None,
    peer: int = 0,
    top_n: int = 8,
    num_words: int = 16,
    smoothing: float = 1.0,
    fill: float = 0.0,
    batch_size: int = 256,
    limit: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> Vocabulary:
    """Vocabulary of one DCL layer over ``dataset`` in one pass, patches included.

    Args:
        model: a collaborative model; hooks, mode and device are left unchanged.
        dataset: yields ``(image (C, H, W) in [0, 1], label)``.
        layer: full path of the DCL layer (default: the last DCL layer of peer ``peer``).
        top_n, num_words, smoothing, fill: see :class:`VocabularyConsumer`.
        batch_size, limit, device, progress: see :func:`~analysis.probes.shared_pass.run_pass`.
    """
    if layer is None:
        paths = dcl_layer_paths(model, peer=peer)
        if not paths:
            raise CollabError(
                f"peer {peer} has no DCL layer; train a dcl_* architecture (e.g. dcl_resnet8)"
            )
        layer = paths[-1]
    consumer = VocabularyConsumer(
        model,
        layer,
        top_n=top_n,
        num_words=num_words,
        smoothing=smoothing,
        dataset=dataset,
        fill=fill,
    )
    (result,) = run_pass(
        model,
        dataset,
        [consumer],
        batch_size=batch_size,
        device=device,
        limit=limit,
        progress=progress,
    )
    return result


def max_entropy_bits(vocab: Vocabulary) -> float:
    """The largest entropy the composite words could have: ``log2 min(M ** K, positions)``."""
    return math.log2(max(1, min(vocab.vocabulary_size, vocab.num_positions)))


# --------------------------------------------------------------------------- across peers


@dataclass
class PeerCooccurrence:
    """Co-occurrence of two layers' words (argmax channels) at the same positions.

    Attributes:
        layers: the two module paths [a, b].
        counts: (Ca, Cb) int64 word-pair counts; pmi: (Ca, Cb) float64 bits; smoothing: alpha.
        num_samples: samples seen; map_size: [h, w] of the compared grid;
        num_positions: samples x h x w (= ``counts.sum()``).
        resampled: [a pooled?, b pooled?] whether each layer was pooled to the common grid.
        mutual_information: bits (plug-in); entropy_bits: [H(a), H(b)] of the word marginals.
    """

    layers: list[str]
    counts: torch.Tensor
    pmi: torch.Tensor
    smoothing: float
    num_samples: int
    map_size: list[int]
    num_positions: int
    resampled: list[bool]
    mutual_information: float
    entropy_bits: list[float]


def align_maps(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[bool]]:
    """Bring (B, Ca, Ha, Wa) and (B, Cb, Hb, Wb) to the grid (min H, min W) by average pooling.

    (B, C) inputs count as 1 x 1 maps. Returns both maps and which of them were pooled.
    """
    a, b = (t[..., None, None] if t.dim() == 2 else t for t in (a, b))
    if a.dim() != 4 or b.dim() != 4:
        raise CollabError("peer co-occurrence needs (B, C, H, W) or (B, C) layer outputs")
    size = (min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1]))
    out, pooled = [], []
    for t in (a, b):
        changed = tuple(t.shape[-2:]) != size
        out.append(nn.functional.adaptive_avg_pool2d(t, size) if changed else t)
        pooled.append(changed)
    return out[0], out[1], pooled


class PeerCooccurrenceConsumer:
    """Word co-occurrence of two layers as a :class:`~analysis.probes.shared_pass.Consumer`.

    Args:
        layer_a, layer_b: full module paths (usually one per peer; the same path twice works).
        smoothing: add-alpha smoothing of the PMI.
    """

    def __init__(self, layer_a: str, layer_b: str, *, smoothing: float = 1.0) -> None:
        if smoothing < 0:
            raise CollabError(f"smoothing must be >= 0, got {smoothing}; use e.g. 1.0")
        self.pair, self.smoothing = [layer_a, layer_b], smoothing
        self.layers = list(dict.fromkeys(self.pair))
        self.counts: torch.Tensor | None = None
        self.samples, self.map_size, self.pooled = 0, [0, 0], [False, False]

    def update(self, acts: dict[str, torch.Tensor], batch: Batch) -> None:
        a, b, pooled = align_maps(*(acts[name].detach().float().cpu() for name in self.pair))
        wa, wb = a.argmax(1).reshape(-1), b.argmax(1).reshape(-1)
        table = joint_counts(wa, wb, a.shape[1], b.shape[1])
        self.counts = table if self.counts is None else self.counts + table
        self.samples += a.shape[0]
        self.map_size = list(a.shape[-2:])
        self.pooled = [p or q for p, q in zip(self.pooled, pooled)]

    def result(self) -> PeerCooccurrence:
        if self.counts is None:
            raise CollabError("peer co-occurrence saw no batch; give it a non-empty dataset")
        c = self.counts
        return PeerCooccurrence(
            layers=list(self.pair),
            counts=c,
            pmi=pmi(c, smoothing=self.smoothing),
            smoothing=float(self.smoothing),
            num_samples=self.samples,
            map_size=self.map_size,
            num_positions=int(c.sum()),
            resampled=self.pooled,
            mutual_information=float(mutual_information(c)),
            entropy_bits=[entropy_bits(c.sum(1)), entropy_bits(c.sum(0))],
        )


def peer_cooccurrence(
    model: nn.Module,
    dataset: Dataset,
    *,
    layers: Sequence[str] | None = None,
    peers: Sequence[int] = (0, 1),
    smoothing: float = 1.0,
    batch_size: int = 256,
    limit: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> PeerCooccurrence:
    """Word co-occurrence between a layer of one peer and a layer of another, in one pass.

    Args:
        model: a collaborative model (hooks, mode and device are left unchanged).
        dataset: yields ``(image (C, H, W) in [0, 1], label)``.
        layers: the two full module paths (default: the last probe layer of each of ``peers``).
        peers: the two peers whose last probe layers are compared when ``layers`` is None.
        smoothing: add-alpha smoothing of the PMI.
    """
    if layers is None:
        chosen = [peer_layers(model, p) for p in peers]
        if len(chosen) != 2 or not all(chosen):
            raise CollabError("peer co-occurrence needs two peers with probe layers; pass layers=")
        layers = [chosen[0][-1], chosen[1][-1]]
    if len(layers) != 2:
        raise CollabError(f"peer co-occurrence compares two layers, got {len(layers)}")
    consumer = PeerCooccurrenceConsumer(layers[0], layers[1], smoothing=smoothing)
    (result,) = run_pass(
        model,
        dataset,
        [consumer],
        batch_size=batch_size,
        device=device,
        limit=limit,
        progress=progress,
    )
    return result
