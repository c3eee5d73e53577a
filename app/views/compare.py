"""Two runs side by side, e.g. independent training against deep mutual learning: accuracy,
diversity and representation similarity of their best checkpoints on the test split."""

import pandas as pd
import streamlit as st

from analysis import viz
from analysis.probes import MEASURES
from app import common, results
from app.common import show

st.title("Compare runs")
names = list(common.available_runs())
if len(names) < 2:
    st.info(f"Comparing needs two runs under {common.runs_root()}; train another with `collab train`.")
    st.stop()
first = "independent-digits" if "independent-digits" in names else names[0]
second = next(n for n in [common.DEFAULT_RUN, *names] if n in names and n != first)
cols = st.columns(2)
picked = [
    cols[0].selectbox("Run A", names, index=names.index(first), key="compare_a"),
    cols[1].selectbox("Run B", names, index=names.index(second), key="compare_b"),
]
measure = st.selectbox("Diversity measure", list(MEASURES), format_func=lambda m: MEASURES[m].label, index=1)

summaries = {}
for col, slot, name in zip(cols, "AB", picked):
    with col:
        run = common.load_named(name)
        div = results.diversity(run, "test") if run is not None else None
        cka = results.cka(run) if run is not None else None
        if div is None:
            continue
        summaries[f"{slot}: {name}"] = results.summary(div, cka)
        st.subheader(name)
        names_k = div.peer_names
        show(viz.accuracy_bars(div.peer_acc, div.ensemble_acc, div.oracle_acc, names_k), key=f"accuracy_{slot}")
        show(viz.diversity_heatmap(div, measure), key=f"diversity_{slot}")
        if cka is not None:
            show(viz.peer_cka_heatmap(cka, depth=-1, peer_names=names_k), key=f"cka_{slot}")

if len(summaries) == 2:
    st.header("Summary")
    table = pd.DataFrame(summaries)
    table["B - A"] = table.iloc[:, 1] - table.iloc[:, 0]
    st.dataframe(table.style.format("{:+.4f}", subset=["B - A"]).format("{:.4f}", subset=table.columns[:2]))
