"""One contract for every probe: its name, what it reads and needs, its options and its result.

Each probe registers itself in :data:`PROBES` where it is defined, with :func:`register_probe`
(or :func:`activation_probe`). What it ``reads`` fixes its call shape:

=============== ========================================== =======================================
reads           call                                       examples
=============== ========================================== =======================================
``activations`` ``probe(model, dataset, *, options)``      diversity, cka, vocabulary: fold
                                                           minibatches; ``run_suite`` folds them
                                                           all into one shared pass
``data``        ``probe(model, dataset, *, options)``      attributions, localization, cascade
``weights``     ``probe(model, *, options)``               kernels
``checkpoints`` ``probe(run, *, options)``                 dynamics (the saved epoch checkpoints)
=============== ========================================== =======================================

``needs`` names what a run must have for the probe to apply (see :mod:`analysis.probes.needs`),
``options`` is a frozen dataclass of keyword options (every field has a default) and ``result``
the dataclass the probe returns. An options field whose metadata says ``key=False`` (device,
progress, batch size where it does not change the result) is left out of the cache key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from analysis.errors import CollabError
from analysis.probes.shared_pass import run_pass
from analysis.registry import Registry

#: name -> probe function; metadata: the :class:`ProbeSpec` fields.
PROBES = Registry("probe")

ACTIVATIONS, DATA, WEIGHTS, CHECKPOINTS = "activations", "data", "weights", "checkpoints"
READS = (ACTIVATIONS, DATA, WEIGHTS, CHECKPOINTS)


def setting(default: Any) -> Any:
    """An options field that does not change the result, so it is not part of the cache key."""
    return field(default=default, metadata={"key": False})


@dataclass(frozen=True)
class PassOptions:
    """How an activation probe reads the data when it runs its own pass.

    In :func:`~analysis.probes.suite.run_suite` the shared pass uses the suite's limit and batch
    size for every probe folded into it.
    """

    limit: int | None = None
    batch_size: int = setting(256)
    device: str = setting("cpu")
    progress: bool = setting(False)


@dataclass(frozen=True)
class ProbeSpec:
    """A registered probe and its contract (see the module docstring).

    Attributes:
        consumer: for ``activations`` probes, ``consumer(model, dataset, options)`` builds the
            :class:`~analysis.probes.shared_pass.Consumer` folded into a pass.
        cached: False for a probe that caches its parts itself (dynamics: one result per
            checkpoint, so that adding epochs later only computes what is new).
        report_needs: what the default report (``run_suite`` with no probes named) further
            asks of a run before including the probe, e.g. the cascade needs only a localizer
            but is reported only on data with true boxes; naming the probe runs it regardless.
    """

    name: str
    probe: Callable[..., Any]
    reads: str
    needs: tuple[str, ...]
    options: type
    result: type
    about: str
    consumer: Callable[..., Any] | None = None
    cached: bool = True
    report_needs: tuple[str, ...] = ()

    def make_options(self, values: dict[str, Any]) -> Any:
        """``options(**values)``; an unknown option is an error naming the known ones."""
        known = [f.name for f in dataclasses.fields(self.options)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise CollabError(
                f"probe {self.name!r} has no option {unknown[0]!r}; its options are: {', '.join(known)}"
            )
        return self.options(**values)

    def cache_args(self, options: Any, *, split: str) -> dict[str, Any]:
        """The JSON arguments that key this probe's cached result (with the checkpoint)."""
        args = {
            f.name: getattr(options, f.name)
            for f in dataclasses.fields(options)
            if f.metadata.get("key", True)
        }
        return {"split": split, **args} if self.reads in (ACTIVATIONS, DATA) else args


