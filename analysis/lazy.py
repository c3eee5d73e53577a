"""Package names that load on first use (PEP 562), so that importing a package stays cheap.

``import analysis`` must not pay for torch, nor the app's first page for every figure builder:
a package lists where each public name lives and imports that module when the name is first
read (``from analysis.viz import training_curves`` imports only ``analysis.viz.curves``).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, namespace: dict[str, Any], exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose names ``exports`` maps to their modules.

    Args:
        package: the package's ``__name__``.
        namespace: its ``globals()``; a loaded name is stored there, so later reads are plain.
        exports: public name -> module path (absolute, e.g. ``"analysis.viz.curves"``).

    Example:
        >>> __getattr__, __dir__ = lazy_exports(__name__, globals(), {"Run": "analysis.runs.run"})
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is not None:
            value = getattr(importlib.import_module(module), name)
        elif not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}"):
            # a subpackage (``analysis.runs`` after ``import analysis``), as when it was imported
            # eagerly
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
