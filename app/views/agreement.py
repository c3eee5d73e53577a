"""Do the peers agree? Agreement, diversity measures, per-class agreement, their course over
training, and the samples the peers disagree on."""

import streamlit as st

from analysis import viz
from analysis.probes import MEASURES
from analysis.probes.through_training import epoch_checkpoints
from app import common, results
from app.common import pct, show

st.title("Agreement")
run = common.selected_run()
if run is None:
    st.stop()
st.caption(common.SEED_NOTE)
split = st.radio("Split", ["test", "train"], horizontal=True)
found, div = results.agreement(run, split), results.diversity(run, split)
if found is None or div is None:
    st.stop()
_, report = found
names = report.peer_names

cols = st.columns(4)
cols[0].metric("Ensemble accuracy", pct(report.ensemble_acc))
gain, oracle = pct(report.ensemble_gain, signed=True), pct(report.oracle_acc)
cols[1].metric("Ensemble gain", gain, help="ensemble minus the best peer")
cols[2].metric("Oracle accuracy", oracle, help="samples at least one peer gets right")
cols[3].metric("Mean pairwise agreement", pct(report.mean_agreement))
for col, name, acc in zip(st.columns(max(len(names), 4)), names, report.peer_acc):
    col.metric(f"{name} accuracy", pct(acc))

left, right = st.columns(2)
with left:
    st.subheader("Pairwise top-1 agreement")
    show(viz.agreement_heatmap(report.agreement, names), key="agreement_heatmap")
with right:
    st.subheader("Accuracy")
    bars = viz.accuracy_bars(report.peer_acc, report.ensemble_acc, report.oracle_acc, names)
    show(bars, key="accuracy_bars")

st.header("Diversity")
left, right = st.columns(2)
with left:
    label = {name: info.label for name, info in MEASURES.items()}
    measure = st.selectbox("Measure", list(MEASURES), format_func=label.get, index=1)
    st.metric(f"Mean {MEASURES[measure].label} over peer pairs", f"{div.mean(measure):.4f}")
    show(viz.diversity_heatmap(div, measure), key="diversity_heatmap")
with right:
    kinds = {"bars": "mean over pairs", "heatmap": "every pair"}
    kind = st.radio("Per class", list(kinds), horizontal=True, format_func=kinds.get)
    classes = run.data.class_names
    show(viz.class_agreement_figure(div, class_names=classes, kind=kind), key="class_agreement")

st.header("Through training")
if not epoch_checkpoints(run.checkpoints):
    st.info("This run saved no epoch checkpoints; train with --set train.save_every=N to see them.")
elif st.toggle("Follow the saved epoch checkpoints", value=True):
    dyn = results.dynamics(run, split)
    if dyn is not None:
        st.caption(f"{len(dyn.epochs)} checkpoints: epochs {', '.join(map(str, dyn.epochs))}.")
        left, right = st.columns(2)
        with left:
            show(viz.dynamics_accuracy_figure(dyn), key="dynamics_accuracy")
        with right:
            show(viz.dynamics_figure(dyn), key="dynamics_diversity")

count = len(report.disagreements)
st.header(f"Where the peers disagree: {count} of {report.num_samples} {split} samples")
if count:
    most = min(count, 48)
    shown = st.slider("Images shown", 1, most, min(most, 16)) if most > 1 else 1
    gallery = results.disagreement_gallery(run, split, shown)
    if gallery is not None:
        show(gallery[0], key="disagreement_gallery", data=gallery[1])
