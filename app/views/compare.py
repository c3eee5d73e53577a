"""Two runs side by side, e.g. independent training against deep mutual learning: accuracy,
diversity and representation similarity of their best checkpoints on the test split."""

import pandas as pd
import streamlit as st

from analysis import viz
from analysis.probes import MEASURES
from analysis.probes.headlines import comparison_numbers
from app import common, results, sweeps
from app.common import show

st.title("Compare runs")
if st.radio("Compare", ["Two runs", "A sweep"], horizontal=True, key="compare_mode") == "A sweep":
    sweeps.sweep_panel()
    st.stop()
names = list(common.available_runs())
if len(names) < 2:
    st.info(
        f"Comparing needs two runs under {common.runs_root()}; train another with `collab train`."
    )
    st.stop()
first = "independent-digits" if "independent-digits" in names else names[0]
second = next(n for n in [common.DEFAULT_RUN, *names] if n in names and n != first)
pickers = st.columns(3)
picked = [
    pickers[0].selectbox("Run A", names, index=names.index(first), key="compare_a"),
    pickers[1].selectbox("Run B", names, index=names.index(second), key="compare_b"),
]
measure = pickers[2].selectbox(
    "Diversity measure", list(MEASURES), format_func=lambda m: MEASURES[m].label, index=1
)
summary_box = st.container()  # filled once both runs are computed, shown above their figures

summaries = {}
for col, slot, name in zip(st.columns(2), "AB", picked):
    with col:
        st.subheader(f"{slot}: {name}")
        run = common.load_named(name)
        div = results.diversity(run, "test") if run is not None else None
        cka = results.cka(run) if run is not None else None
        if div is None:
            continue
        summaries[f"{slot}: {name}"] = comparison_numbers(div, cka)
        peers = div.peer_names
        show(
            viz.accuracy_bars(div.peer_acc, div.ensemble_acc, div.oracle_acc, peers),
            key=f"accuracy_{slot}",
            run=name,
        )
        show(viz.diversity_heatmap(div, measure), key=f"diversity_{slot}", run=name)
        if cka is not None:
            show(viz.peer_cka_heatmap(cka, depth=-1, peer_names=peers), key=f"cka_{slot}", run=name)

if len(summaries) == 2:
    table = pd.DataFrame(summaries)
    table["B - A"] = table.iloc[:, 1] - table.iloc[:, 0]
    with summary_box:
        st.subheader("Summary (test split)")
        styled = table.style.format("{:.4f}").format("{:+.4f}", subset=["B - A"])
        st.dataframe(styled, height="content")
