"""CollabLens: train, load and look inside collaboratively learned neural networks."""

from analysis.errors import CollabError
from analysis.runs import Run, list_runs, load_run
from analysis.runs.importers import import_checkpoints
from analysis.version import __version__ as __version__

__all__ = ["CollabError", "Run", "import_checkpoints", "list_runs", "load_run"]
