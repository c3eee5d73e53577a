"""Folders that a plan owns (a sweep, a width search): written first, then only continued.

The plan file (JSON) goes into a new or empty folder before anything is trained; running the
same command again continues that folder, and a different plan for it is refused, so nothing a
plan already trained is ever overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from analysis.errors import CollabError
from analysis.runs.layout import write_json

T = TypeVar("T")


def read_plan_file(
    out: str | Path, name: str, *, kind: str, parse: Callable[[dict], T], missing: str = ""
) -> T:
    """``parse`` of the JSON plan ``out/name``, or a one-line error naming the ``kind`` of folder
    (``missing`` is appended when there is no plan file)."""
    path = Path(out) / name
    try:
        return parse(json.loads(path.read_text()))
    except FileNotFoundError:
        raise CollabError(f"{out} holds no {kind} ({name} is missing){missing}") from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise CollabError(f"{path} is unreadable; run the {kind} into a new --out") from None


def claim_plan_folder(
    out: str | Path,
    name: str,
    plan: dict[str, Any],
    *,
    kind: str,
    parse: Callable[[dict], Any],
    same: str,
) -> None:
    """Write ``plan`` as ``out/name`` into a new or empty ``out``, or check that ``out`` holds
    this very plan (compared after ``parse``); ``same`` names what must match, for the error."""
    out = Path(out)
    if (out / name).is_file():
        if read_plan_file(out, name, kind=kind, parse=parse) != parse(plan):
            raise CollabError(
                f"{out} holds a different {kind} (its {name} differs); rerun it with the same "
                f"{same}, or choose a new --out"
            )
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CollabError(f"{out} is not empty and holds no {kind}; choose a new or empty --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / name, plan)
