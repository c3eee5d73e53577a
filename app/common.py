"""Shared pieces of the app: the runs root, the run picker, cached run loading, figure display.

Caching: the loaded ``Run`` (a model) is a resource shared across sessions; probe results
(:mod:`app.results`) are data, pickled per input. Both are keyed on the run folder and its
manifest's modification time, so retraining a run into the same folder is picked up.
``st.session_state`` holds only selections (the run name, widget values).

Every figure is shown with :func:`show`, which adds its data as CSV and the figure as a
standalone HTML file for download.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import analysis

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
RUN_KEY = "run_name"
DEFAULT_RUN = "dml-digits"
CHECKPOINT = "best"  # the app always shows a run's best checkpoint
SEED_NOTE = (
    "Every number on this page comes from one run, i.e. one seed. Differences between methods "
    "need several seeds: run `collab sweep` and open it under Compare runs → A sweep."
)


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
    return analysis.load_run(path, checkpoint=CHECKPOINT, lazy_model=True)


def _stamp(path: Path) -> float:
    manifest = path / "manifest.json"
    return manifest.stat().st_mtime if manifest.exists() else 0.0


def run_key(run: analysis.Run) -> str:
    """A cache key for results computed from ``run``'s model."""
    return f"{run.path}@{_stamp(run.path)}"


def selected_run(*, model: bool = True) -> analysis.Run | None:
    """The run picked in the sidebar, or ``None`` after telling the user why there is none.

    Args:
        model: load its model now (a damaged checkpoint is reported here); a page that shows
            only the config, manifest and metrics passes ``False`` and never waits for torch.
    """
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
    return load_named(name, model=model)


def load_named(name: str, *, model: bool = True) -> analysis.Run | None:
    """The run called ``name`` under the runs root (cached), or ``None`` after an error line.

    ``model``: see :func:`selected_run`.
    """
    path = available_runs().get(name)
    if path is None:
        st.error(f"There is no run {name!r} under {runs_root()}; pick one of the listed runs.")
        return None

    def load() -> analysis.Run:
        run = _load_run(str(path), _stamp(path))
        if model:
            run.model  # noqa: B018 -- built once, then cached with the run
        return run

    return guarded(load, what=f"run {name}")


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


def pct(value: float, *, signed: bool = False) -> str:
    """A fraction as a percentage with two decimals, e.g. ``0.9861 -> "98.61%"``."""
    return f"{value:+.2%}" if signed else f"{value:.2%}"


def figure_table(fig: go.Figure) -> pd.DataFrame:
    """The numbers drawn in ``fig`` as a long table: one row per point or heatmap cell.

    Columns: ``trace`` (index), ``name``, ``x``, ``y`` and, for heatmaps, ``z``. Image traces
    (pixels) are left out.
    """
    frames = []
    for index, trace in enumerate(fig.data):
        if trace.type == "heatmap":
            z = np.array(trace.z, dtype=float)  # None (a gap) -> NaN
            rows, cols = np.indices(z.shape)
            x = np.asarray(trace.x if trace.x is not None else range(z.shape[1]), dtype=object)
            y = np.asarray(trace.y if trace.y is not None else range(z.shape[0]), dtype=object)
            part = {"x": x[cols.ravel()], "y": y[rows.ravel()], "z": z.ravel()}
        elif trace.type in ("scatter", "bar") and trace.y is not None:
            y = np.asarray(trace.y, dtype=object)
            x = np.asarray(trace.x if trace.x is not None else range(len(y)), dtype=object)
            part = {"x": x, "y": y}
        else:
            continue
        frames.append(pd.DataFrame({"trace": index, "name": trace.name or "", **part}))
    columns = ["trace", "name", "x", "y", "z"]
    return (
        pd.concat(frames, ignore_index=True).reindex(columns=columns)
        if frames
        else pd.DataFrame(columns=columns)
    )


def show(
    fig: go.Figure, *, key: str, data: pd.DataFrame | None = None, run: str | None = None
) -> None:
    """Draw ``fig`` with two download buttons under it: its data (CSV) and the figure (HTML).

    Args:
        fig: the figure.
        key: a page-unique key; it names the chart, the buttons and the downloaded files.
        data: the table to download (default :func:`figure_table` of ``fig``).
        run: the run the figure shows, for the file names (default the sidebar's run).
    """
    st.plotly_chart(fig, key=key)
    run = run or st.session_state.get(RUN_KEY) or "collablens"
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{run}-{key}")
    # Both files are built only when their button is clicked (the HTML embeds the ~4 MB
    # plotly.js so that it opens offline); on_click="ignore" keeps the page from rerunning.

    def csv() -> str:
        return (figure_table(fig) if data is None else data).to_csv(index=False)

    def html() -> str:
        return fig.to_html(include_plotlyjs=True, full_html=True)

    left, right, _ = st.columns([1, 1, 4])
    for col, label, payload, mime in (
        (left, "CSV", csv, "text/csv"),
        (right, "HTML", html, "text/html"),
    ):
        col.download_button(
            label,
            payload,
            file_name=f"{stem}.{label.lower()}",
            mime=mime,
            key=f"{key}_{label.lower()}",
            on_click="ignore",
            type="tertiary",
            icon=":material/download:",
        )


def tensor_table(values, **axes) -> pd.DataFrame:
    """A long table of an N-d tensor: one column per axis (its labels, or positions) plus ``value``.

    Example: ``tensor_table(maps, peer=names, method=methods, row=None, col=None)`` for maps of
    shape (K, M, H, W). Pass the axes in the tensor's order; ``None`` labels an axis 0, 1, ...
    """
    array = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=float)
    if array.ndim != len(axes):
        raise ValueError(f"got {len(axes)} axis names for a {array.ndim}-d array")
    grid = np.indices(array.shape).reshape(array.ndim, -1)
    columns = {
        name: grid[d] if labels is None else np.asarray(list(labels), dtype=object)[grid[d]]
        for d, (name, labels) in enumerate(axes.items())
    }
    return pd.DataFrame({**columns, "value": array.ravel()})
