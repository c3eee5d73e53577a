"""Input widgets shared by pages: choose one image from the test set or upload one, how many
test images a probe runs on, and a layer of each of two peers.

An upload is converted by :func:`analysis.data.upload.load_image` to the run's channels and
image size; a file that is not a readable image, or is too large, gets one ``st.error`` line
(from the library's ``CollabError``) and the page stops there, its other widgets still working.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import streamlit as st
import torch

import analysis
from analysis.data.upload import MAX_BYTES, MAX_PIXELS, load_image
from analysis.probes.hooks import peer_layers
from app.common import guarded


@dataclass(frozen=True)
class ChosenImage:
    """One image to explain: (C, H, W) in [0, 1], its label (None for an upload), a cache key
    and its index in the test set (None for an upload)."""

    image: torch.Tensor
    label: int | None
    key: str
    index: int | None = None


def upload_key(data: bytes, *, invert: bool) -> str:
    """A short cache key for an uploaded file (its content hash and the invert flag)."""
    return f"upload:{hashlib.sha256(data).hexdigest()[:20]}:{int(invert)}"


def uploaded_image(run: analysis.Run, data: bytes, *, invert: bool) -> torch.Tensor | None:
    """(C, H, W) image in ``run``'s input format from a file's bytes, or None after an error."""
    spec = run.data
    return guarded(
        lambda: load_image(data, in_chans=spec.in_chans, image_size=spec.image_size, invert=invert),
        what="the uploaded image",
    )


def image_picker(run: analysis.Run) -> ChosenImage | None:
    """Radio (test set / upload) plus a test index or an uploader; None when there is no image."""
    test = run.dataset("test")
    if st.radio("Image", ["test set", "upload"], horizontal=True) == "test set":
        index = int(st.number_input(f"Test image (0 to {len(test) - 1})", 0, len(test) - 1, 0))
        image, label = test[index]
        return ChosenImage(image, int(label), f"test:{index}", index)
    limits = f"at most {MAX_BYTES // 2**20} MB and {MAX_PIXELS // 10**6} megapixels"
    upload = st.file_uploader(f"An image file (PNG, JPEG, …; {limits})")
    invert = st.checkbox("Invert (dark ink on light paper)")
    if upload is None:
        st.info("Upload an image to explain it.")
        return None
    data = upload.getvalue()
    image = uploaded_image(run, data, invert=invert)
    return None if image is None else ChosenImage(image, None, upload_key(data, invert=invert))


def limit_slider(label: str, total: int, *, default: int, steps=(100, 250, 500), where=st) -> int:
    """A select slider over how many of ``total`` test images a probe runs on: ``steps`` (those
    below ``total``) and all of them; ``default`` (at most ``total``) at first. ``where``: the
    container to draw it in (a column; default the page)."""
    sizes = sorted({min(n, total) for n in steps} | {total})
    return where.select_slider(label, sizes, value=min(default, total))


def two_peer_layers(run: analysis.Run) -> tuple[str, str]:
    """Two columns, each picking a peer and one of its probed layers (module paths); peers 0
    and 1 and their last layer at first."""
    names, chosen = run.peer_names, []
    for col, slot, default in zip(st.columns(2), "AB", (0, 1)):
        peer = col.selectbox(
            f"Peer {slot}", range(len(names)), default, format_func=names.__getitem__
        )
        options = peer_layers(run.model, peer)
        chosen.append(col.selectbox(f"Layer {slot}", options, len(options) - 1))
    return chosen[0], chosen[1]
