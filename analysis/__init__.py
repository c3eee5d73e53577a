"""CollabLens: train, load and look inside collaboratively learned neural networks.

``Run``, ``list_runs``, ``load_run`` and ``import_checkpoints`` load on first use (see
:mod:`analysis.lazy`): ``import analysis`` or the ``collab`` command line must not pay for torch.
"""

from typing import TYPE_CHECKING

from analysis.errors import CollabError
from analysis.lazy import lazy_exports
from analysis.version import __version__ as __version__

if TYPE_CHECKING:
    from analysis.runs import Run, list_runs, load_run
    from analysis.runs.importers import import_checkpoints

__all__ = ["CollabError", "Run", "import_checkpoints", "list_runs", "load_run"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    globals(),
    {
        "Run": "analysis.runs.run",
        "list_runs": "analysis.runs.layout",
        "load_run": "analysis.runs.run",
        "import_checkpoints": "analysis.runs.importers",
    },
)
