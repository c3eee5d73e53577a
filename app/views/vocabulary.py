"""Which "words" (most active filters) occur together? Co-occurrence across the branches of a DCL
layer, or across two peers at the same positions; vocabulary usage and the top words' patches."""

import streamlit as st

from analysis import viz
from analysis.probes import dcl_layer_paths
from analysis.probes.headlines import word_pair_numbers
from app import common, inputs, results
from app.common import show

BRANCHES, PEERS = "DCL branches", "two peers"
KINDS = {"counts": "counts", "pmi": "PMI (bits)"}

st.title("Vocabulary")
run = common.selected_run()
if run is None:
    st.stop()
names, model = run.peer_names, run.model
layers = dcl_layer_paths(model, peer=None)
sources = ([BRANCHES] if layers else []) + ([PEERS] if len(names) >= 2 else [])
if not sources:
    st.info(
        "This page needs a run with DCL layers (train a dcl_* architecture, e.g. dcl_resnet8) or "
        "with at least two peers; this run has one peer and no DCL layer."
    )
    st.stop()

top = st.columns(3)
source = top[0].radio("Words across", sources, horizontal=True)
kind = top[1].radio("Table", list(KINDS), format_func=KINDS.get, horizontal=True)
limit = inputs.limit_slider("Test images", len(run.dataset("test")), default=250, where=top[2])

if source == BRANCHES:
    layer = st.selectbox("DCL layer", layers)
    if (vocab := results.vocabulary(run, layer, limit=limit)) is None:
        st.stop()
    pairs = [f"branches {a} and {b}" for a, b in vocab.pairs]
    pair = st.selectbox("Branch pair", range(len(pairs)), format_func=pairs.__getitem__)
    cols = st.columns(4)
    cols[0].metric("Used composite words", f"{vocab.used_vocabulary:,}")
    possible = f"{vocab.branch_width} filters ^ {vocab.branches} branches"
    cols[1].metric("Possible composite words", f"{vocab.vocabulary_size:,}", help=possible)
    cols[2].metric("Entropy of the composite words", f"{vocab.entropy_bits:.3f} bits")
    mi = float(vocab.mutual_information[pair])
    cols[3].metric(f"Mutual information, {pairs[pair]}", f"{mi:.3f} bits")
    left, right = st.columns(2)
    with left:
        show(viz.cooccurrence_heatmap(vocab, kind=kind, pair=pair), key="cooccurrence")
    with right:
        show(viz.vocabulary_usage(vocab), key="vocabulary_usage")
    st.subheader("The most frequent composite words and the patches that fire them most")
    most = len(vocab.top_words)
    words = st.slider("Words shown", 1, most, min(most, 8)) if most > 1 else most
    gallery = results.word_gallery(run, layer, limit=limit, words=words) if words else None
    if gallery is not None:
        show(gallery[0], key="word_gallery", data=gallery[1])
else:
    if (found := results.cooccurrence(run, inputs.two_peer_layers(run), limit=limit)) is None:
        st.stop()
    pairs = word_pair_numbers(found)
    cols = st.columns(4)
    cols[0].metric("Used word pairs", f"{pairs['used']:,}")
    cols[1].metric("Possible word pairs", f"{pairs['possible']:,}", help="channels A x channels B")
    cols[2].metric("Entropy of the word pairs", f"{pairs['entropy_bits']:.3f} bits")
    cols[3].metric("Mutual information", f"{found.mutual_information:.3f} bits")
    pooled = [layer for layer, p in zip(found.layers, found.resampled) if p]
    grid = "x".join(map(str, found.map_size))
    note = f"; {', '.join(pooled)} average-pooled to the common grid" if pooled else ""
    st.caption(f"{found.num_samples} test images on a {grid} grid{note}.")
    show(viz.cooccurrence_heatmap(found, kind=kind), key="peer_cooccurrence")
    st.caption("Vocabulary usage and word patches need a DCL layer's composite words.")