def register_probe(
    name: str,
    *,
    reads: str,
    options: type,
    result: type,
    about: str,
    needs: Sequence[str] = (),
    report_needs: Sequence[str] = (),
    consumer: Callable[..., Any] | None = None,
    cached: bool = True,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a probe function in :data:`PROBES` with its contract."""
    if reads not in READS:
        raise ValueError(f"probe {name!r} reads {reads!r}; use one of {READS}")
    if (reads == ACTIVATIONS) != (consumer is not None):
        raise ValueError(
            f"probe {name!r}: a consumer is what an activations probe, and only it, has"
        )
    if not dataclasses.is_dataclass(options) or not dataclasses.is_dataclass(result):
        raise ValueError(f"probe {name!r}: options and result must be dataclasses")
    contract = {"reads": reads, "needs": tuple(needs), "options": options, "result": result}
    contract["report_needs"] = tuple(report_needs)
    return PROBES.register(name, **contract, about=about, consumer=consumer, cached=cached)


def activation_probe(
    name: str, *, consumer: Callable[..., Any], options: type, result: type, about: str, **contract
) -> Callable[..., Any]:
    """Register and return ``probe(model, dataset, *, options)`` running ``consumer`` in a pass.

    The probe also takes the fields of ``options`` as keywords instead (``limit=200``), so it
    serves as the probe's convenience function. ``options`` must have the fields of
    :class:`PassOptions`, which drive the pass.
    """
    options_type = options

    def probe(model, dataset, *, options: Any = None, **fields: Any) -> Any:
        if options is not None and fields:
            raise TypeError(f"pass options= or keyword options, not both (got {sorted(fields)})")
        options = options if options is not None else options_type(**fields)
        (found,) = run_pass(
            model,
            dataset,
            [consumer(model, dataset, options)],
            batch_size=options.batch_size,
            device=options.device,
            limit=options.limit,
            progress=options.progress,
        )
        return found

    names = ", ".join(f"``{f.name}``" for f in dataclasses.fields(options_type))
    probe.__name__ = probe.__qualname__ = f"{name}_probe"
    probe.__doc__ = f"""{about[0].upper()}{about[1:]}, in one pass over ``dataset``.

    Args:
        model: a collaborative model; its hooks, modes and device are left as they were.
        dataset: yields ``(image (C, H, W) in [0, 1], label)``.
        options: a :class:`{options_type.__name__}`, or its fields as keywords ({names}).

    Returns:
        A :class:`{result.__name__}`.
    """
    register = register_probe(
        name,
        reads=ACTIVATIONS,
        consumer=consumer,
        options=options_type,
        result=result,
        about=about,
        **contract,
    )
    return register(probe)


def as_kwargs(options: Any, *, without: Sequence[str] = ()) -> dict[str, Any]:
    """The fields of an options dataclass as keyword arguments (shallow), less ``without``."""
    return {
        f.name: getattr(options, f.name)
        for f in dataclasses.fields(options)
        if f.name not in without
    }


def forwarding_probe(
    name: str,
    fn: Callable[..., Any],
    *,
    reads: str,
    options: type,
    on_peer: bool = False,
    **contract,
) -> Callable[..., Any]:
    """Register and return the probe that calls ``fn`` with its options' fields as keywords.

    The probe has the call shape of ``reads`` and calls ``fn(model, **options)`` (weights),
    ``fn(run, **options)`` (checkpoints) or ``fn(model, dataset, **options)`` (data); with
    ``on_peer`` the model is replaced by the peer module ``model.peer(options.peer)`` (and the
    ``peer`` field is not forwarded).
    """
    options_type = options

    def probe(target, *args: Any, options: Any = None) -> Any:
        options = options if options is not None else options_type()
        if on_peer:
            return fn(target.peer(options.peer), *args, **as_kwargs(options, without=("peer",)))
        return fn(target, *args, **as_kwargs(options))

    what = "peer ``options.peer`` of ``model``" if on_peer else "its first argument"
    probe.__name__ = probe.__qualname__ = f"{name}_probe"
    probe.__doc__ = f":func:`{fn.__name__}` of {what}, with the fields of ``options`` as keywords."
    return register_probe(name, reads=reads, options=options_type, **contract)(probe)


def spec(name: str) -> ProbeSpec:
    """The contract of the registered probe ``name``."""
    return ProbeSpec(name=name, probe=PROBES.get(name), **PROBES.meta(name))
