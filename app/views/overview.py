"""Overview of one run: its configuration, its peers and its training curves."""

import streamlit as st

from analysis import viz
from app import common

st.title("Overview")
run = common.selected_run(model=False)  # metadata only: no torch, no model
if run is None:
    st.stop()

manifest = run.manifest
st.markdown(
    f"**{run.name}** — method `{manifest.get('method', '?')}` on `{manifest.get('dataset', '?')}`, "
    f"{len(run.peer_names)} peers, seed {manifest.get('seed', '?')}, checkpoint `{common.CHECKPOINT}`"
)
st.caption(common.SEED_NOTE)

left, right = st.columns([1, 2])
with left:
    st.subheader("Peers")
    counts = manifest.get("param_counts") or [None] * len(run.peer_names)
    rows = [
        {"peer": name, "parameters": "?" if n is None else f"{n:,}"}
        for name, n in zip(run.peer_names, counts)
    ]
    st.table(rows)
    with st.expander("Configuration", expanded=False):
        st.json(run.config)
with right:
    st.subheader("Training curves")
    if not run.metrics:
        source = manifest.get("provenance", {}).get("source")
        st.info(
            f"No training history: this run was imported (`--source {source}`)."
            if source
            else "This run has no metrics lines yet."
        )
    else:
        acc_tab, loss_tab = st.tabs(["Accuracy", "Loss"])
        for tab, metric in ((acc_tab, "acc"), (loss_tab, "loss")):
            with tab:
                fig = viz.training_curves(run.metrics, peer_names=run.peer_names, metric=metric)
                common.show(fig, key=f"curves_{metric}")
