"""``--source torchvision``: weights of networks torchvision builds.

A file holds one network's ``state_dict`` under torchvision's own key names
(``torch.save(model.state_dict())``, possibly wrapped in a dict or saved from DataParallel).
Our ``torchvision/NAME`` models keep those names, so the mapping is the identity under
``peers.<i>.``. ``--arch resnet18`` means ``torchvision/resnet18``. The network is built with
``weights=None``: nothing is downloaded.
"""

from __future__ import annotations

from analysis.runs.importers.base import LibrarySource


class TorchvisionSource(LibrarySource):
    name = library = "torchvision"
    summary = "torchvision classifiers' state dicts (one network per file)"
    layout = "torchvision.models: torch.save(model.state_dict()), keys as the library names them"
