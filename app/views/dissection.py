"""Which channels does each class need? Class-wise masks (DRNet), their overlaps between
classes, and whether peers trained together dissect into the same parts."""

import streamlit as st

import analysis
from analysis import probes
from analysis.viz.dissection import class_overlap_heatmap, mask_size_heatmap, peer_parts_figure
from app import common
from app.common import show
from app.results import cached_result


@cached_result("the dissection of {run.name}", spinner="Learning class-wise gates…", locked=True)
def dissection(run: analysis.Run, *, l1: float) -> probes.dissection.Dissection:
    """Class-wise gates and masks of every peer (cached in the run folder)."""
    return probes.compute(run, "dissection", l1=l1)


st.title("Dissection")
run = common.selected_run()
if run is None:
    st.stop()
l1 = st.select_slider(
    "Sparsity (L1 weight)",
    [0.3, 1.0, 3.0],
    value=1.0,
    help="Larger values keep fewer channels per class.",
)
result = dissection(run, l1=l1)
if result is None:
    st.stop()
names = result.peer_names
classes = run.manifest["data"].get("class_names")
st.caption(
    f"Gates learned for {len(result.classes)} classes and {len(names)} peers in "
    f"{result.seconds:.1f}s; a channel is in a class's mask when its gate exceeds the threshold."
)
peer = st.selectbox("Peer", range(len(names)), format_func=names.__getitem__, key="peer")
left, right = st.columns(2)
with left:
    show(mask_size_heatmap(result, peer=peer, class_names=classes), key="mask_sizes")
with right:
    show(class_overlap_heatmap(result, peer=peer, class_names=classes), key="class_overlap")

st.header("Peers: the same class-wise parts?")
if result.pairs:
    matched, chance = result.matched_overlap.mean().item(), result.chance_overlap.mean().item()
    first, second, third = st.columns(3)
    first.metric("Matched mask overlap", f"{matched:.3f}", f"{matched - chance:+.3f} vs chance")
    second.metric("Chance level", f"{chance:.3f}")
    third.metric("Class-overlap agreement", f"{result.overlap_agreement.nanmean().item():.3f}")
    st.caption(
        "Channels of separately trained peers are in no common order: they are matched by "
        "activation correlation before masks are compared."
    )
    show(peer_parts_figure(result), key="peer_parts")
else:
    st.info("This run has fewer than two peers of one architecture to compare.")
if result.reconstructable:
    st.code(f"collab reconstruct {run.path} --classes 0,1 --out NEW_RUN --peer {peer}")
