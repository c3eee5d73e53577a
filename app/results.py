"""Probe results for the pages, cached with ``st.cache_data`` and keyed on the run.

Each public function returns the probe's own result, or ``None`` after one error line (see
:func:`app.common.guarded`); the private ``_name`` functions hold the cache. Their ``_run``
argument is not hashed by Streamlit: the ``key`` argument (:func:`app.common.run_key`, the run
folder plus its manifest time) stands for it. Slow results (CKA, the per-epoch diversity
reports) are also cached in the run folder, under the same keys as ``collab analyze``
(:mod:`analysis.probes.suite`), so that reopening the app, or opening an analysed run, is instant.
The vocabulary, co-occurrence, cascade and localization-score probes run on the first
``limit`` test images (the pages' "Test images" slider) and are cached per limit.

One lock serialises the probes: every session shares the model (``st.cache_resource``), and
probes register hooks on it and switch its eval mode, which two threads must not interleave.
"""

from __future__ import annotations

import threading

import pandas as pd
import streamlit as st
import torch
from torch.utils.data import TensorDataset

import analysis
from analysis import probes, viz
from analysis.probes import MEASURES
from analysis.probes.diversity import mean_off_diagonal
from analysis.probes.suite import run_suite
from app.common import guarded, run_key

_LOCK = threading.RLock()


@st.cache_data(show_spinner="Collecting the peers' predictions…", max_entries=16)
def _agreement(_run: analysis.Run, key: str, split: str):
    with _LOCK:
        preds = probes.collect_predictions(_run.model, _run.dataset(split))
    return preds, probes.agreement_report(preds, peer_names=_run.peer_names)


def agreement(run: analysis.Run, split: str):
    """``(Predictions, AgreementReport)`` of ``run`` on ``split``."""
    return guarded(
        lambda: _agreement(run, run_key(run), split), what=f"the {split} split of {run.name}"
    )


@st.cache_data(show_spinner=False, max_entries=32)
def _gallery(_run: analysis.Run, key: str, split: str, shown: int):
    preds, report = _agreement(_run, key, split)
    picked = report.disagreements[:shown]
    images, labels = probes.gather_samples(_run.dataset(split), picked)
    peer_preds = preds.peer_predictions()[:, picked]
    names, classes = report.peer_names, _run.data.class_names
    captions = viz.prediction_captions(peer_preds, labels, peer_names=names, class_names=classes)
    table = pd.DataFrame(
        {"index": picked.tolist(), "label": labels.tolist()} | dict(zip(names, peer_preds.tolist()))
    )
    return viz.image_gallery(images, captions, cols=4), table


def disagreement_gallery(run: analysis.Run, split: str, shown: int):
    """``(figure, table)`` of the first ``shown`` samples the peers disagree on (the figure is
    cached too: its many subplots take a while to build)."""
    return guarded(
        lambda: _gallery(run, run_key(run), split, shown), what="the disagreement gallery"
    )


@st.cache_data(show_spinner="Measuring diversity…", max_entries=16)
def _diversity(_run: analysis.Run, key: str, split: str) -> probes.DiversityReport:
    preds, _ = _agreement(_run, key, split)
    return probes.diversity_report(preds, peer_names=_run.peer_names)


def diversity(run: analysis.Run, split: str) -> probes.DiversityReport | None:
    """Every pairwise diversity measure of ``run`` on ``split``."""
    return guarded(lambda: _diversity(run, run_key(run), split), what=f"diversity of {run.name}")


@st.cache_data(show_spinner="Following the peers through training (one pass per saved epoch)…")
def _dynamics(_run: analysis.Run, key: str, split: str) -> probes.TrainingDynamics:
    with _LOCK:
        return probes.training_dynamics(_run, split=split)


def dynamics(run: analysis.Run, split: str) -> probes.TrainingDynamics | None:
    """Accuracy and diversity at each saved epoch checkpoint of ``run``."""
    return guarded(
        lambda: _dynamics(run, run_key(run), split), what=f"the checkpoints of {run.name}"
    )


