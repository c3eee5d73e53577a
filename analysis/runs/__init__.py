"""The run folder: the only way anything is saved or loaded.

``layout`` names the files and reads/writes the small ones, ``checkpoint`` is the atomic
safetensors I/O, ``manifest`` records provenance, ``run`` loads a run (``load_run``).

Every name loads on first use (see :mod:`analysis.lazy`): listing runs and reading their
manifests needs no torch.
"""

from typing import TYPE_CHECKING

from analysis.lazy import lazy_exports

if TYPE_CHECKING:
    from analysis.runs.checkpoint import (
        atomic_save,
        load_resume,
        load_weights,
        read_tensors,
        save_resume,
        save_weights,
    )
    from analysis.runs.claim import Claim, claim_run_folder, read_manifest
    from analysis.runs.layout import (
        CHECKPOINTS,
        CONFIG,
        MANIFEST,
        METRICS,
        PROBES,
        append_metrics,
        checkpoint_path,
        inside,
        is_run,
        keep_metrics_through,
        list_runs,
        read_metrics,
        write_config,
        write_json,
    )
    from analysis.runs.manifest import PROVENANCE, build_manifest, provenance
    from analysis.runs.run import Run, build_run_model, load_run

__all__ = [
    "PROVENANCE",
    "Claim",
    "claim_run_folder",
    "provenance",
    "read_manifest",
    "CHECKPOINTS",
    "CONFIG",
    "MANIFEST",
    "METRICS",
    "PROBES",
    "Run",
    "append_metrics",
    "atomic_save",
    "build_manifest",
    "build_run_model",
    "checkpoint_path",
    "inside",
    "is_run",
    "keep_metrics_through",
    "list_runs",
    "load_resume",
    "load_run",
    "load_weights",
    "read_metrics",
    "read_tensors",
    "save_resume",
    "save_weights",
    "write_config",
    "write_json",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    globals(),
    {
        "atomic_save": "analysis.runs.checkpoint",
        "load_resume": "analysis.runs.checkpoint",
        "load_weights": "analysis.runs.checkpoint",
        "read_tensors": "analysis.runs.checkpoint",
        "save_resume": "analysis.runs.checkpoint",
        "save_weights": "analysis.runs.checkpoint",
        "Claim": "analysis.runs.claim",
        "claim_run_folder": "analysis.runs.claim",
        "read_manifest": "analysis.runs.claim",
        "CHECKPOINTS": "analysis.runs.layout",
        "CONFIG": "analysis.runs.layout",
        "MANIFEST": "analysis.runs.layout",
        "METRICS": "analysis.runs.layout",
        "PROBES": "analysis.runs.layout",
        "append_metrics": "analysis.runs.layout",
        "checkpoint_path": "analysis.runs.layout",
        "inside": "analysis.runs.layout",
        "is_run": "analysis.runs.layout",
        "keep_metrics_through": "analysis.runs.layout",
        "list_runs": "analysis.runs.layout",
        "read_metrics": "analysis.runs.layout",
        "write_config": "analysis.runs.layout",
        "write_json": "analysis.runs.layout",
        "PROVENANCE": "analysis.runs.manifest",
        "build_manifest": "analysis.runs.manifest",
        "provenance": "analysis.runs.manifest",
        "Run": "analysis.runs.run",
        "build_run_model": "analysis.runs.run",
        "load_run": "analysis.runs.run",
    },
)
