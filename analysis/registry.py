"""A tiny name -> entry registry shared by datasets, models, methods, probes and measures."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from analysis.errors import CollabError

_MISSING = object()


class Registry:
    """Maps names to entries (factories, functions or plain values); a name registers once.

    A registration may carry metadata (keyword arguments of :meth:`register` / :meth:`add`),
    read back with :meth:`meta`. Iterating a registry, or :meth:`items`, follows the order of
    registration; :meth:`list` is sorted.

    Example:
        >>> MODELS = Registry("model")
        >>> @MODELS.register("tiny", params=1_000)
        ... def tiny(num_classes=10): ...
        >>> MODELS.meta("tiny")["params"]
        1000
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Any] = {}
        self._meta: dict[str, Mapping[str, Any]] = {}
        self._refused: dict[str, str] = {}

    def register(self, name: str | None = None, **meta: Any) -> Callable[[Any], Any]:
        """Decorator registering its target under ``name`` (default: its ``__name__``)."""

        def decorator(entry: Any) -> Any:
            return self.add(name or entry.__name__, entry, **meta)

        return decorator

    def add(self, name: str, entry: Any, /, **meta: Any) -> Any:
        """Register ``entry`` under ``name`` with ``meta``; returns ``entry``."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if name in self._refused:
            raise ValueError(f"{self.kind} {name!r} is refused: {self._refused[name]}")
        self._entries[name] = entry
        self._meta[name] = MappingProxyType(dict(meta))
        return entry

    def refuse(self, name: str, message: str) -> None:
        """Keep ``name`` unregistered and answer it with ``message`` (one line: what to use).

        For a name that would be ambiguous: :meth:`get` raises :class:`CollabError` with
        ``message`` instead of the list of known names.
        """
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered; it cannot be refused")
        self._refused[name] = message

    def get(self, name: str, default: Any = _MISSING) -> Any:
        """The entry of ``name``; an unknown name returns ``default`` if given, else raises."""
        try:
            return self._entries[name]
        except KeyError:
            if default is not _MISSING:
                return default
            if name in self._refused:
                raise CollabError(self._refused[name]) from None
            known = ", ".join(sorted(self._entries))
            raise CollabError(f"unknown {self.kind} {name!r}; choose one of: {known}") from None

    def meta(self, name: str) -> Mapping[str, Any]:
        """The (read-only) metadata registered with ``name``."""
        self.get(name)
        return self._meta[name]

    def create(self, name: str, /, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)

    def list(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self._entries if k.startswith(prefix))

    def keys(self) -> list[str]:
        return list(self._entries)

    def values(self) -> list[Any]:
        return list(self._entries.values())

    def items(self) -> list[tuple[str, Any]]:
        return list(self._entries.items())

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
