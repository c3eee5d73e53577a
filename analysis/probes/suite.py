"""Every probe of a run, sharing one activation pass and the run-folder cache.

``run_suite(run)`` decides which probes apply to the run, returns cached results at once, and
computes the rest: probes that fold minibatches (diversity, CKA, ...) share ONE pass over the
data; the others (kernel matching, training dynamics, attributions) run on their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from analysis.errors import CollabError
from analysis.probes import cache
from analysis.probes.attribution_summary import AttributionSummary, summarize_attributions
from analysis.probes.cascade import CascadeCurve, cascade_curve
from analysis.probes.cka import CKAConsumer, CKAResult, cka_layers
from analysis.probes.diversity import DiversityConsumer, DiversityReport
from analysis.probes.hooks import peer_layers
from analysis.probes.kernels import KernelSimilarity, kernel_similarity
from analysis.probes.localization import LocalizationScore, score_localization
from analysis.probes.samples import gather_samples
from analysis.probes.shared_pass import run_pass
from analysis.probes.through_training import TrainingDynamics, training_dynamics
from analysis.probes.vocabulary import (
    PeerCooccurrence,
    PeerCooccurrenceConsumer,
    Vocabulary,
    VocabularyConsumer,
    dcl_layer_paths,
)


@dataclass(frozen=True)
class Probe:
    """How the suite runs one probe.

    Attributes:
        name: the probe's name on the command line and in the cache.
        result: its result dataclass.
        skip: ``skip(run)`` -> a reason it does not apply to ``run``, or None.
        consumer: builds its shared-pass consumer, or None when it runs on its own...
        compute: ...via ``compute(run, options)``.
    """

    name: str
    about: str
    result: type
    skip: Callable[[Any], str | None] = lambda run: None
    consumer: Callable[[Any, dict], Any] | None = None
    compute: Callable[[Any, dict], Any] | None = None
    options: tuple[str, ...] = ("split", "limit")  # the options that key its cache


def _cka_consumer(run, options: dict):
    return CKAConsumer(*cka_layers(run.model))


def _kernels_skip(run) -> str | None:
    peers = getattr(run.model, "peers", None)
    if peers is None or len(peers) < 2:
        return "needs two or more separate peer networks"
    if len({type(p).__name__ + str([tuple(q.shape) for q in p.parameters()]) for p in peers}) > 1:
        return "the peers have different architectures"
    return None


def _dynamics_skip(run) -> str | None:
    if sum(name.startswith("epoch_") for name in run.checkpoints) < 2:
        return "needs two or more saved epoch checkpoints"
    return None


def _vocabulary_skip(run) -> str | None:
    return None if dcl_layer_paths(run.model) else "needs a model with DCL layers"


def _vocabulary_consumer(run, options: dict):
    path = dcl_layer_paths(run.model)[-1]
    return VocabularyConsumer(run.model, path, dataset=run.dataset(options["split"]))


def _peer_words_skip(run) -> str | None:
    return None if run.model.num_peers >= 2 else "needs two or more peers"


def _peer_words_consumer(run, options: dict):
    # Each peer's last probe layer: the most class-specific words of the two networks.
    return PeerCooccurrenceConsumer(peer_layers(run.model, 0)[-1], peer_layers(run.model, 1)[-1])


def _boxes_skip(run) -> str | None:
    return (
        None if hasattr(run.dataset("test"), "box") else "needs a dataset with true boxes (shapes)"
    )


def _attributions(run, options: dict) -> AttributionSummary:
    data = run.dataset(options["split"])
    images, _ = gather_samples(data, torch.arange(min(options["images"], len(data))))
    return summarize_attributions(run.model, images, peer_names=run.peer_names)


PROBES: dict[str, Probe] = {
    p.name: p
    for p in (
        Probe(
            "diversity",
            "agreement and diversity of the peers' predictions",
            DiversityReport,
            consumer=lambda run, o: DiversityConsumer(peer_names=run.peer_names),
        ),
        Probe(
            "cka",
            "linear CKA between every pair of layers of every pair of peers",
            CKAResult,
            consumer=_cka_consumer,
        ),
        Probe(
            "kernels",
            "matched filter similarity and filter redundancy",
            KernelSimilarity,
            skip=_kernels_skip,
            compute=lambda run, o: kernel_similarity(run.model),
        ),
        Probe(
            "dynamics",
            "accuracy and diversity through training",
            TrainingDynamics,
            skip=_dynamics_skip,
            compute=lambda run, o: training_dynamics(run, split=o["split"], limit=o["limit"]),
        ),
        Probe(
            "attributions",
            "captum attributions per peer with deletion faithfulness",
            AttributionSummary,
            compute=_attributions,
            options=("split", "images"),
        ),
        Probe(
            "vocabulary",
            "DCL words per branch, their co-occurrence and the vocabulary used",
            Vocabulary,
            skip=_vocabulary_skip,
            consumer=_vocabulary_consumer,
        ),
        Probe(
            "peer_words",
            "co-occurrence of two peers' words (argmax channels) at their last layer",
            PeerCooccurrence,
            skip=_peer_words_skip,
            consumer=_peer_words_consumer,
        ),
        Probe(
            "localization",
            "class-map boxes scored against the true boxes, vs random boxes",
            LocalizationScore,
            skip=_boxes_skip,
            compute=lambda run, o: score_localization(
                run.model.peer(0), run.dataset(o["split"]), limit=o["limit"]
            ),
        ),
        Probe(
            "cascade",
            "early-exit cascade over the image and its patches: accuracy vs cost",
            CascadeCurve,
            skip=_boxes_skip,
            compute=lambda run, o: cascade_curve(
                run.model.peer(0), run.dataset(o["split"]), limit=o["limit"]
            ),
        ),
    )
}


def run_suite(
    run,
    *,
    probes: Sequence[str] | None = None,
    split: str = "test",
    limit: int | None = None,
    batch_size: int = 100,
    images: int = 4,
    progress: bool = False,
    refresh: bool = False,
) -> dict[str, Any]:
    """Results of ``probes`` (default: all that apply) on ``run``; name -> result.

    Probes that do not apply are left out when chosen by default, and are an error when asked for.
    """
    unknown = sorted(set(probes or ()) - set(PROBES))
    if unknown:
        raise CollabError(f"unknown probe {unknown[0]!r}; choose from: {', '.join(PROBES)}")
    chosen = [PROBES[n] for n in (probes or PROBES)]
    for probe in chosen:
        reason = probe.skip(run)
        if reason and probes:
            raise CollabError(f"probe {probe.name!r} does not apply to {run.name}: it {reason}")
    chosen = [p for p in chosen if not p.skip(run)]
    options = {"split": split, "limit": limit, "images": images}

    def key(probe: Probe) -> dict:
        return {name: options[name] for name in probe.options}

    results = {}
    for probe in chosen:
        hit = None if refresh else cache.lookup(run, probe.name, key(probe), probe.result)
        if hit is not None:
            results[probe.name] = hit
    missing = [p for p in chosen if p.name not in results and p.consumer is not None]
    if missing:
        outs = run_pass(
            run.model,
            run.dataset(split),
            [p.consumer(run, options) for p in missing],
            batch_size=batch_size,
            limit=limit,
            progress=progress,
        )
        for probe, result in zip(missing, outs):
            results[probe.name] = result
            cache.store(run, probe.name, key(probe), result)
    for probe in chosen:
        if probe.name not in results:
            results[probe.name] = probe.compute(run, options)
            if probe.name != "dynamics":  # dynamics caches per checkpoint itself
                cache.store(run, probe.name, key(probe), results[probe.name])
    return {p.name: results[p.name] for p in chosen}