@st.cache_data(show_spinner="Computing CKA between every pair of layers (one pass)…")
def _cka(_run: analysis.Run, key: str, split: str) -> probes.CKAResult:
    with _LOCK:  # the suite shares its run-folder cache with `collab analyze`
        return run_suite(_run, probes=["cka"], split=split)["cka"]


def cka(run: analysis.Run, split: str = "test") -> probes.CKAResult | None:
    """Minibatch linear CKA between all probed layers of all peers of ``run``."""
    return guarded(lambda: _cka(run, run_key(run), split), what=f"CKA of {run.name}")


@st.cache_data(show_spinner="Matching the peers' filters…")
def _kernels(_run: analysis.Run, key: str, align_inputs: bool) -> probes.KernelSimilarity:
    return probes.kernel_similarity(_run.model, align_inputs=align_inputs)


def kernels(run: analysis.Run, *, align_inputs: bool = False) -> probes.KernelSimilarity | None:
    """Matched filter similarity between peers and filter redundancy within each."""
    return guarded(
        lambda: _kernels(run, run_key(run), align_inputs), what=f"the filters of {run.name}"
    )


@st.cache_data(show_spinner=False, max_entries=256)
def _predict(_run: analysis.Run, key: str, image_key: str, _image: torch.Tensor):
    with _LOCK:
        preds = probes.collect_predictions(
            _run.model, TensorDataset(_image[None], torch.zeros(1, dtype=torch.long))
        )
    return preds.peer_logits[:, 0].softmax(-1), preds.ensemble_logits[0].softmax(-1)


def predict(run: analysis.Run, image_key: str, image: torch.Tensor):
    """``(peer_probs (K, C), ensemble_probs (C,))`` of one (C, H, W) image."""
    return guarded(lambda: _predict(run, run_key(run), image_key, image), what="the predictions")


@st.cache_data(show_spinner=False, max_entries=256)
def _explain(
    _run, key: str, image_key: str, _image: torch.Tensor, method: str, target, absolute: bool
):
    with _LOCK:
        images = _image[None]
        maps = probes.attribute_all_peers(
            _run.model, images, method=method, target=target, absolute=absolute
        )
        curves, auc = probes.deletion_by_peer(_run.model, images, maps, target=target)
    return maps, curves, auc


def explain(
    run: analysis.Run,
    image_key: str,
    image: torch.Tensor,
    method: str,
    *,
    target: int | None,
    absolute: bool,
):
    """``(maps (K, 1, H, W), deletion curves (K, 1, S + 1), deletion AUC (K, 1))`` of one image.

    ``target`` None lets each peer explain its own top-1 class; an int explains that class.
    """
    return guarded(
        lambda: _explain(run, run_key(run), image_key, image, method, target, absolute),
        what=f"{method} attributions",
    )


def summary(div: probes.DiversityReport, cka: probes.CKAResult | None) -> dict[str, float]:
    """One run's headline numbers, by row name, for a comparison table (NaN when missing)."""
    rows = {f"accuracy, peer {k}": acc for k, acc in enumerate(div.peer_acc)}
    rows |= {
        "accuracy, ensemble": div.ensemble_acc,
        "accuracy, oracle": div.oracle_acc,
        "ensemble gain": div.ensemble_gain,
    }
    rows |= {f"mean {MEASURES[m].label}": div.mean(m) for m in MEASURES}
    last = mean_off_diagonal(cka.peer_matrix(-1)) if cka is not None else float("nan")
    rows["mean CKA between peers, last layer"] = last
    return rows


@st.cache_data(show_spinner="Counting the words of the DCL branches…", max_entries=16)
def _vocabulary(_run: analysis.Run, key: str, layer: str, limit: int) -> probes.Vocabulary:
    with _LOCK:
        return probes.probe_vocabulary(_run.model, _run.dataset("test"), layer=layer, limit=limit)


def vocabulary(run: analysis.Run, layer: str, *, limit: int) -> probes.Vocabulary | None:
    """Vocabulary of the DCL layer ``layer`` over the first ``limit`` test images (patches
    included)."""
    return guarded(
        lambda: _vocabulary(run, run_key(run), layer, limit), what=f"the vocabulary of {layer}"
    )


