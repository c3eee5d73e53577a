"""Shared pieces of the app: the runs root, the run picker, and cached loads and probes.

Caching: the loaded ``Run`` (a model) is a resource shared across sessions; probe results are
data, pickled per input. Both are keyed on the run folder and its manifest's modification
time, so retraining a run into the same folder is picked up. ``st.session_state`` holds only
the selected run name.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import streamlit as st

import analysis
from analysis import probes

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
RUN_KEY = "run_name"
DEFAULT_RUN = "dml-digits"
CHECKPOINT = "best"  # the app always shows a run's best checkpoint


def runs_root() -> Path:
    """``$COLLAB_RUNS_ROOT`` if set, else ``<repo>/runs``."""
    return Path(os.environ.get("COLLAB_RUNS_ROOT") or REPO / "runs").expanduser().resolve()


def available_runs() -> dict[str, Path]:
    """Run folders under the runs root, keyed by their path relative to it."""
    root = runs_root()
    return {path.relative_to(root).as_posix(): path for path in analysis.list_runs(root)}


def run_picker() -> None:
    """Sidebar select box over the runs under the root; the choice is ``session_state[RUN_KEY]``."""
    runs = available_runs()
    with st.sidebar:
        if runs:
            if st.session_state.get(RUN_KEY) not in runs:
                st.session_state[RUN_KEY] = DEFAULT_RUN if DEFAULT_RUN in runs else next(iter(runs))
            st.selectbox("Run", list(runs), key=RUN_KEY)
        st.caption(f"Runs root: `{runs_root()}`")


@st.cache_resource(show_spinner="Loading run…", max_entries=4)
def _load_run(path: str, stamp: float) -> analysis.Run:
    del stamp  # only part of the cache key
    return analysis.load_run(path, checkpoint=CHECKPOINT)


def _stamp(path: Path) -> float:
    manifest = path / "manifest.json"
    return manifest.stat().st_mtime if manifest.exists() else 0.0


def run_key(run: analysis.Run) -> str:
    """A cache key for results computed from ``run``'s model."""
    return f"{run.path}@{_stamp(run.path)}"


def selected_run() -> analysis.Run | None:
    """The run picked in the sidebar, or ``None`` after telling the user why there is none."""
    root, runs = runs_root(), available_runs()
    if not root.is_dir():
        st.warning(
            f"The runs root {root} does not exist; set COLLAB_RUNS_ROOT to a folder of run folders."
        )
        return None
    if not runs:
        st.info(
            f"No runs under {root}; train one with `collab train` "
            "or set COLLAB_RUNS_ROOT to a folder of runs."
        )
        return None
    name = st.session_state.get(RUN_KEY)
    if name not in runs:
        st.info("Pick a run in the sidebar.")
        return None
    return guarded(lambda: _load_run(str(runs[name]), _stamp(runs[name])), what=f"run {name}")


def guarded(action, *, what: str):
    """Call ``action()``; on failure show one error line and return ``None`` (the page goes on)."""
    try:
        return action()
    except analysis.CollabError as err:
        st.error(str(err))
    except Exception as err:  # a broken run must not take the whole app down
        log.exception("failed on %s", what)
        st.error(f"Could not load {what}: {type(err).__name__}: {err}")
    return None


@st.cache_data(show_spinner="Running the agreement probe…", max_entries=16)
def _agreement(
    _run: analysis.Run, key: str, split: str
) -> tuple[probes.Predictions, probes.AgreementReport]:
    del key  # identifies ``_run``, which streamlit does not hash
    preds = probes.collect_predictions(_run.model, _run.dataset(split))
    return preds, probes.agreement_report(preds, peer_names=_run.peer_names)


def agreement(
    run: analysis.Run, split: str
) -> tuple[probes.Predictions, probes.AgreementReport] | None:
    """Cached predictions and agreement report of ``run`` on ``split``, or ``None`` on failure."""
    return guarded(
        lambda: _agreement(run, run_key(run), split), what=f"the {split} split of {run.name}"
    )


def pct(value: float, *, signed: bool = False) -> str:
    """A fraction as a percentage with two decimals, e.g. ``0.9861 -> "98.61%"``."""
    return f"{value:+.2%}" if signed else f"{value:.2%}"
