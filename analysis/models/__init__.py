"""Architectures and collaborative containers.

``MODELS`` maps names to builders ``fn(*, num_classes, in_chans=3, **options) -> nn.Module``;
build them through :func:`create_model`, which checks the options. Every registered network
is a :class:`StagedNet`: it exposes ``probe_layers``, ``feature_dim``, ``forward_features``
and a linear ``fc`` head. The family modules are imported here so that they register.

Collaborative containers (K peers behind one input normalization, ``forward`` returning a
:class:`CollabOutput`) all extend :class:`PeerContainer`.
"""

from analysis.models import (  # noqa: F401  (registration)
    anchornet,
    cheap,
    cifar_resnet,
    dcl_nets,
    hcgnet,
    resnext,
    surgery,
    tiny,
    tv_resnet,
    vgg,
    wrn,
)
from analysis.models.base import StagedNet
from analysis.models.collaborative import CollaborativeModel
from analysis.models.container import Normalize, PeerContainer, PeerModule, SeparatePeers
from analysis.models.factory import MODELS, count_parameters, create_model, model_options
from analysis.models.output import CollabOutput, combine_logits

__all__ = [
    "MODELS",
    "CollabOutput",
    "CollaborativeModel",
    "Normalize",
    "PeerContainer",
    "PeerModule",
    "SeparatePeers",
    "StagedNet",
    "combine_logits",
    "count_parameters",
    "create_model",
    "model_options",
]
