"""Which folders training may write into: nothing already saved is ever overwritten or lost.

Training writes only into a new or empty folder, or into the run it resumes; resume continues
exactly (from ``checkpoints/last.safetensors``) or refuses — it never starts a trained run over.
:func:`claim_run_folder` decides before anything is written and raises a one-line
:class:`CollabError` naming the problem and the fix otherwise.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Any

from analysis.errors import CollabError
from analysis.runs.layout import CHECKPOINTS, CONFIG, MANIFEST, checkpoint_path, read_metrics


class Claim(enum.Enum):
    """What training does with the folder it was given."""

    FRESH = "fresh"  # nothing trained there yet: start at epoch 0
    RESUME = "resume"  # continue exactly from checkpoints/last.safetensors
    COMPLETE = "complete"  # a finished run: nothing to do, nothing is written


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    """The run's manifest as a dict, or None when it is missing, unreadable or not a mapping."""
    try:
        data = json.loads((Path(run_dir) / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _trained_anything(run_dir: Path) -> bool:
    """True once an epoch's metrics or any weights have been written."""
    weights = any((run_dir / CHECKPOINTS).glob("*.safetensors"))
    return weights or bool(read_metrics(run_dir))


def _listing(run_dir: Path, shown: int = 4) -> str:
    names = sorted(p.name for p in run_dir.iterdir())
    more = f", … ({len(names)} entries)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def claim_run_folder(out: str | Path, *, resume: bool) -> Claim:
    """Decide how training may use ``out``; refuse (CollabError) whenever saved work is at stake.

    Without ``resume``: a new or empty folder starts fresh; anything else is refused. With
    ``resume``: a run with ``last.safetensors`` resumes; a finished run is left alone; a run
    that has not trained yet (killed in its first seconds) starts at epoch 0; a run that has
    trained but has no resume state, or has lost its manifest, is refused and left untouched.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CollabError(f"--out {out} is a file, not a folder; choose a folder path")
    if not out.exists() or not any(out.iterdir()):
        return Claim.FRESH
    has_config = (out / CONFIG).is_file()
    manifest = read_manifest(out)
    if not resume:
        if has_config and (out / MANIFEST).is_file():
            status = (manifest or {}).get("status", "unknown")
            raise CollabError(
                f"{out} already holds a run; pass --resume to continue it (its status: {status}), "
                "or choose a new --out"
            )
        raise CollabError(
            f"{out} is not empty and is not a run ({_listing(out)}); training writes only into "
            "a new or empty folder: choose another --out"
        )
    if not has_config:
        raise CollabError(
            f"{out} has no {CONFIG}, so it is not a run that can be resumed; "
            "choose the run folder itself, or train into a new --out without --resume"
        )
    if manifest is None:
        if _trained_anything(out):
            raise CollabError(
                f"{out} has trained weights but its {MANIFEST} is missing or unreadable, so it "
                "cannot be resumed exactly; its files are left untouched: train into a new --out"
            )
        return Claim.FRESH
    if manifest.get("status") == "complete":
        return Claim.COMPLETE
    if manifest.get("status") == "failed":
        raise CollabError(
            f"{out} failed ({manifest.get('failure', 'no reason recorded')}); resuming would "
            "repeat the failure: fix the config and train into a new --out"
        )
    if checkpoint_path(out, "last").is_file():
        return Claim.RESUME
    if _trained_anything(out):
        raise CollabError(
            f"{out} has trained epochs but no {CHECKPOINTS}/last.safetensors, so it cannot "
            "continue exactly; its files are left untouched: train into a new --out"
        )
    return Claim.FRESH
