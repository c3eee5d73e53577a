"""Probes of a loaded run, through the run-folder cache: one probe, or every probe at once.

:func:`compute` is the one cached entry point for the CLI, notebooks and the app: it runs the
registered probe ``name`` on ``run`` (or returns its result from ``RUN/probes/`` at once).
:func:`run_suite` loops over the registry: it keeps the probes that apply, returns cached
results, folds every ``activations`` probe that is missing into ONE pass over the data, runs
the others on their own, and caches every result under the same keys as :func:`compute`.

Both fill the options a probe has from the run: ``split`` and ``peer_names`` (and, in the
suite, ``limit``, ``images``, ``progress``, and for the probes of the shared pass its
``batch_size``); any other option keeps its default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from analysis.errors import CollabError
from analysis.probes import cache
from analysis.probes.contract import ACTIVATIONS, CHECKPOINTS, PROBES, WEIGHTS, ProbeSpec, spec
from analysis.probes.needs import unmet
from analysis.probes.shared_pass import run_pass


def _options(s: ProbeSpec, run: Any, settings: dict[str, Any], given: dict[str, Any]) -> Any:
    """``s``'s options: ``given`` over the ``settings`` it has a field for, over its defaults."""
    fields = {f.name for f in dataclasses.fields(s.options)}
    filled = {"peer_names": tuple(run.peer_names), **settings}
    return s.make_options({k: v for k, v in filled.items() if k in fields} | given)


def _require(run: Any, s: ProbeSpec) -> None:
    reason = unmet(run, s.needs)
    if reason:
        raise CollabError(f"probe {s.name!r} does not apply to {run.name}: it {reason}")


def _call(s: ProbeSpec, run: Any, options: Any, split: str) -> Any:
    """Run ``s`` on ``run`` with the call shape of what it reads."""
    if s.reads == CHECKPOINTS:
        return s.probe(run, options=options)
    if s.reads == WEIGHTS:
        return s.probe(run.model, options=options)
    return s.probe(run.model, run.dataset(split), options=options)


def compute(run: Any, name: str, *, split: str = "test", refresh: bool = False, **options: Any):
    """The result of probe ``name`` on ``run``, cached in ``RUN/probes/``.

    Args:
        run: a loaded :class:`analysis.Run` (its folder and checkpoint key the cache).
        name: a registered probe (``PROBES.list()``), e.g. ``"cka"``.
        split: the split a data probe reads (``"test"`` or ``"train"``).
        refresh: recompute even when cached (the dynamics probe still reuses its
            per-checkpoint reports unless ``use_cache=False``).
        **options: fields of the probe's options dataclass (``spec(name).options``), e.g.
            ``limit=200``; an unknown option is an error that lists the known ones.

    Raises:
        CollabError: for an unknown probe or option, or a probe that does not apply to ``run``.
    """
    s = spec(name)
    _require(run, s)
    opts = _options(s, run, {"split": split}, options)
    if not s.cached:
        return _call(s, run, opts, split)
    args = s.cache_args(opts, split=split)
    return cache.cached(
        run, name, args, s.result, lambda: _call(s, run, opts, split), refresh=refresh
    )


def run_suite(
    run: Any,
    *,
    probes: Sequence[str] | None = None,
    split: str = "test",
    limit: int | None = None,
    batch_size: int = 100,
    images: int = 4,
    progress: bool = False,
    refresh: bool = False,
) -> dict[str, Any]:
    """Results of ``probes`` (default: all that apply) on ``run``; name -> result.

    Probes that do not apply are left out when chosen by default, and are an error when asked
    for. Results come in registry order (or the order of ``probes``).
    """
    unknown = sorted(set(probes or ()) - set(PROBES))
    if unknown:
        raise CollabError(f"unknown probe {unknown[0]!r}; choose from: {', '.join(PROBES)}")
    chosen = [spec(name) for name in (probes or PROBES)]
    if probes:
        for s in chosen:
            _require(run, s)
    chosen = [s for s in chosen if not unmet(run, s.needs if probes else s.needs + s.report_needs)]
    settings = {"split": split, "limit": limit, "images": images, "progress": progress}
    options = {
        s.name: _options(
            s, run, settings | ({"batch_size": batch_size} if s.reads == ACTIVATIONS else {}), {}
        )
        for s in chosen
    }

    def key(s: ProbeSpec) -> dict[str, Any]:
        return s.cache_args(options[s.name], split=split)

    results = {}
    for s in chosen:
        hit = None if refresh or not s.cached else cache.lookup(run, s.name, key(s), s.result)
        if hit is not None:
            results[s.name] = hit
    shared = [s for s in chosen if s.name not in results and s.reads == ACTIVATIONS]
    if shared:
        data = run.dataset(split)
        consumers = [s.consumer(run.model, data, options[s.name]) for s in shared]
        outs = run_pass(
            run.model, data, consumers, batch_size=batch_size, limit=limit, progress=progress
        )
        for s, result in zip(shared, outs):
            results[s.name] = result
            cache.store(run, s.name, key(s), result)
    for s in chosen:
        if s.name not in results:
            results[s.name] = _call(s, run, options[s.name], split)
            if s.cached:
                cache.store(run, s.name, key(s), results[s.name])
    return {s.name: results[s.name] for s in chosen}
