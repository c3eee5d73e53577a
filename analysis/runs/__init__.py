"""The run folder: the only way anything is saved or loaded.

``layout`` names the files and reads/writes the small ones, ``checkpoint`` is the atomic
safetensors I/O, ``manifest`` records provenance, ``run`` loads a run (``load_run``).
"""

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
