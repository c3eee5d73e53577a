"""Where does a peer find the class? Ranked boxes from its class map (CAM), the patches they
cut out, the early-exit cascade that classifies those patches and, on data with true boxes
(shapes), how well the boxes localize compared with random boxes."""

import pandas as pd
import streamlit as st

from analysis import viz
from analysis.probes.headlines import cheapest_within, has_true_boxes, true_box, versus_random
from analysis.viz.tables import box_columns
from app import common, inputs, results
from app.common import pct, show

st.title("Localization")
run = common.selected_run()
if run is None:
    st.stop()
names, classes, test = run.peer_names, run.data.class_names, run.dataset("test")
left, right = st.columns(2)
with left:
    chosen = inputs.image_picker(run)
with right:
    peer = st.selectbox("Class map of", range(len(names)), format_func=names.__getitem__)
    steps = (50, 100, 250, 500)
    limit = inputs.limit_slider(
        "Test images (cascade, scores)", len(test), default=100, steps=steps
    )

loc = results.localize(run, chosen.key, chosen.image, peer=peer) if chosen else None
if loc is not None:  # after a bad upload the rest of the page still shows
    image, truth = chosen.image, true_box(test, chosen.index)
    cols = st.columns(2)
    cols[0].metric("Label", "unknown" if chosen.label is None else classes[chosen.label])
    cols[1].metric(f"{names[peer]} predicts", classes[int(loc.predicted[0])])
    boxes = pd.DataFrame(box_columns(loc, 0))
    left, right = st.columns(2)
    with left:
        title = "Ranked boxes" + (", true box dashed" if truth is not None else "")
        fig = viz.boxes_figure(
            image, loc.boxes[0], scores=loc.scores[0], true_box=truth, title=title
        )
        show(fig, key="boxes", data=boxes)
    with right:
        show(viz.class_map_figure(loc, 0, image=image), key="class_map")
    gallery = viz.patch_gallery(image[None], loc, class_names=classes)
    show(gallery, key="patch_gallery", data=boxes)

st.header("Early-exit cascade")
st.caption(
    "The image resized to the patch size, then the patches best first, until the softmax "
    "confidence passes the threshold; cost in FLOPs, the localizer not charged."
)
if (curve := results.cascade(run, peer=peer, limit=limit)) is not None:
    cols = st.columns(3)
    cols[0].metric("Full model accuracy", pct(curve.full_accuracy))
    cols[1].metric("Best cascade accuracy", pct(float(curve.accuracy.max())))
    cheap = cheapest_within(curve, tolerance=0.01)
    within = "none" if cheap is None else f"{cheap:.1%}"
    cols[2].metric("Cost of the cheapest cascade within 1 point", within, help="of the full cost")
    show(viz.cascade_figure(curve), key="cascade")

st.header("Localization scores")
if not has_true_boxes(test):
    st.info(
        f"The {run.manifest.get('dataset', 'run')} test images have no true boxes; localization "
        "scores need a dataset with boxes, such as shapes."
    )
elif (score := results.localization_score(run, peer=peer, limit=limit)) is not None:
    cols = st.columns(4)
    for col, (label, (ours, rand)) in zip(cols, versus_random(score).items()):
        col.metric(label, f"{ours:.3f}", f"{ours - rand:+.3f} vs random boxes")
    cols[3].metric("Accuracy on these images", pct(score.accuracy))
    show(viz.localization_scores_figure(score), key="localization_scores")
