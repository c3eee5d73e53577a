"""Report sections: the figures and key numbers of each probe result of :mod:`analysis.probes.suite`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from analysis.probes.diversity_measures import MEASURES
from analysis.viz.attributions import attribution_grid, deletion_figure
from analysis.viz.curves import training_curves
from analysis.viz.dissection import dissection_section
from analysis.viz.diversity import (
    class_agreement_figure,
    diversity_heatmap,
    dynamics_accuracy_figure,
    dynamics_figure,
)
from analysis.viz.localization import cascade_figure, localization_scores_figure
from analysis.viz.report import Section
from analysis.viz.similarity import (
    cka_heatmap,
    filter_redundancy_lines,
    kernel_matching_lines,
    peer_cka_heatmap,
)
from analysis.viz.vocabulary import cooccurrence_heatmap, vocabulary_usage, word_gallery


def pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def training_section(run: Any) -> Section:
    counts = dict(zip(run.peer_names, run.manifest.get("param_counts", [])))
    numbers = {"method": run.manifest["method"], "dataset": run.manifest["dataset"]}
    numbers.update({f"parameters of {name}": f"{n:,}" for name, n in counts.items()})
    if not run.metrics:  # e.g. a run made by `collab import` from existing checkpoints
        source = run.manifest.get("provenance", {}).get("source")
        how = f"imported (--source {source})" if source else "not trained here"
        return Section("Training", f"No training history: this run was {how}.", numbers)
    figures = [
        training_curves(run.metrics, peer_names=run.peer_names, metric=m) for m in ("acc", "loss")
    ]
    return Section(
        "Training", "Per-peer and ensemble accuracy and loss per epoch.", numbers, figures
    )


def _diversity(run: Any, report) -> Section:
    numbers = {
        "samples": str(report.num_samples),
        "ensemble accuracy": pct(report.ensemble_acc),
        "oracle accuracy": pct(report.oracle_acc),
        "ensemble gain": f"{100 * report.ensemble_gain:+.2f} points",
    }
    numbers.update(
        {f"{name} accuracy": pct(acc) for name, acc in zip(report.peer_names, report.peer_acc)}
    )
    numbers.update({f"mean {MEASURES[m].label}": f"{report.mean(m):.4f}" for m in report.matrices})
    figures = [diversity_heatmap(report, m) for m in ("agreement", "kappa", "js_divergence")]
    figures.append(class_agreement_figure(report, class_names=run.manifest["data"]["class_names"]))
    return Section(
        "Agreement and diversity",
        "Pairwise measures over the peers' top-1 predictions.",
        numbers,
        figures,
    )


def _cka(run: Any, result) -> Section:
    figures = [peer_cka_heatmap(result, depth=-1, peer_names=run.peer_names)]
    if result.num_peers >= 2:
        figures.insert(0, cka_heatmap(result, peers=(0, 1), peer_names=run.peer_names))
    text = f"Minibatch linear CKA (unbiased HSIC) over {result.num_samples} samples, batch {result.batch_size}."
    return Section("Representation similarity", text, {}, figures)


def _kernels(run: Any, result) -> Section:
    text = "Filter cosine similarity after optimal one-to-one matching, and each layer's filter redundancy."
    return Section(
        "Kernel similarity",
        text,
        {},
        [kernel_matching_lines(result), filter_redundancy_lines(result)],
    )


def _dynamics(run: Any, result) -> Section:
    text = f"Measured at the saved checkpoints of epochs {', '.join(map(str, result.epochs))}."
    return Section(
        "Through training", text, {}, [dynamics_accuracy_figure(result), dynamics_figure(result)]
    )


def _attributions(run: Any, result) -> Section:
    numbers, figures = {}, []
    for method, maps in result.maps.items():
        figures.append(attribution_grid(result.images, maps, peer_names=result.peer_names))
        figures[-1].update_layout(title=method)
        figures.append(
            deletion_figure(result.curves[method], result.auc[method], peer_names=result.peer_names)
        )
        numbers.update(
            {
                f"{method}: deletion AUC of {n}": f"{float(a.mean()):.4f}"
                for n, a in zip(result.peer_names, result.auc[method])
            }
        )
    text = "Each peer explains its own top-1 class; lower deletion AUC = more faithful map."
    return Section("Attributions", text, numbers, figures)


def _vocabulary(run: Any, vocab) -> Section:
    numbers = {
        "layer": vocab.layer,
        "composite words used": f"{vocab.used_vocabulary:,} of {vocab.vocabulary_size:,}",
        "entropy of the composite words": f"{vocab.entropy_bits:.2f} bits",
    }
    numbers.update(
        {
            f"mutual information, branches {a}-{b}": f"{float(mi):.3f} bits"
            for (a, b), mi in zip(vocab.pairs, vocab.mutual_information)
        }
    )
    figures = [
        cooccurrence_heatmap(vocab, kind="counts"),
        cooccurrence_heatmap(vocab, kind="pmi"),
        vocabulary_usage([vocab]),
        word_gallery(vocab),
    ]
    text = "The word of a branch at a position is its most active filter; composite words combine the branches."
    return Section("DCL vocabulary", text, numbers, figures)


def _peer_words(run: Any, result) -> Section:
    numbers = {
        "layers": " vs ".join(result.layers),
        "mutual information": f"{result.mutual_information:.3f} bits",
        "positions": f"{result.num_positions:,}",
    }
    return Section(
        "Peer word co-occurrence",
        "Argmax channel of two peers at the same positions.",
        numbers,
        [cooccurrence_heatmap(result, kind="counts"), cooccurrence_heatmap(result, kind="pmi")],
    )


def _localization(run: Any, score) -> Section:
    numbers = {
        "images": str(score.num_samples),
        "accuracy": pct(score.accuracy),
        "pointing game": f"{pct(score.pointing)} (random boxes {pct(score.random_pointing)})",
        "top-1 IoU >= 0.5": f"{pct(score.iou50)} (random boxes {pct(score.random_iou50)})",
        "mean best IoU": f"{score.mean_best_iou:.3f} (random boxes {score.random_mean_best_iou:.3f})",
    }
    text = "AnchorNet procedure: class map of the predicted class, receptive-field boxes, greedy IoU suppression."
    return Section("Patch localization", text, numbers, [localization_scores_figure(score)])


def _cascade(run: Any, curve) -> Section:
    numbers = {
        "full model accuracy": pct(curve.full_accuracy),
        "full model cost": f"{curve.full_cost:,.0f} FLOPs",
    }
    text = "The resized image first, then patch logits added one at a time until the confidence passes a threshold."
    return Section("Early-exit cascade", text, numbers, [cascade_figure(curve)])


SECTIONS: dict[str, Callable[[Any, Any], Section]] = {
    "vocabulary": _vocabulary,
    "peer_words": _peer_words,
    "localization": _localization,
    "cascade": _cascade,
    "diversity": _diversity,
    "cka": _cka,
    "kernels": _kernels,
    "dissection": dissection_section,
    "dynamics": _dynamics,
    "attributions": _attributions,
}


def report_sections(run: Any, results: dict[str, Any]) -> list[Section]:
    """The training section, then one section per probe result, in suite order."""
    return [training_section(run)] + [
        SECTIONS[name](run, result) for name, result in results.items()
    ]
