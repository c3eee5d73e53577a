"""The CollabLens release: recorded in every manifest (see :mod:`analysis.runs.legacy`)."""

__version__ = "0.3.0"
