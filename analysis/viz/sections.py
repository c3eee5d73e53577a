"""Report sections: the figures and key numbers of each probe result of :mod:`analysis.suite`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from analysis.probes.diversity import MEASURES
from analysis.viz.attributions import attribution_grid, deletion_figure
from analysis.viz.curves import training_curves
from analysis.viz.diversity import (
    class_agreement_figure,
    diversity_heatmap,
    dynamics_accuracy_figure,
    dynamics_figure,
)
from analysis.viz.report import Section
from analysis.viz.similarity import (
    cka_heatmap,
    filter_redundancy_lines,
    kernel_matching_lines,
    peer_cka_heatmap,
)


def pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def training_section(run: Any) -> Section:
    figures = [
        training_curves(run.metrics, peer_names=run.peer_names, metric=m) for m in ("acc", "loss")
    ]
    counts = dict(zip(run.peer_names, run.manifest.get("param_counts", [])))
    numbers = {"method": run.manifest["method"], "dataset": run.manifest["dataset"]}
    numbers.update({f"parameters of {name}": f"{n:,}" for name, n in counts.items()})
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


SECTIONS: dict[str, Callable[[Any, Any], Section]] = {
    "diversity": _diversity,
    "cka": _cka,
    "kernels": _kernels,
    "dynamics": _dynamics,
    "attributions": _attributions,
}


def report_sections(run: Any, results: dict[str, Any]) -> list[Section]:
    """The training section, then one section per probe result, in suite order."""
    return [training_section(run)] + [
        SECTIONS[name](run, result) for name, result in results.items()
    ]
