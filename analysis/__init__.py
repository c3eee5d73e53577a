"""CollabLens: train, load and look inside collaboratively learned neural networks."""

from analysis.errors import CollabError
from analysis.runs import Run, list_runs, load_run

__all__ = ["CollabError", "Run", "list_runs", "load_run"]
__version__ = "0.1.0"
