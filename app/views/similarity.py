"""Did the peers learn the same things? CKA between layers and between peers, kernel matching
between the peers' filters, and filter redundancy within each peer."""

import streamlit as st

from analysis import viz
from analysis.probes.diversity import mean_off_diagonal
from analysis.probes.headlines import shared_depth_layers
from analysis.viz.similarity import short_layer_name
from app import common, results
from app.common import show

st.title("Similarity")
run = common.selected_run()
if run is None:
    st.stop()
names = run.peer_names
result = results.cka(run)
if result is None:
    st.stop()

st.header("Representations: linear CKA")
st.caption(
    f"Minibatch CKA (unbiased HSIC, batches of {result.batch_size}) over "
    f"{result.num_samples} test samples; 1 = the same representation up to rotation and scale."
)
left, right = st.columns(2)
with left:
    first, second = st.columns(2)
    a = first.selectbox("Rows: peer", range(len(names)), format_func=names.__getitem__)
    b = second.selectbox(
        "Columns: peer",
        range(len(names)),
        index=min(1, len(names) - 1),
        format_func=names.__getitem__,
    )
    show(viz.cka_heatmap(result, peers=(a, b), peer_names=names), key="cka_layers")
with right:
    labels = [short_layer_name(path) for path in shared_depth_layers(result)]
    depth = labels.index(st.select_slider("Layer", labels, value=labels[-1]))
    st.metric(
        f"Mean CKA between peers at {labels[depth]}",
        f"{mean_off_diagonal(result.peer_matrix(depth)):.4f}",
    )
    show(viz.peer_cka_heatmap(result, depth=depth, peer_names=names), key="cka_peers")

st.header("Filters: kernel matching and redundancy")
align = st.checkbox(
    "Align input channels",
    help="Reorder each layer's input channels by the previous layer's filter matching before matching it.",
)
sim = results.kernels(run, align_inputs=align)
if sim is not None:
    left, right = st.columns(2)
    with left:
        show(viz.kernel_matching_lines(sim), key="kernel_matching")
    with right:
        show(viz.filter_redundancy_lines(sim), key="filter_redundancy")
