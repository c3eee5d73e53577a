"""Strict conversion between plain dicts (YAML) and config dataclasses.

Unknown keys and values of the wrong type are errors that name the dotted key, so a typo in a
preset or a ``--set`` override can never be silently ignored.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Literal, Union

import yaml

from analysis.errors import CollabError

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def from_dict(cls: type, data: Any, *, path: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, checking every key and type."""
    where = path or "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CollabError(f"{where} must be a mapping, got {type(data).__name__}; fix the YAML")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = _join(path, str(unknown[0]))
        raise CollabError(
            f"unknown config key {key!r}; valid keys under {where} are: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {
        name: convert(hints[name], value, path=_join(path, name)) for name, value in data.items()
    }
    return cls(**kwargs)


def convert(tp: Any, value: Any, *, path: str) -> Any:
    """Check ``value`` against type ``tp`` (a small subset of typing), converting int->float."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path=path)
    if origin in (Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return convert(option, value, path=path)
            except CollabError as exc:
                errors.append(exc)
        choices = _choices(typing.get_args(tp))
        if choices:  # e.g. bool | Literal["auto"]: name every accepted value
            raise CollabError(f"config key {path!r} is {value!r}; choose one of: {choices}")
        raise errors[-1]
    if tp is type(None):
        if value is None:
            return None
        raise _type_error(path, "null", value)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise CollabError(
                f"config key {path!r} is {value!r}; choose one of: {', '.join(map(str, choices))}"
            )
        return value
    if origin is list:
        if not isinstance(value, list):
            raise _type_error(path, "a list", value)
        (item,) = typing.get_args(tp) or (Any,)
        return [convert(item, v, path=f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _type_error(path, "a mapping", value)
        return dict(value)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads "1e-3" as a string; researchers write it anyway
        raise _type_error(path, "a number", value)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _type_error(path, "an integer", value)
    if tp in (str, bool):
        if isinstance(value, tp):
            return value
        raise _type_error(path, "a string" if tp is str else "true or false", value)
    raise TypeError(f"unsupported config type {tp!r} at {path}")


def to_dict(obj: Any) -> Any:
    """Dataclass -> nested plain dict (YAML/JSON friendly)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def apply_override(data: dict, assignment: str) -> None:
    """Apply one ``a.b.c=value`` override to a nested dict in place; value is parsed as YAML."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise CollabError(
            f"override {assignment!r} is not of the form key=value (e.g. train.epochs=5)"
        )
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise CollabError(f"override {key!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _choices(options: tuple) -> str:
    """The accepted values of a union of literals, bool and None, or "" if it has other types."""
    names: list[str] = []
    for option in options:
        if typing.get_origin(option) is Literal:
            names += [str(c) for c in typing.get_args(option)]
        elif option in (bool, type(None)):
            names += ["true", "false"] if option is bool else ["null"]
        else:
            return ""
    return ", ".join(names)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _type_error(path: str, expected: str, value: Any) -> CollabError:
    return CollabError(f"config key {path!r} must be {expected}, got {value!r}")
