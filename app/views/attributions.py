"""Which pixels does each peer look at? Captum attributions of every peer side by side, scored
by how fast the peer's confidence falls when the most-attributed pixels are deleted."""

import pandas as pd
import streamlit as st
import torch

from analysis import viz
from analysis.probes import ATTRIBUTIONS
from app import common, inputs, results
from app.common import show, tensor_table

st.title("Attributions")
run = common.selected_run()
if run is None:
    st.stop()
names, classes = run.peer_names, run.data.class_names

left, right = st.columns(2)
with left:
    chosen = inputs.image_picker(run)
with right:
    default = ["saliency", "integrated_gradients", "grad_cam"]
    methods = st.multiselect("Methods", ATTRIBUTIONS.list(), default=default)
    ensemble = st.toggle("Explain the ensemble's top class (instead of each peer's own)")
    absolute = st.checkbox("Absolute values", value=False)
if chosen is None:
    st.stop()
image, label, image_key = chosen.image, chosen.label, chosen.key

probs = results.predict(run, image_key, image)
if probs is None:
    st.stop()
peer_probs, ensemble_probs = probs
cols = st.columns(len(names) + 2)
cols[0].metric("Label", "unknown" if label is None else classes[label])
for col, name, p in zip(cols[1:], [*names, "ensemble"], [*peer_probs, ensemble_probs]):
    col.metric(f"{name} predicts", f"{classes[int(p.argmax())]} ({p.max():.1%})")
if not methods:
    st.info("Pick at least one attribution method.")
    st.stop()

target = int(ensemble_probs.argmax()) if ensemble else None
bar, found = st.progress(0.0), {}
for step, method in enumerate(methods):
    bar.progress(step / len(methods), text=f"{method}: attributions and deletion curves…")
    found[method] = results.explain(run, image_key, image, method, target=target, absolute=absolute)
bar.empty()
found = {method: result for method, result in found.items() if result is not None}
if not found:
    st.stop()

st.subheader("Attribution maps: one row per method, one column per peer")
maps = torch.cat([maps for maps, _, _ in found.values()], dim=1)  # (K, M, H, W)
grid = viz.attribution_grid(
    image[None].expand(len(found), *image.shape), maps, peer_names=names, captions=list(found)
)
show(
    grid,
    key="attribution_grid",
    data=tensor_table(maps, peer=names, method=list(found), row=None, col=None),
)

st.subheader("Faithfulness: deletion-curve AUC per peer (lower = more faithful)")
auc = {method: auc[:, 0].tolist() for method, (_, _, auc) in found.items()}
st.dataframe(pd.DataFrame(auc, index=names).T.style.format("{:.3f}"))
for tab, (method, (_, curves, auc_m)) in zip(st.tabs(list(found)), found.items()):
    with tab:
        show(viz.deletion_figure(curves, auc_m, peer_names=names), key=f"deletion_{method}")
