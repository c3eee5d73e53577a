"""``collab train``, ``sweep``, ``search`` and ``zoo``: the commands that train runs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from analysis.commands.paths import REPO
from analysis.errors import CollabError


def cmd_train(args: argparse.Namespace) -> int:
    from analysis.config import config_from_dict, load_config
    from analysis.config.schema import to_dict
    from analysis.training import Trainer

    out = Path(args.out) if args.out else None
    if args.resume:
        if out is None:
            raise CollabError("--resume needs --out RUN_FOLDER naming the run to continue")
        config = _resume_config(out, args)
    else:
        if args.config is None:
            raise CollabError(
                "collab train needs a YAML preset, e.g. collab train configs/dml_digits.yaml"
            )
        config = load_config(args.config, args.overrides)
        out = out or REPO / "runs" / Path(args.config).stem
    config = config_from_dict(to_dict(config))
    run = Trainer(config, out, progress=not args.no_progress).fit(resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 wrote the run
        print(f"run written to {run}")
    return 0


def _resume_config(out: Path, args: argparse.Namespace):
    """The config a resumed run continues with: the saved one (a given one must equal it)."""
    import yaml

    from analysis.config import config_from_dict, load_config
    from analysis.runs import CONFIG
    from analysis.runs.legacy import as_trained

    saved_path = out / CONFIG
    if not saved_path.is_file():
        if args.config and not (out.is_dir() and any(out.iterdir())):
            return load_config(args.config, args.overrides)  # killed before anything was saved
        raise CollabError(f"{out} has no {CONFIG} to resume from; start it without --resume")
    try:
        saved = config_from_dict(as_trained(yaml.safe_load(saved_path.read_text()), out))
    except (yaml.YAMLError, UnicodeDecodeError):
        raise CollabError(f"{saved_path} is not readable YAML; the run cannot be resumed") from None
    if args.config or args.overrides:
        given = (
            load_config(args.config, args.overrides)
            if args.config
            else load_config(saved_path, args.overrides)
        )
        # the saved config is complete; the given one may leave out what its release implied
        if as_trained(given.to_dict(), out) != saved.to_dict():
            raise CollabError(
                f"the given config differs from the one {out} was trained with; resume without changes"
            )
    return saved


def cmd_sweep(args: argparse.Namespace) -> int:
    from analysis.runs.sweep import make_plan
    from analysis.training.sweep import run_sweep
    from analysis.viz.sweep import write_sweep_summary

    out = Path(args.out)
    plan = make_plan(args.config, args.grid, args.seeds, args.overrides)
    run_sweep(plan, out, progress=not args.no_progress)
    summary = write_sweep_summary(out, control=args.control)
    print(
        f"{len(summary.runs)} runs finished, {len(summary.missing)} not; "
        f"summary in {out / 'summary.csv'}, {out / 'summary.html'}"
    )
    return 0 if not summary.missing else 1


def cmd_search(args: argparse.Namespace) -> int:
    import shlex

    from analysis.runs.search import parse_count, plan_search
    from analysis.training.search import run_search

    plan = plan_search(
        args.config,
        budget=parse_count(args.budget),
        step=args.step,
        epochs_per_step=args.epochs_per_step,
        noise=args.noise,
        overrides=args.overrides,
    )
    done = run_search(plan, args.out, progress=not args.no_progress)
    print(
        f"widths {done['widths']}: {done['params']:,} parameters, validation score "
        f"{done['val_acc']:.4f} after {done['steps']} steps (log: {Path(args.out) / 'search.jsonl'})"
    )
    sets = " ".join(f"--set {shlex.quote(s)}" for s in [*args.overrides, done["set"]])
    print(f"train it with: collab train {shlex.quote(args.config)} {sets}")
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from analysis.training.zoo import build_zoo
    from analysis.viz.sweep import write_sweep_summary

    built = build_zoo(
        args.root, only=args.only, progress=not args.no_progress, summarize=write_sweep_summary
    )
    for path in built:
        print(f"rebuilt {path}")
    return 0
