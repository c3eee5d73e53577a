"""The AnchorNet class map is scored by the same deletion curve as the captum attributions."""

import torch

from analysis.models import CollaborativeModel, create_model
from analysis.probes.attributions import attribute
from analysis.probes.class_map import localize
from analysis.probes.faithfulness import deletion_curve


def test_class_map_and_gradcam_share_one_faithfulness_score():
    torch.manual_seed(0)
    net = create_model("anchornet", num_classes=6, in_chans=3)
    model = CollaborativeModel([net], mean=(0.5,) * 3, std=(0.25,) * 3).eval()
    peer = model.peer(0)
    images = torch.rand(3, 3, 48, 48)
    loc = localize(peer, images)
    assert (
        loc.class_map.shape[0] == 3 and loc.class_map.shape[1:] != images.shape[2:]
    )  # a coarse map
    cam_curves, cam_auc = deletion_curve(peer, images, loc.class_map, target=loc.predicted, steps=8)
    grad_map = attribute(model, images, method="grad_cam", peer=0, target=loc.predicted)
    cam2_curves, cam2_auc = deletion_curve(peer, images, grad_map, target=loc.predicted, steps=8)
    with torch.no_grad():
        start = peer(images).softmax(-1).gather(1, loc.predicted.view(-1, 1)).squeeze(1)
    for curves, auc in ((cam_curves, cam_auc), (cam2_curves, cam2_auc)):
        assert curves.shape == (3, 9) and auc.shape == (3,)
        torch.testing.assert_close(curves[:, 0], start, atol=1e-5, rtol=1e-5)  # unperturbed first
        assert ((auc >= 0) & (auc <= 1)).all()
