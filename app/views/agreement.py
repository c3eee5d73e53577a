"""Do the peers agree? Pairwise agreement, accuracies, and the samples they disagree on."""

import streamlit as st

from analysis import viz
from analysis.probes import gather_samples
from app import common
from app.common import pct

st.title("Agreement")
run = common.selected_run()
if run is None:
    st.stop()

split = st.radio("Split", ["test", "train"], horizontal=True)
result = common.agreement(run, split)
if result is None:
    st.stop()
preds, report = result
names = report.peer_names

cols = st.columns(4)
cols[0].metric("Ensemble accuracy", pct(report.ensemble_acc))
cols[1].metric(
    "Ensemble gain", pct(report.ensemble_gain, signed=True), help="ensemble minus the best peer"
)
cols[2].metric(
    "Oracle accuracy", pct(report.oracle_acc), help="samples at least one peer gets right"
)
cols[3].metric("Mean pairwise agreement", pct(report.mean_agreement))
for col, name, acc in zip(st.columns(max(len(names), 4)), names, report.peer_acc):
    col.metric(f"{name} accuracy", pct(acc))

left, right = st.columns(2)
with left:
    st.subheader("Pairwise top-1 agreement")
    st.plotly_chart(viz.agreement_heatmap(report.agreement, names), key="agreement_heatmap")
with right:
    st.subheader("Accuracy")
    bars = viz.accuracy_bars(report.peer_acc, report.ensemble_acc, report.oracle_acc, names)
    st.plotly_chart(bars, key="accuracy_bars")

count = len(report.disagreements)
st.subheader(f"Where the peers disagree: {count} of {report.num_samples} {split} samples")
if count:
    most = min(count, 48)
    shown = (
        st.slider("Images shown", min_value=1, max_value=most, value=min(most, 16))
        if most > 1
        else 1
    )
    picked = report.disagreements[:shown]
    images, labels = gather_samples(run.dataset(split), picked)
    captions = viz.prediction_captions(
        preds.peer_predictions()[:, picked],
        labels,
        peer_names=names,
        class_names=run.data.class_names,
    )
    st.plotly_chart(viz.image_gallery(images, captions, cols=4), key="disagreement_gallery")
