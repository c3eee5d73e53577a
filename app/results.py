"""Probe results for the pages, cached with ``st.cache_data`` and keyed on the run.

Each function here is declared once with :func:`cached_result`: it computes a result from the
run, and the page gets that result, cached, or ``None`` after one error line (see
:func:`app.common.guarded`). The run object is not hashed: :func:`app.common.run_key` (the run
folder plus its manifest time) stands for it. Slow results (CKA, the per-epoch diversity
reports, every registered probe) also go through the run-folder cache with
:func:`analysis.probes.compute`, under the same keys as ``collab analyze``, so that reopening the
app, or opening an analysed run, is instant.
The vocabulary, co-occurrence, cascade and localization-score probes run on the first
``limit`` test images (the pages' "Test images" slider) and are cached per limit.

One lock serialises the probes: every session shares the model (``st.cache_resource``), and
probes register hooks on it and switch its eval mode, which two threads must not interleave.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import threading
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st
import torch
from torch.utils.data import TensorDataset

import analysis
from analysis import probes, viz
from analysis.viz.tables import disagreement_columns, word_patch_columns
from app.common import guarded, run_key

_LOCK = threading.RLock()


def cached_result(
    what: str,
    *,
    spinner: str | bool = False,
    locked: bool = False,
    max_entries: int | None = None,
    unhashed: tuple[str, ...] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make ``compute(run, ...)`` a page's result function: cached, guarded, same signature.

    The returned function caches with ``st.cache_data`` on ``run_key(run)`` and the other
    arguments, and returns ``None`` after one error line on failure. Its ``unguarded``
    attribute is the cached call that raises instead, for results built from other results.

    Args:
        what: what failed, for the error line: a ``str.format`` template over the arguments by
            name, e.g. ``"the {split} split of {run.name}"``.
        spinner: text shown while computing (``False``: none).
        locked: compute under the module lock (anything that runs the shared model).
        max_entries: cache size (``None``: unbounded).
        unhashed: arguments left out of the cache key (an image that its key argument names).
    """

    def decorate(compute: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(compute)

        def cached(_run: analysis.Run, key: str, **arguments: Any) -> Any:
            arguments = {name.removeprefix("_"): value for name, value in arguments.items()}
            if not locked:
                return compute(_run, **arguments)
            with _LOCK:
                return compute(_run, **arguments)

        # st.cache_data tells functions apart by module, name and source: give each its
        # compute's, so that results never share a cache and an edit starts a new one.
        version = hashlib.sha1(inspect.getsource(compute).encode()).hexdigest()[:12]
        cached.__module__, cached.__name__ = compute.__module__, compute.__name__
        cached.__qualname__ = f"{compute.__qualname__}[{version}]"
        cached = st.cache_data(show_spinner=spinner, max_entries=max_entries)(cached)

        def bind(args: tuple, kwargs: dict) -> dict[str, Any]:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return dict(bound.arguments)

        @functools.wraps(compute)
        def unguarded(*args: Any, **kwargs: Any) -> Any:
            arguments = bind(args, kwargs)
            run = arguments.pop(next(iter(signature.parameters)))
            keyed = {f"_{n}" if n in unhashed else n: value for n, value in arguments.items()}
            return cached(run, run_key(run), **keyed)

        @functools.wraps(compute)
        def result(*args: Any, **kwargs: Any) -> Any:
            message = what.format(**bind(args, kwargs))
            return guarded(lambda: unguarded(*args, **kwargs), what=message)

        result.unguarded = unguarded
        return result

    return decorate


@cached_result(
    "the {split} split of {run.name}",
    spinner="Collecting the peers' predictions…",
    locked=True,
    max_entries=16,
)
def agreement(run: analysis.Run, split: str):
    """``(Predictions, AgreementReport)`` of ``run`` on ``split``."""
    preds = probes.collect_predictions(run.model, run.dataset(split))
    return preds, probes.agreement_report(preds, peer_names=run.peer_names)


@cached_result("the disagreement gallery", max_entries=32)
def disagreement_gallery(run: analysis.Run, split: str, shown: int):
    """``(figure, table)`` of the first ``shown`` samples the peers disagree on (the figure is
    cached too: its many subplots take a while to build)."""
    preds, report = agreement.unguarded(run, split)
    picked = report.disagreements[:shown]
    images, labels = probes.gather_samples(run.dataset(split), picked)
    peer_preds = preds.peer_predictions()[:, picked]
    names, classes = report.peer_names, run.data.class_names
    captions = viz.prediction_captions(peer_preds, labels, peer_names=names, class_names=classes)
    table = pd.DataFrame(disagreement_columns(picked, labels, peer_preds, names))
    return viz.image_gallery(images, captions, cols=4), table


@cached_result("diversity of {run.name}", spinner="Measuring diversity…", max_entries=16)
def diversity(run: analysis.Run, split: str) -> probes.DiversityReport:
    """Every pairwise diversity measure of ``run`` on ``split``."""
    return probes.compute(run, "diversity", split=split)


@cached_result(
    "the checkpoints of {run.name}",
    spinner="Following the peers through training (one pass per saved epoch)…",
    locked=True,
)
def dynamics(run: analysis.Run, split: str) -> probes.TrainingDynamics:
    """Accuracy and diversity at each saved epoch checkpoint of ``run``."""
    return probes.compute(run, "dynamics", split=split)


@cached_result(
    "CKA of {run.name}",
    spinner="Computing CKA between every pair of layers (one pass)…",
    locked=True,
)
def cka(run: analysis.Run, split: str = "test") -> probes.CKAResult:
    """Minibatch linear CKA between all probed layers of all peers of ``run``."""
    return probes.compute(run, "cka", split=split)


@cached_result("the filters of {run.name}", spinner="Matching the peers' filters…", locked=True)
def kernels(run: analysis.Run, *, align_inputs: bool = False) -> probes.KernelSimilarity:
    """Matched filter similarity between peers and filter redundancy within each."""
    return probes.compute(run, "kernels", align_inputs=align_inputs)


@cached_result("the predictions", locked=True, max_entries=256, unhashed=("image",))
def predict(run: analysis.Run, image_key: str, image: torch.Tensor):
    """``(peer_probs (K, C), ensemble_probs (C,))`` of one (C, H, W) image."""
    preds = probes.collect_predictions(
        run.model, TensorDataset(image[None], torch.zeros(1, dtype=torch.long))
    )
    return preds.peer_logits[:, 0].softmax(-1), preds.ensemble_logits[0].softmax(-1)


@cached_result("{method} attributions", locked=True, max_entries=256, unhashed=("image",))
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
    images = image[None]
    maps = probes.attribute_all_peers(
        run.model, images, method=method, target=target, absolute=absolute
    )
    curves, auc = probes.deletion_by_peer(run.model, images, maps, target=target)
    return maps, curves, auc


@cached_result(
    "the vocabulary of {layer}",
    spinner="Counting the words of the DCL branches…",
    locked=True,
    max_entries=16,
)
def vocabulary(run: analysis.Run, layer: str, *, limit: int) -> probes.Vocabulary:
    """Vocabulary of the DCL layer ``layer`` over the first ``limit`` test images (patches
    included)."""
    return probes.compute(run, "vocabulary", layer=layer, limit=limit)


@cached_result("the word gallery", spinner="Drawing the words' patches…", max_entries=16)
def word_gallery(run: analysis.Run, layer: str, *, limit: int, words: int):
    """``(figure, table)``: patches of the ``words`` most frequent composite words (cached: the
    gallery's many subplots take a while to build); one table row per patch."""
    vocab = vocabulary.unguarded(run, layer, limit=limit)
    table = pd.DataFrame(word_patch_columns(vocab, words))
    return viz.word_gallery(vocab, words=words), table


@cached_result(
    "the co-occurrence of {layers[0]} and {layers[1]}",
    spinner="Counting the peers' words at the same positions…",
    locked=True,
    max_entries=32,
)
def cooccurrence(
    run: analysis.Run, layers: tuple[str, str], *, limit: int
) -> probes.PeerCooccurrence:
    """Word (argmax channel) co-occurrence of two layers over the first ``limit`` test images."""
    return probes.compute(run, "peer_words", layers=list(layers), limit=limit)


@cached_result("the localization", locked=True, max_entries=256, unhashed=("image",))
def localize(
    run: analysis.Run, image_key: str, image: torch.Tensor, *, peer: int
) -> probes.Localization:
    """Class map and ranked boxes of peer ``peer`` on one (C, H, W) image (batch of one)."""
    return probes.localize(run.model.peer(peer), image[None])


@cached_result(
    "the cascade",
    spinner="Running the early-exit cascade on the test images…",
    locked=True,
    max_entries=16,
)
def cascade(run: analysis.Run, *, peer: int, limit: int) -> probes.CascadeCurve:
    """Accuracy against cost of peer ``peer``'s cascade over the first ``limit`` test images."""
    return probes.compute(run, "cascade", peer=peer, limit=limit)


@cached_result(
    "the localization scores",
    spinner="Scoring the boxes against the true boxes…",
    locked=True,
    max_entries=16,
)
def localization_score(run: analysis.Run, *, peer: int, limit: int) -> probes.LocalizationScore:
    """Pointing game and IoU of peer ``peer``'s boxes (and random boxes) on ``limit`` test images."""
    return probes.compute(run, "localization", peer=peer, limit=limit)