@st.cache_data(show_spinner="Drawing the words' patches…", max_entries=16)
def _word_gallery(_run: analysis.Run, key: str, layer: str, limit: int, words: int):
    vocab = _vocabulary(_run, key, layer, limit)
    n = vocab.top_scores.shape[1]
    word = torch.arange(words).repeat_interleave(n)
    positions, boxes = vocab.top_positions[:words].reshape(-1, 2), vocab.top_boxes[:words]
    table = pd.DataFrame(
        {
            "word": [vocab.word_label(int(t)) for t in word],
            "count": vocab.word_counts[word].numpy(),
            "rank": torch.arange(1, n + 1).repeat(words).numpy(),
            "strength": vocab.top_scores[:words].reshape(-1).numpy(),
            "sample": vocab.top_samples[:words].reshape(-1).numpy(),
            "row": positions[:, 0].numpy(),
            "col": positions[:, 1].numpy(),
        }
        | {
            name: boxes[..., i].reshape(-1).numpy()
            for i, name in enumerate(("x0", "y0", "x1", "y1"))
        }
    )
    return viz.word_gallery(vocab, words=words), table


def word_gallery(run: analysis.Run, layer: str, *, limit: int, words: int):
    """``(figure, table)``: patches of the ``words`` most frequent composite words (cached: the
    gallery's many subplots take a while to build); one table row per patch."""
    return guarded(
        lambda: _word_gallery(run, run_key(run), layer, limit, words), what="the word gallery"
    )


@st.cache_data(show_spinner="Counting the peers' words at the same positions…", max_entries=32)
def _cooccurrence(_run: analysis.Run, key: str, layers: tuple[str, str], limit: int):
    with _LOCK:
        return probes.peer_cooccurrence(
            _run.model, _run.dataset("test"), layers=list(layers), limit=limit
        )


def cooccurrence(
    run: analysis.Run, layers: tuple[str, str], *, limit: int
) -> probes.PeerCooccurrence | None:
    """Word (argmax channel) co-occurrence of two layers over the first ``limit`` test images."""
    return guarded(
        lambda: _cooccurrence(run, run_key(run), tuple(layers), limit),
        what=f"the co-occurrence of {layers[0]} and {layers[1]}",
    )


@st.cache_data(show_spinner=False, max_entries=256)
def _localize(_run: analysis.Run, key: str, image_key: str, _image: torch.Tensor, peer: int):
    with _LOCK:
        return probes.localize(_run.model.peer(peer), _image[None])


def localize(
    run: analysis.Run, image_key: str, image: torch.Tensor, *, peer: int
) -> probes.Localization | None:
    """Class map and ranked boxes of peer ``peer`` on one (C, H, W) image (batch of one)."""
    return guarded(
        lambda: _localize(run, run_key(run), image_key, image, peer), what="the localization"
    )


@st.cache_data(show_spinner="Running the early-exit cascade on the test images…", max_entries=16)
def _cascade(_run: analysis.Run, key: str, peer: int, limit: int) -> probes.CascadeCurve:
    with _LOCK:
        return probes.cascade_curve(_run.model.peer(peer), _run.dataset("test"), limit=limit)


def cascade(run: analysis.Run, *, peer: int, limit: int) -> probes.CascadeCurve | None:
    """Accuracy against cost of peer ``peer``'s cascade over the first ``limit`` test images."""
    return guarded(lambda: _cascade(run, run_key(run), peer, limit), what="the cascade")


@st.cache_data(show_spinner="Scoring the boxes against the true boxes…", max_entries=16)
def _localization_score(_run: analysis.Run, key: str, peer: int, limit: int):
    with _LOCK:
        return probes.score_localization(_run.model.peer(peer), _run.dataset("test"), limit=limit)


def localization_score(
    run: analysis.Run, *, peer: int, limit: int
) -> probes.LocalizationScore | None:
    """Pointing game and IoU of peer ``peer``'s boxes (and random boxes) on ``limit`` test images."""
    return guarded(
        lambda: _localization_score(run, run_key(run), peer, limit),
        what="the localization scores",
    )
