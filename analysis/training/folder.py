"""The trainer's side of the run folder: claim it, start it, record its status, undo a start.

Under torchrun only rank 0 calls these; the rules of :func:`analysis.runs.claim_run_folder`
decide what may be written.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from analysis import runs
from analysis.config import Config
from analysis.runs import (
    Claim,
    build_manifest,
    claim_run_folder,
    provenance,
    read_manifest,
    save_resume,
    save_weights,
)


class RunFolder:
    """The folder ``out`` a run of ``config`` trains into."""

    def __init__(self, out: Path, config: Config) -> None:
        self.out, self.config = out, config
        self.origin: dict | None = None
        self._made_folder = False
        self.was_empty = False
        self._clock = (time.monotonic(), 0.0)

    def claim(self, *, resume: bool) -> Claim:
        """Decide how to use the folder; a fresh run gets its config and first manifest now,
        before anything slow, so a kill at any moment leaves a resumable run."""
        claim = claim_run_folder(self.out, resume=resume)
        if claim is Claim.COMPLETE:
            return claim
        self.origin = read_manifest(self.out) if claim is Claim.RESUME else None
        self._clock = (time.monotonic(), float((self.origin or {}).get("train_seconds", 0.0)))
        self.was_empty = not self.out.exists() or not any(self.out.iterdir())
        if claim is Claim.FRESH:
            self._start()
        return claim

    def _start(self) -> None:
        self._made_folder = not self.out.exists()
        (self.out / runs.CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        (self.out / runs.PROBES).mkdir(exist_ok=True)
        runs.write_config(self.out, self.config.to_dict())
        (self.out / runs.METRICS).write_text("")
        self.origin = provenance(self.config)
        runs.write_json(self.out / runs.MANIFEST, {**self.origin, "status": "starting"})

    def undo_start(self) -> None:
        """Setup failed: remove what was written into a folder that was new or empty."""
        if not self.was_empty:
            return
        for name in (runs.CONFIG, runs.MANIFEST, runs.METRICS):
            (self.out / name).unlink(missing_ok=True)
        for sub in (runs.CHECKPOINTS, runs.PROBES):
            if (self.out / sub).is_dir() and not any((self.out / sub).iterdir()):
                (self.out / sub).rmdir()
        if self._made_folder and not any(self.out.iterdir()):
            self.out.rmdir()

    def write_manifest(self, status: str, *, data: Any, model: Any, **extra: Any) -> None:
        """The manifest with ``status``; ``train_seconds`` adds up every session's wall time."""
        started, before = self._clock
        extra["train_seconds"] = round(before + time.monotonic() - started, 1)
        manifest = build_manifest(
            self.config, data, model, status=status, origin=self.origin, **extra
        )
        runs.write_json(self.out / runs.MANIFEST, manifest)

    def save_epoch(
        self,
        epoch: int,
        model: Any,
        optimizer: Any,
        *,
        best: bool,
        extra: dict,
        method_state: dict,
    ) -> None:
        """The checkpoints after ``epoch`` epochs: ``best`` when it improved, ``epoch_NNN`` every
        ``train.save_every`` epochs and at the end, and always ``last`` (the resume state)."""
        meta = {"epoch": str(epoch)}
        if best:
            save_weights(runs.checkpoint_path(self.out, "best"), model, meta)
        every, epochs = self.config.train.save_every, self.config.train.epochs
        if every and (epoch % every == 0 or epoch == epochs):
            save_weights(runs.checkpoint_path(self.out, f"epoch_{epoch:03d}"), model, meta)
        save_resume(
            runs.checkpoint_path(self.out, "last"),
            model,
            optimizer,
            epoch=epoch,
            extra=extra,
            method_state=method_state,
        )
