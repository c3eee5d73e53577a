"""Write a finished run folder from a model in memory (imported or reconstructed networks)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from analysis.runs.checkpoint import save_weights
from analysis.runs.layout import (
    CHECKPOINTS,
    CONFIG,
    MANIFEST,
    METRICS,
    checkpoint_path,
    write_config,
    write_json,
)
from analysis.runs.manifest import build_manifest


def write_finished_run(
    out: Path,
    config: Any,
    data: Any,
    model: nn.Module,
    *,
    weights_meta: dict[str, str],
    edit: Callable[[dict], None] | None = None,
    **manifest: Any,
) -> None:
    """Write ``out`` (new or empty, claimed by the caller) as a complete run of ``model``: its
    config, empty metrics, ``best`` and ``last`` weights (with ``weights_meta``) and a
    manifest with status complete and 0 epochs (``manifest`` keywords go to
    :func:`~analysis.runs.manifest.build_manifest`; ``edit`` may change the result).

    On any failure what was written is removed again, so the folder is as it was.
    """
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        write_config(out, config.to_dict())
        (out / METRICS).write_text("")
        for name in ("best", "last"):
            save_weights(checkpoint_path(out, name), model, weights_meta)
        record = build_manifest(config, data, model, status="complete", epochs=0, **manifest)
        if edit is not None:
            edit(record)
        write_json(out / MANIFEST, record)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        else:
            for child in out.iterdir():
                if child.name in (CONFIG, METRICS, MANIFEST, CHECKPOINTS):
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise
